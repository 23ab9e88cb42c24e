//! [`SignedUrl`]: links that carry their own permission, for `<video src>`
//! tags that cannot send an `Authorization` header.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use super::check::{Decision, Denial, Permission, RequestHead};
use crate::media::DEFAULT_PATH_VAR;

/// Query variable carrying the expiry, in Unix seconds.
pub const EXPIRES_VAR: &str = "expires";
/// Query variable carrying the hex HMAC-SHA-256 signature.
pub const SIGNATURE_VAR: &str = "signature";

// Everything but unreserved characters and `/` is escaped in query values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

#[derive(Clone, Debug)]
enum Signed {
    Query(String),
    UriPath,
}

/// Allows a request whose query carries a valid, unexpired signature of the
/// media path: `?path=P&expires=E&signature=HEX`, where `HEX` is
/// HMAC-SHA-256 over `P`, a newline and `E` under a secret key.
///
/// Signatures are compared in constant time. Missing, malformed, expired or
/// tampered links get `403`.
#[derive(Clone)]
pub struct SignedUrl {
    key: Vec<u8>,
    signed: Signed,
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("SignedUrl")
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

impl SignedUrl {
    /// Verifies links signed with `key`; the path is the `path` query variable.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            signed: Signed::Query(DEFAULT_PATH_VAR.to_owned()),
        }
    }

    /// Signs the value of this query variable (match the endpoint's).
    pub fn path_var(mut self, name: impl Into<String>) -> Self {
        self.signed = Signed::Query(name.into());
        self
    }

    /// Signs the decoded URI path instead (for `ServeMedia::uri_path` mounts).
    pub fn uri_path(mut self) -> Self {
        self.signed = Signed::UriPath;
        self
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

    /// The hex signature of `path` valid until `expires` (Unix seconds).
    pub fn sign(&self, path: &str, expires: u64) -> String {
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// A query string (without `?`) granting access to `path` for `ttl`.
    ///
    /// With [`SignedUrl::uri_path`] it holds only `expires` and `signature`.
    pub fn signed_query(&self, path: &str, ttl: Duration) -> String {
        let expires = unix_now().saturating_add(ttl.as_secs());
        let signature = self.sign(path, expires);
        match &self.signed {
            Signed::Query(var) => format!(
                "{}={}&{EXPIRES_VAR}={expires}&{SIGNATURE_VAR}={signature}",
                utf8_percent_encode(var, QUERY_VALUE),
                utf8_percent_encode(path, QUERY_VALUE)
            ),
            Signed::UriPath => format!("{EXPIRES_VAR}={expires}&{SIGNATURE_VAR}={signature}"),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Permission for SignedUrl {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        let path = match &self.signed {
            Signed::Query(var) => request.query(var).unwrap_or_default(),
            Signed::UriPath => percent_encoding::percent_decode_str(request.uri.path())
                .decode_utf8_lossy()
                .into_owned(),
        };
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
