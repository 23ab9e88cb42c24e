//! One suite run against every store backend: SQLite in a temp file,
//! PostgreSQL on the live server (a database per test), and the memory store.

use crate::common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::harness::{Requirement, Test};
use sage_stream::log::{
    Cursor, LogFilter, MemoryStore, Pruned, WatchBatch, WatchLogStore, WatchRecord, PRUNE_CHUNK,
};

pub fn tests() -> Vec<Test> {
    let mut tests = suite("memory", &[], memory);
    #[cfg(feature = "sqlite")]
    tests.extend(suite("sqlite", &[], sqlite));
    #[cfg(feature = "postgres")]
    tests.extend(suite("postgres", &[Requirement::Postgres], postgres));
    tests.extend(vec![
        #[cfg(feature = "sqlite")]
        Test::sync("open_store_by_url", open_store_by_url),
        #[cfg(feature = "sqlite")]
        Test::sync("sqlite_upgrade_keeps_rows", sqlite_upgrade_keeps_rows),
        #[cfg(feature = "postgres")]
        Test::sync("postgres_upgrade_keeps_rows", postgres_upgrade_keeps_rows)
            .needs(Requirement::Postgres),
        #[cfg(feature = "sqlite")]
        Test::sync(
            "sqlite_queries_use_their_indexes",
            sqlite_queries_use_their_indexes,
        ),
        #[cfg(feature = "postgres")]
        Test::sync(
            "postgres_queries_use_their_indexes",
            postgres_queries_use_their_indexes,
        )
        .needs(Requirement::Postgres),
        #[cfg(feature = "postgres")]
        Test::sync(
            "postgres_tells_unavailable_from_refused",
            postgres_tells_unavailable_from_refused,
        )
        .needs(Requirement::Postgres),
        #[cfg(feature = "sqlite")]
        Test::sync(
            "sqlite_in_a_missing_directory_is_unavailable",
            sqlite_in_a_missing_directory_is_unavailable,
        ),
    ]);
    tests
}

