//! The committed JSON Schema matches what the real store writes, and rejects what it must.

use test_support::manifest as manifest_support;

use serde_json::{Value, json};

const SCHEMA: &str = include_str!("../../../../schema/manifest.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    assert!(
        jsonschema::meta::is_valid(&schema),
        "not a valid JSON Schema"
    );
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// A finished manifest with a link of every status, written by the real ManifestStore.
fn realistic() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_support::build_realistic_manifest(dir.path());
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_real_manifest_validates() {
    let manifest = realistic();
    let statuses: Vec<&str> = manifest["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["created", "exists", "drift", "failed", "pending"]
    );
    assert_eq!(manifest["runs"][1]["outcome"], "partial");
    let v = validator();
    assert_eq!(errors(&v, &manifest), Vec::<String>::new());
}

#[test]
fn a_manifest_still_being_written_validates() {
    // The journal is replayed by `load`, which is what export and other tools read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let mut store =
        nimriz_matrix_core::manifest::ManifestStore::open(&path, &manifest_support::source(), None)
            .unwrap();
    store
        .record(&[manifest_support::record(
            "a",
            nimriz_matrix_core::manifest::LinkStatus::Pending,
        )])
        .unwrap();
    let loaded = serde_json::to_value(nimriz_matrix_core::manifest::load(&path).unwrap()).unwrap();
    assert_eq!(errors(&validator(), &loaded), Vec::<String>::new());
}

#[test]
fn mutated_manifests_fail_validation() {
    let v = validator();
    let good = realistic();
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 10] = [
        ("unknown status", |m| {
            m["links"][0]["status"] = json!("done")
        }),
        ("missing slug", |m| {
            m["links"][0].as_object_mut().unwrap().remove("slug");
        }),
        ("missing runs", |m| {
            m.as_object_mut().unwrap().remove("runs");
        }),
        ("created without url_id", |m| {
            m["links"][0]["url_id"] = Value::Null
        }),
        ("failed without error", |m| {
            m["links"][3]["error"] = Value::Null
        }),
        ("drift without existing destination", |m| {
            m["links"][2]["existing_destination"] = Value::Null
        }),
        ("bad timestamp", |m| {
            m["links"][0]["updated_at"] = json!("yesterday")
        }),
        ("credentials in api_host", |m| {
            m["api_host"] = json!("https://user:key@api.nimriz.com")
        }),
        ("wrong schema version", |m| m["schema_version"] = json!(2)),
        ("negative count", |m| {
            m["runs"][1]["counts"]["created"] = json!(-1)
        }),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert_ne!(bad, good, "{what}: mutation did nothing");
        assert!(!v.is_valid(&bad), "{what}: the schema accepted it");
    }
}

/// The schema cannot drift from the code: every field the typed records write is declared
/// (and `additionalProperties: false` would reject an undeclared one), every declared field
/// is written, and the status words are exactly `LinkStatus`'s.
#[test]
fn schema_declares_exactly_what_the_records_write() {
    use nimriz_matrix_core::manifest::LinkStatus;
    use std::collections::BTreeSet;
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let manifest = realistic();
    assert_eq!(
        keys(&schema["properties"]),
        keys(&manifest),
        "top-level fields"
    );
    assert_eq!(
        keys(&schema["$defs"]["workspace"]["properties"]),
        keys(&manifest["workspace"]),
        "workspace fields"
    );
    let link_props = keys(&schema["$defs"]["link"]["properties"]);
    for link in manifest["links"].as_array().unwrap() {
        assert_eq!(link_props, keys(link), "link fields of {link}");
    }
    let required: BTreeSet<String> = schema["$defs"]["link"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(required.is_subset(&link_props));
    let run_props = keys(&schema["$defs"]["run"]["properties"]);
    for run in manifest["runs"].as_array().unwrap() {
        assert_eq!(run_props, keys(run), "run fields");
    }
    let words: BTreeSet<String> = schema["$defs"]["link"]["properties"]["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let ours: BTreeSet<String> = [
        LinkStatus::Pending,
        LinkStatus::Created,
        LinkStatus::Exists,
        LinkStatus::Drift,
        LinkStatus::Failed,
        LinkStatus::Deleted,
    ]
    .iter()
    .map(|s| {
        serde_json::to_value(s)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    assert_eq!(words, ours);
}

#[test]
fn a_manifest_written_before_utms_were_recorded_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = realistic();
    for link in old["links"].as_array_mut().unwrap() {
        link.as_object_mut().unwrap().remove("utm");
    }
    assert_eq!(errors(&validator(), &old), Vec::<String>::new());
    let path = dir.path().join("old.manifest.json");
    std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    let loaded = nimriz_matrix_core::manifest::load(&path).unwrap();
    assert!(loaded.links.iter().all(|l| l.utm.is_empty()));
}
