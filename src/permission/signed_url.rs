//! [`SignedUrl`]: links that carry their own permission, for `<video src>`
//! tags that cannot send an `Authorization` header.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::check::{Decision, Denial, Permission, RequestHead};
use crate::extension::MediaPathSource;

/// Query variable carrying the expiry, in Unix seconds.
pub const EXPIRES_VAR: &str = "expires";
/// Query variable carrying the hex HMAC-SHA-256 signature.
pub const SIGNATURE_VAR: &str = "signature";

/// Allows a request whose query carries a valid, unexpired signature of the
/// media path: `?path=P&expires=E&signature=HEX`, where `HEX` is
/// HMAC-SHA-256 over `P`, a newline and `E` under a secret key.
///
/// `P` is the media path as the endpoint's [`MediaPathSource`] reads it (a
/// query variable, or the URI path below a prefix); give the signer the
/// same source as the endpoint, e.g. with [`SignedUrl::media_path`].
///
/// Signatures are compared in constant time. Missing, malformed, expired or
/// tampered links get `403`.
#[derive(Clone)]
pub struct SignedUrl {
    key: Vec<u8>,
    source: MediaPathSource,
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("SignedUrl")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl SignedUrl {
    /// Verifies links signed with `key`; the path is the `path` query variable.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            source: MediaPathSource::default(),
        }
    }

    /// Signs the media path as `source` reads it (match the endpoint's).
    pub fn media_path(mut self, source: MediaPathSource) -> Self {
        self.source = source;
        self
    }

    /// Signs the value of this query variable (match the endpoint's).
    pub fn path_var(self, name: impl Into<String>) -> Self {
        self.media_path(MediaPathSource::query(name))
    }

    /// Signs the media path below `prefix` in the URI path (for
    /// `ServeMedia::uri_path(prefix)` mounts).
    pub fn uri_path(self, prefix: impl Into<String>) -> Self {
        self.media_path(MediaPathSource::uri_prefix(prefix))
    }

    /// The media-path source this signer reads.
    pub fn source(&self) -> &MediaPathSource {
        &self.source
    }

    fn mac(&self, path: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of `path` valid until `expires` (Unix seconds):
    /// HMAC-SHA256 over `path`, a newline and `expires` in decimal, keyed
    /// with the signing key. A path that starts with the source's media URL
    /// is signed without it, as the check reads it.
    pub fn sign(&self, path: &str, expires: u64) -> String {
        let path = self.source.strip_media_url(path);
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// The `expires=E&signature=HEX` query pairs granting access to `path`
    /// for `ttl`.
    pub fn signature_query(&self, path: &str, ttl: Duration) -> String {
        let expires = unix_now().saturating_add(ttl.as_secs());
        let signature = self.sign(path, expires);
        format!("{EXPIRES_VAR}={expires}&{SIGNATURE_VAR}={signature}")
    }

    /// A signed link to `path` valid for `ttl`, at the endpoint mounted at
    /// `mount` (its URL in query mode, the prefix's URL in URI mode; see
    /// [`MediaPathSource::link`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sage_stream::permission::SignedUrl;
    ///
    /// let link = SignedUrl::new("k").path_var("video").signed_link("/api/stream", "a.mp4", Duration::from_secs(60));
    /// assert!(link.starts_with("/api/stream?video=a.mp4&expires="));
    /// let link = SignedUrl::new("k").uri_path("/media").signed_link("/media", "a.mp4", Duration::from_secs(60));
    /// assert!(link.starts_with("/media/a.mp4?expires="));
    /// ```
    pub fn signed_link(&self, mount: &str, path: &str, ttl: Duration) -> String {
        self.source
            .link(mount, path, &self.signature_query(path, ttl))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Permission for SignedUrl {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        // No readable path signs as the empty one: the signature then fails.
        let path = self
            .source
            .resolve(request.extensions, request.uri)
            .unwrap_or_default();
        let (Some(expires), Some(signature)) =
            (request.query(EXPIRES_VAR), request.query(SIGNATURE_VAR))
        else {
            return Err(Denial::forbidden("missing signature"));
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return Err(Denial::forbidden("invalid signature"));
        };
        let Ok(signature) = hex::decode(signature) else {
            return Err(Denial::forbidden("invalid signature"));
        };
        // Checked before the expiry so a forged link learns nothing from it.
        if self.mac(&path, expires).verify_slice(&signature).is_err() {
            return Err(Denial::forbidden("invalid signature"));
        }
        if unix_now() > expires {
            return Err(Denial::forbidden("link expired"));
        }
        Ok(())
    }
}
