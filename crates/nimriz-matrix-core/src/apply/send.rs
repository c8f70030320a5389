//! Sending creates and settling what each answer means for each row. Shared by the bulk
//! build, the single-create fallback and `shorten`.

use crate::manifest::{LinkStatus, RecordedError};
use nimriz::{
    ApiFailure, BulkResult, BulkRow, Client, ClientError, Expect, Link, NewLink, RowOutcome,
    contract,
};
use std::collections::HashMap;

/// What became of one row after a create request.
#[derive(Debug, Clone, PartialEq)]
pub enum RowResult {
    /// Settled: `Created`, `Exists` or `Drift`.
    Settled {
        status: LinkStatus,
        url_id: Option<String>,
        short_url: Option<String>,
        short_code: Option<String>,
        /// For `Drift`: what Nimriz redirects to now.
        existing_destination: Option<String>,
    },
    /// The server refused this row; not retried in this run.
    Failed(RecordedError),
    /// No usable answer for this row (missing from the response, unreadable, a passing
    /// server condition): resend it unchanged, same key and slug.
    Resend(String),
    /// A run-level failure (auth, unreachable) hit while settling this row; it stays
    /// pending and the run stops.
    Unsettled(ClientError),
}

/// The whole batch's verdict.
#[derive(Debug)]
pub enum BatchVerdict {
    /// One result per row, in the order of the rows sent.
    Rows(Vec<RowResult>),
    /// 413 or a batch-size code: send these rows again in smaller batches.
    TooLarge(ApiFailure),
    /// 404/405 on the bulk route: this server has no bulk create.
    BulkUnsupported,
    /// A run-level failure before any row was settled.
    Fatal(ClientError),
}

/// One row as it is sent, with what its answer must agree with.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub client_row_id: String,
    pub idempotency_key: String,
    pub link: NewLink,
    /// Every id the row's domain is known by: `link.domain_id` first, then any other id its
    /// domain entry carried.
    pub domain_ids: Vec<String>,
    /// The domain's host, when known (from the spec or the domain list).
    pub host: Option<String>,
}

impl Outgoing {
    /// A row for `link` on a domain known only by its id (and maybe its host).
    pub fn new(client_row_id: String, idempotency_key: String, link: NewLink) -> Self {
        Outgoing {
            client_row_id,
            idempotency_key,
            domain_ids: vec![link.domain_id.clone()],
            link,
            host: None,
        }
    }

    fn slug(&self) -> Option<&str> {
        self.link.custom_slug.as_deref()
    }

    fn expect(&self) -> Expect<'_> {
        Expect {
            short_code: self.slug(),
            domain_ids: &self.domain_ids,
            host: self.host.as_deref(),
        }
    }
}

/// Send one bulk request and settle every row (lookups for slug conflicts included).
/// Returns the verdict and the number of HTTP attempts the bulk request took.
pub async fn send_bulk(client: &Client, rows: &[Outgoing]) -> (BatchVerdict, u32) {
    let body: Vec<BulkRow> = rows
        .iter()
        .map(|r| BulkRow {
            client_row_id: r.client_row_id.clone(),
            idempotency_key: r.idempotency_key.clone(),
            link: r.link.clone(),
        })
        .collect();
    let sent = match client.shorten_bulk(&body).await {
        Ok(sent) => sent,
        Err(ClientError::Refused(f)) => return (batch_refused(client, f, rows).await, 1),
        Err(ClientError::Malformed { what, detail }) => {
            // A 2xx we cannot read: the rows may or may not exist. Resending with the
            // same keys is safe (replay or conflict settles it).
            let why = format!("unreadable answer to {what}: {detail}");
            return (
                BatchVerdict::Rows(
                    rows.iter()
                        .map(|_| RowResult::Resend(why.clone()))
                        .collect(),
                ),
                1,
            );
        }
        Err(e) => return (BatchVerdict::Fatal(e), 1),
    };
    let matched = match_results(client, rows, sent.value);
    let mut out = Vec::with_capacity(rows.len());
    for (row, result) in rows.iter().zip(matched) {
        let result = match result {
            None => RowResult::Resend("missing from the bulk response".into()),
            Some(r) => settle_bulk_result(client, row, r).await,
        };
        out.push(result);
    }
    (BatchVerdict::Rows(out), sent.attempts)
}

