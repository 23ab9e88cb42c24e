//! The real judge: Debian's Chromium plays and seeks the sample clip from
//! the player page and uses the admin (driven by `e2e/browser.mjs` with
//! playwright-core); ffmpeg/ffprobe seek in a moov-at-end MP4 over HTTP.
//!
//! Without Node, Chromium or ffmpeg these report as ignored with the
//! reason, unless `SAGE_STREAM_REQUIRE_BROWSER=1` (set by `.ci/run`) makes
//! them fail (`harness = false`: see `common/harness.rs`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::harness::{self, Requirement, Test};
use common::running::start;
use sage_stream::log::{LogFilter, WatchLogStore};

const TOKEN: &str = "e2e-admin-token";

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio_multi_thread(
            "chromium_plays_seeks_and_uses_the_admin",
            2,
            chromium_plays_seeks_and_uses_the_admin,
        )
        .needs(Requirement::Node)
        .needs(Requirement::Chromium)
        .needs(Requirement::Playwright),
        Test::tokio_multi_thread(
            "ffmpeg_seeks_in_a_moov_at_end_mp4_over_http",
            2,
            ffmpeg_seeks_in_a_moov_at_end_mp4_over_http,
        )
        .needs(Requirement::Ffmpeg)
        .needs(Requirement::Ffprobe),
    ]
}

/// A screenshot is "not blank" when its pixels vary: a spread of luma
/// values and a real standard deviation.
fn assert_not_blank(path: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let lumas: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| {
            f64::from(p[0]) * 0.3
                + f64::from(p[1.min(channels - 1)]) * 0.59
                + f64::from(p[2.min(channels - 1)]) * 0.11
        })
        .collect();
    let mean = lumas.iter().sum::<f64>() / lumas.len() as f64;
    let sd = (lumas.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lumas.len() as f64).sqrt();
    assert!(
        info.width >= 800 && info.height >= 600,
        "{}: {}x{}",
        path.display(),
        info.width,
        info.height
    );
    assert!(sd > 10.0, "{} looks blank (sd {sd:.1})", path.display());
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("SAGE_STREAM_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-screenshots"))
}

async fn chromium_plays_seeks_and_uses_the_admin() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    let chromium = harness::chromium();
    let dir = tempfile::tempdir().unwrap();
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
    let server = start(&media, &dir.path().join("log.db"), |c| {
        c.admin_token = Some(TOKEN.into())
    })
    .await;
    let base = format!("http://{}", server.addr);
    let out = screenshot_dir();
    let output = tokio::process::Command::new("node")
        .arg(e2e.join("browser.mjs"))
        .args([base.as_str(), TOKEN])
        .arg(&out)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    eprintln!("browser summary: {summary}");
    assert!(summary["playback"]["afterSeek"].as_f64().unwrap() >= 8.0);
    assert!(summary["csvRows"].as_u64().unwrap() >= 1);
    assert_eq!(summary["pausedByKeyboard"], true);
    assert_eq!(
        summary["cspViolations"],
        serde_json::json!([]),
        "the pages must work under their CSP"
    );

    let store = server.stop().await;
    // The playback is in the log: ranged requests of sample.mp4 with bytes.
    let filter = LogFilter {
        path: Some("sample.mp4".into()),
        status: Some(206),
        ..Default::default()
    };
    let rows = store.query(&filter, None, 1000).unwrap().entries;
    assert!(!rows.is_empty());
    assert!(rows.iter().map(|r| r.bytes_sent).sum::<i64>() > 0);
    assert!(rows.iter().any(|r| r
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("Chrome"))));
    for shot in ["player.png", "admin.png", "analytics.png"] {
        assert_not_blank(&out.join(shot));
    }
}

async fn ffmpeg_seeks_in_a_moov_at_end_mp4_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    // The mp4 muxer writes moov at the end unless told +faststart.
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=10",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(media.join("late.mp4"))
        .status()
        .unwrap();
    assert!(made.success());
    let bytes = std::fs::read(media.join("late.mp4")).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov > mdat, "the fixture really has moov at the end");

    let server = start(&media, &dir.path().join("log.db"), |c| {
        c.admin_token = Some(TOKEN.into())
    })
    .await;
    let url = format!("http://{}/api/stream?path=late.mp4", server.addr);
    let probe = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let duration: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!((duration - 10.0).abs() < 0.2, "{duration}");
    let frame = dir.path().join("frame.png");
    let seek = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-ss",
            "7.5",
            "-i",
            &url,
            "-frames:v",
            "1",
        ])
        .arg(&frame)
        .output()
        .await
        .unwrap();
    assert!(
        seek.status.success(),
        "{}",
        String::from_utf8_lossy(&seek.stderr)
    );
    assert!(std::fs::metadata(&frame).unwrap().len() > 1000);
    let store = server.stop().await;
    // ffmpeg had to jump to the end for moov: a range starting past the data.
    let rows = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    assert!(
        rows.iter().any(|r| r.status == 206
            && r.range_header.as_deref().is_some_and(|h| {
                h.trim_start_matches("bytes=")
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|s| s >= mdat)
            })),
        "{rows:?}"
    );
}
