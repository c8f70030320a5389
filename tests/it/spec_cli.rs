//! The offline half through the real binary: validate and build --dry-run on the shipped
//! example and on every kind of bad input (exit 2, a message naming the problem and where).

use common::{Scratch, repo, run_in};
use std::collections::HashSet;
use test_support::bin as common;

const GOOD_HEAD: &str = r#"
[campaign]
name = "spring"

[link]
domain = "go.acme.example"
destination = "https://{brand.site}/landing?lang=en#top"
slug = "{brand}-{channel}"

[utm]
source = "{channel.source}"
medium = "{channel.medium}"
campaign = "{campaign.name}"

[[dimension]]
name = "brand"
values = [{ key = "acme", site = "acme.example" }, { key = "globex", site = "globex.example" }]

[[dimension]]
name = "channel"
values = [{ key = "search", source = "google", medium = "cpc" }, { key = "mail", source = "newsletter", medium = "email" }]
"#;

fn spec_with(extra: &str) -> String {
    format!("{GOOD_HEAD}\n{extra}")
}

#[test]
fn example_validates_and_dry_runs() {
    let r = run_in(&repo(), &["validate", "matrix.example.toml"]);
    r.succeeds();
    assert!(r.stderr().contains("196 link(s) planned"), "{}", r.stderr());
    let table = run_in(&repo(), &["build", "matrix.example.toml", "--dry-run"]).succeeds();
    assert!(table.starts_with("SLUG"));
    assert!(table.contains("acme-paid-search-v1"));
    assert!(table.contains(
        "196 link(s) planned: 5 brand × 10 channel × 4 variant = 200 combination(s), 4 excluded"
    ));
}

#[test]
fn dry_run_is_byte_identical_across_runs_in_every_format() {
    for format in ["table", "csv", "json", "jsonl"] {
        let a = run_in(
            &repo(),
            &[
                "build",
                "matrix.example.toml",
                "--dry-run",
                "--format",
                format,
            ],
        );
        let b = run_in(
            &repo(),
            &[
                "build",
                "matrix.example.toml",
                "--dry-run",
                "--format",
                format,
            ],
        );
        assert_eq!(a.code(), 0, "{}", a.stderr());
        assert!(!a.0.stdout.is_empty());
        assert_eq!(
            a.0.stdout, b.0.stdout,
            "format {format} differs between runs"
        );
    }
}

#[test]
fn example_jsonl_destinations_carry_expected_utms_and_slugs_are_unique() {
    let out = run_in(
        &repo(),
        &[
            "build",
            "matrix.example.toml",
            "--dry-run",
            "--format",
            "jsonl",
        ],
    )
    .succeeds();
    let mut slugs = HashSet::new();
    let mut n = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl line");
        n += 1;
        let slug = v["slug"].as_str().unwrap().to_string();
        let host = v["domain"]["host"].as_str().unwrap();
        assert!(
            slugs.insert((host.to_string(), slug.clone())),
            "duplicate slug {slug}"
        );
        assert_eq!(v["short_url"], format!("https://{host}/{slug}"));
        let cell = &v["cell"];
        let url = url::Url::parse(v["destination"].as_str().unwrap()).expect("destination parses");
        assert_eq!(url.scheme(), "https");
        assert_eq!(
            url.fragment(),
            Some("offer")
                .filter(|_| cell["channel"] != "email" || cell["brand"] != "globex")
                .or(url.fragment())
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["utm_campaign"], "spring-launch-2027");
        assert_eq!(q["utm_content"], cell["variant"].as_str().unwrap());
        if cell["brand"] == "globex" && cell["channel"] == "email" {
            assert_eq!(url.path(), "/members/spring", "override applies");
            assert!(!q.contains_key("lang"));
        } else {
            assert_eq!(q["lang"], "en", "existing query kept");
        }
        if cell["brand"] == "umbrella" && cell["channel"] == "sms" {
            assert_eq!(q["utm_source"], "textlocal", "utm override applies");
        }
        assert!(
            !(cell["brand"] == "initech" && cell["channel"] == "tiktok"),
            "excluded cell planned"
        );
        assert_eq!(v["redirect"], 302);
        assert_eq!(v["expires_at"], "2027-06-30T23:59:59Z");
    }
    assert_eq!(n, 196);
}

