//! The sandbox's data: links, tombstones, idempotency keys and the insert counters, with the
//! validation rules Nimriz documents. Pure logic (no HTTP), so the rules are easy to test and
//! the handlers stay thin. Everything here runs under the one state mutex.

use super::config::{Domain, SandboxConfig};
use nimriz_matrix_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use uuid::Uuid;

/// Slugs no one may take, whatever the domain.
pub use nimriz::facts::RESERVED_SLUGS;
pub const MAX_SLUG_LENGTH: usize = 100;
/// Length of a generated slug when the request names none.
const GENERATED_SLUG_LENGTH: usize = 7;
const STATE_VERSION: u32 = 1;

/// Why a request was refused, before it becomes an HTTP status and an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// Bad input: 400.
    Invalid,
    /// The slug is held by another link: the configured conflict status.
    Conflict,
    /// The slug was deleted recently: 409.
    Gone,
    /// No such link: 404.
    NotFound,
}

impl Rejection {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Invalid,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::NotFound,
            code: "not_found",
            message: message.into(),
        }
    }
}

/// One short link as stored (and persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Link {
    pub url_id: Uuid,
    pub domain_id: Uuid,
    /// Host of the domain, kept with the link so `short_url` survives a restart with
    /// different `--domain` flags.
    pub domain_name: String,
    pub short_code: String,
    pub long_url: String,
    pub expires_at: Option<String>,
    pub redirect_status_code: u16,
    pub tags: Vec<String>,
    pub space: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub password_protected: bool,
    /// Creation order; the paging cursor.
    pub seq: u64,
}

impl Link {
    pub fn short_url(&self) -> String {
        format!("https://{}/{}", self.domain_name, self.short_code)
    }

    /// The link object as the API returns it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url_id": self.url_id,
            "domain_id": self.domain_id,
            "short_code": self.short_code,
            "short_url": self.short_url(),
            "long_url": self.long_url,
            "expires_at": self.expires_at,
            "redirect_status_code": self.redirect_status_code,
            "tags": self.tags,
            "space": self.space,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "password_protected": self.password_protected,
        })
    }
}

/// The create fields shared by `/api/shorten` and each bulk row. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateInput {
    pub domain_id: String,
    pub long_url: String,
    #[serde(default)]
    pub custom_slug: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub redirect_status_code: Option<u16>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub space: Option<String>,
}

/// What a replayed idempotency key returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredResult {
    pub url_id: Uuid,
    pub short_url: String,
    pub short_code: String,
}

/// The whole state. Only the parts in `Persisted` survive a restart.
#[derive(Debug, Default)]
pub struct Store {
    next_seq: u64,
    links: BTreeMap<u64, Link>,
    by_id: HashMap<Uuid, u64>,
    by_slug: HashMap<(Uuid, String), u64>,
    tombstones: HashSet<(Uuid, String)>,
    idempotency: HashMap<String, StoredResult>,
    /// Client inserts per `"<domain_id>/<slug>"`, ever: the duplicate oracle.
    inserts: BTreeMap<String, u64>,
    /// Links added through `/__sandbox/seed` (not client inserts).
    seeded: u64,
    /// The workspace identity `whoami` answers (`account_id`). New on every start without
    /// `--state`; kept in the state file otherwise, so a manifest can tell the sandbox it
    /// was built against from a restarted, empty one.
    workspace_id: String,
    /// The identity was made on this start (not read from a state file).
    workspace_is_new: bool,
}

/// The state file (`--state`), version 1.
#[derive(Deserialize)]
struct Persisted {
    version: u32,
    next_seq: u64,
    links: Vec<Link>,
    tombstones: Vec<Tombstone>,
    idempotency: BTreeMap<String, StoredResult>,
    inserts: BTreeMap<String, u64>,
    seeded: u64,
    /// Absent in state files written before the sandbox had an identity.
    #[serde(default)]
    workspace_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Tombstone {
    domain_id: Uuid,
    slug: String,
}

pub use nimriz_matrix_core::manifest::now_rfc3339;

/// A new, unique workspace identity.
fn new_workspace_id() -> String {
    format!("acct_sandbox_{}", Uuid::new_v4().simple())
}

impl Store {
    /// An empty store with a new workspace identity (a sandbox started without `--state`).
    pub fn fresh() -> Self {
        Store {
            workspace_id: new_workspace_id(),
            workspace_is_new: true,
            ..Store::default()
        }
    }

