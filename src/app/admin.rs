//! The admin under `/admin/`: the watch-log list with filters, search,
//! keyset pagination and exports, and analytics (per-video totals, views
//! per day, viewing sessions). Off unless an admin token is configured.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::NaiveDate;
use maud::{html, Markup};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::{blocking, AppError};
use super::links::Links;
use super::templates::{day_chart, enc, human_bytes, nav, page};
use super::AppState;
use crate::log::analytics::sessions;
use crate::log::export::{ExportEncoder, ExportFormat};
use crate::log::{Cursor, LogFilter, Page, StoreError, WatchLogEntry, WatchLogStore};

const PAGE_SIZE: usize = 50;
const SESSION_ROWS: usize = 5_000;

/// Lets a request through when it carries the admin token as a bearer token
/// or as the Basic-auth password; anything else gets 401 with a Basic
/// challenge, so browsers prompt.
pub(crate) async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.as_deref() else {
        return AppError::NotFound.into_response();
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

impl AdminQuery {
    fn filter(&self) -> Result<LogFilter, AppError> {
        // No stored text holds NUL; PostgreSQL refuses it in a query and
        // SQLite's LIKE stops at it (so `q=%00` matched every row).
        let fields = [&self.q, &self.path, &self.user, &self.ip, &self.status];
        if fields
            .iter()
            .any(|f| f.as_deref().is_some_and(|v| v.contains('\0')))
        {
            return Err(AppError::bad("filters must not contain NUL"));
        }
        let date = |v: &Option<String>, name: &str| -> Result<Option<NaiveDate>, AppError> {
            non_empty(v)
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                        AppError::bad(format!("{name} must be a date like 2026-11-24"))
                    })
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
                Some(_) => return Err(AppError::bad("authenticated must be yes or no")),
            },
            status: non_empty(&self.status)
                .map(|s| {
                    s.parse::<i32>()
                        .ok()
                        .filter(|s| (100..600).contains(s))
                        .ok_or_else(|| AppError::bad("status must be an HTTP status code"))
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

/// `/admin` without the slash: to the list, under whatever prefix.
pub(crate) async fn to_list(links: Links) -> Result<Redirect, AppError> {
    links
        .admin("")
        .map(|list| Redirect::permanent(&list))
        .ok_or(AppError::NotFound)
}

fn admin_page(links: &Links, title: &str, body: Markup) -> Markup {
    page(title, nav(links, true), body)
}

/// `?` and the query, or nothing for an empty query.
fn with_query(base: String, query: &str) -> String {
    if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    links: Links,
    Query(query): Query<AdminQuery>,
) -> Result<Markup, AppError> {
    let filter = query.filter()?;
    let after = non_empty(&query.after)
        .map(|text| Cursor::decode(text).ok_or(AppError::bad("after is not a valid cursor")))
        .transpose()?;
    let store = Arc::clone(&state.store);
    let (found, total) = blocking(move || {
        let page = store.query(&filter, after, PAGE_SIZE)?;
        let total = store.count(&filter)?;
        Ok((page, total))
    })
    .await?;
    let fq = query.filter_query();
    let list = links.admin("").unwrap_or_default();
    let v = |o: &Option<String>| non_empty(o).unwrap_or("").to_owned();
    let auth = non_empty(&query.authenticated);
    let older = found.next.map(|next| {
        let sep = if fq.is_empty() { "" } else { "&" };
        format!("{list}?{fq}{sep}after={}", enc(&next.encode()))
    });
    let body = html! {
        h1 { "Watch log" }
        form class="filters" method="get" action=(list) {
            input type="search" name="q" placeholder="Search path, user or IP" value=(v(&query.q)) aria-label="search";
            select name="authenticated" aria-label="authenticated" {
                option value="" { "Any viewer" }
                option value="yes" selected[auth == Some("yes")] { "Authenticated" }
                option value="no" selected[auth == Some("no")] { "Anonymous" }
            }
            input name="status" placeholder="Status" size="6" value=(v(&query.status)) aria-label="status";
            label { "From " input type="date" name="since" value=(v(&query.since)); }
            label { "to " input type="date" name="until" value=(v(&query.until)); }
            button type="submit" { "Filter" }
            " "
            a href=(list) { "Reset" }
        }
        p {
            (total) " matching rows · export "
            a id="export-csv" href=(with_query(links.admin("export.csv").unwrap_or_default(), &fq)) { "CSV" }
            " · "
            a id="export-json" href=(with_query(links.admin("export.json").unwrap_or_default(), &fq)) { "JSON" }
        }
        (entries_table(&found.entries))
        nav class="pager" {
            @if after.is_some() {
                a href=(with_query(list.clone(), &fq)) { "← newest" }
            }
            @if let Some(older) = older {
                a id="older" href=(older) { "older →" }
            }
        }
    };
    Ok(admin_page(&links, "Watch log", body))
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn entries_table(entries: &[WatchLogEntry]) -> Markup {
    html! {
        div class="scroll" {
            table id="log" {
                thead {
                    tr {
                        th { "Created (UTC)" } th { "Path" } th { "User" } th { "Authenticated" }
                        th { "IP" } th class="num" { "Status" } th { "Range" }
                        th class="num" { "Bytes sent" } th { "Completed" }
                    }
                }
                tbody {
                    @for e in entries {
                        tr {
                            td { (e.created_at.format("%Y-%m-%d %H:%M:%S")) }
                            td { (e.path) }
                            td { (e.user_id.as_deref().unwrap_or("—")) }
                            td { (yes_no(e.is_authenticated)) }
                            td { (e.ip.as_deref().unwrap_or("—")) }
                            // Status 0 marks a row whose status and bytes were
                            // never recorded (imported from django-sage-streaming).
                            @if e.status == 0 {
                                td class="num muted" title="not recorded (imported)" { "unknown" }
                                td { (e.range_header.as_deref().unwrap_or("—")) }
                                td class="num muted" { "unknown" }
                            } @else {
                                td class="num" { (e.status) }
                                td { (e.range_header.as_deref().unwrap_or("—")) }
                                td class="num" { (e.bytes_sent) }
                            }
                            td { (yes_no(e.completed)) }
                        }
                    }
                    @if entries.is_empty() {
                        tr { td colspan="9" class="muted" { "No rows." } }
                    }
                }
            }
        }
    }
}

/// Rows per query of an export: one keyset page, read on a blocking thread.
const EXPORT_PAGE: usize = 5_000;
/// Rows per piece of the response body.
const EXPORT_PIECE: usize = 500;
/// Pieces encoded ahead of the connection. With the page being encoded,
/// this is all an export holds in memory, however many rows it has.
const EXPORT_AHEAD: usize = 4;

/// The filtered rows as a download, streamed: a blocking task reads them a
/// keyset page at a time (newest first, as the list shows them) and
/// encodes each page into pieces, which a bounded channel hands to the
/// response body. A slow client slows the task down instead of filling
/// memory; one that leaves stops it.
///
/// The first page is read before the answer, so a database that is down
/// gets a 503. A failure after that ends the body with an error: the
/// client sees a cut download (no final chunk), never a short file that
/// looks whole.
async fn export(
    state: &AppState,
    query: &AdminQuery,
    content_type: &'static str,
    disposition: &'static str,
    format: ExportFormat,
) -> Result<Response, AppError> {
    let filter = query.filter()?;
    let store = Arc::clone(&state.store);
    let first = {
        let (store, filter) = (Arc::clone(&store), filter.clone());
        blocking(move || store.query(&filter, None, EXPORT_PAGE)).await?
    };
    let (pieces, body) = tokio::sync::mpsc::channel(EXPORT_AHEAD);
    tokio::task::spawn_blocking(move || export_pages(&*store, &filter, first, format, &pieces));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::new(ExportBody(body)),
    )
        .into_response())
}

/// The export's blocking task: encodes `page` and every page after it into
/// `pieces`; returns early when the client has gone.
fn export_pages(
    store: &dyn WatchLogStore,
    filter: &LogFilter,
    mut page: Page,
    format: ExportFormat,
    pieces: &tokio::sync::mpsc::Sender<Result<Bytes, StoreError>>,
) {
    let mut encoder = ExportEncoder::new(format);
    let mut out = String::new();
    encoder.begin(&mut out);
    loop {
        for rows in page.entries.chunks(EXPORT_PIECE) {
            for row in rows {
                encoder.row(row, &mut out);
            }
            if pieces
                .blocking_send(Ok(Bytes::from(std::mem::take(&mut out))))
                .is_err()
            {
                return;
            }
        }
        let Some(next) = page.next else { break };
        page = match store.query(filter, Some(next), EXPORT_PAGE) {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, rows = encoder.rows(), "watch-log export cut short");
                let _ = pieces.blocking_send(Err(err));
                return;
            }
        };
    }
    encoder.end(&mut out);
    let _ = pieces.blocking_send(Ok(Bytes::from(out)));
}

