//! The manifest's data: what a build asked for, what it created, what failed, and when.
//!
//! Read leniently (unknown fields are ignored, missing optional fields default) so manifests
//! written by older or newer versions still load; written in full (every field, `null` when
//! absent) so the committed JSON Schema (`schema/manifest.schema.json`) can require them.
//!
//! Invariants the schema checks, which writers (apply) must keep:
//! - `failed` has an `error`;
//! - `created` / `exists` have a `url_id` and a `short_url`;
//! - `drift` has an `existing_destination` (what Nimriz redirects to now).

use crate::model::{Cell, DomainRef, PlanSource};
use serde::{Deserialize, Serialize};

/// The manifest format version this code writes. Bumped only for changes an older reader
/// would misread; adding a field is not such a change.
pub const SCHEMA_VERSION: u32 = 1;
/// The `tool` value in every manifest this program writes.
pub const TOOL_NAME: &str = "nimriz-matrix";

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// Recorded before its create request was sent; no answer recorded yet.
    Pending,
    Created,
    /// Nimriz already had this slug with this destination (earlier run, or outside us).
    Exists,
    /// Nimriz has this slug with a different destination; left untouched.
    Drift,
    Failed,
    /// The link is gone from Nimriz: `refresh` got 404 for its `url_id`, or `retire
    /// --delete` deleted it. A spec that still plans it creates it again.
    Deleted,
}

impl LinkStatus {
    /// The link exists on Nimriz as planned: never send it again.
    pub fn is_done(self) -> bool {
        matches!(self, LinkStatus::Created | LinkStatus::Exists)
    }

    /// The word used in the manifest and in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Pending => "pending",
            LinkStatus::Created => "created",
            LinkStatus::Exists => "exists",
            LinkStatus::Drift => "drift",
            LinkStatus::Failed => "failed",
            LinkStatus::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RecordedError {
    /// The server's code, e.g. `slug_reserved`, or ours, e.g. `slug_taken_elsewhere`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human message, including what to do.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub support_reference: Option<String>,
    #[serde(default)]
    pub http_status: Option<u16>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LinkRecord {
    /// Record identity: `"{domain.key()}/{slug}"`; see [`LinkRecord::key_for`].
    pub key: String,
    pub cell: Cell,
    pub slug: String,
    /// As planned, with `id` filled in once resolved.
    pub domain: DomainRef,
    /// The planned destination.
    pub destination: String,
    /// The UTM parameters the destination carries, by full name (`utm_source` …), as the
    /// spec set them. Manifests written before this field have none recorded (`{}`).
    #[serde(default)]
    pub utm: std::collections::BTreeMap<String, String>,
    pub idempotency_key: String,
    pub status: LinkStatus,
    #[serde(default)]
    pub short_url: Option<String>,
    #[serde(default)]
    pub url_id: Option<String>,
    /// For `drift`: what Nimriz redirects to now.
    #[serde(default)]
    pub existing_destination: Option<String>,
    /// The tags the link was created with, as the spec set them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When `export --qr` last wrote a code for this link (RFC 3339 UTC): printed codes
    /// encode the slug and domain, so a plan that would change either refuses without
    /// `--break-printed`. `null`: never exported as a code.
    #[serde(default)]
    pub printed_at: Option<String>,
    #[serde(default)]
    pub error: Option<RecordedError>,
    /// Planned expiry (ISO-8601) as last applied; `null`: none, or a manifest written
    /// before expiries were recorded.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Planned redirect status (301/302); `null` in manifests written before it was recorded.
    #[serde(default)]
    pub redirect: Option<u16>,
    /// Planned space, if any (Nimriz has no call to change it later).
    #[serde(default)]
    pub space: Option<String>,
    /// Who made the link: `created` (this tool's create), `adopted` (`import` matched an
    /// existing link to a cell). `null`: found existing on a create, or recorded before
    /// origins were; `retire --delete` only deletes `created`.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// What `refresh` last found changed on Nimriz outside the spec (`null`: nothing).
    #[serde(default)]
    pub outside: Option<OutsideChange>,
    /// Set when `retire` pointed the link at a fallback, expired it or deleted it.
    #[serde(default)]
    pub retired: Option<Retirement>,
    /// Every change made to the live link after its create, oldest first.
    #[serde(default)]
    pub history: Vec<Change>,
    /// Create requests that carried this row, across all runs.
    #[serde(default)]
    pub attempts: u32,
    /// RFC 3339 UTC; see [`now_rfc3339`].
    #[serde(default)]
    pub updated_at: String,
}

/// Who made a recorded link (see [`LinkRecord::origin`]).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Created,
    Adopted,
}

/// What `refresh` saw on Nimriz that differs from the record. Only differing fields are set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct OutsideChange {
    /// When it was seen (RFC 3339 UTC).
    pub seen_at: String,
    #[serde(default)]
    pub destination: Option<String>,
    /// The live expiry, when it differs (`""`: the live link has none while the record has one).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The live slug, when someone renamed the link.
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub taken_down: bool,
}

/// One change made to a live link by this tool (`build --update`, `retire`, a rename) or
/// found by `refresh`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Change {
    /// RFC 3339 UTC.
    pub at: String,
    /// `update-destination`, `update-expiration`, `update-slug`, `delete`, `adopt`, or
    /// `refresh` (an outside change that was seen, not made).
    pub action: String,
    /// `destination`, `expires_at`, `slug`, `link`.
    pub field: String,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
}

