//! The build: resolve domains, open the manifest, send what is not done in batches with
//! bounded concurrency, settle every row, record everything, stop cleanly.
//!
//! Order of writes for each batch: rows are journaled as `pending` (attempts + 1) right
//! after their request leaves (the fsync overlaps the request), and their results after it
//! returns. A crash before either leaves them pending or unrecorded; the next run resends
//! them with the same idempotency keys and slugs, and the replay or the slug-conflict lookup
//! settles them without a duplicate.
//!
//! Journal appends are grouped (each one is an fsync, and the loop that launches batches
//! waits for it): the results of every batch that has come back go out in the same append
//! as the pending rows of the batches launched next.

use super::report::{BuildOutcome, BuildReport};
use super::send::{self, BatchVerdict, Outgoing, RowResult};
use super::settings::BuildSettings;
use super::update::{self, UpdateItem, UpdateOutcome};
use crate::lifecycle::{FieldChange, PlannedFields, field_changes};
use crate::manifest::model::Origin;
use crate::manifest::{
    LinkRecord, LinkStatus, ManifestStore, RecordedError, RunCounts, now_rfc3339,
};
use crate::model::{DomainRef, Moved, Plan, PlannedLink};
use crate::plan::{LinkWalk, SpecPlan};
use crate::report::{ProgressSink, Reporter, SharedReporter};
use crate::{Error, Result};
use nimriz::Domain;
use nimriz::{Client, ClientError, NewLink, contract};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Why in-flight requests stop retrying after Ctrl-C (the client's brake carries it).
const INTERRUPTED: &str = "interrupted (Ctrl-C, SIGTERM or SIGHUP)";

/// What a build sends: a plan held in memory (library callers, tests), or a checked spec
/// whose links are walked again while the batches go out (the binary), so memory is
/// bounded by the send window instead of the number of links.
pub enum BuildInput {
    Plan(Plan),
    Spec(SpecPlan),
}

impl From<Plan> for BuildInput {
    fn from(p: Plan) -> Self {
        BuildInput::Plan(p)
    }
}

impl From<SpecPlan> for BuildInput {
    fn from(p: SpecPlan) -> Self {
        BuildInput::Spec(p)
    }
}

impl BuildInput {
    fn planned(&self) -> usize {
        match self {
            BuildInput::Plan(p) => p.links.len(),
            BuildInput::Spec(s) => s.links,
        }
    }

    /// The distinct domains, in order of first use (the domain lookup needs no more).
    fn domains(&self) -> Vec<DomainRef> {
        match self {
            BuildInput::Plan(p) => {
                let mut seen = HashSet::new();
                p.links
                    .iter()
                    .filter(|l| seen.insert(&l.domain))
                    .map(|l| l.domain.clone())
                    .collect()
            }
            BuildInput::Spec(s) => s.domains.clone(),
        }
    }
}

/// Create the plan's links. Stops when `interrupt` completes (the binary passes Ctrl-C):
/// in-flight requests finish, the manifest is written, outcome `Interrupted`. `Err` for
/// run-level failures (auth, unreachable → exit 3; manifest I/O or lock → exit 4; unknown
/// domain → exit 2), after recording the manifest.
pub async fn run_build<F>(
    plan: impl Into<BuildInput>,
    settings: &BuildSettings,
    printer: &SharedReporter,
    interrupt: F,
) -> Result<BuildReport>
where
    F: Future<Output = ()>,
{
    let input = plan.into();
    let started = Instant::now();
    let client = Client::new(settings.api.clone())?.with_reporter(printer.clone());

    // Domains and the workspace identity first, together (one round trip): an unknown host
    // or a manifest from another workspace must stop the run before anything is created.
    let recorded = super::workspace::peek(&settings.manifest_path);
    let distinct = input.domains();
    let (whoami, domains) = tokio::join!(client.whoami(), lookup_domains(&client, &distinct));
    let mut warnings = Vec::new();
    let now = super::workspace::current(&client.api_host(), whoami, &mut warnings)?;
    let (workspace, more) =
        super::workspace::check(&settings.manifest_path, recorded.as_ref(), now)?;
    let (resolver, domains) = domains?;
    let planned = input.planned();
    let now = now_rfc3339();
    // The plan's keys are checked for duplicates first, before anything is opened. A walked
    // spec has unique (domain, slug) pairs already (the walk checks them); its keys can only
    // repeat when two of its domains resolve to one id, and only then are they listed.
    let (mut keys, feed, source, moved) = match input {
        BuildInput::Plan(plan) => {
            let mut links = plan.links;
            resolver.resolve_all(&mut links);
            let keys = planned_keys(&links)?;
            let feed = Feed::Links(links.into_iter(), now.clone());
            (Some(keys), feed, plan.source, plan.moved)
        }
        BuildInput::Spec(spec) => {
            let keys = if resolver.may_merge(&distinct) {
                Some(walked_keys(&spec.walk, &resolver)?)
            } else {
                None
            };
            let feed = Feed::walk(spec.walk.clone(), resolver.clone(), now.clone())?;
            (keys, feed, spec.source, spec.moved)
        }
    };

    let mut store =
        ManifestStore::open(&settings.manifest_path, &source, Some(&client.api_host()))?;
    store.set_workspace(workspace)?;
    for note in warnings
        .iter()
        .chain(&more)
        .map(String::as_str)
        .chain(store.notes().iter().map(String::as_str))
    {
        printer.warn(note);
    }

    // The print lock, before anything is sent (against the record just opened).
    if !settings.break_printed && store.any_printed() {
        let checked = match keys.take() {
            Some(k) => Ok(k),
            None => match &feed {
                Feed::Walk { walk, .. } => walked_keys(walk, &resolver),
                Feed::Links(..) => Ok(HashSet::new()),
            },
        }
        .and_then(|k| refuse_printed_breaks(&store, &k));
        if let Err(e) = checked {
            let counts = RunCounts {
                planned,
                ..RunCounts::default()
            };
            let _ = store.close(counts, &format!("aborted: {e}"));
            return Err(e);
        }
    }
    drop(keys);

    // Split: already done (skip), live links the spec changed (update in place), vs to send.
    // New rows are first journaled when their batch is launched (in plan order, as the
    // queue is); rows never launched are journaled when the run stops, so the manifest
    // lists the whole plan in plan order. Not journaling all of them up front saves writing
    // the whole plan one extra time (7 MB for 10,000 links).
    //
    // Into an empty record every link is new: rows go out as the walk makes them. With a
    // record, the whole plan is split first (what is done, what changed), so the run can
    // say what it will send before it sends; only the rows to send are held.
    let streaming = store.is_empty();
    let retry_client = client.clone();
    let mut run = Run {
        client: client.clone(),
        settings,
        printer: printer.as_ref(),
        progress: None,
        domains: &domains,
        store: &mut store,
        queue: VecDeque::new(),
        feed,
        moved: &moved,
        intake: Intake::default(),
        batch_size: settings.batch_size.max(1),
        single_mode: false,
        said_too_large: false,
        stop: None,
        settled: HashSet::new(),
        unjournaled: Vec::new(),
        batches_done: 0,
        checkpoint_due: false,
        create_requests: 0,
        resends: 0,
    };
    let to_send = if streaming {
        planned
    } else {
        // A record that cannot be read stops the run before anything is sent.
        run.take_all().await?;
        let to_send = run.queue.len();
        let skipped_done = run.intake.skipped_done;
        // "nothing to do" is said by the summary (`BuildReport::summary_lines`).
        if to_send > 0 && skipped_done > 0 {
            printer.info(&format!(
                "{skipped_done} of {planned} links already done; sending {to_send}"
            ));
        }
        to_send
    };

    let progress = printer.progress(to_send as u64, Arc::new(move || retry_client.retries()));
    run.progress = Some(progress.as_ref());
    let mut interrupt = std::pin::pin!(interrupt);
    run.drive(interrupt.as_mut()).await;
    progress.finish();
    // Stopped early: the rest of the plan is still split and its new rows recorded.
    run.finish_intake().await;
    let Run {
        mut stop,
        settled,
        create_requests,
        resends,
        intake,
        ..
    } = run;
    let Intake {
        skipped_done,
        mut split,
        sent_keys,
    } = intake;

    // Then the live links to change in place (after the creates: a rename's new slug may
    // only be free once nothing else claims it, and an interrupt stops both).
    let mut updates = UpdateTally::default();
    if stop.is_none() && !split.items.is_empty() {
        printer.info(&format!(
            "updating {} live link(s) in place",
            split.items.len()
        ));
        let items = std::mem::take(&mut split.items);
        let mut record_err = None;
        let stopped = update::apply_all(
            &client,
            items,
            settings.concurrency,
            Some(interrupt.as_mut()),
            |outcome| updates.absorb(&mut store, outcome, &mut record_err),
        )
        .await;
        if let Some(e) = record_err.or(updates.fatal.take()) {
            stop = Some(Stop::Fatal(e));
        } else if stopped {
            stop = Some(Stop::Interrupted);
        }
    }

    let base = RunCounts {
        planned,
        skipped_done,
        updated: updates.done,
        failed: updates.failed.len(),
        drift: split.drifted.len(),
        // Updates the run stopped before applying.
        pending: split.items.len() + updates.unsettled,
        ..RunCounts::default()
    };
    let (counts, mut problems) = match tally(&store, &sent_keys, &settled, base) {
        Ok(t) => t,
        Err(e) => {
            let _ = store.close(base, &format!("aborted: {e}"));
            return Err(e);
        }
    };
    problems.extend(updates.failed);
    problems.extend(split.drifted);
    let outcome = match &stop {
        Some(Stop::Interrupted) => BuildOutcome::Interrupted,
        _ if counts.failed + counts.drift + counts.pending > 0 => BuildOutcome::Partial,
        // Spec changes not applied (no `--update`): the live links are not what the spec says.
        _ if !split.pending.is_empty() => BuildOutcome::Partial,
        _ => BuildOutcome::Completed,
    };
    let outcome_word = match &stop {
        Some(Stop::Fatal(e)) => format!("aborted: {e}"),
        _ => outcome.as_str().to_string(),
    };
    let manifest_path = store.path().to_path_buf();
    let finished = store.close(counts, &outcome_word);
    if let Some(Stop::Fatal(e)) = stop {
        printer.info(&format!(
            "stopped: {} created, {} exists, {} not settled; links recorded as done will not be \
             sent again (manifest: {})",
            counts.created,
            counts.exists,
            counts.pending,
            manifest_path.display()
        ));
        if let Err(io) = finished {
            printer.warn(&format!("the manifest could not be finished: {io}"));
        }
        return Err(e);
    }
    finished?;
    Ok(BuildReport {
        counts,
        outcome,
        elapsed: started.elapsed(),
        manifest_path,
        problems,
        create_requests,
        retries: client.retries(),
        resends,
        not_applied: split.pending,
        spec_path: source.spec_path.clone(),
        cannot_update: split.cannot_update,
    })
}

/// Counts and problem rows (drift/failed) for the rows this run set out to send.
fn tally(
    store: &ManifestStore,
    sent_keys: &[String],
    settled: &HashSet<String>,
    mut counts: RunCounts,
) -> Result<(RunCounts, Vec<LinkRecord>)> {
    let mut problems = Vec::new();
    for key in sent_keys {
        let status = match store.summary(key) {
            Some(s) if settled.contains(key) => s.status,
            _ => {
                counts.pending += 1;
                continue;
            }
        };
        match status {
            LinkStatus::Created => counts.created += 1,
            LinkStatus::Exists => counts.exists += 1,
            LinkStatus::Drift | LinkStatus::Failed => {
                if status == LinkStatus::Drift {
                    counts.drift += 1;
                } else {
                    counts.failed += 1;
                }
                // Only problem rows are parsed back.
                problems.extend(store.get(key)?.cloned());
            }
            LinkStatus::Pending | LinkStatus::Deleted => counts.pending += 1,
        }
    }
    Ok((counts, problems))
}

/// Live links the spec changed, sorted by what this run does with them.
#[derive(Default)]
struct Split {
    /// Changed in place after the creates (`--update`).
    items: Vec<UpdateItem>,
    /// Changes not applied for want of `--update`: one line each, for the summary.
    pending: Vec<String>,
    /// Edited outside the spec (found by `refresh`): reported, left alone.
    drifted: Vec<LinkRecord>,
    /// Changes Nimriz has no call for (redirect, tags, space): one line each.
    cannot_update: Vec<String>,
}

impl Split {
    /// Route one live record with `changes` (some perhaps not updatable).
    fn change(
        &mut self,
        settings: &BuildSettings,
        prev: &LinkRecord,
        row: &Row,
        changes: Vec<FieldChange>,
        outside: bool,
    ) {
        let label = prev.label();
        let (can, cannot): (Vec<FieldChange>, Vec<FieldChange>) =
            changes.into_iter().partition(|c| c.updatable);
        if !cannot.is_empty() {
            self.cannot_update.push(format!(
                "{label}: Nimriz has no call to change {} of a live link; change it in the \
                 dashboard, or give the cell a new slug (a new link)",
                describe(&cannot)
            ));
        }
        if can.is_empty() {
            return;
        }
        if outside && !settings.force_drift {
            let mut rec = prev.clone();
            if rec.existing_destination.is_none() {
                rec.existing_destination =
                    prev.outside.as_ref().and_then(|o| o.destination.clone());
            }
            self.drifted.push(rec);
            return;
        }
        if !settings.update {
            self.pending.push(format!("{label}: {}", describe(&can)));
            return;
        }
        // What the record becomes once every change is live. Redirect, tags and space stay
        // as recorded: Nimriz cannot change them, so the live link still has the old ones.
        let mut target = row.rec.clone();
        target.url_id.clone_from(&prev.url_id);
        target.status = prev.status;
        target.attempts = prev.attempts;
        target.idempotency_key.clone_from(&prev.idempotency_key);
        target.redirect = prev.redirect;
        target.tags.clone_from(&prev.tags);
        target.space.clone_from(&prev.space);
        // A rename's short URL is the planned one (or the recorded one respelled).
        target.short_url = if prev.slug == row.rec.slug {
            prev.short_url.clone()
        } else {
            row.planned_short_url.clone().or_else(|| {
                prev.short_url
                    .as_ref()
                    .map(|u| respell(u, &prev.slug, &row.rec.slug))
            })
        };
        keep_lifecycle(&mut target, prev);
        self.items.push(UpdateItem {
            rec: prev.clone(),
            target,
            changes: can,
            why: "update-destination",
        });
    }
}

/// Links whose QR codes were exported and that this run would rename or leave behind: a
/// live, unretired printed record no row of the plan has (a `[[moved]]` source, or a cell
/// given a new slug or domain). Free when nothing was printed.
fn refuse_printed_breaks(store: &ManifestStore, planned: &HashSet<String>) -> Result<()> {
    if !store.any_printed() {
        return Ok(());
    }
    let broken: Vec<String> = store
        .links()?
        .filter(|r| {
            r.printed_at.is_some()
                && r.is_live()
                && r.retired.is_none()
                && !planned.contains(&r.key)
        })
        .map(LinkRecord::name)
        .collect();
    crate::lifecycle::refuse_printed(&broken)
}

/// `old → new` for each change, in one line.
fn describe(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(|c| {
            format!(
                "{} {} → {}",
                c.field,
                c.old.as_deref().unwrap_or("(none)"),
                c.new.as_deref().unwrap_or("(none)")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A recorded short URL with its last path segment changed from `old` to `new` slug.
fn respell(url: &str, old: &str, new: &str) -> String {
    match url.strip_suffix(old) {
        Some(base) if base.ends_with('/') => format!("{base}{new}"),
        _ => url.to_string(),
    }
}

/// The lifecycle fields a record carries from run to run (its origin, its history, what
/// was printed, retired, or seen outside).
fn keep_lifecycle(rec: &mut LinkRecord, prev: &LinkRecord) {
    rec.origin = prev.origin;
    rec.history.clone_from(&prev.history);
    rec.printed_at.clone_from(&prev.printed_at);
    rec.outside.clone_from(&prev.outside);
    rec.retired.clone_from(&prev.retired);
}

fn planned_fields(rec: &LinkRecord) -> PlannedFields<'_> {
    PlannedFields {
        destination: &rec.destination,
        expires_at: rec.expires_at.as_deref(),
        redirect: rec.redirect.unwrap_or_default(),
        tags: &rec.tags,
        space: rec.space.as_deref(),
    }
}

/// How a done record differs from its row, counting what `refresh` saw on Nimriz as the
/// live value (so `--force-drift` sets it back). `true` when an outside change is part of it.
fn live_changes(prev: &LinkRecord, row: &Row) -> (Vec<FieldChange>, bool) {
    let mut changes = field_changes(prev, planned_fields(&row.rec));
    let Some(o) = prev.outside.as_ref().filter(|o| !o.deleted) else {
        return (changes, false);
    };
    let mut outside = false;
    let mut set = |field: &str, live: Option<String>, planned: Option<String>| {
        if live == planned {
            return;
        }
        outside = true;
        changes.retain(|c| c.field != field);
        changes.push(FieldChange {
            field: field.into(),
            old: live,
            new: planned,
            updatable: true,
        });
    };
    if let Some(d) = &o.destination {
        set(
            "destination",
            Some(d.clone()),
            Some(row.rec.destination.clone()),
        );
    }
    if let Some(e) = &o.expires_at {
        set(
            "expires_at",
            Some(e.clone()).filter(|e| !e.is_empty()),
            row.rec.expires_at.clone(),
        );
    }
    if let Some(s) = &o.slug {
        set("slug", Some(s.clone()), Some(row.rec.slug.clone()));
    }
    (changes, outside)
}

/// The live record a `[[moved]]` entry hands to this row, if any.
fn moved_source<'s>(
    store: &'s ManifestStore,
    moved: &[Moved],
    row: &Row,
) -> Result<Option<&'s LinkRecord>> {
    let Some(m) = moved.iter().find(|m| m.to == row.rec.slug) else {
        return Ok(None);
    };
    let Some(prev) = store.get(&LinkRecord::key_for(&row.rec.domain, &m.from))? else {
        return Ok(None);
    };
    Ok((prev.status.is_done() && prev.url_id.is_some() && prev.retired.is_none()).then_some(prev))
}

/// A rename: the slug, then whatever else the spec changed.
fn rename_changes(prev: &LinkRecord, row: &Row) -> Vec<FieldChange> {
    let mut changes = vec![FieldChange {
        field: "slug".into(),
        old: Some(prev.slug.clone()),
        new: Some(row.rec.slug.clone()),
        updatable: true,
    }];
    changes.extend(field_changes(prev, planned_fields(&row.rec)));
    changes
}

/// What the update phase did.
#[derive(Default)]
struct UpdateTally {
    done: usize,
    failed: Vec<LinkRecord>,
    /// Items whose outcome never came (the run stopped on a fatal error).
    unsettled: usize,
    fatal: Option<Error>,
}

impl UpdateTally {
    /// Journal one outcome at once (a rename moves the record to its new key).
    fn absorb(
        &mut self,
        store: &mut ManifestStore,
        outcome: UpdateOutcome,
        record_err: &mut Option<Error>,
    ) {
        let (old_key, rec, ok) = match outcome {
            UpdateOutcome::Done { old_key, rec } => (old_key, rec, true),
            UpdateOutcome::Failed { old_key, rec } => (old_key, rec, false),
            UpdateOutcome::Fatal(e) => {
                self.unsettled += 1;
                self.fatal.get_or_insert(Error::from(e));
                return;
            }
        };
        let written = if rec.key == old_key {
            store.record(std::slice::from_ref(&rec))
        } else {
            store.rekey(&[(old_key, rec.clone())])
        };
        if let Err(e) = written {
            record_err.get_or_insert(e);
        }
        if ok {
            self.done += 1;
        } else {
            self.failed.push(rec);
        }
    }
}

/// Why the run stopped sending early.
enum Stop {
    Interrupted,
    Fatal(Error),
}

/// One link on its way: its manifest record (kept current) and what is sent for it.
#[derive(Debug, Clone)]
struct Row {
    rec: LinkRecord,
    /// Times this run resent it for lack of a usable result.
    resends: u32,
    /// Planned short URL, a fallback when the API does not return one.
    planned_short_url: Option<String>,
}

/// What one in-flight task hands back.
struct BatchDone {
    rows: Vec<Row>,
    verdict: BatchVerdict,
    http_attempts: u32,
}

struct Run<'a> {
    client: Client,
    settings: &'a BuildSettings,
    printer: &'a dyn Reporter,
    /// Set once the number of rows to send is known.
    progress: Option<&'a dyn ProgressSink>,
    /// The workspace's domains (what each row's request is built against).
    domains: &'a [Domain],
    store: &'a mut ManifestStore,
    /// Rows to send, in plan order (resends at the back, a refused batch at the front).
    queue: VecDeque<Row>,
    /// The plan's rows still to come.
    feed: Feed,
    /// The spec's `[[moved]]` entries.
    moved: &'a [Moved],
    /// What the split made of the rows taken so far.
    intake: Intake,
    batch_size: usize,
    /// The bulk route is missing: one `POST /api/shorten` per link.
    single_mode: bool,
    said_too_large: bool,
    stop: Option<Stop>,
    /// Keys settled (created/exists/drift/failed) by this run.
    settled: HashSet<String>,
    /// Results absorbed but not yet journaled. They go out in the same append (one fsync)
    /// as the pending rows of the next launch, or on their own when nothing is launched.
    /// Losing them in a crash is safe: their rows are still journaled as pending, so the
    /// next run resends them with the same keys and the replay settles them.
    unjournaled: Vec<LinkRecord>,
    batches_done: u32,
    /// Compact the journal at the next chance (once it outgrows the manifest, see
    /// `ManifestStore::compaction_due`).
    checkpoint_due: bool,
    create_requests: u64,
    /// Rows sent again for lack of a usable result (summed over rows).
    resends: u64,
}

impl Run<'_> {
    fn note(&self, msg: &str) {
        if let Some(p) = self.progress {
            p.note(msg);
        }
    }

    fn inc(&self, n: u64) {
        if let Some(p) = self.progress {
            p.inc(n);
        }
    }

    /// Rows the queue may hold ahead of the launches: enough to fill every request slot.
    /// Bounds the memory of a streamed build (the feed's channel adds a little more).
    fn window(&self) -> usize {
        self.batch_size
            .saturating_mul(self.settings.concurrency.max(1))
    }

    /// Split every row of the plan before sending (a build against an existing record).
    async fn take_all(&mut self) -> Result<()> {
        while let Some(row) = self.feed.next().await {
            self.take(row)?;
        }
        self.feed_ended()
    }

    /// Take the rows already made, without waiting, until the queue holds a window.
    fn take_ready(&mut self) {
        while self.queue.len() < self.window() {
            match self.feed.try_next() {
                Next::Row(row) => self.take_or_stop(row),
                Next::Wait => return,
                Next::End => {
                    if let Err(e) = self.feed_ended() {
                        self.stop_with(Stop::Fatal(e));
                    }
                    return;
                }
            }
        }
    }

    fn take_or_stop(&mut self, row: Row) {
        if let Err(e) = self.take(row) {
            self.stop_with(Stop::Fatal(e));
        }
    }

    /// The feed is done: was the whole plan made?
    fn feed_ended(&mut self) -> Result<()> {
        self.feed.finish().map_err(|e| {
            Error::Api(format!(
                "internal error: walking the spec for its links failed ({e}); nothing more is                  sent, and the next run sends what this one did not"
            ))
        })
    }

    /// After an early stop: split the rest of the plan and record its new rows as this run
    /// never launched them, a window at a time, so the manifest still lists the whole
    /// plan in plan order.
    async fn finish_intake(&mut self) {
        if self.stop.is_none() {
            return;
        }
        self.record_never_sent();
        while let Some(row) = self.feed.next().await {
            self.take_or_stop(row);
            if self.queue.len() >= self.window().max(1_000) {
                self.record_never_sent();
            }
        }
        if let Err(e) = self.feed_ended() {
            self.stop_with(Stop::Fatal(e));
        }
        self.record_never_sent();
    }

    /// Journal the queued rows no run has recorded yet (this run never launched them).
    fn record_never_sent(&mut self) {
        let never_sent: Vec<LinkRecord> = std::mem::take(&mut self.queue)
            .into_iter()
            .filter(|r| !self.store.contains(&r.rec.key))
            .map(|r| r.rec)
            .collect();
        if let Err(e) = self.store.record(&never_sent)
            && !matches!(self.stop, Some(Stop::Fatal(_)))
        {
            self.stop = Some(Stop::Fatal(e));
        }
    }

    /// Split one planned row: already done (skip), a live link the spec changed (update in
    /// place), or to send (queued).
    fn take(&mut self, mut row: Row) -> Result<()> {
        let store = &*self.store;
        let settings = self.settings;
        let intake = &mut self.intake;
        let summary = store.summary(&row.rec.key);
        // Done and unchanged (the common re-run): decided from the index, nothing parsed.
        if let Some(s) = summary
            && s.status.is_done()
            && !s.retired
            && !s.outside
            && s.planned == row.rec.planned_fingerprint()
        {
            intake.skipped_done += 1;
            return Ok(());
        }
        let moved_from = match summary {
            None => moved_source(store, self.moved, &row)?,
            Some(_) => None,
        };
        if let Some(prev) = moved_from {
            let changes = rename_changes(prev, &row);
            intake.split.change(settings, prev, &row, changes, false);
            return Ok(());
        }
        match store.get(&row.rec.key)? {
            Some(prev)
                if prev.retired.is_some()
                    && (prev.status.is_done() || prev.status == LinkStatus::Deleted) =>
            {
                // Retired links are left as `retire` set them.
                intake.skipped_done += 1;
                return Ok(());
            }
            Some(prev) if prev.status.is_done() => {
                let (changes, outside) = live_changes(prev, &row);
                if changes.is_empty() {
                    intake.skipped_done += 1;
                } else {
                    intake.split.change(settings, prev, &row, changes, outside);
                }
                return Ok(());
            }
            Some(prev)
                if prev.status == LinkStatus::Drift
                    && prev.url_id.is_some()
                    && settings.update
                    && settings.force_drift =>
            {
                let changes = vec![FieldChange {
                    field: "destination".into(),
                    old: prev.existing_destination.clone(),
                    new: Some(row.rec.destination.clone()),
                    updatable: true,
                }];
                intake.split.change(settings, prev, &row, changes, true);
                return Ok(());
            }
            Some(prev) => {
                row.rec.attempts = prev.attempts;
                row.rec.status = prev.status;
                row.rec.url_id = prev.url_id.clone();
                row.rec.short_url = prev.short_url.clone();
                row.rec.existing_destination = prev.existing_destination.clone();
                row.rec.error = prev.error.clone();
                keep_lifecycle(&mut row.rec, prev);
                if prev.status == LinkStatus::Deleted {
                    // Deleted on Nimriz: a create under the old idempotency key could be
                    // answered with the replay of the deleted link. A new key, recorded so
                    // a resend after a crash reuses it.
                    let key = contract::idempotency_key(
                        row.rec.domain.id.as_deref().unwrap_or_default(),
                        &row.rec.slug,
                        &format!(
                            "{}\nafter-delete:{}",
                            row.rec.destination,
                            prev.url_id.as_deref().unwrap_or_default()
                        ),
                    );
                    row.rec.idempotency_key = key;
                    row.rec.url_id = None;
                    row.rec.short_url = None;
                } else if matches!(prev.status, LinkStatus::Pending | LinkStatus::Failed)
                    && prev.destination == row.rec.destination
                {
                    // Never settled: resend with the key it was sent with (a recreate after
                    // a delete has its own). A settled record's key belongs to a create
                    // whose link may have changed since, so it is never reused.
                    row.rec.idempotency_key.clone_from(&prev.idempotency_key);
                }
                // Keep the record as it was until it is actually sent again.
            }
            None => {}
        }
        intake.sent_keys.push(row.rec.key.clone());
        self.queue.push_back(row);
        Ok(())
    }

    async fn drive<F: Future<Output = ()>>(&mut self, interrupt: F) {
        let mut in_flight: JoinSet<BatchDone> = JoinSet::new();
        let interrupt = std::pin::pin!(interrupt);
        let mut interrupt = interrupt;
        let mut interrupted = false;
        loop {
            self.take_ready();
            self.launch_ready(&mut in_flight);
            // Results with no launch after them (the queue is empty, or the run is stopping).
            self.journal_results();
            // More rows are wanted while the run goes on and the queue is short of a window.
            let want_rows =
                self.stop.is_none() && !self.feed.ended() && self.queue.len() < self.window();
            if in_flight.is_empty() && !want_rows {
                break;
            }
            if self.checkpoint_due {
                // Only while work remains: `finish` compacts at the end anyway.
                self.checkpoint_due = false;
                if let Err(e) = self.store.checkpoint() {
                    self.stop_with(Stop::Fatal(e));
                }
            }
            tokio::select! {
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    if self.stop.is_none() {
                        self.stop = Some(Stop::Interrupted);
                    }
                    // Requests on the wire finish; none starts a new retry. Rows whose
                    // request gives up stay pending and are resent (same keys) next run.
                    self.client.stop(INTERRUPTED);
                    self.note(&format!(
                        "interrupted: sending nothing new; waiting for {} request(s) in flight, \
                         then writing the manifest",
                        in_flight.len()
                    ));
                }
                row = self.feed.next(), if want_rows => match row {
                    Some(row) => self.take_or_stop(row),
                    None => {
                        if let Err(e) = self.feed_ended() {
                            self.stop_with(Stop::Fatal(e));
                        }
                    }
                },
                joined = in_flight.join_next(), if !in_flight.is_empty() => {
                    let mut joined = joined;
                    // Batches sent together finish together: take every one already done,
                    // so their results and the batches launched next share one journal
                    // append (one fsync) instead of two each.
                    while let Some(result) = joined {
                        self.joined(result);
                        joined = in_flight.try_join_next();
                    }
                }
            }
        }
    }

    fn joined(&mut self, result: std::result::Result<BatchDone, tokio::task::JoinError>) {
        match result {
            Ok(done) => self.absorb(done),
            Err(e) => self.stop_with(Stop::Fatal(Error::Api(format!(
                "internal error: a request task failed ({e}); its rows stay pending and are \
                 resent by the next run"
            )))),
        }
    }

    /// A request's error that ends the run, unless it is our own stop coming back: after
    /// Ctrl-C the client's brake is pulled by us, and the requests it cuts short
    /// (`ClientError::Stopped`) are not a failure of the API.
    fn client_failed(&mut self, e: ClientError) {
        if matches!(self.stop, Some(Stop::Interrupted)) && matches!(e, ClientError::Stopped(_)) {
            return;
        }
        self.stop_with(Stop::Fatal(Error::from(e)));
    }

    fn stop_with(&mut self, stop: Stop) {
        if let Stop::Fatal(e) = &stop {
            // Requests still retrying give up at their next step.
            self.client.stop(&e.to_string());
        }
        match (&self.stop, stop) {
            // A run-level failure outranks an interrupt: it is what the user must act on.
            (None | Some(Stop::Interrupted), s @ Stop::Fatal(_)) => self.stop = Some(s),
            (None, s) => self.stop = Some(s),
            _ => {}
        }
    }

    /// Fill the free request slots: take the next batches, journal them as pending together
    /// with the results not yet journaled (one append, one fsync), then send them.
    fn launch_ready(&mut self, in_flight: &mut JoinSet<BatchDone>) {
        let mut batches: Vec<Vec<Row>> = Vec::new();
        let n = if self.single_mode { 1 } else { self.batch_size };
        // While the walk still makes rows, wait until every free slot can take a full batch:
        // batches launched together share one journal append (one fsync), as when the whole
        // plan was queued first (one at a time, 10 batches of 1,000 cost 10 fsyncs in a row).
        let free = self.settings.concurrency.saturating_sub(in_flight.len());
        if !self.feed.ended() && self.queue.len() < n.saturating_mul(free) {
            return;
        }
        while self.stop.is_none()
            && in_flight.len() + batches.len() < self.settings.concurrency
            && !self.queue.is_empty()
            // A short batch only once the plan has no more rows to give.
            && (self.queue.len() >= n || self.feed.ended())
        {
            let n = n.min(self.queue.len());
            let mut rows: Vec<Row> = self.queue.drain(..n).collect();
            let now = now_rfc3339();
            for r in &mut rows {
                r.rec.status = LinkStatus::Pending;
                r.rec.attempts += 1;
                r.rec.updated_at.clone_from(&now);
            }
            batches.push(rows);
        }
        if batches.is_empty() {
            return;
        }
        // Results first: a resent row's new pending line must come after its old result.
        let mut records = std::mem::take(&mut self.unjournaled);
        records.extend(batches.iter().flatten().map(|r| r.rec.clone()));
        // Send first, then journal (the fsync overlaps the requests instead of delaying
        // them). Safe because a row's idempotency key and slug are fixed by its content: a
        // crash before this append makes the next run send it again with the same key, and
        // the replay or the conflict lookup settles it — a resend, never a duplicate; and a
        // result is only ever counted done once it is journaled.
        for rows in batches {
            self.spawn_batch(in_flight, rows);
        }
        self.record(&records);
    }

    /// Journal the results absorbed since the last append, on their own.
    fn journal_results(&mut self) {
        if !self.unjournaled.is_empty() {
            let records = std::mem::take(&mut self.unjournaled);
            self.record(&records);
        }
    }

    /// Send one batch already journaled as pending.
    fn spawn_batch(&mut self, in_flight: &mut JoinSet<BatchDone>, rows: Vec<Row>) {
        self.create_requests += 1;
        let client = self.client.clone();
        let single = self.single_mode;
        self.printer.detail(&format!(
            "sending {} row(s){}",
            rows.len(),
            if single { " (single create)" } else { "" }
        ));
        // Built now, not kept per row from the start: a queue of 100,000 rows holds only
        // their records.
        let outgoing: Vec<Outgoing> = rows
            .iter()
            .map(|r| outgoing(&r.rec, self.domains))
            .collect();
        in_flight.spawn(async move {
            let (verdict, http_attempts) = if single {
                let (result, attempts) = send::create_one(&client, &outgoing[0]).await;
                let verdict = match result {
                    RowResult::Unsettled(e) => BatchVerdict::Fatal(e),
                    other => BatchVerdict::Rows(vec![other]),
                };
                (verdict, attempts)
            } else {
                send::send_bulk(&client, &outgoing).await
            };
            BatchDone {
                rows,
                verdict,
                http_attempts,
            }
        });
    }

    /// Record a finished batch and decide what happens to each row.
    fn absorb(&mut self, done: BatchDone) {
        let BatchDone {
            rows,
            verdict,
            http_attempts,
        } = done;
        let extra_attempts = http_attempts.saturating_sub(1);
        match verdict {
            BatchVerdict::Rows(results) => {
                let mut records = Vec::new();
                let mut settled_now = 0u64;
                let mut fatal = None;
                for (mut row, result) in rows.into_iter().zip(results) {
                    row.rec.attempts += extra_attempts;
                    row.rec.updated_at = now_rfc3339();
                    match result {
                        RowResult::Settled {
                            status,
                            url_id,
                            short_url,
                            short_code: _,
                            existing_destination,
                        } => {
                            row.rec.status = status;
                            if status == LinkStatus::Created {
                                row.rec.origin = Some(Origin::Created);
                            }
                            row.rec.url_id = url_id;
                            row.rec.short_url = short_url.or_else(|| row.planned_short_url.clone());
                            row.rec.existing_destination = existing_destination;
                            row.rec.error = None;
                        }
                        RowResult::Failed(err) => set_failed(&mut row.rec, err),
                        RowResult::Resend(why) => {
                            row.resends += 1;
                            self.resends += 1;
                            if row.resends > self.settings.max_resends {
                                set_failed(
                                    &mut row.rec,
                                    RecordedError {
                                        code: Some("no_result".into()),
                                        message: format!(
                                            "Nimriz gave no usable result for this link in \
                                             {} sends ({why}); re-run the build to try again \
                                             (same key and slug, so no duplicate)",
                                            row.resends
                                        ),
                                        support_reference: None,
                                        http_status: None,
                                    },
                                );
                            } else {
                                self.printer
                                    .detail(&format!("resending {} ({why})", row.rec.key));
                                // Attempts so far are kept; the row stays pending.
                                records.push(row.rec.clone());
                                self.queue.push_back(row);
                                continue;
                            }
                        }
                        RowResult::Unsettled(e) => {
                            records.push(row.rec.clone());
                            fatal.get_or_insert(e);
                            continue;
                        }
                    }
                    settled_now += 1;
                    self.settled.insert(row.rec.key.clone());
                    records.push(row.rec);
                }
                self.unjournaled.extend(records);
                self.inc(settled_now);
                if let Some(e) = fatal {
                    self.client_failed(e);
                }
            }
            BatchVerdict::TooLarge(f) => {
                if rows.len() <= 1 {
                    let err = RecordedError {
                        code: f.code.clone(),
                        message: format!(
                            "Nimriz refused even a single-row batch as too large ({f}); the \
                             link itself may be too long"
                        ),
                        support_reference: f.support_reference.clone(),
                        http_status: Some(f.status),
                    };
                    let records: Vec<LinkRecord> = rows
                        .into_iter()
                        .map(|mut r| {
                            set_failed(&mut r.rec, err.clone());
                            self.settled.insert(r.rec.key.clone());
                            r.rec
                        })
                        .collect();
                    self.inc(records.len() as u64);
                    self.unjournaled.extend(records);
                } else {
                    let smaller = (rows.len() / 2).max(1);
                    if smaller < self.batch_size {
                        self.batch_size = smaller;
                        let msg = format!(
                            "the server refused a batch of {} rows as too large ({f}); \
                             continuing with batches of {smaller}",
                            rows.len()
                        );
                        // Batches in flight hit the same limit: say it once, details in -v.
                        if self.said_too_large {
                            self.printer.detail(&msg);
                        } else {
                            self.said_too_large = true;
                            self.note(&msg);
                        }
                    }
                    self.requeue_front(rows);
                }
            }
            BatchVerdict::BulkUnsupported => {
                if !self.single_mode {
                    self.single_mode = true;
                    self.note(&format!(
                        "{} is not available on this server (404/405); creating links one \
                             by one through {} instead",
                        contract::PATH_SHORTEN_BULK,
                        contract::PATH_SHORTEN
                    ));
                }
                self.requeue_front(rows);
            }
            BatchVerdict::Fatal(e) => {
                // Rows stay pending in the journal: the next run resends them, same keys.
                self.client_failed(e);
            }
        }
        self.batches_done += 1;
        if self.store.compaction_due() {
            self.checkpoint_due = true;
        }
    }

    fn requeue_front(&mut self, rows: Vec<Row>) {
        for r in rows.into_iter().rev() {
            self.queue.push_front(r);
        }
    }

    fn record(&mut self, records: &[LinkRecord]) {
        if let Err(e) = self.store.record(records) {
            self.stop_with(Stop::Fatal(e));
        }
    }
}

