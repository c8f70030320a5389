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

/// A spec in `project/` whose brand dimension is `from = FROM`.
fn spec_from(s: &Scratch, from: &str) {
    std::fs::create_dir_all(s.path("project")).unwrap();
    std::fs::write(
        s.path("project/spec.toml"),
        SPEC.replace("from = \"brands.csv\"", &format!("from = {from:?}")),
    )
    .unwrap();
}

const SECRET: &str = "key,site\nSECRET-TOKEN-4242,acme.example\n";

fn validate_in(s: &Scratch, extra: &[&str], env: Option<&str>) -> common::Run {
    let mut cmd = common::command();
    cmd.current_dir(s.dir.path())
        .args(["validate", "project/spec.toml"])
        .args(extra)
        .env_remove("NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS");
    if let Some(v) = env {
        cmd.env("NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS", v);
    }
    common::Run(cmd.output().unwrap())
}

#[test]
fn from_outside_the_spec_folder_is_refused_unread_unless_the_runner_allows_it() {
    let s = Scratch::new();
    s.write("secret.csv", SECRET);
    for from in ["../secret.csv", &s.path("secret.csv").display().to_string()] {
        spec_from(&s, from);
        let err = validate_in(&s, &[], None).fails_with(
            2,
            &[
                "is outside the spec's folder",
                "so it was not read",
                "--allow-outside-inputs",
            ],
        );
        assert!(!err.contains("SECRET-TOKEN"), "{err}");
        // An explicit "no" in the environment is no.
        let err = validate_in(&s, &[], Some("0")).fails_with(2, &["is outside"]);
        assert!(!err.contains("SECRET-TOKEN"), "{err}");
        // The person running the command opts in: flag or environment.
        validate_in(&s, &["--allow-outside-inputs"], None).succeeds();
        validate_in(&s, &[], Some("1")).succeeds();
    }
    // A system file: refused, and nothing of it is quoted.
    spec_from(&s, "/etc/passwd");
    let err = validate_in(&s, &[], None).fails_with(2, &["is outside the spec's folder"]);
    assert!(!err.contains("root:"), "{err}");
    // A missing file outside is "outside" too (whether it exists is not probed).
    spec_from(&s, "../../nope/missing.csv");
    validate_in(&s, &[], None).fails_with(2, &["is outside the spec's folder"]);
    // Inside, below the spec's folder, is fine.
    std::fs::create_dir_all(s.path("project/data")).unwrap();
    s.write("project/data/brands.csv", BRANDS);
    spec_from(&s, "data/brands.csv");
    validate_in(&s, &[], None).succeeds();
}

#[cfg(unix)]
#[test]
fn a_symlink_inside_pointing_outside_is_outside() {
    let s = Scratch::new();
    s.write("secret.csv", SECRET);
    spec_from(&s, "brands.csv");
    std::os::unix::fs::symlink(s.path("secret.csv"), s.path("project/brands.csv")).unwrap();
    let err = validate_in(&s, &[], None).fails_with(2, &["is outside the spec's folder"]);
    assert!(!err.contains("SECRET-TOKEN"), "{err}");
    validate_in(&s, &["--allow-outside-inputs"], None).succeeds();
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {path:?}");
}