fn record(
    i: u32,
    at: DateTime<Utc>,
    path: &str,
    user: Option<&str>,
    ip: &str,
    status: u16,
    bytes: u64,
) -> WatchRecord {
    WatchRecord {
        created_at: at,
        path: path.into(),
        user_id: user.map(Into::into),
        is_authenticated: user.is_some(),
        ip: Some(ip.into()),
        method: "GET".into(),
        status,
        range_header: Some(format!("bytes={i}-").into()),
        bytes_sent: bytes,
        duration_ms: u64::from(i),
        user_agent: Some("test-agent/1.0".into()),
        completed: i % 2 == 0,
        // Some and None both, to round-trip the nullable column.
        range_start: (i % 3 != 0).then_some(u64::from(i) * 1000),
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

/// 30 rows over three paths, two users and anonymous IPs; rows 10..15 share
/// one timestamp so pagination must break ties by id.
fn sample() -> Vec<WatchRecord> {
    (0..30u32)
        .map(|i| {
            let at = if (10..15).contains(&i) {
                base() + Duration::seconds(10)
            } else {
                base() + Duration::seconds(i64::from(i)) + Duration::microseconds(123)
            };
            let path = ["a.mp4", "dir/b.webm", "100%_c.mp4"][(i % 3) as usize];
            let user = match i % 4 {
                0 => Some("alice"),
                1 => Some("bob"),
                _ => None,
            };
            let ip = if i % 5 == 0 {
                "2001:db8::7"
            } else {
                "10.1.2.3"
            };
            let status = if i == 7 {
                403
            } else if i % 6 == 0 {
                200
            } else {
                206
            };
            record(i, at, path, user, ip, status, u64::from(i) * 1000)
        })
        .collect()
}

/// Stores `rows` as one new batch.
fn insert(store: &dyn WatchLogStore, rows: &[WatchRecord]) -> usize {
    store.insert_batch(&WatchBatch::new(rows.to_vec())).unwrap()
}

/// Every stored field equals the recorded one; rows are matched by their
/// Range header, unique per row in these tests.
fn assert_stored(store: &dyn WatchLogStore, rows: &[WatchRecord]) {
    let all = store.query(&LogFilter::default(), None, 10_000).unwrap();
    assert_eq!(all.entries.len(), rows.len());
    assert!(all.next.is_none());
    for entry in &all.entries {
        let original = rows
            .iter()
            .find(|r| r.range_header.as_deref() == entry.range_header.as_deref())
            .expect("stored row");
        assert_eq!(entry.created_at, original.created_at.naive_utc());
        assert_eq!(entry.path, original.path.as_str());
        assert_eq!(entry.user_id.as_deref(), original.user_id.as_deref());
        assert_eq!(entry.is_authenticated, original.is_authenticated);
        assert_eq!(entry.viewer_key, original.viewer_key());
        assert_eq!(entry.ip.as_deref(), original.ip.as_deref());
        assert_eq!(entry.method, original.method.as_str());
        assert_eq!(entry.status, i32::from(original.status));
        assert_eq!(
            entry.range_header.as_deref(),
            original.range_header.as_deref()
        );
        assert_eq!(entry.bytes_sent as u64, original.bytes_sent);
        assert_eq!(entry.duration_ms as u64, original.duration_ms);
        assert_eq!(entry.user_agent.as_deref(), original.user_agent.as_deref());
        assert_eq!(entry.completed, original.completed);
        assert_eq!(
            entry.range_start.map(|n| n as u64),
            original.range_start,
            "range_start round-trips, NULL included"
        );
    }
}

fn round_trip_and_idempotence(store: &dyn WatchLogStore) {
    store.migrate().unwrap();
    let rows = sample();
    let first = WatchBatch::new(rows[..20].to_vec());
    assert_eq!(store.insert_batch(&first).unwrap(), 20);
    // The same batch again (a retry after an ambiguous commit, a replayed
    // spool line): nothing new is stored.
    assert_eq!(store.insert_batch(&first).unwrap(), 0);
    let second = WatchBatch::new(rows[20..].to_vec());
    assert_eq!(store.insert_batch(&second).unwrap(), 10);
    assert_eq!(store.insert_batch(&second).unwrap(), 0);
    assert_eq!(store.insert_batch(&WatchBatch::new(Vec::new())).unwrap(), 0);
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 30);
    assert_stored(store, &rows);
}

/// Batches of every size around the stores' statement sizes (SQLite binds
/// 32 rows per statement, then single rows) keep every value, NULLs,
/// non-ASCII text, quotes and extreme numbers included.
fn batches_of_every_size_round_trip(store: &dyn WatchLogStore) {
    let mut rows = Vec::new();
    let mut stored = 0;
    for (batch, size) in [1usize, 31, 32, 33, 64, 70, 1000].into_iter().enumerate() {
        let batch_rows: Vec<WatchRecord> = (0..size)
            .map(|i| {
                let n = (batch * 10_000 + i) as u32;
                let mut r = record(
                    n,
                    base() + Duration::microseconds(i64::from(n) * 37),
                    ["a.mp4", "vidéo 'quoted'.mp4", "dir/b.webm"][i % 3],
                    [None, Some("alice"), Some("bøb \"x\"")][i % 3],
                    ["10.0.0.1", "2001:db8::1"][i % 2],
                    [200u16, 206, 304, 403][i % 4],
                    [0u64, 1, i64::MAX as u64][i % 3],
                );
                r.user_agent = (i % 5 != 0).then(|| format!("agent/{n} ✓").into());
                r.ip = (i % 7 != 0).then_some(r.ip.unwrap_or_default());
                r.method = ["GET", "HEAD"][i % 2].into();
                r
            })
            .collect();
        stored += insert(store, &batch_rows);
        rows.extend(batch_rows);
    }
    assert_eq!(stored, rows.len());
    assert_stored(store, &rows);
}

fn keyset_pagination_newest_first(store: &dyn WatchLogStore) {
    insert(store, &sample());
    let full = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    for pair in full.windows(2) {
        assert!(
            (pair[0].created_at, pair[0].id) > (pair[1].created_at, pair[1].id),
            "newest first"
        );
    }
    let mut paged = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store.query(&LogFilter::default(), after, 7).unwrap();
        assert!(page.entries.len() <= 7);
        paged.extend(page.entries);
        match page.next {
            Some(next) => after = Some(Cursor::decode(&next.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(
        paged, full,
        "pages concatenate to the full list, no gap, no repeat"
    );
}

/// Pages that end inside a group of rows sharing one time go on with the
/// rest of the group: at a whole second, a whole millisecond, any
/// microsecond.
fn keyset_pages_split_ties_anywhere(store: &dyn WatchLogStore) {
    let instants = [
        base(),
        base() + Duration::milliseconds(1500),
        base() + Duration::microseconds(2_000_123),
        base() + Duration::microseconds(2_000_120),
    ];
    let rows: Vec<WatchRecord> = (0..24u32)
        .map(|i| {
            record(
                i,
                instants[(i % 4) as usize],
                "a.mp4",
                None,
                "10.0.0.1",
                206,
                1,
            )
        })
        .collect();
    insert(store, &rows);
    let full = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    assert_eq!(full.len(), 24);
    for size in [1, 2, 4, 5] {
        let mut paged = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = store.query(&LogFilter::default(), after, size).unwrap();
            paged.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, full, "pages of {size}");
    }
}

fn filters(store: &dyn WatchLogStore) {
    let rows = sample();
    insert(store, &rows);
    let expect = |filter: LogFilter| {
        let want = rows
            .iter()
            .filter(|r| {
                filter.path.as_deref().is_none_or(|p| r.path == p)
                    && filter
                        .user_id
                        .as_deref()
                        .is_none_or(|u| r.user_id.as_deref() == Some(u))
                    && filter.authenticated.is_none_or(|a| r.is_authenticated == a)
                    && filter
                        .ip
                        .as_deref()
                        .is_none_or(|ip| r.ip.as_deref() == Some(ip))
                    && filter.status.is_none_or(|s| i32::from(r.status) == s)
                    && filter.since.is_none_or(|t| r.created_at.naive_utc() >= t)
                    && filter.until.is_none_or(|t| r.created_at.naive_utc() < t)
                    && filter.search.as_deref().is_none_or(|q| {
                        r.path.contains(q)
                            || r.user_id.as_deref().is_some_and(|u| u.contains(q))
                            || r.ip.as_deref().is_some_and(|i| i.contains(q))
                    })
            })
            .count() as u64;
        assert!(want > 0, "filter {filter:?} should match something");
        assert_eq!(store.count(&filter).unwrap(), want, "{filter:?}");
        let page = store.query(&filter, None, 1000).unwrap();
        assert_eq!(page.entries.len() as u64, want, "{filter:?}");
        assert!(page.entries.iter().all(|e| filter.matches(e)));
    };
    expect(LogFilter {
        path: Some("dir/b.webm".into()),
        ..Default::default()
    });
    expect(LogFilter {
        user_id: Some("alice".into()),
        ..Default::default()
    });
    expect(LogFilter {
        authenticated: Some(false),
        ..Default::default()
    });
    expect(LogFilter {
        authenticated: Some(true),
        ..Default::default()
    });
    expect(LogFilter {
        ip: Some("2001:db8::7".into()),
        ..Default::default()
    });
    expect(LogFilter {
        status: Some(403),
        ..Default::default()
    });
    expect(LogFilter {
        since: Some((base() + Duration::seconds(10)).naive_utc()),
        until: Some((base() + Duration::seconds(20)).naive_utc()),
        ..Default::default()
    });
    expect(LogFilter {
        search: Some("b.we".into()),
        ..Default::default()
    });
    expect(LogFilter {
        search: Some("bo".into()),
        ..Default::default()
    });
    expect(LogFilter {
        search: Some("db8".into()),
        ..Default::default()
    });
    // LIKE metacharacters are matched literally.
    expect(LogFilter {
        search: Some("100%_".into()),
        ..Default::default()
    });
    assert_eq!(
        store
            .count(&LogFilter {
                search: Some("%".into()),
                path: Some("a.mp4".into()),
                ..Default::default()
            })
            .unwrap(),
        0
    );
    expect(LogFilter {
        path: Some("a.mp4".into()),
        user_id: Some("alice".into()),
        status: Some(200),
        ..Default::default()
    });
}

fn path_aggregates(store: &dyn WatchLogStore) {
    let rows = sample();
    insert(store, &rows);
    let stats = store.path_stats(&LogFilter::default(), 10).unwrap();
    assert_eq!(stats.len(), 3);
    for s in &stats {
        let of_path: Vec<&WatchRecord> = rows.iter().filter(|r| r.path == s.path).collect();
        assert_eq!(s.views as usize, of_path.len());
        let viewers: std::collections::HashSet<String> =
            of_path.iter().map(|r| r.viewer_key()).collect();
        assert_eq!(s.unique_viewers as usize, viewers.len(), "{}", s.path);
        assert_eq!(
            s.bytes_sent as u64,
            of_path.iter().map(|r| r.bytes_sent).sum::<u64>()
        );
    }
    let one = store
        .path_stats(
            &LogFilter {
                user_id: Some("bob".into()),
                ..Default::default()
            },
            1,
        )
        .unwrap();
    assert_eq!(one.len(), 1);
}

fn daily_counts(store: &dyn WatchLogStore) {
    let mut rows = sample();
    // Five rows two days later.
    for (i, r) in rows.iter_mut().enumerate().take(5) {
        r.created_at = base() + Duration::days(2) + Duration::minutes(i as i64);
    }
    insert(store, &rows);
    let days = store.views_per_day(&LogFilter::default()).unwrap();
    let got: Vec<(String, i64)> = days.iter().map(|d| (d.day.to_string(), d.views)).collect();
    assert_eq!(
        got,
        vec![("2026-11-01".to_owned(), 25), ("2026-11-03".to_owned(), 5)]
    );
    let alice = store
        .views_per_day(&LogFilter {
            user_id: Some("alice".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(alice.iter().map(|d| d.views).sum::<i64>(), 8);
}

/// The client IP the logging layer stores for a request from `peer`,
/// found by running one request through it into a memory store.
fn ip_as_the_layer_stores_it(peer: &str) -> Option<String> {
    use sage_stream::log::{WatchLogLayer, WatchLogWriter, WriterConfig};
    use tower::{ServiceBuilder, ServiceExt};
    let store = Arc::new(MemoryStore::new());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(WatchLogLayer::new(sink))
        .service(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"x"),
            )))
        }));
    let mut req = http::Request::get("/?path=a.mp4").body(()).unwrap();
    req.extensions_mut()
        .insert(sage_stream::extension::PeerAddr(peer.parse().unwrap()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let res = svc.oneshot(req).await.unwrap();
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
    });
    assert!(writer.wait_idle(std::time::Duration::from_secs(10)));
    writer.shutdown();
    let entries = store.entries();
    assert_eq!(entries.len(), 1);
    entries[0].ip.clone()
}

