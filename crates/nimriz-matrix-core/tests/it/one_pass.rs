//! One problem, one message, all in one run: an unknown field does not hide the value and
//! placeholder problems behind it, and a typo of a required field is not reported a second
//! time as that field missing.

use nimriz_matrix_core::diag::Report;

fn problems(spec: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spring.toml");
    std::fs::write(&path, spec).unwrap();
    nimriz_matrix_core::spec::load(&path).expect_err("the spec has problems")
}

const GOOD_TAIL: &str = r#"
[[dimension]]
name = "channel"
values = ["email", "social"]
"#;

#[test]
fn unknown_field_bad_value_and_unknown_placeholder_in_one_report() {
    let spec = format!(
        r#"[campaign]
name = "spring"

[link]
domain = "go.acme.example"
destination = "https://acme.example/{{chanel}}"
slug = "spring-{{channel}}"
slug_colision = "hash"
utm_conflict = "sometimes"
{GOOD_TAIL}"#
    );
    let report = problems(&spec);
    let lines: Vec<usize> = report.problems.iter().map(|p| p.line).collect();
    let text = report.render();
    assert_eq!(lines, vec![6, 8, 9], "{text}");
    assert!(
        text.contains("unknown field `link.slug_colision`"),
        "{text}"
    );
    assert!(text.contains("did you mean `slug_collision`?"), "{text}");
    assert!(text.contains("chanel"), "{text}");
    assert!(text.contains("unknown utm_conflict `sometimes`"), "{text}");
    assert!(text.contains("3 problems found"), "{text}");
}

#[test]
fn a_typo_of_a_required_field_is_one_problem() {
    let spec = format!(
        r#"[link]
domain = "go.acme.example"
destinaton = "https://acme.example/"
slug = "spring-{{channel}}"
{GOOD_TAIL}"#
    );
    let report = problems(&spec);
    let text = report.render();
    assert_eq!(report.problems.len(), 1, "{text}");
    assert_eq!(report.problems[0].line, 3, "{text}");
    assert!(text.contains("did you mean `destination`?"), "{text}");
}

#[test]
fn an_unknown_table_does_not_spill_its_keys_into_the_table_above() {
    let spec = format!(
        r#"[link]
domain = "go.acme.example"
destination = "https://acme.example/"
slug = "spring-{{channel}}"

[utms]
source = "{{channel}}"
medium = "email"
{GOOD_TAIL}"#
    );
    let report = problems(&spec);
    let text = report.render();
    assert_eq!(report.problems.len(), 1, "{text}");
    assert!(text.contains("unknown field `utms`"), "{text}");
}

#[test]
fn syntax_errors_still_come_alone() {
    let report = problems("[link\ndomain = \"x\"\n");
    assert!(
        report.render().contains("invalid spec"),
        "{}",
        report.render()
    );
}
