//! The client's IP: the peer address, or a forwarded one when the peer is a
//! trusted proxy.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::{header, Extensions, HeaderMap};

use super::PeerAddr;

/// Request extension: the client's IP after the trusted-proxy walk, with an
/// IPv4-mapped IPv6 address folded to IPv4.
///
/// Worked out once, at the edge, by
/// [`ResolveClientIpLayer`](crate::client_ip::ResolveClientIpLayer) (the
/// one place trusted proxies are configured); the watch log, the stream
/// limit and the metrics read it with [`ClientIp::of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Request extension: the edge layer looked and found no client IP it
/// believes (a trusted proxy forwarded an unparsable value). Readers then
/// record none, rather than fall back to the proxy's own address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIpUnknown;

impl ClientIp {
    /// The client IP a request counts as, for layers that only read it:
    /// the [`ClientIp`] the edge layer set; `None` when that layer found
    /// none it believes; without the edge layer, the peer address
    /// ([`PeerAddr::of`]), never a forwarded header (nothing configured
    /// here says whom to believe).
    ///
    /// ```
    /// use http::Extensions;
    /// use sage_stream::extension::{ClientIp, PeerAddr};
    ///
    /// let mut ext = Extensions::new();
    /// ext.insert(PeerAddr("[::ffff:192.0.2.1]:5000".parse().unwrap()));
    /// assert_eq!(ClientIp::of(&ext), Some("192.0.2.1".parse().unwrap()));
    /// ext.insert(ClientIp("198.51.100.7".parse().unwrap()));
    /// assert_eq!(ClientIp::of(&ext), Some("198.51.100.7".parse().unwrap()));
    /// ```
    pub fn of(extensions: &Extensions) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        if extensions.get::<ClientIpUnknown>().is_some() {
            return None;
        }
        PeerAddr::of(extensions).map(|peer| canonical(peer.ip()))
    }

    /// Works the client IP out once and stores the answer for the layers
    /// inside ([`ClientIp`], or that none is believed); an answer already
    /// there (an outer edge layer's) is kept.
    pub(crate) fn insert_into<B>(request: &mut http::Request<B>, trusted: &[IpNet]) {
        let extensions = request.extensions();
        if extensions.get::<ClientIp>().is_some() || extensions.get::<ClientIpUnknown>().is_some() {
            return;
        }
        match client_ip(PeerAddr::of(extensions), request.headers(), trusted) {
            Some(ip) => request.extensions_mut().insert(ClientIp(ip)).map(drop),
            None => request.extensions_mut().insert(ClientIpUnknown).map(drop),
        };
    }

    /// The client IP of a request: this extension if a layer set it, else
    /// the peer ([`PeerAddr::of`]) unless it is one of `trusted`, in which
    /// case the right-most untrusted address of `Forwarded` (or else
    /// `X-Forwarded-For`). An unparsable forwarded value gives `None`, never
    /// a guess.
    pub fn resolve(
        extensions: &Extensions,
        headers: &HeaderMap,
        trusted: &[IpNet],
    ) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        client_ip(PeerAddr::of(extensions), headers, trusted)
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare IP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why a text is not an [`IpNet`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {text:?}: expected an IP or CIDR such as 10.0.0.0/8")]
pub struct InvalidIpNet {
    text: String,
}

impl FromStr for IpNet {
    type Err = InvalidIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| InvalidIpNet { text: s.to_owned() })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| InvalidIpNet { text: s.to_owned() })?,
        };
        Ok(Self {
            addr: canonical(addr),
            prefix,
        })
    }
}

