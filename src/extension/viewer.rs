//! Who is asking: [`Viewer`], set by authentication, and [`ViewerKey`], the
//! one rule for whom a request counts as.

use std::fmt;
use std::net::IpAddr;

use super::client_ip::canonical;

/// Request extension: the identity of the person making a request.
///
/// An upstream authentication layer (yours, or the bundled
/// [`BearerAuthLayer`](crate::auth::BearerAuthLayer)) inserts it.
/// Permission checks and the watch log read it; a request without one is
/// treated as [`Viewer::anonymous`].
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

/// Whom a request counts as: `u:<user id>` when the [`Viewer`] has a user
/// id, else `ip:<client IP>` (the IP after the trusted-proxy walk, see
/// [`ClientIp`](super::ClientIp), with IPv4-mapped IPv6 folded to IPv4),
/// else `anonymous`.
///
/// The stream limit keys its slots on it and the watch log groups viewers by
/// it; the databases derive their `viewer_key` column with the same rule
/// from the stored `user_id` and `ip` (a conformance test checks they
/// agree).
///
/// ```
/// use sage_stream::extension::ViewerKey;
///
/// assert_eq!(ViewerKey::new(Some("alice"), None).as_str(), "u:alice");
/// let mapped = "::ffff:192.0.2.1".parse().ok();
/// assert_eq!(ViewerKey::new(None, mapped).as_str(), "ip:192.0.2.1");
/// assert!(ViewerKey::new(None, None).is_anonymous());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewerKey(String);

const ANONYMOUS_KEY: &str = "anonymous";

impl ViewerKey {
    /// The key of a viewer with this user id and client IP.
    pub fn new(user_id: Option<&str>, ip: Option<IpAddr>) -> Self {
        Self::compose(user_id, ip.map(canonical).as_ref())
    }

    /// The key of a stored row, from its `user_id` and `ip` text (written
    /// from a folded [`IpAddr`], so the text is what [`ViewerKey::new`]
    /// would write).
    pub fn from_stored(user_id: Option<&str>, ip: Option<&str>) -> Self {
        Self::compose(user_id, ip.as_ref())
    }

    // The rule itself, once: user id first, else the IP, else anonymous.
    fn compose(user_id: Option<&str>, ip: Option<&impl fmt::Display>) -> Self {
        Self(match (user_id, ip) {
            (Some(user), _) => format!("u:{user}"),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => ANONYMOUS_KEY.to_owned(),
        })
    }

    /// The key as text: `u:…`, `ip:…` or `anonymous`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether neither a user id nor an IP was known.
    pub fn is_anonymous(&self) -> bool {
        self.0 == ANONYMOUS_KEY
    }
}

impl fmt::Display for ViewerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ViewerKey> for String {
    fn from(key: ViewerKey) -> Self {
        key.0
    }
}
