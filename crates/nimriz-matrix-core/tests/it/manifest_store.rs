//! ManifestStore: replay, torn writes, damage, locks, and real `kill -9` crashes.

use test_support::manifest as manifest_support;

use manifest_support::{record, source};
use nimriz_matrix_core::manifest::{
    self, LinkRecord, LinkStatus, ManifestStore, RunCounts, journal_path, lock_path,
};
use nimriz_matrix_core::{Error, exit};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn open(path: &Path) -> nimriz_matrix_core::Result<ManifestStore> {
    ManifestStore::open(path, &source(), Some("api.example"))
}

fn manifest_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("m.manifest.json")
}

fn error_text(err: &Error) -> String {
    let mut s = err.to_string();
    let mut src = std::error::Error::source(err);
    while let Some(e) = src {
        s.push_str(&format!(": {e}"));
        src = e.source();
    }
    s
}

fn statuses(path: &Path) -> Vec<(String, LinkStatus)> {
    manifest::load(path)
        .unwrap()
        .links
        .into_iter()
        .map(|l| (l.slug, l.status))
        .collect()
}

#[test]
fn records_survive_a_drop_without_finish_and_later_records_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    {
        let mut store = open(&path).unwrap();
        store
            .record(&[
                record("a", LinkStatus::Pending),
                record("b", LinkStatus::Pending),
            ])
            .unwrap();
        store.record(&[record("a", LinkStatus::Created)]).unwrap();
        assert_eq!(
            store
                .get(&record("a", LinkStatus::Created).key)
                .unwrap()
                .unwrap()
                .status,
            LinkStatus::Created
        );
        // No finish: like a crash after the last fsync.
    }
    assert!(fs::metadata(journal_path(&path)).unwrap().len() > 0);
    let (a, b) = ("a".to_string(), "b".to_string());
    assert_eq!(
        statuses(&path),
        vec![
            (a.clone(), LinkStatus::Created),
            (b.clone(), LinkStatus::Pending)
        ]
    );

    let store = open(&path).unwrap();
    assert_eq!(
        store
            .links()
            .unwrap()
            .map(|l| (l.slug.clone(), l.status))
            .collect::<Vec<_>>(),
        vec![(a, LinkStatus::Created), (b, LinkStatus::Pending)]
    );
    // Opening compacted the journal into M.
    assert_eq!(fs::metadata(journal_path(&path)).unwrap().len(), 0);
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["links"][0]["status"], "created");
    let runs = &store.header().runs;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].finished_at, None, "the crashed run never finished");
    assert!(store.notes().is_empty());
}

#[test]
fn a_torn_last_journal_line_is_ignored_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    {
        let mut store = open(&path).unwrap();
        store.record(&[record("a", LinkStatus::Created)]).unwrap();
        store.record(&[record("b", LinkStatus::Created)]).unwrap();
    }
    // Cut the journal in the middle of the second line, as a crash mid-write would.
    let jpath = journal_path(&path);
    let text = fs::read(&jpath).unwrap();
    let first_end = text.iter().position(|&b| b == b'\n').unwrap() + 1;
    let cut = first_end + (text.len() - first_end) / 2;
    fs::write(&jpath, &text[..cut]).unwrap();

    let (m, notes) = manifest::load_with_notes(&path).unwrap();
    assert_eq!(m.links.len(), 1);
    assert_eq!(m.links[0].slug, "a");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("incomplete last line"), "{notes:?}");

    let mut store = open(&path).unwrap();
    assert_eq!(store.notes().len(), 1);
    assert_eq!(store.links().unwrap().count(), 1);
    // The torn bytes are gone, so new records never follow a broken line.
    assert_eq!(fs::metadata(&jpath).unwrap().len(), 0);
    store.record(&[record("c", LinkStatus::Created)]).unwrap();
    drop(store);
    let (m, notes) = manifest::load_with_notes(&path).unwrap();
    assert_eq!(m.links.len(), 2);
    assert!(notes.is_empty());
}

