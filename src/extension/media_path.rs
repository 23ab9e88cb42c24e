//! [`MediaPathSource`]: the one rule for which media path a request names,
//! and [`MediaPath`], its answer as a request extension.

use std::borrow::Cow;

use http::{Extensions, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::query::query_value;

/// The query variable django-sage-streaming reads the media path from
/// (`STREAM_DEFAULT_VIDEO_PATH_URL_VAR`).
pub const DEFAULT_PATH_VAR: &str = "path";

/// Request extension: the decoded media path this request names, as the
/// client wrote it (before the terminal service normalises and confines it).
///
/// Set by the first layer that decodes it (the watch log); the permission
/// (`SignedUrl`) and the terminal service read it, so what is signed, served
/// and logged is one answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MediaPath(String);

impl MediaPath {
    /// The decoded path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a request names no usable media path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaPathError {
    /// The query variable is absent.
    #[error("missing media path")]
    Missing,
    /// The path is not valid UTF-8 once percent-decoded.
    #[error("media path is not valid UTF-8")]
    NotUtf8,
    /// The URI path is not below the mount prefix.
    #[error("not below the media prefix")]
    OutsidePrefix,
    /// The path starts with the path-signature segment (`_s/`) but not
    /// with a whole `_s/EXPIRES/SIGNATURE/` before a media path.
    #[error("malformed signed path")]
    MalformedSignedPath,
}

/// The first segment below the prefix that introduces a path signature:
/// `PREFIX/_s/EXPIRES/SIGNATURE/MEDIA-PATH` (see
/// [`MediaPathSource::path_signatures`]).
pub const PATH_SIGNATURE_SEGMENT: &str = "_s";

/// The `EXPIRES` and `SIGNATURE` segments of a path-signed request, as
/// written (not yet checked); [`SignedUrl`](crate::permission::SignedUrl)
/// verifies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathSignature<'a> {
    /// The expiry segment, Unix seconds in decimal when well formed.
    pub expires: &'a str,
    /// The signature segment, hex when well formed.
    pub signature: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Query(String),
    UriPrefix(String),
}

/// Where a request names its media path: a query variable (default `path`,
/// as django-sage-streaming) or the URI path below a mount prefix.
///
/// One strict decoder: percent-escapes are decoded exactly once (in a query,
/// `+` is a space, as HTML forms write it) and the result must be UTF-8.
/// `ServeMedia`, `SignedUrl`, the watch log and `sage-stream sign` all read
/// paths through it, so they cannot disagree.
///
/// ```
/// use http::Uri;
/// use sage_stream::extension::MediaPathSource;
///
/// let by_query = MediaPathSource::query("video");
/// assert_eq!(by_query.decode(&Uri::from_static("/s?video=a%20b.mp4")).unwrap(), "a b.mp4");
/// assert_eq!(by_query.link("/s", "a b.mp4", ""), "/s?video=a%20b.mp4");
///
/// let by_uri = MediaPathSource::uri_prefix("/media/");
/// assert_eq!(by_uri.decode(&Uri::from_static("/media/clips/a.mp4")).unwrap(), "clips/a.mp4");
/// assert!(by_uri.decode(&Uri::from_static("/other/a.mp4")).is_err());
/// assert_eq!(by_uri.link("/media", "clips/a.mp4", "x=1"), "/media/clips/a.mp4?x=1");
/// ```
///
/// With a media URL (django-sage-streaming's `MEDIA_URL`, the
/// `STREAM_MEDIA_URL` setting), a decoded path that starts with it names the
/// file below the root: `?path=/media/clips/a.mp4` and `?path=clips/a.mp4`
/// are the same file, signed, logged and served as `clips/a.mp4`.
///
/// ```
/// use http::Uri;
/// use sage_stream::extension::MediaPathSource;
///
/// let django = MediaPathSource::query("path").media_url("/media/");
/// assert_eq!(django.decode(&Uri::from_static("/s?path=/media/clips/a.mp4")).unwrap(), "clips/a.mp4");
/// assert_eq!(django.decode(&Uri::from_static("/s?path=clips/a.mp4")).unwrap(), "clips/a.mp4");
/// // Still confined later: the prefix removed, `..` remains and is refused.
/// assert_eq!(django.decode(&Uri::from_static("/s?path=/media/../x")).unwrap(), "../x");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPathSource {
    source: Source,
    // With a trailing `/`; removed from the front of decoded paths.
    media_url: Option<String>,
    // URI mode: `_s/EXPIRES/SIGNATURE/` before the path is a signature.
    path_signatures: bool,
}

