//! The logging layer and the writer, with the memory store (which can be
//! switched "down") and with SQLite.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::harness::Test;
use common::{body_bytes, Fixture};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sage_stream::client_ip::ResolveClientIpLayer;
use sage_stream::extension::MediaPathSource;
use sage_stream::extension::PeerAddr;
use sage_stream::extension::Viewer;
use sage_stream::log::{
    LogFilter, MemoryStore, WatchLogEntry, WatchLogLayer, WatchLogStore, WatchLogWriter,
    WatchRecord, WriterConfig,
};
use sage_stream::permission::IsAuthenticated;
use sage_stream::StreamEndpoint;
use tower::{ServiceBuilder, ServiceExt};

pub fn tests() -> Vec<Test> {
    vec![
        Test::sync(
            "rows_behind_a_long_transaction_reach_the_spool_within_the_interval",
            rows_behind_a_long_transaction_reach_the_spool_within_the_interval,
        ),
        Test::sync(
            "a_durable_log_on_a_full_disk_counts_every_row",
            a_durable_log_on_a_full_disk_counts_every_row,
        )
        .needs(common::harness::Requirement::Mount),
        Test::tokio(
            "one_row_per_response_with_bytes_sent",
            one_row_per_response_with_bytes_sent,
        ),
        Test::tokio(
            "dropped_body_logs_the_bytes_really_sent",
            dropped_body_logs_the_bytes_really_sent,
        ),
        Test::tokio(
            "refusals_304_forwarded_ips_and_options",
            refusals_304_forwarded_ips_and_options,
        ),
        Test::tokio(
            "logs_around_tower_http_serve_dir",
            logs_around_tower_http_serve_dir,
        ),
        Test::tokio(
            "rows_record_the_byte_range_serve_media_served",
            rows_record_the_byte_range_serve_media_served,
        ),
        Test::sync(
            "writer_retries_spools_and_replays_without_loss_or_duplicates",
            writer_retries_spools_and_replays_without_loss_or_duplicates,
        ),
        Test::sync(
            "an_outage_under_load_keeps_memory_within_the_bound",
            an_outage_under_load_keeps_memory_within_the_bound,
        ),
        Test::sync(
            "a_durable_log_journals_every_row_before_it_is_queued",
            a_durable_log_journals_every_row_before_it_is_queued,
        ),
        Test::tokio(
            "a_durable_response_completes_only_once_its_row_is_journaled",
            a_durable_response_completes_only_once_its_row_is_journaled,
        ),
        Test::sync(
            "a_batch_retried_after_an_ambiguous_commit_is_stored_once",
            a_batch_retried_after_an_ambiguous_commit_is_stored_once,
        ),
        Test::sync(
            "shutdown_with_the_store_down_spools_and_the_next_writer_replays",
            shutdown_with_the_store_down_spools_and_the_next_writer_replays,
        ),
        #[cfg(feature = "sqlite")]
        Test::tokio(
            "sqlite_end_to_end_through_the_layer",
            sqlite_end_to_end_through_the_layer,
        ),
        Test::tokio(
            "a_file_deleted_mid_stream_still_streams_and_is_logged",
            a_file_deleted_mid_stream_still_streams_and_is_logged,
        ),
        Test::tokio(
            "hostile_text_never_stops_the_memory_log",
            hostile_text_never_stops_the_memory_log,
        ),
        #[cfg(feature = "sqlite")]
        Test::tokio(
            "hostile_text_never_stops_the_sqlite_log",
            hostile_text_never_stops_the_sqlite_log,
        ),
        #[cfg(feature = "postgres")]
        Test::tokio(
            "hostile_text_never_stops_the_postgres_log",
            hostile_text_never_stops_the_postgres_log,
        )
        .needs(common::harness::Requirement::Postgres),
        #[cfg(feature = "sqlite")]
        Test::sync(
            "sqlite_rows_a_trigger_rejects_are_quarantined",
            sqlite_rows_a_trigger_rejects_are_quarantined,
        ),
        #[cfg(feature = "postgres")]
        Test::sync(
            "postgres_rows_a_trigger_rejects_are_quarantined",
            postgres_rows_a_trigger_rejects_are_quarantined,
        )
        .needs(common::harness::Requirement::Postgres),
        #[cfg(feature = "postgres")]
        Test::sync(
            "postgres_log_recovers_when_its_database_is_recreated",
            postgres_log_recovers_when_its_database_is_recreated,
        )
        .needs(common::harness::Requirement::Postgres),
        Test::sync(
            "retention_prunes_the_memory_log",
            retention_prunes_the_memory_log,
        ),
        #[cfg(feature = "sqlite")]
        Test::sync(
            "retention_prunes_the_sqlite_log",
            retention_prunes_the_sqlite_log,
        ),
        #[cfg(feature = "postgres")]
        Test::sync(
            "retention_prunes_the_postgres_log",
            retention_prunes_the_postgres_log,
        )
        .needs(common::harness::Requirement::Postgres),
        Test::sync(
            "without_a_spool_an_outage_drops_the_oldest_rows_and_counts_them",
            without_a_spool_an_outage_drops_the_oldest_rows_and_counts_them,
        ),
        Test::sync(
            "a_full_spool_drops_its_oldest_rows_and_keeps_the_newest",
            a_full_spool_drops_its_oldest_rows_and_keeps_the_newest,
        ),
        Test::sync(
            "a_spool_left_by_an_earlier_run_is_counted_when_dropped",
            a_spool_left_by_an_earlier_run_is_counted_when_dropped,
        ),
        Test::sync(
            "a_full_journal_drops_its_oldest_rows_and_keeps_the_newest",
            a_full_journal_drops_its_oldest_rows_and_keeps_the_newest,
        ),
    ]
}

fn quick() -> WriterConfig {
    WriterConfig::default()
        .flush_interval(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
}

fn rows(store: &MemoryStore) -> Vec<WatchLogEntry> {
    store.entries()
}

fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::get(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("192.0.2.10:5555".parse::<SocketAddr>().unwrap()));
    req
}

