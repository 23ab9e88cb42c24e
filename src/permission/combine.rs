//! `and`, `or` and `not`: one set of combinators for synchronous and
//! asynchronous checks, with one refusal rule.
//!
//! A combination of [`Permission`]s is a [`Permission`] (decided without
//! awaiting); a combination of [`AsyncPermission`]s is an
//! [`AsyncPermission`]. Since every synchronous check of this crate (and
//! every closure) is also asynchronous, mixed combinations such as
//! `IsAuthenticated.or(auth_request)` are asynchronous checks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project::pin_project;

use super::check::{AsyncPermission, Checked, Decision, Denial, Permission, RequestHead};

/// `and`, `or` and `not` for every check, synchronous or not.
///
/// The refusal a combination gives:
///
/// | combination | allows when | refuses with |
/// |---|---|---|
/// | `a.and(b)` | both allow (`b` runs only when `a` allowed, and sees the request as `a` left it) | the first refusal |
/// | `a.or(b)` | either allows (`b` runs only when `a` refused) | a `401` over a `403` (credentials might help), else `a`'s refusal |
/// | `a.not()` | `a` refuses | `403 forbidden` |
///
/// So `IsAuthenticated.or(SignedUrl::new(key))` answers an anonymous
/// request with a tampered or expired link `401` (from `IsAuthenticated`),
/// not `SignedUrl`'s `403`, in either order; a `503` from an unavailable
/// check is given only when the other branch refused with it too or with a
/// reason of its own that is not a `401`.
///
/// Implemented for every type (like tracing's `Instrument`), so that a
/// check of your own, synchronous or not, combines without an impl; what a
/// combination is (a [`Permission`], an [`AsyncPermission`]) follows from
/// its parts.
pub trait PermissionExt: Sized {
    /// Allows when both allow; the first refusal wins.
    fn and<Q>(self, other: Q) -> And<Self, Q> {
        And(Arc::new((self, other)))
    }

    /// Allows when either allows; when both refuse, a `401` is preferred
    /// over a `403`, else the first refusal is given.
    fn or<Q>(self, other: Q) -> Or<Self, Q> {
        Or(Arc::new((self, other)))
    }

    /// Allows what `self` refuses and refuses (`403`) what it allows.
    fn not(self) -> Not<Self> {
        Not(Arc::new(self))
    }
}

impl<T> PermissionExt for T {}

/// Both must allow; see [`PermissionExt::and`].
pub struct And<A, C>(Arc<(A, C)>);

/// Either must allow; see [`PermissionExt::or`].
pub struct Or<A, C>(Arc<(A, C)>);

/// The inverse; see [`PermissionExt::not`].
pub struct Not<A>(Arc<A>);

// By hand: cloning shares the checks, whatever they are.
impl<A, C> Clone for And<A, C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<A, C> Clone for Or<A, C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<A> Clone for Not<A> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<A: fmt::Debug, C: fmt::Debug> fmt::Debug for And<A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("And")
            .field(&self.0 .0)
            .field(&self.0 .1)
            .finish()
    }
}

impl<A: fmt::Debug, C: fmt::Debug> fmt::Debug for Or<A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Or")
            .field(&self.0 .0)
            .field(&self.0 .1)
            .finish()
    }
}

impl<A: fmt::Debug> fmt::Debug for Not<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Not").field(&self.0).finish()
    }
}

/// The refusal of `or` when both branches refused: a `401` from the
/// second beats a `403` from the first, else the first stands.
fn either_refusal(first: Denial, second: Denial) -> Denial {
    match (&first, &second) {
        (Denial::Forbidden(_), Denial::Unauthenticated(_)) => second,
        _ => first,
    }
}

fn inverse(decision: Decision) -> Decision {
    match decision {
        Ok(()) => Err(Denial::forbidden("forbidden")),
        Err(_) => Ok(()),
    }
}

impl<A: Permission, C: Permission> Permission for And<A, C> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        self.0 .0.check(request)?;
        self.0 .1.check(request)
    }
}

impl<A: Permission, C: Permission> Permission for Or<A, C> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        let Err(first) = self.0 .0.check(request) else {
            return Ok(());
        };
        match self.0 .1.check(request) {
            Ok(()) => Ok(()),
            Err(second) => Err(either_refusal(first, second)),
        }
    }
}

impl<A: Permission> Permission for Not<A> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        inverse(self.0.check(request))
    }
}

