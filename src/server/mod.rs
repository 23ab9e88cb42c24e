//! A small production server loop over hyper: TCP_NODELAY, HTTP/1.1 and
//! HTTP/2, the peer address as a request extension, graceful shutdown, and
//! budgets that keep any one connection from holding resources for free:
//!
//! | budget | default | like nginx's |
//! |---|---|---|
//! | no complete request head (any protocol, also before protocol detection or inside an HTTP/2 preface) | 30 s | `client_header_timeout` |
//! | idle between requests (HTTP/2: GOAWAY) | 60 s | `keepalive_timeout` |
//! | a response that makes no write progress (aborted: file closed, stream slot freed, row logged incomplete) | 60 s | `send_timeout` |
//! | HTTP/2 streams per connection / send buffer per stream | 32 / 256 KiB | `http2_max_concurrent_streams` |
//! | open connections (at the limit the connection idle the longest, with no request yet or between requests, is closed to make room; only when all are busy does a new one wait) | half the file-descriptor limit | `worker_connections` |
//! | body bytes an HTTP/1 response hands hyper before the socket took the last frame | one frame (a file chunk) | `output_buffers` |
//!
//! When the shutdown grace period ends, the responses still open are ended
//! (so the watch log records them as incomplete, with the bytes sent) before
//! [`serve`] returns.
//!
//! Any tower-compatible server works with the layers; this one is what the
//! `sage-stream` binary and the tests use.
//!
//! ```no_run
//! use sage_stream::{server, StreamEndpoint};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! let svc = StreamEndpoint::new("media").into_service();
//! server::serve(listener, svc, server::ServerConfig::default(), server::shutdown_signal()).await
//! # }
//! ```

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_service::Service;

use crate::extension::PeerAddr;

mod budget;
mod drain;
#[cfg(target_os = "linux")]
mod zero_copy;

use budget::TimedBody;
use budget::{Activity, Verdict};
use drain::{Counted, Drain};

/// Timeouts and limits of [`serve`]; see the [module docs](self).
///
/// Built from [`Default`] with the setters, each named after its field
/// (`#[non_exhaustive]`: a new field is not a breaking change):
///
/// ```
/// use std::time::Duration;
/// use sage_stream::server::ServerConfig;
///
/// let config = ServerConfig::default()
///     .send_timeout(Duration::from_secs(10))
///     .max_connections(512);
/// assert_eq!(config.max_connections, 512);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Longest wait for a request's head: on a new connection (whatever
    /// the protocol, from the first byte or none), and for HTTP/1 headers
    /// being read (default 30 s).
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open without a request in progress
    /// (default 60 s); HTTP/2 connections get a GOAWAY.
    pub keep_alive_timeout: Duration,
    /// Longest a response may go without the client taking more of it
    /// (default 60 s); then its connection is closed.
    pub send_timeout: Duration,
    /// Most connections open at once (default: half of the process's
    /// file-descriptor limit less the open-file cache's default 256, as each
    /// stream holds a socket and perhaps a file).
    pub max_connections: usize,
    /// **Experimental** (Linux; default off): HTTP/1.x responses of
    /// [`ServeMedia`](crate::media::ServeMedia) send file bytes with
    /// `sendfile(2)`, never copying them into user space. The server
    /// offers it per request ([`ZeroCopy`](crate::extension::ZeroCopy)); a
    /// layer of yours that reads or transforms response bodies (compression)
    /// goes outside a [`NoZeroCopyLayer`](crate::extension::NoZeroCopyLayer),
    /// which withdraws the offer. See bench/README.md, "Zero
    /// copy", for what it saves and what it does not yet handle: a
    /// `sendfile` of pages not in the page cache waits on the worker, and
    /// a file truncated or rewritten in place mid-response can send the
    /// new content (zeros past a new end) for bytes already handed to the
    /// kernel; replace files by rename.
    pub zero_copy: bool,
    /// HTTP/1 responses take the next body frame only once the socket has
    /// taken everything queued before (default off): a client that stops
    /// reading then pins about one file chunk plus ~24 KiB of state (56 KiB
    /// with the 32 KiB chunks `serve` reads in this mode) instead of
    /// hyper's write buffer (~0.5 MiB). It costs throughput, since writes
    /// are no longer batched (1 MiB ranges × 16: about 0.7× in
    /// `bench/perf.sh`), so it is for servers with many slow clients and
    /// little memory; see docs/operations.md.
    pub strict_backpressure: bool,
    /// Most concurrent HTTP/2 streams per connection (default 32).
    pub http2_max_concurrent_streams: u32,
    /// Most bytes HTTP/2 buffers per stream for a client that does not take
    /// them (default 256 KiB), so zero-window streams pin a bounded amount.
    pub http2_max_send_buf_size: usize,
    /// Longest wait for open connections to finish after shutdown starts
    /// (default 30 s); what is still open then is ended.
    pub shutdown_grace: Duration,
    /// Files the service's open-file cache may hold (default
    /// [`DEFAULT_OPEN_FILE_CACHE`](crate::media::DEFAULT_OPEN_FILE_CACHE)):
    /// [`serve`] warns at start-up when the file-descriptor limit cannot hold
    /// them beside two per connection.
    pub open_file_cache: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            zero_copy: false,
            strict_backpressure: false,
            http2_max_concurrent_streams: 32,
            http2_max_send_buf_size: 256 * 1024,
            shutdown_grace: Duration::from_secs(30),
            open_file_cache: crate::media::DEFAULT_OPEN_FILE_CACHE,
        }
    }
}