    /// The `account_id` whoami answers.
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    /// The identity was made on this start: a state file should be written now so it
    /// survives a restart that happens before the first change.
    pub fn workspace_is_new(&self) -> bool {
        self.workspace_is_new
    }

    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    pub fn all_links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    pub fn inserts(&self) -> &BTreeMap<String, u64> {
        &self.inserts
    }

    pub fn seeded(&self) -> u64 {
        self.seeded
    }

    pub fn idempotent(&self, key: &str) -> Option<&StoredResult> {
        self.idempotency.get(key)
    }

    pub fn remember_idempotency(&mut self, key: String, result: StoredResult) {
        self.idempotency.insert(key, result);
    }

    pub fn get(&self, url_id: Uuid) -> Option<&Link> {
        self.by_id.get(&url_id).and_then(|seq| self.links.get(seq))
    }

    pub fn find(&self, domain_id: Uuid, short_code: &str) -> Option<&Link> {
        self.by_slug
            .get(&(domain_id, short_code.to_owned()))
            .and_then(|seq| self.links.get(seq))
    }

    /// Links after the cursor (a `seq`), in creation order; the last `seq` when more follow.
    pub fn page(&self, after: Option<u64>, limit: usize) -> (Vec<&Link>, Option<u64>) {
        let start = after.map_or(0, |s| s.saturating_add(1));
        let mut iter = self.links.range(start..).map(|(_, l)| l);
        let page: Vec<&Link> = iter.by_ref().take(limit).collect();
        let next = match (page.last(), iter.next()) {
            (Some(last), Some(_)) => Some(last.seq),
            _ => None,
        };
        (page, next)
    }

    /// Check a slug for `domain_id` without changing anything. `own` is the link being
    /// renamed (its current slug is not a conflict with itself).
    pub fn check_slug(
        &self,
        config: &SandboxConfig,
        domain_id: Uuid,
        slug: &str,
        own: Option<Uuid>,
    ) -> Result<(), Rejection> {
        validate_slug_shape(slug, config.min_slug_length)?;
        if let Some(link) = self.find(domain_id, slug) {
            if Some(link.url_id) == own {
                return Ok(());
            }
            return Err(Rejection {
                kind: RejectionKind::Conflict,
                code: "slug_taken",
                message: format!("the slug {slug:?} is already taken on this domain"),
            });
        }
        if self.tombstones.contains(&(domain_id, slug.to_owned())) {
            return Err(Rejection {
                kind: RejectionKind::Gone,
                code: "slug_tombstoned",
                message: format!(
                    "the slug {slug:?} belonged to a deleted link and cannot be reused yet"
                ),
            });
        }
        Ok(())
    }

    /// Validate and insert one client link. Counts the insert (the duplicate oracle).
    pub fn create(
        &mut self,
        config: &SandboxConfig,
        input: CreateInput,
    ) -> Result<&Link, Rejection> {
        let domain = resolve_domain(config, &input.domain_id)?.clone();
        let long_url = validate_destination(config, &input.long_url)?;
        let expires_at = validate_expiry(input.expires_at.as_deref())?;
        let redirect_status_code = match input.redirect_status_code {
            None => 302,
            Some(code @ (301 | 302)) => code,
            Some(other) => {
                return Err(Rejection::invalid(
                    "invalid_redirect_status",
                    format!("redirect_status_code {other} is not allowed; use 301 or 302"),
                ));
            }
        };
        let slug = match input.custom_slug {
            Some(slug) => {
                self.check_slug(config, domain.id, &slug, None)?;
                slug
            }
            None => self.fresh_slug(domain.id),
        };
        let now = now_rfc3339();
        let link = Link {
            url_id: Uuid::new_v4(),
            domain_id: domain.id,
            domain_name: domain.domain_name,
            short_code: slug,
            long_url,
            expires_at,
            redirect_status_code,
            tags: input.tags.unwrap_or_default(),
            space: input.space,
            created_at: now.clone(),
            updated_at: now,
            password_protected: false,
            seq: 0,
        };
        *self
            .inserts
            .entry(format!("{}/{}", link.domain_id, link.short_code))
            .or_insert(0) += 1;
        Ok(self.insert(link))
    }

