//! Property tests for the pure core: slugify, destination building, expansion.

use nimriz_matrix_core::expand::slug::slugify;
use nimriz_matrix_core::expand::utm::build_destination;
use nimriz_matrix_core::spec::model::UtmConflict;
use proptest::prelude::*;
use std::collections::HashSet;

proptest! {
    #[test]
    fn slugify_output_is_always_slug_shaped(s in "\\PC{0,80}", cap in 1usize..60) {
        let slug = slugify(&s, cap);
        prop_assert!(slug.len() <= cap);
        prop_assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        prop_assert!(!slug.starts_with('-') && !slug.ends_with('-'));
        prop_assert!(!slug.contains("--"));
        // Idempotent: a slug is its own slug.
        prop_assert_eq!(slugify(&slug, cap), slug.clone());
    }

    #[test]
    fn utm_values_round_trip_and_query_and_fragment_survive(
        path in "[a-z]{1,8}",
        existing in proptest::collection::vec(("[a-z]{1,6}", "[a-zA-Z0-9 %&=+]{0,8}"), 0..4),
        source in "\\PC{1,20}",
        content in "\\PC{1,20}",
        frag in proptest::option::of("[a-z]{1,6}"),
    ) {
        let mut base = url::Url::parse(&format!("https://shop.example/{path}")).unwrap();
        {
            let mut q = base.query_pairs_mut();
            for (k, v) in &existing {
                q.append_pair(&format!("x{k}"), v);
            }
        }
        if existing.is_empty() { base.set_query(None); }
        base.set_fragment(frag.as_deref());
        let utms = vec![("utm_source", source.trim().to_string()), ("utm_content", content.trim().to_string())];
        let out = build_destination(base.as_str(), &utms, UtmConflict::Error, false, None).unwrap();
        let parsed = url::Url::parse(&out).unwrap();
        prop_assert_eq!(parsed.fragment(), frag.as_deref());
        prop_assert_eq!(parsed.path(), base.path());
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        // Existing pairs first, unchanged and in order; then the UTMs.
        let want_existing: Vec<(String, String)> = base.query_pairs().into_owned().collect();
        prop_assert_eq!(&pairs[..want_existing.len()], &want_existing[..]);
        for (k, v) in utms.iter().filter(|(_, v)| !v.is_empty()) {
            prop_assert!(pairs.contains(&(k.to_string(), v.clone())), "{} missing from {}", k, out);
        }
    }

    #[test]
    fn expansion_is_the_product_minus_excludes_and_deterministic(
        sizes in proptest::collection::vec(1usize..5, 1..4),
        exclude_first in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from("[link]\ndomain = \"go.x.example\"\ndestination = \"https://x.example/\"\n");
        let names: Vec<String> = (0..sizes.len()).map(|i| format!("d{i}")).collect();
        toml.push_str(&format!("slug = \"k-{}\"\n", names.iter().map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join("-")));
        for (name, n) in names.iter().zip(&sizes) {
            let vals: Vec<String> = (0..*n).map(|v| format!("\"v{v}\"")).collect();
            toml.push_str(&format!("[[dimension]]\nname = \"{name}\"\nvalues = [{}]\n", vals.join(",")));
        }
        if exclude_first {
            toml.push_str("[[exclude]]\nd0 = \"v0\"\n");
        }
        let path = dir.path().join("s.toml");
        std::fs::write(&path, &toml).unwrap();
        let run = || {
            let (spec, _) = nimriz_matrix_core::spec::load(&path).unwrap();
            let mut slugs = Vec::new();
            let r = nimriz_matrix_core::plan::walk::walk(&spec, |l| { slugs.push(l.slug.clone()); Ok(()) }).unwrap();
            (slugs, r.summary.links, r.problem_count)
        };
        let (a, links, problems) = run();
        let total: usize = sizes.iter().product();
        let excluded = if exclude_first { total / sizes[0] } else { 0 };
        prop_assert_eq!(problems, 0);
        prop_assert_eq!(links as usize, total - excluded);
        prop_assert_eq!(a.len(), total - excluded);
        prop_assert_eq!(a.iter().collect::<HashSet<_>>().len(), a.len());
        prop_assert_eq!(run().0, a);
    }
}

