//! Every assumption about the Nimriz API lives here: paths, field names, the bulk envelope,
//! error body shapes and which codes mean what. Marks as in `docs/nimriz-api.md`:
//! **[doc]** documented by Nimriz · **[n8n]** seen only in Nimriz's n8n node ·
//! **[assumed]** our decision. When the real contract is known, change this file only.
//!
//! Parsing is tolerant on purpose: unknown fields are ignored everywhere, alias keys may come
//! together (the canonical one wins), ids may be strings or numbers, error bodies may be flat
//! or nested under `error`, codes come in both casings. And it never records a lie: an
//! answer is checked against what was sent ([`link_inconsistency`]). The shapes accepted and
//! refused are catalogued in `docs/nimriz-api.md`.

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
pub const PATH_LINKS: &str = "/api/v1/links"; // [n8n] + /{url_id}; list: ?limit=&cursor=
pub const PATH_UPDATE_DESTINATION: &str = "/api/update-destination"; // [n8n] PUT url_id, long_url
pub const PATH_UPDATE_SLUG: &str = "/api/update-slug"; // [doc path; n8n body] PUT url_id, new_slug
pub const PATH_UPDATE_EXPIRATION: &str = "/api/update-expiration"; // [doc path; n8n body] PUT url_id, expires_at|null
pub const PATH_DELETE_LINK: &str = "/api/delete-link"; // [n8n] POST url_id
/// Links per page asked of `GET /api/v1/links` (the documented maximum is 100 [n8n]).
pub const LINK_PAGE_LIMIT: usize = 100;
/// Most pages of links followed before giving up (a server looping on cursors).
pub const MAX_LINK_PAGES: usize = 100_000;

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
// Responses: a tolerant reader
// ---------------------------------------------------------------------------------------
//
// Bodies are read from `serde_json::Value` by hand rather than with derived `Deserialize`:
// a real server plausibly sends alias keys *together* (`id` beside `url_id`, `slug` beside
// `short_code`, Nimriz's n8n node reads `json.url_id || json.id`), which `#[serde(alias)]`
// turns into a "duplicate field" error that sinks the whole object. Here the canonical key
// wins, a disagreement is returned as a note (logged at `-v`), ids may be strings or numbers,
// fields we only report (expiry, redirect, timestamps) are never fatal, unknown fields are
// ignored. See `docs/nimriz-api.md`, "Response shapes".

use serde_json::{Map, Value};

/// Canonical key first, then the aliases accepted for it [assumed; n8n for `id`].
pub const URL_ID_KEYS: &[&str] = &["url_id", "id", "link_id"];
pub const SHORT_CODE_KEYS: &[&str] = &["short_code", "slug", "custom_slug"];
pub const LONG_URL_KEYS: &[&str] = &["long_url", "destination", "destination_url"];
pub const DOMAIN_ID_KEYS: &[&str] = &["domain_id"];
/// Host keys of a link object (`domain` may also be a nested domain object).
pub const LINK_HOST_KEYS: &[&str] = &["domain_name", "hostname", "host", "domain"];
/// Keys of a domain entry [n8n: `id`, `domain_name`].
pub const DOMAIN_ENTRY_ID_KEYS: &[&str] = &["id", "domain_id"];
pub const DOMAIN_ENTRY_HOST_KEYS: &[&str] = &["domain_name", "hostname", "domain", "host"];
/// Most pages of domains followed before giving up (a server looping on cursors).
pub const MAX_DOMAIN_PAGES: usize = 1000;

/// A link as the API describes it. Every field is optional: which ones an answer must carry
/// depends on what it answers (see [`link_inconsistency`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Link {
    pub url_id: Option<String>,
    pub domain_id: Option<String>,
    /// Host of the link's domain when the object names it (`domain_name`, `hostname`,
    /// `domain` as a string or a nested domain object).
    pub domain_host: Option<String>,
    pub short_code: Option<String>,
    pub short_url: Option<String>,
    pub long_url: Option<String>,
    pub expires_at: Option<String>,
    pub redirect_status_code: Option<u16>,
    /// The link is blocked by a takedown (`takedown_status` other than none/cleared,
    /// `taken_down: true`, `is_taken_down: true`, or `status: "taken_down"`) [assumed].
    pub taken_down: bool,
}

