//! The stream limit counted across a fleet of nodes, in Redis (feature
//! `redis`).
//!
//! Each open stream is a *lease*: a member of a sorted set per viewer
//! (`{prefix}limit:{viewer key}`), scored by the time it expires on the Redis
//! server's clock. Acquiring and releasing are one Lua script each, so two
//! nodes never both take the last slot; each drops the viewer's expired
//! leases first. A node renews the leases of its streams in progress every
//! third of the lease time, so a node that dies (kill -9, a cut network)
//! leaves slots that expire within one lease time, never for ever.
//!
//! Every Redis call is bounded by a timeout. When Redis cannot be reached in
//! time, [`WhenRedisFails`] decides: count per node instead (the default:
//! streaming goes on, the limit is per node until Redis answers again) or
//! refuse with `503` and `Retry-After`. Streams admitted while Redis was away
//! are written into Redis by the next renewal, so once it is back the
//! fleet-wide count is right again within one lease time.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::Notify;

use super::layer::{Slot, Slots};
use crate::extension::ViewerKey;

/// The default lease time: a dead node's slots are free after at most this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The default bound on one Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sage-stream:";

// Drops the viewer's expired leases and those this node released but has
// not yet removed (ARGV[4..]: a seek ends one request and starts the next at
// once), then adds one if fewer than ARGV[1] remain. The server's clock, so
// nodes' clocks need not agree.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 4, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

// Removes the given leases (ARGV) and the viewer's expired ones; the key
// goes with its last lease.
const RELEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
";

// Extends (or writes back, after Redis lost them) the given leases of one
// viewer: ARGV[1] the lease time, ARGV[2..] the members.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease)
return 1
";

/// What the limit does when Redis does not answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenRedisFails {
    /// Count on this node alone, with the same limit, until Redis answers
    /// again (the default: viewers keep watching; the limit is per node for
    /// a while).
    #[default]
    CountPerNode,
    /// Refuse new streams with `503 Service Unavailable` and `Retry-After`.
    Refuse,
}

/// Settings of [`RedisSlots`]; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisSlotsConfig {
    /// Prepended to every key, so several fleets can share one Redis.
    pub prefix: String,
    /// How long a lease lives without renewal.
    pub lease: Duration,
    /// The bound on one Redis call; past it, [`RedisSlotsConfig::when_redis_fails`] applies.
    pub timeout: Duration,
    /// What to do when Redis cannot be reached in time.
    pub when_redis_fails: WhenRedisFails,
}

impl Default for RedisSlotsConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            lease: DEFAULT_LEASE,
            timeout: DEFAULT_TIMEOUT,
            when_redis_fails: WhenRedisFails::default(),
        }
    }
}

impl RedisSlotsConfig {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the lease time (at least one second).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// Sets the bound on one Redis call (at least one millisecond).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets what happens when Redis cannot be reached in time.
    pub fn when_redis_fails(mut self, policy: WhenRedisFails) -> Self {
        self.when_redis_fails = policy;
        self
    }
}

/// Why [`RedisSlots::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSlotsError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    Url(String),
}

/// The fleet-wide stream slots in Redis: give it to
/// [`ViewerStreamLimitLayer::redis`](super::ViewerStreamLimitLayer::redis).
/// Cheap to clone; clones share one connection and one renewal task.
#[derive(Clone)]
pub struct RedisSlots {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    // Made on the first acquisition, inside the runtime that serves (the
    // store itself can be built before there is one); the upkeep task
    // starts with it.
    connection: Mutex<Option<ConnectionManager>>,
    config: RedisSlotsConfig,
    max: usize,
    // The per-node count used while Redis is unreachable.
    node: Arc<Slots>,
    // This node's leases in progress: id → Redis key; what the renewals
    // write back.
    held: Mutex<HashMap<u64, Arc<str>>>,
    // Identifies this node's lease members (`{node}:{id}`).
    node_id: String,
    next_id: AtomicU64,
    reachable: AtomicBool,
    fallbacks: AtomicU64,
    // Leases ended (or acquisitions abandoned) whose removal from Redis is
    // still to do, by key; the upkeep task is woken to do it.
    released: Mutex<HashMap<Arc<str>, Vec<String>>>,
    wake: Arc<Notify>,
    acquire: Script,
}

impl fmt::Debug for RedisSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: not shown.
        f.debug_struct("RedisSlots")
            .field("max", &self.shared.max)
            .field("config", &self.shared.config)
            .field("node_id", &self.shared.node_id)
            .field("reachable", &self.reachable())
            .finish_non_exhaustive()
    }
}

/// What one acquisition gave.
pub(super) enum Acquired {
    /// A slot, in Redis or (Redis away) on this node.
    Held(Lease),
    /// The viewer has `max` streams already.
    Full,
    /// Redis is away and the policy is to refuse.
    Unavailable,
}