#[test]
fn json_and_csv_outputs_are_well_formed() {
    let json = run_in(
        &repo(),
        &[
            "build",
            "matrix.example.toml",
            "--dry-run",
            "--format",
            "json",
        ],
    )
    .succeeds();
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["links"].as_array().unwrap().len(), 196);
    assert_eq!(v["summary"]["excluded"], 4);
    let csv = run_in(
        &repo(),
        &[
            "build",
            "matrix.example.toml",
            "--dry-run",
            "--format",
            "csv",
        ],
    )
    .succeeds();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[0], "brand");
    assert!(headers.iter().any(|h| h == "utm_creative_format"));
    assert_eq!(rdr.records().count(), 196);
}

#[test]
fn output_file_is_written_and_not_on_error() {
    let s = Scratch::new();
    s.write("ok.toml", GOOD_HEAD);
    s.run(&[
        "build",
        "ok.toml",
        "--dry-run",
        "--format",
        "jsonl",
        "-o",
        "plan.jsonl",
    ])
    .succeeds();
    assert_eq!(
        std::fs::read_to_string(s.path("plan.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    s.write("bad.toml", spec_with("[[exclude]]\nbrand = \"nope\""));
    s.run(&["build", "bad.toml", "--dry-run", "-o", "bad.jsonl"])
        .fails_with(2, &["bad.toml:"]);
    assert!(
        !s.path("bad.jsonl").exists(),
        "no partial output on bad input"
    );
}

#[test]
fn csv_dimension_values_load_relative_to_the_spec() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("specs")).unwrap();
    s.write(
        "specs/brands.csv",
        "key,site\nacme,acme.example\n\"café-münch\",cafe.example\n",
    );
    s.write(
        "specs/s.toml",
        "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\n[[dimension]]\nname = \"brand\"\nfrom = \"brands.csv\"\n",
    );
    let out = s
        .run(&["build", "specs/s.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert!(out.contains("\"slug\":\"cafe-munch\""), "{out}");
}

// ---- bad inputs: each exits 2 and names the problem and its place ----

#[test]
fn malformed_toml_points_at_line_and_column() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        "[link]\ndomain = \"x\"\ndestination = \"https://a.example\n",
    );
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["invalid spec", "s.toml:3:"]);
}

#[test]
fn unknown_field_is_reported_with_location() {
    let s = Scratch::new();
    s.write("s.toml", GOOD_HEAD.replace("slug = ", "slgu = "));
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["unknown field `link.slgu`", "s.toml:8:1"]);
}

#[test]
fn missing_spec_file() {
    let s = Scratch::new();
    s.run(&["validate", "nope.toml"])
        .fails_with(2, &["cannot read spec file `nope.toml`", "no such file"]);
}

#[test]
fn missing_csv_file_points_at_the_from_line() {
    let s = Scratch::new();
    s.write("s.toml", "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\n[[dimension]]\nname = \"brand\"\nfrom = \"brands.csv\"\n");
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["cannot read CSV file `brands.csv`", "s.toml:6:8"]);
}

const BRAND_SPEC: &str = "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\nslug = \"{brand}-{brand.name}\"\n[[dimension]]\nname = \"brand\"\nfrom = \"b.csv\"\n";

