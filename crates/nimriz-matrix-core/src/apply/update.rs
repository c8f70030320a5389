//! Changing live links in place (`build --update`, `retire`): `update-slug`,
//! `update-destination`, `update-expiration`, each confirmed before it is recorded.
//!
//! An update is idempotent (setting a destination twice is the same as once), so a lost
//! response is settled by reading the link back (`GET /api/v1/links/{url_id}`): the change
//! is recorded only when the live link shows it. A refusal is also read back — an update
//! whose response was lost and whose retry is refused ("nothing to change") is still a
//! success if the link shows the new value.

use super::send::same_destination;
use crate::lifecycle::FieldChange;
use crate::manifest::model::Change;
use crate::manifest::{LinkRecord, LinkStatus, RecordedError, now_rfc3339};
use nimriz::{Client, ClientError, Link};
use std::future::Future;
use tokio::task::JoinSet;

/// One live link to change.
#[derive(Debug, Clone)]
pub(crate) struct UpdateItem {
    /// The record as it stands (what is live, as far as we know).
    pub rec: LinkRecord,
    /// The record once every change is applied (key, slug, destination, UTMs, expiry).
    pub target: LinkRecord,
    /// The updatable changes, applied in this order: slug, destination, expiry.
    pub changes: Vec<FieldChange>,
    /// The history action for a destination change (`update-destination`, or `retire`'s).
    pub why: &'static str,
}

/// What became of one item.
#[derive(Debug)]
pub(crate) enum UpdateOutcome {
    /// Every change is live; the record to write (its key may be new: a rename).
    Done { old_key: String, rec: LinkRecord },
    /// Some change failed (the record says which in `error`; changes before it are kept).
    Failed { old_key: String, rec: LinkRecord },
    /// The run must stop (auth, stop requested): nothing recorded for this item.
    Fatal(ClientError),
}

/// Apply `items`, at most `concurrency` at once, handing each outcome to `on_done` as it
/// arrives (so it is journaled at once). Stops launching when `interrupt` completes.
pub(crate) async fn apply_all<I>(
    client: &Client,
    items: Vec<UpdateItem>,
    concurrency: usize,
    interrupt: Option<I>,
    mut on_done: impl FnMut(UpdateOutcome),
) -> bool
where
    I: Future<Output = ()>,
{
    let mut queue = std::collections::VecDeque::from(items);
    let mut set: JoinSet<UpdateOutcome> = JoinSet::new();
    let mut interrupt = interrupt.map(Box::pin);
    let mut stopped = false;
    loop {
        while !stopped && set.len() < concurrency.max(1) {
            let Some(item) = queue.pop_front() else { break };
            let client = client.clone();
            set.spawn(async move { apply_one(&client, item).await });
        }
        if set.is_empty() {
            return stopped;
        }
        let joined = match interrupt.as_mut() {
            Some(i) => tokio::select! {
                () = i.as_mut() => {
                    interrupt = None;
                    stopped = true;
                    continue;
                }
                j = set.join_next() => j,
            },
            None => set.join_next().await,
        };
        match joined {
            Some(Ok(outcome)) => {
                if matches!(outcome, UpdateOutcome::Fatal(_)) {
                    stopped = true;
                }
                on_done(outcome);
            }
            Some(Err(e)) => {
                stopped = true;
                on_done(UpdateOutcome::Fatal(ClientError::Stopped(format!(
                    "internal error: an update task failed ({e})"
                ))));
            }
            None => return stopped,
        }
    }
}

/// Is `link` about the link with `url_id`? An answer that names another id proves nothing
/// about ours (one that names none is taken as about the link asked for).
pub(crate) fn about(link: &Link, url_id: &str) -> bool {
    link.url_id
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(url_id))
}

/// What the live link must show for a change to count as made.
fn shows(link: &Link, ch: &FieldChange) -> bool {
    let new = ch.new.as_deref();
    match ch.field.as_str() {
        "destination" => same_destination(link.long_url.as_deref(), new.unwrap_or_default()),
        "expires_at" => crate::lifecycle::same_instant(link.expires_at.as_deref(), new),
        "slug" => {
            let want = new.unwrap_or_default();
            link.short_code.as_deref() == Some(want)
                || link
                    .short_url
                    .as_deref()
                    .is_some_and(|u| u.trim_end_matches('/').rsplit('/').next() == Some(want))
        }
        _ => false,
    }
}

/// What the live link shows for a field (for messages).
fn live_value(link: &Link, field: &str) -> String {
    let v = match field {
        "destination" => link.long_url.clone(),
        "expires_at" => link.expires_at.clone(),
        "slug" => link.short_code.clone(),
        _ => None,
    };
    v.unwrap_or_else(|| "(not said)".into())
}

