//! Reading one variable out of a URI query string.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// The value of the first `name=value` pair in `query`, with `+` read as a
/// space and percent-escapes decoded exactly once (as HTML forms encode them).
///
/// Returns `None` when the variable is absent, and `Some(Err(()))` when its
/// value is not valid UTF-8 after decoding, so callers can refuse it rather
/// than guess.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<Result<String, ()>> {
    let query = query?;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(key).ok().as_deref() == Some(name) {
            return Some(decode_component(value));
        }
    }
    None
}

fn decode_component(raw: &str) -> Result<String, ()> {
    let plus_as_space: Cow<'_, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn finds_and_decodes_once() {
        assert_eq!(
            query_value(Some("a=1&path=x%2Fy.mp4"), "path"),
            Some(Ok("x/y.mp4".into()))
        );
        assert_eq!(
            query_value(Some("path=%252e%252e"), "path"),
            Some(Ok("%2e%2e".into()))
        );
        assert_eq!(
            query_value(Some("path=a+b"), "path"),
            Some(Ok("a b".into()))
        );
        assert_eq!(query_value(Some("path"), "path"), Some(Ok(String::new())));
        assert_eq!(query_value(Some("other=1"), "path"), None);
        assert_eq!(query_value(None, "path"), None);
        assert_eq!(query_value(Some("path=%ff"), "path"), Some(Err(())));
    }
}