fn utf16(s: &str, le: bool) -> Vec<u8> {
    let mut out = if le {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for u in s.encode_utf16() {
        out.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
    }
    out
}

#[test]
fn csv_with_a_utf8_bom_is_read_as_excel_writes_it() {
    let s = Scratch::new();
    // Excel's "CSV UTF-8": a BOM, then the header.
    s.write(
        "b.csv",
        b"\xEF\xBB\xBFkey,site,name\nacme,acme.example,Caf\xC3\xA9\n",
    );
    s.write("s.toml", BRAND_SPEC);
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains("acme-cafe"), "{out}");
    // A TOML spec saved with a BOM (Notepad) is read too.
    let mut toml = b"\xEF\xBB\xBF".to_vec();
    toml.extend(BRAND_SPEC.as_bytes());
    s.write("bom.toml", toml);
    s.run(&["validate", "bom.toml"]).succeeds();
    // And a CSV row spec with one.
    s.write(
        "links.csv",
        b"\xEF\xBB\xBFbrand,domain,destination\nacme,go.x.example,https://acme.example/\n",
    );
    let out = s
        .run(&["build", "links.csv", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains("https://acme.example/"), "{out}");
}

#[test]
fn utf16_csv_with_a_bom_is_decoded_with_its_tabs() {
    let s = Scratch::new();
    s.write("s.toml", BRAND_SPEC);
    // Excel's "Unicode Text": UTF-16LE with a BOM, tab-separated, CRLF.
    for le in [true, false] {
        s.write(
            "b.csv",
            utf16("key\tsite\tname\r\nacme\tacme.example\tCafé Münch\r\n", le),
        );
        let out = s
            .run(&["build", "s.toml", "--dry-run", "--format", "csv"])
            .succeeds();
        assert!(out.contains("acme-cafe-munch"), "{out}");
    }
    s.write(
        "links.csv",
        utf16(
            "brand\tdomain\tdestination\r\nacme\tgo.x.example\thttps://acme.example/x\r\n",
            true,
        ),
    );
    let out = s
        .run(&["build", "links.csv", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains("https://acme.example/x"), "{out}");
}

#[test]
fn windows_1252_csv_is_an_error_with_the_fix_until_the_encoding_is_named() {
    let s = Scratch::new();
    // Excel's legacy "CSV" on Windows: é is 0xE9.
    let csv = b"key,site,name\nglobex,globex.example,Globex\nacme,acme.example,Caf\xE9\n";
    s.write("b.csv", csv);
    s.write("s.toml", BRAND_SPEC);
    let err = s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "b.csv:3:22",
            "not valid UTF-8: byte 0xE9 at offset 64",
            "add encoding = \"windows-1252\" to the [[dimension]] `brand`",
        ],
    );
    assert!(
        !err.contains("unknown placeholder"),
        "no cascade errors:\n{err}"
    );
    s.write(
        "s.toml",
        BRAND_SPEC.replace(
            "from = \"b.csv\"",
            "from = \"b.csv\"\nencoding = \"windows-1252\"",
        ),
    );
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains("acme-cafe"), "{out}");
    // An unknown label points at the field.
    s.write(
        "s.toml",
        BRAND_SPEC.replace("from = \"b.csv\"", "from = \"b.csv\"\nencoding = \"ansi\""),
    );
    let err = s.run(&["validate", "s.toml"]).fails_with(
        2,
        &["s.toml:8:12", "unknown encoding `ansi`", "windows-1252"],
    );
    assert!(
        !err.contains("unknown placeholder"),
        "no cascade errors:\n{err}"
    );
}

#[test]
fn csv_row_spec_takes_its_encoding_from_the_flag() {
    let s = Scratch::new();
    s.write(
        "links.csv",
        b"brand,domain,destination,utm_content\nacme,go.x.example,https://acme.example/,caf\xE9\n",
    );
    s.run(&["validate", "links.csv"]).fails_with(
        2,
        &[
            "links.csv:2:44",
            "byte 0xE9",
            "run with --encoding windows-1252",
        ],
    );
    let out = s
        .run(&[
            "build",
            "links.csv",
            "--dry-run",
            "--format",
            "csv",
            "--encoding",
            "windows-1252",
        ])
        .succeeds();
    assert!(out.contains("utm_content=caf%C3%A9"), "{out}");
    s.run(&["validate", "links.csv", "--encoding", "ansi"])
        .fails_with(2, &["unknown encoding `ansi`", "windows-1252"]);
    // [rows] in a TOML spec has the field.
    s.write("s.toml", "[rows]\nfrom = \"links.csv\"\n");
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["add encoding = \"windows-1252\" to [rows]"]);
    s.write(
        "s.toml",
        "[rows]\nfrom = \"links.csv\"\nencoding = \"windows-1252\"\n",
    );
    s.run(&["validate", "s.toml"]).succeeds();
}

#[test]
fn unterminated_quote_is_reported_where_it_opens_without_follow_on_errors() {
    let s = Scratch::new();
    s.write(
        "b.csv",
        "key,site\nacme,\"acme.example\nglobex,globex.example\ninitech,initech.example\n",
    );
    s.write(
        "s.toml",
        format!("{BRAND_SPEC}[[override]]\nmatch = {{ brand = \"acme\" }}\nslug = \"x-{{brand}}\"\n[[exclude]]\nbrand = \"globex\"\n").replace("-{brand.name}", ""),
    );
    let err = s
        .run(&["validate", "s.toml"])
        .fails_with(2, &["unterminated quote", "b.csv:2:6"]);
    assert!(!err.contains("ragged"), "{err}");
    assert!(
        !err.contains("unknown dimension"),
        "no follow-on errors:\n{err}"
    );
    // As a row spec too.
    s.write(
        "links.csv",
        "brand,domain,destination\n\"acme,go.x.example,https://acme.example/\n",
    );
    s.run(&["validate", "links.csv"])
        .fails_with(2, &["unterminated quote", "links.csv:2:1"]);
}