/// Pair results with rows: by `client_row_id`, never by position; a result without one by
/// (domain, short code) when exactly one row fits. The first result for a row wins; results
/// for rows not asked for, duplicates and results that fit no row are ignored (counted in
/// the `-v` log).
fn match_results(
    client: &Client,
    rows: &[Outgoing],
    results: Vec<BulkResult>,
) -> Vec<Option<BulkResult>> {
    let mut matched: Vec<Option<BulkResult>> = vec![None; rows.len()];
    let by_id: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.client_row_id.as_str(), i))
        .collect();
    let (mut not_asked, mut duplicates, mut unplaced) = (0usize, 0usize, 0usize);
    let mut without_id = Vec::new();
    for r in results {
        match r.client_row_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&i) if matched[i].is_none() => matched[i] = Some(r),
                Some(_) => duplicates += 1,
                None => not_asked += 1,
            },
            None => without_id.push(r),
        }
    }
    for r in without_id {
        let code = r.link.short_code.clone().or_else(|| {
            r.link
                .short_url
                .as_deref()
                .and_then(contract::split_short_url)
                .map(|(_, slug)| slug)
        });
        let fits: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                code.is_some()
                    && row.slug() == code.as_deref()
                    && contract::link_inconsistency(&r.link, &row.expect(), false).is_none()
            })
            .map(|(i, _)| i)
            .collect();
        match fits.as_slice() {
            [i] if matched[*i].is_none() => matched[*i] = Some(r),
            [_] => duplicates += 1,
            _ => unplaced += 1,
        }
    }
    if not_asked + duplicates + unplaced > 0 {
        client.note(format!(
            "bulk answer: ignored {not_asked} result(s) for rows not sent, {duplicates}              duplicate(s), {unplaced} result(s) without client_row_id matching no single row"
        ));
    }
    matched
}

async fn batch_refused(client: &Client, f: ApiFailure, rows: &[Outgoing]) -> BatchVerdict {
    if contract::is_bulk_unsupported(f.status) {
        return BatchVerdict::BulkUnsupported;
    }
    if contract::is_batch_too_large(f.status, f.code.as_deref()) {
        return BatchVerdict::TooLarge(f);
    }
    // "Slug taken" or a 403 without a code for the whole batch: which row it is about is
    // unknown. A row found in the workspace settles from the lookup; the others are sent
    // again (and fail with the server's words when that keeps happening).
    if f.is_slug_conflict() || is_bare_403(&f) {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let result = if rows.len() == 1 {
                if f.is_slug_conflict() {
                    settle_conflict(client, row, &f).await
                } else {
                    settle_bare_403(client, row, &f).await
                }
            } else {
                match settle_from_lookup(client, row, &f).await {
                    Some(settled) => settled,
                    None => RowResult::Resend(format!(
                        "the server refused the whole batch ({}) and this link is not in the                          workspace",
                        failure_words(&f)
                    )),
                }
            };
            out.push(result);
        }
        return BatchVerdict::Rows(out);
    }
    // A refusal of the whole batch that names no row: every row carries the server's
    // words; a re-run sends them again.
    let err = recorded(
        &f,
        format!(
            "the server refused the whole batch of {} rows ({f}); fix what it names",
            rows.len()
        ),
    );
    BatchVerdict::Rows(
        rows.iter()
            .map(|_| RowResult::Failed(err.clone()))
            .collect(),
    )
}

/// A 403 that names nothing (a WAF page, a check-slug-style body without a code).
fn is_bare_403(f: &ApiFailure) -> bool {
    f.status == 403 && f.code.is_none() && !f.slug_unavailable
}

