//! The admin under `/admin/`: the watch-log list with filters, search,
//! keyset pagination and exports, and analytics (per-video totals, views
//! per day, viewing sessions). Off unless an admin token is configured.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use chrono::NaiveDate;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::html::{day_chart, enc, esc, human_bytes, page};
use super::AppState;
use crate::log::analytics::sessions;
use crate::log::export::{to_csv, to_json};
use crate::log::{Cursor, LogFilter, StoreError, WatchLogEntry};

const PAGE_SIZE: usize = 50;
const EXPORT_LIMIT: usize = 1_000_000;
const SESSION_ROWS: usize = 5_000;

const NAV: &str = "<a href=\"/\">Player</a><a href=\"/admin/\">Watch log</a><a href=\"/admin/analytics\">Analytics</a>";

/// Lets a request through when it carries the admin token as a bearer token
/// or as the Basic-auth password; anything else gets 401 with a Basic
/// challenge, so browsers prompt.
pub(crate) async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.as_deref() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if presented_token(request.headers())
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())))
    {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "admin token required").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sage-stream admin\", charset=\"UTF-8\""),
    );
    response
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// Query parameters of the admin pages; all optional, all text so that a
/// bad value gets a clear 400 instead of a deserialisation error.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AdminQuery {
    q: Option<String>,
    authenticated: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    path: Option<String>,
    user: Option<String>,
    ip: Option<String>,
    after: Option<String>,
    gap: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Why an admin request failed; rendered as a short plain-text answer.
#[derive(Debug)]
pub(crate) enum AdminError {
    BadRequest(String),
    Unavailable,
    Internal,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "watch log database unavailable",
            )
                .into_response(),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
        }
    }
}

fn bad(reason: &str) -> AdminError {
    AdminError::BadRequest(reason.to_owned())
}

