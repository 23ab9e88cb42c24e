use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text (OpenMetrics, which
/// Prometheus reads).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which routes a response belongs to, a label of every request metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// The stream endpoint (query or path style).
    Stream,
    /// Pages: player and admin.
    Page,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Page => "page",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stream => 0,
            Self::Page => 1,
        }
    }
}

const ROUTES: [Route; 2] = [Route::Stream, Route::Page];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// The server's metrics: a Prometheus registry and handles to its series,
/// cheap to clone. Each instance has its own registry (nothing global), so
/// two servers in one process, or two tests, count apart.
///
/// | metric | what |
/// |---|---|
/// | `sage_stream_requests_total{route,class}` | responses by route (`stream`, `page`) and status class |
/// | `sage_stream_response_bytes_total{route}` | body bytes sent |
/// | `sage_stream_active_streams` | stream responses whose body has not ended |
/// | `sage_stream_refusals_total{reason}` | stream requests refused: `stream_limit` (429), `permission` (401, 403) |
/// | `sage_stream_request_duration_seconds{route}` | time from request to the body's end (histogram) |
/// | `sage_stream_watch_log_rows_{recorded,written,spooled,journaled,replayed,failed,dropped,pruned}_total` | the writer's counters ([`WatchLogCounters`], from `log::WriterStats` in the app); `failed`: refused by the database, quarantined; `dropped`: beyond the memory or spool bound |
/// | `sage_stream_watch_log_store_errors_total` | failed store calls |
/// | `sage_stream_watch_log_queue_rows`, `_spool_bytes`, `_store_failing` | rows waiting in memory, bytes in the spool, 1 while the store fails |
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    // Indexed [route][class]: a response adds to its counter without a
    // label lookup.
    requests: [[Counter; 5]; 2],
    bytes: [Counter; 2],
    durations: [Histogram; 2],
    active_streams: Gauge,
    refused_by_limit: Counter,
    refused_by_permission: Counter,
    watch_log: Arc<OnceLock<CountersFn>>,
    limit_store: Arc<OnceLock<LimitStoreFn>>,
}

type CountersFn = Box<dyn Fn() -> WatchLogCounters + Send + Sync>;
type LimitStoreFn = Box<dyn Fn() -> LimitStoreStatus + Send + Sync>;

/// The state of a shared stream-limit store (Redis), as the metrics export
/// it: read at each scrape from the function given to
/// [`Metrics::limit_store`]. Start from `default()` and set the fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStoreStatus {
    /// Whether the store answered its last call in time.
    pub reachable: bool,
    /// Streams admitted by the per-node count while it was away.
    pub fallbacks: u64,
}

/// The watch-log writer's counters, as the metrics export them: read at
/// each scrape from the function given to [`Metrics::watch_log`] (the app
/// fills it from `log::WatchLogSink::stats`). Start from `default()` and
/// set the fields you have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchLogCounters {
    /// Rows handed to the writer.
    pub recorded: u64,
    /// Rows the store confirmed.
    pub written: u64,
    /// Rows appended to the spool file.
    pub spooled: u64,
    /// Rows journaled as they were recorded.
    pub journaled: u64,
    /// Rows replayed from the spool.
    pub replayed: u64,
    /// Rows the database refused (quarantined).
    pub quarantined: u64,
    /// Rows dropped by the memory or spool bound.
    pub rows_dropped: u64,
    /// Rows deleted by retention.
    pub pruned: u64,
    /// Failed store calls.
    pub failures: u64,
    /// Rows waiting in memory.
    pub queued: u64,
    /// Bytes in the spool files.
    pub spool_bytes: u64,
    /// Whether the store is failing now.
    pub store_failing: bool,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sage_stream");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<RouteLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 1 ms to about 4.5 min: a small file to a long stream.
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        let refusals = Family::<RefusalLabels, Counter>::default();
        let active_streams = Gauge::default();
        registry.register(
            "requests",
            "Responses by route and status class",
            requests.clone(),
        );
        registry.register("response_bytes", "Response body bytes sent", bytes.clone());
        registry.register(
            "request_duration_seconds",
            "Time from the request to the end of its response body",
            durations.clone(),
        );
        registry.register(
            "active_streams",
            "Stream responses whose body has not ended",
            active_streams.clone(),
        );
        registry.register(
            "refusals",
            "Stream requests refused, by reason",
            refusals.clone(),
        );
        let watch_log = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(WatchLogCollector(Arc::clone(&watch_log))));
        let limit_store = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(LimitStoreCollector(Arc::clone(&limit_store))));
        let route = |r: Route| r.as_str();
        let requests = ROUTES.map(|r| {
            CLASSES.map(|class| {
                requests
                    .get_or_create(&RequestLabels {
                        route: route(r),
                        class,
                    })
                    .clone()
            })
        });
        let bytes = ROUTES.map(|r| {
            bytes
                .get_or_create(&RouteLabels { route: route(r) })
                .clone()
        });
        let durations = ROUTES.map(|r| {
            durations
                .get_or_create(&RouteLabels { route: route(r) })
                .clone()
        });
        let refusal = |reason| refusals.get_or_create(&RefusalLabels { reason }).clone();
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                bytes,
                durations,
                active_streams,
                refused_by_limit: refusal("stream_limit"),
                refused_by_permission: refusal("permission"),
                watch_log,
                limit_store,
            }),
        }
    }

    /// Also exports the state of a shared stream-limit store, read with
    /// `status` at each scrape. The first function given is kept.
    pub fn limit_store(
        self,
        status: impl Fn() -> LimitStoreStatus + Send + Sync + 'static,
    ) -> Self {
        let _ = self.inner.limit_store.set(Box::new(status));
        self
    }

    /// Also exports a watch-log writer's counters, read with `counters` at
    /// each scrape. The first function given is kept.
    pub fn watch_log(
        self,
        counters: impl Fn() -> WatchLogCounters + Send + Sync + 'static,
    ) -> Self {
        let _ = self.inner.watch_log.set(Box::new(counters));
        self
    }

    /// The metrics in the text format ([`METRICS_CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    pub(super) fn stream_started(&self) {
        self.inner.active_streams.inc();
    }

    pub(super) fn response_ended(
        &self,
        route: Route,
        status: StatusCode,
        bytes: u64,
        took: Duration,
    ) {
        let inner = &*self.inner;
        let r = route.index();
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        inner.requests[r][class].inc();
        inner.bytes[r].inc_by(bytes);
        inner.durations[r].observe(took.as_secs_f64());
        if route == Route::Stream {
            inner.active_streams.dec();
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    inner.refused_by_limit.inc();
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    inner.refused_by_permission.inc();
                }
                _ => {}
            }
        }
    }
}