#[test]
fn a_manifest_reused_by_another_spec_or_campaign_gets_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let counts = RunCounts::default();
    let store = open(&path).unwrap();
    assert!(store.notes().is_empty(), "{:?}", store.notes());
    store.finish(counts, "completed").unwrap();

    // Same spec file name and campaign, run from another folder: the same campaign.
    let mut moved = source();
    moved.spec_path = "/elsewhere/spring.toml".into();
    let store = ManifestStore::open(&path, &moved, None).unwrap();
    assert!(store.notes().is_empty(), "{:?}", store.notes());
    store.finish(counts, "completed").unwrap();

    // Another spec: the manifest now mixes two campaigns.
    let mut other = source();
    other.spec_path = "campaigns/autumn.toml".into();
    other.campaign = Some("autumn-sale".into());
    let store = ManifestStore::open(&path, &other, None).unwrap();
    let notes = store.notes().to_vec();
    assert_eq!(notes.len(), 1, "{notes:?}");
    for part in [
        path.display().to_string().as_str(),
        "last written for spec `/elsewhere/spring.toml` (campaign `spring-sale`)",
        "now also records `campaigns/autumn.toml` (campaign `autumn-sale`)",
        "--manifest",
    ] {
        assert!(notes[0].contains(part), "missing {part}: {notes:?}");
    }
    store.finish(counts, "completed").unwrap();

    // Same spec file, other campaign name: also a different campaign.
    let mut renamed = other.clone();
    renamed.campaign = None;
    let store = ManifestStore::open(&path, &renamed, None).unwrap();
    assert_eq!(store.notes().len(), 1, "{:?}", store.notes());
    assert!(
        store.notes()[0].contains("no campaign name"),
        "{:?}",
        store.notes()
    );
}

#[test]
fn a_damaged_middle_journal_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    {
        let mut store = open(&path).unwrap();
        for slug in ["a", "b", "c"] {
            store.record(&[record(slug, LinkStatus::Created)]).unwrap();
        }
    }
    let jpath = journal_path(&path);
    let text = fs::read_to_string(&jpath).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"t\":\"link\",\"key\":";
    fs::write(&jpath, lines.join("\n") + "\n").unwrap();

    for err in [open(&path).unwrap_err(), manifest::load(&path).unwrap_err()] {
        let msg = error_text(&err);
        assert_eq!(err.exit_code(), exit::LOCAL, "{msg}");
        assert!(msg.contains(&jpath.display().to_string()), "{msg}");
        assert!(msg.contains("line 2 is damaged"), "{msg}");
    }
    // Nothing was rewritten: the user can still repair the journal by hand.
    assert_eq!(fs::read_to_string(&jpath).unwrap(), lines.join("\n") + "\n");
}

#[test]
fn a_lock_file_left_by_a_dead_process_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    fs::write(
        lock_path(&path),
        "pid 999999 on gone-host since 2020-01-01T00:00:00Z\n",
    )
    .unwrap();
    let store = open(&path).unwrap();
    let holder = fs::read_to_string(lock_path(&path)).unwrap();
    assert!(
        holder.starts_with(&format!("pid {} on ", std::process::id())),
        "{holder}"
    );
    drop(store);
}

#[test]
fn a_held_lock_refuses_a_second_store_in_another_thread_and_in_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let first = open(&path).unwrap();

    let p = path.clone();
    let from_thread = std::thread::spawn(move || open(&p).map(|_| ()))
        .join()
        .unwrap();
    let err = from_thread.unwrap_err();
    assert!(matches!(err, Error::Lock(_)), "{err:?}");
    assert_eq!(err.exit_code(), 4);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("locked by pid {} on ", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains(" since 20"), "{msg}");
    assert!(
        msg.contains(&lock_path(&path).display().to_string()),
        "{msg}"
    );

    // Two stores can never both hold it, even in the same thread.
    assert!(matches!(open(&path), Err(Error::Lock(_))));
    // The refused opens changed nothing.
    assert_eq!(first.header().runs.len(), 1);
    drop(first);
    let again = open(&path).unwrap();
    assert_eq!(again.header().runs.len(), 2);
}

