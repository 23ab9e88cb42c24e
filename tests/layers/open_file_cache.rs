//! The open-file cache of `ServeMedia`: a cached file is served without the
//! blocking pool, every change to the file is seen at once by default, a
//! trust window (`open_file_cache_valid`) serves the old file consistently,
//! and the cache holds no more descriptors than its capacity.

use crate::common;

use std::time::{Duration, SystemTime};

use common::oneshot::{get, request};
use common::{pattern, Fixture};
use http::{Method, StatusCode};
use sage_stream::media::ServeMedia;
use sage_stream::range::ParseRangeLayer;
use tower::{ServiceBuilder, ServiceExt};

/// Writes `bytes` to a temp file and renames it over `name`, as a deploy
/// does, with the modification time `at`.
fn replace(fx: &Fixture, name: &str, bytes: &[u8], at: SystemTime) {
    let tmp = fx.root.join(".replacing");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(at)
        .unwrap();
    std::fs::rename(&tmp, fx.path(name)).unwrap();
}

fn mtime(fx: &Fixture, name: &str) -> SystemTime {
    std::fs::metadata(fx.path(name))
        .unwrap()
        .modified()
        .unwrap()
}

/// With the default (a `stat` on every hit), each kind of change is served
/// at once, exactly as without the cache.
#[tokio::test]
async fn every_change_to_a_cached_file_is_seen_at_once() {
    let fx = Fixture::new();
    let old = fx.file("a.mp4", 50_000);
    let svc = ServiceBuilder::new()
        .layer(ParseRangeLayer::new())
        .service(ServeMedia::new(&fx.root));
    let (status, first, body) = get(&svc, "/?path=a.mp4", &[]).await;
    assert_eq!((status, body), (StatusCode::OK, old.clone()));
    // Served again from the cache: the same answer.
    let (_, again, body) = get(&svc, "/?path=a.mp4", &[]).await;
    assert_eq!(body, old);
    assert_eq!(again["etag"], first["etag"]);

    // Renamed over, same size, same modification time: a new inode.
    let at = mtime(&fx, "a.mp4");
    let new = pattern(50_000, 7);
    replace(&fx, "a.mp4", &new, at);
    let (_, h, body) = get(&svc, "/?path=a.mp4", &[]).await;
    assert_eq!(body, new, "replacement");
    assert_eq!(h["content-length"], "50000");

    // Written in place, then the old modification time put back: only the
    // change time tells.
    let at = mtime(&fx, "a.mp4");
    let in_place = pattern(50_000, 8);
    std::fs::write(fx.path("a.mp4"), &in_place).unwrap();
    std::fs::File::options()
        .write(true)
        .open(fx.path("a.mp4"))
        .unwrap()
        .set_modified(at)
        .unwrap();
    let (_, _, body) = get(&svc, "/?path=a.mp4", &[]).await;
    assert_eq!(body, in_place, "written in place");

    // Truncated: the new length, in the headers and the bytes.
    std::fs::File::options()
        .write(true)
        .open(fx.path("a.mp4"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (status, h, body) = get(&svc, "/?path=a.mp4", &[("range", "bytes=0-")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 0-999/1000");
    assert_eq!(body, in_place[..1000]);

    // Deleted: 404.
    std::fs::remove_file(fx.path("a.mp4")).unwrap();
    let (status, _, _) = get(&svc, "/?path=a.mp4", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A symlink served from the cache follows its retargeting, and one
/// retargeted out of the root is refused as before.
#[cfg(unix)]
#[tokio::test]
async fn a_retargeted_symlink_is_seen_at_once() {
    let fx = Fixture::new();
    let a = fx.file("a.mp4", 3000);
    let b = fx.file("b.mp4", 3000);
    let link = fx.path("link.mp4");
    std::os::unix::fs::symlink(fx.path("a.mp4"), &link).unwrap();
    let svc = ServeMedia::new(&fx.root);
    assert_eq!(get(&svc, "/?path=link.mp4", &[]).await.2, a);
    assert_eq!(get(&svc, "/?path=link.mp4", &[]).await.2, a);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(fx.path("b.mp4"), &link).unwrap();
    assert_eq!(get(&svc, "/?path=link.mp4", &[]).await.2, b);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&fx.sentinel, &link).unwrap();
    let (status, _, body) = get(&svc, "/?path=link.mp4", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.windows(8).any(|w| w == &common::SENTINEL[..8]));
}

/// Inside the trust window the cached file is served as it was when it was
/// opened — its bytes and its tag together, never a mix — even after it
/// was replaced or deleted; after the window the change is seen.
#[tokio::test]
async fn a_trust_window_serves_the_opened_file_consistently() {
    let fx = Fixture::new();
    let old = fx.file("w.mp4", 20_000);
    let svc = ServiceBuilder::new()
        .layer(ParseRangeLayer::new())
        .service(ServeMedia::new(&fx.root).open_file_cache_valid(Duration::from_millis(600)));
    let (_, first, body) = get(&svc, "/?path=w.mp4", &[]).await;
    assert_eq!(body, old);
    let new = pattern(30_000, 9);
    replace(
        &fx,
        "w.mp4",
        &new,
        SystemTime::now() + Duration::from_secs(10),
    );
    let (status, h, body) = get(&svc, "/?path=w.mp4", &[("range", "bytes=100-")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["etag"], first["etag"]);
    assert_eq!(h["content-range"], "bytes 100-19999/20000");
    assert_eq!(body, old[100..], "the old file, whole and consistent");
    std::fs::remove_file(fx.path("w.mp4")).unwrap();
    assert_eq!(get(&svc, "/?path=w.mp4", &[]).await.2, old, "deleted");
    std::fs::write(fx.path("w.mp4"), &new).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, h, body) = get(&svc, "/?path=w.mp4", &[]).await;
    assert_eq!(body, new, "after the window");
    assert_ne!(h["etag"], first["etag"]);
}

/// Written in place (same size) inside the trust window: the old bytes are
/// gone, so the answer must be the new bytes with a new tag — never the
/// new bytes under the old tag, which would splice a resumed download
/// (`If-Range`) or keep a stale copy (`If-None-Match` → 304). (Issue 20,
/// defect 6.)
#[tokio::test]
async fn a_trust_window_never_pairs_new_bytes_with_the_old_tag() {
    let fx = Fixture::new();
    let old = fx.file("w.mp4", 20_000);
    let svc = ServiceBuilder::new()
        .layer(ParseRangeLayer::new())
        .service(ServeMedia::new(&fx.root).open_file_cache_valid(Duration::from_secs(5)));
    let (_, first, body) = get(&svc, "/?path=w.mp4", &[]).await;
    assert_eq!(body, old);
    let tag = first["etag"].to_str().unwrap().to_owned();
    // Past a tick of the file system's clock, so the write moves the
    // modification time as any real rewrite does.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let new = pattern(20_000, 11);
    std::fs::write(fx.path("w.mp4"), &new).unwrap();

    let (status, h, body) = get(
        &svc,
        "/?path=w.mp4",
        &[("range", "bytes=100-"), ("if-range", &tag)],
    )
    .await;
    assert_eq!(
        (status, body == new),
        (StatusCode::OK, true),
        "If-Range with the old tag: the whole new file, not a splice"
    );
    assert_ne!(h["etag"], tag.as_str());

    let (status, h, body) = get(&svc, "/?path=w.mp4", &[("if-none-match", &tag)]).await;
    assert_eq!(status, StatusCode::OK, "If-None-Match with the old tag");
    assert_eq!(body, new);
    assert_ne!(h["etag"], tag.as_str());

    // And any answer's bytes are those its tag was built from: the tag now
    // served gives a 206 of the new file.
    let now_tag = h["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = get(
        &svc,
        "/?path=w.mp4",
        &[("range", "bytes=100-"), ("if-range", &now_tag)],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, new[100..]);
}

/// `If-Range` with the `Last-Modified` date of a file that was then
/// replaced by another of the same size within the same second (in place
/// or renamed over; with the open-file cache on and off): the date names
/// both, so the range must not be honoured — `200` with the whole new
/// file, never a `206` splicing the two. A date a second or more after the
/// change still resumes. (Issue 20, defect 7.)
#[tokio::test]
async fn if_range_with_a_date_never_splices_a_same_second_replacement() {
    use std::time::UNIX_EPOCH;

    let fx = Fixture::new();
    for (how, cache) in [
        ("in place", 256),
        ("renamed", 256),
        ("in place", 0),
        ("renamed", 0),
    ] {
        let svc = ServiceBuilder::new()
            .layer(ParseRangeLayer::new())
            .service(ServeMedia::new(&fx.root).open_file_cache(cache));
        // Two modification times in one second: its start, and now.
        let now = SystemTime::now();
        let second =
            UNIX_EPOCH + Duration::from_secs(now.duration_since(UNIX_EPOCH).unwrap().as_secs());
        let later = now.max(second + Duration::from_micros(1));
        let old = pattern(10_000, 21);
        replace(&fx, "s.mp4", &old, second);
        let (_, first, body) = get(&svc, "/?path=s.mp4", &[]).await;
        assert_eq!(body, old);
        let date = first["last-modified"].to_str().unwrap().to_owned();

        let new = pattern(10_000, 22);
        if how == "renamed" {
            replace(&fx, "s.mp4", &new, later);
        } else {
            std::fs::write(fx.path("s.mp4"), &new).unwrap();
            let file = std::fs::File::options()
                .write(true)
                .open(fx.path("s.mp4"))
                .unwrap();
            file.set_modified(later).unwrap();
        }
        let (status, h, body) = get(
            &svc,
            "/?path=s.mp4",
            &[("range", "bytes=100-"), ("if-range", &date)],
        )
        .await;
        assert_eq!(h["last-modified"], date.as_str(), "{how}: the same second");
        assert_eq!(status, StatusCode::OK, "{how}, cache {cache}: not a splice");
        assert_eq!(body, new, "{how}, cache {cache}");
    }

    // Modified ten seconds ago: its date names one version, and resumes.
    let svc = ServiceBuilder::new()
        .layer(ParseRangeLayer::new())
        .service(ServeMedia::new(&fx.root));
    let settled = pattern(10_000, 23);
    replace(
        &fx,
        "t.mp4",
        &settled,
        SystemTime::now() - Duration::from_secs(10),
    );
    let (_, first, _) = get(&svc, "/?path=t.mp4", &[]).await;
    let date = first["last-modified"].to_str().unwrap().to_owned();
    let (status, _, body) = get(
        &svc,
        "/?path=t.mp4",
        &[("range", "bytes=100-"), ("if-range", &date)],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, settled[100..]);
}

/// The names of the files under `root` this process holds open, sorted
/// (not the root directory's own handle).
#[cfg(target_os = "linux")]
fn open_names(root: &std::path::Path) -> Vec<String> {
    let root = std::fs::canonicalize(root).unwrap();
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let name = target.strip_prefix(&root).ok()?;
            // The root itself: the handle files are opened from.
            let name = name.to_string_lossy().into_owned();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    names.sort();
    names
}

#[cfg(target_os = "linux")]
fn open_under(root: &std::path::Path) -> usize {
    open_names(root).len()
}

/// At most `capacity` files stay open, the least recently used go first,
/// and with the cache off none stays open once the responses are done.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let fx = Fixture::new();
    let files: Vec<_> = (0..5)
        .map(|i| fx.file(&format!("f{i}.mp4"), 1000 + i))
        .collect();
    let svc = ServeMedia::new(&fx.root).open_file_cache(2);
    for (i, data) in files.iter().enumerate() {
        assert_eq!(&get(&svc, &format!("/?path=f{i}.mp4"), &[]).await.2, data);
        assert!(open_under(&fx.root) <= 2, "after f{i}");
    }
    assert_eq!(open_names(&fx.root), ["f3.mp4", "f4.mp4"]);
    // Using f3 makes f4 the least recently used, so f0 replaces it.
    get(&svc, "/?path=f3.mp4", &[]).await;
    get(&svc, "/?path=f0.mp4", &[]).await;
    assert_eq!(open_names(&fx.root), ["f0.mp4", "f3.mp4"]);
    drop(svc);
    assert_eq!(open_under(&fx.root), 0, "dropping the service closes them");

    let off = ServeMedia::new(&fx.root).open_file_cache(0);
    for i in 0..5 {
        get(&off, &format!("/?path=f{i}.mp4"), &[]).await;
    }
    assert_eq!(open_under(&fx.root), 0, "cache off");
}

/// A request for a cached file is answered while the blocking pool is
/// busy; one for a file not in the cache waits for it. (One blocking
/// thread, kept busy by the test.)
#[test]
fn a_cached_file_is_answered_without_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        let fx = Fixture::new();
        let data = fx.file("hot.mp4", 4096);
        fx.file("cold.mp4", 4096);
        let svc = ServeMedia::new(&fx.root);
        assert_eq!(get(&svc, "/?path=hot.mp4", &[]).await.2, data);

        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = tokio::task::spawn_blocking(move || wait.recv());
        let head = |path: &str| {
            svc.clone()
                .oneshot(request(Method::HEAD, &format!("/?path={path}"), &[]))
        };
        let hot = tokio::time::timeout(Duration::from_secs(5), head("hot.mp4"))
            .await
            .expect("a cached file needs no pool thread")
            .unwrap();
        assert_eq!(hot.status(), StatusCode::OK);
        assert_eq!(hot.headers()["content-length"], "4096");
        let cold = tokio::time::timeout(Duration::from_millis(300), head("cold.mp4")).await;
        assert!(cold.is_err(), "an uncached file waits for the pool");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let cold = head("cold.mp4").await.unwrap();
        assert_eq!(cold.status(), StatusCode::OK);
    });
}