#[cfg(unix)]
#[test]
fn fifos_devices_and_folders_are_refused_up_front() {
    let s = Scratch::new();
    spec_from(&s, "brands.csv");
    mkfifo(&s.path("project/brands.csv"));
    let started = std::time::Instant::now();
    validate_in(&s, &[], None).fails_with(
        2,
        &["CSV file `brands.csv` is not a regular file (it is a FIFO (named pipe))"],
    );
    // A FIFO as the spec itself (a CSV row spec, and a TOML spec).
    mkfifo(&s.path("rows.csv"));
    s.run(&["validate", "rows.csv"])
        .fails_with(2, &["spec file `rows.csv` is not a regular file"]);
    mkfifo(&s.path("fifo.toml"));
    s.run(&["build", "fifo.toml", "--dry-run"])
        .fails_with(2, &["spec file `fifo.toml` is not a regular file"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // A device, even when outside inputs are allowed.
    spec_from(&s, "/dev/zero");
    validate_in(&s, &["--allow-outside-inputs"], None)
        .fails_with(2, &["is not a regular file (it is a device)"]);
    // A folder.
    std::fs::create_dir(s.path("project/data")).unwrap();
    spec_from(&s, "data");
    validate_in(&s, &[], None).fails_with(2, &["is not a regular file (it is a folder)"]);
}

#[test]
fn max_input_bytes_caps_the_spec_and_its_inputs() {
    let s = Scratch::new();
    spec_from(&s, "brands.csv");
    s.write("project/brands.csv", BRANDS);
    validate_in(&s, &[], None).succeeds();
    let spec_len = SPEC.len();
    // The spec is over the limit.
    validate_in(&s, &["--max-input-bytes", "100"], None).fails_with(
        2,
        &[
            "spec file `project/spec.toml` is larger than the input limit",
            "limit 100",
            "--max-input-bytes",
        ],
    );
    // The spec fits, the CSV does not.
    s.write(
        "project/brands.csv",
        format!("{BRANDS}{}", "x,y\n".repeat(200)),
    );
    let limit = (spec_len + 10).to_string();
    validate_in(&s, &["--max-input-bytes", &limit], None)
        .fails_with(2, &["CSV file `brands.csv` is larger than the input limit"]);
    s.run(&[
        "build",
        "project/spec.toml",
        "--dry-run",
        "--max-input-bytes",
        "0",
    ])
    .fails_with(2, &["--max-input-bytes"]);
}

/// `validate` a spec in a fresh folder (with `brands.csv` = `brands`); returns stderr.
fn invalid(spec: &str, brands: &str, needles: &[&str]) -> String {
    let s = Scratch::new();
    s.write("spec.toml", spec);
    s.write("brands.csv", brands);
    let err = s.run(&["validate", "spec.toml"]).fails_with(2, needles);
    // A dry run writes nothing either.
    s.run(&["build", "spec.toml", "--dry-run", "-o", "plan.txt"])
        .fails_with(2, needles);
    assert!(!s.path("plan.txt").exists());
    err
}

#[test]
fn a_newline_or_bidi_character_in_a_destination_is_refused_not_dropped() {
    let spec = SPEC.replace(
        "destination = \"https://{brand.site}/landing\"",
        "destination = \"https://{brand.site}/p\\nX-Injected: 1\"",
    );
    let err = invalid(
        &spec,
        BRANDS,
        &[
            "destination `https://acme.example/p\\nX-Injected: 1` contains a control character (U+000A)",
            "brand=acme",
        ],
    );
    assert!(!err.contains("pX-Injected"), "{err}");
    // The same through a quoted CSV cell.
    invalid(
        SPEC,
        "key,site\nacme,\"acme.example/p\nX-Injected: 1\"\n",
        &["contains a control character (U+000A)", "brand=acme"],
    );
    let spec = SPEC.replace("/landing\"", "/\\u202Eexe.fdp\"");
    invalid(
        &spec,
        BRANDS,
        &[
            "contains a bidi control character (U+202E)",
            "\\u{202E}exe.fdp",
        ],
    );
}

#[test]
fn empty_hosts_userinfo_and_disguised_loops_are_refused() {
    for (destination, needle) in [
        ("https:///landing", "has no host"),
        (
            "https://user:pass@{brand.site}/",
            "carries a user name or password",
        ),
        ("https://LINKS.Example.Test./other", "(a redirect loop)"),
        ("https://NIM.LU./x", "(a redirect loop)"),
    ] {
        let spec = SPEC
            .replace("https://{brand.site}/landing", destination)
            .replace("go.acme.example", "links.example.test");
        let err = invalid(&spec, BRANDS, &[needle]);
        assert!(!err.contains("https://landing/"), "{err}");
    }
}

#[test]
fn control_and_bidi_characters_in_utm_values_are_named_as_such() {
    for (value, needle) in [
        (
            "Spring\\nSale",
            "utm_campaign `Spring\\nSale` contains a control character (U+000A)",
        ),
        (
            "spring\\u0000",
            "utm_campaign `spring\\0` contains a control character (U+0000)",
        ),
        ("spring\\n", "contains a control character (U+000A)"),
        (
            "spring\\u2067",
            "contains a bidi control character (U+2067)",
        ),
    ] {
        let spec = SPEC.replace(
            "campaign = \"{campaign.name}\"",
            &format!("campaign = \"{value}\""),
        );
        let err = invalid(&spec, BRANDS, &[needle]);
        assert!(!err.contains("not lowercase"), "{err}");
        assert!(!err.contains("contains a space"), "{err}");
    }
}

#[test]
fn the_same_utm_parameter_twice_is_an_error() {
    let spec = SPEC.replace(
        "campaign = \"{campaign.name}\"",
        "campaign = \"{campaign.name}\"\nutm_campaign = \"other\"",
    );
    invalid(
        &spec,
        BRANDS,
        &[
            "UTM parameter `utm_campaign` is given twice: as `campaign` and as `utm_campaign`",
            "spec.toml:13",
        ],
    );
}

#[test]
fn sandbox_state_refuses_a_spec_and_its_manifest() {
    let s = project();
    let before = snapshot(s.dir.path());
    for (target, what) in [
        ("spec.toml", "is the spec"),
        ("spec.manifest.json", "is the manifest"),
    ] {
        let args = [
            "sandbox",
            "--addr",
            "127.0.0.1:0",
            "--spec",
            "spec.toml",
            "--state",
            target,
        ];
        s.run(&args)
            .fails_with(2, &[&format!("--state {target} {what}")]);
        assert_eq!(snapshot(s.dir.path()), before, "--state {target}");
    }
}

#[test]
fn a_refused_dry_run_leaves_no_staging_file() {
    let s = project();
    s.write("spec.toml", SPEC.replace("/landing", "/p\\nq"));
    let before = snapshot(s.dir.path());
    s.run(&["build", "spec.toml", "--dry-run", "-o", "plan.csv"])
        .fails_with(2, &["contains a control character"]);
    assert_eq!(snapshot(s.dir.path()), before);
    // Hidden files too (tempfile's `.tmpXXXX`).
    let names: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}