impl<B, A, C> AsyncPermission<B> for And<A, C>
where
    A: AsyncPermission<B>,
    C: AsyncPermission<B>,
{
    type Future = AndFuture<A, C, B>;

    fn check_async(&self, request: http::Request<B>) -> Self::Future {
        AndFuture {
            state: Both::First {
                future: self.0 .0.check_async(request),
                checks: Arc::clone(&self.0),
            },
        }
    }
}

impl<B, A, C> AsyncPermission<B> for Or<A, C>
where
    A: AsyncPermission<B>,
    C: AsyncPermission<B>,
{
    type Future = OrFuture<A, C, B>;

    fn check_async(&self, request: http::Request<B>) -> Self::Future {
        OrFuture {
            state: Either::First {
                future: self.0 .0.check_async(request),
                checks: Arc::clone(&self.0),
            },
        }
    }
}

impl<B, A: AsyncPermission<B>> AsyncPermission<B> for Not<A> {
    type Future = NotFuture<A::Future>;

    fn check_async(&self, request: http::Request<B>) -> Self::Future {
        NotFuture {
            future: self.0.check_async(request),
        }
    }
}

/// Future of an asynchronous [`And`].
#[pin_project]
pub struct AndFuture<A: AsyncPermission<B>, C: AsyncPermission<B>, B> {
    #[pin]
    state: Both<A, C, A::Future, C::Future>,
}

#[pin_project(project = BothProj)]
enum Both<A, C, FA, FC> {
    First {
        #[pin]
        future: FA,
        checks: Arc<(A, C)>,
    },
    Second {
        #[pin]
        future: FC,
    },
}

impl<B, A, C> Future for AndFuture<A, C, B>
where
    A: AsyncPermission<B>,
    C: AsyncPermission<B>,
{
    type Output = Checked<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                BothProj::First { future, checks } => {
                    let checked = ready!(future.poll(cx));
                    if checked.decision.is_err() {
                        return Poll::Ready(checked);
                    }
                    // The second check sees the request as the first left it
                    // (with the viewer it learned, say).
                    let future = checks.1.check_async(checked.request);
                    state.set(Both::Second { future });
                }
                BothProj::Second { future } => return future.poll(cx),
            }
        }
    }
}

impl<A: AsyncPermission<B>, C: AsyncPermission<B>, B> fmt::Debug for AndFuture<A, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AndFuture").finish_non_exhaustive()
    }
}

/// Future of an asynchronous [`Or`].
#[pin_project]
pub struct OrFuture<A: AsyncPermission<B>, C: AsyncPermission<B>, B> {
    #[pin]
    state: Either<A, C, A::Future, C::Future>,
}

#[pin_project(project = EitherProj)]
enum Either<A, C, FA, FC> {
    First {
        #[pin]
        future: FA,
        checks: Arc<(A, C)>,
    },
    Second {
        #[pin]
        future: FC,
        // Taken once, when the second check refuses too.
        first: Option<Denial>,
    },
}

impl<B, A, C> Future for OrFuture<A, C, B>
where
    A: AsyncPermission<B>,
    C: AsyncPermission<B>,
{
    type Output = Checked<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                EitherProj::First { future, checks } => {
                    let checked = ready!(future.poll(cx));
                    let Err(first) = checked.decision else {
                        return Poll::Ready(checked);
                    };
                    // The refused request goes on to the second check.
                    let future = checks.1.check_async(checked.request);
                    state.set(Either::Second {
                        future,
                        first: Some(first),
                    });
                }
                EitherProj::Second { future, first } => {
                    let checked = ready!(future.poll(cx));
                    let decision = match (checked.decision, first.take()) {
                        (Err(second), Some(first)) => Err(either_refusal(first, second)),
                        (decision, _) => decision,
                    };
                    return Poll::Ready(Checked::new(checked.request, decision));
                }
            }
        }
    }
}

impl<A: AsyncPermission<B>, C: AsyncPermission<B>, B> fmt::Debug for OrFuture<A, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrFuture").finish_non_exhaustive()
    }
}

/// Future of an asynchronous [`Not`].
#[pin_project]
#[derive(Debug)]
pub struct NotFuture<F> {
    #[pin]
    future: F,
}

impl<B, F: Future<Output = Checked<B>>> Future for NotFuture<F> {
    type Output = Checked<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let checked = ready!(self.project().future.poll(cx));
        Poll::Ready(Checked::new(checked.request, inverse(checked.decision)))
    }
}