impl RedisSlots {
    /// At most `max` streams per viewer across every node using the same
    /// Redis (`redis://host:port/db`, `rediss://` for TLS if the `redis`
    /// crate was built with it) and prefix. Connects lazily, on the first
    /// request, inside the Tokio runtime that serves it (where its renewal
    /// task then runs): a node starts while Redis is down and counts per
    /// node until it answers.
    pub fn new(url: &str, max: usize, config: RedisSlotsConfig) -> Result<Self, RedisSlotsError> {
        let client = redis::Client::open(url)
            .map_err(|e| RedisSlotsError::Url(crate::redact::redact_url(&e.to_string())))?;
        // The manager's own timeouts match ours, and it gives up reconnecting
        // quickly: our calls are bounded anyway, and it retries on the next.
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.timeout);
        let max = max.max(1);
        let shared = Arc::new(Shared {
            client,
            manager_config,
            connection: Mutex::new(None),
            node: Slots::new(max),
            config,
            max,
            held: Mutex::new(HashMap::new()),
            node_id: node_id(),
            next_id: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            fallbacks: AtomicU64::new(0),
            released: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            acquire: Script::new(ACQUIRE),
        });
        Ok(Self { shared })
    }

    /// The limit per viewer.
    pub fn max(&self) -> usize {
        self.shared.max
    }

    /// Whether the last Redis call answered in time (for readiness checks
    /// and metrics).
    pub fn reachable(&self) -> bool {
        self.shared.reachable.load(Ordering::Relaxed)
    }

    /// Streams admitted by the per-node count because Redis was away.
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }

    /// The settings.
    pub fn config(&self) -> &RedisSlotsConfig {
        &self.shared.config
    }

    /// The Redis key counting `viewer`'s leases.
    pub fn key_of(&self, viewer: &ViewerKey) -> String {
        format!("{}limit:{}", self.shared.config.prefix, viewer.as_str())
    }

    pub(super) async fn acquire(&self, viewer: &ViewerKey) -> Acquired {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = self.key_of(viewer).into();
        // This node's ended leases of the viewer not yet removed ride on the
        // call (see ACQUIRE).
        let released = shared.take_released(&key);
        let mut invocation = shared.acquire.key(&*key);
        invocation
            .arg(shared.max)
            .arg(shared.config.lease.as_millis() as u64)
            .arg(member(&shared.node_id, id));
        for m in &released {
            invocation.arg(m);
        }
        // Armed until Redis answers: should this future be dropped mid-call
        // (the client went away), the lease the script may have added, and
        // the removals it carried, go back to the upkeep task.
        let mut attempt = Attempt {
            shared,
            key: Arc::clone(&key),
            id,
            carried: released,
            armed: true,
        };
        let answer = match Shared::connect(shared) {
            Ok(mut connection) => {
                tokio::time::timeout(
                    shared.config.timeout,
                    invocation.invoke_async::<i64>(&mut connection),
                )
                .await
            }
            Err(error) => Ok(Err(error)),
        };
        match answer {
            Ok(Ok(added)) => {
                attempt.armed = false;
                shared.reachable.store(true, Ordering::Relaxed);
                if added != 1 {
                    return Acquired::Full;
                }
                // Counted on this node too, so that should Redis go away,
                // the per-node count starts from the streams running here.
                let slot = shared.node.count(viewer.clone());
                Acquired::Held(self.lease(id, key, slot))
            }
            failed => {
                // Still armed: its drop queues the removals again.
                match failed {
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "stream limit: Redis refused or failed");
                    }
                    _ => tracing::warn!(
                        timeout = ?shared.config.timeout,
                        "stream limit: Redis did not answer in time"
                    ),
                }
                drop(attempt);
                self.fall_back(viewer, id, key)
            }
        }
    }

    fn fall_back(&self, viewer: &ViewerKey, id: u64, key: Arc<str>) -> Acquired {
        let shared = &self.shared;
        shared.reachable.store(false, Ordering::Relaxed);
        match shared.config.when_redis_fails {
            WhenRedisFails::Refuse => Acquired::Unavailable,
            WhenRedisFails::CountPerNode => match shared.node.acquire(viewer.clone()) {
                Some(slot) => {
                    shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                    // Registered like the others: the next renewal that
                    // reaches Redis writes it there, so the fleet counts it.
                    Acquired::Held(self.lease(id, key, slot))
                }
                None => Acquired::Full,
            },
        }
    }

    fn lease(&self, id: u64, key: Arc<str>, node_slot: Slot) -> Lease {
        let shared = &self.shared;
        shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&key));
        Lease {
            shared: Arc::clone(shared),
            id,
            key,
            _node_slot: node_slot,
        }
    }
}

/// One held fleet slot; released (in Redis, by the upkeep task) on drop.
pub(super) struct Lease {
    shared: Arc<Shared>,
    id: u64,
    key: Arc<str>,
    // This node's count of the viewer's streams; freed on drop.
    _node_slot: Slot,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        // Never blocks: the upkeep task (or this node's next acquisition
        // for the viewer) removes it from Redis. Should that fail, the lease
        // expires there by itself.
        shared.release(&self.key, vec![member(&shared.node_id, self.id)]);
    }
}

