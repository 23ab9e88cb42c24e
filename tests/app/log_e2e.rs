//! The watch log end to end: a real server on 127.0.0.1, a real client, and
//! real databases (SQLite; PostgreSQL on the shared server and on a server
//! of the test's own that is stopped mid-run).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::harness::Test;
use common::Fixture;
use sage_stream::log::{
    LogFilter, WatchLogEntry, WatchLogLayer, WatchLogStore, WatchLogWriter, WriterConfig,
    WriterHandle,
};
use sage_stream::server::{serve, ServerConfig};
use sage_stream::StreamEndpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tower::ServiceBuilder;

pub fn tests() -> Vec<Test> {
    vec![
        #[cfg(feature = "sqlite")]
        Test::tokio(
            "sqlite::exact_rows_for_ranged_requests",
            sqlite::exact_rows_for_ranged_requests,
        ),
        #[cfg(feature = "sqlite")]
        Test::tokio(
            "sqlite::hang_up_is_logged_with_bytes_really_sent",
            sqlite::hang_up_is_logged_with_bytes_really_sent,
        ),
        #[cfg(feature = "postgres")]
        Test::tokio(
            "postgres::exact_rows_for_ranged_requests",
            postgres::exact_rows_for_ranged_requests,
        )
        .needs(common::harness::Requirement::Postgres),
        #[cfg(feature = "postgres")]
        Test::tokio(
            "postgres::hang_up_is_logged_with_bytes_really_sent",
            postgres::hang_up_is_logged_with_bytes_really_sent,
        )
        .needs(common::harness::Requirement::Postgres),
        #[cfg(feature = "postgres")]
        Test::tokio_multi_thread(
            "postgres::two_nodes_with_separate_pools_share_one_log",
            2,
            postgres::two_nodes_with_separate_pools_share_one_log,
        )
        .needs(common::harness::Requirement::Postgres),
        #[cfg(feature = "postgres")]
        Test::tokio_multi_thread(
            "postgres::outage_loses_no_row_and_never_stops_streaming",
            2,
            postgres::outage_loses_no_row_and_never_stops_streaming,
        )
        .needs(common::harness::Requirement::PostgresServer),
        #[cfg(feature = "postgres")]
        Test::sync(
            "postgres::a_full_spool_disk_counts_every_row_and_never_spins",
            postgres::a_full_spool_disk_counts_every_row_and_never_spins,
        )
        .needs(common::harness::Requirement::PostgresServer)
        .needs(common::harness::Requirement::Mount),
    ]
}

struct Node {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: WriterHandle,
}

impl Node {
    async fn start(fx: &Fixture, store: Arc<dyn WatchLogStore>, config: WriterConfig) -> Self {
        let (sink, writer) = WatchLogWriter::spawn(store, config).unwrap();
        let svc = ServiceBuilder::new()
            .layer(WatchLogLayer::new(sink))
            .service(StreamEndpoint::new(&fx.root).into_service());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, svc, ServerConfig::default(), async {
            let _ = stopped.await;
        }));
        Node {
            addr,
            stop,
            task,
            writer,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/stream?path={path}", self.addr)
    }

    /// Graceful shutdown: server first, then the writer drains.
    async fn stop(self) -> sage_stream::log::WriterStats {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        self.writer.shutdown_async().await
    }
}