fn set_failed(rec: &mut LinkRecord, err: RecordedError) {
    rec.status = LinkStatus::Failed;
    rec.error = Some(err);
    rec.existing_destination = None;
}

/// Fill in every `domain.id` from its host through `GET /api/v1/domains` (once). Also
/// returns the domain list (empty when no lookup was needed), so answers can be checked
/// against every id and the host of a row's domain.
pub(super) async fn resolve_domains(
    client: &Client,
    mut links: Vec<PlannedLink>,
) -> Result<(Vec<PlannedLink>, Vec<Domain>)> {
    let mut seen = HashSet::new();
    let distinct: Vec<DomainRef> = links
        .iter()
        .filter(|l| seen.insert(&l.domain))
        .map(|l| l.domain.clone())
        .collect();
    let (resolver, domains) = lookup_domains(client, &distinct).await?;
    resolver.resolve_all(&mut links);
    Ok((links, domains))
}

/// The domain lookup for the plan's distinct `domains`: a usage error naming every host
/// the workspace does not have (in plan order).
async fn lookup_domains(
    client: &Client,
    distinct: &[DomainRef],
) -> Result<(Resolver, Vec<Domain>)> {
    if distinct.iter().all(|d| d.id.is_some()) {
        return Ok((Resolver::default(), Vec::new()));
    }
    let domains = client.list_domains().await?;
    let resolver = Resolver {
        by_host: Arc::new(
            domains
                .iter()
                .map(|d| (nimriz::facts::normalize_host(&d.domain_name), d.id.clone()))
                .collect(),
        ),
    };
    let mut unknown: Vec<String> = Vec::new();
    for d in distinct {
        if d.id.is_some() {
            continue;
        }
        let host = d.host.clone().unwrap_or_default();
        if resolver.id_of(&host).is_none() && !unknown.contains(&host) {
            unknown.push(host);
        }
    }
    if !unknown.is_empty() {
        let mut have: Vec<&str> = domains.iter().map(|d| d.domain_name.as_str()).collect();
        have.sort_unstable();
        return Err(Error::Usage(format!(
            "the spec uses short domain(s) this workspace does not have: {}. The workspace has: \
             {}. Host names must match exactly (www.example.com and example.com differ); fix \
             the spec or {}. Nothing was created",
            unknown.join(", "),
            if have.is_empty() {
                "no domains".to_string()
            } else {
                have.join(", ")
            },
            super::workspace::add_domain_fix(&client.api_host())
        )));
    }
    Ok((resolver, domains))
}

