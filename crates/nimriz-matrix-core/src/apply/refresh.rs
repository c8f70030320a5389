//! `refresh`: read every recorded live link back from Nimriz and record what changed
//! outside the spec (destination, expiry, slug, deleted, taken down). Changes nothing on
//! Nimriz. `plan --refresh` runs it first.

use super::send::same_destination;
use super::session::{self, LiveSettings};
use crate::lifecycle::same_instant;
use crate::manifest::model::{Change, OutsideChange};
use crate::manifest::{LinkRecord, LinkStatus, RunCounts, now_rfc3339};
use crate::report::SharedReporter;
use crate::{Error, Result, exit};
use nimriz::{Client, ClientError, Link};
use tokio::task::JoinSet;

/// What `refresh` found.
#[derive(Debug, Default, Clone)]
pub struct RefreshReport {
    pub read: usize,
    pub unchanged: usize,
    /// Links with an outside change found (destination, expiry, slug or takedown).
    pub changed: usize,
    pub deleted: usize,
    /// Links that could not be read (with why); they keep their record.
    pub unreadable: Vec<String>,
    /// One line per change found.
    pub lines: Vec<String>,
    /// Live records that now show drift or an outside change (found now or before).
    pub drift_present: usize,
}

impl RefreshReport {
    pub fn summary(&self) -> String {
        format!(
            "refreshed {} link(s): {} unchanged, {} changed outside the spec, {} deleted on \
             Nimriz, {} could not be read",
            self.read,
            self.unchanged,
            self.changed,
            self.deleted,
            self.unreadable.len()
        )
    }

    /// 0 / 1 (some unreadable); with `detailed`: 0 no drift, 2 drift, 1 any error.
    pub fn exit_code(&self, detailed: bool) -> u8 {
        if !self.unreadable.is_empty() {
            exit::PARTIAL
        } else if detailed && (self.drift_present > 0 || self.deleted > 0) {
            exit::CHANGES
        } else {
            exit::OK
        }
    }
}

/// `nimriz-matrix refresh SPEC`.
pub async fn refresh_command(
    s: &LiveSettings,
    printer: &SharedReporter,
    detailed: bool,
) -> Result<u8> {
    let report = run_refresh(s, printer).await?;
    for l in &report.lines {
        printer.info(l);
    }
    for l in &report.unreadable {
        printer.warn(l);
    }
    printer.info(&report.summary());
    if report.drift_present > 0 {
        printer.info(
            "see what it means for the spec with `nimriz-matrix plan SPEC`; set drifted links \
             back to the spec with `nimriz-matrix build SPEC --update --force-drift`",
        );
    }
    Ok(report.exit_code(detailed))
}

