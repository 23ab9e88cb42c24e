//! Fuzz harnesses (feature `fuzzing`, not part of the API): each takes
//! arbitrary bytes, drives one parser or rule of the crate and panics when
//! an invariant breaks. `fuzz/` runs them under AFL++ (`cargo afl`), and
//! `tests/fuzz_corpus.rs` replays the kept corpora in every test run.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::extension::normalise;
use crate::extension::{resolve_ranges as resolve, Resolved};
use crate::extension::{MediaPathSource, RangeRequest};
use crate::media::body::Segment;
use crate::media::conditional::{evaluate, Validators};
use crate::media::path::open_confined;
use crate::media::respond::multipart_segments;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, b) in data.iter().skip(at).take(8).enumerate() {
        bytes[i] = *b;
    }
    u64::from_le_bytes(bytes)
}

/// `Range` parsing and resolution: the result is sorted, disjoint,
/// non-adjacent, inside the file and within the cap.
pub fn range(data: &[u8]) {
    let len = u64_at(data, 0) % (1 << 40);
    let cap = match u64_at(data, 8) % 4 {
        0 => None,
        n => Some(1 + u64_at(data, 16) % (n << 20)),
    };
    let header = text(data.get(24..).unwrap_or_default());
    let Some(request) = RangeRequest::parse(&header, 32) else {
        return;
    };
    assert!(!request.specs().is_empty() && request.specs().len() <= 32);
    match resolve(request.specs(), len, cap) {
        Resolved::Unsatisfiable => {}
        Resolved::Ranges(ranges) => {
            assert!(!ranges.is_empty());
            let mut total = 0u64;
            for (i, r) in ranges.iter().enumerate() {
                assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
                if i > 0 {
                    assert!(ranges[i - 1].end < r.start, "{ranges:?}");
                }
                total += r.end - r.start;
            }
            assert!(total <= len && cap.is_none_or(|c| total <= c));
        }
    }
}

struct Confined {
    root: PathBuf,
}

/// A media root with files, a directory, a symlink inside and two that
/// escape, beside a sentinel outside the root.
fn confined_root() -> &'static Confined {
    static ROOT: OnceLock<Confined> = OnceLock::new();
    ROOT.get_or_init(|| {
        // One fixed directory, made idempotently: every run and every
        // parallel fuzzer shares it instead of leaving one behind per process.
        let base = std::env::temp_dir().join("sage-stream-fuzz-root");
        let root = base.join("root");
        let _ = std::fs::create_dir_all(root.join("dir/sub"));
        let _ = std::fs::write(base.join("sentinel"), b"outside");
        let _ = std::fs::write(root.join("a.mp4"), b"a");
        let _ = std::fs::write(root.join("dir/sub/b.webm"), b"b");
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink("a.mp4", root.join("inside"));
            let _ = std::os::unix::fs::symlink("../sentinel", root.join("escape"));
            let _ = std::os::unix::fs::symlink(&base, root.join("dir/up"));
        }
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        Confined { root }
    })
}

/// Path decoding and confinement: a normalised path is relative, clean and
/// stable, and whatever opens lies under the root.
pub fn path(data: &[u8]) {
    let raw = text(data);
    let Ok(clean) = normalise(&raw, 1024) else {
        return;
    };
    assert!(!clean.is_empty() && clean.len() <= 1024);
    assert!(!clean.starts_with('/') && !clean.contains('\\'));
    assert!(!clean.chars().any(char::is_control));
    assert!(clean
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".."));
    assert_eq!(normalise(&clean, 1024).as_deref(), Ok(clean.as_str()));
    let confined = confined_root();
    if let Ok((_file, _meta)) = open_confined(&confined.root, &clean, false) {
        let opened = std::fs::canonicalize(confined.root.join(&clean)).unwrap_or_default();
        assert!(
            opened.starts_with(&confined.root),
            "{clean:?} opened {opened:?}"
        );
        assert!(!opened.ends_with("sentinel"));
    }
}