/// The database's generated `viewer_key` column says what
/// `WatchRecord::viewer_key` says, whoever the viewer is.
fn viewer_key_agrees_with_the_record(store: &dyn WatchLogStore) {
    let mapped = ip_as_the_layer_stores_it("[::ffff:192.0.2.7]:443");
    assert_eq!(
        mapped.as_deref(),
        Some("192.0.2.7"),
        "the layer stores IPv4"
    );
    let unusual = "ünï 'q' \"dq\" %_\\ u:x ip:y\n\t✓";
    let viewers: [(Option<&str>, Option<&str>); 10] = [
        (Some("alice"), Some("192.0.2.1")),
        (Some("alice"), Some("2001:db8::1")),
        (Some("bob"), None),
        (None, Some("192.0.2.1")),
        (None, Some("2001:db8::1")),
        (None, mapped.as_deref()),
        // The same address as text no layer writes, but another writer might.
        (None, Some("::ffff:192.0.2.7")),
        (None, None),
        (Some(unusual), Some("192.0.2.1")),
        (Some(""), None),
    ];
    let rows: Vec<WatchRecord> = viewers
        .iter()
        .enumerate()
        .map(|(i, (user, ip))| {
            let mut r = record(i as u32, base(), "a.mp4", *user, "", 200, 1);
            r.ip = ip.map(Into::into);
            r
        })
        .collect();
    insert(store, &rows);
    let entries = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    assert_eq!(entries.len(), rows.len());
    for entry in &entries {
        let original = rows
            .iter()
            .find(|r| r.range_header.as_deref() == entry.range_header.as_deref())
            .expect("stored row");
        assert_eq!(
            entry.viewer_key,
            original.viewer_key(),
            "user {:?}, ip {:?}",
            original.user_id,
            original.ip
        );
    }
    let stats = store.path_stats(&LogFilter::default(), 10).unwrap();
    let distinct: std::collections::HashSet<String> =
        rows.iter().map(WatchRecord::viewer_key).collect();
    assert_eq!(stats[0].unique_viewers as usize, distinct.len());
}