    /// Add a link without validation beyond domain and uniqueness (`/__sandbox/seed`).
    pub fn seed(
        &mut self,
        domain: &Domain,
        short_code: String,
        long_url: String,
    ) -> Result<&Link, Rejection> {
        if self.find(domain.id, &short_code).is_some() {
            return Err(Rejection {
                kind: RejectionKind::Conflict,
                code: "slug_taken",
                message: format!("the slug {short_code:?} is already taken on this domain"),
            });
        }
        let now = now_rfc3339();
        self.seeded += 1;
        Ok(self.insert(Link {
            url_id: Uuid::new_v4(),
            domain_id: domain.id,
            domain_name: domain.domain_name.clone(),
            short_code,
            long_url,
            expires_at: None,
            redirect_status_code: 302,
            tags: Vec::new(),
            space: None,
            created_at: now.clone(),
            updated_at: now,
            password_protected: false,
            seq: 0,
        }))
    }

    fn insert(&mut self, mut link: Link) -> &Link {
        let seq = self.next_seq;
        self.next_seq += 1;
        link.seq = seq;
        self.by_id.insert(link.url_id, seq);
        self.by_slug
            .insert((link.domain_id, link.short_code.clone()), seq);
        self.links.entry(seq).or_insert(link)
    }

    fn fresh_slug(&self, domain_id: Uuid) -> String {
        use rand::RngExt;
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        loop {
            let slug: String = (0..GENERATED_SLUG_LENGTH)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            let key = (domain_id, slug.clone());
            if !self.by_slug.contains_key(&key) && !self.tombstones.contains(&key) {
                return slug;
            }
        }
    }

    fn link_mut(&mut self, url_id: Uuid) -> Result<&mut Link, Rejection> {
        let seq = self
            .by_id
            .get(&url_id)
            .copied()
            .ok_or_else(|| Rejection::not_found(format!("no link with url_id {url_id}")))?;
        self.links
            .get_mut(&seq)
            .ok_or_else(|| Rejection::not_found(format!("no link with url_id {url_id}")))
    }

    pub fn update_destination(
        &mut self,
        config: &SandboxConfig,
        url_id: Uuid,
        long_url: &str,
    ) -> Result<&Link, Rejection> {
        let long_url = validate_destination(config, long_url)?;
        let link = self.link_mut(url_id)?;
        link.long_url = long_url;
        link.updated_at = now_rfc3339();
        Ok(link)
    }

    pub fn update_slug(
        &mut self,
        config: &SandboxConfig,
        url_id: Uuid,
        new_slug: &str,
    ) -> Result<&Link, Rejection> {
        let (domain_id, old_slug, seq) = {
            let link = self.link_mut(url_id)?;
            (link.domain_id, link.short_code.clone(), link.seq)
        };
        self.check_slug(config, domain_id, new_slug, Some(url_id))?;
        if old_slug != new_slug {
            self.by_slug.remove(&(domain_id, old_slug.clone()));
            self.tombstones.insert((domain_id, old_slug));
            self.by_slug.insert((domain_id, new_slug.to_owned()), seq);
        }
        let link = self.link_mut(url_id)?;
        link.short_code = new_slug.to_owned();
        link.updated_at = now_rfc3339();
        Ok(link)
    }

    pub fn update_expiration(
        &mut self,
        url_id: Uuid,
        expires_at: Option<&str>,
    ) -> Result<&Link, Rejection> {
        let expires_at = validate_expiry(expires_at)?;
        let link = self.link_mut(url_id)?;
        link.expires_at = expires_at;
        link.updated_at = now_rfc3339();
        Ok(link)
    }

    pub fn update_password(
        &mut self,
        url_id: Uuid,
        password: Option<&str>,
    ) -> Result<&Link, Rejection> {
        if password.is_some_and(str::is_empty) {
            return Err(Rejection::invalid(
                "invalid_password",
                "password must not be empty; send null to clear it",
            ));
        }
        let link = self.link_mut(url_id)?;
        // The sandbox only remembers that a password is set, never the password.
        link.password_protected = password.is_some();
        link.updated_at = now_rfc3339();
        Ok(link)
    }

    /// Remove the link; its slug is tombstoned on its domain.
    pub fn delete(&mut self, url_id: Uuid) -> Result<Link, Rejection> {
        let seq = self
            .by_id
            .remove(&url_id)
            .ok_or_else(|| Rejection::not_found(format!("no link with url_id {url_id}")))?;
        let link = self
            .links
            .remove(&seq)
            .ok_or_else(|| Rejection::not_found(format!("no link with url_id {url_id}")))?;
        let key = (link.domain_id, link.short_code.clone());
        self.by_slug.remove(&key);
        self.tombstones.insert(key);
        Ok(link)
    }