/// Host → domain id, from the workspace's domain list.
#[derive(Debug, Clone, Default)]
struct Resolver {
    /// Keyed by the normalised host.
    by_host: Arc<HashMap<String, String>>,
}

impl Resolver {
    fn id_of(&self, host: &str) -> Option<&String> {
        self.by_host.get(&nimriz::facts::normalize_host(host))
    }

    /// Give a domain named by its host alone its id.
    fn resolve(&self, d: &mut DomainRef) {
        if d.id.is_none()
            && let Some(id) = d.host.as_deref().and_then(|h| self.id_of(h))
        {
            d.id = Some(id.clone());
        }
    }

    fn resolve_all(&self, links: &mut [PlannedLink]) {
        for link in links {
            self.resolve(&mut link.domain);
        }
    }

    /// Could two of the plan's domain keys (id, else host) become one once resolved (a
    /// host and an id of the same domain, two spellings of a host)? Only then can a plan
    /// whose (domain, slug) pairs are unique have a record key twice.
    fn may_merge(&self, distinct: &[DomainRef]) -> bool {
        let mut first: HashMap<String, &str> = HashMap::new();
        for d in distinct {
            let mut resolved = d.clone();
            self.resolve(&mut resolved);
            let before = first
                .entry(resolved.key().to_string())
                .or_insert_with(|| d.key());
            if *before != d.key() {
                return true;
            }
        }
        false
    }
}

