//! What a build did, and the summary printed at its end.

use crate::exit;
use crate::manifest::{LinkRecord, LinkStatus, RunCounts};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Every link this run sent is created or exists.
    Completed,
    /// Finished, but some links failed, drifted, or could not be settled.
    Partial,
    /// Stopped by Ctrl-C; in-flight requests were finished and recorded.
    Interrupted,
}

impl BuildOutcome {
    /// The word recorded in the manifest's run record.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildOutcome::Completed => "completed",
            BuildOutcome::Partial => "partial",
            BuildOutcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    /// As recorded in the manifest's run record.
    pub counts: RunCounts,
    pub outcome: BuildOutcome,
    pub elapsed: Duration,
    pub manifest_path: PathBuf,
    /// Links this run left `failed` or `drift`, with their recorded reasons.
    pub problems: Vec<LinkRecord>,
    /// Create requests sent (bulk batches, or single creates after a fallback).
    pub create_requests: u64,
    /// Transient failures retried, across all requests.
    pub retries: u64,
    /// Rows sent again because an answer gave no usable result for them.
    pub resends: u64,
    /// Spec changes to live links not applied (no `--update`): `label: field old → new`.
    pub not_applied: Vec<String>,
    /// Spec changes Nimriz has no call for (redirect, tags, space), one line each.
    pub cannot_update: Vec<String>,
    /// The spec as given (for the commands the summary suggests).
    pub spec_path: String,
}

impl BuildReport {
    /// 0 all done; 1 some failed/drifted/unsettled; 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            BuildOutcome::Completed => exit::OK,
            BuildOutcome::Partial => exit::PARTIAL,
            BuildOutcome::Interrupted => exit::INTERRUPTED,
        }
    }

    /// The end-of-build summary, as lines for stderr.
    pub fn summary_lines(&self) -> Vec<String> {
        let c = &self.counts;
        if c.planned > 0
            && c.skipped_done == c.planned
            && self.cannot_update.is_empty()
            && self.not_applied.is_empty()
        {
            return vec![format!(
                "nothing to do: all {} links are already done (manifest: {})",
                c.planned,
                self.manifest_path.display()
            )];
        }
        let mut lines = vec![format!(
            "{}: {} created, {} exists, {}{} drift, {} failed{}{} — {} links in {:.1}s ({} \
             create request(s), {} retries{})",
            match self.outcome {
                BuildOutcome::Completed => "done",
                BuildOutcome::Partial => "finished with problems",
                BuildOutcome::Interrupted => "interrupted",
            },
            c.created,
            c.exists,
            if c.updated > 0 {
                format!("{} updated, ", c.updated)
            } else {
                String::new()
            },
            c.drift,
            c.failed,
            if c.skipped_done > 0 {
                format!(", {} already done", c.skipped_done)
            } else {
                String::new()
            },
            if c.pending > 0 {
                format!(", {} not sent or unsettled (re-run to finish)", c.pending)
            } else {
                String::new()
            },
            c.planned,
            self.elapsed.as_secs_f64(),
            self.create_requests,
            self.retries,
            if self.resends > 0 {
                format!(", {} rows resent for lack of a usable answer", self.resends)
            } else {
                String::new()
            },
        )];
        lines.push(format!("manifest: {}", self.manifest_path.display()));
        if !self.not_applied.is_empty() {
            lines.push(format!(
                "{} live link(s) differ from the spec; not changed without --update:",
                self.not_applied.len()
            ));
            lines.extend(self.not_applied.iter().map(|l| format!("  update {l}")));
            lines.push(format!(
                "apply with: nimriz-matrix build {} --update (review first with `nimriz-matrix \
                 plan {}`)",
                self.spec_path, self.spec_path
            ));
        }
        for l in &self.cannot_update {
            lines.push(format!("  cannot update {l}"));
        }
        lines.extend(self.problem_lines());
        lines
    }

    /// One block per failed or drifted link: what happened and what to do.
    pub fn problem_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for rec in &self.problems {
            let label = rec.label();
            match rec.status {
                LinkStatus::Drift => {
                    lines.push(format!("  drift  {label}"));
                    lines.push(format!("         planned:   {}", rec.destination));
                    lines.push(format!(
                        "         on Nimriz: {}",
                        rec.existing_destination.as_deref().unwrap_or("?")
                    ));
                    lines.push(
                        "         left unchanged: change the spec to match, or set the link back to \
                         the spec with `nimriz-matrix build SPEC --update --force-drift`"
                            .to_string(),
                    );
                }
                _ => {
                    let (msg, extra) = match &rec.error {
                        Some(e) => {
                            let mut extra = Vec::new();
                            if let Some(c) = &e.code {
                                extra.push(format!("code {c}"));
                            }
                            if let Some(s) = e.http_status {
                                extra.push(format!("HTTP {s}"));
                            }
                            if let Some(r) = &e.support_reference {
                                extra.push(format!("support reference {r}"));
                            }
                            (e.message.clone(), extra.join(", "))
                        }
                        None => ("no reason recorded".to_string(), String::new()),
                    };
                    lines.push(format!("  failed {label}"));
                    lines.push(format!("         {msg}"));
                    if !extra.is_empty() {
                        lines.push(format!("         [{extra}]"));
                    }
                }
            }
        }
        if self.problems.iter().any(|r| r.status == LinkStatus::Failed) {
            lines.push("then re-run the build: links already done are not sent again".to_string());
        }
        lines
    }
}