/// `ip` with the host part zeroed, for storing without identifying a
/// subscriber: the last octet of IPv4 (a /24 stays) and the last 80 bits of
/// IPv6 (a /48, one site, stays). An IPv4-mapped IPv6 address is treated,
/// and returned, as IPv4.
///
/// The watch log applies it when asked (`WatchLogLayer::anonymize_ip`,
/// feature `log`); the [`ClientIp`] extension keeps the full address, in
/// memory only, for the stream limit.
///
/// ```
/// use std::net::IpAddr;
/// use sage_stream::extension::anonymize_ip;
///
/// let ip = |text: &str| text.parse::<IpAddr>().unwrap();
/// assert_eq!(anonymize_ip(ip("192.0.2.123")), ip("192.0.2.0"));
/// assert_eq!(anonymize_ip(ip("2001:db8:85a3:8d3:1319:8a2e:370:7348")), ip("2001:db8:85a3::"));
/// assert_eq!(anonymize_ip(ip("::ffff:192.0.2.123")), ip("192.0.2.0"));
/// ```
pub fn anonymize_ip(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 48))),
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client IP: `peer` itself unless it is trusted, in which case the
/// right-most untrusted address of `Forwarded` (or else `X-Forwarded-For`).
/// An unparsable forwarded value gives `None`, never a guess.
fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !trusted.iter().any(|net| net.contains(peer)) {
        return Some(peer);
    }
    // A trusted peer that forwards nothing is itself the client (a health
    // check from the proxy host, say).
    let Some(hops) = forwarded_for(headers).or_else(|| x_forwarded_for(headers)) else {
        return Some(peer);
    };
    // Walk from the proxy nearest to us outwards; the first untrusted hop is
    // the client. Any invalid hop ends the walk with no answer.
    for hop in hops.iter().rev() {
        let ip = canonical((*hop)?);
        if !trusted.iter().any(|net| net.contains(ip)) {
            return Some(ip);
        }
    }
    hops.first().copied().flatten()
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value.to_str().ok()?;
        hops.extend(value.split(',').map(|h| parse_node(h.trim())));
    }
    (!hops.is_empty()).then_some(hops)
}

fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            for pair in element.split(';') {
                if let Some((key, node)) = pair.trim().split_once('=') {
                    if key.trim().eq_ignore_ascii_case("for") {
                        hops.push(parse_node(node.trim().trim_matches('"')));
                    }
                }
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`, `::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn anonymized_addresses_keep_the_network_only() {
        for (ip, anonymized) in [
            ("192.0.2.123", "192.0.2.0"),
            ("10.0.0.0", "10.0.0.0"),
            ("255.255.255.255", "255.255.255.0"),
            ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
            ("2001:db8:85a3:ffff:ffff:ffff:ffff:ffff", "2001:db8:85a3::"),
            ("::1", "::"),
            ("::ffff:192.0.2.123", "192.0.2.0"),
            // IPv4-compatible (not mapped) addresses are plain IPv6.
            ("::192.0.2.123", "::"),
        ] {
            let got = anonymize_ip(ip.parse().unwrap());
            assert_eq!(got, anonymized.parse::<IpAddr>().unwrap(), "{ip}");
            assert_eq!(anonymize_ip(got), got, "idempotent: {ip}");
        }
    }

    fn ip(peer: &str, headers: &[(&str, &str)], trusted: &[&str]) -> Option<String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_ip(Some(peer.parse().unwrap()), &map, &trusted).map(|i| i.to_string())
    }

    #[test]
    fn forwarded_only_from_trusted_proxies() {
        let xff = [("x-forwarded-for", "203.0.113.9, 10.0.0.2")];
        assert_eq!(
            ip("198.51.100.1:5", &xff, &["10.0.0.0/8"]).as_deref(),
            Some("198.51.100.1")
        );
        assert_eq!(
            ip("10.0.0.1:5", &xff, &["10.0.0.0/8"]).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            ip(
                "10.0.0.1:5",
                &[("x-forwarded-for", "garbage")],
                &["10.0.0.0/8"]
            ),
            None
        );
        assert_eq!(
            ip(
                "10.0.0.1:5",
                &[("x-forwarded-for", "1.1.1.1, garbage")],
                &["10.0.0.0/8"]
            ),
            None
        );
        assert_eq!(
            ip("10.0.0.1:5", &[], &["10.0.0.0/8"]).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            ip(
                "[::1]:5",
                &[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")],
                &["::1"]
            )
            .as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            ip(
                "127.0.0.1:5",
                &[("forwarded", "for=192.0.2.60")],
                &["127.0.0.1"]
            )
            .as_deref(),
            Some("192.0.2.60")
        );
        assert_eq!(
            ip("[::ffff:127.0.0.1]:5", &[], &[]).as_deref(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn networks() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains("192.168.4.4".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!("0.0.0.0/0"
            .parse::<IpNet>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }
}