/// Query decoding: `MediaPathSource` finds the value a link it wrote
/// carries, and never panics on any query.
pub fn query(data: &[u8]) {
    let (name, rest) = match data.split_first() {
        Some((n, rest)) => (usize::from(*n % 4), rest),
        None => return,
    };
    let var = ["path", "video", "p a", "x&y"][name];
    let source = MediaPathSource::query(var);
    // `http::Uri` takes at most 64 KiB; media paths are at most 1 KiB.
    let raw = text(&rest[..rest.len().min(4096)]);
    if let Ok(uri) = format!("/s?{}", raw.replace([' ', '#'], "")).parse::<Uri>() {
        let _ = source.decode(&uri);
    }
    // A link decodes to the path it names, normalised (or refused) by the
    // same rule whichever way it travels.
    let expected = normalise(&raw, 1024);
    let link = source.link("/s", &raw, "expires=1");
    let uri: Uri = link.parse().unwrap_or_else(|e| panic!("{link:?}: {e}"));
    assert_eq!(source.decode(&uri), expected, "{link}");
    let by_uri = MediaPathSource::uri_prefix("/m");
    let link = by_uri.link("/m", &raw, "");
    let uri: Uri = link.parse().unwrap_or_else(|e| panic!("{link:?}: {e}"));
    assert_eq!(by_uri.decode(&uri), expected, "{link}");
}

/// Preconditions: never a panic, and HEAD is judged exactly as GET.
pub fn conditional(data: &[u8]) {
    const NAMES: [&str; 5] = [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
    ];
    let mut headers = HeaderMap::new();
    for (i, value) in data.split(|b| *b == 0xff).take(10).enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(NAMES[i % NAMES.len()]), value);
        }
    }
    let modified = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    // The last input byte picks whether the date has settled (the file
    // changed over a second before the response) or not.
    let now = UNIX_EPOCH
        + Duration::from_secs(1_700_000_000 + data.last().map_or(0, |b| u64::from(b & 1)));
    let v = Validators {
        etag: "\"65535f00.0-2a\"",
        modified,
        modified_exact: modified,
        now,
    };
    let get = evaluate(&Method::GET, &headers, &v);
    assert_eq!(get, evaluate(&Method::HEAD, &headers, &v));
    let _ = evaluate(&Method::POST, &headers, &v);
}

/// The multipart writer: the announced length is the sum of the parts, and
/// the file parts are exactly the ranges, in order.
pub fn multipart(data: &[u8]) {
    let len = 1 + u64_at(data, 0) % (1 << 32);
    let mut specs = Vec::new();
    for pair in data.get(8..).unwrap_or_default().chunks(8).take(64) {
        let a = u64_at(pair, 0) % len;
        specs.push(crate::extension::ByteRangeSpec::FromTo(
            a,
            a + u64_at(pair, 4) % 4096,
        ));
    }
    let Resolved::Ranges(ranges) = resolve(&specs, len, None) else {
        return;
    };
    let content_type = ["video/mp4", "text/plain; charset=utf-8", ""][data.len() % 3];
    let (segments, total): (VecDeque<Segment>, u64) =
        multipart_segments(&ranges, len, content_type, "BOUNDARY");
    let mut sum = 0u64;
    let mut files: Vec<Range<u64>> = Vec::new();
    for segment in &segments {
        match segment {
            Segment::Static(bytes) => sum += bytes.len() as u64,
            Segment::File { offset, len } => {
                sum += len;
                files.push(*offset..offset + len);
            }
        }
    }
    assert_eq!(sum, total);
    assert_eq!(files, ranges);
}

/// A harness: panics when an invariant breaks on `data`.
pub type Harness = fn(&[u8]);

/// Every harness by name, for the fuzz binaries and the corpus replay.
pub const TARGETS: [(&str, Harness); 5] = [
    ("range", range),
    ("path", path),
    ("query", query),
    ("conditional", conditional),
    ("multipart", multipart),
];
