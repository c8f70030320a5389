//! `nimriz-matrix export`, run as the real binary on manifests written by the real store.

use test_support::manifest as manifest_support;

use assert_cmd::Command;
use manifest_support::{build_realistic_manifest, record, source};
use nimriz_matrix_core::manifest::{self, LinkStatus, ManifestStore, RecordedError, RunCounts};
use predicates::prelude::*;
use std::path::Path;
use std::process::Stdio;

const HEADER: &str = "brand,channel,slug,short_url,destination,status,url_id,domain_host,\
                      domain_id,error_code,error_message,support_reference,attempts,updated_at,tags,expires_at,redirect,space";

fn export(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut cmd = Command::from_std(test_support::command());
    cmd.arg("export");
    for a in args {
        cmd.arg(a);
    }
    cmd
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn csv_has_cell_columns_then_link_columns_one_row_per_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_realistic_manifest(dir.path());
    let out = export(&[&path])
        .assert()
        .success()
        .stderr("")
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().next().unwrap(), HEADER);
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 6);
    let col = |name: &str| HEADER.split(',').position(|h| h == name).unwrap();
    let by_slug = |slug: &str| rows.iter().find(|r| r[col("slug")] == slug).unwrap();

    let created = by_slug("email");
    assert_eq!(created[col("brand")], "acme");
    assert_eq!(created[col("channel")], "email");
    assert_eq!(created[col("status")], "created");
    assert_eq!(created[col("short_url")], "https://go.acme.example/email");
    assert_eq!(created[col("domain_host")], "go.acme.example");
    assert_eq!(created[col("attempts")], "2");
    assert_eq!(created[col("error_code")], "");

    let failed = by_slug("print");
    assert_eq!(failed[col("status")], "failed");
    assert_eq!(failed[col("error_code")], "slug_reserved");
    assert_eq!(failed[col("support_reference")], "req_12345");
    assert!(failed[col("error_message")].contains("choose another slug"));
    // Plan order is kept.
    let slugs: Vec<_> = rows[1..].iter().map(|r| r[col("slug")].as_str()).collect();
    assert_eq!(slugs, ["email", "social", "display", "print", "radio"]);
}

#[test]
fn csv_neutralises_formula_triggers_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let mut store = ManifestStore::open(&path, &source(), None).unwrap();
    let mut evil = record("evil", LinkStatus::Failed);
    evil.destination = "=HYPERLINK(\"https://attacker.example\")".into();
    evil.cell.0[1].1 = "+44-sms".into();
    evil.error = Some(RecordedError {
        code: Some("@import".into()),
        message: "-1 attempts left; fix the slug".into(),
        support_reference: Some("\tref".into()),
        http_status: Some(422),
    });
    let fine = record("fine", LinkStatus::Created);
    store.record(&[evil, fine.clone()]).unwrap();
    store.finish(RunCounts::default(), "partial").unwrap();

    let out = export(&[&"--format", &"csv", &path])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows = csv_rows(&String::from_utf8(out).unwrap());
    let evil_row = &rows[1];
    assert_eq!(evil_row[1], "'+44-sms");
    assert_eq!(evil_row[4], "'=HYPERLINK(\"https://attacker.example\")");
    assert_eq!(evil_row[9], "'@import");
    assert_eq!(evil_row[10], "'-1 attempts left; fix the slug");
    assert_eq!(evil_row[11], "'\tref");
    // Ordinary fields (even with a `-` or `=` inside) are left exactly as recorded.
    let fine_row = &rows[2];
    assert_eq!(fine_row[4], fine.destination);
    assert!(fine_row[4].contains('='));
    assert_eq!(fine_row[6], fine.url_id.unwrap());
    assert!(fine_row[6].contains('-'));
    assert!(
        fine_row.iter().all(|f| !f.starts_with('\'')),
        "{fine_row:?}"
    );
}