/// `prune` deletes exactly the rows created before the cutoff and the batch
/// ids stored before it, oldest first and a chunk at a time; `prunable`
/// counts the same and deletes nothing.
fn prune_removes_exactly_the_old_rows_and_batch_ids(store: &dyn WatchLogStore) {
    use chrono::SubsecRound;
    let row = |i: u32, at: DateTime<Utc>| record(i, at, "a.mp4", None, "10.0.0.1", 206, 1);
    let now = Utc::now();
    // Stored before the cutoff: rows recorded before that.
    let a = WatchBatch {
        id: "prune-a:1".into(),
        records: vec![
            row(0, now - Duration::days(10)),
            row(1, now - Duration::days(1)),
        ],
    };
    assert_eq!(store.insert_batch(&a).unwrap(), 2);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff_utc = Utc::now().trunc_subsecs(6);
    let cutoff = cutoff_utc.naive_utc();
    std::thread::sleep(std::time::Duration::from_millis(5));
    // Stored after it: a late spool replay holding old rows, and rows at
    // the cutoff and after it (not older than it, so kept).
    let b = WatchBatch {
        id: "prune-b:1".into(),
        records: vec![
            row(10, cutoff_utc - Duration::days(5)),
            row(11, cutoff_utc - Duration::microseconds(1)),
            row(12, cutoff_utc),
            row(13, cutoff_utc + Duration::hours(1)),
        ],
    };
    assert_eq!(store.insert_batch(&b).unwrap(), 4);
    let ranges = |store: &dyn WatchLogStore| -> Vec<String> {
        let mut left: Vec<String> = store
            .query(&LogFilter::default(), None, 100)
            .unwrap()
            .entries
            .into_iter()
            .filter_map(|e| e.range_header)
            .collect();
        left.sort();
        left
    };

    let dry = store.prunable(cutoff).unwrap();
    assert_eq!(
        dry,
        Pruned {
            rows: 4,
            batches: 1
        }
    );
    assert_eq!(
        store.count(&LogFilter::default()).unwrap(),
        6,
        "counting deletes nothing"
    );
    assert_eq!(
        store.last_batch_id("prune-a:").unwrap().as_deref(),
        Some("prune-a:1")
    );

    // One chunk of two: the two oldest rows, and the one old batch id.
    assert_eq!(
        store.prune_chunk(cutoff, 2).unwrap(),
        Pruned {
            rows: 2,
            batches: 1
        }
    );
    assert_eq!(
        ranges(store),
        ["bytes=1-", "bytes=11-", "bytes=12-", "bytes=13-"]
    );
    assert_eq!(
        store.prune(cutoff).unwrap(),
        Pruned {
            rows: 2,
            batches: 0
        }
    );
    assert_eq!(
        store.prune(cutoff).unwrap(),
        Pruned::default(),
        "nothing old is left"
    );
    assert_eq!(store.prunable(cutoff).unwrap(), Pruned::default());
    assert_eq!(ranges(store), ["bytes=12-", "bytes=13-"]);
    let kept = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries;
    assert_eq!(
        kept.iter().map(|e| e.created_at).collect::<Vec<_>>(),
        [(cutoff_utc + Duration::hours(1)).naive_utc(), cutoff]
    );

    // The old batch's id went with its rows, the newer one's stays.
    assert_eq!(store.last_batch_id("prune-a:").unwrap(), None);
    assert_eq!(
        store.last_batch_id("prune-b:").unwrap().as_deref(),
        Some("prune-b:1")
    );
    assert_eq!(store.insert_batch(&b).unwrap(), 0, "b is still known");
    assert_eq!(store.insert_batch(&a).unwrap(), 2, "a's id is gone");
}

