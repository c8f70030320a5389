//! The manifest knows its workspace: a build checks that the manifest it is about to trust
//! was written against the same workspace (and API host) it is talking to now, before
//! anything is sent.
//!
//! Why: a manifest says "these links are done". Against another workspace (another key, a
//! restarted in-memory sandbox, staging instead of production) that is false, and a build
//! that trusts it says "nothing to do" while nothing exists.
//!
//! Identity is `GET /api/v1/whoami`'s `account_id` [assumed], fetched concurrently with the
//! domain list so the check costs no extra round trip. Rules, in order:
//! - no manifest yet, or one without links: nothing to check; the identity is recorded;
//! - both sides have an account id: they must be equal (the host may change, e.g. a sandbox
//!   restarted with `--state` on another port);
//! - otherwise the API host must be equal;
//! - a manifest written before identities were recorded is adopted with a warning.
//!
//! A refusal is a usage error (exit 2) naming both workspaces and the fix (`--manifest PATH`
//! for a new record).

use crate::manifest::model::WorkspaceRecord;
use crate::{Error, Result};
use nimriz::{ClientError, WhoAmI};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a manifest on disk says about where its links live (read without the links).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub api_host: Option<String>,
    pub workspace: Option<WorkspaceRecord>,
    pub link_count: usize,
}

/// Read only the identity fields of the manifest at `path` (`None` if there is none yet).
/// Cheap: the links are skipped, not parsed. A manifest this cannot read is left to
/// `ManifestStore::open`, which says precisely what is wrong with it.
pub fn peek(path: &Path) -> Option<Recorded> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        api_host: Option<String>,
        #[serde(default)]
        workspace: Option<WorkspaceRecord>,
    }
    // Streamed: the links are counted, never held.
    let (bytes, link_count) = crate::manifest::peek_header(path)?;
    let h: Header = serde_json::from_slice(&bytes).ok()?;
    Some(Recorded {
        api_host: h.api_host,
        workspace: h.workspace,
        link_count,
    })
}

/// The identity this build talks to, from the whoami answer. A whoami the API refuses
/// (404: the route does not exist there; 401/403: the key may lack that scope) or answers
/// unreadably leaves the identity unknown (host-only check) with a warning: the domain list,
/// fetched at the same time, is what decides whether the key works. An unreachable API
/// stops the run.
pub fn current(
    host: &str,
    whoami: std::result::Result<WhoAmI, ClientError>,
    warnings: &mut Vec<String>,
) -> Result<WorkspaceRecord> {
    let (account_id, workspace_name) = match whoami {
        Ok(me) => (me.account_id, me.workspace_name),
        Err(
            e @ (ClientError::Refused(_) | ClientError::Auth(_) | ClientError::Malformed { .. }),
        ) => {
            warnings.push(format!(
                "the API did not say which workspace the key belongs to ({e}); the manifest \
                 is checked by API host only"
            ));
            (None, None)
        }
        Err(e) => return Err(Error::Api(e.to_string())),
    };
    Ok(WorkspaceRecord {
        host: host.to_string(),
        account_id,
        workspace_name,
    })
}