#[test]
fn finish_records_the_run_removes_the_journal_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    let counts = RunCounts {
        planned: 1,
        created: 1,
        ..RunCounts::default()
    };
    let done = store.finish(counts, "completed").unwrap();
    assert!(!journal_path(&path).exists());
    assert_eq!(manifest::load(&path).unwrap(), done);
    let run = &done.runs[0];
    assert_eq!(run.outcome.as_deref(), Some("completed"));
    assert_eq!(run.counts, Some(counts));
    assert!(run.finished_at.is_some());
    assert_eq!(done.api_host.as_deref(), Some("api.example"));
    assert_eq!(done.source, source());
    assert_eq!(fs::read_to_string(lock_path(&path)).unwrap(), "");
    // No stray temp files beside the manifest.
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["m.manifest.json", "m.manifest.json.lock"]);
    open(&path).unwrap();
}

#[test]
fn checkpoint_moves_the_journal_into_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Pending)]).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(fs::metadata(journal_path(&path)).unwrap().len(), 0);
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["links"][0]["slug"], "a");
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    assert_eq!(
        statuses(&path),
        vec![("a".to_string(), LinkStatus::Created)]
    );
}

#[test]
fn missing_or_damaged_manifests_are_clear_local_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let err = manifest::load(&path).unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCAL);
    assert!(
        error_text(&err).contains("no manifest there"),
        "{}",
        error_text(&err)
    );

    fs::write(&path, "{\"schema_version\": 1, \"links\": [").unwrap();
    for err in [manifest::load(&path).unwrap_err(), open(&path).unwrap_err()] {
        assert_eq!(err.exit_code(), exit::LOCAL);
        let msg = error_text(&err);
        assert!(msg.contains("not a valid nimriz-matrix manifest"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[test]
fn unknown_fields_load_but_a_newer_format_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();

    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    json["future_field"] = serde_json::json!({"x": 1});
    json["links"][0]["future_link_field"] = serde_json::json!(true);
    fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(manifest::load(&path).unwrap().links.len(), 1);
    open(&path).unwrap();

    json["schema_version"] = serde_json::json!(2);
    fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(manifest::load(&path).unwrap().links.len(), 1);
    let err = open(&path).unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCAL);
    assert!(
        error_text(&err).contains("upgrade nimriz-matrix"),
        "{}",
        error_text(&err)
    );
}

#[test]
fn load_while_a_build_writes_never_sees_a_link_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..400 {
            let slug = format!("s{i}");
            store.record(&[record(&slug, LinkStatus::Pending)]).unwrap();
            store.record(&[record(&slug, LinkStatus::Created)]).unwrap();
            if i % 3 == 0 {
                store.checkpoint().unwrap();
            }
        }
        store.finish(RunCounts::default(), "completed").unwrap();
    });
    // Every link before the newest one seen is done; what was once done stays done.
    let mut done_before = 0;
    let mut loads = 0;
    loop {
        let finished = writer.is_finished();
        let m = manifest::load(&path).unwrap();
        loads += 1;
        let links = &m.links;
        let done = links
            .iter()
            .take_while(|l| l.status == LinkStatus::Created)
            .count();
        assert!(
            done + 1 >= links.len(),
            "a link before the last is not done"
        );
        assert!(
            done >= done_before,
            "went backwards: {done} < {done_before}"
        );
        done_before = done;
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(done_before, 400);
    assert!(loads > 2, "the reader never overlapped the writer");
}

// ---- real crashes -------------------------------------------------------------------

const CHILD_ENV: &str = "NIMRIZ_MANIFEST_CRASH_CHILD";

/// Not a test on its own: the body of the child process `kill_dash_9_...` starts (this
/// test binary re-run with a filter). It records links forever, printing an `ack` line
/// after each `record` returns, with checkpoints in between, until it is killed.
#[test]
fn crash_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let mut store = open(&path).unwrap();
    let start = store.links().unwrap().count();
    // Bounded, in case the parent never kills us.
    for i in start..start + 20_000 {
        let slug = format!("s{i}");
        store.record(&[record(&slug, LinkStatus::Pending)]).unwrap();
        println!("ack pending {slug}");
        store.record(&[record(&slug, LinkStatus::Created)]).unwrap();
        println!("ack created {slug}");
        if i % 7 == 0 {
            store.checkpoint().unwrap();
        }
    }
}

