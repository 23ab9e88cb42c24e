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
    fn new(max: usize) -> Arc<Self> {
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

/// Layer that limits concurrent streams per viewer; see the
/// [module docs](crate::limit).
#[derive(Clone, Debug)]
pub struct ViewerStreamLimitLayer {
    slots: Arc<Slots>,
}

impl ViewerStreamLimitLayer {
    /// At most `max` open streams per viewer (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            slots: Slots::new(max.max(1)),
        }
    }

    /// No limit: requests pass without being counted.
    pub fn unlimited() -> Self {
        Self {
            slots: Slots::new(usize::MAX),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.slots.max
    }
}

impl<S> Layer<S> for ViewerStreamLimitLayer {
    type Service = ViewerStreamLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ViewerStreamLimit {
            inner,
            slots: Arc::clone(&self.slots),
        }
    }
}
