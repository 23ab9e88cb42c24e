//! [`SignedUrl`]: links that carry their own permission, for `<video src>`
//! tags that cannot send an `Authorization` header.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::check::{
    async_by_sync, AsyncPermission, Checked, Decision, Denial, Permission, RequestHead,
};
use crate::error::ConfigError;
use crate::extension::{normalise, MediaPathError, MediaPathSource, PathSignature};

/// Query variable carrying the expiry, in Unix seconds.
pub const EXPIRES_VAR: &str = "expires";
/// Query variable carrying the hex HMAC-SHA-256 signature.
pub const SIGNATURE_VAR: &str = "signature";

/// Opens the signed message of a prefix signature, so that it can never
/// equal a single-file message (which starts with the path and ends in the
/// expiry's digits; a prefix message ends in `/`).
const PREFIX_TAG: &[u8] = b"sage-stream prefix-signature v1\n";

/// Allows a request whose query carries a valid, unexpired signature of the
/// media path: `?path=P&expires=E&signature=HEX`, where `HEX` is
/// HMAC-SHA-256 over `P`, a newline and `E` under a secret key.
///
/// `P` is the media path as the endpoint's [`MediaPathSource`] reads it (a
/// query variable, or the URI path below a prefix); give the signer the
/// same source as the endpoint, e.g. with [`SignedUrl::media_path`].
///
/// Signatures are compared in constant time. Missing, malformed, expired or
/// tampered links get `403` when `SignedUrl` decides alone; combined with
/// `or` and a check that answers `401` (`IsAuthenticated.or(SignedUrl)`), an
/// anonymous viewer gets that `401` instead (see [`PermissionExt::or`](super::PermissionExt::or)).
/// A path the edge refused is `400` before any signature is read.
///
/// # Prefix signatures
///
/// One signature can also cover every file below a directory, for HLS and
/// DASH, whose playlists name their segments by relative URLs: with a
/// source that [reads path signatures](MediaPathSource::path_signatures),
/// `/media/_s/E/HEX/show1/index.m3u8` carries it in the path, and
/// `seg0.ts` in that playlist resolves to `/media/_s/E/HEX/show1/seg0.ts`.
/// `HEX` is HMAC-SHA-256 under the same key over
/// `"sage-stream prefix-signature v1\n"`, `E` in decimal, a newline and the
/// prefix (`show1/`). The prefix names a directory: it ends with `/` (so
/// `show1/` never covers `show10/`), is normalised, and is not empty (no
/// link covers the whole root). The check normalises the requested path
/// first (`..` is refused) and allows it when the signature matches one of
/// the directories above it; otherwise `403 signature does not cover this
/// path` (a tampered signature and a path outside the prefix look the
/// same to the server).
///
/// ```
/// use std::time::Duration;
/// use sage_stream::extension::MediaPathSource;
/// use sage_stream::permission::SignedUrl;
///
/// let signer = SignedUrl::new("k").media_path(MediaPathSource::uri_prefix("/media").path_signatures(true));
/// let link = signer
///     .signed_prefix_link("/media", "show1/", "show1/index.m3u8", Duration::from_secs(3600))
///     .unwrap();
/// assert!(link.starts_with("/media/_s/") && link.ends_with("/show1/index.m3u8"));
/// assert!(signer.sign_prefix("show1", 1).is_err(), "a prefix ends with /");
/// ```
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
    /// is signed without it, and normalised (`./a//b` as `a/b`), as the
    /// check reads it.
    pub fn sign(&self, path: &str, expires: u64) -> String {
        let path = self.source.strip_media_url(path);
        let normal = normalise(path, usize::MAX);
        let path = normal.as_deref().unwrap_or(path);
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// The HMAC state of a prefix message up to the prefix.
    fn prefix_mac(&self, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(PREFIX_TAG);
        mac.update(expires.to_string().as_bytes());
        mac.update(b"\n");
        mac
    }

    /// The hex signature covering every file below `prefix` until
    /// `expires` (Unix seconds); see [prefix signatures](Self#prefix-signatures).
    /// Refuses a prefix that is empty, lacks its trailing `/` or is not
    /// normalised.
    pub fn sign_prefix(&self, prefix: &str, expires: u64) -> Result<String, ConfigError> {
        check_prefix(prefix).map_err(|reason| ConfigError::InvalidSetting {
            name: "prefix",
            value: prefix.to_owned(),
            reason: reason.to_owned(),
        })?;
        let mut mac = self.prefix_mac(expires);
        mac.update(prefix.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// A link to `path` (below `prefix`, or `prefix` itself for a base URL
    /// that ends with `/`) whose path signature covers all of `prefix` for
    /// `ttl`, at the endpoint mounted at `mount` (the path-style route,
    /// e.g. `/media`). Needs a source that
    /// [reads path signatures](MediaPathSource::path_signatures).
    pub fn signed_prefix_link(
        &self,
        mount: &str,
        prefix: &str,
        path: &str,
        ttl: Duration,
    ) -> Result<String, ConfigError> {
        let invalid = |name: &'static str, value: &str, reason: &str| ConfigError::InvalidSetting {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if !path.starts_with(prefix) {
            return Err(invalid("path", path, "must lie below the signed prefix"));
        }
        let expires = unix_now().saturating_add(ttl.as_secs());
        let signature = self.sign_prefix(prefix, expires)?;
        self.source
            .signed_path_link(mount, expires, &signature, path)
            .ok_or_else(|| {
                invalid(
                    "media_path",
                    "",
                    "the signer's media-path source does not read path signatures (MediaPathSource::path_signatures)",
                )
            })
    }

    /// Whether `signature` is a prefix signature of one of the directories
    /// above `path` (normalised), shallowest first. The prefix ends the
    /// signed message, so one running HMAC serves every candidate.
    fn covers(&self, path: &str, expires: u64, signature: &[u8]) -> bool {
        let Some((dirs, _file)) = path.rsplit_once('/') else {
            return false;
        };
        let mut mac = self.prefix_mac(expires);
        for segment in dirs.split('/') {
            mac.update(segment.as_bytes());
            mac.update(b"/");
            if mac.clone().verify_slice(signature).is_ok() {
                return true;
            }
        }
        false
    }

    fn check_path_signature(
        &self,
        request: &RequestHead<'_>,
        signature: Result<PathSignature<'_>, MediaPathError>,
    ) -> Decision {
        let invalid = || Denial::forbidden("invalid signature");
        let signature = signature.map_err(|_| invalid())?;
        let expires = signature.expires.parse::<u64>().map_err(|_| invalid())?;
        let signature = hex::decode(signature.signature).map_err(|_| invalid())?;
        // Normalised by the one decoder: judged on the path the terminal
        // serves, so `a/../b` never counts as below `a/`.
        let path = self
            .source
            .resolve(request.extensions, request.uri)
            .map_err(Denial::InvalidPath)?;
        // Checked before the expiry so a forged link learns nothing from it.
        if !self.covers(&path, expires, &signature) {
            return Err(Denial::forbidden("signature does not cover this path"));
        }
        if unix_now() > expires {
            return Err(Denial::forbidden("link expired"));
        }
        Ok(())
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
    /// use sage_stream::extension::MediaPathSource;
    /// use sage_stream::permission::SignedUrl;
    ///
    /// let link = SignedUrl::new("k").media_path(MediaPathSource::query("video")).signed_link("/api/stream", "a.mp4", Duration::from_secs(60));
    /// assert!(link.starts_with("/api/stream?video=a.mp4&expires="));
    /// let link = SignedUrl::new("k").media_path(MediaPathSource::uri_prefix("/media")).signed_link("/media", "a.mp4", Duration::from_secs(60));
    /// assert!(link.starts_with("/media/a.mp4?expires="));
    /// ```
    pub fn signed_link(&self, mount: &str, path: &str, ttl: Duration) -> String {
        self.source
            .link(mount, path, &self.signature_query(path, ttl))
    }
}

/// Why `prefix` cannot be signed, if it cannot.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    let Some(dir) = prefix.strip_suffix('/') else {
        return Err(if prefix.is_empty() {
            "empty: a prefix names a directory such as show1/ (no link covers the whole root)"
        } else {
            "must end with / (show1/ covers show1/..., never show10/)"
        });
    };
    match normalise(dir, usize::MAX) {
        Ok(normal) if normal == dir => Ok(()),
        Ok(_) => Err("must be normalised: no empty or . segments"),
        Err(refusal) => Err(refusal.reason()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async_by_sync!(SignedUrl);

impl Permission for SignedUrl {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        if let Some(signature) = self.source.path_signature(request.uri) {
            return self.check_path_signature(request, signature);
        }
        let path = self
            .source
            .resolve(request.extensions, request.uri)
            .map_err(Denial::InvalidPath)?;
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

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn signer() -> SignedUrl {
        SignedUrl::new("k3y")
            .media_path(MediaPathSource::uri_prefix("/media").path_signatures(true))
    }

    fn check(signer: &SignedUrl, uri: &str) -> Decision {
        let request = Request::get(uri).body(()).unwrap();
        signer.check(&RequestHead::of(&request))
    }

    fn reason(decision: Decision) -> String {
        decision.unwrap_err().reason().to_owned()
    }

    /// The link's `/media/_s/E/S/` part, to put other paths after.
    fn signed_base(signer: &SignedUrl, prefix: &str, expires: u64) -> String {
        format!(
            "/media/_s/{expires}/{}/",
            signer.sign_prefix(prefix, expires).unwrap()
        )
    }

    #[test]
    fn a_prefix_covers_its_directory_and_nothing_else() {
        let s = signer();
        let link = s
            .signed_prefix_link("/media", "show1/", "show1/index.m3u8", HOUR)
            .unwrap();
        assert_eq!(check(&s, &link), Ok(()));
        let expires = unix_now() + 3600;
        let base = signed_base(&s, "show1/", expires);
        for inside in [
            "show1/seg0.ts",
            "show1/sub/deeper/seg.m4s",
            "show1//seg0.ts",
            "show1/./seg0.ts",
            "show1%2Fseg0.ts",
            "show%31/seg0.ts",
        ] {
            assert_eq!(check(&s, &format!("{base}{inside}")), Ok(()), "{inside}");
        }
        for outside in [
            "show10/seg0.ts",
            "show1",
            "show2/seg0.ts",
            "seg0.ts",
            "other/show1/seg0.ts",
        ] {
            assert_eq!(
                reason(check(&s, &format!("{base}{outside}"))),
                "signature does not cover this path",
                "{outside}"
            );
        }
        // Climbing out, plainly or escaped, is refused before any signature.
        for climb in [
            "show1/../secret.mp4",
            "show1/%2e%2e/secret.mp4",
            "show1%2f..%2fsecret.mp4",
            "show1/%2E%2E%2Fsecret.mp4",
        ] {
            assert_eq!(
                reason(check(&s, &format!("{base}{climb}"))),
                "'..' is not allowed in media paths",
                "{climb}"
            );
        }
        // A deeper prefix does not cover its parent.
        let deep = signed_base(&s, "show1/hd/", expires);
        assert_eq!(check(&s, &format!("{deep}show1/hd/seg0.ts")), Ok(()));
        assert!(check(&s, &format!("{deep}show1/seg0.ts")).is_err());
    }

    #[test]
    fn expired_tampered_and_malformed_links_are_refused() {
        let s = signer();
        let past = unix_now() - 10;
        assert_eq!(
            reason(check(
                &s,
                &format!("{}show1/a.ts", signed_base(&s, "show1/", past))
            )),
            "link expired"
        );
        // Moving the expiry breaks the signature.
        let sig = s.sign_prefix("show1/", past).unwrap();
        let moved = format!("/media/_s/{}/{sig}/show1/a.ts", past + 7200);
        assert_eq!(
            reason(check(&s, &moved)),
            "signature does not cover this path"
        );
        // Another key.
        let other = SignedUrl::new("other").media_path(s.source().clone());
        let link = other
            .signed_prefix_link("/media", "show1/", "show1/a.ts", HOUR)
            .unwrap();
        assert_eq!(
            reason(check(&s, &link)),
            "signature does not cover this path"
        );
        for bad in [
            "/media/_s/x/ab/show1/a.ts",
            "/media/_s/1/zz/show1/a.ts",
            "/media/_s/1/ab",
            "/media/_s//ab/a.ts",
        ] {
            assert_eq!(reason(check(&s, bad)), "invalid signature", "{bad}");
        }
        // No signature at all.
        assert_eq!(reason(check(&s, "/media/show1/a.ts")), "missing signature");
    }

    #[test]
    fn prefix_and_single_file_signatures_never_stand_in_for_each_other() {
        let s = signer();
        let expires = unix_now() + 3600;
        // A single-file signature of `show1/` (or of the file) put in the path.
        for signed in ["show1/", "show1/a.ts"] {
            let single = s.sign(signed, expires);
            let uri = format!("/media/_s/{expires}/{single}/show1/a.ts");
            assert_eq!(
                reason(check(&s, &uri)),
                "signature does not cover this path",
                "{signed}"
            );
        }
        // A prefix signature put in the query.
        let prefix = s.sign_prefix("show1/", expires).unwrap();
        let uri = format!("/media/show1/a.ts?expires={expires}&signature={prefix}");
        assert_eq!(reason(check(&s, &uri)), "invalid signature");
        // The single-file form still works on the same route.
        let uri = format!(
            "/media/show1/a.ts?{}",
            s.signature_query("show1/a.ts", HOUR)
        );
        assert_eq!(check(&s, &uri), Ok(()));
    }

    #[test]
    fn only_normalised_directory_prefixes_are_signed() {
        let s = signer();
        for good in ["show1/", "a/b/c/", "ünï code/"] {
            assert!(s.sign_prefix(good, 1).is_ok(), "{good}");
        }
        for bad in [
            "", "/", "show1", "/show1/", "show1//", "./show1/", "a//b/", "../", "a/../b/", "a\\b/",
            "c:/", "a\nb/",
        ] {
            let err = s.sign_prefix(bad, 1).unwrap_err().to_string();
            assert!(err.contains("prefix"), "{bad}: {err}");
        }
        assert!(s
            .signed_prefix_link("/media", "show1/", "show10/a.ts", HOUR)
            .is_err());
        assert!(s
            .signed_prefix_link("/media", "show1/", "show1/", HOUR)
            .unwrap()
            .ends_with("/show1/"));
        let query = SignedUrl::new("k3y");
        assert!(query
            .signed_prefix_link("/api/stream", "show1/", "show1/a.ts", HOUR)
            .is_err());
    }
}