impl Link {
    /// Does the object say anything that identifies a link?
    pub fn has_identity(&self) -> bool {
        self.url_id.is_some() || self.short_code.is_some() || self.short_url.is_some()
    }
}

/// A value read with the notes (alias disagreements, fields of an odd type) worth a
/// `-v` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Read<T> {
    pub value: T,
    pub notes: Vec<String>,
}

/// What `GET /api/v1/domains` answered on one page.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainPage {
    pub domains: Vec<Domain>,
    pub next_cursor: Option<String>,
    pub notes: Vec<String>,
}

/// One object being read, with its JSON path for messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
    notes: &'a mut Vec<String>,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string or number as text; anything else is not a usable id or code.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Obj<'_> {
    /// The first present alias as text; the canonical key (first) wins, a disagreeing alias
    /// is noted, a value of an odd type is noted and skipped.
    fn text(&mut self, keys: &[&str]) -> Option<String> {
        let mut found: Option<(&str, String)> = None;
        for k in keys {
            let Some(v) = self.map.get(*k) else { continue };
            if v.is_null() {
                continue;
            }
            match scalar_text(v) {
                Some(t) => match &found {
                    None => found = Some((k, t)),
                    Some((first, kept)) if *kept != t => self.notes.push(format!(
                        "{}.{k} is {t:?} but {}.{first} is {kept:?}; using {first}",
                        self.path, self.path
                    )),
                    Some(_) => {}
                },
                None => {
                    // A nested domain object is read elsewhere; an empty string is "absent".
                    if !(v.is_object() || v.as_str().is_some_and(|s| s.trim().is_empty())) {
                        self.notes.push(format!(
                            "{}.{k} is {}, expected a string or number; ignored",
                            self.path,
                            kind_of(v)
                        ));
                    }
                }
            }
        }
        found.map(|(_, t)| t)
    }

    /// An informative number (redirect status): number or numeric string, else noted.
    fn small_number(&mut self, key: &str) -> Option<u16> {
        let v = self.map.get(key)?;
        let parsed = match v {
            Value::Null => return None,
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.notes.push(format!(
                "{}.{key} is {} ({v}); ignored",
                self.path,
                kind_of(v)
            ));
        }
        parsed
    }

    /// An informative timestamp: string kept as is, a number (epoch seconds or ms) turned
    /// into RFC 3339, anything else noted and ignored.
    fn timestamp(&mut self, key: &str) -> Option<String> {
        let v = self.map.get(key)?;
        match v {
            Value::Null => None,
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => {
                let secs = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64));
                let secs = secs.map(|s| if s > 100_000_000_000 { s / 1000 } else { s });
                match secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0)) {
                    Some(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    None => {
                        self.notes
                            .push(format!("{}.{key} is the number {n}; ignored", self.path));
                        None
                    }
                }
            }
            other => {
                self.notes.push(format!(
                    "{}.{key} is {}; ignored",
                    self.path,
                    kind_of(other)
                ));
                None
            }
        }
    }
}

