//! Property: for random files and random range sets, every byte of the
//! response is exactly the file slice its `Content-Range` claims.

use crate::common;

use common::{body_bytes, parse_content_range, parse_multipart, pattern};
use http::{Request, StatusCode};
use proptest::prelude::*;
use sage_stream::StreamEndpoint;
use tower::ServiceExt;

#[derive(Clone, Debug)]
enum Spec {
    FromTo(u64, u64),
    From(u64),
    Last(u64),
}

impl Spec {
    fn render(&self) -> String {
        match self {
            Spec::FromTo(a, b) => format!("{a}-{b}"),
            Spec::From(a) => format!("{a}-"),
            Spec::Last(n) => format!("-{n}"),
        }
    }

    fn satisfiable(&self, len: u64) -> bool {
        match *self {
            Spec::FromTo(a, _) | Spec::From(a) => a < len,
            Spec::Last(n) => n > 0 && len > 0,
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (0u64..6000, 0u64..3000).prop_map(|(a, d)| Spec::FromTo(a, a + d)),
        (0u64..6000).prop_map(Spec::From),
        (0u64..6000).prop_map(Spec::Last),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn responses_are_the_claimed_slices(
        len in 0usize..5000,
        specs in prop::collection::vec(spec(), 1..6),
        cap in prop::option::of(1u64..4000),
        chunk in 1usize..2048,
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let data = pattern(len, seed);
            std::fs::write(dir.path().join("f.mp4"), &data).unwrap();
            let mut endpoint = StreamEndpoint::new(dir.path()).chunk_size(chunk);
            endpoint = match cap { Some(c) => endpoint.max_load_volume(c), None => endpoint.unlimited_volume() };
            let svc = endpoint.into_service();
            let header = format!("bytes={}", specs.iter().map(Spec::render).collect::<Vec<_>>().join(","));
            let req = Request::get("/?path=f.mp4").header("range", &header).body(()).unwrap();
            let res = svc.oneshot(req).await.unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let body = body_bytes(res).await;
            assert_eq!(headers["content-length"], body.len().to_string().as_str());
            let any_satisfiable = specs.iter().any(|s| s.satisfiable(len as u64));
            match status {
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    assert!(!any_satisfiable, "416 for {header} on {len} bytes");
                    assert_eq!(headers["content-range"], format!("bytes */{len}").as_str());
                }
                StatusCode::PARTIAL_CONTENT => {
                    assert!(any_satisfiable);
                    let content_type = headers["content-type"].to_str().unwrap();
                    let slices: Vec<((u64, u64, u64), Vec<u8>)> = if content_type.starts_with("multipart/") {
                        parse_multipart(content_type, &body)
                            .into_iter()
                            .map(|p| (parse_content_range(&p.content_range), p.body))
                            .collect()
                    } else {
                        vec![(parse_content_range(headers["content-range"].to_str().unwrap()), body.to_vec())]
                    };
                    let mut total = 0u64;
                    let mut previous_end: Option<u64> = None;
                    for ((a, b, l), bytes) in slices {
                        assert_eq!(l, len as u64);
                        assert!(a <= b && b < l);
                        // Sorted, not overlapping, not adjacent.
                        if let Some(end) = previous_end { assert!(a > end + 1); }
                        previous_end = Some(b);
                        assert_eq!(bytes.as_slice(), &data[a as usize..=b as usize]);
                        total += b - a + 1;
                    }
                    assert!(total <= len as u64);
                    if let Some(cap) = cap { assert!(total <= cap); }
                }
                other => panic!("unexpected {other} for {header}"),
            }
        });
    }
}