    /// Read a state file written by `save`. A missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::fresh()),
            Err(e) => return Err(Error::io("read the sandbox state", path, e)),
        };
        let persisted: Persisted = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "the sandbox state {} is not a state file this version can read ({e}); \
                 move it away to start empty",
                path.display()
            ))
        })?;
        if persisted.version != STATE_VERSION {
            return Err(Error::Usage(format!(
                "the sandbox state {} has version {}, expected {STATE_VERSION}; move it away to start empty",
                path.display(),
                persisted.version
            )));
        }
        let mut store = Store {
            next_seq: persisted.next_seq,
            tombstones: persisted
                .tombstones
                .into_iter()
                .map(|t| (t.domain_id, t.slug))
                .collect(),
            idempotency: persisted.idempotency.into_iter().collect(),
            inserts: persisted.inserts,
            seeded: persisted.seeded,
            workspace_is_new: persisted.workspace_id.is_none(),
            workspace_id: persisted.workspace_id.unwrap_or_else(new_workspace_id),
            ..Store::default()
        };
        for link in persisted.links {
            // Keep `next_seq` ahead of every stored link even if the file was edited by hand.
            store.next_seq = store.next_seq.max(link.seq.saturating_add(1));
            store.by_id.insert(link.url_id, link.seq);
            store
                .by_slug
                .insert((link.domain_id, link.short_code.clone()), link.seq);
            store.links.insert(link.seq, link);
        }
        Ok(store)
    }

    /// Write the state atomically (the manifest's `write_atomic`: temp file, fsync, rename,
    /// fsync folder). A crash at any point leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        // Borrowed mirror of `Persisted`: no clone of the whole store per write.
        #[derive(Serialize)]
        struct PersistedRef<'a> {
            version: u32,
            next_seq: u64,
            links: Vec<&'a Link>,
            tombstones: Vec<Tombstone>,
            idempotency: BTreeMap<&'a str, &'a StoredResult>,
            inserts: &'a BTreeMap<String, u64>,
            seeded: u64,
            workspace_id: &'a str,
        }
        let persisted = PersistedRef {
            version: STATE_VERSION,
            next_seq: self.next_seq,
            links: self.links.values().collect(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(domain_id, slug)| Tombstone {
                    domain_id: *domain_id,
                    slug: slug.clone(),
                })
                .collect(),
            idempotency: self
                .idempotency
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            inserts: &self.inserts,
            seeded: self.seeded,
            workspace_id: &self.workspace_id,
        };
        let bytes = serde_json::to_vec(&persisted).map_err(std::io::Error::other)?;
        nimriz_matrix_core::manifest::write_atomic(path, |w| w.write_all(&bytes))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

pub fn resolve_domain<'c>(
    config: &'c SandboxConfig,
    domain_id: &str,
) -> Result<&'c Domain, Rejection> {
    Uuid::parse_str(domain_id.trim())
        .ok()
        .and_then(|id| config.domains.iter().find(|d| d.id == id))
        .ok_or_else(|| {
            Rejection::invalid(
                "unknown_domain",
                format!(
                    "domain_id {domain_id:?} is not a domain of this workspace; GET /api/v1/domains lists them"
                ),
            )
        })
}

/// Reserved names, then characters and length, then the minimum length.
pub fn validate_slug_shape(slug: &str, min_len: usize) -> Result<(), Rejection> {
    if RESERVED_SLUGS.iter().any(|r| r.eq_ignore_ascii_case(slug)) {
        return Err(Rejection::invalid(
            "slug_reserved",
            format!("the slug {slug:?} is reserved"),
        ));
    }
    if slug.len() > MAX_SLUG_LENGTH {
        return Err(Rejection::invalid(
            "slug_invalid",
            format!("slugs are at most {MAX_SLUG_LENGTH} characters"),
        ));
    }
    if let Some(bad) = slug
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(Rejection::invalid(
            "slug_invalid",
            format!("the slug {slug:?} contains {bad:?}; use letters, digits, '-' and '_'"),
        ));
    }
    if slug.chars().count() < min_len {
        return Err(Rejection::invalid(
            "slug_reserved",
            format!("slugs shorter than {min_len} characters are reserved"),
        ));
    }
    Ok(())
}

