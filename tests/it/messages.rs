//! `--message-format`: golden files for every format, the SARIF output validated against the
//! vendored SARIF 2.1.0 schema, the JSON against ours, and GitHub commands that no spec text
//! can break out of. `UPDATE_GOLDEN=1 cargo test messages` rewrites the golden files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use test_support::{command, repo};

/// A spec with one problem of several kinds, and a value that tries to inject a workflow
/// command.
const BAD_SPEC: &str = r#"[campaign]
name = "spring"

[link]
domain = "go.acme.example"
destination = "https://www.acme.example/spring"
slug = "{brand}-{channel}"

[utm]
source = "{channel.source}"
medium = "email"
campaign = "spring"

[rules]
allowed.medium = ["cpc", "paid-social"]

[[dimension]]
name = "brand"
values = [{ key = "acme" }]

[[dimension]]
name = "channel"
values = [
  { key = "email", source = "Newsletter" },
  { key = "social", source = "X%0A::error::Injected" },
]
"#;

fn golden(name: &str) -> PathBuf {
    repo().join("tests/golden/messages").join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

/// `validate bad.toml --message-format FORMAT` in a scratch folder: (exit code, stdout).
fn validate(dir: &Path, spec: &str, format: &str) -> (i32, String, String) {
    let out = command()
        .current_dir(dir)
        .args(["validate", spec, "--message-format", format])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), BAD_SPEC).unwrap();
    dir
}

#[test]
fn every_format_matches_its_golden_file_and_exits_2() {
    let dir = scratch();
    for (format, file) in [
        ("human", "bad.human.txt"),
        ("json", "bad.json"),
        ("github", "bad.github.txt"),
        ("sarif", "bad.sarif"),
    ] {
        let (code, stdout, stderr) = validate(dir.path(), "bad.toml", format);
        assert_eq!(code, 2, "{format}: {stderr}");
        // Human text is on stderr; the machine formats are the whole of stdout.
        let shown = if format == "human" {
            assert_eq!(stdout, "");
            stderr
        } else {
            stdout
        };
        check_golden(file, &shown);
    }
}

#[test]
fn sarif_validates_against_the_vendored_schema_and_names_rules() {
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/sarif-2.1.0.json")).unwrap(),
    )
    .unwrap();
    // The vendored file is the published 2.1.0 schema, byte for byte. Its two `language`
    // patterns have a stray `]` that an ECMA-262 regex check rejects, so the schema would
    // not compile; that property is not used here, and is corrected in memory only.
    for def in ["run", "toolComponent"] {
        let language = &mut schema["definitions"][def]["properties"]["language"]["pattern"];
        assert_eq!(language, "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$");
        *language = "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$".into();
    }
    let validator = jsonschema::options()
        .build(&schema)
        .expect("SARIF schema compiles");
    let dir = scratch();
    let (_, stdout, _) = validate(dir.path(), "bad.toml", "sarif");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let results = doc["runs"][0]["results"].as_array().unwrap();
    let rules: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"allowed-values") && rules.contains(&"lowercase"),
        "{rules:?}"
    );
    let driver_rules = doc["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            driver_rules[i]["id"], r["ruleId"],
            "ruleIndex points at its rule"
        );
    }
    // A valid spec is an empty, still valid, log.
    let ok = tempfile::tempdir().unwrap();
    for f in ["matrix.example.toml", "brands.csv"] {
        std::fs::copy(repo().join(f), ok.path().join(f)).unwrap();
    }
    let (code, stdout, _) = validate(ok.path(), "matrix.example.toml", "sarif");
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(validator.is_valid(&doc));
    assert_eq!(doc["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn json_follows_its_documented_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/diagnostics.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .build(&schema)
        .expect("schema compiles");
    let dir = scratch();
    let (_, stdout, _) = validate(dir.path(), "bad.toml", "json");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(doc["summary"]["errors"].as_u64().unwrap() >= 2);
    // A problem outside the spec (a missing file) is still one document, rule `run`.
    let (code, stdout, _) = validate(dir.path(), "missing.toml", "json");
    assert_eq!(code, 2);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(validator.is_valid(&doc), "{doc}");
}

#[test]
fn github_annotations_point_at_lines_and_cannot_be_injected() {
    let dir = scratch();
    let (_, stdout, _) = validate(dir.path(), "bad.toml", "github");
    for line in stdout.lines() {
        assert!(
            line.starts_with("::error ") || line.starts_with("::warning "),
            "every line is one command: {line:?}"
        );
        // The message part (after the second `::`) may not open another command.
        let message = line.splitn(3, "::").nth(2).unwrap_or("");
        assert!(!message.contains("\n"));
    }
    assert!(
        stdout.contains("::error file=bad.toml,line="),
        "the placeholder problem is annotated on its line: {stdout}"
    );
    // The spec's literal `%0A` is escaped to `%250A`, so GitHub shows it as text.
    assert!(stdout.contains("X%250A::error::Injected"), "{stdout}");
}
