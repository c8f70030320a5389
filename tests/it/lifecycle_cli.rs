//! Links as code, as a user meets it, against the sandbox process: plan → build --update →
//! plan, a dashboard edit found by refresh, renames with `[[moved]]`, saved plans, import
//! and retire. Each scenario checks the exit code, the manifest and the sandbox's own store
//! (the link read back over the API, and the insert counts: no duplicate).

use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use test_support::{ChildGuard, Run, Scratch};

const KEY: &str = "nmz_sandbox_key";
const HOST: &str = "go.acme.example";

/// Three links on one host; `{dest}` is v1's destination and `{slug}` the slug pattern.
fn spec(dest_v1: &str, slug: &str, extra: &str) -> String {
    format!(
        r#"[campaign]
name = "spring"
redirect = 302

[link]
domain = "{HOST}"
destination = "https://acme.example/{{variant}}"
slug = "{slug}"

[utm]
source = "newsletter"
medium = "email"
campaign = "{{campaign.name}}"

[[dimension]]
name = "variant"
values = ["v1", "v2", "v3"]

[[override]]
match = {{ variant = "v1" }}
destination = "{dest_v1}"
{extra}
"#
    )
}

fn sandbox(dir: &Path) -> (ChildGuard, String) {
    test_support::sandbox(dir, &["--addr", "127.0.0.1:0", "--domain", HOST])
}

/// `nimriz-matrix ARGS` in the scratch folder, talking to `base`; stdin is not a terminal.
fn run(s: &Scratch, base: &str, args: &[&str]) -> Run {
    let mut cmd = test_support::command();
    cmd.current_dir(s.dir.path())
        .env("NIMRIZ_API_BASE", base)
        .env("NIMRIZ_API_KEY", KEY)
        .stdin(Stdio::null())
        .args(args);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run the binary");
    Run(out)
}

/// One API call to the sandbox (bounded), answering its JSON body.
fn api(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("{base}{path}");
        let mut req = match method {
            "GET" => client.get(url),
            "PUT" => client.put(url),
            _ => client.post(url),
        }
        .bearer_auth(KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("sandbox answers");
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    })
}

/// The live destination of a link, read over the API (whatever key the sandbox uses).
fn live_destination(base: &str, url_id: &str) -> String {
    let (status, v) = api(base, "GET", &format!("/api/v1/links/{url_id}"), None);
    assert_eq!(status, 200, "GET link {url_id}: {v}");
    let l = if v.get("link").is_some() {
        &v["link"]
    } else {
        &v
    };
    ["long_url", "destination_url", "destination"]
        .iter()
        .find_map(|k| l.get(*k).and_then(Value::as_str))
        .unwrap_or_else(|| panic!("no destination in {l}"))
        .to_string()
}

/// Creates the sandbox ever committed (deletes do not lower it); also checks that no
/// `(domain, slug)` was inserted twice.
fn inserts(base: &str) -> u64 {
    let (_, v) = api(base, "GET", "/__sandbox/stats", None);
    assert_eq!(v["max_inserts_per_slug"], 1, "a duplicate: {v}");
    v["inserts"]
        .as_object()
        .expect("inserts in stats")
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

fn manifest(s: &Scratch) -> Value {
    serde_json::from_slice(&std::fs::read(s.path("spec.manifest.json")).expect("manifest"))
        .expect("manifest json")
}

fn record<'a>(m: &'a Value, slug: &str) -> &'a Value {
    m["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["slug"] == slug)
        .unwrap_or_else(|| panic!("no record for {slug}"))
}

fn url_id(s: &Scratch, slug: &str) -> String {
    record(&manifest(s), slug)["url_id"]
        .as_str()
        .expect("url_id")
        .to_string()
}

fn built() -> (Scratch, ChildGuard, String) {
    let s = Scratch::new();
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring-{variant}", ""),
    );
    let (guard, base) = sandbox(s.dir.path());
    run(&s, &base, &["build", "spec.toml"]).succeeds();
    assert_eq!(inserts(&base), 3);
    (s, guard, base)
}