impl Default for MediaPathSource {
    fn default() -> Self {
        Self::query(DEFAULT_PATH_VAR)
    }
}

// Escaped in a path segment or query value: controls, space and the
// characters that delimit URI parts or query pairs; `/` stays readable.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'=')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'^')
    .add(b'[')
    .add(b']')
    .add(b'\'');

impl MediaPathSource {
    /// The path is the value of this query variable.
    pub fn query(var: impl Into<String>) -> Self {
        Self {
            source: Source::Query(var.into()),
            media_url: None,
            path_signatures: false,
        }
    }

    /// The path is the URI path below `prefix` (`/media` or `/media/`: the
    /// same), e.g. `/media/clips/a.mp4` names `clips/a.mp4`.
    pub fn uri_prefix(prefix: impl Into<String>) -> Self {
        Self {
            source: Source::UriPrefix(prefix.into().trim_end_matches('/').to_owned()),
            media_url: None,
            path_signatures: false,
        }
    }

    /// In URI mode, reads `_s/EXPIRES/SIGNATURE/` at the start of the path
    /// below the prefix as a signature, not as part of the media path
    /// (default: off). A player resolves a playlist's relative segment URLs
    /// against the playlist's URL, so every segment then carries it.
    ///
    /// `PREFIX/_s/E/S/show1/seg0.ts` names `show1/seg0.ts`;
    /// [`path_signature`](Self::path_signature) gives `E` and `S`. A path
    /// that starts with `_s/` but lacks either segment, or a media path
    /// after them, is refused ([`MediaPathError::MalformedSignedPath`]), so a
    /// top-level directory named `_s` is reachable only by query. No effect
    /// in query mode.
    ///
    /// ```
    /// use http::Uri;
    /// use sage_stream::extension::{MediaPathSource, PathSignature};
    ///
    /// let source = MediaPathSource::uri_prefix("/media").path_signatures(true);
    /// let uri = Uri::from_static("/media/_s/1700000000/abcd/show1/seg0.ts");
    /// assert_eq!(source.decode(&uri).unwrap(), "show1/seg0.ts");
    /// assert_eq!(
    ///     source.path_signature(&uri),
    ///     Some(Ok(PathSignature { expires: "1700000000", signature: "abcd" }))
    /// );
    /// assert_eq!(source.path_signature(&Uri::from_static("/media/show1/seg0.ts")), None);
    /// assert!(source.decode(&Uri::from_static("/media/_s/1700000000/abcd")).is_err());
    /// ```
    pub fn path_signatures(mut self, on: bool) -> Self {
        self.path_signatures = on;
        self
    }

    /// Whether [`path_signatures`](Self::path_signatures) applies (URI mode
    /// with it on).
    pub fn reads_path_signatures(&self) -> bool {
        self.path_signatures && matches!(self.source, Source::UriPrefix(_))
    }

