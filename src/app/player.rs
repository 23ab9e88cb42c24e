//! The player page at `/`: the media under the root, paged, and a `<video>`
//! playing the chosen file from the stream endpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::html::{enc, esc, human_bytes, page};
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
    Query(query): Query<PlayerQuery>,
) -> Html<String> {
    let root = state.root.clone();
    let files = tokio::task::spawn_blocking(move || list_media(&root))
        .await
        .unwrap_or_default();
    let pages = files.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = query
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let token_query = query
        .access_token
        .as_deref()
        .map(|t| format!("&access_token={}", enc(t)))
        .unwrap_or_default();

    let mut body = String::new();
    if let Some(play) = query
        .play
        .as_deref()
        .filter(|p| files.iter().any(|(f, _)| f == p))
    {
        let src = match &state.signer {
            Some(signer) => signer.signed_link("/api/stream", play, Duration::from_secs(6 * 3600)),
            None => format!("/api/stream?{}={}", enc(&state.path_var), enc(play)),
        };
        body.push_str(&format!(
            "<h1>{title}</h1><video id=\"player\" controls preload=\"metadata\" src=\"{src}{token}\"></video>\
             <p class=\"muted\">Space plays and pauses; arrow keys seek. \
             <a href=\"{src}{token}\">Direct link</a></p>",
            title = esc(play),
            src = esc(&src),
            token = esc(&token_query),
        ));
    } else {
        body.push_str("<h1>Media</h1><p class=\"muted\">Choose a file to play.</p>");
    }
    body.push_str(&format!(
        "<h2>Files ({})</h2><ul class=\"files\">",
        files.len()
    ));
    for (path, size) in files.iter().skip((page_no - 1) * PAGE_SIZE).take(PAGE_SIZE) {
        body.push_str(&format!(
            "<li><a href=\"/?play={href}&page={page_no}{token}\">{name}</a> <span class=\"muted\">{size}</span></li>",
            href = esc(&enc(path)),
            name = esc(path),
            size = human_bytes(*size),
            token = esc(&token_query),
        ));
    }
    body.push_str("</ul><nav class=\"pager\">");
    if page_no > 1 {
        body.push_str(&format!(
            "<a href=\"/?page={}{}\">← previous</a>",
            page_no - 1,
            esc(&token_query)
        ));
    }
    body.push_str(&format!(
        "<span class=\"muted\">page {page_no} of {pages}</span>"
    ));
    if page_no < pages {
        body.push_str(&format!(
            "<a href=\"/?page={}{}\">next →</a>",
            page_no + 1,
            esc(&token_query)
        ));
    }
    body.push_str("</nav>");
    let nav = if state.admin_token.is_some() {
        "<a href=\"/\">Player</a><a href=\"/admin/\">Admin</a>"
    } else {
        "<a href=\"/\">Player</a>"
    };
    Html(page("Player", nav, &body))
}