#[test]
fn a_destination_change_is_planned_applied_in_place_and_an_outside_edit_is_found() {
    let (s, _sandbox, base) = built();
    let id = url_id(&s, "spring-v1");
    // The plan of a fresh build: no changes.
    run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]).succeeds();

    s.write(
        "spec.toml",
        spec("https://acme.example/summer", "spring-{variant}", ""),
    );
    let plan = run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 2, "{}", plan.stderr());
    let out = plan.stdout();
    assert!(out.contains("1 to update"), "{out}");
    assert!(
        out.contains("https://acme.example/spring?")
            && out.contains("→ https://acme.example/summer?"),
        "old → new: {out}"
    );

    // Without --update: listed, exit 1, nothing changed on Nimriz.
    let b = run(&s, &base, &["build", "spec.toml"]);
    b.fails_with(
        1,
        &["not changed without --update", "build spec.toml --update"],
    );
    assert!(live_destination(&base, &id).starts_with("https://acme.example/spring?"));

    run(&s, &base, &["build", "spec.toml", "--update"]).succeeds();
    assert!(live_destination(&base, &id).starts_with("https://acme.example/summer?"));
    assert_eq!(inserts(&base), 3, "updated in place, not created again");
    let m = manifest(&s);
    let rec = record(&m, "spring-v1");
    assert_eq!(rec["url_id"], id.as_str(), "the url_id is kept");
    assert_eq!(rec["origin"], "created");
    let h = rec["history"].as_array().expect("history");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["action"], "update-destination");
    assert!(h[0]["before"].as_str().unwrap().contains("/spring?"));
    assert!(h[0]["after"].as_str().unwrap().contains("/summer?"));
    assert_eq!(
        m["runs"].as_array().unwrap().last().unwrap()["counts"]["updated"],
        1
    );
    run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]).succeeds();

    // A dashboard edit: refresh finds and records it, plan shows drift.
    let (st, _) = api(
        &base,
        "PUT",
        "/api/update-destination",
        Some(json!({"url_id": id, "long_url": "https://acme.example/dashboard"})),
    );
    assert_eq!(st, 200);
    let r = run(&s, &base, &["refresh", "spec.toml", "--detailed-exitcode"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("https://acme.example/dashboard"),
        "{}",
        r.stderr()
    );
    let m = manifest(&s);
    let rec = record(&m, "spring-v1");
    assert_eq!(rec["status"], "drift");
    assert_eq!(
        rec["outside"]["destination"],
        "https://acme.example/dashboard"
    );
    let plan = run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 2);
    assert!(plan.stdout().contains("1 drifted"), "{}", plan.stdout());

    // Never overwritten silently: --update alone leaves it; --force-drift sets it back.
    run(&s, &base, &["build", "spec.toml", "--update"]).fails_with(1, &["drift", "--force-drift"]);
    assert_eq!(
        live_destination(&base, &id),
        "https://acme.example/dashboard"
    );
    run(
        &s,
        &base,
        &["build", "spec.toml", "--update", "--force-drift"],
    )
    .succeeds();
    assert!(live_destination(&base, &id).starts_with("https://acme.example/summer?"));
    run(&s, &base, &["refresh", "spec.toml", "--detailed-exitcode"]).succeeds();
    run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]).succeeds();
    assert_eq!(inserts(&base), 3, "no duplicate through it all");
}