async fn settle_bulk_result(client: &Client, row: &Outgoing, r: BulkResult) -> RowResult {
    match r.outcome {
        RowOutcome::Error(e) => {
            let failure = ApiFailure::from_body(0, e);
            settle_refusal(client, row, &failure).await
        }
        RowOutcome::Unknown(why) => RowResult::Resend(why),
        RowOutcome::Exists => {
            let failure = ApiFailure {
                status: 0,
                code: None,
                message: Some("the result row said status \"exists\"".into()),
                support_reference: None,
                slug_unavailable: true,
            };
            settle_conflict(client, row, &failure).await
        }
        RowOutcome::Created => settle_created(client, row, r.link).await,
    }
}

/// The server refused one row (a bulk row error, or a 2xx/4xx answer to a single create).
async fn settle_refusal(client: &Client, row: &Outgoing, failure: &ApiFailure) -> RowResult {
    if contract::is_transient_row_code(failure.code.as_deref()) {
        return RowResult::Resend(format!("server said {}", failure_words(failure)));
    }
    if row.slug().is_some() && failure.is_slug_conflict() {
        return settle_conflict(client, row, failure).await;
    }
    if row.slug().is_some() && is_bare_403(failure) {
        return settle_bare_403(client, row, failure).await;
    }
    RowResult::Failed(row_failure(failure, &row.link))
}

/// The server says it created the link. Believe it only if the answer is about this row
/// (slug and domain) and carries a `url_id`; otherwise look the slug up.
async fn settle_created(client: &Client, row: &Outgoing, link: Link) -> RowResult {
    let doubt = match contract::link_inconsistency(&link, &row.expect(), false) {
        Some(why) => why,
        None if link.url_id.is_none() => "the answer carries no url_id".to_string(),
        // A replay of an earlier create (same key, another destination then) describes a
        // link that may since have been changed: not proof of this one.
        None if link
            .long_url
            .as_deref()
            .is_some_and(|u| !same_destination(Some(u), &row.link.long_url)) =>
        {
            format!(
                "the answer names another destination ({})",
                link.long_url.as_deref().unwrap_or_default()
            )
        }
        None => return settled(LinkStatus::Created, link, row, None),
    };
    client.note(format!(
        "{}: the create answer is not usable as is ({doubt}); looking the slug up",
        row.client_row_id
    ));
    if row.slug().is_none() {
        // Resending a create without a slug would make a second link: report instead.
        return RowResult::Failed(RecordedError {
            code: Some("unverifiable_answer".into()),
            message: format!(
                "Nimriz answered the create in a way this tool cannot verify ({doubt}); it                  was not sent again, because without --slug a second create makes a second                  link. Check the workspace's links on Nimriz"
            ),
            support_reference: None,
            http_status: None,
        });
    }
    match lookup_checked(client, row).await {
        Ok(Some(found)) => {
            let existing = found.long_url.clone();
            if same_destination(existing.as_deref(), &row.link.long_url) {
                settled(LinkStatus::Created, found, row, None)
            } else {
                settled(LinkStatus::Drift, found, row, existing)
            }
        }
        Ok(None) => RowResult::Resend(format!("{doubt}, and the slug is not in the workspace")),
        Err(Lookup::Fatal(e)) => RowResult::Unsettled(e),
        Err(Lookup::Unusable(why)) => RowResult::Resend(format!("{doubt}; {why}")),
    }
}

/// Create one link through the single route (the fallback, and `shorten`).
pub async fn create_one(client: &Client, row: &Outgoing) -> (RowResult, u32) {
    match client.shorten(&row.link, Some(&row.idempotency_key)).await {
        Ok(sent) => (settle_created(client, row, sent.value).await, sent.attempts),
        Err(ClientError::Refused(f)) => (settle_refusal(client, row, &f).await, 1),
        Err(ClientError::Malformed { what, detail }) if row.slug().is_some() => (
            RowResult::Resend(format!("unreadable answer to {what}: {detail}")),
            1,
        ),
        Err(ClientError::Malformed { what, detail }) => (
            RowResult::Failed(RecordedError {
                code: Some("unreadable_answer".into()),
                message: format!(
                    "Nimriz answered {what} with a body this tool cannot read ({detail}); it                      was not sent again, because without --slug a second create makes a                      second link. Check the workspace's links on Nimriz"
                ),
                support_reference: None,
                http_status: None,
            }),
            1,
        ),
        Err(e) => (RowResult::Unsettled(e), 1),
    }
}

