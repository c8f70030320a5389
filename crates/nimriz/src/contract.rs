//! Every assumption about the Nimriz API lives here: paths, field names, the bulk envelope,
//! error body shapes and which codes mean what. Marks as in `docs/nimriz-api.md`:
//! **[doc]** documented by Nimriz · **[n8n]** seen only in Nimriz's n8n node ·
//! **[assumed]** our decision. When the real contract is known, change this file only.
//!
//! Parsing is tolerant on purpose: unknown fields are ignored everywhere, `id` is accepted
//! for `url_id`, error bodies may be flat or nested under `error`, codes come in both casings.

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------

/// Default API host [doc]. Short domains only serve redirects; never call the API on them.
pub const DEFAULT_API_BASE: &str = "https://api.nimriz.com";
/// Env override of the base URL (same name as Nimriz's own n8n test suite) [n8n].
pub const ENV_API_BASE: &str = "NIMRIZ_API_BASE";
/// Env var holding the workspace API key [assumed].
pub const ENV_API_KEY: &str = "NIMRIZ_API_KEY";

pub const PATH_WHOAMI: &str = "/api/v1/whoami"; // [n8n]
pub const PATH_DOMAINS: &str = "/api/v1/domains"; // [n8n]
pub const PATH_SHORTEN: &str = "/api/shorten"; // [doc]
pub const PATH_SHORTEN_BULK: &str = "/api/shorten/bulk"; // [doc]
pub const PATH_FIND_LINK: &str = "/api/v1/links/find"; // [n8n] ?domain_id=&short_code=
pub const PATH_LINKS: &str = "/api/v1/links"; // [n8n] + /{url_id}

/// Header carrying an idempotency key on the *single* create route. Nimriz documents
/// idempotency keys only inside bulk rows; sending the header on `/api/shorten` is
/// harmless if ignored [assumed].
pub const HEADER_IDEMPOTENCY_KEY: &str = "Idempotency-Key";

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// The create fields of one link, as sent to `/api/shorten` and inside bulk rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewLink {
    pub domain_id: String,
    pub long_url: String,
    /// `None` lets Nimriz pick a slug (only `shorten` without `--slug` does that).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_slug: Option<String>,
    /// ISO-8601 [n8n field name].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// 301 or 302 [n8n field name].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_status_code: Option<u16>,
    /// [assumed] field name; sent only when non-empty so a server that rejects unknown
    /// fields is not bothered by specs that use no tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// [assumed] field name; sent only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
}

/// One row of a bulk create request [assumed envelope: `{"rows": [...]}`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkRow {
    /// Our id for the row; results are matched on it, never on position. We use the
    /// manifest record key (`{domain_id}/{slug}`): unique within a run, stable across runs
    /// and retries, and readable when quoting a row to support.
    pub client_row_id: String,
    pub idempotency_key: String,
    #[serde(flatten)]
    pub link: NewLink,
}

#[derive(Debug, Serialize)]
pub struct BulkRequest<'a> {
    pub rows: &'a [BulkRow],
}

