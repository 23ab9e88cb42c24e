//! [`PeerAddr`]: the address of the TCP peer.

use std::net::SocketAddr;

use http::Extensions;

/// Request extension: the address of the TCP peer.
///
/// `server::serve` (feature `server`) inserts it; under another server insert
/// it yourself, or (feature `axum`) let [`PeerAddr::of`] read axum's
/// `ConnectInfo<SocketAddr>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The peer address of a request: this extension, or with feature
    /// `axum` the `ConnectInfo<SocketAddr>` that
    /// `into_make_service_with_connect_info` sets, so layers work under
    /// either server.
    pub fn of(extensions: &Extensions) -> Option<SocketAddr> {
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(*addr);
        }
        connect_info(extensions)
    }
}

#[cfg(feature = "axum")]
fn connect_info(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(not(feature = "axum"))]
fn connect_info(_: &Extensions) -> Option<SocketAddr> {
    None
}