#[test]
fn a_slug_change_with_moved_renames_in_place_and_without_it_plans_create_and_orphan() {
    let (s, _sandbox, base) = built();
    let ids: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| url_id(&s, &format!("spring-{v}")))
        .collect();
    // Without [[moved]]: three creates and three orphans, with the hint.
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring27-{variant}", ""),
    );
    let plan = run(&s, &base, &["plan", "spec.toml", "--format", "json"]);
    let doc: Value = serde_json::from_str(&plan.succeeds()).expect("plan json");
    assert_eq!(doc["format"], "nimriz-matrix-plan");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["summary"]["create"], 3);
    assert_eq!(doc["summary"]["orphan"], 3);
    let orphan = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "orphan")
        .unwrap();
    assert!(
        orphan["note"].as_str().unwrap().contains("[[moved]]"),
        "{orphan}"
    );

    // With [[moved]]: renames, applied with update-slug; the url_ids are kept.
    let moved = ["v1", "v2", "v3"]
        .iter()
        .map(|v| format!("[[moved]]\nfrom = \"spring-{v}\"\nto = \"spring27-{v}\"\n"))
        .collect::<String>();
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring27-{variant}", &moved),
    );
    let plan = run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 2, "{}", plan.stderr());
    assert!(plan.stdout().contains("3 to rename"), "{}", plan.stdout());
    assert!(plan.stdout().contains("0 to create"), "{}", plan.stdout());
    run(&s, &base, &["build", "spec.toml", "--update"]).succeeds();
    assert_eq!(inserts(&base), 3, "renamed, not created");
    let m = manifest(&s);
    assert_eq!(m["links"].as_array().unwrap().len(), 3, "old keys are gone");
    for (v, id) in ["v1", "v2", "v3"].iter().zip(&ids) {
        let rec = record(&m, &format!("spring27-{v}"));
        assert_eq!(rec["url_id"], id.as_str(), "{v} keeps its url_id");
        assert!(
            rec["short_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/spring27-{v}")),
            "{rec}"
        );
        assert_eq!(rec["history"][0]["action"], "update-slug");
        let (st, live) = api(&base, "GET", &format!("/api/v1/links/{id}"), None);
        assert_eq!(st, 200);
        assert!(
            live.to_string().contains(&format!("spring27-{v}")),
            "{live}"
        );
    }
    run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]).succeeds();
}

#[test]
fn a_saved_plan_is_applied_only_while_nothing_it_compared_has_changed() {
    let (s, _sandbox, base) = built();
    let id = url_id(&s, "spring-v1");
    s.write(
        "spec.toml",
        spec("https://acme.example/summer", "spring-{variant}", ""),
    );
    // The dry-run still lists every link, and now also says what would change.
    let dry = run(
        &s,
        &base,
        &["build", "spec.toml", "--dry-run", "--format", "jsonl"],
    );
    assert_eq!(dry.succeeds().lines().count(), 3);
    assert!(dry.stderr().contains("1 to update"), "{}", dry.stderr());
    // A saved plan never replaces what it was made from.
    let spec_bytes = std::fs::read(s.path("spec.toml")).unwrap();
    let manifest_bytes = std::fs::read(s.path("spec.manifest.json")).unwrap();
    for target in [
        "spec.toml",
        "spec.manifest.json",
        "./spec.manifest.json.journal",
    ] {
        run(&s, &base, &["plan", "spec.toml", "--out", target]).fails_with(2, &["--out"]);
    }
    assert_eq!(std::fs::read(s.path("spec.toml")).unwrap(), spec_bytes);
    assert_eq!(
        std::fs::read(s.path("spec.manifest.json")).unwrap(),
        manifest_bytes
    );
    let p = run(&s, &base, &["plan", "spec.toml", "--out", "plan.json"]);
    p.succeeds();
    let saved = std::fs::read(s.path("plan.json")).unwrap();

    // The spec changes after review: refused, nothing sent.
    s.write(
        "spec.toml",
        spec("https://acme.example/autumn", "spring-{variant}", ""),
    );
    run(&s, &base, &["build", "spec.toml", "--plan", "plan.json"])
        .fails_with(2, &["stale", "the spec", "plan spec.toml --out plan.json"]);
    assert!(live_destination(&base, &id).starts_with("https://acme.example/spring?"));

    // Back to what was reviewed: applied (the plan's updates imply --update).
    s.write(
        "spec.toml",
        spec("https://acme.example/summer", "spring-{variant}", ""),
    );
    run(&s, &base, &["build", "spec.toml", "--plan", "plan.json"]).succeeds();
    assert!(live_destination(&base, &id).starts_with("https://acme.example/summer?"));
    assert_eq!(
        std::fs::read(s.path("plan.json")).unwrap(),
        saved,
        "the plan is not rewritten"
    );
    // The record changed since: the same plan is stale now.
    run(&s, &base, &["build", "spec.toml", "--plan", "plan.json"])
        .fails_with(2, &["stale", "the manifest"]);
}

