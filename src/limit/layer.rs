use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tower_layer::Layer;

use super::ViewerStreamLimit;
use crate::extension::ViewerKey;

/// Open streams per viewer, shared by every clone of the layer.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) max: usize,
    pub(super) open: Mutex<HashMap<ViewerKey, usize>>,
}

/// A held stream slot; released on drop.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    key: ViewerKey,
}

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn acquire(self: &Arc<Self>, key: ViewerKey) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }
}

impl Slots {
    /// A slot counted even past the limit: a stream another count (the
    /// fleet's) admitted, so this node's count stays the number of its
    /// streams.
    #[cfg(feature = "redis")]
    pub(super) fn count(self: &Arc<Self>, key: ViewerKey) -> Slot {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        *open.entry(key.clone()).or_insert(0) += 1;
        Slot {
            slots: Arc::clone(self),
            key,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The in-process slot store, counting this process's streams: the
/// default store of [`ViewerStreamLimitLayer`]. Clones share the count.
#[derive(Clone, Debug)]
pub struct NodeSlots(pub(super) Arc<Slots>);

/// Layer that limits concurrent streams per viewer; see the
/// [module docs](crate::limit).
///
/// The count lives in `K`: [`NodeSlots`] (this process, the default) or,
/// with the `redis` feature, `RedisSlots` (every node
/// sharing one Redis).
#[derive(Clone, Debug)]
pub struct ViewerStreamLimitLayer<K = NodeSlots> {
    store: K,
}

impl ViewerStreamLimitLayer {
    /// At most `max` open streams per viewer (at least 1), counted in this
    /// process.
    pub fn new(max: usize) -> Self {
        Self {
            store: NodeSlots(Slots::new(max.max(1))),
        }
    }

    /// No limit: requests pass without being counted.
    pub fn unlimited() -> Self {
        Self {
            store: NodeSlots(Slots::new(usize::MAX)),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.store.0.max
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl ViewerStreamLimitLayer<super::RedisSlots> {
    /// The limit counted across every node sharing `slots`' Redis; see
    /// [`RedisSlots`](super::RedisSlots).
    pub fn redis(slots: super::RedisSlots) -> Self {
        Self { store: slots }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.store.max()
    }

    /// The Redis store.
    pub fn slots(&self) -> &super::RedisSlots {
        &self.store
    }
}

impl<S, K: Clone> Layer<S> for ViewerStreamLimitLayer<K> {
    type Service = ViewerStreamLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        ViewerStreamLimit {
            inner,
            store: self.store.clone(),
        }
    }
}
