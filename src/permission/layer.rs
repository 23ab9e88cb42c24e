use tower_layer::Layer;

use super::check::{AsyncCheck, Permission, SyncPermission};
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

impl<P> RequirePermissionLayer<AsyncCheck<P>> {
    /// Checks each request with an [`AsyncPermission`](super::AsyncPermission)
    /// (or a combination with one): the inner service must be `Clone`.
    pub fn new_async(permission: P) -> Self {
        Self {
            permission: AsyncCheck::new(permission),
        }
    }
}

impl<S, P: Clone> Layer<S> for RequirePermissionLayer<P> {
    type Service = RequirePermission<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            permission: self.permission.clone(),
        }
    }
}