#[test]
fn ragged_csv_row_names_its_line() {
    let s = Scratch::new();
    s.write("b.csv", "key,site\nacme,acme.example\nglobex\n");
    s.write("s.toml", "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\n[[dimension]]\nname = \"brand\"\nfrom = \"b.csv\"\n");
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &["ragged row", "b.csv:3:1", "1 field(s) but the header has 2"],
    );
}

#[test]
fn empty_dimension() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        spec_with("[[dimension]]\nname = \"variant\"\nvalues = []"),
    );
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["dimension `variant` is empty", "s.toml:24:8"]);
}

#[test]
fn duplicate_keys_in_a_dimension() {
    let s = Scratch::new();
    s.write(
        "b.csv",
        "key,site\nacme,a.example\nglobex,g.example\nacme,b.example\n",
    );
    s.write("s.toml", "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\n[[dimension]]\nname = \"brand\"\nfrom = \"b.csv\"\n");
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &["has the key `acme` twice", "b.csv:4:1", "also at b.csv:2"],
    );
}

#[test]
fn matrix_over_the_size_limit() {
    let s = Scratch::new();
    s.write("s.toml", GOOD_HEAD);
    s.run(&["validate", "s.toml", "--max-links", "3"])
        .fails_with(
            2,
            &["4 combinations", "more than the limit of 3", "--max-links"],
        );
    s.run(&["build", "s.toml", "--dry-run", "--max-links", "3"])
        .fails_with(2, &["--max-links"]);
}

#[test]
fn javascript_and_ftp_destinations_are_refused() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace(
                "acme.example\" }",
                "acme.example\" }, { key = \"evil\", site = \"x\" }",
            )
            .replace("https://{brand.site}/landing?lang=en#top", "{brand.dest}")
            .replace(
                "site = \"acme.example\"",
                "site = \"a\", dest = \"javascript:alert(1)\"",
            )
            .replace(
                "site = \"globex.example\"",
                "site = \"g\", dest = \"ftp://files.example/x\"",
            )
            .replace("site = \"x\"", "site = \"x\", dest = \"not a url\""),
    );
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "uses `javascript:`",
            "uses `ftp:`",
            "is not a valid URL",
            "e.g. brand=acme",
            "s.toml:7:15",
        ],
    );
}

#[test]
fn plain_http_needs_opt_in() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("https://{brand.site}", "http://{brand.site}"),
    );
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["plain http://", "allow_http"]);
    s.write(
        "s.toml",
        spec_with("[rules]\nallow_http = true")
            .replace("https://{brand.site}", "http://{brand.site}"),
    );
    s.run(&["validate", "s.toml"]).succeeds();
}

#[test]
fn unknown_placeholder_and_attribute_suggest_the_fix() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace("{channel.source}", "{chanel.source}")
            .replace("{brand.site}", "{brand.stie}"),
    );
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "unknown placeholder `{chanel.source}`",
            "did you mean `{channel.source}`",
            "s.toml:11:11",
            "dimension `brand` has no attribute `stie`",
            "did you mean `{brand.site}`",
            "s.toml:7:24",
            "2 problems found",
        ],
    );
}