/// Read one link object (already unwrapped from its envelope). `path` names it in notes and
/// errors (e.g. `$.link`). Fails only when `v` is not an object.
pub fn read_link(v: &Value, path: &str) -> Result<Read<Link>, String> {
    let Some(map) = v.as_object() else {
        return Err(format!(
            "{path}: expected a link object, got {}",
            kind_of(v)
        ));
    };
    let mut notes = Vec::new();
    let mut o = Obj {
        map,
        path,
        notes: &mut notes,
    };
    let mut link = Link {
        url_id: o.text(URL_ID_KEYS),
        domain_id: o.text(DOMAIN_ID_KEYS),
        domain_host: o.text(LINK_HOST_KEYS),
        short_code: o.text(SHORT_CODE_KEYS),
        short_url: o.text(&["short_url", "shortUrl", "short_link"]),
        long_url: o.text(LONG_URL_KEYS),
        expires_at: o.timestamp("expires_at"),
        redirect_status_code: o.small_number("redirect_status_code"),
        taken_down: takedown_flag(map),
    };
    // `domain: {id, domain_name}`: a nested domain object [assumed tolerance].
    if let Some(d) = map.get("domain").filter(|d| d.is_object()) {
        let dpath = format!("{path}.domain");
        if let Ok(read) = read_domain(d, &dpath) {
            notes.extend(read.notes);
            let dom = read.value;
            match &link.domain_id {
                None => link.domain_id = Some(dom.id.clone()),
                Some(own) if !dom.all_ids().any(|i| i.eq_ignore_ascii_case(own)) => notes.push(
                    format!("{dpath}.id is {:?} but {path}.domain_id is {own:?}", dom.id),
                ),
                Some(_) => {}
            }
            if link.domain_host.is_none() && !dom.domain_name.is_empty() {
                link.domain_host = Some(dom.domain_name);
            }
        }
    }
    Ok(Read { value: link, notes })
}

/// Is the link under a takedown? Read from the forms a server plausibly uses; anything else
/// (absent, `null`, `"none"`, `"cleared"`, `false`) is "no".
fn takedown_flag(map: &Map<String, Value>) -> bool {
    let yes_word = |v: &Value| {
        v.as_str().is_some_and(|s| {
            let s = s.trim().to_ascii_lowercase();
            !matches!(
                s.as_str(),
                "" | "none" | "clear" | "cleared" | "lifted" | "active" | "ok"
            )
        })
    };
    map.get("takedown_status").is_some_and(yes_word)
        || ["taken_down", "is_taken_down"]
            .iter()
            .any(|k| map.get(*k).and_then(Value::as_bool) == Some(true))
        || map
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("taken_down"))
}

/// One page of `GET /api/v1/links`: `{"links": […]}` [n8n], `{"data": […]}`, `items`,
/// `results` or a bare array, with an optional `next_cursor` [assumed]. An entry that is no
/// link is skipped and noted, not fatal.
pub fn parse_link_page(body: &Value) -> Result<(Read<Vec<Link>>, Option<String>), String> {
    let (list, path) = match body {
        Value::Array(a) => (a, "$".to_string()),
        _ => find_list(body, &["links", "data", "items", "results"])
            .ok_or_else(|| format!("$: expected a `links` array, got {}", describe(body)))?,
    };
    let mut notes = Vec::new();
    let mut links = Vec::new();
    for (i, l) in list.iter().enumerate() {
        match read_link(l, &format!("{path}[{i}]")) {
            Ok(read) if read.value.has_identity() => {
                notes.extend(read.notes);
                links.push(read.value);
            }
            Ok(_) => notes.push(format!("skipped {path}[{i}]: no id or slug")),
            Err(e) => notes.push(format!("skipped a link entry: {e}")),
        }
    }
    Ok((
        Read {
            value: links,
            notes,
        },
        next_cursor(body),
    ))
}

/// Does this object look like a link itself (not an envelope around one)?
fn looks_like_link(map: &Map<String, Value>) -> bool {
    URL_ID_KEYS
        .iter()
        .chain(SHORT_CODE_KEYS)
        .chain(&["short_url"])
        .any(|k| map.get(*k).is_some_and(|v| !v.is_null() && !v.is_object()))
}

/// Unwrap `{"link": …}`, `{"data": …}`, `{"data": {"link": …}}`, `{"result": …}` or the bare
/// object [n8n: `link`; assumed: the others]. Returns the object and its path.
fn unwrap_link(body: &Value) -> Result<(&Value, String), String> {
    let mut v = body;
    let mut path = String::from("$");
    for _ in 0..3 {
        let Some(map) = v.as_object() else { break };
        let inner = ["link", "data", "result"]
            .iter()
            .find_map(|k| map.get(*k).filter(|x| x.is_object()).map(|x| (*k, x)));
        match inner {
            Some(("link", x)) => {
                v = x;
                path.push_str(".link");
            }
            Some((k, x)) if !looks_like_link(map) => {
                v = x;
                path.push('.');
                path.push_str(k);
            }
            _ => break,
        }
    }
    if v.is_object() {
        Ok((v, path))
    } else {
        let what = match body {
            Value::Object(m) if m.is_empty() => "an empty object".to_string(),
            Value::Object(m) => format!(
                "an object with keys [{}] and no link in it",
                m.keys().take(12).cloned().collect::<Vec<_>>().join(", ")
            ),
            other => kind_of(other).to_string(),
        };
        Err(format!("{path}: expected a link object, got {what}"))
    }
}