/// An acquisition in flight; see [`RedisSlots::acquire`].
struct Attempt<'a> {
    shared: &'a Shared,
    key: Arc<str>,
    id: u64,
    // Removals of this node's ended leases that the call carries.
    carried: Vec<String>,
    armed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut members = std::mem::take(&mut self.carried);
            members.push(member(&self.shared.node_id, self.id));
            self.shared.release(&self.key, members);
        }
    }
}

impl Shared {
    /// The connection, made on first use (inside the serving runtime), when
    /// the upkeep task starts too.
    fn connect(shared: &Arc<Self>) -> redis::RedisResult<ConnectionManager> {
        let mut connection = shared.connection.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = &*connection {
            return Ok(connection.clone());
        }
        let made = ConnectionManager::new_lazy_with_config(
            shared.client.clone(),
            shared.manager_config.clone(),
        )?;
        *connection = Some(made.clone());
        tokio::spawn(upkeep(Arc::downgrade(shared), Arc::clone(&shared.wake)));
        Ok(made)
    }

    /// The connection, once made.
    fn connection(&self) -> Option<ConnectionManager> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues removals from Redis and wakes the upkeep task.
    fn release(&self, key: &Arc<str>, members: Vec<String>) {
        if members.is_empty() {
            return;
        }
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(Arc::clone(key))
            .or_default()
            .extend(members);
        self.wake.notify_one();
    }

    /// Takes the removals queued for `key`.
    fn take_released(&self, key: &Arc<str>) -> Vec<String> {
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .unwrap_or_default()
    }
}

fn member(node_id: &str, id: u64) -> String {
    format!("{node_id}:{id}")
}

/// A name for this node's leases that no other node (nor a restart of this
/// one) uses: host, process and start time, hashed with a random seed.
fn node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    format!("{:016x}", hasher.finish())
}

/// The background task of one [`RedisSlots`]: removes leases from Redis as
/// their streams end and renews those in progress every third of the lease
/// time. Ends when the last clone of the store is gone.
async fn upkeep(shared: Weak<Shared>, wake: Arc<Notify>) {
    let release = Script::new(RELEASE);
    let renew = Script::new(RENEW);
    let period = match shared.upgrade() {
        Some(s) => s.config.lease / 3,
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Holds only a weak reference while it waits, so the store can go;
        // the next tick then ends the task.
        let woken = tokio::select! {
            () = wake.notified() => true,
            _ = ticks.tick() => false,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !woken {
            renew_all(&shared, &renew).await;
        }
        let released =
            std::mem::take(&mut *shared.released.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, members) in released {
            let mut invocation = release.key(&*key);
            for m in &members {
                invocation.arg(m);
            }
            let Some(mut connection) = shared.connection() else {
                break;
            };
            let done = tokio::time::timeout(
                shared.config.timeout,
                invocation.invoke_async::<i64>(&mut connection),
            )
            .await;
            // Not retried: a lease whose removal failed expires by itself.
            shared
                .reachable
                .store(matches!(done, Ok(Ok(_))), Ordering::Relaxed);
        }
    }
}

/// Writes every lease this node holds back into Redis with a fresh expiry.
async fn renew_all(shared: &Shared, renew: &Script) {
    let by_key: HashMap<Arc<str>, Vec<String>> = {
        let held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_key: HashMap<Arc<str>, Vec<String>> = HashMap::new();
        for (id, key) in held.iter() {
            by_key
                .entry(Arc::clone(key))
                .or_default()
                .push(member(&shared.node_id, *id));
        }
        by_key
    };
    let Some(mut connection) = shared.connection() else {
        return;
    };
    let lease_ms = shared.config.lease.as_millis() as u64;
    let mut ok = true;
    if by_key.is_empty() {
        // Nothing to renew: a PING keeps `reachable` true to the facts.
        let ping = redis::cmd("PING");
        let answer = tokio::time::timeout(
            shared.config.timeout,
            ping.query_async::<String>(&mut connection),
        )
        .await;
        ok = matches!(answer, Ok(Ok(_)));
    }
    for (key, members) in by_key {
        let mut invocation = renew.key(&*key);
        invocation.arg(lease_ms);
        for m in &members {
            invocation.arg(m);
        }
        let answer = tokio::time::timeout(
            shared.config.timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        if !matches!(answer, Ok(Ok(_))) {
            ok = false;
            break;
        }
    }
    if !ok && shared.reachable.swap(false, Ordering::Relaxed) {
        tracing::warn!("stream limit: Redis unreachable; counting per node");
    } else if ok && !shared.reachable.swap(true, Ordering::Relaxed) {
        tracing::info!("stream limit: Redis reachable again; counting fleet-wide");
    }
}