#[test]
fn kill_dash_9_at_any_moment_loses_nothing_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let exe = std::env::current_exe().unwrap();
    // slug -> strongest status the child confirmed as recorded.
    let mut acked: BTreeMap<String, LinkStatus> = BTreeMap::new();
    // Kill after this many acks, plus a varying delay, so kills land in record, in
    // checkpoint and in open's compaction alike.
    for (round, after_acks) in [1usize, 2, 9, 40, 120, 301].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "manifest_store::crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < after_acks {
            assert!(Instant::now() < deadline, "child too slow");
            let Some(line) = lines.next() else {
                panic!("child exited early in round {round}");
            };
            if let Some(ack) = parse_ack(&line.unwrap()) {
                note_ack(&mut acked, ack);
                seen += 1;
            }
        }
        if round == 0 {
            // A live process holds the lock: another open is refused, naming it.
            let err = open(&path).unwrap_err();
            assert!(matches!(err, Error::Lock(_)), "{err:?}");
            assert!(
                err.to_string().contains(&format!("pid {} ", child.id())),
                "{err}"
            );
        }
        std::thread::sleep(Duration::from_micros(round as u64 * 373));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Acks printed before the kill still count.
        for line in lines {
            if let Some(ack) = parse_ack(&line.unwrap()) {
                note_ack(&mut acked, ack);
            }
        }
        // The dead child's lock file must not block, and nothing acked may be missing.
        let store = open(&path).unwrap();
        for (slug, want) in &acked {
            let key = record(slug, *want).key;
            let got = store
                .get(&key)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: {slug} was recorded but is lost"));
            if *want == LinkStatus::Created {
                assert_eq!(got.status, LinkStatus::Created, "round {round}: {slug}");
            }
        }
        // Plan order survives too: s0, s1, s2, ...
        let order: Vec<usize> = store
            .links()
            .unwrap()
            .map(|l: &LinkRecord| l.slug[1..].parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] + 1 == w[1]), "{order:?}");
    }
    assert!(acked.len() > 200, "only {} links recorded", acked.len());
}

fn parse_ack(line: &str) -> Option<(String, LinkStatus)> {
    let rest = line.strip_prefix("ack ")?;
    let (status, slug) = rest.split_once(' ')?;
    let status = match status {
        "pending" => LinkStatus::Pending,
        "created" => LinkStatus::Created,
        _ => return None,
    };
    Some((slug.to_string(), status))
}

fn note_ack(acked: &mut BTreeMap<String, LinkStatus>, (slug, status): (String, LinkStatus)) {
    let entry = acked.entry(slug).or_insert(status);
    if status == LinkStatus::Created {
        *entry = status;
    }
}

// ---- the streamed store (issue 11): records are indexed, not held -------------------

/// The text of the record for `slug` inside `links`, as it stands in the file.
fn record_text(path: &Path, slug: &str) -> String {
    let text = fs::read_to_string(path).unwrap();
    let needle = format!("\"slug\": \"{slug}\"");
    let at = text.find(&needle).unwrap();
    let start = text[..at].rfind("\n    {").unwrap();
    let end = at + text[at..].find("\n    }").unwrap();
    text[start..end].to_string()
}