#[test]
fn import_adopts_matching_links_and_retire_never_deletes_them() {
    let s = Scratch::new();
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring-{variant}", ""),
    );
    let (_sandbox, base) = sandbox(s.dir.path());
    let domain_id = nimriz_sandbox::domain_id_for_host(HOST).to_string();
    // Made in the dashboard before the spec existed: one the spec plans, one it does not.
    for (slug, dest) in [
        ("spring-v2", "https://acme.example/hand-made"),
        ("black-friday", "https://acme.example/bf"),
    ] {
        let (st, v) = api(
            &base,
            "POST",
            "/api/shorten",
            Some(json!({"domain_id": domain_id, "long_url": dest, "custom_slug": slug})),
        );
        assert!(st < 300, "{st} {v}");
    }
    let imp = run(&s, &base, &["import", "spec.toml"]);
    let err = imp.stderr();
    assert_eq!(imp.code(), 0, "{err}");
    assert!(err.contains("adopted 1 (1 drifted"), "{err}");
    assert!(
        err.contains("not planned: ") && err.contains("black-friday"),
        "{err}"
    );
    let m = manifest(&s);
    assert_eq!(
        m["links"].as_array().unwrap().len(),
        1,
        "only the match is recorded"
    );
    let rec = record(&m, "spring-v2");
    assert_eq!(rec["origin"], "adopted");
    assert_eq!(rec["status"], "drift");
    assert_eq!(
        rec["existing_destination"],
        "https://acme.example/hand-made"
    );

    // The build creates the other two and leaves the adopted one as it is.
    let b = run(&s, &base, &["build", "spec.toml"]);
    assert_eq!(b.code(), 1, "{}", b.stderr());
    assert_eq!(inserts(&base), 4);
    let adopted = url_id(&s, "spring-v2");

    // Retire asks first: no terminal and no --yes → exit 2, nothing changed.
    run(
        &s,
        &base,
        &[
            "retire",
            "spec.toml",
            "--fallback",
            "https://acme.example/ended",
        ],
    )
    .fails_with(2, &["--yes", "Nothing was changed"]);
    let before = std::fs::read(s.path("spec.manifest.json")).unwrap();
    assert_eq!(
        live_destination(&base, &adopted),
        "https://acme.example/hand-made"
    );

    // --delete refuses the adopted link and deletes only what this tool created.
    let d = run(&s, &base, &["retire", "spec.toml", "--delete", "--yes"]);
    let err = d.fails_with(1, &["not deleting", "adopted"]);
    assert!(err.contains("retired 2 link(s) (delete)"), "{err}");
    assert_eq!(
        live_destination(&base, &adopted),
        "https://acme.example/hand-made"
    );
    let m = manifest(&s);
    assert_ne!(std::fs::read(s.path("spec.manifest.json")).unwrap(), before);
    for v in ["v1", "v3"] {
        let rec = record(&m, &format!("spring-{v}"));
        assert_eq!(rec["status"], "deleted");
        assert_eq!(rec["retired"]["how"], "delete");
        let id = rec["url_id"].as_str().unwrap();
        let (st, _) = api(&base, "GET", &format!("/api/v1/links/{id}"), None);
        assert!(st == 404 || st == 410, "{v} is gone: {st}");
    }
    // Deleted links still export (every status has its place in the hand-off formats).
    run(
        &s,
        &base,
        &[
            "export",
            "spec.manifest.json",
            "--format",
            "xlsx",
            "-o",
            "l.xlsx",
        ],
    )
    .succeeds();
    let csv = run(&s, &base, &["export", "spec.manifest.json"]).succeeds();
    assert!(csv.contains(",deleted,"), "{csv}");
    // A retired link is not created again by the next build.
    let inserted = inserts(&base);
    let plan = run(&s, &base, &["plan", "spec.toml", "--format", "json"]);
    let doc: Value = serde_json::from_str(&plan.succeeds()).expect("plan json");
    assert_eq!(doc["summary"]["create"], 0, "{doc}");
    let _ = run(&s, &base, &["build", "spec.toml"]);
    let m = manifest(&s);
    assert_eq!(record(&m, "spring-v1")["status"], "deleted");
    assert_eq!(inserts(&base), inserted, "retired links stay retired");

    // The adopted one can be pointed at a fallback.
    run(
        &s,
        &base,
        &[
            "retire",
            "spec.toml",
            "--fallback",
            "https://acme.example/ended",
            "--yes",
        ],
    )
    .succeeds();
    assert_eq!(
        live_destination(&base, &adopted),
        "https://acme.example/ended"
    );
    assert_eq!(
        record(&manifest(&s), "spring-v2")["retired"]["how"],
        "fallback"
    );
}