/// Setters, builder style: each replaces one field.
impl ServerConfig {
    /// Sets the longest wait for a request's head.
    pub fn header_read_timeout(mut self, header_read_timeout: Duration) -> Self {
        self.header_read_timeout = header_read_timeout;
        self
    }

    /// Sets the longest a connection stays open without a request in progress.
    pub fn keep_alive_timeout(mut self, keep_alive_timeout: Duration) -> Self {
        self.keep_alive_timeout = keep_alive_timeout;
        self
    }

    /// Sets the longest a response may go without the client taking more of it.
    pub fn send_timeout(mut self, send_timeout: Duration) -> Self {
        self.send_timeout = send_timeout;
        self
    }

    /// Sets the most connections open at once.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets whether HTTP/1.x responses send file bytes with `sendfile(2)` (experimental).
    pub fn zero_copy(mut self, zero_copy: bool) -> Self {
        self.zero_copy = zero_copy;
        self
    }

    /// Sets whether HTTP/1 responses take a frame only once the socket took the last.
    pub fn strict_backpressure(mut self, strict_backpressure: bool) -> Self {
        self.strict_backpressure = strict_backpressure;
        self
    }

    /// Sets the most concurrent HTTP/2 streams per connection.
    pub fn http2_max_concurrent_streams(mut self, http2_max_concurrent_streams: u32) -> Self {
        self.http2_max_concurrent_streams = http2_max_concurrent_streams;
        self
    }

    /// Sets the most bytes HTTP/2 buffers per stream.
    pub fn http2_max_send_buf_size(mut self, http2_max_send_buf_size: usize) -> Self {
        self.http2_max_send_buf_size = http2_max_send_buf_size;
        self
    }

    /// Sets the longest wait for open connections after shutdown starts.
    pub fn shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets the open-file cache size checked against the descriptor limit.
    pub fn open_file_cache(mut self, open_file_cache: usize) -> Self {
        self.open_file_cache = open_file_cache;
        self
    }
}