impl AdminQuery {
    fn filter(&self) -> Result<LogFilter, AdminError> {
        let date = |v: &Option<String>, name: &str| -> Result<Option<NaiveDate>, AdminError> {
            non_empty(v)
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|_| bad(&format!("{name} must be a date like 2026-11-24")))
                })
                .transpose()
        };
        Ok(LogFilter {
            path: non_empty(&self.path).map(str::to_owned),
            user_id: non_empty(&self.user).map(str::to_owned),
            ip: non_empty(&self.ip).map(str::to_owned),
            search: non_empty(&self.q).map(str::to_owned),
            authenticated: match non_empty(&self.authenticated) {
                None => None,
                Some("yes") => Some(true),
                Some("no") => Some(false),
                Some(_) => return Err(bad("authenticated must be yes or no")),
            },
            status: non_empty(&self.status)
                .map(|s| {
                    s.parse::<i32>()
                        .ok()
                        .filter(|s| (100..600).contains(s))
                        .ok_or_else(|| bad("status must be an HTTP status code"))
                })
                .transpose()?,
            since: date(&self.since, "since")?.map(|d| d.and_time(chrono::NaiveTime::MIN)),
            // Inclusive end day.
            until: date(&self.until, "until")?
                .map(|d| (d + chrono::Duration::days(1)).and_time(chrono::NaiveTime::MIN)),
        })
    }

    /// The filter part of the query string, to carry into links.
    fn filter_query(&self) -> String {
        let pairs = [
            ("q", &self.q),
            ("authenticated", &self.authenticated),
            ("status", &self.status),
            ("since", &self.since),
            ("until", &self.until),
            ("path", &self.path),
            ("user", &self.user),
            ("ip", &self.ip),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| non_empty(v).map(|v| format!("{k}={}", enc(v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            tracing::warn!(%err, "admin query failed");
            Err(AdminError::Unavailable)
        }
        Err(_) => Err(AdminError::Internal),
    }
}

fn selected(value: &Option<String>, option: &str) -> &'static str {
    if non_empty(value) == Some(option) {
        " selected"
    } else {
        ""
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(err) => return err.into_response(),
    };
    let after = match non_empty(&query.after) {
        None => None,
        Some(text) => match Cursor::decode(text) {
            Some(cursor) => Some(cursor),
            None => return bad("after is not a valid cursor").into_response(),
        },
    };
    let store = Arc::clone(&state.store);
    let result = blocking(move || {
        let page = store.query(&filter, after, PAGE_SIZE)?;
        let total = store.count(&filter)?;
        Ok((page, total))
    })
    .await;
    let (page, total) = match result {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let fq = query.filter_query();
    let v = |o: &Option<String>| esc(non_empty(o).unwrap_or(""));
    let mut body = format!(
        "<h1>Watch log</h1>\
         <form class=\"filters\" method=\"get\" action=\"/admin/\">\
         <input type=\"search\" name=\"q\" placeholder=\"Search path, user or IP\" value=\"{q}\" aria-label=\"search\">\
         <select name=\"authenticated\" aria-label=\"authenticated\"><option value=\"\">Any viewer</option>\
         <option value=\"yes\"{ay}>Authenticated</option><option value=\"no\"{an}>Anonymous</option></select>\
         <input name=\"status\" placeholder=\"Status\" size=\"6\" value=\"{status}\" aria-label=\"status\">\
         <label>From <input type=\"date\" name=\"since\" value=\"{since}\"></label>\
         <label>to <input type=\"date\" name=\"until\" value=\"{until}\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/admin/\">Reset</a></form>\
         <p>{total} matching rows · export <a id=\"export-csv\" href=\"/admin/export.csv?{fq}\">CSV</a> · \
         <a id=\"export-json\" href=\"/admin/export.json?{fq}\">JSON</a></p>",
        q = v(&query.q),
        ay = selected(&query.authenticated, "yes"),
        an = selected(&query.authenticated, "no"),
        status = v(&query.status),
        since = v(&query.since),
        until = v(&query.until),
        fq = esc(&fq),
    );
    body.push_str(&entries_table(&page.entries));
    body.push_str("<nav class=\"pager\">");
    if after.is_some() {
        body.push_str(&format!("<a href=\"/admin/?{}\">← newest</a>", esc(&fq)));
    }
    if let Some(next) = page.next {
        let sep = if fq.is_empty() { "" } else { "&" };
        body.push_str(&format!(
            "<a id=\"older\" href=\"/admin/?{}{sep}after={}\">older →</a>",
            esc(&fq),
            enc(&next.encode())
        ));
    }
    body.push_str("</nav>");
    Html(page_html("Watch log", &body)).into_response()
}

fn page_html(title: &str, body: &str) -> String {
    page(title, NAV, body)
}

fn entries_table(entries: &[WatchLogEntry]) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"log\"><thead><tr><th>Created (UTC)</th><th>Path</th><th>User</th>\
         <th>Authenticated</th><th>IP</th><th class=\"num\">Status</th><th>Range</th><th class=\"num\">Bytes sent</th>\
         <th>Completed</th></tr></thead><tbody>",
    );
    for e in entries {
        out.push_str(&format!(
            "<tr><td>{created}</td><td>{path}</td><td>{user}</td><td>{auth}</td><td>{ip}</td>\
             <td class=\"num\">{status}</td><td>{range}</td><td class=\"num\">{bytes}</td><td>{done}</td></tr>",
            created = e.created_at.format("%Y-%m-%d %H:%M:%S"),
            path = esc(&e.path),
            user = esc(e.user_id.as_deref().unwrap_or("—")),
            auth = if e.is_authenticated { "yes" } else { "no" },
            ip = esc(e.ip.as_deref().unwrap_or("—")),
            status = e.status,
            range = esc(e.range_header.as_deref().unwrap_or("—")),
            bytes = e.bytes_sent,
            done = if e.completed { "yes" } else { "no" },
        ));
    }
    if entries.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"muted\">No rows.</td></tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

async fn export_rows(
    state: &AppState,
    query: &AdminQuery,
) -> Result<Vec<WatchLogEntry>, AdminError> {
    let filter = query.filter()?;
    let store = Arc::clone(&state.store);
    blocking(move || {
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = store.query(&filter, after, 5_000)?;
            rows.extend(page.entries);
            match page.next {
                Some(next) if rows.len() < EXPORT_LIMIT => after = Some(next),
                _ => break,
            }
        }
        Ok(rows)
    })
    .await
}