fn check_golden(name: &str, actual: &str) {
    let path = test_support::repo().join("tests/golden/plan").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

/// Every plan format, for one change of each kind a spec edit makes (update, cannot-update,
/// create, orphan), against golden files (`UPDATE_GOLDEN=1 cargo test lifecycle` rewrites
/// them). Values that differ per run (url_ids, hashes, version) are masked in the JSON.
#[test]
fn every_plan_format_matches_its_golden_file() {
    let (s, _sandbox, base) = built();
    let edited = spec("https://acme.example/summer", "spring-{variant}", "").replace(
        r#"values = ["v1", "v2", "v3"]"#,
        r#"values = ["v1", "v2", "v4"]"#,
    ) + "\n[[override]]\nmatch = { variant = \"v2\" }\nredirect = 301\n";
    s.write("spec.toml", edited);
    let human = run(&s, &base, &["plan", "spec.toml"]);
    check_golden("changes.txt", &human.succeeds());
    let md = run(&s, &base, &["plan", "spec.toml", "--format", "markdown"]);
    check_golden("changes.md", &md.succeeds());
    let json = run(&s, &base, &["plan", "spec.toml", "--format", "json"]);
    let mut doc: Value = serde_json::from_str(&json.succeeds()).unwrap();
    doc["tool_version"] = json!("(version)");
    doc["hashes"]["spec_sha256"] = json!("(sha256)");
    doc["hashes"]["manifest_sha256"] = json!("(sha256)");
    for c in doc["changes"].as_array_mut().unwrap() {
        if c["url_id"].is_string() {
            c["url_id"] = json!("(url_id)");
        }
    }
    check_golden(
        "changes.json",
        &(serde_json::to_string_pretty(&doc).unwrap() + "\n"),
    );
    // Nothing pending after a fresh build: the "no changes" forms.
    let (s, _sandbox2, base) = built();
    check_golden(
        "none.md",
        &run(&s, &base, &["plan", "spec.toml", "--format", "markdown"]).succeeds(),
    );
}

/// The print lock: once QR codes are exported, a plan that renames a printed link or moves
/// its cell to a new slug is refused (exit 2) unless `--break-printed`; destinations still
/// change freely.
#[test]
fn printed_links_keep_their_slug_unless_the_print_run_is_declared_void() {
    let (s, _sandbox, base) = built();
    run(&s, &base, &["export", "spec.manifest.json", "--qr", "qr"]).succeeds();
    assert!(record(&manifest(&s), "spring-v1")["printed_at"].is_string());
    let ids: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| url_id(&s, &format!("spring-{v}")))
        .collect();

    // A destination change is what a short link is for: allowed.
    s.write(
        "spec.toml",
        spec("https://acme.example/summer", "spring-{variant}", ""),
    );
    let plan = run(&s, &base, &["plan", "spec.toml", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 2, "{}", plan.stderr());
    assert!(plan.stdout().contains("1 to update"));

    // A rename of printed links: refused by plan and by build, nothing sent.
    let moved = ["v1", "v2", "v3"]
        .iter()
        .map(|v| format!("[[moved]]\nfrom = \"spring-{v}\"\nto = \"spring27-{v}\"\n"))
        .collect::<String>();
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring27-{variant}", &moved),
    );
    run(&s, &base, &["plan", "spec.toml"]).fails_with(2, &["printed", "--break-printed"]);
    run(&s, &base, &["build", "spec.toml", "--update"])
        .fails_with(2, &["3 printed link(s) would change slug or domain"]);
    let m = manifest(&s);
    assert_eq!(
        record(&m, "spring-v1")["url_id"],
        ids[0].as_str(),
        "nothing renamed"
    );
    // A new slug without [[moved]] would orphan the printed links: refused too.
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring27-{variant}", ""),
    );
    run(&s, &base, &["build", "spec.toml"]).fails_with(2, &["printed"]);
    assert_eq!(inserts(&base), 3, "nothing created");

    // Declared void: the rename goes ahead.
    s.write(
        "spec.toml",
        spec("https://acme.example/spring", "spring27-{variant}", &moved),
    );
    let plan = run(
        &s,
        &base,
        &[
            "plan",
            "spec.toml",
            "--break-printed",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(plan.code(), 2, "{}", plan.stderr());
    run(
        &s,
        &base,
        &["build", "spec.toml", "--update", "--break-printed"],
    )
    .succeeds();
    assert_eq!(url_id(&s, "spring27-v1"), ids[0]);
}

/// Round trip: the CSV `export` writes is a row spec that plans as all `unchanged` against
/// the manifest it came from (hosts in the CSV, domain ids in the record); a destination
/// edited in the spreadsheet plans as an update and applies in place.
#[test]
fn an_exported_csv_round_trips_to_an_unchanged_plan_and_edits_become_updates() {
    let (s, _sandbox, base) = built();
    let id = url_id(&s, "spring-v1");
    run(
        &s,
        &base,
        &[
            "export",
            "spec.manifest.json",
            "-o",
            "links.csv",
            "--bom",
            "never",
        ],
    )
    .succeeds();
    let plan = run(
        &s,
        &base,
        &[
            "plan",
            "links.csv",
            "--manifest",
            "spec.manifest.json",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(plan.code(), 0, "{}\n{}", plan.stdout(), plan.stderr());
    assert!(plan.stdout().contains("3 unchanged"), "{}", plan.stdout());

    let csv = std::fs::read_to_string(s.path("links.csv")).unwrap();
    let edited: String = csv
        .lines()
        .map(|l| {
            if l.starts_with("v1,") {
                l.replacen(
                    "https://acme.example/spring?",
                    "https://acme.example/moved?",
                    1,
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(edited, csv.trim_end());
    s.write("links.csv", edited + "\n");
    let plan = run(
        &s,
        &base,
        &[
            "plan",
            "links.csv",
            "--manifest",
            "spec.manifest.json",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(plan.code(), 2, "{}", plan.stderr());
    assert!(plan.stdout().contains("1 to update"), "{}", plan.stdout());
    run(
        &s,
        &base,
        &[
            "build",
            "links.csv",
            "--manifest",
            "spec.manifest.json",
            "--update",
        ],
    )
    .succeeds();
    assert!(live_destination(&base, &id).starts_with("https://acme.example/moved?"));
    assert_eq!(url_id(&s, "spring-v1"), id);
    assert_eq!(inserts(&base), 3);
}