/// Parse a link from a response body (create, find, get): the envelope is unwrapped, then
/// [`read_link`]. The error says what was wrong and where.
pub fn parse_link(body: &Value) -> Result<Read<Link>, String> {
    let (obj, path) = unwrap_link(body)?;
    let read = read_link(obj, &path)?;
    if !read.value.has_identity() && read.value.long_url.is_none() {
        return Err(format!(
            "{path}: expected a link object, got {} (no url_id, id, short_code, short_url or \
             long_url)",
            match obj {
                Value::Object(m) if m.is_empty() => "an empty object".to_string(),
                other => describe(other),
            }
        ));
    }
    Ok(read)
}

/// A short domain of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The id to send (`id`, else `domain_id`).
    pub id: String,
    pub domain_name: String,
    /// Other ids the entry carried (`domain_id` beside a disagreeing `id`): a link object
    /// naming one of them is still on this domain.
    pub alt_ids: Vec<String>,
}

impl Domain {
    pub fn all_ids(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.id).chain(&self.alt_ids)
    }
}

/// Read one domain entry. Needs an id and a host; anything else is ignored.
pub fn read_domain(v: &Value, path: &str) -> Result<Read<Domain>, String> {
    let Some(map) = v.as_object() else {
        return Err(format!(
            "{path}: expected a domain object, got {}",
            kind_of(v)
        ));
    };
    let mut notes = Vec::new();
    let mut o = Obj {
        map,
        path,
        notes: &mut notes,
    };
    let id = o.text(DOMAIN_ENTRY_ID_KEYS);
    let host = o.text(DOMAIN_ENTRY_HOST_KEYS);
    let alt_ids: Vec<String> = DOMAIN_ENTRY_ID_KEYS
        .iter()
        .filter_map(|k| map.get(*k).and_then(scalar_text))
        .filter(|i| Some(i) != id.as_ref())
        .collect();
    match (id, host) {
        (Some(id), Some(domain_name)) => Ok(Read {
            value: Domain {
                id,
                domain_name,
                alt_ids,
            },
            notes,
        }),
        (None, _) => Err(format!("{path}: no `id` or `domain_id`")),
        (_, None) => Err(format!("{path}: no `domain_name`, `hostname` or `domain`")),
    }
}

/// The first array found under one of `keys` (one level of `data` nesting allowed), or the
/// body itself when it is an array.
fn find_list<'a>(body: &'a Value, keys: &[&str]) -> Option<(&'a Vec<Value>, String)> {
    if let Some(a) = body.as_array() {
        return Some((a, "$".into()));
    }
    let map = body.as_object()?;
    for k in keys {
        if let Some(Value::Array(a)) = map.get(*k) {
            return Some((a, format!("$.{k}")));
        }
    }
    if let Some(Value::Object(data)) = map.get("data") {
        for k in keys {
            if let Some(Value::Array(a)) = data.get(*k) {
                return Some((a, format!("$.data.{k}")));
            }
        }
    }
    None
}

/// A paging cursor: top level, or under `meta`/`pagination`/`paging`. Empty or `null` ends.
fn next_cursor(body: &Value) -> Option<String> {
    let direct = body.get("next_cursor");
    let nested = || {
        ["meta", "pagination", "paging"]
            .iter()
            .find_map(|k| body.get(*k).and_then(|m| m.get("next_cursor")))
    };
    direct.or_else(nested).and_then(scalar_text)
}

