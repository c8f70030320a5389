//! `plan`'s classification, one case per action, and the renderings a reviewer and a bot
//! read (the JSON's version and counts, the markdown's marker and escaping).

use nimriz_matrix_core::lifecycle::{
    Action, Hashes, MARKDOWN_MARKER, Moved, PlanView, classify, render_human, render_json,
    render_markdown,
};
use nimriz_matrix_core::manifest::model::{OutsideChange, Retirement};
use nimriz_matrix_core::manifest::{LinkRecord, LinkStatus, Manifest};
use nimriz_matrix_core::model::{Cell, PlannedLink};
use test_support::manifest::{domain, record, source};

/// The planned link a record was built from (same slug, domain, destination, cell).
fn planned_for(rec: &LinkRecord) -> PlannedLink {
    PlannedLink {
        cell: rec.cell.clone(),
        slug: rec.slug.clone(),
        domain: domain(),
        short_url: Some(format!("https://go.acme.example/{}", rec.slug)),
        destination: rec.destination.clone(),
        utm: Default::default(),
        redirect: 302,
        expires_at: rec.expires_at.clone(),
        tags: rec.tags.clone(),
        space: rec.space.clone(),
    }
}

fn live(slug: &str) -> LinkRecord {
    let mut r = record(slug, LinkStatus::Created);
    r.redirect = Some(302);
    r
}

fn manifest(records: Vec<LinkRecord>) -> Manifest {
    let mut m = Manifest::new(source(), None);
    m.links = records;
    m
}

fn one(
    planned: &[PlannedLink],
    records: Vec<LinkRecord>,
    moved: &[Moved],
) -> Vec<(Action, String)> {
    classify(planned, Some(&manifest(records)), moved)
        .entries
        .into_iter()
        .map(|e| (e.action, e.slug))
        .collect()
}

#[test]
fn without_a_record_everything_is_a_create() {
    let p = planned_for(&live("email"));
    let c = classify(&[p], None, &[]);
    assert_eq!(c.counts.create, 1);
    assert!(c.counts.has_changes());
}

