//! One action for every planned link and every record.
//!
//! Matching is by (domain, slug): a record matches a planned link when their slugs are equal
//! and the record's domain id or host is the planned one's (the plan is offline, so a spec
//! that names a host has no domain id yet). Normalising hosts is `facts::normalize_host`'s
//! job (case and a trailing dot, nothing else: Nimriz matches hosts strictly).

use crate::manifest::{LinkRecord, LinkStatus, Manifest};
pub use crate::model::Moved;
use crate::model::{Cell, DomainRef, PlannedLink};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a build would do with one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Not on Nimriz yet (or never settled, or deleted there): a create.
    Create,
    /// A live link whose destination or expiry the spec changed: updated in place.
    Update,
    /// A `[[moved]]` entry: the live link gets its new slug (`update-slug`), keeping its id.
    Rename,
    /// Recorded and live, no longer in the spec.
    Orphan,
    /// Nimriz redirects somewhere the spec did not say (found by a build or `refresh`).
    Drift,
    /// A change Nimriz has no update call for (redirect status, tags, space).
    CannotUpdate,
    Unchanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Rename => "rename",
            Action::Orphan => "orphan",
            Action::Drift => "drift",
            Action::CannotUpdate => "cannot-update",
            Action::Unchanged => "unchanged",
        }
    }
}

/// One field that differs between the record (`old`) and the spec (`new`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `destination`, `expires_at`, `slug`, `redirect`, `tags`, `space`.
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// Nimriz has a call that changes it in place.
    pub updatable: bool,
}

/// The fields of a planned link that `build --update` can compare (see [`field_changes`]).
#[derive(Debug, Clone, Copy)]
pub struct PlannedFields<'a> {
    pub destination: &'a str,
    pub expires_at: Option<&'a str>,
    pub redirect: u16,
    pub tags: &'a [String],
    pub space: Option<&'a str>,
}

impl<'a> From<&'a PlannedLink> for PlannedFields<'a> {
    fn from(l: &'a PlannedLink) -> Self {
        PlannedFields {
            destination: &l.destination,
            expires_at: l.expires_at.as_deref(),
            redirect: l.redirect,
            tags: &l.tags,
            space: l.space.as_deref(),
        }
    }
}

/// How a live record differs from its planned link. Fields a manifest did not record
/// (written before redirect/space were) are not compared: unknown is not a change.
pub fn field_changes(rec: &LinkRecord, planned: PlannedFields<'_>) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if rec.destination != planned.destination {
        out.push(FieldChange {
            field: "destination".into(),
            old: Some(rec.destination.clone()),
            new: Some(planned.destination.to_string()),
            updatable: true,
        });
    }
    if !same_instant(rec.expires_at.as_deref(), planned.expires_at) {
        out.push(FieldChange {
            field: "expires_at".into(),
            old: rec.expires_at.clone(),
            new: planned.expires_at.map(str::to_string),
            updatable: true,
        });
    }
    // A record with `redirect` was written by a version that records redirect and space.
    if let Some(was) = rec.redirect {
        if was != planned.redirect {
            out.push(FieldChange {
                field: "redirect".into(),
                old: Some(was.to_string()),
                new: Some(planned.redirect.to_string()),
                updatable: false,
            });
        }
        if rec.space.as_deref() != planned.space {
            out.push(FieldChange {
                field: "space".into(),
                old: rec.space.clone(),
                new: planned.space.map(str::to_string),
                updatable: false,
            });
        }
        if rec.tags != planned.tags {
            out.push(FieldChange {
                field: "tags".into(),
                old: Some(rec.tags.join(",")),
                new: Some(planned.tags.join(",")),
                updatable: false,
            });
        }
    }
    out
}

/// Two optional ISO-8601 times are the same instant (a server may rewrite `+00:00` as `Z`).
pub(crate) fn same_instant(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a == b
                || matches!(
                    (
                        chrono::DateTime::parse_from_rfc3339(a),
                        chrono::DateTime::parse_from_rfc3339(b)
                    ),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        _ => false,
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub action: Action,
    pub cell: Cell,
    pub slug: String,
    pub domain: DomainRef,
    /// Recorded or planned short URL.
    pub short_url: Option<String>,
    /// The live link's id, when the record has one.
    pub url_id: Option<String>,
    /// Old → new, per field (for update, rename, drift and cannot-update).
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    /// What to do, or why (e.g. "the slug changed without [[moved]]").
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub rename: usize,
    pub orphan: usize,
    pub drift: usize,
    pub cannot_update: usize,
    pub unchanged: usize,
}

impl Counts {
    /// Anything but unchanged: `--detailed-exitcode` exits 2.
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.rename + self.orphan + self.drift + self.cannot_update > 0
    }

    fn add(&mut self, a: Action) {
        match a {
            Action::Create => self.create += 1,
            Action::Update => self.update += 1,
            Action::Rename => self.rename += 1,
            Action::Orphan => self.orphan += 1,
            Action::Drift => self.drift += 1,
            Action::CannotUpdate => self.cannot_update += 1,
            Action::Unchanged => self.unchanged += 1,
        }
    }
}