/// One page of `GET /api/v1/domains`: `{"domains": […]}` [n8n], `{"data": […]}`, a bare
/// array, with an optional `next_cursor` [assumed]. An entry we cannot read is skipped (and
/// noted) rather than failing the whole list.
pub fn parse_domains(body: &Value) -> Result<DomainPage, String> {
    let (list, path) = find_list(body, &["domains", "data", "items", "results"])
        .ok_or_else(|| format!("$: expected a `domains` array, got {}", describe(body)))?;
    let mut notes = Vec::new();
    let mut domains = Vec::new();
    for (i, d) in list.iter().enumerate() {
        match read_domain(d, &format!("{path}[{i}]")) {
            Ok(read) => {
                notes.extend(read.notes);
                domains.push(read.value);
            }
            Err(e) => notes.push(format!("skipped a domain entry: {e}")),
        }
    }
    Ok(DomainPage {
        domains,
        next_cursor: next_cursor(body),
        notes,
    })
}

fn describe(body: &Value) -> String {
    match body {
        Value::Object(m) => format!(
            "an object with keys [{}]",
            m.keys().take(12).cloned().collect::<Vec<_>>().join(", ")
        ),
        other => kind_of(other).to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WhoAmI {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub workspace_name: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Workspace identity (`GET /api/v1/whoami`): which workspace the key belongs to. The path
// and `account_id` / `workspace_name` are [n8n]; using them as the identity a manifest is
// checked against, and the alias keys below, are [assumed].
// ---------------------------------------------------------------------------------------

/// Keys that may carry the account / workspace id, canonical first.
const WHOAMI_ID_KEYS: &[&str] = &[
    "account_id",
    "workspace_id",
    "accountId",
    "workspaceId",
    "id",
];
/// Keys that may carry the workspace's display name, canonical first.
const WHOAMI_NAME_KEYS: &[&str] = &["workspace_name", "workspaceName", "name"];

/// Read a whoami answer: the object itself, or under `data`, `workspace`, `account` (one
/// level); ids may be numbers. A nested `workspace: {id, name}` also counts. Fails only
/// when the body is not an object.
pub fn parse_whoami(body: &Value) -> Result<Read<WhoAmI>, String> {
    let Some(top) = body.as_object() else {
        return Err(format!("$: expected an object, got {}", kind_of(body)));
    };
    let mut notes = Vec::new();
    let mut candidates: Vec<(&Map<String, Value>, String)> = vec![(top, "$".into())];
    for k in ["data", "workspace", "account"] {
        if let Some(Value::Object(inner)) = top.get(k) {
            candidates.push((inner, format!("$.{k}")));
        }
    }
    let mut account_id = None;
    let mut workspace_name = None;
    for (map, path) in &candidates {
        let mut o = Obj {
            map,
            path,
            notes: &mut notes,
        };
        if account_id.is_none() {
            account_id = o.text(WHOAMI_ID_KEYS);
        }
        if workspace_name.is_none() {
            workspace_name = o.text(WHOAMI_NAME_KEYS);
        }
    }
    Ok(Read {
        value: WhoAmI {
            account_id,
            workspace_name,
        },
        notes,
    })
}

/// What a bulk result row says happened to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Created now, or replayed from its idempotency key (`idempotent`).
    Created,
    /// `status: "exists"` without `idempotent`: the slug was already taken; the link must be
    /// looked up before it counts as done.
    Exists,
    /// The server refused the row.
    Error(ApiErrorBody),
    /// The row says neither (an unknown status word and no link): not a usable result.
    Unknown(String),
}

/// One result of a bulk create [assumed envelope:
/// `{"results": [{client_row_id, status, url_id, short_url, short_code, idempotent, error}]}`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkResult {
    pub client_row_id: Option<String>,
    pub status: Option<String>,
    pub link: Link,
    /// `true` when the idempotency key was seen before and the stored link came back.
    pub idempotent: bool,
    pub outcome: RowOutcome,
}

impl BulkResult {
    /// The row's error, if this result is one.
    pub fn row_error(&self) -> Option<ApiErrorBody> {
        match &self.outcome {
            RowOutcome::Error(e) => Some(e.clone()),
            _ => None,
        }
    }
}

const SUCCESS_WORDS: &[&str] = &[
    "created",
    "success",
    "succeeded",
    "ok",
    "done",
    "replayed",
    "idempotent",
];
const ERROR_WORDS: &[&str] = &[
    "error", "failed", "failure", "fail", "rejected", "invalid", "refused",
];

/// A row in one of these states is not settled: resent like a missing one.
const PENDING_WORDS: &[&str] = &["pending", "queued", "processing", "accepted", "in_progress"];

/// Is this `error` value "no error"? `null`, `false`, `""`, `{}`, `[]`, `0` [assumed].
fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.trim().is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// Does a 2xx body (a create answer, a bulk row) carry an error? `error` that is not falsy,
/// `ok: false`, `success: false`, or an error status word. Flat `code`/`message` beside it
/// are the error's words.
pub fn body_error(v: &Value) -> Option<ApiErrorBody> {
    let map = v.as_object()?;
    let status_word = map
        .get("status")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    let said_error = status_word
        .as_deref()
        .is_some_and(|s| ERROR_WORDS.contains(&s))
        || map.get("ok") == Some(&Value::Bool(false))
        || map.get("success") == Some(&Value::Bool(false));
    let error = map.get("error").filter(|e| !is_falsy(e));
    if error.is_none() && !said_error {
        return None;
    }
    let flat = error_fields(v);
    let mut e = match error {
        Some(Value::Object(_)) => error_fields(error.unwrap_or(&Value::Null)),
        Some(Value::String(s)) => ApiErrorBody {
            // `"error": "slug_taken"` names a code; `"error": "Slug taken"` is a message.
            code: looks_like_code(s).then(|| s.trim().to_string()),
            message: Some(s.trim().to_string()),
            ..ApiErrorBody::default()
        },
        _ => ApiErrorBody::default(),
    };
    e.code = e.code.or(flat.code);
    e.message = e.message.or(flat.message);
    e.support_reference = e.support_reference.or(flat.support_reference);
    e.slug_unavailable |= flat.slug_unavailable;
    if e.code.is_none() && e.message.is_none() {
        e.message = Some("the server marked this as an error without details".into());
    }
    Some(e)
}

/// Does a 2xx create answer say `status: "exists"` (not an idempotent replay)? Then the slug
/// was taken and the link must be looked up before it counts as done [assumed].
pub fn body_says_exists(v: &Value) -> bool {
    let word = v
        .get("status")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    matches!(
        word.as_deref(),
        Some("exists" | "already_exists" | "existing")
    ) && v.get("idempotent") != Some(&Value::Bool(true))
}

fn looks_like_code(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.contains('_') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Read one bulk result row.
pub fn read_bulk_result(v: &Value, path: &str) -> Result<Read<BulkResult>, String> {
    let Some(map) = v.as_object() else {
        return Err(format!(
            "{path}: expected a result object, got {}",
            kind_of(v)
        ));
    };
    let Read {
        value: link,
        mut notes,
    } = read_link(v, path)?;
    let client_row_id = {
        let mut o = Obj {
            map,
            path,
            notes: &mut notes,
        };
        o.text(&["client_row_id", "clientRowId", "row_id"])
    };
    let status = map.get("status").and_then(scalar_text);
    let idempotent = matches!(map.get("idempotent"), Some(Value::Bool(true)))
        || matches!(map.get("idempotent"), Some(Value::String(s)) if s.eq_ignore_ascii_case("true"));
    let word = status.as_deref().map(str::to_ascii_lowercase);
    let flat_error = || {
        // `{client_row_id, code, message}` with nothing else: an error given flat.
        let e = error_fields(v);
        (!link.has_identity() && e.code.is_some()).then_some(e)
    };
    let outcome = if let Some(e) = body_error(v) {
        RowOutcome::Error(e)
    } else if matches!(
        word.as_deref(),
        Some("exists" | "already_exists" | "existing")
    ) {
        if idempotent {
            RowOutcome::Created
        } else {
            RowOutcome::Exists
        }
    } else if let Some(e) = flat_error() {
        RowOutcome::Error(e)
    } else if let Some(w) = word.as_deref().filter(|w| PENDING_WORDS.contains(w)) {
        RowOutcome::Unknown(format!("{path}.status is {w:?}: not settled yet"))
    } else if word.as_deref().is_none_or(|w| SUCCESS_WORDS.contains(&w))
        || map.get("ok") == Some(&Value::Bool(true))
        || map.get("success") == Some(&Value::Bool(true))
        || link.has_identity()
    {
        if link.has_identity() {
            RowOutcome::Created
        } else {
            RowOutcome::Unknown(format!("{path} says it succeeded but names no link"))
        }
    } else {
        RowOutcome::Unknown(format!(
            "{path}.status {:?} is not a status this tool knows, and no link came with it",
            status.as_deref().unwrap_or_default()
        ))
    };
    Ok(Read {
        value: BulkResult {
            client_row_id,
            status,
            link,
            idempotent,
            outcome,
        },
        notes,
    })
}

/// `{"results": […]}` [assumed], `rows`, `data`, `{"data": {"results": …}}` or a bare array.
/// One unreadable result does not sink the others: it is noted and its row counts as missing
/// (and is resent).
pub fn parse_bulk_results(body: &Value) -> Result<Read<Vec<BulkResult>>, String> {
    let (list, path) = find_list(body, &["results", "rows", "data", "items", "links"])
        .ok_or_else(|| format!("$: expected a `results` array, got {}", describe(body)))?;
    let mut notes = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        match read_bulk_result(r, &format!("{path}[{i}]")) {
            Ok(read) => {
                notes.extend(read.notes);
                out.push(read.value);
            }
            Err(e) => notes.push(format!("skipped a result: {e}")),
        }
    }
    Ok(Read { value: out, notes })
}

// ---------------------------------------------------------------------------------------
// Never record a lie: is an answer about the link that was sent / asked for?
// ---------------------------------------------------------------------------------------

/// What a link in an answer must agree with.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The slug sent (`None`: the server picks it, nothing to compare).
    pub short_code: Option<&'a str>,
    /// The domain id sent, and any other id its domain entry carried.
    pub domain_ids: &'a [String],
    /// The domain's host, when known.
    pub host: Option<&'a str>,
}