#[test]
fn each_record_state_gets_its_action() {
    let same = live("same");
    let dest = live("dest");
    let mut p_dest = planned_for(&dest);
    p_dest.destination = "https://acme.example/summer".into();
    let mut exp = live("exp");
    exp.expires_at = Some("2027-06-30T23:59:59Z".into());
    let mut p_exp = planned_for(&exp);
    p_exp.expires_at = Some("2027-06-30T23:59:59+00:00".into()); // the same instant
    let mut exp2 = live("exp2");
    exp2.expires_at = Some("2027-06-30T23:59:59Z".into());
    let mut p_exp2 = planned_for(&exp2);
    p_exp2.expires_at = Some("2027-07-31T23:59:59Z".into());
    let redirect = live("redirect");
    let mut p_redirect = planned_for(&redirect);
    p_redirect.redirect = 301;
    let mut legacy = live("legacy"); // written before redirects were recorded
    legacy.redirect = None;
    let mut p_legacy = planned_for(&legacy);
    p_legacy.redirect = 301;
    let drift = record("drift", LinkStatus::Drift);
    let mut outside = live("outside");
    outside.outside = Some(OutsideChange {
        seen_at: "2026-12-01T00:00:00Z".into(),
        destination: Some("https://acme.example/dashboard".into()),
        ..OutsideChange::default()
    });
    let pending = record("pending", LinkStatus::Pending);
    let failed = record("failed", LinkStatus::Failed);
    let mut deleted = live("deleted");
    deleted.status = LinkStatus::Deleted;
    let mut retired = live("retired");
    retired.retired = Some(Retirement {
        at: "2026-12-01T00:00:00Z".into(),
        how: "fallback".into(),
        value: Some("https://acme.example/ended".into()),
    });
    retired.destination = "https://acme.example/ended".into();
    let p_retired = {
        let mut p = planned_for(&retired);
        p.destination = "https://acme.example/spring".into();
        p
    };
    let mut retired_deleted = live("retired-deleted");
    retired_deleted.status = LinkStatus::Deleted;
    retired_deleted.retired = Some(Retirement {
        at: "2026-12-01T00:00:00Z".into(),
        how: "delete".into(),
        value: None,
    });
    let gone = live("gone");

    let planned = vec![
        planned_for(&same),
        p_dest,
        p_exp,
        p_exp2,
        p_redirect,
        p_legacy,
        planned_for(&drift),
        planned_for(&outside),
        planned_for(&pending),
        planned_for(&failed),
        planned_for(&deleted),
        p_retired,
        planned_for(&retired_deleted),
    ];
    let records = vec![
        same,
        dest,
        exp,
        exp2,
        redirect,
        legacy,
        drift,
        outside,
        pending,
        failed,
        deleted,
        retired,
        retired_deleted,
        gone,
    ];
    let got = one(&planned, records, &[]);
    let want = [
        (Action::Unchanged, "same"),
        (Action::Update, "dest"),
        (Action::Unchanged, "exp"),
        (Action::Update, "exp2"),
        (Action::CannotUpdate, "redirect"),
        (Action::Unchanged, "legacy"),
        (Action::Drift, "drift"),
        (Action::Drift, "outside"),
        (Action::Create, "pending"),
        (Action::Create, "failed"),
        (Action::Create, "deleted"),
        (Action::Unchanged, "retired"),
        (Action::Unchanged, "retired-deleted"),
        (Action::Orphan, "gone"),
    ];
    let want: Vec<(Action, String)> = want.iter().map(|(a, s)| (*a, s.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn an_update_shows_old_and_new() {
    let rec = live("email");
    let mut p = planned_for(&rec);
    p.destination = "https://acme.example/summer".into();
    let c = classify(&[p], Some(&manifest(vec![rec.clone()])), &[]);
    let e = &c.entries[0];
    assert_eq!(e.action, Action::Update);
    assert_eq!(e.url_id, rec.url_id);
    assert_eq!(e.changes.len(), 1);
    assert_eq!(e.changes[0].old.as_deref(), Some(rec.destination.as_str()));
    assert_eq!(
        e.changes[0].new.as_deref(),
        Some("https://acme.example/summer")
    );
}

#[test]
fn a_changed_slug_is_create_plus_orphan_unless_moved_says_rename() {
    let old = live("email-v1");
    let mut p = planned_for(&old);
    p.slug = "email-v1-2027".into();
    let got = one(std::slice::from_ref(&p), vec![old.clone()], &[]);
    assert_eq!(
        got,
        vec![
            (Action::Create, "email-v1-2027".into()),
            (Action::Orphan, "email-v1".into())
        ]
    );
    let c = classify(
        std::slice::from_ref(&p),
        Some(&manifest(vec![old.clone()])),
        &[],
    );
    let note = c.entries[1].note.clone().unwrap();
    assert!(
        note.contains("[[moved]]") && note.contains("email-v1-2027"),
        "{note}"
    );

    let moved = [Moved {
        from: "email-v1".into(),
        to: "email-v1-2027".into(),
    }];
    let c = classify(
        std::slice::from_ref(&p),
        Some(&manifest(vec![old.clone()])),
        &moved,
    );
    assert_eq!(
        c.entries.len(),
        1,
        "the old record is the rename, not an orphan"
    );
    assert_eq!(c.entries[0].action, Action::Rename);
    assert_eq!(c.entries[0].url_id, old.url_id);
    assert_eq!(c.entries[0].changes[0].field, "slug");
}

#[test]
fn the_renderings_carry_counts_version_and_a_safe_markdown_body() {
    let rec = live("email");
    let mut p = planned_for(&rec);
    p.destination = "https://acme.example/<b>|@team".into();
    p.cell = Cell(vec![("channel".into(), "email".into())]);
    let c = classify(&[p], Some(&manifest(vec![rec])), &[]);
    let hashes = Hashes {
        spec_sha256: "a".repeat(64),
        inputs: vec![],
        manifest_sha256: Some("b".repeat(64)),
    };
    let view = PlanView {
        spec: "spring.toml",
        manifest: Some("spring.manifest.json"),
        classified: &c,
        hashes: &hashes,
        verbose: false,
    };
    let human = render_human(&view);
    assert!(human.contains("1 to update"), "{human}");
    let json: serde_json::Value = serde_json::from_str(&render_json(&view)).unwrap();
    assert_eq!(json["format"], "nimriz-matrix-plan");
    assert_eq!(json["version"], 1);
    assert_eq!(json["summary"]["update"], 1);
    assert_eq!(json["summary"]["has_changes"], true);
    assert_eq!(json["changes"][0]["action"], "update");
    // The committed schema accepts what is written (and is strict: unknown fields fail).
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../schema/plan.schema.json")).unwrap();
    assert!(jsonschema::meta::is_valid(&schema));
    let v = jsonschema::validator_for(&schema).unwrap();
    let errs: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    let verbose = PlanView {
        verbose: true,
        ..view.clone()
    };
    let all: serde_json::Value = serde_json::from_str(&render_json(&verbose)).unwrap();
    assert!(v.is_valid(&all));
    let mut odd = json.clone();
    odd["summary"]["surprise"] = serde_json::json!(1);
    assert!(!v.is_valid(&odd), "strict");
    let md = render_markdown(&view);
    assert!(md.starts_with(MARKDOWN_MARKER), "{md}");
    assert!(
        !md.contains("<b>") && !md.contains("@team"),
        "escaped: {md}"
    );
}