/// Every record key of a walked plan (`planned_keys`, without holding the links).
fn walked_keys(walk: &LinkWalk, resolver: &Resolver) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    let mut twice = None;
    let walked = walk.each(
        |l| {
            let mut domain = l.domain.clone();
            resolver.resolve(&mut domain);
            (
                LinkRecord::key_for(&domain, &l.slug),
                domain,
                l.slug.clone(),
            )
        },
        |(key, domain, slug)| {
            if seen.insert(key) {
                return Ok(());
            }
            twice = Some(Error::Usage(format!(
                "the plan has slug '{slug}' twice on domain {}; slugs must be unique per domain",
                describe_domain(&domain)
            )));
            Err(std::io::Error::other("a key twice"))
        },
    );
    if let Some(e) = twice {
        return Err(e);
    }
    walked.map_err(|e| Error::Api(format!("internal error: walking the spec failed ({e})")))?;
    Ok(seen)
}

/// The plan's rows, made one at a time as the send loop takes them.
enum Feed {
    /// A plan in memory (domains already resolved) and the time its rows are stamped with.
    Links(std::vec::IntoIter<PlannedLink>, String),
    /// A walk of the spec on its own thread, a bounded channel ahead of the send loop.
    Walk {
        walk: LinkWalk,
        rx: tokio::sync::mpsc::Receiver<Row>,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
        ended: bool,
    },
}