#[test]
fn a_record_the_run_does_not_touch_comes_out_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    let mut a = record("a", LinkStatus::Created);
    a.history.push(manifest::model::Change {
        at: "2026-01-02T00:00:00Z".into(),
        action: "update-destination".into(),
        field: "destination".into(),
        before: Some("https://old.example/\"quoted\" \\ \u{e9}".into()),
        after: Some("https://new.example/".into()),
    });
    store
        .record(&[a.clone(), record("b", LinkStatus::Pending)])
        .unwrap();
    store.finish(RunCounts::default(), "partial").unwrap();
    let before = record_text(&path, "a");

    // A second run touches only b, with checkpoints in between.
    let mut store = open(&path).unwrap();
    store.record(&[record("b", LinkStatus::Created)]).unwrap();
    store.checkpoint().unwrap();
    store.record(&[record("c", LinkStatus::Created)]).unwrap();
    let done = store.finish(RunCounts::default(), "completed").unwrap();
    assert_eq!(record_text(&path, "a"), before);
    assert_eq!(done.links[0], a);
    assert_eq!(
        statuses(&path),
        vec![
            ("a".to_string(), LinkStatus::Created),
            ("b".to_string(), LinkStatus::Created),
            ("c".to_string(), LinkStatus::Created)
        ]
    );
    // Still exactly what a full rewrite produces (the pretty format, every field).
    let full = serde_json::to_string_pretty(&manifest::load(&path).unwrap()).unwrap() + "\n";
    assert_eq!(fs::read_to_string(&path).unwrap(), full);
}

#[test]
fn opening_an_unchanged_manifest_does_not_rewrite_it_and_a_crash_keeps_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();
    let bytes = fs::read(&path).unwrap();
    {
        let store = open(&path).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(
            store
                .summary(&record("a", LinkStatus::Created).key)
                .map(|s| s.status),
            Some(LinkStatus::Created)
        );
        // Dropped without finish: like a crash.
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "M was rewritten just to open it"
    );
    let j = fs::read_to_string(journal_path(&path)).unwrap();
    assert!(
        j.starts_with(r#"{"t":"run","index":1,"run":{"started_at":"#),
        "{j}"
    );
    // Readers see the crashed run; the next open compacts it into M, once.
    let m = manifest::load(&path).unwrap();
    assert_eq!(m.runs.len(), 2);
    assert_eq!(m.runs[1].finished_at, None);
    let store = open(&path).unwrap();
    assert_eq!(store.header().runs.len(), 3);
    assert_eq!(fs::metadata(journal_path(&path)).unwrap().len(), 0);
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["runs"].as_array().unwrap().len(), 3);
    assert_eq!(on_disk["runs"][1]["finished_at"], serde_json::Value::Null);
}

#[test]
fn replaying_a_run_line_over_a_manifest_that_already_has_it_adds_no_run() {
    // A crash between a compaction's rename and its journal truncation leaves both.
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    open(&path)
        .unwrap()
        .finish(RunCounts::default(), "completed")
        .unwrap();
    let mut store = open(&path).unwrap(); // the run goes in as a journal line
    let journal = fs::read(journal_path(&path)).unwrap();
    assert!(!journal.is_empty());
    store.checkpoint().unwrap(); // ... and into M
    drop(store);
    let in_m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(in_m["runs"].as_array().unwrap().len(), 2);
    fs::write(journal_path(&path), &journal).unwrap(); // the un-truncated journal
    let m = manifest::load(&path).unwrap();
    assert_eq!(m.runs.len(), 2, "{:?}", m.runs);
    assert_eq!(m.runs[1].finished_at, None);
}

#[test]
fn an_old_manifest_loads_and_is_rewritten_in_full() {
    // A manifest from before utm/origin/history/... were recorded: fields missing, spaced
    // differently, keys in another order.
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let src = serde_json::to_value(source()).unwrap();
    let old = serde_json::json!({
        "tool": "nimriz-matrix",
        "schema_version": 1,
        "tool_version": "0.0.9",
        "links": [
            {"key": "go.example/old", "cell": {"brand": "acme"}, "slug": "old",
             "domain": {"id": null, "host": "go.example"},
             "destination": "https://example.com/", "idempotency_key": "k1",
             "status": "created", "short_url": "https://go.example/old", "url_id": "u1"},
            {"key": "go.example/gone", "cell": {"brand": "acme"}, "slug": "gone",
             "domain": {"id": null, "host": "go.example"},
             "destination": "https://example.com/x", "idempotency_key": "k2",
             "status": "failed", "error": {"message": "nope"}}
        ],
        "source": src,
    });
    fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
    let store = open(&path).unwrap();
    assert_eq!(store.len(), 2);
    let rec = store.get("go.example/old").unwrap().unwrap();
    assert_eq!(rec.url_id.as_deref(), Some("u1"));
    assert!(rec.utm.is_empty() && rec.history.is_empty());
    store.finish(RunCounts::default(), "completed").unwrap();
    // Written in this version's full form: what a full rewrite of the loaded model gives.
    let m = manifest::load(&path).unwrap();
    assert_eq!(m.links.len(), 2);
    assert_eq!(m.links[1].error.as_ref().unwrap().message, "nope");
    let full = serde_json::to_string_pretty(&m).unwrap() + "\n";
    assert_eq!(fs::read_to_string(&path).unwrap(), full);
    let on_disk: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert_eq!(on_disk["links"][0]["utm"], serde_json::json!({}));
    assert_eq!(on_disk["links"][0]["history"], serde_json::json!([]));
}

