use std::sync::Arc;

use tower_layer::Layer;

use super::sink::RecordSink;
use super::writer::WatchLogSink;
use super::WatchLog;
use crate::extension::MediaPathSource;

#[derive(Clone, Debug)]
pub(super) struct LogConfig {
    pub(super) enabled: bool,
    pub(super) log_head: bool,
    pub(super) log_not_modified: bool,
    pub(super) log_refusals: bool,
    pub(super) path: MediaPathSource,
    pub(super) max_field_len: usize,
    pub(super) anonymize_ip: bool,
}

/// Layer that writes one watch-log row per response into a
/// [`RecordSink`] (the writer's [`WatchLogSink`] unless you bring your
/// own); see the [module docs](crate::log).
#[derive(Clone, Debug)]
pub struct WatchLogLayer<K = WatchLogSink> {
    sink: K,
    config: Arc<LogConfig>,
}

impl<K: RecordSink> WatchLogLayer<K> {
    /// Logs into `sink` with the defaults: GET logged whatever the status,
    /// HEAD not logged, `304` and refusals (4xx) logged, path from the `path`
    /// query variable, no trusted proxies.
    pub fn new(sink: K) -> Self {
        Self {
            sink,
            config: Arc::new(LogConfig {
                enabled: true,
                log_head: false,
                log_not_modified: true,
                log_refusals: true,
                path: MediaPathSource::default(),
                max_field_len: 256,
                anonymize_ip: false,
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

    /// Where requests name the media path (default: the `path` query
    /// variable), when no outer
    /// [`ResolveMediaPathLayer`](crate::media_path::ResolveMediaPathLayer)
    /// decided it: the layer then decodes it itself, by the same rule, and
    /// sets the [`MediaPath`](crate::extension::MediaPath) extension for
    /// the layers inside. Either way the row records the **normalised**
    /// path (`./a//b.mp4` as `a/b.mp4`; none for a refused one such as
    /// `../x`), or the one the inner service reports
    /// ([`ServedFile`](crate::extension::ServedFile)) when there is one.
    pub fn media_path(mut self, source: MediaPathSource) -> Self {
        self.config().path = source;
        self
    }

    /// Stores client IPs with the host part zeroed (default: no;
    /// `STREAM_ANONYMIZE_IP`): the last octet of IPv4, the last 80 bits of
    /// IPv6, IPv4-mapped IPv6 as IPv4 ([`anonymize_ip`]). Done as the row is
    /// made, before anything is queued, spooled, stored or counted; the
    /// [`ClientIp`](crate::extension::ClientIp) extension the layers inside
    /// read (the stream limit) keeps the full address, in memory only.
    ///
    /// [`anonymize_ip`]: crate::extension::anonymize_ip
    pub fn anonymize_ip(mut self, anonymize: bool) -> Self {
        self.config().anonymize_ip = anonymize;
        self
    }

    /// Longest stored `Range` and `User-Agent`, in bytes (default 256).
    pub fn max_field_len(mut self, bytes: usize) -> Self {
        self.config().max_field_len = bytes;
        self
    }
}

impl<S, K: RecordSink> Layer<S> for WatchLogLayer<K> {
    type Service = WatchLog<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchLog {
            inner,
            sink: self.sink.clone(),
            config: Arc::clone(&self.config),
        }
    }
}