/// Read every live record back and record what differs.
pub async fn run_refresh(s: &LiveSettings, printer: &SharedReporter) -> Result<RefreshReport> {
    let plan = crate::plan::load_with(&s.spec, s.max_links, &s.inputs, printer.as_ref())?;
    let (client, mut store) = session::open(&s.api, &s.manifest_path, &plan, printer).await?;
    let targets: Vec<LinkRecord> = store.links()?.filter(|r| r.is_live()).cloned().collect();
    let mut report = RefreshReport::default();
    let mut queue = targets.into_iter();
    let mut set: JoinSet<(LinkRecord, std::result::Result<Option<Link>, ClientError>)> =
        JoinSet::new();
    let mut fatal: Option<Error> = None;
    loop {
        while fatal.is_none() && set.len() < s.concurrency.max(1) {
            let Some(rec) = queue.next() else { break };
            let client: Client = client.clone();
            set.spawn(async move {
                let url_id = rec.url_id.clone().unwrap_or_default();
                let got = client.get_link_opt(&url_id).await;
                (rec, got)
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (rec, got) = match joined {
            Ok(x) => x,
            Err(e) => {
                fatal.get_or_insert(Error::Api(format!("internal error: a read failed ({e})")));
                continue;
            }
        };
        report.read += 1;
        let asked = rec.url_id.clone().unwrap_or_default();
        match got {
            Ok(Some(link)) if !super::update::about(&link, &asked) => {
                report.unreadable.push(format!(
                    "{}: reading {asked} answered about another link ({}); its record is kept",
                    rec.name(),
                    link.url_id.as_deref().unwrap_or_default()
                ));
            }
            Ok(Some(link)) => {
                let (next, lines) = compare(&rec, &link);
                if lines.is_empty() {
                    report.unchanged += 1;
                } else {
                    report.changed += 1;
                    report.lines.extend(lines);
                }
                if next != rec
                    && let Err(e) = store.record(std::slice::from_ref(&next))
                {
                    fatal.get_or_insert(e);
                }
            }
            Ok(None) => {
                report.deleted += 1;
                let mut next = rec.clone();
                let at = now_rfc3339();
                next.status = LinkStatus::Deleted;
                let o = next.outside.get_or_insert_with(OutsideChange::default);
                o.seen_at.clone_from(&at);
                o.deleted = true;
                next.history.push(Change {
                    at: at.clone(),
                    action: "refresh".into(),
                    field: "link".into(),
                    before: rec.url_id.clone(),
                    after: None,
                });
                next.updated_at = at;
                report.lines.push(format!(
                    "deleted  {}: gone from Nimriz (404); `build` creates it again (Nimriz may block a deleted slug for a while)",
                    rec.name()
                ));
                if let Err(e) = store.record(std::slice::from_ref(&next)) {
                    fatal.get_or_insert(e);
                }
            }
            Err(e) if e.is_fatal_for_run() => {
                client.stop(&e.to_string());
                fatal.get_or_insert(Error::from(e));
            }
            Err(e) => report.unreadable.push(format!(
                "{}: could not be read ({e}); its record is kept",
                rec.name()
            )),
        }
    }
    report.drift_present = store
        .links()?
        .filter(|r| r.is_live())
        .filter(|r| r.status == LinkStatus::Drift || r.outside.is_some())
        .count();
    let counts = RunCounts {
        planned: report.read,
        drift: report.drift_present,
        ..RunCounts::default()
    };
    let outcome = match &fatal {
        Some(e) => format!("refresh aborted: {e}"),
        None => "refresh".to_string(),
    };
    let finished = store.finish(counts, &outcome);
    if let Some(e) = fatal {
        return Err(e);
    }
    finished?;
    Ok(report)
}

/// The record updated with what the live link shows, and one line per new finding.
fn compare(rec: &LinkRecord, link: &Link) -> (LinkRecord, Vec<String>) {
    let mut next = rec.clone();
    let mut lines = Vec::new();
    let at = now_rfc3339();
    let before = rec.outside.clone().unwrap_or_default();
    let mut seen = OutsideChange {
        seen_at: at.clone(),
        ..OutsideChange::default()
    };
    let mut history = |field: &str, recorded: Option<String>, live: Option<String>| {
        next.history.push(Change {
            at: at.clone(),
            action: "refresh".into(),
            field: field.into(),
            before: recorded,
            after: live,
        });
    };
    // Destination.
    match link.long_url.as_deref() {
        Some(live) if !same_destination(Some(live), &rec.destination) => {
            seen.destination = Some(live.to_string());
            if before.destination.as_deref() != Some(live)
                && rec.existing_destination.as_deref() != Some(live)
            {
                history(
                    "destination",
                    Some(rec.destination.clone()),
                    Some(live.into()),
                );
                lines.push(format!(
                    "drift    {}: destination is {live} (the record says {})",
                    rec.name(),
                    rec.destination
                ));
            }
        }
        _ => {}
    }
    // Expiry ("" = the live link has none while the record has one). Only when the answer
    // says anything about expiry: a server that omits the field has not cleared it.
    if (link.expires_at.is_some() || rec.expires_at.is_none())
        && !same_instant(link.expires_at.as_deref(), rec.expires_at.as_deref())
    {
        {
            let live = link.expires_at.clone().unwrap_or_default();
            if before.expires_at.as_deref() != Some(live.as_str()) {
                history(
                    "expires_at",
                    rec.expires_at.clone(),
                    link.expires_at.clone(),
                );
                lines.push(format!(
                    "expiry   {}: expires {} (the record says {})",
                    rec.name(),
                    link.expires_at.as_deref().unwrap_or("never"),
                    rec.expires_at.as_deref().unwrap_or("never")
                ));
            }
            seen.expires_at = Some(live);
        }
    }
    // Slug.
    if let Some(code) = link.short_code.as_deref()
        && code != rec.slug
    {
        seen.slug = Some(code.to_string());
        if before.slug.as_deref() != Some(code) {
            history("slug", Some(rec.slug.clone()), Some(code.into()));
            lines.push(format!(
                "renamed  {}: the live slug is {code} (the record says {})",
                rec.name(),
                rec.slug
            ));
        }
    }
    // Takedown.
    if link.taken_down {
        seen.taken_down = true;
        if !before.taken_down {
            history("taken_down", None, Some("true".into()));
            lines.push(format!(
                "blocked  {}: Nimriz shows it as taken down; it does not redirect. See the \
                 Nimriz dashboard for why",
                rec.name()
            ));
        }
    }
    let any = seen.destination.is_some()
        || seen.expires_at.is_some()
        || seen.slug.is_some()
        || seen.taken_down;
    if any {
        // Keep the time it was first seen when nothing new was seen.
        if lines.is_empty() && !before.seen_at.is_empty() {
            seen.seen_at = before.seen_at.clone();
        }
        next.outside = Some(seen.clone());
    } else {
        next.outside = None;
    }
    match &seen.destination {
        Some(live) => {
            next.status = LinkStatus::Drift;
            next.existing_destination = Some(live.clone());
        }
        None if rec.status == LinkStatus::Drift => {
            // The live link points where the spec says again.
            next.status = LinkStatus::Exists;
            next.existing_destination = None;
        }
        None => {}
    }
    if next != *rec {
        next.updated_at = at;
    }
    (next, lines)
}
