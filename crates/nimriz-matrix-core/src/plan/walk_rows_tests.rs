//! The walk over a CSV row spec, whose rows are read again from their text one at a time
//! (`spec::rows`): here, not there, since `spec` must not import `plan`.

const AWKWARD: &str = "brand;variant;domain;destination;tags;utm_source;expires_at\r\n\
    acme; a ;go.acme.example;\"https://acme.example/p?q=\"\"x\"\"\";\" paid ; spring \";google;\r\n\
    ;;;;;;\r\n\
    \"multi\r\nline\";b;go.acme.example;https://acme.example/m;x;;2099-01-01T00:00:00+02:00\r\n\
    zeta;\"c;d\";go.acme.example;https://acme.example/z;;bing;\r\n";

fn load(text: &str) -> (tempfile::TempDir, crate::spec::Spec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links.csv");
    std::fs::write(&path, text).unwrap();
    let (spec, _) = crate::spec::load(&path).unwrap_or_else(|r| panic!("{r:?}"));
    (dir, spec)
}

#[test]
fn the_walk_over_rows_read_again_gives_the_links_load_planned() {
    let (_dir, spec) = load(AWKWARD);
    let mut links = Vec::new();
    let result = crate::plan::walk::walk(&spec, |l| {
        links.push(l.clone());
        Ok(())
    })
    .ok()
    .unwrap();
    assert_eq!(result.problem_count, 0, "{:?}", result.problems);
    let got: Vec<(&str, &str)> = links
        .iter()
        .map(|l| (l.slug.as_str(), l.destination.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "acme-a",
                "https://acme.example/p?q=%22x%22&utm_source=google"
            ),
            ("multi-line-b", "https://acme.example/m"),
            ("zeta-c-d", "https://acme.example/z?utm_source=bing"),
        ]
    );
}

#[test]
fn a_problem_found_in_the_walk_names_the_row_line_as_before() {
    // The bad destination is on line 4, below a cell spanning lines 2-3.
    let text = "brand,domain,destination\n\"two\nlines\",go.acme.example,https://acme.example/a\nbeta,go.acme.example,ftp://acme.example/b\n";
    let (_dir, spec) = load(text);
    let result = crate::plan::walk::walk(&spec, |_| Ok(())).ok().unwrap();
    assert_eq!(result.problem_count, 1, "{:?}", result.problems);
    let p = &result.problems[0];
    assert_eq!((p.line, p.column), (4, 1), "{p:?}");
    assert!(p.file.ends_with("links.csv"), "{p:?}");
    assert_eq!(
        p.snippet.as_deref(),
        Some("beta,go.acme.example,ftp://acme.example/b")
    );
}
