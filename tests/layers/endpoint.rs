//! `oneshot` tests of the stacked endpoint: every rule, bytes compared with
//! the file on disk.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::oneshot::{call, get, request};
use common::{body_bytes, parse_content_range, parse_multipart, Fixture};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use sage_stream::extension::MediaPathSource;
use sage_stream::extension::Viewer;
use sage_stream::permission::{
    permission_fn, AllowAny, Checked, Denial, IsAuthenticated, PermissionExt, RequestHead,
    RequirePermissionLayer, SignedUrl,
};
use sage_stream::{media::ServeMedia, StreamEndpoint};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn full_file_with_validators() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 300_000);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let (status, h, body) = get(&svc, "/api/stream?path=clip.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["content-length"], "300000");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(!h.contains_key("content-range"));
    let modified = std::fs::metadata(fx.path("clip.mp4"))
        .unwrap()
        .modified()
        .unwrap();
    let since = modified.duration_since(UNIX_EPOCH).unwrap();
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    assert_eq!(
        h["etag"],
        format!("\"{secs:x}.{nanos:x}-{:x}\"", 300_000).as_str()
    );
    assert_eq!(
        h["last-modified"],
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs)).as_str()
    );
}

#[tokio::test]
async fn single_ranges_match_the_file() {
    let fx = Fixture::new();
    let data = fx.file("a.webm", 1000);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    // (Range, first, last)
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-1", 0, 1),
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-1", 999, 999),
        ("bytes=-250", 750, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=900-5000", 900, 999),
        ("bytes=999-999", 999, 999),
        ("bytes=0-5,3-10", 0, 10),
        ("bytes=0-4,5-9", 0, 9),
        ("bytes=5-9, 2000-3000", 5, 9),
        ("bytes = 1-2", 1, 2),
    ];
    for (range, first, last) in cases {
        let (status, h, body) = get(&svc, "/?path=a.webm", &[("range", range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            h["content-range"],
            format!("bytes {first}-{last}/1000").as_str(),
            "{range}"
        );
        assert_eq!(
            h["content-length"],
            (last - first + 1).to_string().as_str(),
            "{range}"
        );
        assert_eq!(h["content-type"], "video/webm");
        assert_eq!(body, &data[*first..=*last], "{range}");
    }
}

#[tokio::test]
async fn unsatisfiable_and_ignored_ranges() {
    let fx = Fixture::new();
    let data = fx.file("a.mp4", 1000);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    for range in [
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=1000-1001,2000-",
    ] {
        let (status, h, body) = get(&svc, "/?path=a.mp4", &[("range", range)]).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(h["content-range"], "bytes */1000");
        assert_eq!(body, b"range not satisfiable");
    }
    // Syntactically invalid, other units, too many specs: ignored → 200.
    let many = format!("bytes={}", vec!["0-0"; 33].join(","));
    for range in [
        "bytes=9-1",
        "bytes=abc",
        "items=0-1",
        "bytes=--1",
        many.as_str(),
    ] {
        let (status, h, body) = get(&svc, "/?path=a.mp4", &[("range", range)]).await;
        assert_eq!(status, StatusCode::OK, "{range}");
        assert!(!h.contains_key("content-range"));
        assert_eq!(body, data);
    }
}

#[tokio::test]
async fn multipart_byteranges_are_exact() {
    let fx = Fixture::new();
    let data = fx.file("m.mp4", 5000);
    let svc = StreamEndpoint::new(&fx.root).chunk_size(7).into_service();
    let (status, h, body) = get(
        &svc,
        "/?path=m.mp4",
        &[("range", "bytes=4000-4099, 0-9, -10, 5-20")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    let parts = parse_multipart(h["content-type"].to_str().unwrap(), &body);
    // Sorted and coalesced: 0-20, 4000-4099, 4990-4999.
    let ranges: Vec<_> = parts
        .iter()
        .map(|p| parse_content_range(&p.content_range))
        .collect();
    assert_eq!(
        ranges,
        vec![(0, 20, 5000), (4000, 4099, 5000), (4990, 4999, 5000)]
    );
    for part in &parts {
        let (a, b, _) = parse_content_range(&part.content_range);
        assert_eq!(part.content_type, "video/mp4");
        assert_eq!(part.body, &data[a as usize..=b as usize]);
    }
}

#[tokio::test]
async fn thousands_of_overlapping_ranges_stay_small() {
    let fx = Fixture::new();
    fx.file("m.mp4", 1000);
    let svc = StreamEndpoint::new(&fx.root)
        .max_ranges(10_000)
        .into_service();
    let header = format!("bytes={}", vec!["0-999"; 5000].join(","));
    let (status, h, body) = get(&svc, "/?path=m.mp4", &[("range", &header)]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 0-999/1000");
    assert_eq!(body.len(), 1000);
}

#[tokio::test]
async fn head_mirrors_get_without_a_body() {
    let fx = Fixture::new();
    fx.file("h.mp4", 4321);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    for headers in [
        vec![],
        vec![("range", "bytes=1-10")],
        vec![("range", "bytes=0-1,5-6")],
    ] {
        let (gs, gh, _) = get(&svc, "/?path=h.mp4", &headers).await;
        let (hs, hh, hb) = call(&svc, Method::HEAD, "/?path=h.mp4", &headers).await;
        assert_eq!(gs, hs);
        assert!(hb.is_empty());
        for name in [
            "content-length",
            "content-range",
            "etag",
            "last-modified",
            "accept-ranges",
        ] {
            assert_eq!(gh.get(name), hh.get(name), "{name}");
        }
        if gh
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("multipart")
        {
            assert_eq!(gh["content-length"], hh["content-length"]);
        } else {
            assert_eq!(gh["content-type"], hh["content-type"]);
        }
    }
}

/// Dates the file ten seconds back: a `Last-Modified` is a strong
/// validator for `If-Range` only once a second has passed since the change
/// (RFC 9110 §13.1.5; see `tests/open_file_cache.rs`).
fn settle(fx: &Fixture, name: &str) {
    std::fs::File::options()
        .write(true)
        .open(fx.path(name))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(10))
        .unwrap();
}

/// Go's `ServeContent` tests `range_no_match`, `range_with_modtime_mismatch`
/// and `range_match_weak_etag` send HEAD too: HEAD must judge `If-Range`
/// exactly as GET does (200 without a match, 206 with one).
#[tokio::test]
async fn head_judges_if_range_as_get_does() {
    let fx = Fixture::new();
    let data = fx.file("r.mp4", 5000);
    settle(&fx, "r.mp4");
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let (_, full, _) = get(&svc, "/?path=r.mp4", &[]).await;
    let etag = full["etag"].to_str().unwrap().to_owned();
    let modified = full["last-modified"].to_str().unwrap().to_owned();
    let weak = format!("W/{etag}");
    let cases = [
        ("\"no-match\"".to_owned(), StatusCode::OK),
        ("Wed, 21 Oct 2015 07:28:00 GMT".to_owned(), StatusCode::OK),
        (weak, StatusCode::OK),
        (etag.clone(), StatusCode::PARTIAL_CONTENT),
        (modified, StatusCode::PARTIAL_CONTENT),
    ];
    for (if_range, want) in cases {
        let headers = [("range", "bytes=10-19"), ("if-range", if_range.as_str())];
        let (gs, gh, gb) = get(&svc, "/?path=r.mp4", &headers).await;
        let (hs, hh, hb) = call(&svc, Method::HEAD, "/?path=r.mp4", &headers).await;
        assert_eq!((gs, hs), (want, want), "If-Range: {if_range}");
        assert!(hb.is_empty());
        assert_eq!(gh.get("content-range"), hh.get("content-range"));
        assert_eq!(gh["content-length"], hh["content-length"]);
        let expected = if want == StatusCode::OK {
            &data[..]
        } else {
            &data[10..20]
        };
        assert_eq!(gb, expected, "If-Range: {if_range}");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let fx = Fixture::new();
    fx.file("x.mp4", 10);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let (status, h, body) = call(&svc, method, "/?path=x.mp4", &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(h["allow"], "GET, HEAD");
        assert_eq!(body, b"method not allowed");
    }
}

#[tokio::test]
async fn preconditions_in_rfc_order() {
    let fx = Fixture::new();
    let data = fx.file("p.mp4", 100);
    settle(&fx, "p.mp4");
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let (_, h, _) = get(&svc, "/?path=p.mp4", &[]).await;
    let etag = h["etag"].to_str().unwrap().to_owned();
    let last_modified = h["last-modified"].to_str().unwrap().to_owned();
    let weak = format!("W/{etag}");
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400));
    let cases: Vec<(Vec<(&str, &str)>, StatusCode)> = vec![
        (vec![("if-match", &etag)], StatusCode::OK),
        (
            vec![("if-match", "\"nope\"")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (vec![("if-match", &weak)], StatusCode::PRECONDITION_FAILED),
        (
            vec![("if-unmodified-since", old)],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-unmodified-since", &last_modified)],
            StatusCode::OK,
        ),
        (vec![("if-none-match", &etag)], StatusCode::NOT_MODIFIED),
        (vec![("if-none-match", &weak)], StatusCode::NOT_MODIFIED),
        (vec![("if-none-match", "*")], StatusCode::NOT_MODIFIED),
        (
            vec![("if-none-match", "\"x\", "), ("if-none-match", &etag)],
            StatusCode::NOT_MODIFIED,
        ),
        (vec![("if-none-match", "\"other\"")], StatusCode::OK),
        (
            vec![("if-modified-since", &last_modified)],
            StatusCode::NOT_MODIFIED,
        ),
        (
            vec![("if-modified-since", &future)],
            StatusCode::NOT_MODIFIED,
        ),
        (vec![("if-modified-since", old)], StatusCode::OK),
        (
            vec![
                ("if-none-match", "\"other\""),
                ("if-modified-since", &future),
            ],
            StatusCode::OK,
        ),
        (
            vec![("if-match", "\"nope\""), ("if-none-match", &etag)],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("range", "bytes=0-9"), ("if-range", &etag)],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            vec![("range", "bytes=0-9"), ("if-range", &last_modified)],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            vec![("range", "bytes=0-9"), ("if-range", "\"stale\"")],
            StatusCode::OK,
        ),
        (
            vec![("range", "bytes=0-9"), ("if-range", &weak)],
            StatusCode::OK,
        ),
        (
            vec![("range", "bytes=0-9"), ("if-range", old)],
            StatusCode::OK,
        ),
    ];
    for (headers, want) in cases {
        let (status, h, body) = get(&svc, "/?path=p.mp4", &headers).await;
        assert_eq!(status, want, "{headers:?}");
        match status {
            StatusCode::OK => assert_eq!(body, data),
            StatusCode::PARTIAL_CONTENT => assert_eq!(body, &data[..10]),
            StatusCode::NOT_MODIFIED => {
                assert!(body.is_empty());
                assert_eq!(h["etag"], etag.as_str());
                assert_eq!(h["last-modified"], last_modified.as_str());
                assert!(!h.contains_key("content-length"));
            }
            _ => assert_eq!(body, b"precondition failed"),
        }
    }
}

#[tokio::test]
async fn cap_is_exact_on_a_one_gib_file() {
    let fx = Fixture::new();
    // Sparse: costs no disk.
    let file = std::fs::File::create(fx.path("big.mp4")).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let (status, h, body) = get(&svc, "/?path=big.mp4", &[("range", "bytes=0-")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 0-8388607/1073741824");
    assert_eq!(h["content-length"], "8388608");
    assert_eq!(body.len(), 8 * 1024 * 1024);

    let (_, h, body) = get(&svc, "/?path=big.mp4", &[("range", "bytes=0-1")]).await;
    assert_eq!(h["content-range"], "bytes 0-1/1073741824");
    assert_eq!(body.len(), 2);

    // Several ranges: the cap applies to their total.
    let small = StreamEndpoint::new(&fx.root)
        .max_load_volume(15)
        .into_service();
    let (_, h, body) = get(&small, "/?path=big.mp4", &[("range", "bytes=0-9,100-199")]).await;
    let parts = parse_multipart(h["content-type"].to_str().unwrap(), &body);
    let ranges: Vec<_> = parts
        .iter()
        .map(|p| parse_content_range(&p.content_range))
        .collect();
    assert_eq!(ranges, vec![(0, 9, 1 << 30), (100, 104, 1 << 30)]);

    // No Range header: the response is not changed.
    let res = svc
        .clone()
        .oneshot(request(Method::GET, "/?path=big.mp4", &[]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], "1073741824");
}

#[tokio::test]
async fn cap_cuts_a_foreign_service() {
    use sage_stream::cap::CapVolumeLayer;
    use tower_http::services::ServeDir;
    let fx = Fixture::new();
    let data = fx.file("d.mp4", 100_000);
    let svc = ServiceBuilder::new()
        .layer(CapVolumeLayer::new(1000))
        .service(ServeDir::new(&fx.root));
    let (status, h, body) = get(&svc, "/d.mp4", &[("range", "bytes=50-")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 50-1049/100000");
    assert_eq!(h["content-length"], "1000");
    assert_eq!(body, &data[50..1050]);
}

#[tokio::test]
async fn zero_length_file() {
    let fx = Fixture::new();
    fx.file("empty.mp4", 0);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let (status, h, body) = get(&svc, "/?path=empty.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["content-length"], "0");
    assert!(body.is_empty());
    for range in ["bytes=0-", "bytes=-1", "bytes=0-0"] {
        let (status, h, _) = get(&svc, "/?path=empty.mp4", &[("range", range)]).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(h["content-range"], "bytes */0");
    }
}

#[tokio::test]
async fn missing_bad_and_unreadable_paths() {
    let fx = Fixture::new();
    fx.file("dir/clip.mp4", 10);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    let cases: &[(&str, StatusCode, &[u8])] = &[
        (
            "/api/stream",
            StatusCode::BAD_REQUEST,
            b"missing media path",
        ),
        (
            "/api/stream?other=1",
            StatusCode::BAD_REQUEST,
            b"missing media path",
        ),
        (
            "/api/stream?path=",
            StatusCode::BAD_REQUEST,
            b"empty media path",
        ),
        (
            "/api/stream?path=dir",
            StatusCode::NOT_FOUND,
            b"media not found",
        ),
        (
            "/api/stream?path=dir/",
            StatusCode::NOT_FOUND,
            b"media not found",
        ),
        (
            "/api/stream?path=nope.mp4",
            StatusCode::NOT_FOUND,
            b"media not found",
        ),
        (
            "/api/stream?path=dir/clip.mp4/x",
            StatusCode::NOT_FOUND,
            b"media not found",
        ),
        ("/api/stream?path=dir/clip.mp4", StatusCode::OK, b""),
    ];
    for (uri, want, reason) in cases {
        let (status, _, body) = get(&svc, uri, &[]).await;
        assert_eq!(status, *want, "{uri}");
        if !reason.is_empty() {
            assert_eq!(&body, reason, "{uri}");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fx.file("locked.mp4", 10);
        std::fs::set_permissions(
            fx.path("locked.mp4"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        // Root reads anything; only assert where the OS enforces the mode.
        if std::fs::File::open(fx.path("locked.mp4")).is_err() {
            let (status, _, body) = get(&svc, "/?path=locked.mp4", &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body, b"media not readable");
        }
    }
}

#[tokio::test]
async fn path_var_and_uri_path_modes() {
    let fx = Fixture::new();
    let data = fx.file("clips/a b.mp4", 64);
    let by_var = StreamEndpoint::new(&fx.root)
        .media_path(MediaPathSource::query("video"))
        .into_service();
    assert_eq!(get(&by_var, "/?video=clips%2Fa+b.mp4", &[]).await.2, data);
    assert_eq!(
        get(&by_var, "/?path=clips/a%20b.mp4", &[]).await.0,
        StatusCode::BAD_REQUEST
    );

    let by_uri = ServeMedia::new(&fx.root).media_path(MediaPathSource::uri_prefix("/media/"));
    assert_eq!(get(&by_uri, "/media/clips/a%20b.mp4", &[]).await.2, data);
    assert_eq!(
        get(&by_uri, "/mediax/clips/a%20b.mp4", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&by_uri, "/media/../secret.txt", &[]).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&by_uri, "/media/%2e%2e/secret.txt", &[]).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn django_regex_grammar() {
    let fx = Fixture::new();
    let data = fx.file("r.mp4", 100);
    let regex = regex::Regex::new(sage_stream::range::DJANGO_RANGE_PATTERN).unwrap();
    let svc = StreamEndpoint::new(&fx.root)
        .range_regex(regex)
        .into_service();
    let (status, h, body) = get(&svc, "/?path=r.mp4", &[("range", "bytes=0-1")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 0-1/100");
    assert_eq!(body, &data[..2]);
    let (status, _, body) = get(&svc, "/?path=r.mp4", &[("range", "bytes=-5")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
}

#[tokio::test]
async fn file_shrinking_mid_stream_ends_with_an_error() {
    let fx = Fixture::new();
    let data = fx.file("s.mp4", 1 << 20);
    let svc = StreamEndpoint::new(&fx.root)
        .chunk_size(64 * 1024)
        .into_service();
    let res = svc
        .oneshot(request(Method::GET, "/?path=s.mp4", &[]))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-length"],
        (1u64 << 20).to_string().as_str()
    );
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(fx.path("s.mp4"))
        .unwrap()
        .set_len(100_000)
        .unwrap();
    let mut received = first.to_vec();
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(err)) => break err,
            None => panic!("body ended without an error after {} bytes", received.len()),
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(received.len() < data.len());
    assert_eq!(
        received,
        &data[..received.len()],
        "every byte sent is a byte of the file"
    );
}

#[tokio::test]
async fn permissions_refuse_with_reasons() {
    let fx = Fixture::new();
    let data = fx.file("v.mp4", 10);
    let open = StreamEndpoint::new(&fx.root)
        .permission(AllowAny)
        .into_service();
    assert_eq!(get(&open, "/?path=v.mp4", &[]).await.2, data);

    let auth = StreamEndpoint::new(&fx.root)
        .permission(IsAuthenticated)
        .into_service();
    let (status, h, body) = get(&auth, "/?path=v.mp4", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], "Bearer realm=\"sage-stream\"");
    assert_eq!(body, b"authentication required");
    let mut req = request(Method::GET, "/?path=v.mp4", &[]);
    req.extensions_mut().insert(Viewer::user("7"));
    let res = auth.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_bytes(res).await, data);

    let no_webm = |r: &RequestHead<'_>| match r.media_path() {
        Some(p) if p.ends_with(".webm") => Err(Denial::forbidden("webm is off")),
        _ => Ok(()),
    };
    let either = StreamEndpoint::new(&fx.root)
        .permission(IsAuthenticated.or(no_webm))
        .into_service();
    assert_eq!(get(&either, "/?path=v.mp4", &[]).await.0, StatusCode::OK);
    // Both refuse: the 401 wins, credentials could help.
    assert_eq!(
        get(&either, "/?path=v.webm", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let inverted = StreamEndpoint::new(&fx.root)
        .permission(AllowAny.not())
        .into_service();
    let (status, _, body) = get(&inverted, "/?path=v.mp4", &[]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::FORBIDDEN, &b"forbidden"[..])
    );
}

#[tokio::test]
async fn async_permission() {
    let fx = Fixture::new();
    fx.file("v.mp4", 10);
    let check = permission_fn(|req: Request<()>| async move {
        tokio::task::yield_now().await;
        let decision = if req.headers().contains_key("x-allowed") {
            Ok(())
        } else {
            Err(Denial::forbidden("policy says no"))
        };
        Checked::new(req, decision)
    });
    let svc = ServiceBuilder::new()
        .layer(RequirePermissionLayer::new_async(check))
        .service(ServeMedia::new(&fx.root));
    let (status, _, body) = get(&svc, "/?path=v.mp4", &[]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::FORBIDDEN, &b"policy says no"[..])
    );
    assert_eq!(
        get(&svc, "/?path=v.mp4", &[("x-allowed", "1")]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signed_urls() {
    let fx = Fixture::new();
    let data = fx.file("dir/s.mp4", 10);
    let signer = SignedUrl::new("k3y");
    let svc = StreamEndpoint::new(&fx.root)
        .permission(signer.clone())
        .into_service();
    // The link without its `?`: `path=…&expires=…&signature=…`.
    let query = signer.signed_link("", "dir/s.mp4", Duration::from_secs(60))[1..].to_owned();
    let (status, _, body) = get(&svc, &format!("/api/stream?{query}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = format!(
        "/?path=dir/s.mp4&expires={}&signature={}",
        now - 1,
        signer.sign("dir/s.mp4", now - 1)
    );
    let other_key = SignedUrl::new("other").signed_link("", "dir/s.mp4", Duration::from_secs(60))
        [1..]
        .to_owned();
    let other_path = query
        .replace("dir%2Fs.mp4", "dir%2Ft.mp4")
        .replace("dir/s.mp4", "dir/t.mp4");
    let later = query.replace("expires=", "expires=9");
    let cases = [
        ("/?path=dir/s.mp4".to_owned(), "missing signature"),
        (expired, "link expired"),
        (format!("/?{other_key}"), "invalid signature"),
        (format!("/?{other_path}"), "invalid signature"),
        (format!("/?{later}"), "invalid signature"),
        (
            format!("/?{query}").replace("signature=", "signature=zz"),
            "invalid signature",
        ),
    ];
    for (uri, reason) in cases {
        let (status, _, body) = get(&svc, &uri, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(String::from_utf8(body).unwrap(), reason, "{uri}");
    }
}

#[tokio::test]
async fn settings_drive_the_endpoint() {
    use sage_stream::settings::Settings;
    let fx = Fixture::new();
    let data = fx.file("big.mp4", 3 * 1024 * 1024);
    let settings = Settings::from_lookup(|name| match name {
        "STREAM_MAX_LOAD_VOLUME" => Some("1".into()),
        "STREAM_DEFAULT_VIDEO_PATH_URL_VAR" => Some("v".into()),
        "STREAM_DEFAULT_PERMISSION_CLASSES" => Some("IsAuthenticated".into()),
        _ => None,
    })
    .unwrap();
    let svc = StreamEndpoint::from_settings(&fx.root, &settings)
        .unwrap()
        .into_service();
    assert_eq!(
        get(&svc, "/?v=big.mp4", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut req = request(Method::GET, "/?v=big.mp4", &[("range", "bytes=100-")]);
    req.extensions_mut().insert(Viewer::user("u"));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["content-range"], "bytes 100-1048675/3145728");
    assert_eq!(body_bytes(res).await, &data[100..100 + 1024 * 1024]);
}

/// Behind a trusted proxy the stream limit counts each forwarded client on
/// its own; an untrusted peer's `X-Forwarded-For` is ignored.
#[tokio::test]
async fn stream_limit_counts_clients_behind_a_trusted_proxy() {
    use sage_stream::client_ip::ResolveClientIpLayer;
    use sage_stream::extension::PeerAddr;
    use sage_stream::limit::ViewerStreamLimitLayer;

    let fx = Fixture::new();
    fx.file("l.mp4", 100);
    let request = |peer: &str, client: &str| {
        let mut req = Request::get("/?path=l.mp4")
            .header("x-forwarded-for", client)
            .body(())
            .unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        req
    };
    let proxy = "10.0.0.1:4000";
    // Trusted proxies are configured once, at the edge; the limit reads
    // the client IP found there.
    let trusted = ServiceBuilder::new()
        .layer(ResolveClientIpLayer::new(["10.0.0.0/8".parse().unwrap()]))
        .layer(ViewerStreamLimitLayer::new(1))
        .service(StreamEndpoint::new(&fx.root).into_service());
    let first = trusted
        .clone()
        .oneshot(request(proxy, "203.0.113.1"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let other = trusted
        .clone()
        .oneshot(request(proxy, "203.0.113.2"))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client behind the proxy"
    );
    let same = trusted
        .clone()
        .oneshot(request(proxy, "203.0.113.1"))
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::TOO_MANY_REQUESTS);
    // An untrusted peer cannot pick a key with the header.
    let spoofing = trusted
        .clone()
        .oneshot(request("198.51.100.7:1", "203.0.113.9"))
        .await
        .unwrap();
    assert_eq!(spoofing.status(), StatusCode::OK);
    let spoofing_again = trusted
        .clone()
        .oneshot(request("198.51.100.7:1", "203.0.113.10"))
        .await
        .unwrap();
    assert_eq!(spoofing_again.status(), StatusCode::TOO_MANY_REQUESTS);
    drop((first, other, spoofing));
    let freed = trusted
        .oneshot(request(proxy, "203.0.113.1"))
        .await
        .unwrap();
    assert_eq!(freed.status(), StatusCode::OK);
}

/// A same-size file replaced within the same second gets a new `ETag`, so a
/// resumed download with the old one restarts (200, the new bytes) instead
/// of splicing two versions — with and without the file id in the tag.
#[tokio::test]
async fn a_same_second_replacement_changes_the_etag() {
    use std::time::Duration;
    for with_file_id in [false, true] {
        let fx = Fixture::new();
        let path = fx.root.join("swap.mp4");
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let write = |byte: u8, at: SystemTime| {
            // A new file renamed over the old one, as a deploy does.
            let tmp = fx.root.join("swap.tmp");
            std::fs::write(&tmp, vec![byte; 4096]).unwrap();
            let file = std::fs::File::options().write(true).open(&tmp).unwrap();
            file.set_modified(at).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(b'A', second + Duration::from_millis(100));
        let svc = ServeMedia::new(&fx.root).etag_with_file_id(with_file_id);
        let svc = ServiceBuilder::new()
            .layer(sage_stream::range::ParseRangeLayer::new())
            .service(svc);
        let (_, first, _) = get(&svc, "/?path=swap.mp4", &[("range", "bytes=0-99")]).await;
        let old_tag = first["etag"].to_str().unwrap().to_owned();
        write(b'B', second + Duration::from_millis(600));
        let (status, headers, body) = get(
            &svc,
            "/?path=swap.mp4",
            &[("range", "bytes=100-"), ("if-range", old_tag.as_str())],
        )
        .await;
        assert_ne!(headers["etag"].to_str().unwrap(), old_tag);
        assert_eq!(
            headers["last-modified"], first["last-modified"],
            "same second"
        );
        assert_eq!(status, StatusCode::OK, "file id in tag: {with_file_id}");
        assert_eq!(body, vec![b'B'; 4096]);
    }
}

/// Media is served as data: `nosniff` and a sandboxing CSP on every answer,
/// so an `.html` or `.svg` file in the root cannot script the admin's origin.
#[tokio::test]
async fn media_responses_cannot_run_as_pages() {
    let fx = Fixture::new();
    fx.file("page.html", 50);
    fx.file("image.svg", 50);
    let svc = StreamEndpoint::new(&fx.root).into_service();
    for uri in [
        "/?path=page.html",
        "/?path=image.svg",
        "/?path=missing.mp4",
        "/?path=../x",
        "/",
    ] {
        let (_, headers, _) = get(&svc, uri, &[]).await;
        assert_eq!(headers["x-content-type-options"], "nosniff", "{uri}");
        assert_eq!(
            headers["content-security-policy"], "sandbox; default-src 'none'",
            "{uri}"
        );
    }
}

/// Two nodes with copies of one file (same bytes, same modification time,
/// different inodes and devices): the same `ETag` and `Last-Modified`, so a
/// range resumed on the other node with `If-Range` gets `206`; a copy with
/// another modification time gets the whole new file, never a splice.
#[tokio::test]
async fn copies_on_two_nodes_give_one_answer() {
    let (a, b) = (Fixture::new(), Fixture::new());
    let data = a.file("film.mp4", 200_000);
    std::fs::write(b.path("film.mp4"), &data).unwrap();
    let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    for fx in [&a, &b] {
        let file = std::fs::File::options()
            .write(true)
            .open(fx.path("film.mp4"))
            .unwrap();
        file.set_modified(mtime).unwrap();
    }
    let (node_a, node_b) = (
        StreamEndpoint::new(&a.root).into_service(),
        StreamEndpoint::new(&b.root).into_service(),
    );
    let uri = "/api/stream?path=film.mp4";
    let (_, ha, _) = get(&node_a, uri, &[("range", "bytes=0-999")]).await;
    let (_, hb, _) = get(&node_b, uri, &[("range", "bytes=0-999")]).await;
    assert_eq!(ha["etag"], hb["etag"]);
    assert_eq!(ha["last-modified"], hb["last-modified"]);
    let etag = ha["etag"].to_str().unwrap().to_owned();
    let (status, h, body) = get(
        &node_b,
        uri,
        &[("range", "bytes=1000-"), ("if-range", etag.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 1000-199999/200000");
    assert_eq!(body, data[1000..]);
    // The copy on node B is replaced (new bytes, new time): node A's tag no
    // longer matches there, so B sends its whole file.
    let newer = b.file("film.mp4", 150_000);
    let (status, _, body) = get(
        &node_b,
        uri,
        &[("range", "bytes=1000-"), ("if-range", etag.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, newer);
}
