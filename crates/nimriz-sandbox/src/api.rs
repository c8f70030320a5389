//! HTTP routes: the Nimriz contract (`/api/...`, behind the fault/auth gate) and the
//! sandbox's own `/__sandbox/*` routes (no auth, no faults).
//!
//! Status codes: 400 for bad input (`slug_reserved`, `slug_invalid`, `invalid_destination`,
//! `destination_loop`, `unknown_domain`, `invalid_request`, ...), the configured conflict status
//! (409 by default) for `slug_taken`, 409 for `slug_tombstoned`, 404 `not_found`,
//! 413 `payload_too_large`, 401 `unauthorized`, 429 `RATE_LIMITED`, 503 `SERVICE_UNAVAILABLE`.

use super::config::ResponseShape;
use super::faults::api_gate;
use super::server::Shared;
use super::store::{CreateInput, Rejection, RejectionKind, StoredResult};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;

type AppState = State<Arc<Shared>>;
type ApiResult<T = (StatusCode, Json<Value>)> = Result<T, ApiError>;

/// Bodies are parsed by hand (not `Json<T>`) so every refusal is a Nimriz-style JSON error.
/// Large enough for any sane bulk request; `--bulk-max` is the knob for row limits.
const BODY_LIMIT_BYTES: usize = 32 * 1024 * 1024;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/domains", get(domains))
        .route("/api/v1/links", get(list_links))
        .route("/api/v1/links/find", get(find_link))
        .route("/api/v1/links/{url_id}", get(get_link))
        .route("/api/shorten", post(shorten))
        .route(
            "/api/shorten/bulk",
            if shared.config.faults.no_bulk {
                post(no_bulk)
            } else {
                post(bulk)
            },
        )
        .route("/api/check-slug", post(check_slug))
        .route("/api/update-destination", put(update_destination))
        .route("/api/update-slug", put(update_slug))
        .route("/api/update-expiration", put(update_expiration))
        .route("/api/update-password", put(update_password))
        .route("/api/delete-link", post(delete_link))
        .route_layer(middleware::from_fn_with_state(shared.clone(), api_gate));
    Router::new()
        .merge(api)
        .route("/__sandbox/stats", get(stats))
        .route("/__sandbox/seed", post(seed))
        .route("/__sandbox/click", post(super::events::simulate_click))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(shared)
}

/// An error answer: `{"code", "message", "support_reference"}` plus optional extra fields.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    retry_after: Option<u64>,
    extra: serde_json::Map<String, Value>,
}

static NEXT_SUPPORT_REFERENCE: AtomicU64 = AtomicU64::new(1);

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            extra: serde_json::Map::new(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send `Authorization: Bearer <key>` or `X-Nim-Api-Key: <key>` \
             with the key the sandbox printed at start",
        )
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the service is temporarily unavailable (injected by --fail-rate); retry with backoff",
        )
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    fn from_rejection(shared: &Shared, r: Rejection) -> Self {
        let status = match r.kind {
            RejectionKind::Invalid => StatusCode::BAD_REQUEST,
            RejectionKind::Conflict => StatusCode::from_u16(shared.config.faults.conflict_status)
                .unwrap_or(StatusCode::CONFLICT),
            RejectionKind::Gone => StatusCode::CONFLICT,
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, r.code, r.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reference = NEXT_SUPPORT_REFERENCE.fetch_add(1, Ordering::Relaxed);
        let mut body = self.extra;
        body.insert("code".into(), Value::String(self.code));
        body.insert("message".into(), Value::String(self.message));
        body.insert(
            "support_reference".into(),
            Value::String(format!("sbx-{reference}")),
        );
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request bodies are limited to {BODY_LIMIT_BYTES} bytes"),
            )
        } else {
            ApiError::invalid(format!("could not read the request body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the request body is not the expected JSON: {e}")))
}

fn parse_url_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| ApiError::invalid(format!("url_id {raw:?} is not a UUID")))
}

/// Write `--state` after a mutation, with the lock still held so writes land in order.
fn persist(shared: &Shared, inner: &super::server::Inner) -> ApiResult<()> {
    match &shared.config.state_path {
        Some(path) => inner.store.save(path).map_err(|e| {
            ApiError::internal(format!(
                "the change was applied but the sandbox could not write its state file {}: {e}",
                path.display()
            ))
        }),
        None => Ok(()),
    }
}

fn ok(value: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(value)))
}

/// The workspace identity: new on every start without `--state`, kept in the state file
/// with it (so a manifest from an earlier, forgotten sandbox is recognised as such).
async fn whoami(State(shared): AppState) -> ApiResult {
    let id = shared.lock().store.workspace_id().to_string();
    ok(json!({"account_id": id, "workspace_name": "Nimriz sandbox"}))
}