/// Half of what the soft limit on open files leaves after the open-file
/// cache's default size (each stream holds a socket and, unless its file is
/// cached, a file), less a reserve for the log and the listener; the limit
/// is taken as 1024 where it cannot be read.
fn default_max_connections() -> usize {
    let soft = open_files_soft_limit().unwrap_or(1024);
    (soft.saturating_sub(crate::media::DEFAULT_OPEN_FILE_CACHE) / 2)
        .saturating_sub(DESCRIPTOR_RESERVE / 2)
        .max(16)
}

/// Serves `service` on `listener` until `shutdown` completes, then lets open
/// connections finish (up to [`ServerConfig::shutdown_grace`]) and ends the
/// rest.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    // Zero copy needs body buffers queued as they are (never copied); so
    // does strict backpressure, whose gate counts them. Otherwise hyper's
    // own choice (a flat write buffer, batched writes) is the fastest.
    if config.zero_copy || config.strict_backpressure {
        builder.http1().writev(true);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_send_buf_size(config.http2_max_send_buf_size);
    warn_if_descriptors_are_short(&config);
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let open = Open::default();
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Waiting for a slot before `accept` leaves a new client in the
        // kernel's backlog; a silent client there waits its turn like any
        // other. So a slot is taken after `accept`: at the limit, the
        // connection idle the longest (no request yet, or between
        // requests) makes room, and only when every connection is busy
        // does the new one wait (holding one descriptor).
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let waited = tokio::select! {
                    slot = open.make_room(&slots, config.max_connections) => slot,
                    () = &mut shutdown => None,
                };
                match waited {
                    Some(slot) => slot,
                    None => break,
                }
            }
        };
        let (task, activity) = connection(
            &builder,
            stream,
            peer,
            service.clone(),
            Arc::clone(&config),
            stopped.clone(),
        );
        open.add(&activity);
        connections.spawn(async move {
            task.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; ending them"
        );
        // Dropping their connections drops their bodies: files close and the
        // watch log records each response as incomplete.
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// The open connections' clocks, to choose which one makes room at the
/// connection limit.
#[derive(Default)]
struct Open(std::sync::Mutex<Vec<std::sync::Weak<Activity>>>);

impl Open {
    fn add(&self, activity: &Arc<Activity>) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Pruned as it doubles, so the list stays within twice the open ones.
        if open.len() == open.capacity() {
            open.retain(|a| a.strong_count() > 0);
        }
        open.push(Arc::downgrade(activity));
    }

    /// Asks the connection idle the longest to close; false if every
    /// connection has a request in progress.
    fn shed_one(&self) -> bool {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = open
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter_map(|a| Some((a.idle_since()?, a)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, activity)) => {
                activity.shed.notify_one();
                true
            }
            None => false,
        }
    }

    /// A slot, once a shed connection (or any other) has closed. While
    /// every connection is busy it waits, looking again for an idle one
    /// every 100 ms (and warning at most every 10 s).
    async fn make_room(
        &self,
        slots: &Arc<Semaphore>,
        limit: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let mut warned: Option<std::time::Instant> = None;
        loop {
            if self.shed_one() {
                tracing::debug!(
                    limit,
                    "connection limit reached; closed the connection idle the longest"
                );
            } else if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                warned = Some(std::time::Instant::now());
                tracing::warn!(
                    limit,
                    "connection limit reached, every connection busy; a new one waits"
                );
            }
            match tokio::time::timeout(
                Duration::from_millis(100),
                Arc::clone(slots).acquire_owned(),
            )
            .await
            {
                Ok(slot) => return slot.ok(),
                Err(_) => continue,
            }
        }
    }
}

/// Warns when the process's file-descriptor limit cannot hold the
/// connection limit (a socket and perhaps a file each) beside the open-file
/// cache: past it, `accept` and file opens fail with EMFILE.
fn warn_if_descriptors_are_short(config: &ServerConfig) {
    let Some(limit) = open_files_soft_limit() else {
        return;
    };
    let needed = config
        .max_connections
        .saturating_mul(2)
        .saturating_add(config.open_file_cache)
        .saturating_add(DESCRIPTOR_RESERVE);
    if needed > limit {
        tracing::warn!(
            limit,
            needed,
            max_connections = config.max_connections,
            open_file_cache = config.open_file_cache,
            "the file-descriptor limit is too low for the connection limit and the open-file cache; \
             raise it (ulimit -n, systemd LimitNOFILE=) to at least `needed`"
        );
    }
}

