//! The app fixture: `app::router` over a fresh media root, with its watch
//! log in a SQLite file flushed every 10 ms, for `oneshot` tests.

use std::sync::Arc;
use std::time::Duration;

use sage_stream::app::{router, AppConfig};
use sage_stream::log::{SqliteStore, WatchLogStore, WatchLogWriter, WriterConfig, WriterHandle};

use super::Fixture;

/// The app, what it logs to, and the media root; `extra` is what a test
/// file keeps beside it (the bytes of its clip, its metrics).
pub struct TestApp<X = ()> {
    pub router: axum::Router,
    pub store: Arc<dyn WatchLogStore>,
    pub writer: WriterHandle,
    pub fx: Fixture,
    pub extra: X,
}

impl TestApp {
    /// The app for a fresh fixture, configured by `configure`.
    pub fn new(configure: impl FnOnce(&mut AppConfig)) -> Self {
        Self::with(Fixture::new(), None, (), configure)
    }
}

impl<X> TestApp<X> {
    /// The app for `fx`, logging to `store` (default: SQLite beside the
    /// root), configured by `configure`.
    pub fn with(
        fx: Fixture,
        store: Option<Arc<dyn WatchLogStore>>,
        extra: X,
        configure: impl FnOnce(&mut AppConfig),
    ) -> Self {
        let store = store
            .unwrap_or_else(|| Arc::new(SqliteStore::open(fx.dir.path().join("log.db")).unwrap()));
        let (sink, writer) = WatchLogWriter::spawn(
            store.clone(),
            WriterConfig::default().flush_interval(Duration::from_millis(10)),
        )
        .unwrap();
        let mut config = AppConfig::new(&fx.root);
        configure(&mut config);
        Self {
            router: router(&config, store.clone(), sink).unwrap(),
            store,
            writer,
            fx,
            extra,
        }
    }
}