/// The body of a streamed export: the pieces its task sends, in order.
struct ExportBody(tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>);

impl http_body::Body for ExportBody {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, StoreError>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|piece| piece.map(http_body::Frame::data)))
    }
}

pub(crate) async fn export_csv(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Result<Response, AppError> {
    let disposition = "attachment; filename=\"watch-log.csv\"";
    export(
        &state,
        &query,
        "text/csv; charset=utf-8",
        disposition,
        ExportFormat::Csv,
    )
    .await
}

pub(crate) async fn export_json(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AdminQuery>,
) -> Result<Response, AppError> {
    let disposition = "attachment; filename=\"watch-log.json\"";
    export(
        &state,
        &query,
        "application/json",
        disposition,
        ExportFormat::Json,
    )
    .await
}

pub(crate) async fn analytics(
    State(state): State<Arc<AppState>>,
    links: Links,
    Query(query): Query<AdminQuery>,
) -> Result<Markup, AppError> {
    let filter = query.filter()?;
    let gap_minutes = match non_empty(&query.gap) {
        None => state.session_gap_minutes,
        Some(g) => g
            .parse::<u32>()
            .ok()
            .filter(|g| (1..=1440).contains(g))
            .ok_or(AppError::bad(
                "gap must be whole minutes between 1 and 1440",
            ))?,
    };
    let store = Arc::clone(&state.store);
    let root = state.root.clone();
    let (stats, days, sessions) = blocking(move || {
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
    .await?;
    let list = links.admin("").unwrap_or_default();
    let body = html! {
        h1 { "Analytics" }
        h2 { "Views per day" }
        (day_chart(&days, chrono::Utc::now().date_naive()))
        h2 { "Per video" }
        div class="scroll" {
            table id="videos" {
                thead {
                    tr {
                        th { "Path" } th class="num" { "Views" }
                        th class="num" { "Unique viewers" } th class="num" { "Bytes sent" }
                    }
                }
                tbody {
                    @for s in &stats {
                        tr {
                            td { a href=(format!("{list}?path={}", enc(&s.path))) { (s.path) } }
                            td class="num" { (s.views) }
                            td class="num" { (s.unique_viewers) }
                            td class="num" { (human_bytes(u64::try_from(s.bytes_sent).unwrap_or(0))) }
                        }
                    }
                }
            }
        }
        h2 { "Viewing sessions" }
        form class="filters" method="get" {
            label {
                "A pause longer than "
                input name="gap" size="4" value=(gap_minutes);
                " minutes starts a new session"
            }
            button type="submit" { "Apply" }
        }
        div class="scroll" {
            table id="sessions" {
                thead {
                    tr {
                        th { "Viewer" } th { "Path" } th { "Started (UTC)" } th { "Ended" }
                        th class="num" { "Requests" } th class="num" { "Bytes sent" }
                        th class="num" { "Furthest byte" } th class="num" { "Watched" }
                    }
                }
                tbody {
                    @for s in sessions.iter().take(100) {
                        tr {
                            td { (s.viewer_key) }
                            td { (s.path) }
                            td { (s.started.format("%Y-%m-%d %H:%M:%S")) }
                            td { (s.ended.format("%H:%M:%S")) }
                            td class="num" { (s.requests) }
                            td class="num" { (human_bytes(s.bytes_sent)) }
                            td class="num" { (s.furthest_byte) }
                            td class="num watched" {
                                (s.percent_watched.map_or("—".to_owned(), |p| format!("{p:.1} %")))
                            }
                        }
                    }
                    @if sessions.is_empty() {
                        tr { td colspan="8" class="muted" { "No sessions." } }
                    }
                }
            }
        }
    };
    Ok(admin_page(&links, "Analytics", body))
}