// ---------------------------------------------------------------------------------------
// Response shapes (`--response-shape`): the same facts, as different plausible servers
// would put them. The default is the widest shape (every alias at once, agreeing).
// ---------------------------------------------------------------------------------------

/// The concrete shape of one answer: `mixed` draws one from the seed and `subject` (the
/// link's id, the batch's first row ...), so the same request gets the same shape.
fn shape_for(shared: &Shared, subject: &str) -> ResponseShape {
    match shared.config.faults.response_shape {
        ResponseShape::Mixed => {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(format!("{}/{subject}", shared.config.faults.seed));
            let n = ResponseShape::CONCRETE.len();
            ResponseShape::CONCRETE[usize::from(digest[0]) % n].0
        }
        shape => shape,
    }
}

/// A link object in `shape`.
fn link_json(link: &super::store::Link, shape: ResponseShape) -> Value {
    let mut v = link.to_json();
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    match shape {
        ResponseShape::UrlIdOnly => {}
        ResponseShape::IdOnly => {
            rename(obj, "url_id", "id");
            rename(obj, "short_code", "slug");
            rename(obj, "long_url", "destination");
        }
        ResponseShape::NumericId => {
            obj.insert("id".into(), json!(link.seq + 1));
            obj.insert(
                "redirect_status_code".into(),
                json!(link.redirect_status_code.to_string()),
            );
            for key in ["created_at", "updated_at", "expires_at"] {
                let epoch = obj
                    .get(key)
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp());
                if let Some(secs) = epoch {
                    obj.insert(key.into(), json!(secs));
                }
            }
        }
        _ => {
            obj.insert("id".into(), json!(link.url_id));
            obj.insert("slug".into(), json!(link.short_code));
            obj.insert("destination_url".into(), json!(link.long_url));
            obj.insert("domain_name".into(), json!(link.domain_name));
            obj.insert("hostname".into(), json!(link.domain_name));
            obj.insert("status".into(), json!("active"));
            obj.insert("clicks".into(), json!(0));
            obj.insert("qr_code_url".into(), Value::Null);
        }
    }
    v
}

fn rename(obj: &mut serde_json::Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.remove(from) {
        obj.insert(to.into(), v);
    }
}

/// A single link answer (find, get): `{"link": …}` [n8n], `{"data": …}` or bare.
fn link_body(link: Value, shape: ResponseShape) -> Value {
    match shape {
        ResponseShape::DataEnvelope => json!({ "data": link }),
        ResponseShape::Bare => link,
        _ => json!({ "link": link }),
    }
}

/// A list answer (domains, bulk results) under `key`, `data`, or bare.
fn list_body(key: &str, items: Vec<Value>, shape: ResponseShape) -> Value {
    match shape {
        ResponseShape::DataEnvelope => json!({ "data": items }),
        ResponseShape::Bare => Value::Array(items),
        _ => json!({ key: items }),
    }
}

fn domain_json(d: &super::config::Domain, shape: ResponseShape) -> Value {
    match shape {
        ResponseShape::UrlIdOnly => json!({"id": d.id, "domain_name": d.domain_name}),
        ResponseShape::IdOnly => json!({"domain_id": d.id, "hostname": d.domain_name}),
        _ => json!({
            "id": d.id, "domain_id": d.id, "domain_name": d.domain_name,
            "hostname": d.domain_name, "kind": d.kind.as_str(), "verified": true,
        }),
    }
}

async fn domains(State(shared): AppState, RawQuery(query): RawQuery) -> ApiResult {
    let shape = shape_for(&shared, "domains");
    let all = &shared.config.domains;
    if shape == ResponseShape::PagedDomains {
        let params = query_map(query);
        let start = match params.get("cursor").map(String::as_str) {
            None | Some("") => 0,
            Some(raw) => raw
                .strip_prefix('d')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= all.len())
                .ok_or_else(|| ApiError::invalid(format!("cursor {raw:?} was not issued here")))?,
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(1)
            .map(|d| domain_json(d, shape))
            .collect();
        let next = (start + 1 < all.len()).then(|| format!("d{}", start + 1));
        return ok(json!({"domains": page, "next_cursor": next}));
    }
    let domains: Vec<Value> = all.iter().map(|d| domain_json(d, shape)).collect();
    ok(list_body("domains", domains, shape))
}