/// Check the manifest at `manifest_path` (as `recorded`) against `now`. `Ok` carries the
/// record to write (the known account id is kept when this API did not say) and warnings.
pub fn check(
    manifest_path: &Path,
    recorded: Option<&Recorded>,
    now: WorkspaceRecord,
) -> Result<(WorkspaceRecord, Vec<String>)> {
    let mut warnings = Vec::new();
    let Some(rec) = recorded.filter(|r| r.link_count > 0) else {
        return Ok((now, warnings));
    };
    let Some(before) = &rec.workspace else {
        // Written before identities were recorded: only the host can be compared.
        if let Some(host) = &rec.api_host
            && !same_host(host, &now.host)
        {
            return Err(refusal(
                manifest_path,
                &WorkspaceRecord {
                    host: host.clone(),
                    account_id: None,
                    workspace_name: None,
                },
                &now,
                rec.link_count,
            ));
        }
        warnings.push(format!(
            "manifest {} was written before manifests recorded their workspace; it is now \
             recorded as {}. If its links were created in another workspace, stop and start a \
             new record with --manifest PATH",
            manifest_path.display(),
            describe(&now)
        ));
        return Ok((now, warnings));
    };
    match (&before.account_id, &now.account_id) {
        (Some(a), Some(b)) if a == b => Ok((now, warnings)),
        (Some(_), Some(_)) => Err(refusal(manifest_path, before, &now, rec.link_count)),
        _ if !same_host(&before.host, &now.host) => {
            Err(refusal(manifest_path, before, &now, rec.link_count))
        }
        (Some(_), None) => {
            // Same host, identity unknown now: keep what we knew.
            let kept = WorkspaceRecord {
                host: now.host,
                account_id: before.account_id.clone(),
                workspace_name: before.workspace_name.clone(),
            };
            warnings.push(format!(
                "could not confirm that this key belongs to {} (the workspace manifest {} was \
                 written for)",
                describe(&kept),
                manifest_path.display()
            ));
            Ok((kept, warnings))
        }
        _ => Ok((now, warnings)),
    }
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn describe(w: &WorkspaceRecord) -> String {
    let mut s = match (&w.workspace_name, &w.account_id) {
        (Some(n), Some(id)) => format!("workspace `{n}` ({id})"),
        (None, Some(id)) => format!("workspace {id}"),
        (Some(n), None) => format!("workspace `{n}`"),
        (None, None) => "an unnamed workspace".to_string(),
    };
    s.push_str(&format!(" on {}", w.host));
    s
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How to add a missing short domain: in the Nimriz dashboard, or — against a local
/// sandbox, which has no dashboard — with its flags.
pub fn add_domain_fix(api_host: &str) -> &'static str {
    if is_loopback(api_host) {
        "restart the sandbox with `--spec SPEC` (every host the spec uses) or `--domain HOST`"
    } else {
        "add the domain in the Nimriz dashboard"
    }
}

/// A manifest path for a new record beside the old one: `<stem>.<account or host>.manifest.json`.
pub fn suggested_path(manifest_path: &Path, now: &WorkspaceRecord) -> PathBuf {
    let name = manifest_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".manifest.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name)
        .to_string();
    let tag: String = now
        .account_id
        .as_deref()
        .unwrap_or(&now.host)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    manifest_path.with_file_name(format!("{stem}.{tag}.manifest.json"))
}

fn refusal(
    manifest_path: &Path,
    before: &WorkspaceRecord,
    now: &WorkspaceRecord,
    links: usize,
) -> Error {
    let mut msg = format!(
        "manifest {} records {links} link(s) made in {}, but this build talks to {}. Nothing \
         was sent: those links are not in this workspace, so the manifest cannot say what is \
         done here. To build into this workspace, start a new record with --manifest {}; to \
         continue the old one, use the API key and --api-base of its workspace",
        manifest_path.display(),
        describe(before),
        describe(now),
        suggested_path(manifest_path, now).display()
    );
    if is_loopback(&now.host) {
        msg.push_str(
            ". A `nimriz-matrix sandbox` started without --state is a new, empty workspace on \
             every start (--state FILE keeps one across restarts)",
        );
    }
    Error::Usage(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(host: &str, id: Option<&str>) -> WorkspaceRecord {
        WorkspaceRecord {
            host: host.into(),
            account_id: id.map(str::to_string),
            workspace_name: id.map(|_| "Acme".to_string()),
        }
    }

    fn rec(api_host: Option<&str>, w: Option<WorkspaceRecord>, n: usize) -> Recorded {
        Recorded {
            api_host: api_host.map(str::to_string),
            workspace: w,
            link_count: n,
        }
    }

    const M: &str = "camp/spring.manifest.json";

    #[test]
    fn new_or_empty_manifest_records_the_identity() {
        let now = ws("api.nimriz.com", Some("a1"));
        assert_eq!(check(Path::new(M), None, now.clone()).unwrap().0, now);
        let empty = rec(Some("other"), Some(ws("other", Some("zz"))), 0);
        assert_eq!(
            check(Path::new(M), Some(&empty), now.clone()).unwrap().0,
            now
        );
    }

    #[test]
    fn another_account_is_refused_with_the_fix() {
        let before = rec(None, Some(ws("127.0.0.1:8787", Some("acct_a"))), 196);
        let err = check(
            Path::new(M),
            Some(&before),
            ws("127.0.0.1:8787", Some("acct_b")),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::INVALID);
        let msg = err.to_string();
        assert!(msg.contains("196 link(s)"), "{msg}");
        assert!(msg.contains("acct_a") && msg.contains("acct_b"), "{msg}");
        assert!(
            msg.contains("--manifest camp/spring.acct_b.manifest.json"),
            "{msg}"
        );
        assert!(msg.contains("without --state"), "{msg}");
    }

    #[test]
    fn same_account_on_another_port_is_the_same_workspace() {
        let before = rec(None, Some(ws("127.0.0.1:40001", Some("acct_a"))), 3);
        let now = ws("127.0.0.1:40002", Some("acct_a"));
        let (kept, warnings) = check(Path::new(M), Some(&before), now.clone()).unwrap();
        assert_eq!(kept, now);
        assert!(warnings.is_empty());
    }

    #[test]
    fn unknown_identity_falls_back_to_the_host() {
        let before = rec(None, Some(ws("api.nimriz.com", Some("a1"))), 3);
        let err = check(Path::new(M), Some(&before), ws("staging.nimriz.com", None)).unwrap_err();
        assert!(err.to_string().contains("staging.nimriz.com"));
        assert!(!err.to_string().contains("without --state"));
        let (kept, warnings) =
            check(Path::new(M), Some(&before), ws("api.nimriz.com", None)).unwrap();
        assert_eq!(
            kept.account_id.as_deref(),
            Some("a1"),
            "the known id is kept"
        );
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn old_manifest_is_adopted_with_a_warning_unless_the_host_differs() {
        let old = rec(Some("api.nimriz.com"), None, 5);
        let now = ws("api.nimriz.com", Some("a1"));
        let (kept, warnings) = check(Path::new(M), Some(&old), now.clone()).unwrap();
        assert_eq!(kept, now);
        assert!(warnings[0].contains("before manifests recorded their workspace"));
        assert!(check(Path::new(M), Some(&old), ws("127.0.0.1:8787", Some("s"))).is_err());
    }

    #[test]
    fn whoami_refused_is_a_warning_unreachable_is_fatal() {
        let failure = nimriz::ApiFailure::from_body(
            404,
            nimriz::contract::parse_error_body(br#"{"code":"not_found"}"#),
        );
        let mut w = Vec::new();
        let got = current("h", Err(ClientError::Refused(failure.clone())), &mut w).unwrap();
        assert_eq!(got.account_id, None);
        assert_eq!(w.len(), 1);
        assert!(current("h", Err(ClientError::Auth(failure)), &mut w).is_ok());
        assert_eq!(w.len(), 2);
        let down = ClientError::Unreachable {
            attempts: 3,
            last: "connection refused".into(),
        };
        assert!(current("h", Err(down), &mut w).is_err());
    }

    #[test]
    fn missing_domain_fix_fits_the_server() {
        assert!(add_domain_fix("127.0.0.1:8787").contains("--domain HOST"));
        assert!(add_domain_fix("localhost:9000").contains("--spec SPEC"));
        assert!(add_domain_fix("[::1]:8787").contains("sandbox"));
        assert!(add_domain_fix("api.nimriz.com").contains("Nimriz dashboard"));
    }

    #[test]
    fn peek_reads_the_identity_without_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(
            &p,
            r#"{"api_host":"h","workspace":{"host":"h","account_id":"a"},"links":[{"x":1},{"y":2}]}"#,
        )
        .unwrap();
        let r = peek(&p).unwrap();
        assert_eq!(r.link_count, 2);
        assert_eq!(r.workspace.unwrap().account_id.as_deref(), Some("a"));
        assert!(peek(&dir.path().join("none.json")).is_none());
    }
}