/// DNS names compare case-insensitively and without a trailing dot.
pub fn same_host(a: &str, b: &str) -> bool {
    a.trim()
        .trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim().trim_end_matches('.'))
}

/// `(host, slug)` of a short URL; `None` when it is not an absolute URL.
pub fn split_short_url(short_url: &str) -> Option<(String, String)> {
    let url = url::Url::parse(short_url.trim()).ok()?;
    let host = url.host_str()?.to_string();
    let path = url.path().trim_matches('/');
    let slug = percent_decode(path);
    Some((host, slug))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Why `link` is not the link expected, or `None` when nothing in it disagrees. Only a
/// short-code or domain disagreement makes an answer inconsistent; a missing field is not a
/// disagreement, except that a lookup (`lookup`) must name the slug it answers for.
pub fn link_inconsistency(link: &Link, exp: &Expect<'_>, lookup: bool) -> Option<String> {
    let from_url = link.short_url.as_deref().and_then(split_short_url);
    if let Some(want) = exp.short_code {
        if let Some(code) = &link.short_code
            && code != want
        {
            return Some(format!("the answer is for slug {code:?}, not {want:?}"));
        }
        if let Some((_, slug)) = &from_url
            && slug != want
        {
            return Some(format!(
                "the answer's short_url {:?} is for slug {slug:?}, not {want:?}",
                link.short_url.as_deref().unwrap_or_default()
            ));
        }
        if lookup && link.short_code.is_none() && from_url.is_none() {
            return Some(format!(
                "the lookup answer does not say which slug it is for (asked for {want:?})"
            ));
        }
    }
    if let Some(d) = &link.domain_id
        && !exp.domain_ids.is_empty()
        && !exp.domain_ids.iter().any(|i| i.eq_ignore_ascii_case(d))
    {
        return Some(format!(
            "the answer is on domain id {d:?}, not {:?}",
            exp.domain_ids[0]
        ));
    }
    if let Some(want) = exp.host {
        if let Some(h) = &link.domain_host
            && !same_host(h, want)
        {
            return Some(format!("the answer is on domain {h:?}, not {want:?}"));
        }
        if let Some((h, _)) = &from_url
            && !same_host(h, want)
        {
            return Some(format!(
                "the answer's short_url {:?} is on {h:?}, not {want:?}",
                link.short_url.as_deref().unwrap_or_default()
            ));
        }
    }
    None
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
    /// The body said `available: false` (check-slug style): the slug is taken [doc; 403: n8n].
    pub slug_unavailable: bool,
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
                e.slug_unavailable |= outer.slug_unavailable;
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
                slug_unavailable: false,
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
        slug_unavailable: v.get("available") == Some(&serde_json::Value::Bool(false)),
    }
}