/// Deterministic idempotency key of a create: the first 32 hex digits of
/// SHA-256(`"{domain_id}\n{slug}\n{destination}"`). Same link → same key, on every retry
/// and every run, so a replay returns the stored link instead of a second one.
pub fn idempotency_key(domain_id: &str, slug: &str, destination: &str) -> String {
    let digest = Sha256::digest(format!("{domain_id}\n{slug}\n{destination}").as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(32);
    hex
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// A link as the API describes it [assumed shape; `id` accepted for `url_id`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct Link {
    #[serde(alias = "id", default, deserialize_with = "opt_string_or_number")]
    pub url_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub domain_id: Option<String>,
    #[serde(default, alias = "slug")]
    pub short_code: Option<String>,
    #[serde(default)]
    pub short_url: Option<String>,
    #[serde(default, alias = "destination", alias = "destination_url")]
    pub long_url: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub redirect_status_code: Option<u16>,
}

/// Parse a link from a response body: `{"link": {...}}` [n8n], or `{"data": {...}}`, or the
/// object itself (the single create response is documented only as "has url_id, short_url,
/// short_code") [assumed].
pub fn parse_link(body: &serde_json::Value) -> Option<Link> {
    let obj = ["link", "data"]
        .iter()
        .find_map(|k| body.get(k).filter(|v| v.is_object()))
        .unwrap_or(body);
    if !obj.is_object() {
        return None;
    }
    serde_json::from_value(obj.clone()).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Domain {
    #[serde(alias = "domain_id", deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(alias = "host", alias = "domain", alias = "hostname")]
    pub domain_name: String,
}

/// `{"domains": [...]}` [n8n], or a bare array [assumed tolerance].
pub fn parse_domains(body: &serde_json::Value) -> Option<Vec<Domain>> {
    let list = body.get("domains").unwrap_or(body).as_array()?;
    // A domain entry we cannot read is skipped rather than failing the whole list.
    Some(
        list.iter()
            .filter_map(|d| serde_json::from_value(d.clone()).ok())
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WhoAmI {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub workspace_name: Option<String>,
}

/// One result of a bulk create [assumed envelope:
/// `{"results": [{client_row_id, status, url_id, short_url, short_code, idempotent, error}]}`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BulkResult {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub client_row_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(flatten)]
    pub link: Link,
    /// `true` when the idempotency key was seen before and the stored link came back.
    #[serde(default, deserialize_with = "bool_or_null")]
    pub idempotent: bool,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl BulkResult {
    /// The row's error, if this result is one: `status: "error"` or a non-null `error`.
    pub fn row_error(&self) -> Option<ApiErrorBody> {
        let status_is_error = self
            .status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("error") || s.eq_ignore_ascii_case("failed"));
        match &self.error {
            Some(v) if !v.is_null() => Some(error_fields(v)),
            _ if status_is_error => Some(ApiErrorBody {
                code: None,
                message: Some("the server marked this row as an error without details".into()),
                support_reference: None,
            }),
            _ => None,
        }
    }
}

/// `{"results": [...]}`; `rows` accepted too [assumed].
pub fn parse_bulk_results(body: &serde_json::Value) -> Option<Vec<BulkResult>> {
    let list = body
        .get("results")
        .or_else(|| body.get("rows"))?
        .as_array()?;
    // One unreadable result must not sink the others: it simply counts as missing and
    // its row is resent.
    Some(
        list.iter()
            .filter_map(|r| serde_json::from_value(r.clone()).ok())
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The server's words about a failure [doc: `code` and `support_reference`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    pub support_reference: Option<String>,
}

/// Read an error body: flat `{code, message, support_reference}`, nested under `error`
/// (`{"error": {...}}`), or `{"error": "text"}` [assumed tolerance]. Non-JSON bodies give
/// a message from the first bytes of the text.
pub fn parse_error_body(bytes: &[u8]) -> ApiErrorBody {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => match v.get("error") {
            Some(inner) if inner.is_object() => {
                let mut e = error_fields(inner);
                // Some APIs keep the reference beside the nested error.
                let outer = error_fields(&v);
                e.support_reference = e.support_reference.or(outer.support_reference);
                e.code = e.code.or(outer.code);
                e.message = e.message.or(outer.message);
                e
            }
            Some(serde_json::Value::String(s)) => {
                let mut e = error_fields(&v);
                e.message = e.message.or_else(|| Some(s.clone()));
                e
            }
            _ => error_fields(&v),
        },
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            ApiErrorBody {
                code: None,
                message: (!text.is_empty()).then(|| text.chars().take(200).collect()),
                support_reference: None,
            }
        }
    }
}

fn error_fields(v: &serde_json::Value) -> ApiErrorBody {
    let s = |keys: &[&str]| {
        keys.iter().find_map(|k| match v.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    ApiErrorBody {
        code: s(&["code", "error_code"]),
        message: s(&["message", "detail", "error_description"]),
        support_reference: s(&["support_reference", "supportReference", "request_id"]),
    }
}

/// Codes compare case-insensitively: Nimriz uses `slug_reserved` and `SERVICE_UNAVAILABLE`
/// styles side by side [doc].
pub fn normalize_code(code: &str) -> String {
    code.trim().to_ascii_lowercase()
}

/// Slug codes that are final: retrying or looking the link up cannot help [doc names].
pub const PERMANENT_SLUG_CODES: &[&str] = &["slug_reserved", "slug_tombstoned", "slug_invalid"];

/// Is this failure "the slug is already taken on that domain"? [assumed]: 409 with any code
/// that is not a permanent slug code; or 403/422 with a `slug_*` code (e.g. `slug_taken`)
/// that is not permanent. A 403 from check-slug may also carry `available: false`.
pub fn is_slug_conflict(status: u16, code: Option<&str>) -> bool {
    let code = code.map(normalize_code);
    if code
        .as_deref()
        .is_some_and(|c| PERMANENT_SLUG_CODES.contains(&c))
    {
        return false;
    }
    match status {
        409 => true,
        403 | 422 => code.as_deref().is_some_and(|c| c.starts_with("slug_")),
        _ => false,
    }
}

/// A bulk *row* error code that means "slug taken" (rows carry no HTTP status) [assumed].
pub fn is_slug_conflict_code(code: Option<&str>) -> bool {
    is_slug_conflict(422, code)
}

/// A permanent slug refusal: the row fails, nothing is retried.
pub fn is_permanent_slug_code(code: Option<&str>) -> bool {
    code.map(normalize_code)
        .is_some_and(|c| PERMANENT_SLUG_CODES.contains(&c.as_str()))
}

/// Is this response "your batch is too big"? 413, or a code naming the batch/payload size
/// [assumed; the bulk maximum is unknown].
pub fn is_batch_too_large(status: u16, code: Option<&str>) -> bool {
    if status == 413 {
        return true;
    }
    let Some(c) = code.map(normalize_code) else {
        return false;
    };
    (400..500).contains(&status)
        && (c.contains("batch")
            || c.contains("too_many_rows")
            || c.contains("payload_too_large")
            || c.contains("bulk_limit"))
}

/// Does this status on the bulk route mean "there is no bulk route here"? [assumed]
pub fn is_bulk_unsupported(status: u16) -> bool {
    status == 404 || status == 405
}

/// Is this failure an authentication/authorization refusal of the whole run? 401 always;
/// 403 unless it carries a slug code or a specific policy code (quota, plan, destination
/// policy...), which refuse one link, not the key [assumed].
pub fn is_auth_failure(status: u16, code: Option<&str>) -> bool {
    match status {
        401 => true,
        403 => match code.map(normalize_code) {
            None => true,
            Some(c) if c.starts_with("slug_") => false,
            Some(c) => [
                "auth",
                "key",
                "token",
                "forbidden",
                "permission",
                "credential",
            ]
            .iter()
            .any(|w| c.contains(w)),
        },
        _ => false,
    }
}

/// A bulk row error code that is a passing server condition, not a verdict on the row:
/// the row is resent like a missing one [assumed].
pub fn is_transient_row_code(code: Option<&str>) -> bool {
    code.map(normalize_code).is_some_and(|c| {
        matches!(
            c.as_str(),
            "service_unavailable"
                | "rate_limited"
                | "too_many_requests"
                | "internal_error"
                | "timeout"
        )
    })
}

// ---------------------------------------------------------------------------------------
// serde helpers (ids may arrive as numbers)
// ---------------------------------------------------------------------------------------

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn bool_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(
        serde_json::Value::deserialize(d)?,
        serde_json::Value::Bool(true)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idempotency_key_is_stable_and_32_hex() {
        let k = idempotency_key("dom-1", "spring-sale", "https://shop.example/?a=1");
        assert_eq!(k.len(), 32);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            k,
            idempotency_key("dom-1", "spring-sale", "https://shop.example/?a=1")
        );
        assert_ne!(
            k,
            idempotency_key("dom-2", "spring-sale", "https://shop.example/?a=1")
        );
        // Known value: first 32 hex of sha256("d\ns\nu").
        assert_eq!(
            idempotency_key("d", "s", "u"),
            hex::encode(Sha256::digest(b"d\ns\nu"))[..32]
        );
    }

    #[test]
    fn error_body_flat_nested_and_text() {
        let flat = parse_error_body(
            br#"{"code":"slug_taken","message":"taken","support_reference":"ref-1","x":1}"#,
        );
        assert_eq!(flat.code.as_deref(), Some("slug_taken"));
        assert_eq!(flat.support_reference.as_deref(), Some("ref-1"));
        let nested = parse_error_body(
            br#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"busy"},"support_reference":"r2"}"#,
        );
        assert_eq!(nested.code.as_deref(), Some("SERVICE_UNAVAILABLE"));
        assert_eq!(nested.message.as_deref(), Some("busy"));
        assert_eq!(nested.support_reference.as_deref(), Some("r2"));
        let text = parse_error_body(b"<html>Bad gateway</html>");
        assert_eq!(text.message.as_deref(), Some("<html>Bad gateway</html>"));
        assert_eq!(text.code, None);
        let stringy = parse_error_body(br#"{"error":"nope"}"#);
        assert_eq!(stringy.message.as_deref(), Some("nope"));
    }

    #[test]
    fn conflict_and_permanent_codes() {
        assert!(is_slug_conflict(409, Some("slug_taken")));
        assert!(is_slug_conflict(409, None));
        assert!(is_slug_conflict(403, Some("SLUG_TAKEN")));
        assert!(is_slug_conflict(422, Some("slug_taken")));
        assert!(!is_slug_conflict(422, Some("slug_reserved")));
        assert!(!is_slug_conflict(409, Some("SLUG_TOMBSTONED")));
        assert!(!is_slug_conflict(403, None));
        assert!(!is_slug_conflict(422, Some("invalid_url")));
        assert!(is_permanent_slug_code(Some("Slug_Invalid")));
        assert!(!is_permanent_slug_code(Some("slug_taken")));
    }

    #[test]
    fn auth_classification() {
        assert!(is_auth_failure(401, Some("slug_taken")));
        assert!(is_auth_failure(403, None));
        assert!(is_auth_failure(403, Some("INVALID_API_KEY")));
        assert!(!is_auth_failure(403, Some("slug_taken")));
        assert!(!is_auth_failure(403, Some("quota_exceeded")));
        assert!(!is_auth_failure(422, None));
    }

    #[test]
    fn batch_size_classification() {
        assert!(is_batch_too_large(413, None));
        assert!(is_batch_too_large(400, Some("BATCH_TOO_LARGE")));
        assert!(is_batch_too_large(422, Some("too_many_rows")));
        assert!(!is_batch_too_large(422, Some("invalid_url")));
        assert!(!is_batch_too_large(500, Some("batch_failed")));
    }

    #[test]
    fn link_accepts_id_and_ignores_unknown_fields() {
        let l = parse_link(
            &json!({"link": {"id": "u-1", "short_code": "a", "short_url": "https://s/a",
            "long_url": "https://x", "domain_id": 7, "clicks": 3}}),
        )
        .unwrap();
        assert_eq!(l.url_id.as_deref(), Some("u-1"));
        assert_eq!(l.domain_id.as_deref(), Some("7"));
        let top = parse_link(&json!({"url_id": "u-2", "short_url": "https://s/b"})).unwrap();
        assert_eq!(top.url_id.as_deref(), Some("u-2"));
    }

    #[test]
    fn bulk_results_tolerant() {
        let r = parse_bulk_results(&json!({"results": [
            {"client_row_id": "a", "status": "created", "url_id": "u1", "idempotent": true, "error": null},
            {"client_row_id": 2, "status": "error", "error": {"code": "slug_taken", "message": "m"}},
            "garbage",
            {"client_row_id": "c", "status": "created", "id": "u3", "short_url": "https://s/c"}
        ]}))
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[2].link.url_id.as_deref(),
            Some("u3"),
            "`id` accepted inside results"
        );
        assert!(r[0].idempotent);
        assert!(r[0].row_error().is_none());
        assert_eq!(r[1].client_row_id.as_deref(), Some("2"));
        assert_eq!(
            r[1].row_error().unwrap().code.as_deref(),
            Some("slug_taken")
        );
    }

    #[test]
    fn new_link_omits_empty_extras() {
        let row = BulkRow {
            client_row_id: "d/s".into(),
            idempotency_key: "k".into(),
            link: NewLink {
                domain_id: "d".into(),
                long_url: "https://x".into(),
                custom_slug: Some("s".into()),
                expires_at: None,
                redirect_status_code: Some(302),
                tags: vec![],
                space: None,
            },
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(
            v,
            json!({"client_row_id": "d/s", "idempotency_key": "k", "domain_id": "d",
                   "long_url": "https://x", "custom_slug": "s", "redirect_status_code": 302})
        );
    }

    #[test]
    fn domains_parse() {
        let d = parse_domains(&json!({"domains": [{"id": "d1", "domain_name": "go.acme.example", "verified": true}, {"x": 1}]})).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].domain_name, "go.acme.example");
    }
}
