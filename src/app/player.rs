//! The player page (at `/` unless [`AppConfig::player_path`] says
//! otherwise): the media under the root, paged, and a `<video>` playing the
//! chosen file from the stream endpoint.
//!
//! [`AppConfig::player_path`]: super::AppConfig::player_path

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::error::AppError;
use super::links::Links;
use super::templates::{enc, human_bytes, nav, page};
use super::AppState;

const PAGE_SIZE: usize = 50;
const MAX_FILES: usize = 10_000;
const MAX_DEPTH: usize = 8;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PlayerQuery {
    play: Option<String>,
    page: Option<String>,
    access_token: Option<String>,
}

/// Relative paths and sizes of the files below `root` (hidden ones
/// skipped), sorted, bounded in count and depth.
pub(crate) fn list_media(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() && depth < MAX_DEPTH {
                stack.push((entry.path(), rel, depth + 1));
            } else if kind.is_file() {
                out.push((rel, entry.metadata().map_or(0, |m| m.len())));
                if out.len() >= MAX_FILES {
                    break;
                }
            }
        }
    }
    out.sort();
    out
}

pub(crate) async fn player(
    State(state): State<Arc<AppState>>,
    links: Links,
    Query(query): Query<PlayerQuery>,
) -> Result<Markup, AppError> {
    let root = state.root.clone();
    let files = tokio::task::spawn_blocking(move || list_media(&root))
        .await
        .map_err(AppError::Internal)?;
    let pages = files.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = match query.page.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| AppError::bad("page must be a whole number"))?
            .clamp(1, pages),
    };
    // Carried into every link so that a viewer who came with a token keeps it.
    let token = query
        .access_token
        .as_deref()
        .map(|t| format!("&access_token={}", enc(t)))
        .unwrap_or_default();
    // Only files from the listing are offered: nothing outside the root.
    let playing = match query.play.as_deref() {
        None => None,
        Some(play) => Some(
            files
                .iter()
                .map(|(f, _)| f.as_str())
                .find(|f| *f == play)
                .ok_or(AppError::NotFound)?,
        ),
    };
    // The endpoint's own media-path rule builds the link, so the player
    // names the path where the endpoint (and the signer) read it.
    let stream_src = |play: &str| {
        let mount = links.at("/api/stream");
        let link = match &state.signer {
            Some(signer) => signer.signed_link(&mount, play, Duration::from_secs(6 * 3600)),
            None => state.media_path.link(&mount, play, ""),
        };
        format!("{link}{token}")
    };
    let here = |query: String| links.player_with(&query).unwrap_or_default();
    let body = html! {
        @if let Some(play) = playing {
            @let src = stream_src(play);
            h1 { (play) }
            video id="player" controls preload="metadata" src=(src) {}
            p class="muted" {
                "Space plays and pauses; arrow keys seek. "
                a href=(src) { "Direct link" }
            }
        } @else {
            h1 { "Media" }
            p class="muted" { "Choose a file to play." }
        }
        h2 { "Files (" (files.len()) ")" }
        ul class="files" {
            @for (path, size) in files.iter().skip((page_no - 1) * PAGE_SIZE).take(PAGE_SIZE) {
                li {
                    a href=(here(format!("play={}&page={page_no}{token}", enc(path)))) { (path) }
                    " "
                    span class="muted" { (human_bytes(*size)) }
                }
            }
        }
        nav class="pager" {
            @if page_no > 1 {
                a href=(here(format!("page={}{token}", page_no - 1))) { "← previous" }
            }
            span class="muted" { "page " (page_no) " of " (pages) }
            @if page_no < pages {
                a href=(here(format!("page={}{token}", page_no + 1))) { "next →" }
            }
        }
    };
    Ok(page("Player", nav(&links, false), body))
}