async fn one_row_per_response_with_bytes_sent() {
    let fx = Fixture::new();
    fx.file("clip.mp4", 100_000);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(StreamEndpoint::new(&fx.root).into_service());

    let mut full = req("/?path=./clip.mp4", &[("user-agent", &"x".repeat(1000))]);
    full.extensions_mut().insert(Viewer::user("alice"));
    body_bytes(svc.clone().oneshot(full).await.unwrap()).await;
    body_bytes(
        svc.clone()
            .oneshot(req("/?path=clip.mp4", &[("range", "bytes=10-19")]))
            .await
            .unwrap(),
    )
    .await;
    body_bytes(
        svc.clone()
            .oneshot(req("/?path=missing.mp4", &[]))
            .await
            .unwrap(),
    )
    .await;
    // HEAD is not logged by default.
    let mut head = req("/?path=clip.mp4", &[]);
    *head.method_mut() = http::Method::HEAD;
    body_bytes(svc.clone().oneshot(head).await.unwrap()).await;

    assert!(writer.wait_idle(Duration::from_secs(5)));
    let mut rows = rows(&store);
    rows.sort_by_key(|r| r.id);
    assert_eq!(rows.len(), 3);
    let (full, ranged, missing) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(full.path, "clip.mp4", "normalised path as served");
    assert_eq!(full.user_id.as_deref(), Some("alice"));
    assert!(full.is_authenticated);
    assert_eq!(full.ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(
        (full.status, full.bytes_sent, full.completed),
        (200, 100_000, true)
    );
    assert_eq!(full.user_agent.as_ref().unwrap().len(), 256, "bounded");
    assert_eq!(full.viewer_key, "u:alice");
    assert_eq!(
        (ranged.status, ranged.bytes_sent, ranged.completed),
        (206, 10, true)
    );
    assert_eq!(ranged.range_header.as_deref(), Some("bytes=10-19"));
    assert_eq!(ranged.viewer_key, "ip:192.0.2.10");
    assert!(!ranged.is_authenticated && ranged.user_id.is_none());
    assert_eq!(
        (missing.status, missing.path.as_str(), missing.bytes_sent),
        (404, "missing.mp4", 15)
    );
    let now = Utc::now().naive_utc();
    assert!(rows
        .iter()
        .all(|r| r.created_at <= now && now - r.created_at < chrono::Duration::seconds(30)));
    writer.shutdown_async().await;
}

async fn dropped_body_logs_the_bytes_really_sent() {
    let fx = Fixture::new();
    fx.file("big.mp4", 1 << 20);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(
            StreamEndpoint::new(&fx.root)
                .chunk_size(64 * 1024)
                .into_service(),
        );
    let res = svc.oneshot(req("/?path=big.mp4", &[])).await.unwrap();
    let mut body = res.into_body();
    let mut got = 0;
    for _ in 0..3 {
        got += body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len();
    }
    drop(body);
    assert!(writer.wait_idle(Duration::from_secs(5)));
    let rows = rows(&store);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bytes_sent as usize, got);
    assert!(!rows[0].completed);
    writer.shutdown_async().await;
}

