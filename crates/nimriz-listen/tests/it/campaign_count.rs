//! `listen` says how many campaign links it knows: one per link in the manifests, even though
//! each link is indexed under its domain id, its host and its url id.

use nimriz_listen::campaign::Campaign;
use nimriz_matrix_core::manifest::load;
use serde_json::json;

#[test]
fn each_link_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = test_support::manifest::build_realistic_manifest(dir.path());
    let manifest = load(&path).expect("load");
    assert_eq!(manifest.links.len(), 5);
    let mut c = Campaign::default();
    c.add(&manifest);
    assert_eq!(c.len(), 5, "five links, not one per index entry");
    // Loading the same manifest again (a reload) does not double the count either.
    c.add(&manifest);
    assert_eq!(c.len(), 5);
    // And every link is still found by host + slug and by domain id + slug.
    let by_host = c.find(
        &json!({"short_code": "email", "domain": "go.acme.example"}),
        &json!({}),
    );
    assert_eq!(by_host.map(|l| l.slug.clone()), Some("email".to_string()));
    let by_id = c.find(
        &json!({"short_code": "social", "domain_id": "7d0c6a4e-3f5b-4c1e-9a57-2b1d1e0f9a01"}),
        &json!({}),
    );
    assert_eq!(by_id.map(|l| l.slug.clone()), Some("social".to_string()));
}
