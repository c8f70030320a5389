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
