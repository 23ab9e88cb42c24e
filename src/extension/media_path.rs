//! [`MediaPathSource`]: the one rule for which media path a request names,
//! and [`MediaPath`], its answer as a request extension.

use std::borrow::Cow;

use http::{Extensions, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::query::query_value;

/// The query variable django-sage-streaming reads the media path from
/// (`STREAM_DEFAULT_VIDEO_PATH_URL_VAR`).
pub const DEFAULT_PATH_VAR: &str = "path";

/// Request extension: the media path this request names, decoded and
/// normalised (`dir/sub/file`: no empty, `.` or `..` segments, relative).
///
/// Set once, at the edge, by [`ResolveMediaPathLayer`](crate::media_path::ResolveMediaPathLayer)
/// (or [`MediaPathSource::insert_into`]); every permission (forward auth,
/// signed links, your own checks through
/// [`RequestHead::media_path`](crate::permission::RequestHead::media_path)),
/// the watch log and `ServeMedia` read it, so what is allowed, served and
/// logged is one answer. Only [`MediaPathSource`] makes one, so a
/// `MediaPath` is always normalised.
///
/// When the path is refused instead, the same layer inserts the
/// [`MediaPathError`] as an extension: the permission layer and
/// `ServeMedia` answer it (`400`, or `404` outside the prefix) and the
/// watch log records no path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MediaPath(String);

impl MediaPath {
    /// The normalised path, relative to the media root.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a request names no usable media path. Its `Display` is the short
/// reason given to the client (it never echoes the path).
///
/// Also a request extension: the edge layer inserts it when it refuses a
/// path (see [`MediaPath`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaPathError {
    /// The query variable is absent.
    Missing,
    /// The path is not valid UTF-8 once percent-decoded.
    NotUtf8,
    /// The URI path is not below the mount prefix.
    OutsidePrefix,
    /// The path starts with the path-signature segment (`_s/`) but not
    /// with a whole `_s/EXPIRES/SIGNATURE/` before a media path, or names
    /// `_s` anywhere else, where reading it as a directory would put a
    /// signature into logs and permissions.
    MalformedSignedPath,
    /// Nothing left once empty and `.` segments are dropped.
    Empty,
    /// Longer than the source's [`max_len`](MediaPathSource::max_len).
    TooLong,
    /// A control character (NUL included).
    ControlCharacter,
    /// A backslash (a separator on Windows).
    Backslash,
    /// Starts with `/` (after the media URL is removed).
    Absolute,
    /// Starts with a drive prefix such as `c:`.
    DrivePrefix,
    /// A `..` segment.
    ParentComponent,
}

impl MediaPathError {
    /// The short reason given to the client (also its `Display`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing media path",
            Self::NotUtf8 => "media path is not valid UTF-8",
            Self::OutsidePrefix => "media not found",
            Self::MalformedSignedPath => "malformed signed path",
            Self::Empty => "empty media path",
            Self::TooLong => "media path too long",
            Self::ControlCharacter => "media path contains a control character",
            Self::Backslash => "media path contains a backslash",
            Self::Absolute => "absolute media paths are not allowed",
            Self::DrivePrefix => "drive prefixes are not allowed",
            Self::ParentComponent => "'..' is not allowed in media paths",
        }
    }

    /// The status a refusal answers with: `404` for a URI outside the
    /// prefix (no such media), `400` for everything else.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::OutsidePrefix => http::StatusCode::NOT_FOUND,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for MediaPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for MediaPathError {}

/// The longest media path a [`MediaPathSource`] accepts by default, in
/// bytes (after decoding).
pub const DEFAULT_MAX_PATH_LEN: usize = 1024;