#[test]
fn slug_collision_names_both_cells_or_hashes_when_asked() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("slug = \"{brand}-{channel}\"", "slug = \"{brand}\""),
    );
    s.run(&["validate", "s.toml"]).fails_with(2, &["slug `acme` on `go.acme.example` is produced by two cells: brand=acme,channel=search and brand=acme,channel=mail", "slug_collision"]);
    s.write(
        "h.toml",
        GOOD_HEAD.replace(
            "slug = \"{brand}-{channel}\"",
            "slug = \"{brand}\"\nslug_collision = \"hash\"",
        ),
    );
    let a = s
        .run(&["build", "h.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    let slugs: Vec<String> = a
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["slug"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(slugs[0], "acme", "first keeps its slug");
    assert!(
        slugs[1].starts_with("acme-") && slugs[1].len() == "acme-".len() + 6,
        "{slugs:?}"
    );
    assert_eq!(slugs.iter().collect::<HashSet<_>>().len(), 4);
    let b = s
        .run(&["build", "h.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert_eq!(a, b, "hash suffix is stable");
}

#[test]
fn same_slug_on_different_domains_is_fine() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace("slug = \"{brand}-{channel}\"", "slug = \"{channel}-link\"")
            .replace(
                "domain = \"go.acme.example\"",
                "domain = \"go.{brand}.example\"",
            ),
    );
    s.run(&["validate", "s.toml"]).succeeds();
}

#[test]
fn reserved_and_too_short_slugs_are_refused() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace("slug = \"{brand}-{channel}\"", "slug = \"{brand.slug}\"")
            .replace(
                "site = \"acme.example\"",
                "site = \"acme.example\", slug = \"admin\"",
            )
            .replace(
                "site = \"globex.example\"",
                "site = \"globex.example\", slug = \"ab\"",
            ),
    );
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "slug `admin` is reserved by Nimriz",
            "slug `ab` is shorter than 4 characters",
        ],
    );
}

#[test]
fn utm_in_destination_conflicts_unless_the_spec_says_which_wins() {
    let s = Scratch::new();
    let base = GOOD_HEAD.replace("landing?lang=en", "landing?utm_source=old");
    s.write("s.toml", &base);
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["already has utm_source=old", "utm_conflict"]);
    s.write(
        "w.toml",
        base.replace("slug = ", "utm_conflict = \"spec\"\nslug = "),
    );
    let out = s
        .run(&["build", "w.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert!(
        out.contains("landing?utm_source=google&utm_medium=cpc"),
        "{out}"
    );
}

#[test]
fn governance_rules_lowercase_allowed_required_spaces() {
    let s = Scratch::new();
    s.write("s.toml", spec_with("[rules]\nrequired = [\"source\", \"medium\", \"campaign\", \"content\"]\nallowed.medium = [\"cpc\", \"email\"]").replace("medium = \"cpc\"", "medium = \"CPC\"").replace("source = \"newsletter\"", "source = \"news letter\""));
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "utm_medium `CPC` is not lowercase",
            "utm_medium `CPC` is not an allowed value",
            "utm_source `news letter` contains a space",
            "required utm_content is missing",
            "(2 cells, e.g. brand=acme,channel=search)",
        ],
    );
    s.write(
        "n.toml",
        spec_with("[rules]\nlowercase = \"normalize\"")
            .replace("medium = \"cpc\"", "medium = \"CPC\""),
    );
    let out = s
        .run(&["build", "n.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert!(out.contains("utm_medium=cpc") && !out.contains("CPC"));
}

#[test]
fn unassigned_ga4_medium_is_a_warning_not_an_error() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("medium = \"email\"", "medium = \"newsletter\""),
    );
    let r = s.run(&["validate", "s.toml"]);
    r.succeeds();
    assert!(
        r.stderr().contains("warning: utm_medium `newsletter`")
            && r.stderr().contains("Unassigned"),
        "{}",
        r.stderr()
    );
}

#[test]
fn exclude_and_override_typos_are_caught() {
    let s = Scratch::new();
    s.write("s.toml", spec_with("[[exclude]]\nbrand = \"acmee\"\n\n[[override]]\nmatch = { chanel = \"mail\" }\ndestination = \"https://x.example/\""));
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "dimension `brand` has no key `acmee`",
            "did you mean `acme`",
            "unknown dimension `chanel`",
            "2 problems found",
        ],
    );
    // A misspelt field: reported with its place and the field it was meant to be.
    s.write(
        "t.toml",
        spec_with(
            "[[override]]\nmatch = { brand = \"acme\" }\ndestinaton = \"https://x.example/\"",
        ),
    );
    s.run(&["validate", "t.toml"]).fails_with(
        2,
        &[
            "unknown field `override.destinaton`",
            "did you mean `destination`",
            "t.toml:25:1",
        ],
    );
}