#[test]
fn a_damaged_record_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let store = open(&path).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let broken = text.replace(
        "\"links\": []",
        "\"links\": [{\"key\": \"x\", \"status\": \"sideways\"}]",
    );
    fs::write(&path, broken).unwrap();
    let err = open(&path).unwrap_err();
    let msg = error_text(&err);
    assert!(msg.contains("not a valid nimriz-matrix manifest"), "{msg}");
    assert!(msg.contains("link record 1"), "{msg}");
    assert_eq!(err.exit_code(), exit::LOCAL);
}

#[test]
fn a_manifest_changed_in_place_during_a_build_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    store.finish(RunCounts::default(), "completed").unwrap();

    let mut store = open(&path).unwrap();
    // Something ignores the (advisory) lock and rewrites M in place.
    fs::write(&path, "{\"someone\": \"else\"}\n").unwrap();
    store.record(&[record("b", LinkStatus::Created)]).unwrap();
    let err = store.checkpoint().unwrap_err();
    let msg = error_text(&err);
    assert!(msg.contains("changed by something else"), "{msg}");
    assert_eq!(err.exit_code(), exit::LOCAL);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"someone\": \"else\"}\n"
    );
    // Nothing recorded is lost: the journal still has b.
    let j = fs::read_to_string(journal_path(&path)).unwrap();
    assert!(j.contains("\"slug\":\"b\""), "{j}");
}

// ---- no-op re-runs (issue 11): M is left alone, the run is journaled ------------------

