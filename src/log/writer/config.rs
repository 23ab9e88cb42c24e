//! [`WriterConfig`] and [`WriterStats`].

use std::path::PathBuf;
use std::time::Duration;

/// Tuning of a [`WatchLogWriter`]: start from [`WriterConfig::default`]
/// and change what you need with the setters (builder style), e.g.
/// `WriterConfig::default().spool_path(path).durable(true)`. The fields
/// can be read (and assigned); new ones may come, so the type cannot be
/// built as a struct literal outside this crate.
///
/// [`WatchLogWriter`]: super::WatchLogWriter
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most rows per transaction (default 5 000). The writer also flushes
    /// every `flush_interval`, so under load a transaction carries what
    /// arrived in that time: fewer, larger transactions write each index
    /// page once for many rows.
    pub batch_size: usize,
    /// Longest a row waits before its batch is taken for a transaction
    /// (default 200 ms), counted from when the writer last emptied the
    /// queue, so a long transaction does not add to it. With a spool, rows
    /// the writer has not taken a quarter of an interval after that go to
    /// the spool file instead (a `write`: they survive a `kill -9`).
    pub flush_interval: Duration,
    /// Most rows kept in memory while the store is slow or down (default
    /// 50 000), besides the one batch being written and the one take the
    /// spool thread is writing. Past half of it the spool thread moves the
    /// newest rows to the spool. Rows no spool has taken — there is none, it
    /// cannot be written, or the spool thread has fallen behind (a request
    /// never writes or waits itself) — are dropped over the bound, oldest
    /// first, counted in
    /// [`WriterStats::rows_dropped`] and reported in the error log: memory
    /// stays bounded whatever happens to the store.
    pub memory_limit: usize,
    /// Spool file (default `None`: no spool, so an outage longer than
    /// `memory_limit` rows drops the oldest rows; `sage-stream serve` always
    /// sets one).
    pub spool_path: Option<PathBuf>,
    /// Most bytes the spool holds, the files set aside for replay included
    /// (default 256 MiB). The spool is kept as segments of a sixteenth of
    /// this; an append that would pass it deletes the oldest segments first
    /// (their rows counted in [`WriterStats::rows_dropped`] and named in the
    /// error log), so a long outage keeps the newest rows, never an
    /// unbounded disk.
    pub spool_max_bytes: u64,
    /// Journals every row to the spool file as its response ends, before it
    /// is queued anywhere (default false; needs `spool_path`). The request
    /// hands the row to the journal thread (no I/O on the request's
    /// thread), which appends the rows that arrived meanwhile with one
    /// `write`; a response that completed holds back its last bytes until
    /// its row is written (see [`LoggedBody`](crate::log::LoggedBody)). So a
    /// row whose response a client has in full survives the process being
    /// killed (`kill -9`, an OOM kill, an abort). A response never waits on
    /// a failing disk: while the journal backs off after a failed write,
    /// when its hand-off holds `memory_limit` rows, or once a write has
    /// taken over a second, rows are queued in memory as without this flag
    /// (counted, within the bound) and responses end at once. The writer
    /// fsyncs the journal every `flush_interval`, which bounds what a
    /// power loss can take. Without it, a killed process loses the rows
    /// not yet committed nor in the spool file: with a spool, those of the
    /// last `flush_interval` and a quarter (the spool thread hands rows the
    /// writer has not taken by then to the spool file) plus the one batch in
    /// a transaction; without a spool, every row queued (up to
    /// `memory_limit` while the store is down). docs/watch-log.md has the
    /// measured figures.
    pub durable: bool,
    /// Where rows the database refuses for their data go, one JSON line
    /// each (default `None`: beside the spool as `<spool>.quarantine`, or
    /// only the error log when there is no spool). Such a row can never be
    /// stored as it is; quarantining it lets every other row through.
    pub quarantine_path: Option<PathBuf>,
    /// Longest pause between retries while the store fails (default 5 s).
    pub max_backoff: Duration,
    /// How long [`WriterHandle::shutdown`](super::WriterHandle::shutdown) keeps trying the store before it
    /// spools what is left (default 10 s).
    pub shutdown_timeout: Duration,
    /// Runs the writer thread at the lowest CPU priority (default true): when
    /// the CPU is saturated, streams come first and rows wait in the queue
    /// instead. The spool thread keeps the normal priority, since it is what
    /// bounds that queue.
    pub low_priority: bool,
    /// Deletes rows older than this, with the batch ids stored before the
    /// same cutoff ([`WatchLogStore::prune`](crate::log::WatchLogStore::prune)), when the writer starts and
    /// then every `retention_interval` (default `None`: rows are kept for
    /// ever). It runs on a thread of its own at the writer's priority, a
    /// chunk of rows per statement, and is logged at info with the count.
    pub retention: Option<Duration>,
    /// How often retention runs (default 24 h).
    pub retention_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            flush_interval: Duration::from_millis(200),
            memory_limit: 50_000,
            spool_path: None,
            spool_max_bytes: 256 * 1024 * 1024,
            durable: false,
            quarantine_path: None,
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            low_priority: true,
            retention: None,
            retention_interval: Duration::from_secs(24 * 3600),
        }
    }
}