/// Rows the walk may make ahead of the send loop (besides the queue's window).
const FEED_ROWS: usize = 512;

// Only ever a return value, matched at once: boxing each row would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Next {
    Row(Row),
    /// None made yet.
    Wait,
    End,
}

impl Feed {
    fn walk(walk: LinkWalk, resolver: Resolver, now: String) -> Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_ROWS);
        let w = walk.clone();
        let thread = std::thread::Builder::new()
            .name("plan-walk".into())
            .spawn(move || {
                w.each(
                    |l| {
                        let mut link = l.clone();
                        resolver.resolve(&mut link.domain);
                        to_row(link, &now)
                    },
                    // Only fails once the send loop has gone (the build returned early).
                    |row| {
                        tx.blocking_send(row)
                            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                    },
                )
            })
            .map_err(|e| Error::io("start", "the walk of the plan", e))?;
        Ok(Feed::Walk {
            walk,
            rx,
            thread: Some(thread),
            ended: false,
        })
    }

    fn ended(&self) -> bool {
        match self {
            Feed::Links(links, _) => links.len() == 0,
            Feed::Walk { ended, .. } => *ended,
        }
    }

    fn try_next(&mut self) -> Next {
        match self {
            Feed::Links(links, now) => match links.next() {
                Some(l) => Next::Row(to_row(l, now)),
                None => Next::End,
            },
            Feed::Walk { rx, ended, .. } => match rx.try_recv() {
                Ok(row) => Next::Row(row),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => Next::Wait,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    *ended = true;
                    Next::End
                }
            },
        }
    }

    async fn next(&mut self) -> Option<Row> {
        match self {
            Feed::Links(links, now) => links.next().map(|l| to_row(l, now)),
            Feed::Walk { rx, ended, .. } => {
                let row = rx.recv().await;
                *ended |= row.is_none();
                row
            }
        }
    }

    /// Once ended: did the walk make every row?
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Feed::Links(..) => Ok(()),
            Feed::Walk { thread, .. } => match thread.take().map(std::thread::JoinHandle::join) {
                None => Ok(()),
                Some(Ok(walked)) => walked,
                Some(Err(_)) => Err(std::io::Error::other("the walk panicked")),
            },
        }
    }
}