/// How a link was retired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Retirement {
    pub at: String,
    /// `fallback`, `expire` or `delete`.
    pub how: String,
    /// The fallback URL or the expiry time; `null` for a delete.
    #[serde(default)]
    pub value: Option<String>,
}

/// [`LinkRecord::planned_fingerprint`] from the fields themselves, so a summary read from
/// borrowed fields (`store.rs`) digests exactly as one of a parsed record.
pub(crate) fn planned_digest<S: AsRef<str>>(
    destination: &str,
    expires_at: Option<&str>,
    redirect: Option<u16>,
    tags: &[S],
    space: Option<&str>,
) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |seed: u8| {
        let mut h = std::hash::DefaultHasher::new();
        seed.hash(&mut h);
        destination.hash(&mut h);
        expires_at.hash(&mut h);
        redirect.hash(&mut h);
        tags.len().hash(&mut h);
        for t in tags {
            t.as_ref().hash(&mut h);
        }
        space.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// What a build needs to know of a record without parsing it: enough to skip a link that
/// is done and unchanged (see [`LinkRecord::planned_fingerprint`]), and to count results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSummary {
    pub status: LinkStatus,
    pub retired: bool,
    /// `refresh` recorded an outside change.
    pub outside: bool,
    pub printed: bool,
    /// [`LinkRecord::planned_fingerprint`] of the record.
    pub planned: u128,
}

impl LinkSummary {
    pub fn of(rec: &LinkRecord) -> Self {
        LinkSummary {
            status: rec.status,
            retired: rec.retired.is_some(),
            outside: rec.outside.is_some(),
            printed: rec.printed_at.is_some(),
            planned: rec.planned_fingerprint(),
        }
    }
}

impl LinkRecord {
    /// A 128-bit digest of the fields a spec change can touch on a live link (destination,
    /// expiry, redirect, tags, space): equal digests mean `field_changes` finds nothing.
    /// Only compared within one process (std's SipHash with fixed keys).
    pub fn planned_fingerprint(&self) -> u128 {
        planned_digest(
            &self.destination,
            self.expires_at.as_deref(),
            self.redirect,
            &self.tags,
            self.space.as_deref(),
        )
    }

    /// The record key for a link: `"{domain.key()}/{slug}"`.
    pub fn key_for(domain: &DomainRef, slug: &str) -> String {
        format!("{}/{}", domain.key(), slug)
    }

    /// Is the link (as far as the record knows) live on Nimriz: settled with an id?
    /// Retired links are live too (a fallback or an expiry leaves them there).
    pub fn is_live(&self) -> bool {
        self.url_id.is_some()
            && matches!(
                self.status,
                LinkStatus::Created | LinkStatus::Exists | LinkStatus::Drift
            )
    }

    /// What people recognise the link by: its short URL, else `host/slug`, else the key.
    pub fn name(&self) -> String {
        self.short_url
            .clone()
            .unwrap_or_else(|| match &self.domain.host {
                Some(h) => format!("{h}/{}", self.slug),
                None => self.key.clone(),
            })
    }

    /// [`LinkRecord::name`] with the cell, for reports: `https://go.x/a-v1 (brand=a,…)`.
    pub fn label(&self) -> String {
        if self.cell.0.is_empty() {
            self.name()
        } else {
            format!("{} ({})", self.name(), self.cell.label())
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(default)]
pub struct RunCounts {
    pub planned: usize,
    pub created: usize,
    pub exists: usize,
    pub drift: usize,
    pub failed: usize,
    pub pending: usize,
    /// Links already done by an earlier run, not sent this time.
    pub skipped_done: usize,
    /// Live links changed in place (`build --update`).
    pub updated: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub started_at: String,
    /// `null` while running, and forever for a run that crashed before `finish`.
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub tool_version: String,
    #[serde(default)]
    pub counts: Option<RunCounts>,
    /// `"completed"` | `"partial"` | `"interrupted"` | `"aborted: <why>"`.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// Which workspace a manifest's links were created in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceRecord {
    /// Host of the API base (as `api_host`).
    pub host: String,
    /// `account_id` from whoami; `None` when the API did not say.
    #[serde(default)]
    pub account_id: Option<String>,
    /// `workspace_name` from whoami (for messages only; never compared).
    #[serde(default)]
    pub workspace_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub schema_version: u32,
    pub tool: String,
    pub tool_version: String,
    /// Spec path + SHA-256, input CSVs + SHA-256, campaign, resolved spec.
    pub source: PlanSource,
    /// Host of the API base only: never the key, never a URL with credentials.
    #[serde(default)]
    pub api_host: Option<String>,
    /// The workspace the links live in (`GET /api/v1/whoami`), checked by every build
    /// (`apply/workspace.rs`). Absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceRecord>,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    /// In plan order (order of first appearance).
    #[serde(default)]
    pub links: Vec<LinkRecord>,
}

impl Manifest {
    /// An empty manifest for this version of the tool.
    pub fn new(source: PlanSource, api_host: Option<String>) -> Self {
        Manifest {
            schema_version: SCHEMA_VERSION,
            tool: TOOL_NAME.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            source,
            api_host,
            workspace: None,
            runs: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// Now, as RFC 3339 UTC with second precision (`2026-11-27T09:45:19Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