/// The parallel walk must give exactly the sequential result: same links, same order,
/// same problems and warnings (a hash-suffixed collision and a GA4 warning included).
#[test]
fn parallel_walk_equals_sequential_walk() {
    let dir = tempfile::tempdir().unwrap();
    let vals = |p: &str, n: usize| {
        (0..n)
            .map(|i| format!("\"{p}{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let toml = format!(
        "[link]\ndomain = \"go.x.example\"\ndestination = \"https://x.example/{{a}}\"\nslug = \"{{a}}-{{b}}-{{c}}\"\nslug_collision = \"hash\"\n\
         [utm]\nmedium = \"{{c}}\"\n\
         [[dimension]]\nname = \"a\"\nvalues = [{}]\n[[dimension]]\nname = \"b\"\nvalues = [{}, \"b1x\"]\n[[dimension]]\nname = \"c\"\nvalues = [{}]\n\
         [[exclude]]\nb = \"b3\"\n[[override]]\nmatch = {{ a = \"a1\" }}\nslug = \"same-{{b}}\"\n",
        vals("a", 40),
        vals("b", 30),
        vals("c", 25)
    );
    let path = dir.path().join("s.toml");
    std::fs::write(&path, toml).unwrap();
    let (spec, _) = nimriz_matrix_core::spec::load(&path).unwrap();
    let run = |threads| {
        let mut out = Vec::new();
        let r = nimriz_matrix_core::plan::walk::walk_on_threads(
            &spec,
            threads,
            |l| serde_json::to_string(l).unwrap(),
            |_, s| {
                out.push(s);
                Ok(())
            },
        )
        .unwrap();
        (
            out,
            r.summary.links,
            r.summary.hash_suffixed,
            r.warnings,
            r.problem_count,
        )
    };
    let seq = run(1);
    assert!(seq.1 > 20_000, "big enough to span many chunks");
    assert!(seq.2 > 0, "the override makes collisions that get hashed");
    assert!(!seq.3.is_empty(), "unassigned media warn");
    assert_eq!(seq.4, 0);
    for threads in [2, 3, 4] {
        assert_eq!(run(threads), seq, "{threads} threads differ from 1");
    }
    // The writers' walk (buffers reused from link to link, bytes straight into the
    // chunk, hash-suffixed links re-encoded on the collector) writes the same lines.
    for threads in [1, 2, 3] {
        let mut lines = Vec::new();
        let r = nimriz_matrix_core::plan::walk::walk_bytes_on_threads(
            &spec,
            threads,
            |l, out| serde_json::to_writer(out, l).unwrap(),
            |(), bytes| {
                lines.push(String::from_utf8(bytes.to_vec()).unwrap());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(lines, seq.0, "walk_bytes on {threads} thread(s)");
        assert_eq!(
            (
                r.summary.links,
                r.summary.hash_suffixed,
                r.warnings,
                r.problem_count
            ),
            (seq.1, seq.2, seq.3.clone(), seq.4)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A damaged spec is an error, never a panic: drop a line of the example, or overwrite
    /// a slice of it with junk, and load + walk it.
    #[test]
    fn damaged_specs_never_panic(line in 0usize..80, at in 0usize..3000, junk in "\\PC{0,12}", drop in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let root = test_support::repo();
        std::fs::copy(root.join("brands.csv"), dir.path().join("brands.csv")).unwrap();
        let text = std::fs::read_to_string(root.join("matrix.example.toml")).unwrap();
        let damaged = if drop {
            text.lines().enumerate().filter(|(i, _)| *i != line).map(|(_, l)| l).collect::<Vec<_>>().join("\n")
        } else {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) { at -= 1; }
            let mut end = (at + junk.len()).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            format!("{}{}{}", &text[..at], junk, &text[end..])
        };
        let path = dir.path().join("s.toml");
        std::fs::write(&path, damaged).unwrap();
        if let Ok((spec, _)) = nimriz_matrix_core::spec::load(&path) {
            let _ = nimriz_matrix_core::plan::walk::walk(&spec, |_| Ok(()));
        }
    }
}
