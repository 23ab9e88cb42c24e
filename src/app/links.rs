//! Where the app's pages are for this request: every link and redirect the
//! pages print is made here, so that they stay right when the app is
//! nested in another router.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, NestedPath};
use axum::http::request::Parts;

use super::AppState;

/// The mount prefix of this request joined to the app's own routes.
///
/// axum's `Router::nest` strips its prefix from the URI the app sees and
/// records it as [`NestedPath`]; links are absolute paths under that
/// prefix, so they are right whether the page was asked for as `/video` or
/// `/video/` (or not nested at all).
#[derive(Clone, Debug)]
pub(crate) struct Links {
    /// `""` when not nested, else what the app is nested at (`/video`).
    prefix: String,
    player: Option<String>,
    admin: bool,
}

impl Links {
    /// A route of the app (`/admin/`) as seen from outside; joined as axum
    /// joins nested routes, so `/` under `/video` is `/video`.
    pub(crate) fn at(&self, route: &str) -> String {
        if self.prefix.is_empty() {
            route.to_owned()
        } else if self.prefix.ends_with('/') {
            format!("{}{}", self.prefix, route.trim_start_matches('/'))
        } else if route == "/" {
            self.prefix.clone()
        } else {
            format!("{}{route}", self.prefix)
        }
    }

    /// The player page, when there is one.
    pub(crate) fn player(&self) -> Option<String> {
        self.player.as_deref().map(|route| self.at(route))
    }

    /// The player page with this (already encoded) query.
    pub(crate) fn player_with(&self, query: &str) -> Option<String> {
        self.player().map(|page| format!("{page}?{query}"))
    }

    /// An admin page, `""` for the list; `None` when the admin is off.
    pub(crate) fn admin(&self, page: &str) -> Option<String> {
        self.admin.then(|| self.at(&format!("/admin/{page}")))
    }
}

impl FromRequestParts<Arc<AppState>> for Links {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            prefix: parts
                .extensions
                .get::<NestedPath>()
                .map(|nested| nested.as_str().to_owned())
                .unwrap_or_default(),
            player: state.player_path.clone(),
            admin: state.admin_token.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(prefix: &str, player: Option<&str>) -> Links {
        Links {
            prefix: prefix.into(),
            player: player.map(Into::into),
            admin: true,
        }
    }

    #[test]
    fn routes_are_joined_as_axum_nests_them() {
        let top = links("", Some("/"));
        assert_eq!(top.player().as_deref(), Some("/"));
        assert_eq!(top.at("/api/stream").as_str(), "/api/stream");
        assert_eq!(top.admin("").as_deref(), Some("/admin/"));

        let nested = links("/video", Some("/"));
        assert_eq!(nested.player().as_deref(), Some("/video"));
        assert_eq!(
            nested.player_with("page=2").as_deref(),
            Some("/video?page=2")
        );
        assert_eq!(nested.at("/api/stream"), "/video/api/stream");
        assert_eq!(
            nested.admin("analytics").as_deref(),
            Some("/video/admin/analytics")
        );

        let slashed = links("/video/", Some("/watch"));
        assert_eq!(slashed.player().as_deref(), Some("/video/watch"));
        assert_eq!(slashed.admin("").as_deref(), Some("/video/admin/"));

        assert_eq!(links("/video", None).player(), None);
    }
}
