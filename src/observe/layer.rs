use std::sync::Arc;

use tower_layer::Layer;

use super::metrics::{Metrics, Route};
use super::service::Observe;

/// Layer that applies [`Observe`]: metrics and the access log; see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct ObserveLayer {
    pub(super) config: Arc<ObserveConfig>,
}

#[derive(Debug)]
pub(super) struct ObserveConfig {
    pub(super) route: Route,
    pub(super) metrics: Option<Metrics>,
    pub(super) access_log: bool,
    pub(super) anonymize_ip: bool,
}

impl ObserveLayer {
    /// Observes responses of `route`; nothing is counted or logged until
    /// [`metrics`](Self::metrics) or [`access_log`](Self::access_log) is set.
    pub fn new(route: Route) -> Self {
        Self {
            config: Arc::new(ObserveConfig {
                route,
                metrics: None,
                access_log: false,
                anonymize_ip: false,
            }),
        }
    }

    /// Counts responses into `metrics`.
    pub fn metrics(self, metrics: Metrics) -> Self {
        self.map(|c| c.metrics = Some(metrics))
    }

    /// Writes one `info` event per response (target `sage_stream::access`).
    pub fn access_log(self, on: bool) -> Self {
        self.map(|c| c.access_log = on)
    }

    /// Writes client IPs in the access log with the host part zeroed, as
    /// the watch log's setting ([`anonymize_ip`](crate::extension::anonymize_ip)).
    pub fn anonymize_ip(self, on: bool) -> Self {
        self.map(|c| c.anonymize_ip = on)
    }

    fn map(self, change: impl FnOnce(&mut ObserveConfig)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        Self {
            config: Arc::new(config),
        }
    }
}

impl Clone for ObserveConfig {
    fn clone(&self) -> Self {
        Self {
            route: self.route,
            metrics: self.metrics.clone(),
            access_log: self.access_log,
            anonymize_ip: self.anonymize_ip,
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