/// More old rows than one chunk holds: `prune` goes on until all are gone
/// and keeps every newer row.
fn prune_goes_chunk_by_chunk(store: &dyn WatchLogStore) {
    let old = PRUNE_CHUNK * 2 + 17;
    let rows: Vec<WatchRecord> = (0..old + 5)
        .map(|i| {
            let at = if i < old {
                base() - Duration::milliseconds(i as i64 + 1)
            } else {
                base() + Duration::milliseconds(i as i64)
            };
            record(i as u32, at, "a.mp4", None, "10.0.0.1", 206, 1)
        })
        .collect();
    for chunk in rows.chunks(PRUNE_CHUNK) {
        insert(store, chunk);
    }
    assert_eq!(
        store.count(&LogFilter::default()).unwrap(),
        rows.len() as u64
    );
    // The batches were stored now, after the cutoff: their ids stay.
    let pruned = store.prune(base().naive_utc()).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            rows: old as u64,
            batches: 0
        }
    );
    let left = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|e| e.created_at >= base().naive_utc()));
}

/// A store for one test, with what must live as long as it (a temp dir, a
/// database dropped after the test).
type Opened = (Arc<dyn WatchLogStore>, Box<dyn std::any::Any>);

/// One case of the suite: its name and its body.
type Case = (&'static str, fn(&dyn WatchLogStore));

/// The suite against one backend, as `BACKEND::case` tests; `open` makes a
/// fresh store for each.
fn suite(backend: &str, needs: &[Requirement], open: fn() -> Opened) -> Vec<Test> {
    let cases: [Case; 10] = [
        ("round_trip_and_idempotence", round_trip_and_idempotence),
        (
            "batches_of_every_size_round_trip",
            batches_of_every_size_round_trip,
        ),
        (
            "keyset_pagination_newest_first",
            keyset_pagination_newest_first,
        ),
        ("filters", filters),
        ("daily_counts", daily_counts),
        (
            "viewer_key_agrees_with_the_record",
            viewer_key_agrees_with_the_record,
        ),
        ("path_aggregates", path_aggregates),
        (
            "keyset_pages_split_ties_anywhere",
            keyset_pages_split_ties_anywhere,
        ),
        (
            "prune_removes_exactly_the_old_rows_and_batch_ids",
            prune_removes_exactly_the_old_rows_and_batch_ids,
        ),
        ("prune_goes_chunk_by_chunk", prune_goes_chunk_by_chunk),
    ];
    cases
        .into_iter()
        .map(|(name, case)| {
            let test = Test::sync(format!("{backend}::{name}"), move || {
                let (store, _guard) = open();
                case(&*store);
            });
            needs.iter().fold(test, |test, need| test.needs(*need))
        })
        .collect()
}

fn memory() -> Opened {
    (Arc::new(MemoryStore::new()), Box::new(()))
}

#[cfg(feature = "sqlite")]
fn sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let store = sage_stream::log::SqliteStore::open(dir.path().join("log.db")).unwrap();
    (Arc::new(store), Box::new(dir))
}