/// Check a destination; returns it unchanged.
pub fn validate_destination(config: &SandboxConfig, raw: &str) -> Result<String, Rejection> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        Rejection::invalid(
            "invalid_destination",
            format!("long_url {raw:?} is not a valid absolute URL ({e})"),
        )
    })?;
    let scheme_ok = url.scheme() == "https" || (config.allow_http && url.scheme() == "http");
    if !scheme_ok {
        let allowed = if config.allow_http {
            "https or http"
        } else {
            "https"
        };
        return Err(Rejection::invalid(
            "invalid_destination",
            format!(
                "long_url scheme {:?} is not allowed; use {allowed}",
                url.scheme()
            ),
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(Rejection::invalid(
            "invalid_destination",
            "long_url has no host",
        ));
    };
    if config.is_short_host(host) {
        return Err(Rejection::invalid(
            "destination_loop",
            format!("long_url points at the short domain {host}; that would redirect in a loop"),
        ));
    }
    // Stored exactly as sent, not re-serialised by the url crate (which would add a trailing
    // slash, lowercase the host, ...): clients compare destinations to detect drift.
    Ok(raw.to_owned())
}

fn validate_expiry(raw: Option<&str>) -> Result<Option<String>, Rejection> {
    match raw {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|_| Some(s.to_owned()))
            .map_err(|_| {
                Rejection::invalid(
                    "invalid_expiration",
                    format!(
                        "expires_at {s:?} is not an ISO-8601 time such as 2027-01-31T23:59:59Z"
                    ),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(slug: Option<&str>, url: &str) -> CreateInput {
        CreateInput {
            domain_id: super::super::config::DEFAULT_BRANDED_ID.to_string(),
            long_url: url.into(),
            custom_slug: slug.map(Into::into),
            expires_at: None,
            redirect_status_code: None,
            tags: None,
            space: None,
        }
    }

    #[test]
    fn slug_rules() {
        assert_eq!(
            validate_slug_shape("admin", 4).unwrap_err().code,
            "slug_reserved"
        );
        assert_eq!(
            validate_slug_shape(".well-known", 4).unwrap_err().code,
            "slug_reserved"
        );
        assert_eq!(
            validate_slug_shape("abc", 4).unwrap_err().code,
            "slug_reserved"
        );
        assert_eq!(
            validate_slug_shape("a b c d", 4).unwrap_err().code,
            "slug_invalid"
        );
        assert_eq!(
            validate_slug_shape(&"a".repeat(101), 4).unwrap_err().code,
            "slug_invalid"
        );
        assert!(validate_slug_shape(&"a".repeat(100), 4).is_ok());
        assert!(validate_slug_shape("Spring_sale-2027", 4).is_ok());
    }

    #[test]
    fn page_walks_in_order_and_survives_deletes() {
        let config = SandboxConfig::default();
        let mut store = Store::default();
        let ids: Vec<Uuid> = (0..5)
            .map(|i| {
                store
                    .create(
                        &config,
                        input(Some(&format!("slug{i}")), "https://example.com/"),
                    )
                    .unwrap()
                    .url_id
            })
            .collect();
        let (first, next) = store.page(None, 2);
        assert_eq!(first.len(), 2);
        let next = next.unwrap();
        store.delete(ids[2]).unwrap();
        let (rest, next2) = store.page(Some(next), 10);
        assert_eq!(
            rest.iter().map(|l| l.url_id).collect::<Vec<_>>(),
            vec![ids[3], ids[4]]
        );
        assert_eq!(next2, None);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let config = SandboxConfig::default();
        let mut store = Store::default();
        let link = store
            .create(&config, input(Some("keepme"), "https://example.com/a"))
            .unwrap()
            .clone();
        store.remember_idempotency(
            "k1".into(),
            StoredResult {
                url_id: link.url_id,
                short_url: link.short_url(),
                short_code: link.short_code.clone(),
            },
        );
        let gone = store
            .create(&config, input(Some("gone1"), "https://example.com/b"))
            .unwrap()
            .url_id;
        store.delete(gone).unwrap();
        store.save(&path).unwrap();
        let loaded = Store::load(&path).unwrap();
        assert_eq!(loaded.get(link.url_id).unwrap().short_code, "keepme");
        assert!(loaded.idempotent("k1").is_some());
        assert_eq!(
            loaded
                .check_slug(&config, link.domain_id, "gone1", None)
                .unwrap_err()
                .code,
            "slug_tombstoned"
        );
        assert_eq!(loaded.inserts().values().sum::<u64>(), 2);
        assert!(
            Store::load(&dir.path().join("missing.json"))
                .unwrap()
                .link_count()
                == 0
        );
        std::fs::write(&path, b"not json").unwrap();
        assert!(Store::load(&path).is_err());
    }
}