    /// Removes `url` (e.g. `/media/`; a trailing `/` is implied) from the
    /// front of decoded paths that start with it; other paths are left as
    /// they are. An empty `url` turns it off.
    pub fn media_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.media_url = (!url.is_empty()).then(|| {
            let mut url = url.trim_end_matches('/').to_owned();
            url.push('/');
            url
        });
        self
    }

    /// The media URL removed from paths, if any (with its trailing `/`).
    pub fn media_url_prefix(&self) -> Option<&str> {
        self.media_url.as_deref()
    }

    /// `path` with the media URL removed from its front, when it starts
    /// with it: the name of the file below the root.
    pub fn strip_media_url<'p>(&self, path: &'p str) -> &'p str {
        match &self.media_url {
            Some(url) => path.strip_prefix(url.as_str()).unwrap_or(path),
            None => path,
        }
    }

    /// The query variable, in query mode.
    pub fn query_var(&self) -> Option<&str> {
        match &self.source {
            Source::Query(var) => Some(var),
            Source::UriPrefix(_) => None,
        }
    }

    /// The mount prefix (without a trailing `/`), in URI mode.
    pub fn prefix(&self) -> Option<&str> {
        match &self.source {
            Source::Query(_) => None,
            Source::UriPrefix(prefix) => Some(prefix),
        }
    }

    /// The media path `uri` names (the media URL removed).
    pub fn decode(&self, uri: &Uri) -> Result<String, MediaPathError> {
        let mut path = self.decode_raw(uri)?;
        if let Some(url) = &self.media_url {
            if path.starts_with(url.as_str()) {
                path.drain(..url.len());
            }
        }
        Ok(path)
    }

    fn decode_raw(&self, uri: &Uri) -> Result<String, MediaPathError> {
        match &self.source {
            Source::Query(var) => match query_value(uri.query(), var) {
                None => Err(MediaPathError::Missing),
                Some(Err(())) => Err(MediaPathError::NotUtf8),
                Some(Ok(value)) => Ok(value),
            },
            Source::UriPrefix(_) => {
                let (_, rest) = self.split_signature(uri)?;
                percent_decode_str(rest)
                    .decode_utf8()
                    .map(Cow::into_owned)
                    .map_err(|_| MediaPathError::NotUtf8)
            }
        }
    }

    /// The raw path below the prefix (URI mode), split into its path
    /// signature, when there is one, and the rest.
    fn split_signature<'u>(
        &self,
        uri: &'u Uri,
    ) -> Result<(Option<PathSignature<'u>>, &'u str), MediaPathError> {
        let Source::UriPrefix(prefix) = &self.source else {
            return Err(MediaPathError::OutsidePrefix);
        };
        let rest = uri
            .path()
            .strip_prefix(prefix.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .ok_or(MediaPathError::OutsidePrefix)?;
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if !self.path_signatures {
            return Ok((None, rest));
        }
        // Raw segments: an escaped `_s%2F…` is a path, never a signature.
        let mut parts = rest.splitn(4, '/');
        if parts.next() != Some(PATH_SIGNATURE_SEGMENT) {
            return Ok((None, rest));
        }
        match (parts.next(), parts.next(), parts.next()) {
            (Some(expires), Some(signature), Some(path))
                if !expires.is_empty() && !signature.is_empty() && !path.is_empty() =>
            {
                Ok((Some(PathSignature { expires, signature }), path))
            }
            _ => Err(MediaPathError::MalformedSignedPath),
        }
    }

    /// The path signature `uri` carries: `None` when it has none (query
    /// mode, [`path_signatures`](Self::path_signatures) off, or no `_s/`
    /// segment), an error when it starts with `_s/` but is malformed.
    pub fn path_signature<'u>(
        &self,
        uri: &'u Uri,
    ) -> Option<Result<PathSignature<'u>, MediaPathError>> {
        if !self.reads_path_signatures() {
            return None;
        }
        match self.split_signature(uri) {
            Ok((signature, _)) => signature.map(Ok),
            Err(MediaPathError::OutsidePrefix) => None,
            Err(err) => Some(Err(err)),
        }
    }

    /// The media path of a request: its [`MediaPath`] extension when an
    /// outer layer set one, else decoded from `uri`.
    pub fn resolve<'a>(
        &self,
        extensions: &'a Extensions,
        uri: &Uri,
    ) -> Result<Cow<'a, str>, MediaPathError> {
        match extensions.get::<MediaPath>() {
            Some(path) => Ok(Cow::Borrowed(path.as_str())),
            None => self.decode(uri).map(Cow::Owned),
        }
    }

    /// Decodes the path of a request and stores it as its [`MediaPath`]
    /// extension (unless one is there already), for the layers inside.
    pub fn insert_into<B>(&self, request: &mut http::Request<B>) {
        if request.extensions().get::<MediaPath>().is_none() {
            if let Ok(path) = self.decode(request.uri()) {
                request.extensions_mut().insert(MediaPath(path));
            }
        }
    }

    /// A path-signed request target: `{mount}/_s/{expires}/{signature}/`
    /// and `path` (escaped as in [`link`](Self::link)); `path` ending in
    /// `/` makes a base URL for relative names. `None` unless this source
    /// [reads path signatures](Self::reads_path_signatures).
    pub fn signed_path_link(
        &self,
        mount: &str,
        expires: u64,
        signature: &str,
        path: &str,
    ) -> Option<String> {
        self.reads_path_signatures().then(|| {
            let mount = mount.trim_end_matches('/');
            let path = utf8_percent_encode(path, COMPONENT);
            format!("{mount}/{PATH_SIGNATURE_SEGMENT}/{expires}/{signature}/{path}")
        })
    }

    /// A request target naming `path` at the endpoint mounted at `mount`
    /// (the endpoint's own path in query mode, the prefix's URL in URI
    /// mode), with `query` (already encoded, may be empty) appended.
    pub fn link(&self, mount: &str, path: &str, query: &str) -> String {
        let path = utf8_percent_encode(path, COMPONENT);
        let sep = if query.is_empty() { "" } else { "&" };
        match &self.source {
            Source::Query(var) => {
                let var = utf8_percent_encode(var, COMPONENT);
                format!("{mount}?{var}={path}{sep}{query}")
            }
            Source::UriPrefix(_) => {
                let mount = mount.trim_end_matches('/');
                let q = if query.is_empty() { "" } else { "?" };
                format!("{mount}/{path}{q}{query}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_decode_back_to_their_path() {
        let names = [
            "a.mp4",
            "dir/sub/clip one.mp4",
            "100% & more?.webm",
            "plus+sign=eq#hash.mp4",
            "ünï/çødé.mp4",
        ];
        for source in [
            MediaPathSource::query("v"),
            MediaPathSource::uri_prefix("/m"),
        ] {
            for name in names {
                let link = source.link(source.prefix().unwrap_or("/s"), name, "expires=1");
                let uri: Uri = link.parse().unwrap();
                assert_eq!(source.decode(&uri).as_deref(), Ok(name), "{link}");
            }
        }
    }

    #[test]
    fn refusals() {
        let q = MediaPathSource::default();
        assert_eq!(
            q.decode(&Uri::from_static("/s?x=1")),
            Err(MediaPathError::Missing)
        );
        assert_eq!(
            q.decode(&Uri::from_static("/s?path=%ff")),
            Err(MediaPathError::NotUtf8)
        );
        let u = MediaPathSource::uri_prefix("/m");
        assert_eq!(
            u.decode(&Uri::from_static("/mx/a")),
            Err(MediaPathError::OutsidePrefix)
        );
        assert_eq!(
            u.decode(&Uri::from_static("/m/%ff")),
            Err(MediaPathError::NotUtf8)
        );
        assert_eq!(u.decode(&Uri::from_static("/m")).as_deref(), Ok(""));
    }

    #[test]
    fn path_signatures() {
        let plain = MediaPathSource::uri_prefix("/m");
        let signed = plain.clone().path_signatures(true);
        let uri = Uri::from_static("/m/_s/17/ab/show%201/seg0.ts");
        // Off: `_s` is an ordinary directory.
        assert_eq!(plain.decode(&uri).as_deref(), Ok("_s/17/ab/show 1/seg0.ts"));
        assert_eq!(plain.path_signature(&uri), None);
        assert_eq!(signed.decode(&uri).as_deref(), Ok("show 1/seg0.ts"));
        assert_eq!(
            signed.path_signature(&uri),
            Some(Ok(PathSignature {
                expires: "17",
                signature: "ab"
            }))
        );
        // The signature segments are not decoded, and an escaped slash
        // never makes one.
        let escaped = Uri::from_static("/m/_s%2F17%2Fab%2Fx.ts");
        assert_eq!(signed.path_signature(&escaped), None);
        assert_eq!(signed.decode(&escaped).as_deref(), Ok("_s/17/ab/x.ts"));
        for bad in [
            "/m/_s",
            "/m/_s/",
            "/m/_s/17",
            "/m/_s/17/ab",
            "/m/_s/17/ab/",
            "/m/_s//ab/x",
            "/m/_s/17//x",
        ] {
            let uri: Uri = bad.parse().unwrap();
            assert_eq!(
                signed.decode(&uri),
                Err(MediaPathError::MalformedSignedPath),
                "{bad}"
            );
            assert_eq!(
                signed.path_signature(&uri),
                Some(Err(MediaPathError::MalformedSignedPath)),
                "{bad}"
            );
        }
        // Not below the prefix: no signature to speak of.
        assert_eq!(
            signed.path_signature(&Uri::from_static("/x/_s/1/a/b")),
            None
        );
        // Query mode never reads one.
        let query = MediaPathSource::query("path").path_signatures(true);
        assert_eq!(
            query.path_signature(&Uri::from_static("/m/_s/1/a/b?path=x")),
            None
        );
        assert_eq!(query.signed_path_link("/m", 1, "ab", "x"), None);
        // Links decode back.
        let link = signed
            .signed_path_link("/m/", 17, "ab", "show 1/a#b.ts")
            .unwrap();
        assert_eq!(link, "/m/_s/17/ab/show%201/a%23b.ts");
        assert_eq!(
            signed.decode(&link.parse().unwrap()).as_deref(),
            Ok("show 1/a#b.ts")
        );
    }
}