#[cfg(feature = "postgres")]
fn postgres() -> Opened {
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    (Arc::new(store), Box::new(db))
}

#[cfg(feature = "sqlite")]
fn open_store_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let store = sage_stream::log::open_store(&url).unwrap();
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 0);
    assert!(sage_stream::log::open_store("mysql://nope").is_err());
    let memory = sage_stream::log::open_store("memory://").unwrap();
    assert_eq!(insert(&memory, &sample()), 30);
}

/// A log written under the first schema (a unique `record_id` per row, a
/// stored `viewer_key`) keeps every row through every later migration, and
/// then takes new batches; reverting back to the first schema and
/// migrating again keeps them too.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn upgrade_keeps_rows<C>(mut conn: C, dir: &str, store: impl FnOnce() -> Arc<dyn WatchLogStore>)
where
    C: diesel::Connection + diesel_migrations::MigrationHarness<C::Backend>,
{
    use diesel_migrations::FileBasedMigrations;
    let migrations = FileBasedMigrations::from_path(dir).unwrap();
    conn.run_next_migration(migrations).unwrap();
    conn.batch_execute(
        "INSERT INTO watch_logs (record_id, created_at, path, user_id, is_authenticated, viewer_key, \
         ip, method, status, range_header, bytes_sent, duration_ms, user_agent, completed) VALUES \
         ('old-1', '2026-11-01 12:00:00.5', 'old.mp4', 'alice', TRUE, 'u:alice', '10.0.0.1', 'GET', \
          206, 'bytes=0-', 4096, 7, 'agent', TRUE)",
    )
    .unwrap();
    let store = store();
    store.migrate().unwrap();
    let page = store.query(&LogFilter::default(), None, 10).unwrap();
    assert_eq!(page.entries.len(), 1);
    let old = &page.entries[0];
    assert_eq!(
        (
            old.path.as_str(),
            old.user_id.as_deref(),
            old.bytes_sent,
            old.status
        ),
        ("old.mp4", Some("alice"), 4096, 206)
    );
    assert_eq!(
        old.created_at,
        base().naive_utc() + Duration::milliseconds(500)
    );
    assert_eq!(old.viewer_key, "u:alice");
    let rows = sample();
    assert_eq!(insert(&*store, &rows), 30);
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 31);
    // Each down.sql, back to the first schema, keeps every row; so does
    // migrating up again.
    let migrations = || FileBasedMigrations::from_path(dir).unwrap();
    let later = diesel::migration::MigrationSource::<C::Backend>::migrations(&migrations())
        .unwrap()
        .len()
        - 1;
    for _ in 0..later {
        conn.revert_last_migration(migrations()).unwrap();
        assert_eq!(store.count(&LogFilter::default()).unwrap(), 31);
    }
    conn.run_pending_migrations(migrations()).unwrap();
    let all = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    assert_eq!(all.len(), 31);
    for entry in &all {
        let expected = rows
            .iter()
            .find(|r| r.range_header.as_deref() == entry.range_header.as_deref())
            .map_or("u:alice".to_owned(), WatchRecord::viewer_key);
        assert_eq!(entry.viewer_key, expected);
    }
    assert_eq!(insert(&*store, &sample()), 30);
}

