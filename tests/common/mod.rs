//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

/// A media root in a temp dir, with a sentinel file beside it (outside).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub sentinel: PathBuf,
}

pub const SENTINEL: &[u8] = b"SENTINEL-OUTSIDE-THE-MEDIA-ROOT";

/// Deterministic pseudo-random bytes, so failures are reproducible.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir(&root).unwrap();
        let sentinel = dir.path().join("secret.txt");
        std::fs::write(&sentinel, SENTINEL).unwrap();
        Self {
            dir,
            root,
            sentinel,
        }
    }

    /// Writes `root/name` with `len` pattern bytes and returns the bytes.
    pub fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let bytes = pattern(len, name.len() as u64 + len as u64);
        let path = self.root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

pub async fn body_bytes<B>(response: Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    response.into_body().collect().await.unwrap().to_bytes()
}

/// One part of a multipart/byteranges body.
#[derive(Debug)]
pub struct Part {
    pub content_type: String,
    pub content_range: String,
    pub body: Vec<u8>,
}

/// Parses a multipart/byteranges body strictly: any deviation panics.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart content type");
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let mut first = true;
    loop {
        let expected: Vec<u8> = if first {
            delimiter.as_bytes().to_vec()
        } else {
            format!("\r\n{delimiter}").into_bytes()
        };
        assert!(rest.starts_with(&expected), "expected delimiter");
        rest = &rest[expected.len()..];
        first = false;
        if rest == b"--\r\n" {
            return parts;
        }
        assert!(rest.starts_with(b"\r\n"));
        rest = &rest[2..];
        let header_end = find(rest, b"\r\n\r\n").expect("end of part headers");
        let headers = std::str::from_utf8(&rest[..header_end]).unwrap();
        rest = &rest[header_end + 4..];
        let mut content_type = String::new();
        let mut content_range = String::new();
        for line in headers.split("\r\n") {
            let (name, value) = line.split_once(": ").unwrap();
            match name {
                "Content-Type" => content_type = value.to_owned(),
                "Content-Range" => content_range = value.to_owned(),
                other => panic!("unexpected part header {other}"),
            }
        }
        let (first_byte, last_byte, _) = parse_content_range(&content_range);
        let len = (last_byte - first_byte + 1) as usize;
        parts.push(Part {
            content_type,
            content_range,
            body: rest[..len].to_vec(),
        });
        rest = &rest[len..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `bytes a-b/len` → (a, b, len).
/// Parses a `multipart/byteranges` body, checks each part's bytes against
/// `file` at the range its `Content-Range` names, and returns how many
/// parts there were.
pub fn check_multipart_against(content_type: &str, body: &[u8], file: &[u8]) -> usize {
    let parts = parse_multipart(content_type, body);
    for part in &parts {
        let (start, end, _) = parse_content_range(&part.content_range);
        assert_eq!(
            part.body,
            &file[start as usize..=end as usize],
            "{}",
            part.content_range
        );
    }
    parts.len()
}

pub fn parse_content_range(value: &str) -> (u64, u64, u64) {
    let rest = value.strip_prefix("bytes ").unwrap();
    let (range, len) = rest.split_once('/').unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap(), len.parse().unwrap())
}

/// Whether the server closes `stream` within `limit` (reading and
/// discarding whatever it sends first).
pub async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

pub mod harness;

pub mod oneshot;

#[cfg(feature = "cli")]
pub mod served;

#[cfg(all(feature = "server", feature = "sqlite"))]
pub mod running;

#[cfg(all(feature = "server", feature = "sqlite"))]
pub mod app;

#[cfg(feature = "postgres")]
pub mod pg;

#[cfg(feature = "postgres")]
pub mod own_pg;