impl WriterConfig {
    /// Most rows per transaction ([`WriterConfig::batch_size`]).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Longest a row waits for its transaction
    /// ([`WriterConfig::flush_interval`]).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Most rows kept in memory ([`WriterConfig::memory_limit`]).
    pub fn memory_limit(mut self, rows: usize) -> Self {
        self.memory_limit = rows;
        self
    }

    /// The spool file ([`WriterConfig::spool_path`]).
    pub fn spool_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.spool_path = Some(path.into());
        self
    }

    /// Most bytes in the spool ([`WriterConfig::spool_max_bytes`]).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.spool_max_bytes = bytes;
        self
    }

    /// Journals every row before its response completes
    /// ([`WriterConfig::durable`]).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Where refused rows go ([`WriterConfig::quarantine_path`]).
    pub fn quarantine_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.quarantine_path = Some(path.into());
        self
    }

    /// Longest pause between retries ([`WriterConfig::max_backoff`]).
    pub fn max_backoff(mut self, pause: Duration) -> Self {
        self.max_backoff = pause;
        self
    }

    /// How long shutdown keeps trying the store
    /// ([`WriterConfig::shutdown_timeout`]).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Runs the writer at the lowest CPU priority
    /// ([`WriterConfig::low_priority`]).
    pub fn low_priority(mut self, low: bool) -> Self {
        self.low_priority = low;
        self
    }

    /// Deletes rows older than this ([`WriterConfig::retention`]).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// How often retention runs ([`WriterConfig::retention_interval`]).
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }
}

/// Counters of a writer, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows handed to the sink.
    pub recorded: u64,
    /// Rows the store confirmed (new rows only).
    pub written: u64,
    /// Rows appended to the spool file so far because the store was slow or
    /// down.
    pub spooled: u64,
    /// Rows journaled to the spool file as they were recorded
    /// ([`WriterConfig::durable`]).
    pub journaled: u64,
    /// Rows replayed from the spool into the store.
    pub replayed: u64,
    /// Failed store calls.
    pub failures: u64,
    /// Rows the database refused for their data, set aside in the
    /// quarantine instead of blocking the log.
    pub quarantined: u64,
    /// Rows waiting in memory now.
    pub queued: u64,
    /// Rows handed to the journal thread and not yet written by it
    /// ([`WriterConfig::durable`]): in its inbox or in its write now.
    pub journal_pending: u64,
    /// The most rows that ever waited in memory at once.
    pub queued_peak: u64,
    /// Rows deleted by retention ([`WriterConfig::retention`]).
    pub pruned: u64,
    /// Rows lost to the bounds: dropped from memory over
    /// [`WriterConfig::memory_limit`] when no spool took them, and from the
    /// spool over [`WriterConfig::spool_max_bytes`]. Each drop is also in
    /// the error log.
    pub rows_dropped: u64,
}
