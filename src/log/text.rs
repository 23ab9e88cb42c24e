//! [`LogText`]: the text of a watch-log field.

use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// The text of a [`WatchRecord`](super::WatchRecord) field: a string that
/// keeps up to 24 bytes (a path, an IP, the method, a `Range` header) inside
/// the record, so a request allocates for its long fields only and the
/// writer thread frees few blocks another thread allocated.
///
/// Read it as `&str` (it derefs to `str`, and has [`LogText::as_str`]);
/// build it with `.into()` from a `&str` or a `String`. Its representation
/// is private, so the crate can change it without breaking yours.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogText(CompactString);

impl LogText {
    /// The most bytes the watch log keeps of a media path or a user id
    /// (headers are cut to [`WatchLogLayer::max_field_len`](super::WatchLogLayer::max_field_len)).
    pub const MAX_PATH_BYTES: usize = super::service::MAX_PATH_LEN;

    /// `text` as the watch log stores it: cut to at most `max_bytes` on a
    /// character boundary, each NUL replaced by U+FFFD (PostgreSQL refuses
    /// NUL in text). For rows made elsewhere (an import, your own sink
    /// calls), so they are bounded as the layer's own are.
    ///
    /// ```
    /// use sage_stream::log::LogText;
    ///
    /// let path = "x".repeat(5 << 20);
    /// assert_eq!(LogText::bounded(&path, LogText::MAX_PATH_BYTES).len(), 1024);
    /// assert_eq!(LogText::bounded("a\0é", 3), "a\u{fffd}");
    /// ```
    pub fn bounded(text: &str, max_bytes: usize) -> Self {
        Self(super::service::truncate(text, max_bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_compact(text: CompactString) -> Self {
        Self(text)
    }
}

impl Deref for LogText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for LogText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for LogText {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for LogText {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl From<String> for LogText {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<LogText> for String {
    fn from(text: LogText) -> Self {
        text.0.into()
    }
}

impl PartialEq<str> for LogText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for LogText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for LogText {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_str()
    }
}

impl fmt::Debug for LogText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for LogText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ip` as text, as `Display` writes it; IPv4 (nearly every request) is
/// written digit by digit, a tenth of the formatter's work.
pub(crate) fn ip_text(ip: IpAddr) -> CompactString {
    let IpAddr::V4(v4) = ip else {
        return compact_str::format_compact!("{ip}");
    };
    // At most 15 bytes: always inside the CompactString, never allocated.
    let mut text = CompactString::const_new("");
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_writes_what_display_writes() {
        let mut ips: Vec<IpAddr> = ["::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        // Every octet value in every position, and the widths around 10 and 100.
        for n in 0..=255u8 {
            ips.push(IpAddr::from([
                n,
                255 - n,
                n.wrapping_add(128),
                n.wrapping_mul(7),
            ]));
        }
        ips.push(IpAddr::from([0, 9, 10, 99]));
        ips.push(IpAddr::from([100, 199, 200, 255]));
        for ip in ips {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
