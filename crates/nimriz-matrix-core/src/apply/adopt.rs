//! `import`: adopt the workspace's existing links that the spec plans (same domain and
//! slug) into the manifest, as `exists` (same destination) or `drift`, `origin = adopted`.
//! Links the spec does not plan are listed and never touched.

use super::send::same_destination;
use super::session::{self, LiveSettings};
use crate::lifecycle::{host_token, id_token};
use crate::manifest::model::{Change, Origin};
use crate::manifest::{LinkRecord, LinkStatus, RunCounts, now_rfc3339};
use crate::report::SharedReporter;
use crate::{Result, exit};
use nimriz::Link;
use std::collections::HashMap;

/// Show this many unmatched links without `-v`.
const SHOW_UNMATCHED: usize = 20;

/// `nimriz-matrix import SPEC`.
pub async fn import_command(s: &LiveSettings, printer: &SharedReporter) -> Result<u8> {
    let plan = crate::plan::load_with(&s.spec, s.max_links, &s.inputs, printer.as_ref())?;
    let (client, mut store) = session::open(&s.api, &s.manifest_path, &plan, printer).await?;
    let found = async {
        let (links, domains) = super::build::resolve_domains(&client, plan.links).await?;
        let planned = super::build::planned_records(links)?;
        let live = client.list_links().await?;
        Ok::<_, crate::Error>((planned, domains, live))
    }
    .await;
    let (planned, domains, live) = match found {
        Ok(x) => x,
        Err(e) => {
            let _ = store.finish(RunCounts::default(), &format!("import aborted: {e}"));
            return Err(e);
        }
    };

    // (domain token, slug) → planned record. A domain is known by its ids and its host.
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (i, rec) in planned.iter().enumerate() {
        let id = rec.domain.id.clone().unwrap_or_default();
        let entry = domains.iter().find(|d| d.id == id);
        let mut tokens = vec![id_token(&id)];
        if let Some(d) = entry {
            tokens.extend(d.alt_ids.iter().map(|a| id_token(a)));
            tokens.push(host_token(&d.domain_name));
        }
        if let Some(h) = &rec.domain.host {
            tokens.push(host_token(h));
        }
        for t in tokens {
            index.entry((t, rec.slug.clone())).or_insert(i);
        }
    }

    let mut adopted = Vec::new();
    let mut already = 0usize;
    let mut drifted = 0usize;
    let mut unmatched: Vec<String> = Vec::new();
    for link in &live {
        let Some(slug) = slug_of(link) else {
            unmatched.push(describe(link));
            continue;
        };
        let mut tokens = Vec::new();
        if let Some(id) = &link.domain_id {
            tokens.push(id_token(id));
        }
        if let Some(h) = &link.domain_host {
            tokens.push(host_token(h));
        }
        let Some(&i) = tokens
            .into_iter()
            .find_map(|t| index.get(&(t, slug.clone())))
        else {
            unmatched.push(describe(link));
            continue;
        };
        let planned = &planned[i];
        if store.get(&planned.key)?.is_some_and(LinkRecord::is_live) {
            already += 1;
            continue;
        }
        let mut rec = planned.clone();
        let at = now_rfc3339();
        rec.url_id.clone_from(&link.url_id);
        rec.short_url = link.short_url.clone().or(rec.short_url);
        // What is live, not what the spec asks: `plan` then shows the differences.
        rec.expires_at.clone_from(&link.expires_at);
        // Unknown for a link we did not create (not compared until known).
        rec.redirect = link.redirect_status_code;
        if rec.redirect.is_none() {
            rec.tags.clear();
            rec.space = None;
        }
        rec.origin = Some(Origin::Adopted);
        if same_destination(link.long_url.as_deref(), &planned.destination) {
            rec.status = LinkStatus::Exists;
        } else {
            rec.status = LinkStatus::Drift;
            rec.existing_destination.clone_from(&link.long_url);
            drifted += 1;
        }
        if let Some(prev) = store.get(&planned.key)? {
            rec.history.clone_from(&prev.history);
            rec.printed_at.clone_from(&prev.printed_at);
            rec.attempts = prev.attempts;
        }
        rec.history.push(Change {
            at: at.clone(),
            action: "adopt".into(),
            field: "link".into(),
            before: None,
            after: link.url_id.clone(),
        });
        rec.updated_at = at;
        adopted.push(rec);
    }
    let written = store.record(&adopted);
    let counts = RunCounts {
        planned: planned.len(),
        exists: adopted.len() - drifted,
        drift: drifted,
        skipped_done: already,
        ..RunCounts::default()
    };
    let finished = store.finish(counts, "import");
    written?;
    finished?;

    printer.info(&format!(
        "import: {} live link(s) in the workspace; adopted {} ({} drifted: live destination \
         differs from the spec), {} already recorded, {} not planned by this spec (left \
         untouched)",
        live.len(),
        adopted.len(),
        drifted,
        already,
        unmatched.len()
    ));
    for (n, u) in unmatched.iter().enumerate() {
        if n < SHOW_UNMATCHED {
            printer.info(&format!("  not planned: {u}"));
        } else {
            printer.detail(&format!("  not planned: {u}"));
        }
    }
    if unmatched.len() > SHOW_UNMATCHED {
        printer.info(&format!(
            "  … and {} more (all with -v)",
            unmatched.len() - SHOW_UNMATCHED
        ));
    }
    if !adopted.is_empty() {
        printer.info(&format!(
            "see what a build would change with `nimriz-matrix plan {}`",
            s.spec.display()
        ));
    }
    Ok(exit::OK)
}

/// The link's slug: its short code, or the last segment of its short URL.
fn slug_of(link: &Link) -> Option<String> {
    link.short_code.clone().or_else(|| {
        link.short_url
            .as_deref()
            .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
            .filter(|s| !s.is_empty() && !s.contains(':'))
            .map(str::to_string)
    })
}

fn describe(link: &Link) -> String {
    let name = link
        .short_url
        .clone()
        .or_else(|| link.short_code.clone())
        .unwrap_or_else(|| "(no short URL)".into());
    format!(
        "{name} → {}",
        link.long_url.as_deref().unwrap_or("(destination not said)")
    )
}