/// One successful bulk result in `shape`; `n` varies the falsy spellings.
fn bulk_ok(
    client_row_id: Value,
    link: Option<&super::store::Link>,
    stored: &StoredResult,
    idempotent: bool,
    shape: ResponseShape,
    n: usize,
) -> Value {
    let mut row = match link {
        Some(l) => link_json(l, shape),
        None => json!({
            "url_id": stored.url_id, "short_url": stored.short_url, "short_code": stored.short_code,
        }),
    };
    let Some(obj) = row.as_object_mut() else {
        return row;
    };
    obj.insert("idempotent".into(), json!(idempotent));
    match shape {
        ResponseShape::StatusWords => {
            let words = ["success", "ok", "Created", "SUCCESS"];
            obj.insert("status".into(), json!(words[n % words.len()]));
            obj.insert("ok".into(), json!(true));
            let falsy = [json!(false), json!(""), json!({}), Value::Null];
            obj.insert("error".into(), falsy[n % falsy.len()].clone());
        }
        _ => {
            obj.insert("status".into(), json!("created"));
            obj.insert("error".into(), Value::Null);
        }
    }
    if shape != ResponseShape::NoRowIds {
        obj.insert("client_row_id".into(), client_row_id);
    }
    row
}

/// One refused bulk row in `shape`.
/// Without `client_row_id` (`no-row-ids`), an error row echoes the slug and domain it is
/// about (`echo`), as a server that does not echo ids would have to.
fn bulk_err(
    client_row_id: Value,
    echo: &Value,
    code: &str,
    message: &str,
    shape: ResponseShape,
) -> Value {
    let mut row = match shape {
        ResponseShape::FlatErrors => json!({
            "status": "failed", "code": code, "message": message, "error": message,
        }),
        ResponseShape::StatusWords => json!({
            "status": "ERROR", "ok": false, "error": {"code": code, "message": message},
        }),
        ResponseShape::NoRowIds => json!({
            "status": "error", "error": {"code": code, "message": message},
            "short_code": echo["short_code"], "domain_id": echo["domain_id"],
        }),
        _ => json!({
            "status": "error", "url_id": null, "short_url": null, "short_code": null,
            "idempotent": false, "error": {"code": code, "message": message},
        }),
    };
    if shape != ResponseShape::NoRowIds {
        row["client_row_id"] = client_row_id;
    }
    row
}

async fn shorten(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let input: CreateInput = parse_body(body)?;
    let mut inner = shared.lock();
    let created = inner
        .store
        .create(&shared.config, input)
        .map_err(|r| ApiError::from_rejection(&shared, r))?;
    let link = created.to_json();
    let shape = shape_for(&shared, &created.url_id.to_string());
    let body = match shape {
        // The single create is documented as the object itself [doc]; `data` is plausible.
        ResponseShape::DataEnvelope => json!({ "data": link_json(created, shape) }),
        _ => link_json(created, shape),
    };
    persist(&shared, &inner)?;
    emit(&shared, "link.created", &link);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
struct BulkBody {
    rows: Vec<Value>,
}

async fn bulk(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let BulkBody { rows } = parse_body(body)?;
    if let Some(max) = shared.config.faults.bulk_max
        && rows.len() > max
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{} rows exceed the limit of {max} rows per bulk request; send smaller batches",
                rows.len()
            ),
        ));
    }
    let shape = shape_for(
        &shared,
        &rows
            .first()
            .and_then(|r| r.get("client_row_id"))
            .map(Value::to_string)
            .unwrap_or_default(),
    );
    let mut inner = shared.lock();
    let mut results = Vec::with_capacity(rows.len());
    let mut created = Vec::new();
    let mut changed = false;
    for row in rows {
        let n = results.len();
        let client_row_id = row.get("client_row_id").cloned().unwrap_or(Value::Null);
        let echo = json!({"short_code": row.get("custom_slug"), "domain_id": row.get("domain_id")});
        let key = match row.get("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => {
                results.push(bulk_err(
                    client_row_id,
                    &echo,
                    "invalid_request",
                    "idempotency_key must be a string",
                    shape,
                ));
                continue;
            }
        };
        if let Some(stored) = key.as_ref().and_then(|k| inner.store.idempotent(k)) {
            let link = inner.store.get(stored.url_id);
            let result = bulk_ok(client_row_id, link, stored, true, shape, n);
            inner.idempotent_replays += 1;
            results.push(result);
            continue;
        }
        let input: CreateInput = match serde_json::from_value(row) {
            Ok(input) => input,
            Err(e) => {
                results.push(bulk_err(
                    client_row_id,
                    &echo,
                    "invalid_request",
                    &format!("row is not a valid create request: {e}"),
                    shape,
                ));
                continue;
            }
        };
        match inner.store.create(&shared.config, input) {
            Ok(link) => {
                let stored = StoredResult {
                    url_id: link.url_id,
                    short_url: link.short_url(),
                    short_code: link.short_code.clone(),
                };
                created.push(link.to_json());
                results.push(bulk_ok(client_row_id, Some(link), &stored, false, shape, n));
                // Only successes are remembered: a refused row may succeed on a later try
                // (e.g. once a conflicting link is deleted), and must be re-validated.
                if let Some(key) = key {
                    inner.store.remember_idempotency(key, stored);
                }
                changed = true;
            }
            Err(rejection) => {
                results.push(bulk_err(
                    client_row_id,
                    &echo,
                    rejection.code,
                    &rejection.message,
                    shape,
                ));
            }
        }
    }
    if changed {
        persist(&shared, &inner)?;
    }
    for link in &created {
        emit(&shared, "link.created", link);
    }
    if shape == ResponseShape::NoRowIds {
        results.reverse();
    }
    ok(list_body("results", results, shape))
}