#[test]
fn csv_only_input_one_row_per_link() {
    let s = Scratch::new();
    s.write("links.csv", "brand,channel,destination,domain,utm_source,utm_medium,slug\nacme,search,https://acme.example/a,go.acme.example,google,cpc,\nacme,mail,https://acme.example/b?x=1#f,go.acme.example,newsletter,email,acme-mail-spring\n");
    let out = s
        .run(&["build", "links.csv", "--dry-run", "--format", "jsonl"])
        .succeeds();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["slug"], "acme-search");
    assert_eq!(lines[1]["slug"], "acme-mail-spring");
    assert_eq!(
        lines[1]["destination"],
        "https://acme.example/b?x=1&utm_source=newsletter&utm_medium=email#f"
    );
    assert_eq!(lines[1]["cell"]["channel"], "mail");

    s.write("dup.csv", "brand,destination,domain\nacme,https://acme.example/,go.acme.example\nacme,https://a.example/,go.acme.example\n");
    s.run(&["validate", "dup.csv"])
        .fails_with(2, &["dup.csv:3:1", "same keys as line 2"]);
    s.write("bad.csv", "brand,destination,domain,utm_medium\nacme,https://acme.example/,go.acme.example,Email\nbeta,javascript:x,go.acme.example,email\ngamma,https://a.example/,,cpc\n");
    s.run(&["validate", "bad.csv"]).fails_with(
        2,
        &[
            "utm_medium `Email` is not lowercase",
            "uses `javascript:`",
            "bad.csv:4:1",
            "row names no short domain",
        ],
    );
}

#[test]
fn rows_spec_with_toml_settings() {
    let s = Scratch::new();
    s.write(
        "links.csv",
        "brand,channel,destination\nacme,search,https://acme.example/a\nglobex,search,\n",
    );
    s.write("s.toml", "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand}.example/default\"\nslug = \"spring-{brand}-{channel}\"\n[utm]\ncampaign = \"spring\"\n[rows]\nfrom = \"links.csv\"\n");
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains("acme,search,spring-acme-search,https://go.x.example/spring-acme-search,go.x.example,,https://acme.example/a?utm_campaign=spring"), "{out}");
    assert!(
        out.contains("https://globex.example/default?utm_campaign=spring"),
        "{out}"
    );
}

#[test]
fn many_problems_are_all_reported_at_once() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace("{channel.source}", "{x}")
            .replace("{brand.site}", "{y}")
            .replace(
                "campaign = \"{campaign.name}\"",
                "campaign = \"{campaign.nme}\"",
            ),
    );
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &["`{x}`", "`{y}`", "`{campaign.nme}`", "3 problems found"],
    );
}

#[test]
fn formula_triggers_are_neutralised_in_csv_plans() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD
            .replace(
                "campaign = \"{campaign.name}\"",
                "campaign = \"{campaign.name}\"\ncontent = \"{brand.note}\"",
            )
            .replace(
                "site = \"acme.example\"",
                "site = \"acme.example\", note = \"=1+1\"",
            )
            .replace(
                "site = \"globex.example\"",
                "site = \"globex.example\", note = \"fine\"",
            ),
    );
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "csv"])
        .succeeds();
    assert!(out.contains(",'=1+1,") || out.contains(",'=1+1\n"), "{out}");
}

#[test]
fn plan_format_and_output_need_dry_run() {
    let r = run_in(
        &repo(),
        &["build", "matrix.example.toml", "--format", "csv"],
    );
    r.fails_with(2, &["--dry-run"]);
    let r = run_in(&repo(), &["build", "matrix.example.toml", "-o", "x.csv"]);
    r.fails_with(2, &["--dry-run"]);
    assert!(!repo().join("x.csv").exists());
}

#[test]
fn excel_style_csv_crlf_semicolons_and_empty_rows() {
    let s = Scratch::new();
    let spec = "[link]\ndomain = \"go.x.example\"\ndestination = \"https://{brand.site}/\"\n[[dimension]]\nname = \"brand\"\nfrom = \"b.csv\"\n";
    s.write("s.toml", spec);
    // CRLF line endings: problems still name the right line.
    s.write(
        "b.csv",
        "key,site\r\nacme,acme.example\r\nbeta,beta.example\r\nacme,x.example\r\n",
    );
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["b.csv:4:1", "also at b.csv:2"]);
    s.write("b.csv", "key,site\r\nacme,acme.example\r\n,x.example\r\n");
    s.run(&["validate", "s.toml"])
        .fails_with(2, &["b.csv:3:1", "empty `key`"]);
    // `;`-separated (European Excel), with the blank rows Excel leaves below the data.
    s.write(
        "b.csv",
        "key;site\r\nacme;acme.example\r\n\"caf\u{e9}\";cafe.example\r\n;\r\n;\r\n",
    );
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("https://cafe.example/"), "{out}");
}

