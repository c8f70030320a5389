//! Hostile input (issue 12): outputs never replace the spec, its inputs or a manifest's
//! files; `from` files stay inside the spec's folder; nothing the user wrote is silently
//! rewritten. Each case asserts the exit code, the message, and that the protected file
//! is byte-identical afterwards.

use common::Scratch;
use std::path::Path;
use test_support::bin as common;

const SPEC: &str = r#"
[campaign]
name = "spring"

[link]
domain = "go.acme.example"
destination = "https://{brand.site}/landing"

[utm]
source = "{channel}"
medium = "email"
campaign = "{campaign.name}"

[[dimension]]
name = "brand"
from = "brands.csv"

[[dimension]]
name = "channel"
values = ["newsletter", "social"]
"#;

const BRANDS: &str = "key,site\nacme,acme.example\nglobex,globex.example\n";

/// A scratch folder with `spec.toml`, `brands.csv` and a (pretend) finished manifest.
fn project() -> Scratch {
    let s = Scratch::new();
    s.write("spec.toml", SPEC);
    s.write("brands.csv", BRANDS);
    s.write(
        "spec.manifest.json",
        "{\"pretend\": \"a finished build's record\"}\n",
    );
    s
}

/// Every file in the folder with its bytes (to show nothing changed, nothing was left).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn dry_run_output_refuses_the_spec_its_inputs_and_the_manifest_files() {
    let s = project();
    std::fs::create_dir(s.path("sub")).unwrap();
    let before = snapshot(s.dir.path());
    for (target, what) in [
        ("spec.toml", "is the spec"),
        ("./sub/../spec.toml", "is the spec"),
        ("brands.csv", "is one of the spec's input files"),
        ("spec.manifest.json", "is the manifest"),
        ("spec.manifest.json.journal", "is the manifest's journal"),
        ("spec.manifest.json.lock", "is the manifest's lock file"),
    ] {
        let r = s.run(&["build", "spec.toml", "--dry-run", "-o", target]);
        r.fails_with(
            2,
            &[&format!("--output {target} {what}"), "choose another file"],
        );
        assert_eq!(
            snapshot(s.dir.path()),
            before,
            "-o {target} changed the folder"
        );
    }
    // A custom --manifest is protected the same way.
    let r = s.run(&[
        "build",
        "spec.toml",
        "--dry-run",
        "--manifest",
        "brands.csv",
        "--format",
        "csv",
        "-o",
        "brands.csv",
    ]);
    r.fails_with(2, &["is one of the spec's input files"]);
    assert_eq!(snapshot(s.dir.path()), before);
    // An ordinary output still works, and leaves no staging file behind.
    s.run(&[
        "build",
        "spec.toml",
        "--dry-run",
        "--format",
        "csv",
        "-o",
        "plan.csv",
    ])
    .succeeds();
    let after = snapshot(s.dir.path());
    let names: Vec<_> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["brands.csv", "plan.csv", "spec.manifest.json", "spec.toml"]
    );
}

#[cfg(unix)]
#[test]
fn dry_run_output_refuses_a_link_to_the_spec() {
    let s = project();
    std::os::unix::fs::symlink(s.path("spec.toml"), s.path("plan.txt")).unwrap();
    std::fs::hard_link(s.path("brands.csv"), s.path("plan.csv")).unwrap();
    let before = snapshot(s.dir.path());
    s.run(&["build", "spec.toml", "--dry-run", "-o", "plan.txt"])
        .fails_with(2, &["is the spec"]);
    s.run(&["build", "spec.toml", "--dry-run", "-o", "plan.csv"])
        .fails_with(2, &["is one of the spec's input files"]);
    assert_eq!(snapshot(s.dir.path()), before);
}

#[test]
fn build_manifest_refuses_the_spec_and_its_inputs() {
    let s = project();
    let before = snapshot(s.dir.path());
    for (target, what) in [
        ("spec.toml", "is the spec"),
        ("brands.csv", "is one of the spec's input files"),
    ] {
        // A key and an (unreachable) API base, so the refusal is what stops the run.
        let out = common::command()
            .current_dir(s.dir.path())
            .env("NIMRIZ_API_KEY", "nmz_test_key")
            .env("NIMRIZ_API_BASE", "http://127.0.0.1:9")
            .args(["build", "spec.toml", "--manifest", target])
            .output()
            .unwrap();
        let r = common::Run(out);
        r.fails_with(2, &[&format!("--manifest {target} {what}")]);
        assert_eq!(snapshot(s.dir.path()), before, "--manifest {target}");
    }
}

#[test]
fn export_output_refuses_the_spec_and_inputs_the_manifest_records() {
    use nimriz_matrix_core::manifest::{LinkStatus, ManifestStore, RunCounts};
    use nimriz_matrix_core::model::InputFile;
    let s = project();
    let manifest = s.path("spec.manifest.json");
    std::fs::remove_file(&manifest).unwrap();
    let mut source = test_support::manifest::source();
    source.spec_path = "spec.toml".into();
    source.inputs = vec![InputFile {
        path: "brands.csv".into(),
        sha256: "b".repeat(64),
    }];
    {
        let mut store = ManifestStore::open(&manifest, &source, Some("api.nimriz.com")).unwrap();
        store
            .record(&[test_support::manifest::record("email", LinkStatus::Created)])
            .unwrap();
        let counts = RunCounts {
            planned: 1,
            created: 1,
            ..RunCounts::default()
        };
        store.finish(counts, "ok").unwrap();
    }
    let before = snapshot(s.dir.path());
    for (target, what) in [
        ("spec.toml", "is the spec"),
        ("brands.csv", "is one of the spec's input files"),
    ] {
        for format in ["csv", "json", "xlsx"] {
            s.run(&[
                "export",
                "spec.manifest.json",
                "--format",
                format,
                "-o",
                target,
            ])
            .fails_with(2, &[&format!("--output {target} {what}")]);
            assert_eq!(snapshot(s.dir.path()), before, "export -o {target}");
        }
    }
    s.run(&["export", "spec.manifest.json", "-o", "links.csv"])
        .succeeds();
}