async fn no_bulk() -> ApiResult {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this server has no bulk route (--no-bulk); create links one by one with POST /api/shorten",
    ))
}

#[derive(Deserialize)]
struct CheckSlug {
    domain_id: String,
    slug: String,
}

async fn check_slug(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let CheckSlug { domain_id, slug } = parse_body(body)?;
    let domain = super::store::resolve_domain(&shared.config, &domain_id)
        .map_err(|r| ApiError::from_rejection(&shared, r))?;
    let inner = shared.lock();
    match inner
        .store
        .check_slug(&shared.config, domain.id, &slug, None)
    {
        Ok(()) => ok(json!({"available": true})),
        // Nimriz answers a taken or reserved slug with 403 and `available: false`.
        Err(r) => {
            let mut e = ApiError::new(StatusCode::FORBIDDEN, r.code, r.message);
            e.extra.insert("available".into(), Value::Bool(false));
            Err(e)
        }
    }
}

/// Query parameters, decoded; repeated names keep the last value.
fn query_map(query: Option<String>) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn list_links(State(shared): AppState, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_map(query);
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit {raw:?} must be a number from 1 to {MAX_PAGE}"
                )));
            }
        },
    };
    let after = match params.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(raw) => Some(
            raw.strip_prefix('c')
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "cursor {raw:?} was not issued by this server; pass next_cursor back unchanged"
                    ))
                })?,
        ),
    };
    let inner = shared.lock();
    let (page, next) = inner.store.page(after, limit);
    let links: Vec<Value> = page.iter().map(|l| l.to_json()).collect();
    ok(json!({"links": links, "next_cursor": next.map(|seq| format!("c{seq}"))}))
}

async fn get_link(State(shared): AppState, Path(url_id): Path<String>) -> ApiResult {
    let url_id = parse_url_id(&url_id)?;
    let inner = shared.lock();
    match inner.store.get(url_id) {
        Some(link) => {
            let shape = shape_for(&shared, &link.url_id.to_string());
            ok(link_body(link_json(link, shape), shape))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no link with url_id {url_id}"),
        )),
    }
}

async fn find_link(State(shared): AppState, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_map(query);
    let (domain_id, short_code) = if let Some(short_url) = params.get("short_url") {
        let url = url::Url::parse(short_url).map_err(|e| {
            ApiError::invalid(format!("short_url {short_url:?} is not a URL ({e})"))
        })?;
        let host = url.host_str().unwrap_or_default();
        let domain = shared.config.domains.iter().find(|d| d.domain_name == host);
        let slug = url.path().trim_start_matches('/').to_owned();
        match domain {
            Some(d) => (d.id, slug),
            None => return Err(not_found_link()),
        }
    } else if let (Some(domain_id), Some(short_code)) =
        (params.get("domain_id"), params.get("short_code"))
    {
        let domain = super::store::resolve_domain(&shared.config, domain_id)
            .map_err(|r| ApiError::from_rejection(&shared, r))?;
        (domain.id, short_code.clone())
    } else {
        return Err(ApiError::invalid(
            "pass short_url=, or domain_id= and short_code=",
        ));
    };
    let inner = shared.lock();
    match inner.store.find(domain_id, &short_code) {
        Some(link) => {
            let shape = shape_for(&shared, &link.url_id.to_string());
            ok(link_body(link_json(link, shape), shape))
        }
        None => Err(not_found_link()),
    }
}

fn not_found_link() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no link with that short URL in this workspace",
    )
}

#[derive(Deserialize)]
struct UpdateDestination {
    url_id: String,
    long_url: String,
}