#[test]
fn destination_wins_means_its_utms_are_checked_and_reported() {
    let s = Scratch::new();
    let base = spec_with("[rules]\nallowed.medium = [\"cpc\", \"email\"]")
        .replace(
            "landing?lang=en",
            "landing?utm_source=Old&utm_medium=banner",
        )
        .replace("slug = ", "utm_conflict = \"destination\"\nslug = ");
    s.write("s.toml", &base);
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "utm_source `Old` is not lowercase",
            "utm_medium `banner` is not an allowed value",
        ],
    );
    s.write(
        "ok.toml",
        base.replace(
            "utm_source=Old&utm_medium=banner",
            "utm_source=partner&utm_medium=email",
        ),
    );
    let out = s
        .run(&["build", "ok.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["utm"]["utm_source"], "partner",
        "the plan reports what the link carries"
    );
    assert_eq!(first["utm"]["utm_medium"], "email");
    assert!(
        first["destination"]
            .as_str()
            .unwrap()
            .contains("?utm_source=partner&utm_medium=email&utm_campaign=spring")
    );
}

#[test]
fn a_destination_utm_equal_to_the_spec_value_is_not_a_conflict() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("landing?lang=en", "landing?utm_campaign=spring"),
    );
    let out = s
        .run(&["build", "s.toml", "--dry-run", "--format", "jsonl"])
        .succeeds();
    assert_eq!(
        out.matches("utm_campaign=spring").count(),
        4,
        "kept once per link, not doubled"
    );
}

#[test]
fn misspelt_row_columns_are_refused_with_the_right_name() {
    let s = Scratch::new();
    s.write(
        "r.csv",
        "brand,destinaton,domain,utm_sorce\nacme,https://a.example/,go.x.example,google\n",
    );
    s.run(&["validate", "r.csv"]).fails_with(
        2,
        &[
            "unknown column `destinaton`",
            "r.csv:1:7",
            "did you mean `destination`",
            "unknown column `utm_sorce`",
            "did you mean `utm_source`",
            "2 problems found",
        ],
    );
}

#[test]
fn problem_count_includes_the_unlisted_ones() {
    let s = Scratch::new();
    // 60 brands, each with a different bad destination scheme: 60 distinct problems.
    let brands: Vec<String> = (0..60)
        .map(|i| format!("{{ key = \"brand-{i}\", site = \"ftp{i}://x\" }}"))
        .collect();
    s.write("s.toml", format!("[link]\ndomain = \"go.x.example\"\ndestination = \"{{brand.site}}\"\n[[dimension]]\nname = \"brand\"\nvalues = [{}]\n", brands.join(",")));
    let err = s.run(&["validate", "s.toml"]).fails_with(
        2,
        &["… and 10 more problem(s) not listed", "60 problems found"],
    );
    assert_eq!(err.matches("\nerror: ").count() + 1, 50, "50 listed");
}

#[test]
fn an_expiry_in_the_past_is_a_warning() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("slug = ", "expires_at = 2020-01-01T00:00:00Z\nslug = "),
    );
    let r = s.run(&["validate", "s.toml"]);
    r.succeeds();
    assert!(
        r.stderr()
            .contains("warning: expires_at 2020-01-01T00:00:00Z is in the past (s.toml:8)"),
        "{}",
        r.stderr()
    );
}

/// `--output` naming a named pipe (or `/dev/null`) writes into it; it is never replaced
/// by a renamed temp file (as root, that turned `/dev/null` into a plain file).
#[cfg(unix)]
#[test]
fn a_dry_run_into_a_named_pipe_writes_into_it() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new();
    s.write(
        "links.csv",
        "brand,domain,destination\nacme,go.x.example,https://acme.example/\n",
    );
    let fifo = s.path("plan.pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs")
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || tx.send(std::fs::read_to_string(&fifo).expect("read")))
    };
    let plan = fifo.to_str().expect("utf-8 path");
    s.run(&[
        "build",
        "links.csv",
        "--dry-run",
        "--format",
        "csv",
        "--output",
        plan,
    ])
    .succeeds();
    // Bounded: a replaced pipe never gets a writer, and the reader is left behind.
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the plan went through the pipe");
    assert!(got.contains("https://acme.example/"), "{got}");
    reader.join().expect("reader").expect("sent");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("still there")
            .file_type()
            .is_fifo()
    );
}