/// Apply one item's changes in order; stop at the first that cannot be confirmed.
pub(crate) async fn apply_one(client: &Client, item: UpdateItem) -> UpdateOutcome {
    let UpdateItem {
        rec,
        target,
        changes,
        why,
    } = item;
    let old_key = rec.key.clone();
    let Some(url_id) = rec.url_id.clone() else {
        let mut rec = rec;
        rec.error = Some(update_error(
            "no url_id is recorded for this link, so it cannot be changed in place; run \
             `nimriz-matrix refresh` or `import` first"
                .into(),
            None,
        ));
        return UpdateOutcome::Failed { old_key, rec };
    };
    let mut cur = rec;
    for ch in &changes {
        let new = ch.new.as_deref();
        let sent = match ch.field.as_str() {
            "slug" => client.update_slug(&url_id, new.unwrap_or_default()).await,
            "destination" => {
                client
                    .update_destination(&url_id, new.unwrap_or_default())
                    .await
            }
            "expires_at" => client.update_expiration(&url_id, new).await,
            _ => continue,
        };
        let answered = match sent {
            Ok(Some(link)) if about(&link, &url_id) && shows(&link, ch) => None,
            Ok(Some(link)) if !about(&link, &url_id) => Some(format!(
                "the answer was about another link ({})",
                link.url_id.as_deref().unwrap_or_default()
            )),
            Ok(_) => Some("the answer did not show the change".to_string()),
            Err(e @ (ClientError::Auth(_) | ClientError::Stopped(_))) => {
                return UpdateOutcome::Fatal(e);
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why_unsure) = answered {
            // Read back: the change counts only if the live link shows it.
            match client.get_link_opt(&url_id).await {
                Ok(Some(link)) if !about(&link, &url_id) => {
                    cur.error = Some(update_error(
                        format!(
                            "could not confirm the change of {} ({why_unsure}): reading \
                             {url_id} back answered about another link ({}). Nothing was \
                             recorded; re-run to try again",
                            ch.field,
                            link.url_id.as_deref().unwrap_or_default()
                        ),
                        None,
                    ));
                    return UpdateOutcome::Failed { old_key, rec: cur };
                }
                Ok(Some(link)) if shows(&link, ch) => {
                    client.note(format!(
                        "{}: {} confirmed by reading the link back ({why_unsure})",
                        cur.key, ch.field
                    ));
                }
                Ok(Some(link)) => {
                    cur.error = Some(update_error(
                        format!(
                            "could not change {} to {} ({why_unsure}); Nimriz still shows {}. \
                             Nothing else was changed; re-run to try again",
                            ch.field,
                            new.unwrap_or("(none)"),
                            live_value(&link, &ch.field)
                        ),
                        None,
                    ));
                    return UpdateOutcome::Failed { old_key, rec: cur };
                }
                Ok(None) => {
                    cur.status = LinkStatus::Deleted;
                    cur.error = Some(update_error(
                        format!(
                            "the link is gone from Nimriz (404 for url_id {url_id}); a build \
                             creates it again"
                        ),
                        Some(404),
                    ));
                    return UpdateOutcome::Failed { old_key, rec: cur };
                }
                Err(e @ (ClientError::Auth(_) | ClientError::Stopped(_))) => {
                    return UpdateOutcome::Fatal(e);
                }
                Err(e) => {
                    cur.error = Some(update_error(
                        format!(
                            "could not confirm the change of {} ({why_unsure}; reading the \
                             link back: {e}); re-run to try again (an update is safe to repeat)",
                            ch.field
                        ),
                        None,
                    ));
                    return UpdateOutcome::Failed { old_key, rec: cur };
                }
            }
        }
        // Confirmed: move the record one step towards the target.
        let at = now_rfc3339();
        cur.history.push(Change {
            at: at.clone(),
            action: match ch.field.as_str() {
                "slug" => "update-slug",
                "destination" => why,
                _ => "update-expiration",
            }
            .into(),
            field: ch.field.clone(),
            before: ch.old.clone(),
            after: ch.new.clone(),
        });
        match ch.field.as_str() {
            "slug" => {
                cur.key.clone_from(&target.key);
                cur.slug.clone_from(&target.slug);
                cur.short_url.clone_from(&target.short_url);
                cur.cell.clone_from(&target.cell);
            }
            "destination" => {
                cur.destination = new.unwrap_or_default().to_string();
                cur.utm.clone_from(&target.utm);
                if cur.status == LinkStatus::Drift {
                    cur.status = LinkStatus::Exists;
                }
                cur.existing_destination = None;
                if let Some(o) = &mut cur.outside {
                    o.destination = None;
                }
            }
            _ => {
                cur.expires_at = new.map(str::to_string);
                if let Some(o) = &mut cur.outside {
                    o.expires_at = None;
                }
            }
        }
        cur.updated_at = at;
    }
    // Every change is live: the record is the target (fields the target owns).
    cur.cell.clone_from(&target.cell);
    cur.tags.clone_from(&target.tags);
    cur.redirect = target.redirect.or(cur.redirect);
    cur.space.clone_from(&target.space);
    if cur.status == LinkStatus::Drift {
        cur.status = LinkStatus::Exists;
    }
    if cur
        .outside
        .as_ref()
        .is_some_and(|o| o.destination.is_none() && o.expires_at.is_none() && o.slug.is_none())
    {
        cur.outside = None;
    }
    cur.error = None;
    UpdateOutcome::Done { old_key, rec: cur }
}

fn update_error(message: String, http_status: Option<u16>) -> RecordedError {
    RecordedError {
        code: Some("update_failed".into()),
        message,
        support_reference: None,
        http_status,
    }
}