async fn refusals_304_forwarded_ips_and_options() {
    let fx = Fixture::new();
    fx.file("v.mp4", 50);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let layer = WatchLogLayer::new(sink.clone());
    // Trusted proxies are configured once, at the edge.
    let edge = ResolveClientIpLayer::new(["192.0.2.0/24".parse().unwrap()]);
    let guarded = ServiceBuilder::new()
        .layer(edge.clone())
        .layer(layer.clone())
        .service(
            StreamEndpoint::new(&fx.root)
                .permission(IsAuthenticated)
                .into_service(),
        );
    let res = guarded
        .clone()
        .oneshot(req("/?path=v.mp4", &[("x-forwarded-for", "203.0.113.5")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    body_bytes(res).await;
    let res = guarded
        .oneshot(req("/?path=v.mp4", &[("x-forwarded-for", "not-an-ip")]))
        .await
        .unwrap();
    body_bytes(res).await;

    let open = ServiceBuilder::new()
        .layer(edge.clone())
        .layer(layer.clone())
        .service(StreamEndpoint::new(&fx.root).into_service());
    let res = open
        .clone()
        .oneshot(req("/?path=v.mp4", &[]))
        .await
        .unwrap();
    let etag = res.headers()["etag"].clone();
    body_bytes(res).await;
    let res = open
        .clone()
        .oneshot(req(
            "/?path=v.mp4",
            &[("if-none-match", etag.to_str().unwrap())],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    body_bytes(res).await;

    // Off: nothing logged.
    let off = ServiceBuilder::new()
        .layer(layer.clone().enabled(false))
        .service(StreamEndpoint::new(&fx.root).into_service());
    body_bytes(off.oneshot(req("/?path=v.mp4", &[])).await.unwrap()).await;
    // 304s and refusals can be left out.
    let quiet = ServiceBuilder::new()
        .layer(layer.log_not_modified(false).log_refusals(false))
        .service(StreamEndpoint::new(&fx.root).into_service());
    body_bytes(
        quiet
            .clone()
            .oneshot(req(
                "/?path=v.mp4",
                &[("if-none-match", etag.to_str().unwrap())],
            ))
            .await
            .unwrap(),
    )
    .await;
    body_bytes(quiet.oneshot(req("/?path=nope.mp4", &[])).await.unwrap()).await;

    assert!(writer.wait_idle(Duration::from_secs(5)));
    let mut rows = rows(&store);
    rows.sort_by_key(|r| r.id);
    let summary: Vec<(i32, Option<&str>, i64, bool)> = rows
        .iter()
        .map(|r| (r.status, r.ip.as_deref(), r.bytes_sent, r.completed))
        .collect();
    assert_eq!(
        summary,
        vec![
            (401, Some("203.0.113.5"), 23, true),
            (401, None, 23, true),
            (200, Some("192.0.2.10"), 50, true),
            (304, Some("192.0.2.10"), 0, true),
        ]
    );
    writer.shutdown_async().await;
}

async fn logs_around_tower_http_serve_dir() {
    use tower_http::services::ServeDir;
    let fx = Fixture::new();
    fx.file("clips/a.mp4", 1234);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink).media_path(MediaPathSource::uri_prefix("/")))
        .service(ServeDir::new(&fx.root));
    let res = svc
        .oneshot(req("/clips/a.mp4", &[("range", "bytes=0-99")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    body_bytes(res).await;
    assert!(writer.wait_idle(Duration::from_secs(5)));
    let rows = rows(&store);
    assert_eq!(
        (rows[0].path.as_str(), rows[0].bytes_sent, rows[0].status),
        ("clips/a.mp4", 100, 206)
    );
    assert!(rows[0].completed);
    assert_eq!(rows[0].range_start, None, "not served by ServeMedia");
    writer.shutdown_async().await;
}

/// `range_start` is where ServeMedia's body started in the file: with
/// `bytes_sent` it gives the served range exactly; NULL when ServeMedia
/// served none of the file.
async fn rows_record_the_byte_range_serve_media_served() {
    let fx = Fixture::new();
    let file = fx.file("v.mp4", 4000);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let layer = WatchLogLayer::new(sink);
    let open = ServiceBuilder::new()
        .layer(layer.clone())
        .service(StreamEndpoint::new(&fx.root).into_service());
    let guarded = ServiceBuilder::new().layer(layer).service(
        StreamEndpoint::new(&fx.root)
            .permission(IsAuthenticated)
            .into_service(),
    );

    let ask = |range: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        req("/?path=v.mp4", &headers)
    };
    let res = open
        .clone()
        .oneshot(ask(Some("bytes=1000-1999")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_bytes(res).await, file[1000..2000]);
    let res = open.clone().oneshot(ask(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_bytes(res).await, file);
    let res = guarded.oneshot(ask(Some("bytes=1000-1999"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    body_bytes(res).await;
    let res = open
        .clone()
        .oneshot(ask(Some("bytes=9000-")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    body_bytes(res).await;
    // Multipart: counted from the lowest range's start.
    let res = open
        .oneshot(ask(Some("bytes=3000-3099, 100-199")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    body_bytes(res).await;

    assert!(writer.wait_idle(Duration::from_secs(5)));
    let mut rows = rows(&store);
    rows.sort_by_key(|r| r.id);
    let got: Vec<(i32, Option<i64>, i64)> = rows
        .iter()
        .map(|r| (r.status, r.range_start, r.bytes_sent))
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[..4],
        [
            (206, Some(1000), 1000),
            (200, Some(0), 4000),
            (401, None, 23),
            (416, None, 21),
        ]
    );
    assert_eq!((got[4].0, got[4].1), (206, Some(100)));
    writer.shutdown_async().await;
}

fn record(i: usize) -> WatchRecord {
    WatchRecord {
        created_at: Utc::now(),
        path: format!("p{}", i % 7).into(),
        user_id: None,
        is_authenticated: false,
        ip: Some("127.0.0.1".into()),
        method: "GET".into(),
        status: 206,
        range_header: None,
        bytes_sent: i as u64,
        duration_ms: 1,
        user_agent: None,
        completed: true,
        range_start: None,
    }
}

/// Records rows no faster than the spool thread takes them (a rate the log
/// can sustain; a burst beyond it meets the memory bound, which drops the
/// oldest rows and counts them): before each row, waits (up to 200 ms)
/// while the queue is full.
fn record_paced(
    sink: &sage_stream::log::WatchLogSink,
    writer: &sage_stream::log::WriterHandle,
    rows: std::ops::Range<usize>,
    limit: u64,
) {
    for i in rows {
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while writer.stats().queued >= limit && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        sink.record(record(i));
    }
}

/// Waits (up to 20 s) until `done` holds for the writer's counters.
fn wait_for(
    writer: &sage_stream::log::WriterHandle,
    done: impl Fn(&sage_stream::log::WriterStats) -> bool,
) -> sage_stream::log::WriterStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = writer.stats();
        if done(&stats) || std::time::Instant::now() >= deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn writer_retries_spools_and_replays_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick()
        .memory_limit(100)
        .batch_size(50)
        .spool_path(spool.clone());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    record_paced(&sink, &writer, 0..1000, 100);
    // The spooler runs at the lowest CPU priority: on a busy machine it may
    // take a while to catch up, so wait for it (bounded) before judging.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stats = writer.stats();
    while stats.spooled < 850 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        stats = writer.stats();
    }
    assert!(stats.queued <= 150, "memory stays bounded: {stats:?}");
    assert!(
        stats.spooled >= 850,
        "the excess went to the spool: {stats:?}"
    );
    assert!(std::fs::metadata(&spool).unwrap().len() > 0);
    assert!(stats.failures > 0);
    assert_eq!(store.count(&LogFilter::default()).unwrap_or(0), 0);

    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(10)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert_eq!(stats.recorded, 1000);
    let entries = store.entries();
    assert_eq!(entries.len(), 1000, "every row arrived");
    let mut sent: Vec<i64> = entries.iter().map(|e| e.bytes_sent).collect();
    sent.sort_unstable();
    assert_eq!(sent, (0..1000).collect::<Vec<i64>>(), "each row once");
    assert!(spool_is_empty(&spool), "spool emptied after replay");
}

/// The store holds rows `0..n` (by `bytes_sent`), each once.
fn assert_each_row_once(store: &MemoryStore, n: i64, stats: &sage_stream::log::WriterStats) {
    let mut sent: Vec<i64> = store.entries().iter().map(|e| e.bytes_sent).collect();
    sent.sort_unstable();
    assert_eq!(
        sent,
        (0..n).collect::<Vec<i64>>(),
        "each row once: {stats:?}"
    );
}

/// No spool file with rows, and none set aside for replay.
fn spool_is_empty(spool: &std::path::Path) -> bool {
    let name = spool.file_name().unwrap().to_string_lossy().into_owned();
    let aside = std::fs::read_dir(spool.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&name) && n.ends_with(".replay")
        })
        .count();
    aside == 0 && std::fs::metadata(spool).map_or(true, |m| m.len() == 0)
}

fn an_outage_under_load_keeps_memory_within_the_bound() {
    // Four threads record as fast as they can while the store is down (a
    // burst far beyond what a disk takes: no request waits for the spool,
    // so the bound meets it by dropping the oldest rows, counted); the
    // writer runs at the lowest priority and the machine is busy, which is
    // when a spooler left behind used to let the queue overshoot.
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let limit = 1_000;
    let config = quick()
        .memory_limit(limit)
        .batch_size(200)
        .spool_path(spool.clone());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let t0 = std::time::Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    sink.record(record(t * 10_000 + i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let recording = t0.elapsed();
    // The spool thread may still be writing its last take. Every row is
    // then in the spool, in memory or counted as dropped, but for the
    // writer's batch in flight (at most one, of 200 rows).
    let stats = wait_for(&writer, |s| {
        s.spooled + s.queued + s.rows_dropped >= 40_000 - 200
    });
    eprintln!("40 000 rows recorded in {recording:?}: {stats:?}");
    assert!(
        stats.queued_peak <= limit as u64,
        "queued rows never exceed the bound: {stats:?}"
    );
    assert!(
        stats.spooled + stats.queued + stats.rows_dropped >= 40_000 - 200,
        "beyond the bound rows go to the spool or are counted: {stats:?}"
    );
    assert!(stats.spooled > 0, "the spool thread takes rows: {stats:?}");
    assert_eq!(store.count(&LogFilter::default()).unwrap_or(0), 0);

    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(30)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert_stored_or_dropped(&store, 40_000, &stats);
    assert!(spool_is_empty(&spool));
}

fn a_durable_log_journals_every_row_before_it_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick()
        .spool_path(spool.clone())
        .durable(true)
        .batch_size(64)
        .shutdown_timeout(Duration::from_millis(200));
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config.clone()).unwrap();
    for i in 0..500 {
        sink.record(record(i));
    }
    // The journal thread writes them (the request only hands them over).
    let stats = wait_for(&writer, |s| s.journal_pending == 0);
    assert_eq!((stats.journaled, stats.queued_peak), (500, 0), "{stats:?}");
    // Whatever happens to this process now, the rows are on disk. (The
    // binary's own test kills it with SIGKILL; here the writer stops with
    // the store down, which leaves the journal as a kill would.)
    let stats = writer.shutdown();
    assert_eq!(stats.written, 0, "{stats:?}");

    // The next run replays it. The first replay commits two groups, then
    // reports a failure as if the connection broke after the commit; the
    // retry groups the journal the same way and stores nothing twice.
    store.set_down(false);
    store.fail_after_commit(2);
    let (_sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    assert!(
        writer.wait_idle(Duration::from_secs(10)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert_each_row_once(&store, 500, &stats);
    assert!(stats.failures >= 2, "{stats:?}");
    assert!(spool_is_empty(&spool));
}

/// `--durable-log` through the layer: the request's thread only hands the
/// row over, and the response's last bytes wait for the journal thread, so
/// by the time a client has a whole body its row is in the journal file.
async fn a_durable_response_completes_only_once_its_row_is_journaled() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 10_000);
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let spool = fx.dir.path().join("log.spool");
    let config = quick().spool_path(spool.clone()).durable(true);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(StreamEndpoint::new(&fx.root).into_service());
    for i in 0..100u64 {
        let range = if i % 2 == 0 {
            "bytes=0-"
        } else {
            "bytes=100-199"
        };
        let res = svc
            .clone()
            .oneshot(req("/?path=clip.mp4", &[("range", range)]))
            .await
            .unwrap();
        let body = body_bytes(res).await;
        let want = if i % 2 == 0 {
            &data[..]
        } else {
            &data[100..200]
        };
        assert_eq!(&body[..], want);
        let stats = writer.stats();
        assert_eq!(
            stats.journaled,
            i + 1,
            "journaled before the body ended: {stats:?}"
        );
        assert_eq!(stats.queued_peak, 0, "{stats:?}");
    }
    let in_spool = rows_in_spool(&spool);
    assert_eq!(in_spool.len(), 2, "the two sizes sent: {in_spool:?}");
    assert!(in_spool.contains(&10_000) && in_spool.contains(&100));
    let stats = writer.shutdown_async().await;
    assert_eq!(stats.recorded, 100, "{stats:?}");
}

fn a_batch_retried_after_an_ambiguous_commit_is_stored_once() {
    let store = Arc::new(MemoryStore::new());
    // The first three inserts commit, then report a failure.
    store.fail_after_commit(3);
    let config = quick().batch_size(40);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    for i in 0..100 {
        sink.record(record(i));
    }
    assert!(writer.wait_idle(Duration::from_secs(10)));
    let stats = writer.shutdown();
    assert_eq!(stats.failures, 3, "{stats:?}");
    // Each retry found its batch stored: no new rows to confirm.
    assert_eq!(stats.written, 0, "{stats:?}");
    let mut sent: Vec<i64> = store.entries().iter().map(|e| e.bytes_sent).collect();
    sent.sort_unstable();
    assert_eq!(sent, (0..100).collect::<Vec<i64>>(), "each row once");
}

fn shutdown_with_the_store_down_spools_and_the_next_writer_replays() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick()
        .spool_path(spool.clone())
        .shutdown_timeout(Duration::from_millis(300));
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config.clone()).unwrap();
    for i in 0..25 {
        sink.record(record(i));
    }
    let stats = writer.shutdown();
    assert_eq!(stats.spooled, 25, "{stats:?}");

    // A restarted node with the database back replays the spool.
    store.set_down(false);
    let (_sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    assert!(writer.wait_idle(Duration::from_secs(5)));
    assert_eq!(store.entries().len(), 25);
    writer.shutdown();
}

#[cfg(feature = "sqlite")]
async fn sqlite_end_to_end_through_the_layer() {
    let fx = Fixture::new();
    let data = fx.file("clip.webm", 300_000);
    let store =
        Arc::new(sage_stream::log::SqliteStore::open(fx.dir.path().join("log.db")).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(StreamEndpoint::new(&fx.root).into_service());
    let mut expected = 0;
    for i in 0..20u64 {
        let range = format!("bytes={}-{}", i * 1000, i * 1000 + 499);
        let res = svc
            .clone()
            .oneshot(req("/?path=clip.webm", &[("range", &range)]))
            .await
            .unwrap();
        let body = body_bytes(res).await;
        assert_eq!(
            body.as_ref(),
            &data[(i * 1000) as usize..(i * 1000 + 500) as usize]
        );
        expected += 500;
    }
    let stats = writer.shutdown_async().await;
    assert_eq!(stats.written, 20);
    let filter = LogFilter {
        path: Some("clip.webm".into()),
        ..Default::default()
    };
    assert_eq!(store.count(&filter).unwrap(), 20);
    let stats = store.path_stats(&filter, 1).unwrap();
    assert_eq!(stats[0].bytes_sent, expected);
}

async fn a_file_deleted_mid_stream_still_streams_and_is_logged() {
    let fx = Fixture::new();
    let data = fx.file("gone.mp4", 1 << 20);
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(
            StreamEndpoint::new(&fx.root)
                .chunk_size(64 * 1024)
                .into_service(),
        );
    let res = svc
        .clone()
        .oneshot(req("/?path=gone.mp4", &[]))
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut got = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
        .to_vec();
    // Deleted while open: the open handle keeps reading the same bytes.
    std::fs::remove_file(fx.path("gone.mp4")).unwrap();
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(got, data);
    // New requests find nothing, with a clear 404, also logged.
    let res = svc.oneshot(req("/?path=gone.mp4", &[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    body_bytes(res).await;
    assert!(writer.wait_idle(Duration::from_secs(5)));
    let mut rows = store.entries();
    rows.sort_by_key(|r| r.id);
    let summary: Vec<(i32, i64, bool)> = rows
        .iter()
        .map(|r| (r.status, r.bytes_sent, r.completed))
        .collect();
    assert_eq!(summary, vec![(200, 1 << 20, true), (404, 15, true)]);
    writer.shutdown_async().await;
}

/// Hostile text never stops the log: a NUL in the path (PostgreSQL refuses
/// NUL in text), a lone surrogate's bytes, a NUL in the user id and a 1 MiB
/// `User-Agent` are made storable before they are queued, and every row —
/// theirs and the ones after — lands, the same on each backend.
async fn hostile_text_lands_with_every_other_row(store: Arc<dyn WatchLogStore>) {
    let fx = Fixture::new();
    fx.file("clip.mp4", 1000);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(StreamEndpoint::new(&fx.root).into_service());
    let huge = "u".repeat(1 << 20);
    let mut with_nul_user = req("/?path=clip.mp4", &[]);
    with_nul_user
        .extensions_mut()
        .insert(Viewer::user("ev\0il"));
    let requests = vec![
        req("/?path=a%00b", &[]),
        req("/?path=%ED%A0%80", &[]),
        req("/?path=clip.mp4", &[("user-agent", huge.as_str())]),
        with_nul_user,
    ];
    for request in requests {
        body_bytes(svc.clone().oneshot(request).await.unwrap()).await;
    }
    for _ in 0..10 {
        let res = svc
            .clone()
            .oneshot(req("/?path=clip.mp4", &[]))
            .await
            .unwrap();
        assert_eq!(body_bytes(res).await.len(), 1000);
    }
    let stats = writer.shutdown_async().await;
    assert_eq!((stats.recorded, stats.written), (14, 14), "{stats:?}");
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 14);
    let rows = store
        .query(&LogFilter::default(), None, 20)
        .unwrap()
        .entries;
    // Refused paths (a NUL, not UTF-8) are logged as refusals without a
    // path: only a normalised media path is ever recorded.
    assert_eq!(
        rows.iter()
            .filter(|r| r.path.is_empty() && r.status == 400)
            .count(),
        2,
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| !r.path.contains('\0')));
    assert!(rows
        .iter()
        .any(|r| r.user_id.as_deref() == Some("ev\u{fffd}il")));
    assert!(rows
        .iter()
        .all(|r| r.user_agent.as_ref().is_none_or(|ua| ua.len() <= 256)));
}

async fn hostile_text_never_stops_the_memory_log() {
    hostile_text_lands_with_every_other_row(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
async fn hostile_text_never_stops_the_sqlite_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = sage_stream::log::SqliteStore::open(dir.path().join("log.db")).unwrap();
    hostile_text_lands_with_every_other_row(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
async fn hostile_text_never_stops_the_postgres_log() {
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    hostile_text_lands_with_every_other_row(Arc::new(store)).await;
}

/// Writes 100 rows, 3 of which a database trigger rejects, through the
/// writer: the 97 others land, the 3 go to the quarantine file, and the log
/// keeps going (a row after them lands too).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn rejected_rows_are_quarantined_and_the_rest_lands(store: Arc<dyn WatchLogStore>) {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("rows.quarantine");
    let config = quick().quarantine_path(quarantine.clone()).batch_size(64);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    for i in 0..100 {
        let mut row = record(i);
        if i % 40 == 7 {
            row.path = "poison.mp4".into();
        }
        sink.record(row);
    }
    assert!(writer.wait_idle(Duration::from_secs(20)));
    sink.record(record(1000));
    let stats = writer.shutdown();
    assert_eq!(stats.quarantined, 3, "{stats:?}");
    assert_eq!(stats.written, 98, "{stats:?}");
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 98);
    let poison = LogFilter {
        path: Some("poison.mp4".into()),
        ..Default::default()
    };
    assert_eq!(store.count(&poison).unwrap(), 0);
    let lines = std::fs::read_to_string(&quarantine).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.lines().all(|l| l.contains("\"path\":\"poison.mp4\"")));
}

#[cfg(feature = "sqlite")]
fn sqlite_rows_a_trigger_rejects_are_quarantined() {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = sage_stream::log::SqliteStore::open(&path).unwrap();
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    diesel::sql_query(
        "CREATE TRIGGER reject_poison BEFORE INSERT ON watch_logs \
         WHEN NEW.path = 'poison.mp4' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
    )
    .execute(&mut conn)
    .unwrap();
    rejected_rows_are_quarantined_and_the_rest_lands(Arc::new(store));
}

#[cfg(feature = "postgres")]
fn postgres_rows_a_trigger_rejects_are_quarantined() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    let mut conn = PgConnection::establish(&db.url).unwrap();
    for sql in [
        "CREATE FUNCTION reject_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.path = 'poison.mp4' THEN RAISE EXCEPTION 'poison refused'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER reject_poison BEFORE INSERT ON watch_logs \
         FOR EACH ROW EXECUTE FUNCTION reject_poison()",
    ] {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
    rejected_rows_are_quarantined_and_the_rest_lands(Arc::new(store));
}

/// The PostgreSQL database is dropped and created again under load: the
/// writer sees its tables missing, runs the migrations again and stores
/// every row recorded after that, without a restart.
#[cfg(feature = "postgres")]
fn postgres_log_recovers_when_its_database_is_recreated() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let db = common::pg::TestDb::create();
    let store = Arc::new(sage_stream::log::PgStore::connect(&db.url).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), quick()).unwrap();
    for i in 0..20 {
        sink.record(record(i));
    }
    assert!(writer.wait_idle(Duration::from_secs(20)));
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 20);
    let mut admin = PgConnection::establish(common::pg::ADMIN_URL).unwrap();
    for sql in [
        format!("DROP DATABASE {} WITH (FORCE)", db.name),
        format!("CREATE DATABASE {}", db.name),
    ] {
        diesel::sql_query(sql).execute(&mut admin).unwrap();
    }
    for i in 0..30 {
        sink.record(record(100 + i));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        writer.wait_idle(Duration::from_secs(30)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert_eq!(stats.written, 50, "{stats:?}");
    assert_eq!(stats.quarantined, 0);
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 30);
}

/// With `retention`, the writer deletes old rows (and only them) as it
/// starts and again every `retention_interval`, rows recorded through its
/// sink included; `WriterStats::pruned` counts them.
fn retention_prunes_at_start_and_every_interval(store: Arc<dyn WatchLogStore>) {
    use sage_stream::log::WatchBatch;
    let aged = |i: usize, age: chrono::Duration| {
        let mut r = record(i);
        r.created_at = Utc::now() - age;
        r
    };
    let old: Vec<WatchRecord> = (0..3)
        .map(|i| aged(i, chrono::Duration::hours(2)))
        .collect();
    let new: Vec<WatchRecord> = (3..5)
        .map(|i| aged(i, chrono::Duration::minutes(50)))
        .collect();
    store.insert_batch(&WatchBatch::new(old)).unwrap();
    store.insert_batch(&WatchBatch::new(new)).unwrap();
    let config = quick()
        .retention(Duration::from_secs(3600))
        .retention_interval(Duration::from_millis(100));
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let count_becomes = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.count(&LogFilter::default()).unwrap() != n {
            assert!(std::time::Instant::now() < deadline, "{:?}", writer.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    count_becomes(2);
    // Old rows arriving later go at a later round: through the sink (a
    // spool replayed late, say) and straight into the store.
    sink.record(aged(5, chrono::Duration::hours(3)));
    sink.record(aged(6, chrono::Duration::seconds(1)));
    store
        .insert_batch(&WatchBatch::new(
            (7..10)
                .map(|i| aged(i, chrono::Duration::days(30)))
                .collect(),
        ))
        .unwrap();
    assert!(writer.wait_idle(Duration::from_secs(10)));
    count_becomes(3);
    let stats = writer.shutdown();
    assert_eq!(stats.pruned, 7, "{stats:?}");
    let mut kept: Vec<i64> = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.bytes_sent)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, [3, 4, 6]);
}

fn retention_prunes_the_memory_log() {
    retention_prunes_at_start_and_every_interval(Arc::new(MemoryStore::new()));
}

#[cfg(feature = "sqlite")]
fn retention_prunes_the_sqlite_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = sage_stream::log::SqliteStore::open(dir.path().join("log.db")).unwrap();
    retention_prunes_at_start_and_every_interval(Arc::new(store));
}

#[cfg(feature = "postgres")]
fn retention_prunes_the_postgres_log() {
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    retention_prunes_at_start_and_every_interval(Arc::new(store));
}

/// Without a spool (`WriterConfig::default()` has none) an outage keeps at
/// most `memory_limit` rows: beyond it the oldest are dropped and counted,
/// and the newest are stored once the store is back.
fn without_a_spool_an_outage_drops_the_oldest_rows_and_counts_them() {
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick().memory_limit(100).batch_size(10);
    assert!(config.spool_path.is_none());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    for i in 0..1000 {
        sink.record(record(i));
    }
    // Wait for a failed round after the last row, and for no batch in
    // flight: then every row is either queued or dropped.
    let failures = writer.stats().failures;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stats = writer.stats();
    while !(stats.failures > failures && stats.queued + stats.rows_dropped == 1000) {
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        std::thread::sleep(Duration::from_millis(2));
        stats = writer.stats();
    }
    assert!(stats.queued_peak <= 100, "{stats:?}");
    assert_eq!((stats.queued, stats.rows_dropped), (100, 900), "{stats:?}");
    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(10)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert_eq!(
        (stats.recorded, stats.written, stats.rows_dropped),
        (1000, 100, 900)
    );
    let mut sent: Vec<i64> = store.entries().iter().map(|e| e.bytes_sent).collect();
    sent.sort_unstable();
    assert_eq!(sent, (900..1000).collect::<Vec<i64>>(), "the newest rows");
}

/// Bytes in the spool and every file set aside from it.
/// Every row stored at most once, and stored + counted as dropped = `n`;
/// gives the distinct `bytes_sent` values stored, sorted.
fn assert_stored_or_dropped(
    store: &MemoryStore,
    n: u64,
    stats: &sage_stream::log::WriterStats,
) -> Vec<i64> {
    let mut sent: Vec<i64> = store.entries().iter().map(|e| e.bytes_sent).collect();
    sent.sort_unstable();
    sent.dedup();
    assert_eq!(sent.len(), store.entries().len(), "each row once");
    assert_eq!(
        sent.len() as u64 + stats.rows_dropped,
        n,
        "stored or counted as dropped: {stats:?}"
    );
    sent
}

fn spool_bytes(spool: &std::path::Path) -> u64 {
    let name = spool.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(spool.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".quarantine"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A spool at its bound deletes its oldest rows to take new ones: the disk
/// use stays within `spool_max_bytes`, every row is stored or counted as
/// dropped (exactly), and the newest rows are kept.
fn a_full_spool_drops_its_oldest_rows_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let max = 64 * 1024;
    let config = quick()
        .memory_limit(40)
        .batch_size(10)
        .spool_path(spool.clone())
        .spool_max_bytes(max);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let n = 3000;
    record_paced(&sink, &writer, 0..n, 40);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stats = writer.stats();
    while stats.spooled + stats.queued < n as u64 - 10 {
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        std::thread::sleep(Duration::from_millis(10));
        stats = writer.stats();
    }
    assert!(stats.rows_dropped > 0, "the spool overflowed: {stats:?}");
    assert!(stats.queued_peak <= 40, "{stats:?}");
    let used = spool_bytes(&spool);
    assert!(used <= max, "{used} bytes on disk");
    assert!(used > max / 2, "the spool is used up to its bound: {used}");

    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(20)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    let sent = assert_stored_or_dropped(&store, n as u64, &stats);
    let newest: Vec<i64> = (n as i64 - 200..n as i64).collect();
    assert_eq!(
        sent[sent.len() - 200..],
        newest[..],
        "the newest rows are kept"
    );
    assert!(spool_is_empty(&spool));
}

/// Segments an earlier run left have no row count in memory: dropping one
/// to make room counts its rows from the file, so the accounting stays
/// exact across a restart.
fn a_spool_left_by_an_earlier_run_is_counted_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick()
        .batch_size(50)
        .spool_path(spool.clone())
        .shutdown_timeout(Duration::from_millis(100));
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config.clone()).unwrap();
    for i in 0..500 {
        sink.record(record(i));
    }
    assert_eq!(writer.shutdown().spooled, 500);
    let earlier = spool_bytes(&spool);
    // The next run has a bound smaller than what is on disk.
    let config = config.memory_limit(20).spool_max_bytes(earlier / 2);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    record_paced(&sink, &writer, 500..600, 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while writer.stats().spooled + writer.stats().queued < 90 {
        assert!(std::time::Instant::now() < deadline, "{:?}", writer.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(spool_bytes(&spool) <= earlier / 2);
    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(20)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert!(stats.rows_dropped >= 250, "{stats:?}");
    assert_eq!(
        store.entries().len() as u64 + stats.rows_dropped,
        600,
        "{stats:?}"
    );
}

/// The journal of a durable log is bounded the same way.
fn a_full_journal_drops_its_oldest_rows_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let max = 32 * 1024;
    let config = quick()
        .spool_path(spool.clone())
        .durable(true)
        .spool_max_bytes(max);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    for i in 0..2000 {
        sink.record(record(i));
    }
    // The journal thread writes each group that arrived meanwhile at once:
    // the oldest rows of a group larger than the bound are dropped before
    // they are written, the rest make room by dropping older segments.
    let stats = wait_for(&writer, |s| s.journal_pending == 0);
    assert!(stats.journaled > 0, "{stats:?}");
    assert_eq!(stats.queued_peak, 0, "nothing waits in memory: {stats:?}");
    assert!(stats.rows_dropped > 1000, "{stats:?}");
    assert!(spool_bytes(&spool) <= max);
    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(20)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    let sent = assert_stored_or_dropped(&store, 2000, &stats);
    // A segment the writer was trying to replay when room was needed is
    // spared (its next one goes instead), so only the newest are certain.
    let newest: Vec<i64> = (1950..2000).collect();
    assert_eq!(sent[sent.len() - 50..], newest[..], "{stats:?} {sent:?}");
}

/// `--durable-log` with its journal on a 256 KiB filesystem and the store
/// down: the disk fills (ENOSPC) before the spool's own bound. Rows the
/// journal cannot take stay in memory (within the bound, the oldest
/// dropped and counted), nothing spins, and every row ends up stored or
/// counted as dropped, exactly.
fn a_durable_log_on_a_full_disk_counts_every_row() {
    let disk = common::harness::TinyFs::mount(256 << 10).expect("the harness probed the mount");
    let spool = disk.path().join("log.spool");
    let store = Arc::new(MemoryStore::new());
    store.set_down(true);
    let config = quick()
        .spool_path(spool.clone())
        .durable(true)
        .memory_limit(1_000)
        .batch_size(100);
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let n = 10_000;
    let t0 = std::time::Instant::now();
    for i in 0..n {
        sink.record(record(i));
        if i % 1_000 == 999 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let stats = wait_for(&writer, |s| s.rows_dropped > 0);
    assert!(stats.journaled < n as u64, "the disk filled up: {stats:?}");
    assert!(stats.rows_dropped > 0, "{stats:?}");
    assert!(stats.queued_peak <= 1_000, "{stats:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "recording never waits on the full disk: {:?}",
        t0.elapsed()
    );
    store.set_down(false);
    assert!(
        writer.wait_idle(Duration::from_secs(20)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    let sent = assert_stored_or_dropped(&store, n as u64, &stats);
    assert_eq!(
        sent.last(),
        Some(&(n as i64 - 1)),
        "the newest row is stored"
    );
    assert!(spool_is_empty(&spool));
}

/// A store whose every insert takes `delay` (a long transaction), which
/// says which rows (by `bytes_sent`) it is inserting.
struct SlowStore {
    inner: MemoryStore,
    delay: Duration,
    inserting: std::sync::Mutex<Vec<i64>>,
}

impl WatchLogStore for SlowStore {
    fn migrate(&self) -> Result<(), sage_stream::log::StoreError> {
        self.inner.migrate()
    }
    fn insert_batch(
        &self,
        batch: &sage_stream::log::WatchBatch,
    ) -> Result<usize, sage_stream::log::StoreError> {
        *self.inserting.lock().unwrap() =
            batch.records.iter().map(|r| r.bytes_sent as i64).collect();
        std::thread::sleep(self.delay);
        let n = self.inner.insert_batch(batch);
        self.inserting.lock().unwrap().clear();
        n
    }
    fn query(
        &self,
        filter: &LogFilter,
        after: Option<sage_stream::log::Cursor>,
        limit: usize,
    ) -> Result<sage_stream::log::Page, sage_stream::log::StoreError> {
        self.inner.query(filter, after, limit)
    }
    fn count(&self, filter: &LogFilter) -> Result<u64, sage_stream::log::StoreError> {
        self.inner.count(filter)
    }
    fn path_stats(
        &self,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Vec<sage_stream::log::PathStats>, sage_stream::log::StoreError> {
        self.inner.path_stats(filter, limit)
    }
    fn views_per_day(
        &self,
        filter: &LogFilter,
    ) -> Result<Vec<sage_stream::log::DayCount>, sage_stream::log::StoreError> {
        self.inner.views_per_day(filter)
    }
    fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, sage_stream::log::StoreError> {
        self.inner.last_batch_id(prefix)
    }
    fn prune_chunk(
        &self,
        cutoff: chrono::NaiveDateTime,
        limit: usize,
    ) -> Result<sage_stream::log::Pruned, sage_stream::log::StoreError> {
        self.inner.prune_chunk(cutoff, limit)
    }
    fn prunable(
        &self,
        cutoff: chrono::NaiveDateTime,
    ) -> Result<sage_stream::log::Pruned, sage_stream::log::StoreError> {
        self.inner.prunable(cutoff)
    }
}

/// The rows (by `bytes_sent`) in the spool's files: what a `kill -9` leaves
/// for the next start to replay.
fn rows_in_spool(spool: &std::path::Path) -> std::collections::HashSet<i64> {
    let name = spool.file_name().unwrap().to_string_lossy().into_owned();
    let mut rows = std::collections::HashSet::new();
    for entry in std::fs::read_dir(spool.parent().unwrap())
        .unwrap()
        .flatten()
    {
        if !entry.file_name().to_string_lossy().starts_with(&name) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(batch) = serde_json::from_str::<sage_stream::log::WatchBatch>(line) {
                rows.extend(batch.records.iter().map(|r| r.bytes_sent as i64));
            }
        }
    }
    rows
}

/// Without `--durable-log` a `kill -9` loses the rows neither stored nor in
/// the spool file. Behind a transaction that runs long (1 s here, with a
/// 50 ms flush interval), rows used to wait in memory for the whole
/// transaction; now the spool thread writes them to the spool file once
/// they have waited an interval and a quarter. So at any moment, every row
/// recorded more than that ago (plus a 300 ms margin for a busy machine:
/// this runs beside the other tests on two cores; still a third of the old
/// wait) is stored, in the spool file, or in the one batch being inserted.
fn rows_behind_a_long_transaction_reach_the_spool_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("log.spool");
    let store = Arc::new(SlowStore {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(1000),
        inserting: Default::default(),
    });
    let flush = Duration::from_millis(50);
    let config = WriterConfig::default()
        .flush_interval(flush)
        .spool_path(spool.clone());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
    let bound = flush + flush / 4 + Duration::from_millis(300);
    let mut recorded: Vec<(i64, std::time::Instant)> = Vec::new();
    let mut worst = Duration::ZERO;
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        for _ in 0..20 {
            sink.record(record(i));
            recorded.push((i as i64, std::time::Instant::now()));
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
        // What a kill -9 would leave now. The batch being inserted is read
        // first: a row it holds that commits meanwhile is then stored.
        let inserting: std::collections::HashSet<i64> =
            store.inserting.lock().unwrap().iter().copied().collect();
        let in_spool = rows_in_spool(&spool);
        let stored: std::collections::HashSet<i64> =
            store.inner.entries().iter().map(|e| e.bytes_sent).collect();
        let now = std::time::Instant::now();
        for (row, at) in &recorded {
            if !(stored.contains(row) || in_spool.contains(row) || inserting.contains(row)) {
                worst = worst.max(now - *at);
            }
        }
    }
    eprintln!("the oldest row a kill -9 would have lost had waited {worst:?}");
    assert!(
        worst < bound,
        "a row {worst:?} old was only in memory (bound {bound:?})"
    );
    assert!(
        writer.wait_idle(Duration::from_secs(30)),
        "{:?}",
        writer.stats()
    );
    let stats = writer.shutdown();
    assert!(stats.spooled > 0, "{stats:?}");
    assert_each_row_once(&store.inner, i as i64, &stats);
}
