use tower_layer::Layer;

use super::{CapVolume, VolumeCap};

/// django-sage-streaming's default `STREAM_MAX_LOAD_VOLUME`: 8 MiB.
pub const DEFAULT_MAX_LOAD_VOLUME: u64 = 8 * 1024 * 1024;

/// Layer that caps the bytes of each ranged response; see the
/// [module docs](crate::cap).
#[derive(Clone, Copy, Debug)]
pub struct CapVolumeLayer {
    cap: VolumeCap,
}

impl Default for CapVolumeLayer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LOAD_VOLUME)
    }
}

impl CapVolumeLayer {
    /// Caps each ranged response at `bytes` (at least 1).
    pub const fn new(bytes: u64) -> Self {
        Self {
            cap: VolumeCap::new(bytes),
        }
    }

    /// Caps at `mib` × 1024 × 1024 bytes, the unit of `STREAM_MAX_LOAD_VOLUME`.
    pub const fn mebibytes(mib: u64) -> Self {
        Self {
            cap: VolumeCap::from_mib(mib),
        }
    }

    /// The cap in bytes.
    pub fn bytes(&self) -> u64 {
        self.cap.bytes()
    }
}

impl<S> Layer<S> for CapVolumeLayer {
    type Service = CapVolume<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CapVolume::new(inner, self.cap.bytes())
    }
}
