//! Sending creates and settling what each answer means for each row. Shared by the bulk
//! build, the single-create fallback and `shorten`.

use crate::manifest::{LinkStatus, RecordedError};
use nimriz::{ApiFailure, BulkRow, Client, ClientError, Link, NewLink, contract};
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

/// One row as it is sent.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub client_row_id: String,
    pub idempotency_key: String,
    pub link: NewLink,
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
        Err(ClientError::Refused(f)) => return (batch_refused(f, rows.len()), 1),
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
    // Match by client_row_id, never by position. The first result for an id wins.
    let mut by_id: HashMap<String, nimriz::BulkResult> = HashMap::new();
    for r in sent.value {
        if let Some(id) = r.client_row_id.clone() {
            by_id.entry(id).or_insert(r);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let result = match by_id.remove(&row.client_row_id) {
            None => RowResult::Resend("missing from the bulk response".into()),
            Some(r) => settle_bulk_result(client, row, r).await,
        };
        out.push(result);
    }
    (BatchVerdict::Rows(out), sent.attempts)
}

fn batch_refused(f: ApiFailure, rows: usize) -> BatchVerdict {
    if contract::is_bulk_unsupported(f.status) {
        return BatchVerdict::BulkUnsupported;
    }
    if contract::is_batch_too_large(f.status, f.code.as_deref()) {
        return BatchVerdict::TooLarge(f);
    }
    // A refusal of the whole batch that names no row: every row carries the server's
    // words; a re-run sends them again.
    let err = recorded(
        &f,
        format!("the server refused the whole batch of {rows} rows ({f}); fix what it names"),
    );
    BatchVerdict::Rows((0..rows).map(|_| RowResult::Failed(err.clone())).collect())
}

async fn settle_bulk_result(client: &Client, row: &Outgoing, r: nimriz::BulkResult) -> RowResult {
    if let Some(e) = r.row_error() {
        let failure = ApiFailure {
            status: 0,
            code: e.code,
            message: e.message,
            support_reference: e.support_reference,
        };
        if contract::is_transient_row_code(failure.code.as_deref()) {
            return RowResult::Resend(format!("server said {}", failure_words(&failure)));
        }
        if contract::is_slug_conflict_code(failure.code.as_deref()) {
            return settle_conflict(client, &row.link, &failure).await;
        }
        return RowResult::Failed(row_failure(&failure, &row.link));
    }
    match (&r.link.url_id, &r.link.short_url) {
        (Some(_), _) => RowResult::Settled {
            status: LinkStatus::Created,
            url_id: r.link.url_id,
            short_url: r.link.short_url,
            short_code: r.link.short_code,
            existing_destination: None,
        },
        // "Created" without an id: look it up rather than guess.
        _ => match lookup(client, &row.link).await {
            Ok(Some(found)) if same_destination(found_dest(&found), &row.link.long_url) => {
                settled(LinkStatus::Created, found, None)
            }
            Ok(_) => RowResult::Resend("a result without url_id".into()),
            Err(e) => RowResult::Unsettled(e),
        },
    }
}

/// Create one link through the single route (the fallback, and `shorten`).
pub async fn create_one(
    client: &Client,
    link: &NewLink,
    idempotency_key: &str,
) -> (RowResult, u32) {
    match client.shorten(link, Some(idempotency_key)).await {
        Ok(sent) => (
            settled(LinkStatus::Created, sent.value, None),
            sent.attempts,
        ),
        Err(ClientError::Refused(f)) if f.is_slug_conflict() && link.custom_slug.is_some() => {
            (settle_conflict(client, link, &f).await, 1)
        }
        Err(ClientError::Refused(f)) => (RowResult::Failed(row_failure(&f, link)), 1),
        Err(ClientError::Malformed { what, detail }) => (
            RowResult::Resend(format!("unreadable answer to {what}: {detail}")),
            1,
        ),
        Err(e) => (RowResult::Unsettled(e), 1),
    }
}

/// The slug is taken on that domain: look it up before calling it done.
async fn settle_conflict(client: &Client, link: &NewLink, failure: &ApiFailure) -> RowResult {
    match lookup(client, link).await {
        Ok(Some(found)) => {
            let existing = found_dest(&found).map(str::to_owned);
            if same_destination(existing.as_deref(), &link.long_url) {
                settled(LinkStatus::Exists, found, None)
            } else {
                settled(
                    LinkStatus::Drift,
                    found,
                    Some(existing.unwrap_or_else(|| "(not reported by the API)".into())),
                )
            }
        }
        Ok(None) => {
            let slug = link.custom_slug.as_deref().unwrap_or_default();
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
        Err(e) if e.is_fatal_for_run() => RowResult::Unsettled(e),
        Err(e) => RowResult::Failed(RecordedError {
            code: failure.code.clone(),
            message: format!(
                "the slug is taken and looking it up failed ({e}); try again to check"
            ),
            support_reference: failure.support_reference.clone(),
            http_status: (failure.status != 0).then_some(failure.status),
        }),
    }
}

async fn lookup(client: &Client, link: &NewLink) -> Result<Option<Link>, ClientError> {
    match link.custom_slug.as_deref() {
        Some(slug) => client.find_link(&link.domain_id, slug).await,
        None => Ok(None),
    }
}

fn found_dest(link: &Link) -> Option<&str> {
    link.long_url.as_deref()
}

fn settled(status: LinkStatus, link: Link, existing_destination: Option<String>) -> RowResult {
    RowResult::Settled {
        status,
        url_id: link.url_id,
        short_url: link.short_url,
        short_code: link.short_code,
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
