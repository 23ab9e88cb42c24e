//! The page frame, the navigation and the SVG bar chart, as maud
//! templates: every interpolated value is escaped unless wrapped in
//! `PreEscaped`, which only the constant style sheet is. No JavaScript,
//! readable on a phone.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::links::Links;
use crate::log::analytics::DayCount;

/// Percent-encodes a query value.
pub(crate) fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Kept as raw text: `<style>` content is not entity-decoded by browsers.
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
svg.chart{max-width:720px;background:#fff}
ul.files{list-style:none;padding:0}ul.files li{padding:.3rem 0;border-bottom:1px solid #e3e6eb}
";

/// The pages' `Content-Security-Policy`: nothing but our own style sheet
/// (inline, allowed by its hash), same-origin media and forms, no script at
/// all, and no framing (the admin cannot be clickjacked).
pub(crate) fn page_csp() -> http::HeaderValue {
    static CSP: std::sync::OnceLock<http::HeaderValue> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; media-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        // Base64 and the fixed text are visible ASCII: always a valid value.
        http::HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| http::HeaderValue::from_static("default-src 'none'"))
    })
    .clone()
}

/// A complete page.
pub(crate) fn page(title: &str, nav: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · sage-stream" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { strong { "sage-stream" } (nav) }
                main { (body) }
            }
        }
    }
}

/// The header links: the player (when there is one), then either one link
/// to the admin (from the player) or the admin's own pages.
pub(crate) fn nav(links: &Links, in_admin: bool) -> Markup {
    html! {
        @if let Some(player) = links.player() {
            a href=(player) { "Player" }
        }
        @if let (Some(list), Some(analytics)) = (links.admin(""), links.admin("analytics")) {
            @if in_admin {
                a href=(list) { "Watch log" }
                a href=(analytics) { "Analytics" }
            } @else {
                a href=(list) { "Admin" }
            }
        }
    }
}

/// Views per day as an SVG bar chart: at least the 30 days up to `today`,
/// back to the first day with views (at most a year), zero days included.
pub(crate) fn day_chart(days: &[DayCount], today: chrono::NaiveDate) -> Markup {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return html! { p class="muted" { "No views yet." } };
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
    let base = height - pad;
    // About seven labels, counted back from the last day so that one
    // always names the newest bar.
    let step = (span / 7).max(1);
    html! {
        svg role="img" aria-label="Views per day" viewBox=(format!("0 0 {width} {height}"))
            width="100%" class="chart"
            xmlns="http://www.w3.org/2000/svg" {
            text x="2" y="12" { (max) }
            text x="2" y=(base) { "0" }
            // Closed explicitly: in HTML, an unclosed SVG element swallows
            // the elements after it.
            line x1=(pad) y1=(base) x2=(width) y2=(base) stroke="#c9ced6" {}
            @for i in 0..span {
                @let day = start + chrono::Duration::days(i as i64);
                @let views = days.iter().find(|d| d.day == day).map_or(0, |d| d.views);
                @let h = (base - 10.0) * views as f64 / max as f64;
                @let x = pad + i as f64 * slot + slot * 0.1;
                rect class="bar" x=(format!("{x:.1}")) y=(format!("{:.1}", base - h))
                    width=(format!("{:.1}", (slot * 0.8).max(1.0))) height=(format!("{h:.1}")) {
                    title { (day) ": " (views) " views" }
                }
                @if (span - 1 - i) % step == 0 {
                    // Centred under the bar, kept inside the picture.
                    text x=(format!("{:.1}", (x + slot * 0.4).clamp(pad + 14.0, width - 16.0)))
                        y=(height - 10.0) text-anchor="middle" {
                        (day.format("%m-%d"))
                    }
                }
            }
        }
    }
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
        let svg = day_chart(&days, today).into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 30);
        assert!(svg.contains("<title>2026-11-24: 3 views</title>"));
        assert!(svg.contains(">11-24</text>"));
        assert!(svg.matches("</text>").count() <= 2 + 8);
        assert!(
            svg.contains("</line>"),
            "closed, so the bars are not inside it"
        );
        assert_eq!(
            day_chart(&[], today).into_string(),
            "<p class=\"muted\">No views yet.</p>"
        );
    }

    #[test]
    fn the_frame_escapes_its_title() {
        let html = page("<b>&", html! {}, html! {}).into_string();
        assert!(html.contains("<title>&lt;b&gt;&amp; · sage-stream</title>"));
        assert!(html.starts_with("<!DOCTYPE html>"));
    }
}
