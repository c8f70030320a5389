//! The GitHub Action's script (`action/run.sh`), run locally as a workflow runs it: inputs as
//! `INPUT_*`, `GITHUB_STEP_SUMMARY` and `GITHUB_OUTPUT` as temp files, the GitHub CLI
//! replaced by a stub that records its calls (nothing here reaches GitHub), and the sandbox
//! as the API for `apply`. Each case asserts the outputs, the summary a reviewer sees, the
//! annotations in the log and the comment calls.
#![cfg(unix)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use test_support::{ChildGuard, Run, Scratch, repo};

const KEY: &str = "nmz_sandbox_key";
const HOST: &str = "go.acme.example";

fn spec(dest_v1: &str) -> String {
    format!(
        r#"[campaign]
name = "spring"

[link]
domain = "{HOST}"
destination = "https://acme.example/{{variant}}"
slug = "spring-{{variant}}"

[utm]
source = "newsletter"
medium = "email"
campaign = "{{campaign.name}}"

[[dimension]]
name = "variant"
values = ["v1", "v2"]

[[override]]
match = {{ variant = "v1" }}
destination = "{dest_v1}"
"#
    )
}

fn sandbox(dir: &Path) -> (ChildGuard, String) {
    test_support::sandbox(dir, &["--addr", "127.0.0.1:0", "--domain", HOST])
}

/// A `gh` stand-in: appends its arguments to `gh.log`; answers the comment listing with
/// `gh-existing` (a comment id, or nothing).
fn stub_gh(s: &Scratch) -> String {
    let p = s.write(
        "gh",
        format!(
            "#!/usr/bin/env bash\necho \"$*\" >> '{log}'\nif [ \"$1\" = api ] && [ \"$2\" != \
             --method ]; then cat '{existing}' 2>/dev/null; fi\nexit 0\n",
            log = s.path("gh.log").display(),
            existing = s.path("gh-existing").display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// Run the action's script with `inputs`; returns the run and the outputs file's lines.
fn action(s: &Scratch, base: &str, inputs: &[(&str, &str)], key: bool) -> (Run, String, String) {
    let gh = stub_gh(s);
    let summary = s.path("summary.md");
    let outputs = s.path("outputs.txt");
    let _ = std::fs::remove_file(&summary);
    let _ = std::fs::remove_file(&outputs);
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo().join("action/run.sh"))
        .current_dir(s.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env(
            "NIMRIZ_MATRIX",
            assert_cmd::cargo::cargo_bin("nimriz-matrix"),
        )
        .env("NIMRIZ_GH", gh)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .env("RUNNER_TEMP", s.dir.path())
        .env("GITHUB_REPOSITORY", "acme/campaigns")
        .env("PR_NUMBER", "7")
        .env("NIMRIZ_API_BASE", base)
        .stdin(Stdio::null());
    if key {
        cmd.env("NIMRIZ_API_KEY", KEY);
    }
    for (k, v) in inputs {
        cmd.env(format!("INPUT_{}", k.to_ascii_uppercase()), v);
    }
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run the action script");
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    let outputs = std::fs::read_to_string(&outputs).unwrap_or_default();
    (Run(out), summary, outputs)
}

fn gh_calls(s: &Scratch) -> String {
    std::fs::read_to_string(s.path("gh.log")).unwrap_or_default()
}

#[test]
fn a_pull_request_gets_annotations_a_plan_summary_and_one_sticky_comment() {
    let s = Scratch::new();
    s.write("spec.toml", spec("https://acme.example/spring"));
    let (_sandbox, base) = sandbox(s.dir.path());
    // The record from main: built once.
    let mut build = test_support::command();
    build
        .current_dir(s.dir.path())
        .env("NIMRIZ_API_BASE", &base)
        .env("NIMRIZ_API_KEY", KEY)
        .args(["build", "spec.toml"]);
    assert!(build.output().unwrap().status.success());

    // No changes: exit 0, changes=false, no comment created.
    let (run, summary, outputs) = action(
        &s,
        &base,
        &[("spec", "spec.toml"), ("comment", "true")],
        false,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(outputs.contains("changes=false"), "{outputs}");
    assert!(outputs.contains("comment=skipped"), "{outputs}");
    assert!(summary.contains("**No changes.**"), "{summary}");
    assert!(!gh_calls(&s).contains("--method POST"));

    // The PR changes a destination: summary + a new comment with the marker.
    s.write("spec.toml", spec("https://acme.example/summer"));
    let (run, summary, outputs) = action(
        &s,
        &base,
        &[("spec", "spec.toml"), ("comment", "true")],
        false,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        outputs.contains("changes=true") && outputs.contains("plan-exit-code=2"),
        "{outputs}"
    );
    assert!(outputs.contains("comment=created"), "{outputs}");
    assert!(
        summary.starts_with("<!-- nimriz-matrix plan: spec.toml -->"),
        "{summary}"
    );
    assert!(summary.contains("<!-- nimriz-matrix-plan -->"));
    assert!(summary.contains("1 to update"), "{summary}");
    assert!(
        summary.contains("/spring?") && summary.contains("/summer?"),
        "old → new: {summary}"
    );
    let calls = gh_calls(&s);
    assert!(
        calls.contains("--method POST repos/acme/campaigns/issues/7/comments"),
        "{calls}"
    );

    // The next push to the PR patches the same comment instead of adding one.
    s.write("gh-existing", "4242\n");
    std::fs::remove_file(s.path("gh.log")).unwrap();
    let (run, _, outputs) = action(
        &s,
        &base,
        &[("spec", "spec.toml"), ("comment", "true")],
        false,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(outputs.contains("comment=updated"), "{outputs}");
    let calls = gh_calls(&s);
    assert!(
        calls.contains("--method PATCH repos/acme/campaigns/issues/comments/4242"),
        "{calls}"
    );
    assert!(!calls.contains("--method POST"), "{calls}");

    // On main: apply changes the live link in place (the key from a secret).
    let (run, _, _) = action(&s, &base, &[("spec", "spec.toml"), ("apply", "true")], true);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let m = nimriz_matrix_core::manifest::load(&s.path("spec.manifest.json")).unwrap();
    let v1 = m.links.iter().find(|l| l.slug == "spring-v1").unwrap();
    assert!(v1.destination.contains("/summer?"), "{}", v1.destination);
    assert_eq!(v1.history.len(), 1);
    // And apply without the key says so, exit 2.
    let (run, _, _) = action(
        &s,
        &base,
        &[("spec", "spec.toml"), ("apply", "true")],
        false,
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stdout()
            .contains("::error title=nimriz-matrix::apply needs NIMRIZ_API_KEY")
    );
}

#[test]
fn a_broken_spec_is_annotated_on_its_line_and_nothing_is_planned() {
    let s = Scratch::new();
    s.write(
        "spec.toml",
        spec("https://acme.example/spring").replace("medium = \"email\"", "medium = \"Email\""),
    );
    let (run, summary, outputs) = action(
        &s,
        "http://127.0.0.1:9",
        &[("spec", "spec.toml"), ("comment", "true")],
        false,
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let log = run.stdout();
    assert!(
        log.contains("::error file=spec.toml,line=11,col=10"),
        "{log}"
    );
    assert!(outputs.contains("changes=unknown"), "{outputs}");
    assert!(summary.contains("has problems"), "{summary}");
    assert!(
        gh_calls(&s).is_empty(),
        "no comment for a spec that does not validate"
    );
}
