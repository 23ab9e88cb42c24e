use tower_layer::Layer;

use super::check::{Permission, SyncPermission};
use super::RequirePermission;

/// Layer that refuses requests a permission does not allow; see the
/// [module docs](crate::permission).
#[derive(Clone, Debug)]
pub struct RequirePermissionLayer<P> {
    permission: P,
}

impl<P: Permission> RequirePermissionLayer<SyncPermission<P>> {
    /// Checks each request with a synchronous [`Permission`].
    pub fn new(permission: P) -> Self {
        Self {
            permission: SyncPermission::new(permission),
        }
    }
}

impl<P> RequirePermissionLayer<P> {
    /// Checks each request with an [`AsyncPermission`](super::AsyncPermission).
    pub fn new_async(permission: P) -> Self {
        Self { permission }
    }
}

impl<S, P: Clone> Layer<S> for RequirePermissionLayer<P> {
    type Service = RequirePermission<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission::new_async(inner, self.permission.clone())
    }
}
