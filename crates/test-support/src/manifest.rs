//! Shared builders for the manifest tests: realistic records and a realistic manifest,
//! always written through the real `ManifestStore`.

use nimriz_matrix_core::manifest::{
    LinkRecord, LinkStatus, ManifestStore, RecordedError, RunCounts, now_rfc3339,
};
use nimriz_matrix_core::model::{Cell, DomainRef, InputFile, PlanSource};
use std::path::{Path, PathBuf};

pub fn source() -> PlanSource {
    PlanSource {
        spec_path: "campaigns/spring.toml".into(),
        spec_sha256: "a".repeat(64),
        inputs: vec![InputFile {
            path: "campaigns/variants.csv".into(),
            sha256: "b".repeat(64),
        }],
        campaign: Some("spring-sale".into()),
        resolved_spec: serde_json::json!({"campaign": "spring-sale", "dimensions": ["brand", "channel"]}),
    }
}

pub fn domain() -> DomainRef {
    DomainRef {
        id: Some("7d0c6a4e-3f5b-4c1e-9a57-2b1d1e0f9a01".into()),
        host: Some("go.acme.example".into()),
    }
}

/// A link record in `status`, with the fields that status carries filled in.
pub fn record(slug: &str, status: LinkStatus) -> LinkRecord {
    let domain = domain();
    let mut rec = LinkRecord {
        key: LinkRecord::key_for(&domain, slug),
        cell: Cell(vec![
            ("brand".into(), "acme".into()),
            ("channel".into(), slug.into()),
        ]),
        slug: slug.into(),
        domain,
        destination: format!("https://acme.example/spring?utm_source={slug}"),
        utm: Default::default(),
        idempotency_key: format!("idem-{slug}"),
        status,
        short_url: None,
        url_id: None,
        existing_destination: None,
        tags: Vec::new(),
        printed_at: None,
        expires_at: None,
        redirect: None,
        space: None,
        origin: None,
        outside: None,
        retired: None,
        history: Vec::new(),
        error: None,
        attempts: 1,
        updated_at: now_rfc3339(),
    };
    match status {
        LinkStatus::Pending | LinkStatus::Deleted => {}
        LinkStatus::Created | LinkStatus::Exists => {
            rec.short_url = Some(format!("https://go.acme.example/{slug}"));
            rec.url_id = Some(format!("00000000-0000-4000-8000-{:012}", slug.len()));
        }
        LinkStatus::Drift => {
            rec.short_url = Some(format!("https://go.acme.example/{slug}"));
            rec.url_id = Some("00000000-0000-4000-8000-000000000099".into());
            rec.existing_destination = Some("https://elsewhere.example/".into());
        }
        LinkStatus::Failed => {
            rec.error = Some(RecordedError {
                code: Some("slug_reserved".into()),
                message: "the slug is reserved by Nimriz; choose another slug".into(),
                support_reference: Some("req_12345".into()),
                http_status: Some(422),
            });
        }
    }
    rec
}

/// A finished two-run manifest with a link of every status, written by the real store.
pub fn build_realistic_manifest(dir: &Path) -> PathBuf {
    let path = dir.join("spring.manifest.json");
    let statuses = [
        ("email", LinkStatus::Created),
        ("social", LinkStatus::Exists),
        ("display", LinkStatus::Drift),
        ("print", LinkStatus::Failed),
        ("radio", LinkStatus::Pending),
    ];
    // First run: everything pending, then interrupted (no finish) like a crash.
    {
        let mut store = ManifestStore::open(&path, &source(), Some("api.nimriz.com")).unwrap();
        let pending: Vec<_> = statuses
            .iter()
            .map(|(s, _)| record(s, LinkStatus::Pending))
            .collect();
        store.record(&pending).unwrap();
    }
    // Second run: results arrive for all but one, and the run finishes.
    let mut store = ManifestStore::open(&path, &source(), Some("api.nimriz.com")).unwrap();
    store
        .set_workspace(nimriz_matrix_core::manifest::WorkspaceRecord {
            host: "api.nimriz.com".into(),
            account_id: Some("acct_1042".into()),
            workspace_name: Some("Acme Marketing".into()),
        })
        .unwrap();
    let results: Vec<_> = statuses
        .iter()
        .filter(|(_, st)| *st != LinkStatus::Pending)
        .map(|(s, st)| {
            let mut r = record(s, *st);
            r.attempts = 2;
            r
        })
        .collect();
    store.record(&results).unwrap();
    let counts = RunCounts {
        planned: 5,
        created: 1,
        exists: 1,
        drift: 1,
        failed: 1,
        pending: 1,
        skipped_done: 0,
        updated: 0,
    };
    store.finish(counts, "partial").unwrap();
    path
}
