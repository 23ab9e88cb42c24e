//! The app on a real server on 127.0.0.1 inside the test process, with a
//! SQLite watch log, for tests that drive it with outside clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sage_stream::app::{router, AppConfig};
use sage_stream::log::{SqliteStore, WatchLogStore, WatchLogWriter, WriterConfig, WriterHandle};
use sage_stream::server::{serve, ServerConfig};
use tokio::sync::oneshot;

/// A running app and what stops it.
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: WriterHandle,
    store: Arc<dyn WatchLogStore>,
}

/// Serves the app for `root` (configured by `configure`) with its log in
/// the SQLite file `db`, on an ephemeral port.
pub async fn start(root: &Path, db: &Path, configure: impl FnOnce(&mut AppConfig)) -> Running {
    let store: Arc<dyn WatchLogStore> = Arc::new(SqliteStore::open(db).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let mut config = AppConfig::new(root);
    configure(&mut config);
    let app = router(&config, store.clone(), sink).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop,
        task,
        writer,
        store,
    }
}

impl Running {
    /// Stops the server gracefully, drains the log; the store to read.
    pub async fn stop(self) -> Arc<dyn WatchLogStore> {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        self.writer.shutdown_async().await;
        self.store
    }
}
