use std::sync::Arc;

use tower_layer::Layer;

use super::client_ip::IpNet;
use super::writer::WatchLogSink;
use super::WatchLog;

#[derive(Clone, Debug)]
pub(super) enum PathSource {
    Query(String),
    UriPath(String),
}

#[derive(Clone, Debug)]
pub(super) struct LogConfig {
    pub(super) enabled: bool,
    pub(super) log_head: bool,
    pub(super) log_not_modified: bool,
    pub(super) log_refusals: bool,
    pub(super) path: PathSource,
    pub(super) trusted_proxies: Vec<IpNet>,
    pub(super) max_field_len: usize,
}

/// Layer that writes one watch-log row per response; see the
/// [module docs](crate::log).
#[derive(Clone, Debug)]
pub struct WatchLogLayer {
    sink: WatchLogSink,
    config: Arc<LogConfig>,
}

impl WatchLogLayer {
    /// Logs into `sink` with the defaults: GET logged whatever the status,
    /// HEAD not logged, `304` and refusals (4xx) logged, path from the `path`
    /// query variable, no trusted proxies.
    pub fn new(sink: WatchLogSink) -> Self {
        Self {
            sink,
            config: Arc::new(LogConfig {
                enabled: true,
                log_head: false,
                log_not_modified: true,
                log_refusals: true,
                path: PathSource::Query(crate::media::DEFAULT_PATH_VAR.to_owned()),
                trusted_proxies: Vec::new(),
                max_field_len: 256,
            }),
        }
    }

    fn config(&mut self) -> &mut LogConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Turns logging on or off (`STREAM_WATCH_LOG_ENABLED`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config().enabled = enabled;
        self
    }

    /// Also logs HEAD requests (default: no; players probe with them).
    pub fn log_head(mut self, log: bool) -> Self {
        self.config().log_head = log;
        self
    }

    /// Logs `304 Not Modified` answers (default: yes).
    pub fn log_not_modified(mut self, log: bool) -> Self {
        self.config().log_not_modified = log;
        self
    }

    /// Logs 4xx answers, refused and failed attempts (default: yes).
    pub fn log_refusals(mut self, log: bool) -> Self {
        self.config().log_refusals = log;
        self
    }

    /// Reads the media path from this query variable (default `path`) when
    /// the inner service does not report it (see
    /// [`ServedFile`](crate::media::ServedFile)).
    pub fn path_var(mut self, name: impl Into<String>) -> Self {
        self.config().path = PathSource::Query(name.into());
        self
    }

    /// Reads the media path from the URI path below `prefix` instead (e.g.
    /// around tower-http's `ServeDir` nested at `prefix`).
    pub fn uri_path(mut self, prefix: impl Into<String>) -> Self {
        self.config().path = PathSource::UriPath(prefix.into().trim_end_matches('/').to_owned());
        self
    }

    /// Proxies whose `Forwarded` / `X-Forwarded-For` are believed.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.config().trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Longest stored `Range` and `User-Agent`, in bytes (default 256).
    pub fn max_field_len(mut self, bytes: usize) -> Self {
        self.config().max_field_len = bytes;
        self
    }
}

impl<S> Layer<S> for WatchLogLayer {
    type Service = WatchLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchLog::new(inner, self.sink.clone(), Arc::clone(&self.config))
    }
}