/// Checks a decoded path and returns it normalised as `dir/sub/file` (empty
/// and `.` segments dropped); purely lexical (symlinks are the file
/// service's business).
pub(crate) fn normalise(raw: &str, max_len: usize) -> Result<String, MediaPathError> {
    if raw.is_empty() {
        return Err(MediaPathError::Empty);
    }
    if raw.len() > max_len {
        return Err(MediaPathError::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(MediaPathError::ControlCharacter);
    }
    if raw.contains('\\') {
        return Err(MediaPathError::Backslash);
    }
    if raw.starts_with('/') {
        return Err(MediaPathError::Absolute);
    }
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return Err(MediaPathError::ParentComponent),
            _ => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() {
        return Err(MediaPathError::Empty);
    }
    // Judged on the result: `./c:/x` must not become the drive path `c:/x`
    // (found by the `path` fuzz target).
    let bytes = out.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(MediaPathError::DrivePrefix);
    }
    Ok(out)
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
/// `+` is a space, as HTML forms write it), the result must be UTF-8, and
/// it is then normalised: empty and `.` segments are dropped, and `..`,
/// absolute paths, drive prefixes, backslashes, control characters, empty
/// and over-long paths are refused. So `./private/a.mp4`, `.%2Fprivate/a.mp4`
/// and `.//private/a.mp4` all name `private/a.mp4`, for the permission as
/// for the file service. `ServeMedia`, every permission, the watch log and
/// `sage-stream sign` read paths through it, so they cannot disagree.
///
/// ```
/// use http::Uri;
/// use sage_stream::extension::MediaPathSource;
///
/// let by_query = MediaPathSource::query("video");
/// assert_eq!(by_query.decode(&Uri::from_static("/s?video=a%20b.mp4")).unwrap(), "a b.mp4");
/// assert_eq!(by_query.decode(&Uri::from_static("/s?video=.%2F/x/./a.mp4")).unwrap(), "x/a.mp4");
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
/// // The prefix removed, `..` remains and is refused.
/// assert!(django.decode(&Uri::from_static("/s?path=/media/../x")).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPathSource {
    source: Source,
    // With a trailing `/`; removed from the front of decoded paths.
    media_url: Option<String>,
    // URI mode: `_s/EXPIRES/SIGNATURE/` before the path is a signature.
    path_signatures: bool,
    max_len: usize,
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
            max_len: DEFAULT_MAX_PATH_LEN,
        }
    }

    /// The path is the URI path below `prefix` (`/media` or `/media/`: the
    /// same), e.g. `/media/clips/a.mp4` names `clips/a.mp4`.
    pub fn uri_prefix(prefix: impl Into<String>) -> Self {
        Self {
            source: Source::UriPrefix(prefix.into().trim_end_matches('/').to_owned()),
            media_url: None,
            path_signatures: false,
            max_len: DEFAULT_MAX_PATH_LEN,
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

    /// The longest path accepted, in bytes once decoded (default
    /// [`DEFAULT_MAX_PATH_LEN`], 1024); longer ones are refused
    /// ([`MediaPathError::TooLong`]).
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
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

    /// The media path `uri` names: decoded, the media URL removed, and
    /// normalised (see the type's docs).
    pub fn decode(&self, uri: &Uri) -> Result<String, MediaPathError> {
        let path = self.decode_raw(uri)?;
        let path = normalise(self.strip_media_url(&path), self.max_len)?;
        // With path signatures read, a `_s` segment anywhere else (an
        // escaped `%5fs`, after an empty segment, nested) is refused: taken
        // as a directory it would carry a signature into permissions and
        // the watch log.
        if self.reads_path_signatures()
            && path
                .split('/')
                .any(|segment| segment == PATH_SIGNATURE_SEGMENT)
        {
            return Err(MediaPathError::MalformedSignedPath);
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

    /// The media path of a request: the answer an outer layer already gave
    /// (its [`MediaPath`] extension, or the [`MediaPathError`] it refused
    /// with), else decoded from `uri` by this source. A stack built without
    /// the edge layer is so still correct; with it, the edge decides.
    pub fn resolve<'a>(
        &self,
        extensions: &'a Extensions,
        uri: &Uri,
    ) -> Result<Cow<'a, str>, MediaPathError> {
        if let Some(path) = extensions.get::<MediaPath>() {
            return Ok(Cow::Borrowed(path.as_str()));
        }
        if let Some(refusal) = extensions.get::<MediaPathError>() {
            return Err(*refusal);
        }
        self.decode(uri).map(Cow::Owned)
    }

    /// Decodes the path of a request once and stores the answer for the
    /// layers inside: a [`MediaPath`], or the [`MediaPathError`] it was
    /// refused with. An answer already there (an outer layer's) is kept.
    pub fn insert_into<B>(&self, request: &mut http::Request<B>) {
        let extensions = request.extensions();
        if extensions.get::<MediaPath>().is_some() || extensions.get::<MediaPathError>().is_some() {
            return;
        }
        match self.decode(request.uri()) {
            Ok(path) => {
                request.extensions_mut().insert(MediaPath(path));
            }
            Err(refusal) => {
                request.extensions_mut().insert(refusal);
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
    fn normalises_or_refuses() {
        assert_eq!(normalise("a/./b//c.mp4", 100), Ok("a/b/c.mp4".into()));
        assert_eq!(normalise("clip:1.mp4", 100), Ok("clip:1.mp4".into()));
        assert_eq!(normalise("", 100), Err(MediaPathError::Empty));
        assert_eq!(normalise("./", 100), Err(MediaPathError::Empty));
        assert_eq!(
            normalise("a/../b", 100),
            Err(MediaPathError::ParentComponent)
        );
        assert_eq!(normalise("/etc/passwd", 100), Err(MediaPathError::Absolute));
        assert_eq!(normalise("C:/x", 100), Err(MediaPathError::DrivePrefix));
        assert_eq!(normalise("./c:/x", 100), Err(MediaPathError::DrivePrefix));
        assert_eq!(
            normalise(".//r:sentinel", 100),
            Err(MediaPathError::DrivePrefix)
        );
        assert_eq!(normalise("a\\b", 100), Err(MediaPathError::Backslash));
        assert_eq!(
            normalise("a\0b", 100),
            Err(MediaPathError::ControlCharacter)
        );
        assert_eq!(
            normalise(&"a".repeat(101), 100),
            Err(MediaPathError::TooLong)
        );
    }

    /// Issue 20's HIGH defect: every spelling of one file decodes to one
    /// path, so a permission asked about it sees what is served.
    #[test]
    fn every_spelling_of_a_path_decodes_to_one_path() {
        let query = MediaPathSource::query("path").media_url("/media/");
        for target in [
            "/s?path=private/secret.bin",
            "/s?path=./private/secret.bin",
            "/s?path=.%2Fprivate/secret.bin",
            "/s?path=.//private/secret.bin",
            "/s?path=private//./secret.bin",
            "/s?path=%2e/private/secret.bin",
            "/s?path=/media/./private/secret.bin",
            "/s?path=/media/%2e/private/secret.bin",
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(
                query.decode(&uri).as_deref(),
                Ok("private/secret.bin"),
                "{target}"
            );
        }
        let by_uri = MediaPathSource::uri_prefix("/media").path_signatures(true);
        for target in [
            "/media/private/secret.bin",
            "/media/./private/secret.bin",
            "/media/%2e/private/secret.bin",
            "/media/.%2Fprivate/secret.bin",
            "/media/private//secret.bin",
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(
                by_uri.decode(&uri).as_deref(),
                Ok("private/secret.bin"),
                "{target}"
            );
        }
    }

    #[test]
    fn an_outer_answer_wins() {
        let source = MediaPathSource::default();
        let mut request = http::Request::get("/s?path=./a//b.mp4").body(()).unwrap();
        source.insert_into(&mut request);
        assert_eq!(
            request
                .extensions()
                .get::<MediaPath>()
                .map(MediaPath::as_str),
            Some("a/b.mp4")
        );
        // Another source inside reads the edge's answer, not its own rule.
        let other = MediaPathSource::query("video");
        assert_eq!(
            other
                .resolve(request.extensions(), request.uri())
                .as_deref(),
            Ok("a/b.mp4")
        );
        let mut refused = http::Request::get("/s?path=../x").body(()).unwrap();
        source.insert_into(&mut refused);
        assert_eq!(
            refused.extensions().get::<MediaPathError>(),
            Some(&MediaPathError::ParentComponent)
        );
        let lenient = MediaPathSource::query("other");
        assert_eq!(
            lenient.resolve(refused.extensions(), refused.uri()),
            Err(MediaPathError::ParentComponent)
        );
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
        assert_eq!(
            u.decode(&Uri::from_static("/m")),
            Err(MediaPathError::Empty)
        );
        // Below the prefix, a second `/` starts an absolute path.
        assert_eq!(
            u.decode(&Uri::from_static("/m//_s/17/ab/show1/seg0.ts")),
            Err(MediaPathError::Absolute)
        );
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
        assert_eq!(plain.decode(&escaped).as_deref(), Ok("_s/17/ab/x.ts"));
        // ...and with signatures read, `_s` is no directory anywhere: such
        // a path would carry a valid signature into the log.
        for bad in [
            "/m/_s%2F17%2Fab%2Fx.ts",
            "/m/%5fs/17/ab/show1/seg0.ts",
            "/m/./_s/17/ab/show1/seg0.ts",
            "/m/show1/_s/17/ab/seg0.ts",
            "/m/_s/17/ab/show1/_s/17/ab/seg0.ts",
        ] {
            let uri: Uri = bad.parse().unwrap();
            assert_eq!(
                signed.decode(&uri),
                Err(MediaPathError::MalformedSignedPath),
                "{bad}"
            );
        }
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