/// Why a lookup settled nothing.
enum Lookup {
    /// A run-level failure (auth, unreachable): the row stays pending, the run stops.
    Fatal(ClientError),
    /// An answer that cannot be trusted or read, or a refusal: the row is unknown.
    Unusable(String),
}

/// `find` the row's slug, and accept the answer only if it names that slug and domain and
/// carries a `url_id` and a destination. `Ok(None)`: not in this workspace (404).
async fn lookup_checked(client: &Client, row: &Outgoing) -> Result<Option<Link>, Lookup> {
    let Some(slug) = row.slug() else {
        return Ok(None);
    };
    let found = match client.find_link(&row.link.domain_id, slug).await {
        Ok(None) => return Ok(None),
        Ok(Some(found)) => found,
        Err(e) if e.is_fatal_for_run() => return Err(Lookup::Fatal(e)),
        Err(e) => return Err(Lookup::Unusable(format!("the lookup failed: {e}"))),
    };
    if let Some(why) = contract::link_inconsistency(&found, &row.expect(), true) {
        return Err(Lookup::Unusable(format!(
            "the lookup answer is not about this link: {why}"
        )));
    }
    if found.url_id.is_none() {
        return Err(Lookup::Unusable(
            "the lookup answer carries no url_id".into(),
        ));
    }
    if found.long_url.is_none() {
        return Err(Lookup::Unusable(
            "the lookup answer does not report the link's destination".into(),
        ));
    }
    Ok(Some(found))
}

/// Settle a row from a lookup after a refusal that does not say which row it is about:
/// `None` when the slug is not in the workspace.
async fn settle_from_lookup(
    client: &Client,
    row: &Outgoing,
    failure: &ApiFailure,
) -> Option<RowResult> {
    match lookup_checked(client, row).await {
        Ok(Some(found)) => Some(exists_or_drift(found, row)),
        Ok(None) => None,
        Err(Lookup::Fatal(e)) => Some(RowResult::Unsettled(e)),
        Err(Lookup::Unusable(why)) => Some(RowResult::Resend(format!(
            "refused ({}); {why}",
            failure_words(failure)
        ))),
    }
}

fn exists_or_drift(found: Link, row: &Outgoing) -> RowResult {
    let existing = found.long_url.clone();
    if same_destination(existing.as_deref(), &row.link.long_url) {
        settled(LinkStatus::Exists, found, row, None)
    } else {
        settled(LinkStatus::Drift, found, row, existing)
    }
}

/// The slug is taken on that domain: look it up before calling it done.
async fn settle_conflict(client: &Client, row: &Outgoing, failure: &ApiFailure) -> RowResult {
    match lookup_checked(client, row).await {
        Ok(Some(found)) => exists_or_drift(found, row),
        Ok(None) => {
            let slug = row.slug().unwrap_or_default();
            RowResult::Failed(RecordedError {
                code: Some("slug_taken_elsewhere".into()),
                message: format!(
                    "slug '{slug}' is taken, but not by a link in this workspace (Nimriz said: \
                     {}). On a shared domain (nim.lu, riz.to, rix.to) any Nimriz account can \
                     hold a slug; pick another slug for this link (e.g. with a campaign \
                     prefix) or use a branded domain",
                    failure_words(failure)
                ),
                support_reference: failure.support_reference.clone(),
                http_status: (failure.status != 0).then_some(failure.status),
            })
        }
        Err(Lookup::Fatal(e)) => RowResult::Unsettled(e),
        // An answer we cannot trust is "unknown": the row is sent again (same key and
        // slug), and fails with this reason if it keeps happening. Never `drift`.
        Err(Lookup::Unusable(why)) => RowResult::Resend(format!(
            "the slug is taken ({}), but {why}",
            failure_words(failure)
        )),
    }
}

