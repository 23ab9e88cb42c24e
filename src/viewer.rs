//! Who is asking: the identity contract between authentication and the
//! permission and logging layers.
//!
//! An upstream authentication layer (yours, or the bundled
//! [`BearerAuthLayer`](crate::auth::BearerAuthLayer)) inserts a [`Viewer`]
//! into the request's extensions. Permission checks and the watch log read
//! it; a request without one is treated as [`Viewer::anonymous`].

/// The identity of the person making a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Viewer {
    /// The user's id, if known.
    pub user_id: Option<String>,
    /// Whether the request was authenticated.
    pub authenticated: bool,
}

impl Viewer {
    /// An unauthenticated viewer without a user id.
    pub const fn anonymous() -> Self {
        Self {
            user_id: None,
            authenticated: false,
        }
    }

    /// An authenticated viewer with this user id.
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            user_id: Some(id.into()),
            authenticated: true,
        }
    }
}

pub(crate) static ANONYMOUS: Viewer = Viewer::anonymous();