/// Descriptors kept for the log, the listeners and the runtime.
const DESCRIPTOR_RESERVE: usize = 64;

/// The soft limit on open files, from /proc/self/limits (Linux).
fn open_files_soft_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// One connection, watched by its budgets; also its clock.
fn connection<S, B>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    service: S,
    config: Arc<ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) -> (impl Future<Output = ()> + Send + 'static, Arc<Activity>)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "TCP_NODELAY not set");
    }
    let activity = Activity::new();
    // Only strict backpressure counts writes; otherwise no gate, no counting.
    let drain = config.strict_backpressure.then(Drain::new);
    let per_request = {
        let activity = Arc::clone(&activity);
        let drain = drain.clone();
        let zero_copy = config.zero_copy;
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // HTTP/2 streams share the socket; each is bounded by its send
            // buffer instead.
            let drain = drain
                .as_ref()
                .filter(|_| req.version() <= http::Version::HTTP_11)
                .map(Arc::clone);
            req.extensions_mut().insert(PeerAddr(peer));
            #[cfg(target_os = "linux")]
            if zero_copy && req.version() <= http::Version::HTTP_11 {
                req.extensions_mut()
                    .insert(crate::extension::ZeroCopy::offer());
            }
            let stream = activity.start();
            let response = service.clone().oneshot(req);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| TimedBody::new(body, stream, drain)))
            }
        })
    };
    let connection = builder
        .serve_connection_with_upgrades(
            TokioIo::new(Counted::new(connection_stream(stream, &config), drain)),
            per_request,
        )
        .into_owned();
    let clock = Arc::clone(&activity);
    let task = async move {
        tokio::pin!(connection);
        let budgets = [
            config.header_read_timeout,
            config.keep_alive_timeout,
            config.send_timeout,
        ];
        let tick = budgets.iter().min().copied().unwrap_or_default() / 4;
        let mut ticks =
            tokio::time::interval(tick.clamp(Duration::from_millis(10), Duration::from_secs(1)));
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(err) = ended {
                        tracing::debug!(%peer, %err, "connection ended with an error");
                    }
                    return;
                }
                _ = ticks.tick() => {
                    match activity.verdict(config.header_read_timeout, config.keep_alive_timeout, config.send_timeout) {
                        Verdict::Fine => {}
                        // Nothing was asked: nothing to finish politely.
                        Verdict::Silent => {
                            tracing::debug!(%peer, "no request head within the header timeout; closing");
                            return;
                        }
                        Verdict::Stalled => {
                            tracing::info!(%peer, "a response made no progress for the send timeout; closing");
                            return;
                        }
                        Verdict::Idle if closing => return,
                        Verdict::Idle => {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
                _ = stopped.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = activity.shed.notified() => {
                    // Only while still idle: a request that arrived since
                    // is served (the acceptor then picks another).
                    if activity.idle_since().is_some() {
                        tracing::debug!(%peer, "idle at the connection limit; closing to make room");
                        return;
                    }
                }
            }
        }
    };
    (task, clock)
}

#[cfg(target_os = "linux")]
fn connection_stream(stream: TcpStream, config: &ServerConfig) -> zero_copy::Stream {
    zero_copy::Stream::new(stream, config.zero_copy)
}

#[cfg(not(target_os = "linux"))]
fn connection_stream(stream: TcpStream, _: &ServerConfig) -> TcpStream {
    stream
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives between the call and the first poll
/// (say, while a banner is printed) still stops the server gracefully
/// instead of killing the process. Call it inside the Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let wait = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