/// The whole comparison: entries in plan order, then orphans in record order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classified {
    pub entries: Vec<Entry>,
    pub counts: Counts,
    /// Links whose QR codes were exported (`printed_at`) and that this plan would rename or
    /// leave behind (a new slug or domain for their cell): the printed codes would break.
    pub breaks_printed: Vec<String>,
}

impl Classified {
    /// Refuse a plan that breaks printed codes, unless the user says the print run is void.
    pub fn check_printed(&self, break_printed: bool) -> crate::Result<()> {
        if break_printed {
            return Ok(());
        }
        refuse_printed(&self.breaks_printed)
    }
}

/// `Err` naming the printed links a plan or build would rename or leave behind (`names`;
/// none: `Ok`). The one message for `plan` and `build`.
pub(crate) fn refuse_printed(names: &[String]) -> crate::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let n = names.len();
    let mut shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = n.saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    shown.sort_unstable();
    Err(crate::Error::Usage(format!(
        "{n} printed link(s) would change slug or domain: {}{tail}. Their QR codes were \
             exported for print (`printed_at` in the manifest): a rename makes the printed \
             code stop working, a new slug leaves it on a link the campaign no longer \
             manages. Keep the slug and domain (destinations can change freely), or pass \
             --break-printed if that print run is void",
        shown.join(", ")
    )))
}

/// Matching keys of a domain: by host (normalised) or by id; `import` matches the same way.
pub(crate) fn host_token(h: &str) -> String {
    format!("h:{}", nimriz::facts::normalize_host(h))
}

pub(crate) fn id_token(id: &str) -> String {
    format!("i:{}", id.to_ascii_lowercase())
}

fn tokens(d: &DomainRef) -> Vec<String> {
    let mut t = Vec::new();
    if let Some(h) = &d.host {
        t.push(host_token(h));
    }
    if let Some(id) = &d.id {
        t.push(id_token(id));
    }
    t
}