/// Reads the writer's counters at each scrape.
struct WatchLogCollector(Arc<OnceLock<CountersFn>>);

impl fmt::Debug for WatchLogCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchLogCollector").finish_non_exhaustive()
    }
}

impl Collector for WatchLogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(counters) = self.0.get() else {
            return Ok(());
        };
        let stats = counters();
        let counters = [
            (
                "watch_log_rows_recorded",
                "Watch-log rows handed to the writer",
                stats.recorded,
            ),
            (
                "watch_log_rows_written",
                "Watch-log rows the store confirmed",
                stats.written,
            ),
            (
                "watch_log_rows_spooled",
                "Watch-log rows appended to the spool file",
                stats.spooled,
            ),
            (
                "watch_log_rows_journaled",
                "Watch-log rows journaled as they were recorded",
                stats.journaled,
            ),
            (
                "watch_log_rows_replayed",
                "Watch-log rows replayed from the spool",
                stats.replayed,
            ),
            (
                "watch_log_rows_failed",
                "Watch-log rows the database refused (quarantined)",
                stats.quarantined,
            ),
            (
                "watch_log_rows_dropped",
                "Watch-log rows dropped by the memory or spool bound",
                stats.rows_dropped,
            ),
            (
                "watch_log_rows_pruned",
                "Watch-log rows deleted by retention",
                stats.pruned,
            ),
            (
                "watch_log_store_errors",
                "Failed watch-log store calls",
                stats.failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "watch_log_queue_rows",
                "Watch-log rows waiting in memory",
                stats.queued,
            ),
            (
                "watch_log_spool_bytes",
                "Bytes in the watch-log spool files",
                stats.spool_bytes,
            ),
            (
                "watch_log_store_failing",
                "1 while the watch-log store fails",
                u64::from(stats.store_failing),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Reads the shared stream-limit store's state at each scrape.
struct LimitStoreCollector(Arc<OnceLock<LimitStoreFn>>);

impl fmt::Debug for LimitStoreCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitStoreCollector")
            .finish_non_exhaustive()
    }
}

impl Collector for LimitStoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(status) = self.0.get() else {
            return Ok(());
        };
        let status = status();
        let gauge = ConstGauge::new(i64::from(status.reachable));
        gauge.encode(encoder.encode_descriptor(
            "limit_store_reachable",
            "1 while the shared stream-limit store (Redis) answers in time",
            None,
            gauge.metric_type(),
        )?)?;
        let counter = ConstCounter::new(status.fallbacks);
        counter.encode(encoder.encode_descriptor(
            "limit_store_fallbacks",
            "Streams admitted by the per-node count while the shared store was away",
            None,
            counter.metric_type(),
        )?)?;
        Ok(())
    }
}
