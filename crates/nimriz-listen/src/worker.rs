//! The background worker: routes stored events through the rules into jobs, then delivers
//! jobs, paced per target, with retries, backoff and a dead-letter store.
//!
//! Every change it makes goes through the store's writer thread ([`Writer::run`]), grouped
//! with other worker changes and always after waiting acknowledgements; it reads on its own
//! connection. A claim is also the job's `sending` record: the request leaves right after
//! the claim is committed.
//!
//! Delivery guarantee: a job is marked `delivered` right after the target acknowledges it
//! (2xx) and is never sent again after that; a failed write of that mark is retried until
//! shortly before the lease ends. If the process dies between the target's 2xx and that
//! mark, the lease expires and the job is sent once more. So a crash repeats at most the
//! requests in flight at that moment (never more than `worker.concurrency`); for HTTP
//! actions the `Idempotency-Key` (derived from event id + action) lets the target drop the
//! repeat, Slack has no such key.

use super::backend::JobQueue;
use super::campaign::{Campaign, CampaignSource};
use super::config::{Action, ActionKind, ListenConfig};
use super::rules::{EventView, Source};
use super::store::{self, Job, JobSpec, key_id, now_ms};
use nimriz_matrix_core::report::SharedReporter;
use nimriz_matrix_core::{Error, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};

/// How often an idle worker looks for work it was not woken for (retries coming due,
/// expired leases, jobs re-queued by `listen replay` from another process).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Events routed per worker change (about a millisecond of work, so a worker transaction
/// stays small).
const ROUTE_BATCH: usize = 100;

/// The opaque key that identifies one target (kind + hash of its URL): what pacing groups
/// by. The URL itself may be a secret, so it is never stored.
pub fn target_key(action: &Action) -> String {
    let digest = Sha256::digest(action.url.expose());
    format!("{}:{}", action.kind.name(), &hex::encode(digest)[..16])
}

/// `Idempotency-Key` for an HTTP action: stable for (event, action), safe header chars.
pub fn idempotency_key(event_id: &str, action_id: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}\n{action_id}"));
    format!("nmx-{}", &hex::encode(digest)[..40])
}

/// What the idempotency key is derived from for a stored event key: the bare id for a
/// webhook (as before namespacing, so keys stay stable across the upgrade), the namespaced
/// key for a click (so a click and a webhook sharing an id never share a key).
fn idempotency_basis(key: &str) -> &str {
    match key.strip_prefix("webhook:") {
        Some(id) => id,
        None => key,
    }
}

pub struct Worker {
    /// The store: SQLite (`backend::SqliteQueue`) or PostgreSQL (`pg::PgQueue`).
    queue: Arc<dyn JobQueue>,
    config: Arc<ListenConfig>,
    campaign: Arc<CampaignSource>,
    actions: HashMap<String, Action>,
    /// Every configured target with its pacing gap (ms), in a stable order.
    targets: Vec<(String, i64)>,
    client: reqwest::Client,
    owner: String,
    wake: Arc<Notify>,
    printer: SharedReporter,
}

enum Outcome {
    Delivered(u16),
    Retry {
        status: Option<u16>,
        error: String,
        /// From a 429 `Retry-After`: hold back the whole target too.
        retry_after: Option<Duration>,
    },
    Permanent {
        status: Option<u16>,
        error: String,
    },
}