#[test]
fn json_is_the_manifest_with_the_journal_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let mut store = ManifestStore::open(&path, &source(), Some("api.example")).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    // Still running: "a" is only in the journal so far, and its lock is held.
    let out = export(&[&path, &"--format", &"json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["links"][0]["slug"], "a");
    assert_eq!(json["links"][0]["status"], "created");
    assert_eq!(
        json,
        serde_json::to_value(manifest::load(&path).unwrap()).unwrap()
    );
    drop(store);

    // A torn last journal line: exported without it, with a warning.
    let jpath = manifest::journal_path(&path);
    let mut journal = std::fs::read(&jpath).unwrap();
    journal.extend_from_slice(b"{\"t\":\"link\",\"key\":\"x");
    std::fs::write(&jpath, journal).unwrap();
    export(&[&path, &"--format", &"json"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("warning:")
                .and(predicate::str::contains("incomplete last line")),
        );
}

#[test]
fn an_unfinished_build_is_exported_with_a_warning_counting_pending_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    {
        let mut store = ManifestStore::open(&path, &source(), None).unwrap();
        store
            .record(&[
                record("a", LinkStatus::Pending),
                record("b", LinkStatus::Pending),
                record("c", LinkStatus::Pending),
            ])
            .unwrap();
        store.record(&[record("a", LinkStatus::Created)]).unwrap();
        // Dropped without `finish`: what a `kill -9` after the last fsync leaves.
    }
    let started = manifest::load(&path).unwrap().runs[0].started_at.clone();
    let out = export(&[&path])
        .assert()
        .success()
        .stderr(
            predicate::str::contains(format!(
                "warning: the last build (started {started}) did not finish"
            ))
            .and(predicate::str::contains("2 link(s) are pending"))
            .and(predicate::str::contains(
                "re-run `nimriz-matrix build campaigns/spring.toml`",
            ))
            .and(predicate::str::contains("warning:").count(1)),
        )
        .get_output()
        .stdout
        .clone();
    // The export itself is still complete for what is recorded.
    assert_eq!(csv_rows(&String::from_utf8(out).unwrap()).len(), 4);

    // Once a later run finishes, the warning goes away.
    let store = ManifestStore::open(&path, &source(), None).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();
    export(&[&path]).assert().success().stderr("");
}

#[test]
fn output_file_is_written_atomically_and_dash_means_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_realistic_manifest(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("links.csv");
    std::fs::write(&target, "old contents").unwrap();
    export(&[&path, &"--output", &target])
        .assert()
        .success()
        .stdout("");
    let written = std::fs::read_to_string(&target).unwrap();
    // A file gets the byte-order mark Excel needs to read UTF-8 (`--bom auto`).
    let unmarked = written.strip_prefix('\u{feff}').expect("a BOM in the file");
    assert!(unmarked.starts_with(HEADER), "{written}");
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        1,
        "temp file left"
    );

    let to_stdout = export(&[&path, &"-o", &"-"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    // stdout is usually a pipe into another program: no BOM unless asked for.
    assert_eq!(String::from_utf8(to_stdout).unwrap(), unmarked);
    let forced = export(&[&path, &"--bom", &"always"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(forced).unwrap(), written);
    export(&[&path, &"-o", &target, &"--bom", &"never"])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), unmarked);
}

#[test]
fn missing_and_damaged_manifests_fail_with_exit_4_saying_which() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.manifest.json");
    export(&[&missing]).assert().code(4).stdout("").stderr(
        predicate::str::contains("no manifest there")
            .and(predicate::str::contains("nope.manifest.json")),
    );

    let damaged = dir.path().join("bad.manifest.json");
    std::fs::write(&damaged, "{\"schema_version\":1,").unwrap();
    export(&[&damaged]).assert().code(4).stdout("").stderr(
        predicate::str::contains("not a valid nimriz-matrix manifest")
            .and(predicate::str::contains("bad.manifest.json")),
    );

    // Exporting over the record itself is refused before anything is read or written.
    let before = std::fs::read(&damaged).unwrap();
    export(&[
        &damaged,
        &"-o",
        &dir.path().join(".").join("bad.manifest.json"),
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("would overwrite the manifest"));
    assert_eq!(std::fs::read(&damaged).unwrap(), before);

    // An output folder that does not exist is an I/O error too, and names the folder.
    let good = build_realistic_manifest(dir.path());
    let out = dir.path().join("no-such-dir").join("x.csv");
    export(&[&good, &"--output", &out])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no-such-dir"));
}

#[test]
fn a_closed_stdout_ends_the_export_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let mut store = ManifestStore::open(&path, &source(), None).unwrap();
    // Far more than a pipe buffer of CSV.
    let records: Vec<_> = (0..3000)
        .map(|i| record(&format!("s{i}"), LinkStatus::Created))
        .collect();
    store.record(&records).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();

    let mut child = test_support::command()
        .args([Path::new("export"), &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}