/// What the split made of the plan's rows.
#[derive(Default)]
struct Intake {
    skipped_done: usize,
    split: Split,
    /// Keys of the rows queued to send.
    sent_keys: Vec<String>,
}

/// The records a build would write for `links` before sending anything (`import` matches
/// live links against them).
pub(super) fn planned_records(links: Vec<PlannedLink>) -> Result<Vec<LinkRecord>> {
    planned_keys(&links)?;
    let now = now_rfc3339();
    Ok(links.into_iter().map(|l| to_row(l, &now).rec).collect())
}

/// Every planned record key; a usage error when the plan has one twice.
fn planned_keys(links: &[PlannedLink]) -> Result<HashSet<String>> {
    let mut seen = HashSet::with_capacity(links.len());
    for link in links {
        if !seen.insert(LinkRecord::key_for(&link.domain, &link.slug)) {
            return Err(Error::Usage(format!(
                "the plan has slug '{}' twice on domain {}; slugs must be unique per domain",
                link.slug,
                describe_domain(&link.domain)
            )));
        }
    }
    Ok(seen)
}

/// A planned link as a row: its record as a build first writes it.
fn to_row(link: PlannedLink, now: &str) -> Row {
    let domain_id = link.domain.id.as_deref().unwrap_or_default();
    let key = LinkRecord::key_for(&link.domain, &link.slug);
    let idempotency_key = contract::idempotency_key(domain_id, &link.slug, &link.destination);
    Row {
        rec: LinkRecord {
            key,
            cell: link.cell,
            slug: link.slug,
            domain: link.domain,
            destination: link.destination,
            utm: link.utm,
            idempotency_key,
            status: LinkStatus::Pending,
            short_url: None,
            url_id: None,
            existing_destination: None,
            tags: link.tags,
            printed_at: None,
            expires_at: link.expires_at,
            redirect: Some(link.redirect),
            space: link.space,
            origin: None,
            outside: None,
            retired: None,
            history: Vec::new(),
            error: None,
            attempts: 0,
            updated_at: now.to_string(),
        },
        resends: 0,
        planned_short_url: link.short_url,
    }
}

/// What is sent for a row's record. DNS names are case-insensitive and may carry a
/// trailing dot; nothing else is folded (Nimriz matches hosts strictly).
fn outgoing(rec: &LinkRecord, domains: &[Domain]) -> Outgoing {
    let domain_id = rec.domain.id.clone().unwrap_or_default();
    let entry = domains.iter().find(|d| d.id == domain_id);
    let mut out = Outgoing::new(
        rec.key.clone(),
        rec.idempotency_key.clone(),
        NewLink {
            domain_id,
            long_url: rec.destination.clone(),
            custom_slug: Some(rec.slug.clone()),
            expires_at: rec.expires_at.clone(),
            redirect_status_code: rec.redirect,
            tags: rec.tags.clone(),
            space: rec.space.clone(),
        },
    );
    if let Some(d) = entry {
        out.domain_ids.extend(d.alt_ids.iter().cloned());
    }
    out.host = rec
        .domain
        .host
        .clone()
        .or_else(|| entry.map(|d| d.domain_name.clone()));
    out
}

fn describe_domain(d: &DomainRef) -> String {
    match (&d.host, &d.id) {
        (Some(h), _) => h.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => "?".into(),
    }
}