impl Worker {
    pub fn new(
        config: Arc<ListenConfig>,
        campaign: Arc<CampaignSource>,
        wake: Arc<Notify>,
        printer: SharedReporter,
        queue: Arc<dyn JobQueue>,
    ) -> Result<Self> {
        let mut actions = HashMap::new();
        let mut pace: HashMap<String, i64> = HashMap::new();
        for a in config.rules.iter().flat_map(|r| &r.actions) {
            let target = target_key(a);
            let gap = a.min_interval.as_millis() as i64;
            let entry = pace.entry(target).or_insert(0);
            *entry = (*entry).max(gap);
            actions.insert(a.id.clone(), a.clone());
        }
        let mut targets: Vec<(String, i64)> = pace.into_iter().collect();
        targets.sort();
        let client = reqwest::Client::builder()
            .timeout(config.worker.request_timeout)
            .user_agent(concat!("nimriz-matrix-listen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Usage(format!("could not build the HTTP client: {e}")))?;
        Ok(Worker {
            queue,
            config,
            campaign,
            actions,
            targets,
            client,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            wake,
            printer,
        })
    }

    /// Dead-letter queued jobs whose target no configured action posts to any more (one
    /// read at start; otherwise no claim would ever reach them).
    async fn retire_unknown_targets(&self) -> Result<()> {
        let queued = self.queue.queued_targets().await?;
        for t in queued {
            if self.targets.iter().any(|(k, _)| *k == t) {
                continue;
            }
            let mut n = 0;
            loop {
                let reason = "no action in the config posts to this target any more".to_string();
                // Small steps: acknowledgements get the writer between them.
                let step = self
                    .queue
                    .dead_letter_target(t.clone(), reason, 500)
                    .await?;
                n += step;
                if step < 500 {
                    break;
                }
            }
            self.printer.warn(&format!(
                "{n} queued job(s) for a target no longer in the config were dead-lettered \
                 (`listen replay` re-queues them once the action is back)"
            ));
        }
        Ok(())
    }

    /// Run until `stop` turns true; in-flight deliveries are finished first.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.worker.concurrency));
        let mut in_flight = tokio::task::JoinSet::new();
        let retention_ms = self.config.retention.as_millis() as i64;
        let mut next_prune = 0i64;
        let mut rotate = 0usize;
        if let Err(e) = self.retire_unknown_targets().await {
            self.printer.warn(&format!("{e}"));
        }
        loop {
            if *stop.borrow() {
                break;
            }
            if now_ms() >= next_prune {
                let cutoff = now_ms() - retention_ms;
                loop {
                    match self.queue.prune(cutoff, 500).await {
                        Ok(500) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            self.printer.warn(&format!("{e}"));
                            break;
                        }
                    }
                }
                next_prune = now_ms() + 3_600_000;
            }
            if let Err(e) = self.route_pending().await {
                self.printer.warn(&format!("routing: {e}"));
            }
            // Claim as many ready jobs as there are free slots, in one transaction.
            let free = slots.available_permits();
            if free > 0 && !self.targets.is_empty() {
                let owner = self.owner.clone();
                let lease = self.config.worker.lease.as_millis() as i64;
                let mut targets = self.targets.clone();
                // Start with a different target each round: no target starves the others.
                rotate = (rotate + 1) % targets.len();
                targets.rotate_left(rotate);
                let claimed = self.queue.claim(owner, lease, targets, free).await;
                match claimed {
                    Ok(jobs) => {
                        for job in jobs {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break; // cannot happen: only this loop takes slots
                            };
                            let me = self.clone();
                            in_flight.spawn(async move {
                                me.process(job).await;
                                drop(permit);
                                me.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => self.printer.warn(&format!("{e}")),
                }
            }
            while in_flight.try_join_next().is_some() {}
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Evaluate the rules for every unrouted event and record its jobs.
    async fn route_pending(&self) -> Result<()> {
        loop {
            let campaign = self.campaign();
            let route = |ev: &store::PendingEvent| {
                self.matching_jobs(&campaign, &ev.event_id, &ev.source, &ev.body)
            };
            if self.queue.route(ROUTE_BATCH, &route).await? == 0 {
                return Ok(());
            }
        }
    }

    /// The campaign, reloaded if a manifest changed since the last look.
    fn campaign(&self) -> Arc<Campaign> {
        let (campaign, problems) = self.campaign.refresh();
        for p in problems {
            self.printer.warn(&p);
        }
        campaign
    }

    fn view(&self, campaign: &Campaign, key: &str, source: &str, body: &[u8]) -> EventView {
        let source = Source::parse(source).unwrap_or(Source::Click);
        // Bodies were checked to be JSON objects before they were stored.
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        EventView::new(key_id(key), source, body, campaign)
    }

    fn matching_jobs(
        &self,
        campaign: &Campaign,
        key: &str,
        source: &str,
        body: &[u8],
    ) -> Vec<JobSpec> {
        let view = self.view(campaign, key, source, body);
        self.config
            .rules
            .iter()
            .filter(|r| r.filter.matches(&view))
            .flat_map(|r| &r.actions)
            .map(|a| (a.id.clone(), target_key(a)))
            .collect()
    }

    async fn process(&self, job: Job) {
        let claimed_at = Instant::now();
        if job.maybe_sent_before {
            self.printer.warn(&format!(
                "{} for event {}: an earlier attempt's request left but its outcome was not \
                 recorded (crash or lost write); sending again, so the target may see it twice",
                job.action,
                key_id(&job.event_id)
            ));
        }
        let outcome = match self.actions.get(&job.action) {
            None => Outcome::Permanent {
                status: None,
                error: format!("action {} is no longer in the config", job.action),
            },
            Some(action) => match self.queue.event_body(job.event_id.clone()).await {
                Ok(Some((source, body))) => {
                    let view = self.view(&self.campaign(), &job.event_id, &source, &body);
                    self.deliver(action, &view, idempotency_basis(&job.event_id))
                        .await
                }
                Ok(None) => Outcome::Permanent {
                    status: None,
                    error: "the event's payload is gone".into(),
                },
                Err(e) => Outcome::Retry {
                    status: None,
                    error: e.to_string(),
                    retry_after: None,
                },
            },
        };
        let w = &self.config.worker;
        let owner = self.owner.clone();
        let id = key_id(&job.event_id).to_string();
        // The outcome must be recorded before the lease runs out (else the job is taken
        // again and, if delivered, repeated): retry a failed write until shortly before.
        let deadline = claimed_at + w.lease.mul_f64(0.9);
        let job = Arc::new(job);
        match outcome {
            Outcome::Delivered(status) => {
                self.printer
                    .detail(&format!("delivered {} for event {id}", job.action));
                self.record(deadline, || {
                    self.queue.mark_delivered(job.clone(), Some(status))
                })
                .await;
            }
            Outcome::Permanent { status, error } => {
                self.printer.warn(&format!(
                    "{} for event {id}: {error}; dead-lettered (`listen replay` re-queues it)",
                    job.action
                ));
                self.record(deadline, || {
                    self.queue.dead_letter(job.clone(), status, error.clone())
                })
                .await;
            }
            Outcome::Retry { status, error, .. } if job.attempts >= w.max_attempts => {
                let reason = format!("gave up after {} attempts: {error}", job.attempts);
                self.printer.warn(&format!(
                    "{} for event {id}: {reason}; dead-lettered",
                    job.action
                ));
                self.record(deadline, || {
                    self.queue.dead_letter(job.clone(), status, reason.clone())
                })
                .await;
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => {
                let delay = retry_after
                    .unwrap_or_else(|| backoff(w.backoff_base, w.backoff_max, job.attempts));
                let at = now_ms() + delay.as_millis() as i64;
                let pause = retry_after.map(|_| at);
                self.printer.detail(&format!(
                    "{} for event {id}: {error}; retry in {} ms",
                    job.action,
                    delay.as_millis()
                ));
                self.record(deadline, || {
                    self.queue.retry_later(
                        job.clone(),
                        owner.clone(),
                        at,
                        pause,
                        status,
                        error.clone(),
                    )
                })
                .await;
            }
        }
    }

    /// Write an outcome; on failure try again (50 ms, doubling to 1 s) until `deadline`.
    async fn record<'a>(
        &'a self,
        deadline: Instant,
        f: impl Fn() -> super::backend::BoxFuture<'a, Result<()>>,
    ) {
        let mut delay = Duration::from_millis(50);
        loop {
            match f().await {
                Ok(()) => return,
                Err(e) if Instant::now() + delay >= deadline => {
                    // The lease will expire and the job be taken again: nothing is lost.
                    self.printer
                        .warn(&format!("{e}; the job is taken again after its lease"));
                    return;
                }
                Err(e) => {
                    self.printer
                        .detail(&format!("{e}; recording the outcome again"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn deliver(&self, action: &Action, view: &EventView, key_basis: &str) -> Outcome {
        let mut request = self
            .client
            .post(action.url.expose_str())
            .header("content-type", "application/json");
        let body = match &action.kind {
            ActionKind::Slack { text } => json!({"text": text.render(view)}).to_string(),
            ActionKind::Http {
                body,
                idempotency_header,
                headers,
            } => {
                request = request.header(
                    idempotency_header.as_str(),
                    idempotency_key(key_basis, &action.id),
                );
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.expose_str());
                }
                match body {
                    Some(t) => t.render_json(view),
                    None => json!({
                        "event_id": view.event_id,
                        "event_type": view.event_type,
                        "touch": view.touch,
                        "cell": view.link.as_ref().map(|l| &l.cell),
                        "short_url": view.lookup("short_url"),
                        "event": view.body,
                    })
                    .to_string(),
                }
            }
        };
        match request.body(body).send().await {
            Err(e) => Outcome::Retry {
                status: None,
                // Without the URL: it may be a secret (Slack).
                error: format!("request failed: {}", describe_reqwest(&e)),
                retry_after: None,
            },
            Ok(resp) => classify(resp.status().as_u16(), resp.headers()),
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection error"
    }
}

fn classify(status: u16, headers: &reqwest::header::HeaderMap) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        429 => Outcome::Retry {
            status: Some(status),
            error: "rate limited (429)".into(),
            retry_after: Some(retry_after(headers).unwrap_or(Duration::from_secs(1))),
        },
        408 | 500..=599 => Outcome::Retry {
            status: Some(status),
            error: format!("HTTP {status}"),
            retry_after: None,
        },
        410 => Outcome::Permanent {
            status: Some(status),
            error: "410 Gone (e.g. the Slack channel was archived or the webhook revoked)".into(),
        },
        _ => Outcome::Permanent {
            status: Some(status),
            error: format!("HTTP {status}"),
        },
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    let d = match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s.min(3600.0)),
        _ => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// Full-jitter exponential backoff: random in [0, min(max, base·2^(attempt-1))].
fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(max);
    if cap.is_zero() {
        return cap;
    }
    let frac: f64 = rand::random();
    cap.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let h = reqwest::header::HeaderMap::new();
        assert!(matches!(classify(204, &h), Outcome::Delivered(204)));
        assert!(matches!(classify(503, &h), Outcome::Retry { .. }));
        assert!(matches!(classify(410, &h), Outcome::Permanent { .. }));
        assert!(matches!(classify(400, &h), Outcome::Permanent { .. }));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().expect("header"));
        let mut huge = reqwest::header::HeaderMap::new();
        huge.insert("retry-after", "1e300".parse().expect("header"));
        assert_eq!(retry_after(&huge), Some(Duration::from_secs(3600)));
        match classify(429, &h) {
            Outcome::Retry { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            _ => panic!("429 must retry"),
        }
    }

    #[test]
    fn backoff_is_capped() {
        for attempt in 1..40 {
            assert!(
                backoff(Duration::from_millis(100), Duration::from_secs(2), attempt)
                    <= Duration::from_secs(2)
            );
        }
        assert_eq!(
            backoff(Duration::ZERO, Duration::from_secs(2), 3),
            Duration::ZERO
        );
    }

    #[test]
    fn idempotency_key_is_stable_and_per_action() {
        assert_eq!(idempotency_key("e1", "r/a"), idempotency_key("e1", "r/a"));
        assert_ne!(idempotency_key("e1", "r/a"), idempotency_key("e1", "r/b"));
    }
}
