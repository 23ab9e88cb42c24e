//! `Content-Type` by file extension: the streaming formats players need
//! exactly, then overrides, then `mime_guess`.

use std::collections::HashMap;

use http::HeaderValue;

/// The types players check, which `mime_guess` gets wrong or lacks (it says
/// `audio/x-mpegurl` for `.m3u8`, `video/vnd.dlna.mpeg-tts` for `.ts`,
/// nothing for `.m4s`). Used unless overridden.
pub const STREAMING_TYPES: [(&str, &str); 5] = [
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("ts", "video/mp2t"),
    ("m4s", "video/iso.segment"),
    ("mpd", "application/dash+xml"),
    ("vtt", "text/vtt"),
];

/// For files with no known type.
const FALLBACK: &str = "application/octet-stream";

/// Overrides by lower-case extension; the built-in table and `mime_guess`
/// answer the rest.
#[derive(Clone, Debug, Default)]
pub(crate) struct MimeTypes {
    overrides: HashMap<String, HeaderValue>,
}

impl MimeTypes {
    /// Adds or replaces the type of one extension (already checked).
    pub(crate) fn insert(&mut self, extension: String, content_type: HeaderValue) {
        self.overrides.insert(extension, content_type);
    }

    /// The `Content-Type` of `path` (a normalised media path).
    pub(crate) fn content_type(&self, path: &str) -> HeaderValue {
        let name = path.rsplit('/').next().unwrap_or(path);
        let Some((_, ext)) = name.rsplit_once('.') else {
            return HeaderValue::from_static(FALLBACK);
        };
        let ext = ext.to_ascii_lowercase();
        if let Some(value) = self.overrides.get(&ext) {
            return value.clone();
        }
        if let Some((_, ty)) = STREAMING_TYPES.iter().find(|(e, _)| *e == ext) {
            return HeaderValue::from_static(ty);
        }
        mime_guess::from_ext(&ext)
            .first_raw()
            .map_or(HeaderValue::from_static(FALLBACK), HeaderValue::from_static)
    }
}

/// Checks one `EXT=TYPE` override: the extension without its dot (a leading
/// `.` is dropped) and lower-cased; the type a `type/subtype` with optional
/// parameters that fits in a header. The error is a short reason.
pub(crate) fn parse_override(
    extension: &str,
    content_type: &str,
) -> Result<(String, HeaderValue), &'static str> {
    let extension = extension.trim();
    let extension = extension.strip_prefix('.').unwrap_or(extension);
    if extension.is_empty()
        || !extension
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("the extension must be letters, digits, '-' or '_' (e.g. m3u8)");
    }
    let content_type = content_type.trim();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let valid_token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    match essence.split_once('/') {
        Some((ty, sub)) if valid_token(ty) && valid_token(sub) => {}
        _ => return Err("the type must be type/subtype, e.g. application/vnd.apple.mpegurl"),
    }
    let value = HeaderValue::from_str(content_type)
        .map_err(|_| "the type must be printable ASCII, fit for a header")?;
    Ok((extension.to_ascii_lowercase(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_types_then_guesses_then_the_fallback() {
        let types = MimeTypes::default();
        for (path, expected) in [
            ("show1/index.m3u8", "application/vnd.apple.mpegurl"),
            ("show1/seg0.ts", "video/mp2t"),
            ("dash/chunk-1.m4s", "video/iso.segment"),
            ("dash/manifest.mpd", "application/dash+xml"),
            ("subs/en.vtt", "text/vtt"),
            ("SHOUT.M3U8", "application/vnd.apple.mpegurl"),
            ("clip.mp4", "video/mp4"),
            ("clip.webm", "video/webm"),
            ("no-extension", "application/octet-stream"),
            ("dir.d/no-extension", "application/octet-stream"),
            ("x.unknownext", "application/octet-stream"),
        ] {
            assert_eq!(types.content_type(path), expected, "{path}");
        }
    }

    #[test]
    fn overrides_win_and_are_checked() {
        let mut types = MimeTypes::default();
        let (ext, ty) = parse_override(".M3U8", "application/x-mpegURL").unwrap();
        assert_eq!(ext, "m3u8");
        types.insert(ext, ty);
        let (ext, ty) = parse_override("mp4", "video/mp4; codecs=avc1").unwrap();
        types.insert(ext, ty);
        assert_eq!(types.content_type("a/b.m3u8"), "application/x-mpegURL");
        assert_eq!(types.content_type("b.MP4"), "video/mp4; codecs=avc1");
        assert_eq!(types.content_type("b.ts"), "video/mp2t");
        for (ext, ty) in [
            ("", "video/mp4"),
            ("a/b", "video/mp4"),
            ("m3u8", "mpegurl"),
            ("m3u8", "/x"),
            ("m3u8", "video/mp4; x=\u{1}"),
            ("m3u8", "vidéo/mp4"),
        ] {
            assert!(parse_override(ext, ty).is_err(), "{ext}={ty}");
        }
    }
}