/// The filtered rows as a download in one of the export formats.
async fn export(
    state: &AppState,
    query: &AdminQuery,
    content_type: &'static str,
    disposition: &'static str,
    render: fn(&[WatchLogEntry]) -> String,
) -> Response {
    match export_rows(state, query).await {
        Ok(rows) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            render(&rows),
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

pub(crate) async fn export_csv(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Response {
    let disposition = "attachment; filename=\"watch-log.csv\"";
    export(
        &state,
        &query,
        "text/csv; charset=utf-8",
        disposition,
        to_csv,
    )
    .await
}

pub(crate) async fn export_json(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Response {
    let disposition = "attachment; filename=\"watch-log.json\"";
    export(&state, &query, "application/json", disposition, to_json).await
}

pub(crate) async fn analytics(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(err) => return err.into_response(),
    };
    let gap_minutes = match non_empty(&query.gap) {
        None => state.session_gap_minutes,
        Some(g) => match g.parse::<u32>() {
            Ok(g) if (1..=1440).contains(&g) => g,
            _ => return bad("gap must be whole minutes between 1 and 1440").into_response(),
        },
    };
    let store = Arc::clone(&state.store);
    let root = state.root.clone();
    let result = blocking(move || {
        let stats = store.path_stats(&filter, 100)?;
        let days = store.views_per_day(&filter)?;
        let recent = store.query(&filter, None, SESSION_ROWS)?.entries;
        let sessions = sessions(
            &recent,
            chrono::Duration::minutes(i64::from(gap_minutes)),
            |path| {
                // Only files under the root; the log's paths are relative.
                crate::media::file_len_under(&root, path)
            },
        );
        Ok((stats, days, sessions))
    })
    .await;
    let (stats, days, sessions) = match result {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let mut body = String::from("<h1>Analytics</h1><h2>Views per day</h2>");
    body.push_str(&day_chart(&days, chrono::Utc::now().date_naive()));
    body.push_str(
        "<h2>Per video</h2><div class=\"scroll\"><table id=\"videos\"><thead><tr><th>Path</th><th class=\"num\">Views</th>\
         <th class=\"num\">Unique viewers</th><th class=\"num\">Bytes sent</th></tr></thead><tbody>",
    );
    for s in &stats {
        body.push_str(&format!(
            "<tr><td><a href=\"/admin/?path={href}\">{path}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            s.views,
            s.unique_viewers,
            human_bytes(u64::try_from(s.bytes_sent).unwrap_or(0)),
            href = esc(&enc(&s.path)),
            path = esc(&s.path),
        ));
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&format!(
        "<h2>Viewing sessions</h2><form class=\"filters\" method=\"get\"><label>A pause longer than \
         <input name=\"gap\" size=\"4\" value=\"{gap_minutes}\"> minutes starts a new session</label>\
         <button type=\"submit\">Apply</button></form>\
         <div class=\"scroll\"><table id=\"sessions\"><thead><tr><th>Viewer</th><th>Path</th><th>Started (UTC)</th><th>Ended</th>\
         <th class=\"num\">Requests</th><th class=\"num\">Bytes sent</th><th class=\"num\">Furthest byte</th>\
         <th class=\"num\">Watched</th></tr></thead><tbody>"
    ));
    for s in sessions.iter().take(100) {
        body.push_str(&format!(
            "<tr><td>{viewer}</td><td>{path}</td><td>{start}</td><td>{end}</td><td class=\"num\">{req}</td>\
             <td class=\"num\">{bytes}</td><td class=\"num\">{furthest}</td><td class=\"num watched\">{pct}</td></tr>",
            viewer = esc(&s.viewer_key),
            path = esc(&s.path),
            start = s.started.format("%Y-%m-%d %H:%M:%S"),
            end = s.ended.format("%H:%M:%S"),
            req = s.requests,
            bytes = human_bytes(s.bytes_sent),
            furthest = s.furthest_byte,
            pct = s.percent_watched.map_or("—".to_owned(), |p| format!("{p:.1} %")),
        ));
    }
    if sessions.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"muted\">No sessions.</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    Html(page_html("Analytics", &body)).into_response()
}