#[test]
fn past_expiries_in_every_csv_row_give_five_warnings_and_a_count() {
    let s = Scratch::new();
    let mut csv = String::from("brand,domain,destination,expires_at\n");
    for i in 0..40 {
        csv.push_str(&format!(
            "brand{i},go.x.example,https://b{i}.example/,2020-01-01T00:00:00Z\n"
        ));
    }
    s.write("links.csv", csv);
    let r = s.run(&["validate", "links.csv"]);
    r.succeeds();
    let err = r.stderr();
    assert_eq!(
        err.matches("is in the past (links.csv:").count(),
        5,
        "{err}"
    );
    assert!(
        err.contains("links.csv:2)") && err.contains("links.csv:6)"),
        "{err}"
    );
    assert!(
        err.contains("and 35 more expires_at value(s) in the past"),
        "{err}"
    );
}

/// Ctrl-C, SIGTERM or SIGHUP during a long dry-run with --output leaves neither the output
/// nor a temp file, and exits 128 + the signal.
#[cfg(unix)]
#[test]
fn interrupted_dry_run_leaves_nothing_behind() {
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        interrupted_dry_run(sig, code);
    }
}

#[cfg(unix)]
fn interrupted_dry_run(sig: &str, code: i32) {
    let s = Scratch::new();
    let vals = |p: &str| {
        (0..100)
            .map(|i| format!("\"{p}{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    s.write("big.toml", format!(
        "[link]\ndomain = \"go.x.example\"\ndestination = \"https://x.example/{{a}}\"\n\
         [[dimension]]\nname = \"a\"\nvalues = [{}]\n[[dimension]]\nname = \"b\"\nvalues = [{}]\n[[dimension]]\nname = \"c\"\nvalues = [{}]\n",
        vals("a"), vals("b"), vals("c")
    ));
    let mut child = test_support::command()
        .current_dir(s.dir.path())
        .args([
            "build",
            "big.toml",
            "--dry-run",
            "--format",
            "jsonl",
            "-o",
            "plan.jsonl",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let running = child.try_wait().unwrap().is_none();
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), child.id().to_string()])
        .status();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "did not stop on SIG{sig}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("big.toml")],
        "left behind: {left:?}"
    );
    if running {
        assert_eq!(status.code(), Some(code), "SIG{sig}");
    }
}

/// The spec reference in the README is a working spec (with the shipped brands.csv).
#[test]
fn readme_spec_reference_validates() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find("## The spec").expect("spec section")..];
    let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
    let toml = &section[start..start + section[start..].find("```").unwrap()];
    let s = Scratch::new();
    std::fs::copy(repo().join("brands.csv"), s.path("brands.csv")).unwrap();
    s.write("ref.toml", toml);
    let r = s.run(&["validate", "ref.toml"]);
    r.succeeds();
}

#[test]
fn every_unknown_field_and_syntax_error_is_reported_at_once() {
    let s = Scratch::new();
    s.write(
        "s.toml",
        GOOD_HEAD.replace("slug = ", "slgu = ").replace(
            "[[dimension]]\nname = \"channel\"",
            "[[dimension]]\nname = \"channel\"\nform = \"x.csv\"",
        ) + "\n[rules]\nlowercse = \"error\"\n",
    );
    s.run(&["validate", "s.toml"]).fails_with(
        2,
        &[
            "unknown field `link.slgu`",
            "did you mean `slug`",
            "unknown field `dimension.form`",
            "did you mean `from`",
            "unknown field `rules.lowercse`",
            "did you mean `lowercase`",
            "3 problems found",
        ],
    );
    s.write("bad.toml", "[link\ndomain = \"x\"\n[rules]\ny = = 2\n");
    let err = s
        .run(&["validate", "bad.toml"])
        .fails_with(2, &["bad.toml:1:6", "bad.toml:4:5"]);
    assert!(err.matches("invalid spec").count() >= 2, "{err}");
}
