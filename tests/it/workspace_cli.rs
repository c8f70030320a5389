//! The manifest knows its workspace, as a user meets it: a manifest from a sandbox that was
//! restarted without `--state` (a new, empty workspace) is refused before anything is sent,
//! with the fix; with `--state` the workspace survives a restart (even on another port) and
//! the manifest is trusted.

use std::path::Path;
use std::time::Duration;
use test_support::{ChildGuard, Scratch, repo};

const KEY: &str = "nmz_sandbox_key";

/// Start `nimriz-matrix sandbox --spec matrix.example.toml ARGS` in `dir`; returns the guard
/// and its base URL (from the banner's first line, read with a bounded wait).
fn sandbox(dir: &Path, args: &[&str]) -> (ChildGuard, String) {
    let mut all = vec!["--spec", "matrix.example.toml"];
    all.extend_from_slice(args);
    sandbox_with(dir, &all)
}

/// `nimriz-matrix sandbox ARGS` in `dir`.
fn sandbox_with(dir: &Path, args: &[&str]) -> (ChildGuard, String) {
    test_support::sandbox(dir, args)
}

fn build(dir: &Path, base: &str, manifest: &str) -> test_support::Run {
    let mut cmd = test_support::command();
    cmd.current_dir(dir)
        .env("NIMRIZ_API_BASE", base)
        .env("NIMRIZ_API_KEY", KEY)
        .args(["build", "matrix.example.toml", "--manifest", manifest]);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run build");
    test_support::Run(out)
}

fn scratch() -> Scratch {
    let s = Scratch::new();
    for f in ["matrix.example.toml", "brands.csv"] {
        std::fs::copy(repo().join(f), s.path(f)).expect("copy the example");
    }
    s
}

fn recorded_account(s: &Scratch, manifest: &str) -> String {
    let m = nimriz_matrix_core::manifest::load(&s.path(manifest)).expect("manifest");
    m.workspace
        .and_then(|w| w.account_id)
        .expect("the manifest records the workspace")
}

fn links_in(base: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("{base}/__sandbox/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        v["links"].as_u64().expect("links in stats") as usize
    })
}

#[test]
fn a_restarted_in_memory_sandbox_is_another_workspace() {
    let s = scratch();
    let (first, base) = sandbox(s.dir.path(), &["--addr", "127.0.0.1:0"]);
    build(s.dir.path(), &base, "m.json").succeeds();
    let account = recorded_account(&s, "m.json");
    drop(first);

    // Same address, new process, no --state: a new, empty workspace.
    let addr = base.trim_start_matches("http://").to_string();
    let (_second, base2) = sandbox(s.dir.path(), &["--addr", &addr]);
    assert_eq!(base2, base);
    let err = build(s.dir.path(), &base, "m.json").fails_with(
        2,
        &[
            "records 196 link(s)",
            &account,
            "Nothing was sent",
            "--manifest",
            "without --state",
        ],
    );
    assert!(!err.contains("nothing to do"), "{err}");
    assert_eq!(
        links_in(&base),
        0,
        "nothing was created in the new workspace"
    );
    // The manifest still names the first workspace (the refused run wrote nothing).
    assert_eq!(recorded_account(&s, "m.json"), account);

    // The fix the message gives works: a new record for this workspace.
    build(s.dir.path(), &base, "m2.json").succeeds();
    assert_eq!(links_in(&base), 196);
}

#[test]
fn a_sandbox_with_state_keeps_its_workspace_across_restarts() {
    let s = scratch();
    let state = s.path("sandbox-state.json");
    let state = state.to_str().unwrap();
    let (first, base) = sandbox(s.dir.path(), &["--addr", "127.0.0.1:0", "--state", state]);
    build(s.dir.path(), &base, "m.json").succeeds();
    let account = recorded_account(&s, "m.json");
    drop(first);

    // Another port this time: the account id, not the port, names the workspace.
    let (_second, base2) = sandbox(s.dir.path(), &["--addr", "127.0.0.1:0", "--state", state]);
    let out = build(s.dir.path(), &base2, "m.json");
    let err = out.stderr();
    assert_eq!(out.code(), 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    assert_eq!(recorded_account(&s, "m.json"), account);
    assert_eq!(links_in(&base2), 196);
}

#[test]
fn an_old_manifest_without_a_workspace_is_adopted_with_a_warning() {
    let s = scratch();
    let (_sandbox, base) = sandbox(s.dir.path(), &["--addr", "127.0.0.1:0"]);
    build(s.dir.path(), &base, "m.json").succeeds();
    // Make it look like a manifest written before workspaces were recorded.
    let path = s.path("m.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("workspace");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();

    let out = build(s.dir.path(), &base, "m.json");
    let err = out.stderr();
    assert_eq!(out.code(), 0, "{err}");
    assert!(
        err.contains("written before manifests recorded their workspace"),
        "{err}"
    );
    assert!(err.contains("nothing to do"), "{err}");
    assert!(recorded_account(&s, "m.json").starts_with("acct_sandbox_"));
}

#[test]
fn a_domain_the_sandbox_lacks_is_fixed_with_sandbox_flags_not_a_dashboard() {
    let s = scratch();
    let (_sandbox, base) = sandbox_with(
        s.dir.path(),
        &["--addr", "127.0.0.1:0", "--domain", "go.only.example"],
    );
    let err = build(s.dir.path(), &base, "m.json").fails_with(
        2,
        &[
            "does not have",
            "go.acme-outdoor.example",
            "--spec SPEC",
            "--domain HOST",
        ],
    );
    assert!(!err.contains("dashboard"), "{err}");
    assert_eq!(links_in(&base), 0);
}