fn quick() -> WriterConfig {
    WriterConfig::default()
        .flush_interval(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
}

/// `n` ranged GETs of `size`-byte slices, `parallel` at a time; checks the
/// bytes and returns the total.
/// `n` ranged GETs, each with the User-Agent `<tag>-<i>` so that its row can
/// be told apart (a duplicate row shows as a repeated agent).
async fn ranged_requests(
    node: &Node,
    tag: &str,
    file: &str,
    data: &[u8],
    n: usize,
    size: usize,
) -> u64 {
    let client = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let url = node.url(file);
        let start = (i * 7919) % (data.len() - size);
        let want = data[start..start + size].to_vec();
        let agent = format!("{tag}-{i}");
        set.spawn(async move {
            let res = client
                .get(url)
                .header("range", format!("bytes={}-{}", start, start + size - 1))
                .header("user-agent", agent)
                .send()
                .await
                .expect("the stream never fails");
            assert_eq!(res.status(), 206);
            assert_eq!(res.bytes().await.unwrap().as_ref(), want.as_slice());
        });
        if set.len() >= 8 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    (n * size) as u64
}

/// The User-Agents of `rows`, sorted (duplicates kept).
fn agents(rows: &[WatchLogEntry]) -> Vec<String> {
    let mut agents: Vec<String> = rows.iter().filter_map(|r| r.user_agent.clone()).collect();
    agents.sort();
    agents
}

/// The agents `ranged_requests` sends for each `(tag, n)`, sorted.
fn expected_agents(runs: &[(&str, usize)]) -> Vec<String> {
    let mut agents: Vec<String> = runs
        .iter()
        .flat_map(|(tag, n)| (0..*n).map(move |i| format!("{tag}-{i}")))
        .collect();
    agents.sort();
    agents
}

async fn exact_rows_for_ranged_requests(store: Arc<dyn WatchLogStore>) {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 2 << 20);
    let node = Node::start(&fx, store.clone(), quick()).await;
    let total = ranged_requests(&node, "r", "clip.mp4", &data, 40, 10_000).await;
    let stats = node.stop().await;
    assert_eq!(stats.recorded, 40);
    let filter = LogFilter {
        path: Some("clip.mp4".into()),
        ..Default::default()
    };
    assert_eq!(store.count(&filter).unwrap(), 40);
    let agg = store.path_stats(&filter, 1).unwrap();
    assert_eq!(agg[0].bytes_sent as u64, total);
    let rows = store.query(&filter, None, 100).unwrap().entries;
    assert!(rows.iter().all(|r| r.status == 206
        && r.completed
        && r.bytes_sent == 10_000
        && r.ip.as_deref() == Some("127.0.0.1")));
    assert_eq!(agents(&rows), expected_agents(&[("r", 40)]));
}

