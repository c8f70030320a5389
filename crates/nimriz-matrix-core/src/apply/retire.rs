//! `retire`: end links — the orphans (`--orphans-only`) or the whole campaign — by pointing
//! them at a fallback URL, setting an expiry, or deleting them (only links this tool
//! created). Asks first: on a terminal, or `--yes`; otherwise it does nothing (exit 2).

use super::session::{self, LiveSettings};
use super::update::{self, UpdateItem, UpdateOutcome};
use crate::lifecycle::{Action, FieldChange, classify};
use crate::manifest::model::{Change, Origin, Retirement};
use crate::manifest::{LinkRecord, LinkStatus, RecordedError, RunCounts, now_rfc3339};
use crate::report::SharedReporter;
use crate::{Error, Result, exit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireHow {
    /// Point every link at this URL.
    Fallback(String),
    /// Set this expiry (RFC 3339).
    ExpireAt(String),
    /// Delete on Nimriz (only `origin = created`).
    Delete,
}

#[derive(Debug, Clone)]
pub struct RetireSettings {
    pub live: LiveSettings,
    pub how: RetireHow,
    pub orphans_only: bool,
    /// Confirmed on the command line.
    pub yes: bool,
}

/// How the user confirms: `Some(answer)` from a terminal prompt, `None` when there is no
/// terminal to ask on.
pub type Confirm<'a> = &'a mut dyn FnMut(&str) -> Option<bool>;

impl RetireHow {
    fn word(&self) -> &'static str {
        match self {
            RetireHow::Fallback(_) => "fallback",
            RetireHow::ExpireAt(_) => "expire",
            RetireHow::Delete => "delete",
        }
    }

    fn value(&self) -> Option<String> {
        match self {
            RetireHow::Fallback(u) => Some(u.clone()),
            RetireHow::ExpireAt(t) => Some(t.clone()),
            RetireHow::Delete => None,
        }
    }

    /// Check the value offline (exit 2 before anything is asked or sent).
    pub fn check(&self) -> Result<()> {
        match self {
            RetireHow::Fallback(u) => match url::Url::parse(u) {
                Ok(p) if p.scheme() == "https" && p.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(())
                }
                _ => Err(Error::Usage(format!(
                    "--fallback {u:?} is not an https:// URL; give the page retired links \
                     should open, e.g. --fallback https://acme.example/offers"
                ))),
            },
            RetireHow::ExpireAt(t) => match chrono::DateTime::parse_from_rfc3339(t) {
                Ok(_) => Ok(()),
                Err(e) => Err(Error::Usage(format!(
                    "--expire-at {t:?} is not an RFC 3339 time with a zone ({e}), e.g. \
                     --expire-at 2099-01-31T23:59:59Z"
                ))),
            },
            RetireHow::Delete => Ok(()),
        }
    }
}

/// Live and not retired yet.
fn retirable(rec: &LinkRecord) -> bool {
    rec.is_live() && rec.retired.is_none()
}

/// Did this tool create it? Records from before `origin` was recorded count when their
/// status is `created` (an `exists` may have been found, not made).
fn ours(rec: &LinkRecord) -> bool {
    match rec.origin {
        Some(Origin::Created) => true,
        Some(Origin::Adopted) => false,
        None => rec.status == LinkStatus::Created,
    }
}

