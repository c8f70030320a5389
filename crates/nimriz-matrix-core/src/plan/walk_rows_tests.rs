//! The walk over a CSV row spec, whose rows are read again from their text one at a time
//! (`spec::rows`): here, not there, since `spec` must not import `plan`.

use crate::spec::rows::tests::{AWKWARD, load};

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