/// Compare `planned` with `manifest` (`None`: no record yet, everything is a create).
pub fn classify(
    planned: &[PlannedLink],
    manifest: Option<&Manifest>,
    moved: &[Moved],
) -> Classified {
    let records: &[LinkRecord] = manifest.map_or(&[], |m| m.links.as_slice());
    let mut index: HashMap<(String, &str), usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for t in tokens(&r.domain) {
            index.entry((t, r.slug.as_str())).or_insert(i);
        }
    }
    let find = |d: &DomainRef, slug: &str| -> Option<usize> {
        tokens(d)
            .into_iter()
            .find_map(|t| index.get(&(t, slug)).copied())
    };
    let mut matched = vec![false; records.len()];
    let mut out = Classified::default();
    for link in planned {
        let found = find(&link.domain, &link.slug);
        if let Some(i) = found {
            matched[i] = true;
        }
        let mut entry = Entry {
            action: Action::Create,
            cell: link.cell.clone(),
            slug: link.slug.clone(),
            domain: link.domain.clone(),
            short_url: link.short_url.clone(),
            url_id: None,
            changes: Vec::new(),
            note: None,
        };
        match found.map(|i| &records[i]) {
            None => {
                // A `[[moved]]` entry naming this slug: the old record is renamed.
                let from = moved
                    .iter()
                    .find(|m| m.to == link.slug)
                    .and_then(|m| find(&link.domain, &m.from).map(|i| (m, i)))
                    .filter(|(_, i)| records[*i].is_live() && records[*i].retired.is_none());
                if let Some((m, i)) = from {
                    matched[i] = true;
                    let rec = &records[i];
                    entry.action = Action::Rename;
                    entry.url_id = rec.url_id.clone();
                    entry.short_url = rec.short_url.clone();
                    entry.changes.push(FieldChange {
                        field: "slug".into(),
                        old: Some(m.from.clone()),
                        new: Some(link.slug.clone()),
                        updatable: true,
                    });
                    entry.changes.extend(field_changes(rec, link.into()));
                    if rec.printed_at.is_some() {
                        out.breaks_printed
                            .push(rec.short_url.clone().unwrap_or_else(|| rec.slug.clone()));
                        entry.note = Some(format!(
                            "codes for {} were printed: the old short URL stops working once \
                             it is renamed",
                            m.from
                        ));
                    }
                }
            }
            Some(rec) => {
                entry.url_id = rec.url_id.clone();
                if rec.short_url.is_some() {
                    entry.short_url = rec.short_url.clone();
                }
                match rec.status {
                    _ if rec.retired.is_some() => {
                        entry.action = Action::Unchanged;
                        entry.note = Some("retired: left as retire set it".into());
                    }
                    LinkStatus::Pending => {
                        entry.note = Some(
                            "sent before but never settled: sent again with the same key (no \
                             duplicate)"
                                .into(),
                        );
                    }
                    LinkStatus::Failed => {
                        entry.note = Some(format!(
                            "failed before: {}",
                            rec.error
                                .as_ref()
                                .map_or("no reason recorded", |e| &e.message)
                        ));
                    }
                    LinkStatus::Deleted => {
                        entry.note = Some(
                            "deleted on Nimriz: a build creates it again (Nimriz may block a \
                             deleted slug for a while)"
                                .into(),
                        );
                    }
                    LinkStatus::Drift => {
                        entry.action = Action::Drift;
                        entry.changes.push(FieldChange {
                            field: "destination".into(),
                            old: rec.existing_destination.clone(),
                            new: Some(link.destination.clone()),
                            updatable: true,
                        });
                        entry.note = Some(
                            "edited outside the spec: `build --update --force-drift` sets it \
                             back to the spec"
                                .into(),
                        );
                    }
                    LinkStatus::Created | LinkStatus::Exists => {
                        let outside = rec.outside.as_ref().filter(|o| {
                            o.destination.is_some() || o.expires_at.is_some() || o.slug.is_some()
                        });
                        let changes = field_changes(rec, link.into());
                        if let Some(o) = outside {
                            entry.action = Action::Drift;
                            if let Some(s) = &o.slug {
                                entry.changes.push(FieldChange {
                                    field: "slug".into(),
                                    old: Some(s.clone()),
                                    new: Some(link.slug.clone()),
                                    updatable: true,
                                });
                            }
                            if let Some(e) = &o.expires_at {
                                entry.changes.push(FieldChange {
                                    field: "expires_at".into(),
                                    old: Some(e.clone()).filter(|e| !e.is_empty()),
                                    new: link.expires_at.clone(),
                                    updatable: true,
                                });
                            }
                            entry.note = Some(
                                "edited outside the spec (found by refresh): `build --update \
                                 --force-drift` sets it back to the spec"
                                    .into(),
                            );
                        } else if changes.iter().any(|c| !c.updatable) {
                            entry.action = Action::CannotUpdate;
                            let fields: Vec<&str> = changes
                                .iter()
                                .filter(|c| !c.updatable)
                                .map(|c| c.field.as_str())
                                .collect();
                            entry.note = Some(format!(
                                "Nimriz has no call to change {} of a live link: change it in \
                                 the dashboard, or give the cell a new slug (a new link); {}",
                                fields.join(", "),
                                if changes.iter().any(|c| c.updatable) {
                                    "`build --update` still applies the other changes"
                                } else {
                                    "nothing else changes"
                                }
                            ));
                            entry.changes = changes;
                        } else if !changes.is_empty() {
                            entry.action = Action::Update;
                            entry.changes = changes;
                        } else {
                            entry.action = Action::Unchanged;
                        }
                    }
                }
            }
        }
        out.counts.add(entry.action);
        out.entries.push(entry);
    }
    // Orphans: live records nothing in the spec matched.
    let creates_by_cell: HashMap<String, &str> = out
        .entries
        .iter()
        .filter(|e| e.action == Action::Create)
        .map(|e| (e.cell.label(), e.slug.as_str()))
        .collect();
    let mut orphans = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        if matched[i] || !rec.is_live() || rec.retired.is_some() {
            continue;
        }
        let note = match creates_by_cell.get(&rec.cell.label()) {
            Some(new_slug) if !rec.cell.0.is_empty() => format!(
                "the slug of this cell changed to {new_slug}: this plans a new link and leaves \
                 the old one (and its clicks) as an orphan. To keep it, add [[moved]] from = \
                 \"{}\", to = \"{new_slug}\" to the spec",
                rec.slug
            ),
            _ => "no longer in the spec: left live; `retire --orphans-only` points it at a \
                  fallback, expires or deletes it"
                .to_string(),
        };
        if rec.printed_at.is_some() {
            out.breaks_printed
                .push(rec.short_url.clone().unwrap_or_else(|| rec.slug.clone()));
        }
        orphans.push(Entry {
            action: Action::Orphan,
            cell: rec.cell.clone(),
            slug: rec.slug.clone(),
            domain: rec.domain.clone(),
            short_url: rec.short_url.clone(),
            url_id: rec.url_id.clone(),
            changes: Vec::new(),
            note: Some(note),
        });
    }
    for e in orphans {
        out.counts.add(e.action);
        out.entries.push(e);
    }
    out
}