/// Codes compare case-insensitively: Nimriz uses `slug_reserved` and `SERVICE_UNAVAILABLE`
/// styles side by side [doc].
pub fn normalize_code(code: &str) -> String {
    code.trim().to_ascii_lowercase()
}

/// Slug codes that are final: retrying or looking the link up cannot help [doc names].
pub const PERMANENT_SLUG_CODES: &[&str] = &["slug_reserved", "slug_tombstoned", "slug_invalid"];

/// Codes that mean "the slug is already taken", in any casing [assumed: Nimriz documents
/// none; these are the plausible spellings].
pub const SLUG_TAKEN_CODES: &[&str] = &[
    "slug_taken",
    "slug_already_exists",
    "slug_exists",
    "slug_unavailable",
    "duplicate_slug",
    "slug_duplicate",
    "already_exists",
    "conflict",
    "duplicate",
];

/// Is this code one of the "slug taken" spellings (or another `slug_*` code that is not a
/// permanent refusal)?
pub fn is_slug_taken_code(code: &str) -> bool {
    let c = normalize_code(code);
    !PERMANENT_SLUG_CODES.contains(&c.as_str())
        && (SLUG_TAKEN_CODES.contains(&c.as_str())
            || c.starts_with("slug_")
            || c.ends_with("_already_exists"))
}