/// `nimriz-matrix retire SPEC …`.
pub async fn retire_command(
    s: &RetireSettings,
    printer: &SharedReporter,
    confirm: Confirm<'_>,
) -> Result<u8> {
    s.how.check()?;
    let plan = crate::plan::load_with(
        &s.live.spec,
        s.live.max_links,
        &s.live.inputs,
        printer.as_ref(),
    )?;
    // Choose offline from the record, ask, and only then go online.
    let record = match std::fs::metadata(&s.live.manifest_path) {
        Ok(_) => crate::manifest::load(&s.live.manifest_path)?,
        Err(_) => {
            return Err(Error::Usage(format!(
                "no manifest at {}: nothing has been built from {}, so there is nothing to \
                 retire",
                s.live.manifest_path.display(),
                s.live.spec.display()
            )));
        }
    };
    let keys: std::collections::HashSet<String> = if s.orphans_only {
        let c = classify(&plan.links, Some(&record), &plan.moved);
        let orphan: std::collections::HashSet<(String, String)> = c
            .entries
            .iter()
            .filter(|e| e.action == Action::Orphan)
            .map(|e| (e.domain.key().to_string(), e.slug.clone()))
            .collect();
        record
            .links
            .iter()
            .filter(|r| {
                retirable(r) && orphan.contains(&(r.domain.key().to_string(), r.slug.clone()))
            })
            .map(|r| r.key.clone())
            .collect()
    } else {
        record
            .links
            .iter()
            .filter(|r| retirable(r))
            .map(|r| r.key.clone())
            .collect()
    };
    let (targets, refused): (Vec<&LinkRecord>, Vec<&LinkRecord>) = record
        .links
        .iter()
        .filter(|r| keys.contains(&r.key))
        .partition(|r| s.how != RetireHow::Delete || ours(r));
    for r in &refused {
        printer.warn(&format!(
            "not deleting {}: it was {} (only links this tool created are deleted; retire it \
             with --fallback or --expire-at instead)",
            r.name(),
            if r.origin == Some(Origin::Adopted) {
                "adopted by `import`"
            } else {
                "found on Nimriz, not created by this tool"
            }
        ));
    }
    if targets.is_empty() {
        printer.info(&format!(
            "nothing to retire: no live {}links in {}",
            if s.orphans_only { "orphaned " } else { "" },
            s.live.manifest_path.display()
        ));
        return Ok(if refused.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        });
    }
    let what = match &s.how {
        RetireHow::Fallback(u) => format!("point {} link(s) at {u}", targets.len()),
        RetireHow::ExpireAt(t) => format!("set {} link(s) to expire at {t}", targets.len()),
        RetireHow::Delete => format!("DELETE {} link(s) on Nimriz", targets.len()),
    };
    for r in targets.iter().take(20) {
        printer.info(&format!("  retire {}", r.name()));
    }
    if targets.len() > 20 {
        printer.info(&format!("  … and {} more", targets.len() - 20));
    }
    if !s.yes {
        match confirm(&format!("retire: {what}?")) {
            Some(true) => {}
            Some(false) => {
                printer.info("not confirmed: nothing was changed");
                return Ok(exit::PARTIAL);
            }
            None => {
                return Err(Error::Usage(format!(
                    "retire would {what}, and there is no terminal to confirm on. Nothing was \
                     changed; re-run with --yes to confirm"
                )));
            }
        }
    }
    let targets: Vec<LinkRecord> = targets.into_iter().cloned().collect();

    let (client, mut store) =
        session::open(&s.live.api, &s.live.manifest_path, &plan, printer).await?;
    let at = now_rfc3339();
    let mut done = 0usize;
    let mut failed: Vec<String> = Vec::new();
    let mut fatal: Option<Error> = None;
    let retirement = Retirement {
        at: at.clone(),
        how: s.how.word().into(),
        value: s.how.value(),
    };
    match &s.how {
        RetireHow::Delete => {
            for rec in targets {
                let url_id = rec.url_id.clone().unwrap_or_default();
                match client.delete_link(&url_id).await {
                    Ok(_) => {
                        // 404 counts too: the link is gone either way.
                        let mut next = rec.clone();
                        next.status = LinkStatus::Deleted;
                        next.retired = Some(retirement.clone());
                        next.history.push(Change {
                            at: at.clone(),
                            action: "delete".into(),
                            field: "link".into(),
                            before: rec.url_id.clone(),
                            after: None,
                        });
                        next.updated_at.clone_from(&at);
                        if let Err(e) = store.record(std::slice::from_ref(&next)) {
                            fatal.get_or_insert(e);
                            break;
                        }
                        done += 1;
                    }
                    Err(e) if e.is_fatal_for_run() => {
                        fatal.get_or_insert(Error::from(e));
                        break;
                    }
                    Err(e) => {
                        let mut next = rec.clone();
                        next.error = Some(RecordedError {
                            code: Some("retire_failed".into()),
                            message: format!("could not delete: {e}"),
                            support_reference: None,
                            http_status: None,
                        });
                        if let Err(e) = store.record(std::slice::from_ref(&next)) {
                            fatal.get_or_insert(e);
                            break;
                        }
                        failed.push(format!("{}: {e}", rec.name()));
                    }
                }
            }
        }
        how => {
            let items: Vec<UpdateItem> = targets
                .into_iter()
                .map(|rec| {
                    let mut target = rec.clone();
                    let change = match how {
                        RetireHow::Fallback(u) => {
                            target.destination.clone_from(u);
                            target.utm.clear();
                            FieldChange {
                                field: "destination".into(),
                                old: Some(rec.destination.clone()),
                                new: Some(u.clone()),
                                updatable: true,
                            }
                        }
                        RetireHow::ExpireAt(t) => FieldChange {
                            field: "expires_at".into(),
                            old: rec.expires_at.clone(),
                            new: Some(t.clone()),
                            updatable: true,
                        },
                        RetireHow::Delete => unreachable!("handled above"),
                    };
                    UpdateItem {
                        rec,
                        target,
                        changes: vec![change],
                        why: "retire",
                    }
                })
                .collect();
            update::apply_all(
                &client,
                items,
                s.live.concurrency,
                None::<std::future::Pending<()>>,
                |outcome| match outcome {
                    UpdateOutcome::Done { rec, .. } => {
                        let mut rec = rec;
                        rec.retired = Some(retirement.clone());
                        match store.record(std::slice::from_ref(&rec)) {
                            Ok(()) => done += 1,
                            Err(e) => {
                                fatal.get_or_insert(e);
                            }
                        }
                    }
                    UpdateOutcome::Failed { rec, .. } => {
                        failed.push(format!(
                            "{}: {}",
                            rec.name(),
                            rec.error.as_ref().map_or("failed", |e| e.message.as_str())
                        ));
                        if let Err(e) = store.record(std::slice::from_ref(&rec)) {
                            fatal.get_or_insert(e);
                        }
                    }
                    UpdateOutcome::Fatal(e) => {
                        fatal.get_or_insert(Error::from(e));
                    }
                },
            )
            .await;
        }
    }
    let counts = RunCounts {
        planned: done + failed.len(),
        updated: done,
        failed: failed.len(),
        ..RunCounts::default()
    };
    let finished = store.finish(
        counts,
        &match &fatal {
            Some(e) => format!("retire aborted: {e}"),
            None => "retire".into(),
        },
    );
    if let Some(e) = fatal {
        return Err(e);
    }
    finished?;
    for f in &failed {
        printer.warn(&format!("not retired: {f}"));
    }
    printer.info(&format!(
        "retired {done} link(s) ({}){}",
        s.how.word(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed (re-run to retry)", failed.len())
        }
    ));
    Ok(if failed.is_empty() && refused.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}