#[test]
fn a_no_op_run_leaves_the_manifest_byte_identical_and_records_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let a = record("a", LinkStatus::Created);
    let mut store = open(&path).unwrap();
    store
        .record(&[a.clone(), record("b", LinkStatus::Failed)])
        .unwrap();
    store.close(RunCounts::default(), "completed").unwrap();
    let bytes = fs::read(&path).unwrap();
    let text_a = record_text(&path, "a");
    for round in 1..=3 {
        let store = open(&path).unwrap();
        assert_eq!(store.summary(&a.key).map(|s| s.status), Some(a.status));
        assert_eq!(
            store.summary(&a.key).map(|s| s.planned),
            Some(a.planned_fingerprint())
        );
        let counts = RunCounts {
            planned: 2,
            skipped_done: 1,
            failed: 1,
            ..RunCounts::default()
        };
        store.close(counts, "partial").unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes, "a no-op run rewrote M");
        // Readers see the run, finished.
        let m = manifest::load(&path).unwrap();
        assert_eq!(m.runs.len(), 1 + round, "{:?}", m.runs);
        let run = m.runs.last().unwrap();
        assert!(run.finished_at.is_some());
        assert_eq!(run.counts, Some(counts));
        assert_eq!(run.outcome.as_deref(), Some("partial"));
        assert_eq!(m.links.len(), 2);
        assert_eq!(fs::read_to_string(lock_path(&path)).unwrap(), "");
    }
    let j = fs::read_to_string(journal_path(&path)).unwrap();
    assert_eq!(j.lines().count(), 6, "{j}");
    assert_eq!(
        j.lines()
            .filter(|l| l.starts_with(r#"{"t":"run_end","index":"#))
            .count(),
        3,
        "{j}"
    );
    // A run that records something folds every run into M and removes the journal; the
    // record it did not touch is still byte for byte what it was.
    let mut store = open(&path).unwrap();
    store.record(&[record("c", LinkStatus::Created)]).unwrap();
    store.close(RunCounts::default(), "completed").unwrap();
    assert!(!journal_path(&path).exists());
    assert_eq!(record_text(&path, "a"), text_a);
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let runs = on_disk["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    assert!(
        runs.iter().all(|r| r["finished_at"].is_string()),
        "{runs:?}"
    );
    assert_eq!(runs[2]["outcome"], "partial");
    assert_eq!(runs[2]["counts"]["skipped_done"], 1);
    let full = serde_json::to_string_pretty(&manifest::load(&path).unwrap()).unwrap() + "\n";
    assert_eq!(fs::read_to_string(&path).unwrap(), full);
}

#[test]
fn a_torn_run_end_line_is_ignored_and_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    store.close(RunCounts::default(), "completed").unwrap();
    open(&path)
        .unwrap()
        .close(RunCounts::default(), "completed")
        .unwrap();
    // Cut the run_end line in half, as a power cut before it reached the disk might.
    let jpath = journal_path(&path);
    let j = fs::read_to_string(&jpath).unwrap();
    let end_at = j.find(r#"{"t":"run_end""#).unwrap();
    fs::write(&jpath, &j[..end_at + 20]).unwrap();
    let store = open(&path).unwrap();
    assert!(
        store
            .notes()
            .iter()
            .any(|n| n.contains("incomplete last line")),
        "{:?}",
        store.notes()
    );
    // Compacted at open: nothing is appended after a torn line.
    assert_eq!(fs::metadata(&jpath).unwrap().len(), 0);
    assert_eq!(store.header().runs.len(), 3);
    assert_eq!(store.header().runs[1].finished_at, None);
    store.close(RunCounts::default(), "completed").unwrap();
    let m = manifest::load(&path).unwrap();
    assert_eq!(m.runs.len(), 3);
    assert!(m.runs[2].finished_at.is_some());
    assert_eq!(
        statuses(&path),
        vec![("a".to_string(), LinkStatus::Created)]
    );
}

#[test]
fn a_no_op_run_over_a_manifest_of_another_version_rewrites_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store.record(&[record("a", LinkStatus::Created)]).unwrap();
    store.close(RunCounts::default(), "completed").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let version = format!("\"tool_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&version), "{text}");
    fs::write(&path, text.replace(&version, "\"tool_version\": \"0.0.1\"")).unwrap();
    open(&path)
        .unwrap()
        .close(RunCounts::default(), "completed")
        .unwrap();
    assert!(
        !journal_path(&path).exists(),
        "written in this version's form"
    );
    let rewritten = fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&rewritten).contains(&version));
    open(&path)
        .unwrap()
        .close(RunCounts::default(), "completed")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), rewritten);
    assert_eq!(manifest::load(&path).unwrap().runs.len(), 3);
}

#[test]
fn the_index_a_peek_keeps_is_used_only_for_the_file_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_in(&dir);
    let mut store = open(&path).unwrap();
    store
        .record(&[
            record("a", LinkStatus::Created),
            record("b", LinkStatus::Failed),
        ])
        .unwrap();
    store.close(RunCounts::default(), "completed").unwrap();
    let b = record("b", LinkStatus::Failed).key;
    // Unchanged between the peek and the open: the open sees what the file says.
    assert_eq!(manifest::peek_header(&path).unwrap().1, 2);
    let store = open(&path).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(
        store.summary(&b).map(|s| s.status),
        Some(LinkStatus::Failed)
    );
    store.close(RunCounts::default(), "completed").unwrap();
    // Replaced between the peek and the open (another writer): the open reads it anew.
    assert_eq!(manifest::peek_header(&path).unwrap().1, 2);
    let text = fs::read_to_string(&path).unwrap();
    let changed = text.replace("\"status\": \"failed\"", "\"status\": \"created\"");
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    let store = open(&path).unwrap();
    assert_eq!(
        store.summary(&b).map(|s| s.status),
        Some(LinkStatus::Created)
    );
    assert_eq!(store.get(&b).unwrap().unwrap().status, LinkStatus::Created);
}
