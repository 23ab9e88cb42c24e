//! [`RoutePermission`]: the permission classes of the settings as one check.

use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use pin_project::pin_project;

use super::check::{AllOf, AsyncPermission, Checked};
#[cfg(feature = "auth-request")]
use super::{auth_request::AuthRequest, combine::AndFuture, And, PermissionExt};

/// The permission classes a [`Settings`](crate::settings::Settings) lists,
/// as the one check a stream route runs
/// ([`Settings::permission`](crate::settings::Settings::permission)): all
/// must allow, the first refusal wins. `AuthRequest`, when listed, asks
/// first, wherever it is listed, so that the other classes (and the layers
/// inside) see the viewer it names; the synchronous classes then decide
/// without awaiting. Without `AuthRequest` the check is ready at once.
///
/// An [`AsyncPermission`]: stack it with
/// [`RequirePermissionLayer::new_async`](super::RequirePermissionLayer::new_async)
/// or [`StreamEndpoint::permission_async`](crate::StreamEndpoint::permission_async).
#[derive(Clone, Debug)]
pub struct RoutePermission {
    classes: AllOf,
    #[cfg(feature = "auth-request")]
    forward: Option<And<AuthRequest, AllOf>>,
}

impl RoutePermission {
    /// The synchronous classes alone.
    pub(crate) fn new(classes: AllOf) -> Self {
        Self {
            classes,
            #[cfg(feature = "auth-request")]
            forward: None,
        }
    }

    /// `auth` asks first, then the classes decide.
    #[cfg(feature = "auth-request")]
    pub(crate) fn asking_first(self, auth: AuthRequest) -> Self {
        Self {
            forward: Some(auth.and(self.classes.clone())),
            ..self
        }
    }

    /// Whether a check asks another service (and so may wait).
    pub fn is_async(&self) -> bool {
        #[cfg(feature = "auth-request")]
        if self.forward.is_some() {
            return true;
        }
        false
    }

    /// The synchronous classes alone: what the check decides without
    /// asking (all of it when [`is_async`](Self::is_async) is false).
    pub fn classes(&self) -> &AllOf {
        &self.classes
    }
}

impl<B: Send + 'static> AsyncPermission<B> for RoutePermission {
    type Future = RouteFuture<B>;

    fn check_async(&self, request: Request<B>) -> Self::Future {
        #[cfg(feature = "auth-request")]
        if let Some(forward) = &self.forward {
            return RouteFuture::Asking(forward.check_async(request));
        }
        RouteFuture::Ready(Checked::now(&self.classes, request))
    }
}

/// Future of [`RoutePermission`]: ready at once unless a class asks.
// The request only passes through; boxing it would cost an allocation per
// request on the path that asks nothing.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = RouteProj)]
pub enum RouteFuture<B: Send + 'static> {
    /// Decided without asking.
    Ready(#[pin] Ready<Checked<B>>),
    /// `AuthRequest` asks, then the other classes decide.
    #[cfg(feature = "auth-request")]
    Asking(#[pin] AndFuture<AuthRequest, AllOf, B>),
}

impl<B: Send + 'static> std::fmt::Debug for RouteFuture<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteFuture").finish_non_exhaustive()
    }
}

impl<B: Send + 'static> Future for RouteFuture<B> {
    type Output = Checked<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteProj::Ready(ready) => ready.poll(cx),
            #[cfg(feature = "auth-request")]
            RouteProj::Asking(asking) => asking.poll(cx),
        }
    }
}