#[cfg(feature = "sqlite")]
fn sqlite_upgrade_keeps_rows() {
    use diesel::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    upgrade_keeps_rows(conn, "migrations/sqlite", || {
        Arc::new(sage_stream::log::SqliteStore::open(&path).unwrap())
    });
}

#[cfg(feature = "postgres")]
fn postgres_upgrade_keeps_rows() {
    use diesel::Connection;
    let db = common::pg::TestDb::create();
    let conn = diesel::PgConnection::establish(&db.url).unwrap();
    upgrade_keeps_rows(conn, "migrations/postgres", || {
        Arc::new(sage_stream::log::PgStore::connect(&db.url).unwrap())
    });
}

// The settings SqliteStore promises on its pooled connections (WAL, page
// and cache size, multi-threaded SQLite) are checked by a unit test beside
// it: the cache size is per connection, and the pool is not public.

/// After the migrations, the newest-first listing (through `time_index`)
/// and the lookups by user and by path each read their index, and no plan
/// holds a `forbidden` step.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn assert_plans_use_indexes(
    time_index: &str,
    forbidden: &[&str],
    mut plan: impl FnMut(&str) -> String,
) {
    let order = "ORDER BY created_at DESC, id DESC LIMIT 50";
    for (query, index) in [
        (format!("SELECT id FROM watch_logs {order}"), time_index),
        (
            format!("SELECT id FROM watch_logs WHERE user_id = 'alice' {order}"),
            "watch_logs_user_id",
        ),
        (
            format!("SELECT id FROM watch_logs WHERE path = 'a.mp4' {order}"),
            "watch_logs_path",
        ),
    ] {
        let plan = plan(&query);
        assert!(plan.contains(index), "{query}: {plan}");
        for bad in forbidden {
            assert!(!plan.contains(bad), "{query}: {plan}");
        }
    }
}