/// A 403 without a code on a create, with a key `whoami` accepts: about this link. If the
/// slug is in the workspace it settles from there; otherwise the server's words are kept.
async fn settle_bare_403(client: &Client, row: &Outgoing, failure: &ApiFailure) -> RowResult {
    match settle_from_lookup(client, row, failure).await {
        Some(settled) => settled,
        None => RowResult::Failed(recorded(
            failure,
            format!(
                "Nimriz refused this link with {} and no error code, although the API key is \
                 accepted (whoami answers) and the slug is not in this workspace. A firewall \
                 or a policy of the domain may block it, or the slug may be held by another \
                 account; try another slug, or ask Nimriz support with the reference",
                failure_words(failure)
            ),
        )),
    }
}

fn settled(
    status: LinkStatus,
    link: Link,
    row: &Outgoing,
    existing_destination: Option<String>,
) -> RowResult {
    let existing_destination = match status {
        LinkStatus::Drift => {
            Some(existing_destination.unwrap_or_else(|| "(not reported by the API)".into()))
        }
        _ => None,
    };
    // Only an absolute short URL is worth recording; otherwise the planned one is used.
    let short_url = link
        .short_url
        .filter(|u| contract::split_short_url(u).is_some());
    RowResult::Settled {
        status,
        url_id: link.url_id,
        short_url,
        short_code: link.short_code.or_else(|| row.slug().map(str::to_owned)),
        existing_destination,
    }
}

/// Same destination, allowing for the normalisation a server may apply
/// (`https://x.example` vs `https://x.example/`, host case, default port).
pub fn same_destination(existing: Option<&str>, planned: &str) -> bool {
    let Some(existing) = existing else {
        return false;
    };
    if existing == planned {
        return true;
    }
    match (url::Url::parse(existing), url::Url::parse(planned)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn failure_words(f: &ApiFailure) -> String {
    let mut s = String::new();
    if f.status != 0 {
        s.push_str(&format!("HTTP {} ", f.status));
    }
    s.push_str(f.code.as_deref().unwrap_or("no code"));
    if let Some(m) = &f.message {
        s.push_str(&format!(": {m}"));
    }
    s
}

fn recorded(f: &ApiFailure, message: String) -> RecordedError {
    RecordedError {
        code: f.code.clone(),
        message,
        support_reference: f.support_reference.clone(),
        http_status: (f.status != 0).then_some(f.status),
    }
}

/// A refusal of one row, with what to do about it.
fn row_failure(f: &ApiFailure, link: &NewLink) -> RecordedError {
    let code = f.code.as_deref().map(contract::normalize_code);
    let slug = link.custom_slug.as_deref().unwrap_or_default();
    let advice = match code.as_deref() {
        Some("slug_reserved") => format!(
            "slug '{slug}' is reserved on this domain (system words, or shorter than the \
             domain's minimum); choose another slug"
        ),
        Some("slug_tombstoned") => format!(
            "slug '{slug}' belonged to a recently deleted link and is blocked for a while; \
             choose another slug or wait"
        ),
        Some("slug_invalid") => {
            format!("slug '{slug}' is not accepted by Nimriz; choose another slug")
        }
        _ => "fix the link's destination or slug, or the domain's settings on Nimriz".to_string(),
    };
    recorded(
        f,
        format!("Nimriz refused this link ({}); {advice}", failure_words(f)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_comparison_tolerates_normalisation() {
        assert!(same_destination(
            Some("https://x.example"),
            "https://x.example/"
        ));
        assert!(same_destination(
            Some("https://X.example:443/a?b=1"),
            "https://x.example/a?b=1"
        ));
        assert!(!same_destination(
            Some("https://x.example/a?b=1"),
            "https://x.example/a?b=2"
        ));
        assert!(!same_destination(None, "https://x.example/"));
    }
}
