//! Small helpers for server-rendered HTML: escaping, the page frame and an
//! SVG bar chart. No JavaScript, readable on a phone.

use std::fmt::Write as _;

use crate::log::analytics::DayCount;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#cfe1ff;text-decoration:none}header strong{margin-right:auto}
main{padding:1rem;max-width:1200px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6eb;text-align:left;white-space:nowrap}
th{background:#eef1f5;font-weight:600}td.num,th.num{text-align:right}
.scroll{overflow-x:auto}form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0 1rem}
input,select,button{font:inherit;padding:.3rem .45rem}
video{width:100%;max-width:960px;background:#000;display:block}
.muted{color:#69707d}.pager{margin:1rem 0;display:flex;gap:1rem}
.bar{fill:#3d7be0}.bar:hover{fill:#1d4fa8}svg text{font-size:10px;fill:#69707d}
ul.files{list-style:none;padding:0}ul.files li{padding:.3rem 0;border-bottom:1px solid #e3e6eb}
";

/// A complete page.
pub(crate) fn page(title: &str, nav: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · sage-stream</title><style>{STYLE}</style></head>\
         <body><header><strong>sage-stream</strong>{nav}</header><main>{body}</main></body></html>",
        title = esc(title)
    )
}

/// Views per day as an SVG bar chart: at least the 30 days up to `today`,
/// back to the first day with views (at most a year), zero days included.
pub(crate) fn day_chart(days: &[DayCount], today: chrono::NaiveDate) -> String {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return "<p class=\"muted\">No views yet.</p>".to_owned();
    };
    let end = last.day.max(today);
    let start = first
        .day
        .min(end - chrono::Duration::days(29))
        .max(end - chrono::Duration::days(365));
    let span = usize::try_from((end - start).num_days()).unwrap_or(0) + 1;
    let max = days.iter().map(|d| d.views).max().unwrap_or(1).max(1);
    let (width, height, pad) = (720.0_f64, 220.0_f64, 28.0_f64);
    let slot = (width - pad) / span as f64;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"Views per day\" viewBox=\"0 0 {width} {height}\" \
         width=\"100%\" style=\"max-width:{width}px;background:#fff\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"12\">{max}</text><text x=\"2\" y=\"{}\">0</text>",
        height - pad
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{width}\" y2=\"{y}\" stroke=\"#c9ced6\"/>",
        y = height - pad
    );
    for i in 0..span {
        let day = start + chrono::Duration::days(i as i64);
        let views = days.iter().find(|d| d.day == day).map_or(0, |d| d.views);
        let h = (height - pad - 10.0) * views as f64 / max as f64;
        let x = pad + i as f64 * slot + slot * 0.1;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"><title>{day}: {views} views</title></rect>",
            y = height - pad - h,
            w = (slot * 0.8).max(1.0),
        );
        // About seven labels, counted back from the last day so that one
        // always names the newest bar.
        let step = (span / 7).max(1);
        if (span - 1 - i) % step == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{label}</text>",
                // Centred under the bar, kept inside the picture.
                x = (x + slot * 0.4).clamp(pad + 14.0, width - 16.0),
                y = height - 10.0,
                label = day.format("%m-%d")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Bytes as B, KiB, MiB or GiB.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_covers_a_month_and_names_the_last_day() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let days = [DayCount {
            day: today,
            views: 3,
        }];
        let svg = day_chart(&days, today);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 30);
        assert!(svg.contains("<title>2026-11-24: 3 views</title>"));
        assert!(svg.contains(">11-24</text>"));
        assert!(svg.matches("</text>").count() <= 2 + 8);
        assert_eq!(
            day_chart(&[], today),
            "<p class=\"muted\">No views yet.</p>"
        );
    }
}