/// The statements of a prune chunk, as the stores write them (PostgreSQL
/// deletes by its primary key `(created_at, id)`, SQLite by rowid), each
/// with the index that must find the oldest rows.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn prune_statements(key: &str, rows_index: &'static str) -> [(String, &'static str); 2] {
    [
        (
            format!(
                "DELETE FROM watch_logs WHERE ({key}) IN (SELECT {key} FROM watch_logs \
                 WHERE created_at < '2026-01-01' ORDER BY created_at LIMIT 5000)"
            ),
            rows_index,
        ),
        (
            "DELETE FROM watch_log_batches WHERE batch_id IN (SELECT batch_id FROM watch_log_batches \
             WHERE stored_at < '2026-01-01' ORDER BY stored_at LIMIT 5000)"
                .to_owned(),
            "watch_log_batches_stored_at",
        ),
    ]
}

#[cfg(feature = "sqlite")]
fn sqlite_queries_use_their_indexes() {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    use diesel::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    sage_stream::log::SqliteStore::open(&path).unwrap();
    // Indexes live in the file: any connection sees the migrated schema.
    let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    // SQLite ends every index key with the rowid (= id): the index order is
    // the listing's order, so no sort either.
    let mut plan = |query: &str| -> String {
        let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}"))
            .load(&mut conn)
            .unwrap();
        steps.iter().map(|s| format!("{}\n", s.detail)).collect()
    };
    assert_plans_use_indexes(
        "watch_logs_created_at",
        &["TEMP B-TREE", "SCAN watch_logs\n"],
        &mut plan,
    );
    // A prune chunk reads the oldest rows off a time index and deletes them
    // by rowid: no scan, no sort.
    for (statement, index) in prune_statements("id", "watch_logs_created_at") {
        let plan = plan(&statement);
        assert!(plan.contains(index), "{statement}: {plan}");
        for bad in [
            "TEMP B-TREE",
            "SCAN watch_logs\n",
            "SCAN watch_log_batches\n",
        ] {
            assert!(!plan.contains(bad), "{statement}: {plan}");
        }
    }
}

#[cfg(feature = "postgres")]
fn postgres_queries_use_their_indexes() {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let db = common::pg::TestDb::create();
    use diesel::Connection;
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    store.migrate().unwrap();
    let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
    // An empty table is cheapest to scan: forbid that to see which index
    // the planner would use.
    conn.batch_execute("SET enable_seqscan = off").unwrap();
    // The primary key is (created_at, id). The user and path indexes order
    // by created_at; ties by id are sorted (incrementally, on a large table).
    let mut plan = |query: &str| -> String {
        let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN {query}"))
            .load(&mut conn)
            .unwrap();
        lines.iter().map(|l| format!("{}\n", l.line)).collect()
    };
    assert_plans_use_indexes("watch_logs_pkey", &["Seq Scan"], &mut plan);
    // A page after a cursor (as `PgStore` writes it: one row comparison) is
    // a range of the key, not a filter over every newer row.
    let page = "SELECT id FROM watch_logs WHERE (watch_logs.created_at, watch_logs.id) < \
                ('2026-01-01', 5) ORDER BY created_at DESC, id DESC LIMIT 50";
    let keyset = plan(page);
    assert!(
        keyset.contains("Index Cond: (ROW(created_at, id) < ROW("),
        "{page}: {keyset}"
    );
    for (statement, index) in prune_statements("created_at, id", "watch_logs_pkey") {
        let plan = plan(&statement);
        assert!(plan.contains(index), "{statement}: {plan}");
        assert!(!plan.contains("Seq Scan"), "{statement}: {plan}");
    }
}

/// A database that cannot be reached is `Unavailable`; data the database
/// refuses is not (PostgreSQL stores no NUL in text).
#[cfg(feature = "postgres")]
fn postgres_tells_unavailable_from_refused() {
    let down = sage_stream::log::PgStore::connect("postgres://postgres@127.0.0.1:1/none").unwrap();
    let err = down.insert_batch(&WatchBatch::new(sample())).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    let mut rows = sample();
    rows[3].path = "nul\0byte.mp4".into();
    let err = store.insert_batch(&WatchBatch::new(rows)).unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert_eq!(
        store.count(&LogFilter::default()).unwrap(),
        0,
        "nothing half-stored"
    );
}

#[cfg(feature = "sqlite")]
fn sqlite_in_a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let err = sage_stream::log::SqliteStore::open(dir.path().join("missing/log.db")).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