/// Is this failure "the slug is already taken on that domain"? [assumed]: 409 with any code
/// that is not a permanent slug code; 403/422 (or a 2xx carrying an error, status 0 for a
/// bulk row) with a slug-taken code (see [`is_slug_taken_code`]). A 403 from check-slug may
/// also carry `available: false` instead of a code.
pub fn is_slug_conflict(status: u16, code: Option<&str>) -> bool {
    if code.is_some_and(|c| PERMANENT_SLUG_CODES.contains(&normalize_code(c).as_str())) {
        return false;
    }
    match status {
        409 => true,
        0 | 200..=299 | 403 | 422 => code.is_some_and(is_slug_taken_code),
        _ => false,
    }
}

/// A bulk *row* error code that means "slug taken" (rows carry no HTTP status) [assumed].
pub fn is_slug_conflict_code(code: Option<&str>) -> bool {
    is_slug_conflict(0, code)
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
/// policy...), which refuse one link, not the key [assumed]. On a *create*, a 403 without a
/// code (a WAF page, a check-slug-style `{available: false}`) is only an auth failure when
/// `GET /api/v1/whoami` with the same key is refused too (see `Client::create_refused`).
pub fn is_auth_failure(status: u16, code: Option<&str>) -> bool {
    match status {
        401 => true,
        403 => match code.map(normalize_code) {
            None => true,
            Some(c) if is_slug_taken_code(&c) || c.starts_with("slug_") => false,
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

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
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
        .unwrap()
        .value;
        assert_eq!(l.url_id.as_deref(), Some("u-1"));
        assert_eq!(l.domain_id.as_deref(), Some("7"));
        let top = parse_link(&json!({"url_id": "u-2", "short_url": "https://s/b"}))
            .unwrap()
            .value;
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
        .unwrap()
        .value;
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
        let d = parse_domains(&json!({"domains": [{"id": "d1", "domain_name": "go.acme.example", "verified": true}, {"x": 1}]})).unwrap().domains;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].domain_name, "go.acme.example");
    }
}