async fn hang_up_is_logged_with_bytes_really_sent(store: Arc<dyn WatchLogStore>) {
    let fx = Fixture::new();
    fx.file("big.mp4", 32 << 20);
    let node = Node::start(&fx, store.clone(), quick()).await;
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"GET /api/stream?path=big.mp4 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while received < 512 * 1024 {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        received += n;
    }
    drop(stream);
    // The server notices the hang-up on its next write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.stop().await;
    let rows = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(!row.completed);
    assert_eq!(row.status, 200);
    // Headers came out of `received` too; socket buffers hold the rest.
    assert!(
        row.bytes_sent as usize >= received - 1024,
        "{} < {received}",
        row.bytes_sent
    );
    assert!((row.bytes_sent as usize) < 32 << 20);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    fn store(fx: &tempfile::TempDir) -> Arc<dyn WatchLogStore> {
        Arc::new(sage_stream::log::SqliteStore::open(fx.path().join("log.db")).unwrap())
    }

    pub(super) async fn exact_rows_for_ranged_requests() {
        let dir = tempfile::tempdir().unwrap();
        super::exact_rows_for_ranged_requests(store(&dir)).await;
    }

    pub(super) async fn hang_up_is_logged_with_bytes_really_sent() {
        let dir = tempfile::tempdir().unwrap();
        super::hang_up_is_logged_with_bytes_really_sent(store(&dir)).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::own_pg::OwnPostgres;
    use common::pg::TestDb;
    use sage_stream::log::PgStore;

    pub(super) async fn exact_rows_for_ranged_requests() {
        let db = TestDb::create();
        super::exact_rows_for_ranged_requests(Arc::new(PgStore::connect(&db.url).unwrap())).await;
    }

    pub(super) async fn hang_up_is_logged_with_bytes_really_sent() {
        let db = TestDb::create();
        super::hang_up_is_logged_with_bytes_really_sent(Arc::new(
            PgStore::connect(&db.url).unwrap(),
        ))
        .await;
    }

    pub(super) async fn two_nodes_with_separate_pools_share_one_log() {
        let db = TestDb::create();
        let fx = Fixture::new();
        let data = fx.file("clip.webm", 1 << 20);
        let a = Node::start(&fx, Arc::new(PgStore::connect(&db.url).unwrap()), quick()).await;
        let b = Node::start(&fx, Arc::new(PgStore::connect(&db.url).unwrap()), quick()).await;
        let (ta, tb) = tokio::join!(
            ranged_requests(&a, "a", "clip.webm", &data, 100, 1000),
            ranged_requests(&b, "b", "clip.webm", &data, 100, 1000)
        );
        let (sa, sb) = tokio::join!(a.stop(), b.stop());
        assert_eq!((sa.written, sb.written), (100, 100));
        let store = PgStore::connect(&db.url).unwrap();
        assert_eq!(store.count(&LogFilter::default()).unwrap(), 200);
        let rows = store
            .query(&LogFilter::default(), None, 1000)
            .unwrap()
            .entries;
        assert_eq!(
            agents(&rows),
            expected_agents(&[("a", 100), ("b", 100)]),
            "every request once, no duplicates"
        );
        assert_eq!(
            rows.iter().map(|r| r.bytes_sent as u64).sum::<u64>(),
            ta + tb
        );
    }

    pub(super) async fn outage_loses_no_row_and_never_stops_streaming() {
        let pg = OwnPostgres::start();
        let fx = Fixture::new();
        let data = fx.file("clip.mp4", 1 << 20);
        let store: Arc<dyn WatchLogStore> = Arc::new(PgStore::connect(&pg.url()).unwrap());
        // A bound small enough for the outage to overflow it, with the
        // spooler's headroom (half the bound) wide enough that a test
        // machine busy with a browser does not outrun it.
        let config = quick()
            .memory_limit(100)
            .spool_path(fx.dir.path().join("log.spool"));
        let node = Node::start(&fx, store.clone(), config).await;

        ranged_requests(&node, "before", "clip.mp4", &data, 30, 4096).await;
        assert!(node.writer.wait_idle(Duration::from_secs(10)));
        pg.down();
        // Streams keep working while the database is gone; rows pile up,
        // past the memory bound into the spool.
        ranged_requests(&node, "during", "clip.mp4", &data, 300, 4096).await;
        // The pool gives up on a connection after its 2 s timeout.
        let mut during = node.writer.stats();
        for _ in 0..100 {
            if during.failures > 0 && during.spooled > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            during = node.writer.stats();
        }
        assert!(during.failures > 0, "{during:?}");
        assert!(during.spooled > 0, "{during:?}");
        pg.up();
        ranged_requests(&node, "after", "clip.mp4", &data, 30, 4096).await;
        let waited = tokio::task::block_in_place(|| node.writer.wait_idle(Duration::from_secs(30)));
        assert!(waited, "{:?}", node.writer.stats());
        let stats = node.stop().await;
        assert_eq!(stats.recorded, 360);
        assert_eq!(
            store.count(&LogFilter::default()).unwrap(),
            360,
            "{stats:?}"
        );
        let rows = store
            .query(&LogFilter::default(), None, 1000)
            .unwrap()
            .entries;
        assert_eq!(
            agents(&rows),
            expected_agents(&[("before", 30), ("during", 300), ("after", 30)]),
            "every request once, no duplicates"
        );
    }

    /// A spool on a 2 MiB filesystem during a real outage: the disk fills
    /// (ENOSPC) long before the spool's own bound. Every row is then stored
    /// or counted as dropped, exactly; the log threads do not spin on the
    /// full disk; the error log says so once in a while, not once per row;
    /// and the rows kept in memory are stored once the database is back.
    pub(super) fn a_full_spool_disk_counts_every_row_and_never_spins() {
        let disk = common::harness::TinyFs::mount(2 << 20).expect("the harness probed the mount");
        let errors = error_log();
        let pg = OwnPostgres::start();
        let store: Arc<dyn WatchLogStore> = Arc::new(PgStore::connect(&pg.url()).unwrap());
        let config = quick()
            .memory_limit(2_000)
            .batch_size(200)
            .spool_path(disk.path().join("log.spool"))
            .shutdown_timeout(Duration::from_secs(5));
        let before = log_threads();
        let (sink, writer) = WatchLogWriter::spawn(store.clone(), config).unwrap();
        // A thread names itself as it starts: wait for the writer's two
        // (writer and spooler).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let ours = loop {
            let ours: Vec<String> = log_threads()
                .into_iter()
                .filter(|t| !before.contains(t))
                .collect();
            if ours.len() >= 2 {
                break ours;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the writer's threads are named sage-stream-log*"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        for i in 0..100 {
            sink.record(big_record(i));
        }
        assert!(
            writer.wait_idle(Duration::from_secs(10)),
            "{:?}",
            writer.stats()
        );

        pg.down();
        let errors_before = errors.load(std::sync::atomic::Ordering::Relaxed);
        let (cpu_before, wall) = (cpu_ticks(&ours), std::time::Instant::now());
        // Two threads record 40 000 rows (about 16 MB of spool lines) over
        // some 4 s: the 2 MiB disk is full within the first second.
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for chunk in 0..80 {
                        for i in 0..250 {
                            sink.record(big_record(100 + t * 20_000 + chunk * 250 + i));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        std::thread::sleep(Duration::from_secs(1));
        let busy = (cpu_ticks(&ours) - cpu_before) as f64 / 100.0;
        let elapsed = wall.elapsed().as_secs_f64();
        let during = writer.stats();
        let error_lines = errors.load(std::sync::atomic::Ordering::Relaxed) - errors_before;
        eprintln!(
            "outage: log threads busy {busy:.2} s of {elapsed:.2} s, {error_lines} error lines, {during:?}"
        );
        assert!(during.rows_dropped > 0, "the disk filled up: {during:?}");
        assert!(
            busy < 0.25 * elapsed,
            "the log threads spin on the full disk: {busy:.2} s of CPU in {elapsed:.2} s"
        );
        assert!(
            error_lines <= 20,
            "{error_lines} error lines: once in a while, not once per row"
        );

        pg.up();
        // Rows after the outage, too.
        for i in 40_100..40_200 {
            sink.record(big_record(i));
        }
        assert!(
            writer.wait_idle(Duration::from_secs(30)),
            "{:?}",
            writer.stats()
        );
        let stats = writer.shutdown();
        let stored = store.count(&LogFilter::default()).unwrap();
        eprintln!("after: stored {stored}, {stats:?}");
        assert_eq!(stats.recorded, 40_200);
        assert_eq!(
            stored + stats.rows_dropped,
            stats.recorded,
            "every row is stored or counted as dropped: {stats:?}"
        );
        assert!(
            stored >= 100 + 100 + 2_000 / 4,
            "the rows kept in memory and those after the outage are stored: {stored}"
        );
        let rows = store
            .query(&LogFilter::default(), None, 50_000)
            .unwrap()
            .entries;
        let mut agents = agents(&rows);
        let n = agents.len();
        agents.dedup();
        assert_eq!(agents.len(), n, "no row twice");
    }

    /// A row of some 400 bytes of JSON, told apart by its User-Agent.
    fn big_record(i: usize) -> sage_stream::log::WatchRecord {
        sage_stream::log::WatchRecord {
            created_at: chrono::Utc::now(),
            path: format!("videos/show-{}/episode-{:04}.mp4", i % 13, i % 997).into(),
            user_id: Some(format!("user-{}", i % 101).into()),
            is_authenticated: true,
            ip: Some("192.0.2.10".into()),
            method: "GET".into(),
            status: 206,
            range_header: Some(format!("bytes={}-", i * 4096).into()),
            bytes_sent: 4096,
            duration_ms: 3,
            user_agent: Some(format!("agent-{i:06} Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36").into()),
            completed: true,
            range_start: None,
        }
    }

    /// This process's threads named like the writer's (`sage-stream-log…`:
    /// the kernel keeps 15 bytes of a name), by task id.
    fn log_threads() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|tid| {
                std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                    .is_ok_and(|c| c.starts_with("sage-stream-log"))
            })
            .collect()
    }

    /// User plus system CPU time of these threads, in clock ticks (100 Hz).
    fn cpu_ticks(tids: &[String]) -> u64 {
        tids.iter()
            .filter_map(|tid| std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok())
            .map(|stat| {
                // Fields after the name in parentheses; utime and stime are
                // the 14th and 15th of the whole line.
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                let fields: Vec<&str> = rest.split(' ').collect();
                fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
            })
            .sum()
    }

    /// Counts the error-log lines of the crate (a subscriber for this test
    /// binary, installed once).
    fn error_log() -> Arc<std::sync::atomic::AtomicU64> {
        static COUNT: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>> =
            std::sync::OnceLock::new();
        COUNT
            .get_or_init(|| {
                let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let _ = tracing::subscriber::set_global_default(CountErrors(count.clone()));
                count
            })
            .clone()
    }

    struct CountErrors(Arc<std::sync::atomic::AtomicU64>);

    impl tracing::Subscriber for CountErrors {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() == tracing::Level::ERROR
                && metadata.target().starts_with("sage_stream")
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
}