#[derive(Deserialize)]
struct UpdateSlug {
    url_id: String,
    new_slug: String,
}

#[derive(Deserialize)]
struct UpdateExpiration {
    url_id: String,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct UpdatePassword {
    url_id: String,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct DeleteLink {
    url_id: String,
}

/// Apply one change to a link under the lock, persist, answer with the link object.
fn mutate(
    shared: &Shared,
    change: impl FnOnce(&mut super::store::Store) -> Result<Value, Rejection>,
) -> ApiResult {
    let mut inner = shared.lock();
    let value = change(&mut inner.store).map_err(|r| ApiError::from_rejection(shared, r))?;
    persist(shared, &inner)?;
    // Updates answer with the link object; a delete does not (and is no `link.updated`).
    if value.get("short_code").is_some() {
        emit(shared, "link.updated", &value);
    }
    ok(value)
}

/// Queue a lifecycle webhook when the sandbox was started with `--webhook-url`.
fn emit(shared: &Shared, event_type: &str, link: &Value) {
    if let Some(events) = &shared.events {
        events.link_event(event_type, link);
    }
}

async fn update_destination(
    State(shared): AppState,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: UpdateDestination = parse_body(body)?;
    let url_id = parse_url_id(&req.url_id)?;
    mutate(&shared, |store| {
        store
            .update_destination(&shared.config, url_id, &req.long_url)
            .map(|l| l.to_json())
    })
}

async fn update_slug(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let req: UpdateSlug = parse_body(body)?;
    let url_id = parse_url_id(&req.url_id)?;
    mutate(&shared, |store| {
        store
            .update_slug(&shared.config, url_id, &req.new_slug)
            .map(|l| l.to_json())
    })
}

async fn update_expiration(
    State(shared): AppState,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: UpdateExpiration = parse_body(body)?;
    let url_id = parse_url_id(&req.url_id)?;
    mutate(&shared, |store| {
        store
            .update_expiration(url_id, req.expires_at.as_deref())
            .map(|l| l.to_json())
    })
}

async fn update_password(
    State(shared): AppState,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: UpdatePassword = parse_body(body)?;
    let url_id = parse_url_id(&req.url_id)?;
    mutate(&shared, |store| {
        store
            .update_password(url_id, req.password.as_deref())
            .map(|l| l.to_json())
    })
}

async fn delete_link(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let req: DeleteLink = parse_body(body)?;
    let url_id = parse_url_id(&req.url_id)?;
    mutate(&shared, |store| {
        store
            .delete(url_id)
            .map(|l| json!({"deleted": true, "url_id": l.url_id}))
    })
}

async fn stats(State(shared): AppState) -> Json<super::server::SandboxStats> {
    Json(shared.stats())
}

#[derive(Deserialize)]
struct SeedBody {
    links: Vec<SeedLink>,
}

#[derive(Deserialize)]
struct SeedLink {
    /// A domain id, or a host served by the sandbox.
    #[serde(alias = "domain")]
    domain_id: String,
    short_code: String,
    long_url: String,
}

/// Pre-seed links (e.g. for conflict tests). Not counted as client inserts. All or nothing.
async fn seed(State(shared): AppState, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let SeedBody { links } = parse_body(body)?;
    let config = &shared.config;
    let mut resolved = Vec::with_capacity(links.len());
    for l in links {
        let wanted = l.domain_id.trim().to_ascii_lowercase();
        let domain = config
            .domains
            .iter()
            .find(|d| d.id.to_string() == wanted || d.domain_name == wanted)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "seed domain {:?} is neither the id nor the host of a sandbox domain",
                    l.domain_id
                ))
            })?;
        resolved.push((domain.clone(), l.short_code, l.long_url));
    }
    let mut inner = shared.lock();
    let mut in_request = std::collections::HashSet::new();
    if let Some((_, slug, _)) = resolved.iter().find(|(d, slug, _)| {
        inner.store.find(d.id, slug).is_some() || !in_request.insert((d.id, slug.as_str()))
    }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "slug_taken",
            format!(
                "cannot seed {slug:?}: it already exists (or appears twice); nothing was seeded"
            ),
        ));
    }
    let mut created = Vec::with_capacity(resolved.len());
    for (domain, slug, long_url) in resolved {
        let link = inner
            .store
            .seed(&domain, slug, long_url)
            .map_err(|r| ApiError::from_rejection(&shared, r))?;
        created.push(link.to_json());
    }
    persist(&shared, &inner)?;
    Ok((StatusCode::CREATED, Json(json!({ "links": created }))))
}

async fn fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route on the Nimriz sandbox",
    )
}
