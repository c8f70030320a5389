//! Check the spec's shape before typed parsing: every TOML syntax error, and every unknown
//! field anywhere, reported at once with its place and a "did you mean". (Typed parsing
//! stops at its first error; marketers fix typos faster when they see all of them.)

use super::Problem;
use super::source::SourceFile;
use super::template::closest;
use toml::de::{DeTable, DeValue};

/// What a table may contain. `Free` tables (campaign fields, UTM names, match keys) are
/// checked later, against the dimensions.
enum Shape {
    Free,
    Fields(&'static [(&'static str, Shape)]),
}

use Shape::{Fields, Free};

const LINK: &[(&str, Shape)] = &[
    ("domain", Free),
    ("domain_id", Free),
    ("destination", Free),
    ("slug", Free),
    ("tags", Free),
    ("space", Free),
    ("redirect", Free),
    ("expires_at", Free),
    ("utm_conflict", Free),
    ("slug_collision", Free),
];
const RULES: &[(&str, Shape)] = &[
    ("lowercase", Free),
    ("required", Free),
    ("allowed", Free),
    ("max_slug_length", Free),
    ("min_slug_length", Free),
    ("max_utm_length", Free),
    ("max_destination_length", Free),
    ("no_spaces", Free),
    ("allow_http", Free),
    ("ga4_channel_check", Free),
];
const DIMENSION: &[(&str, Shape)] = &[
    ("name", Free),
    ("values", Free),
    ("from", Free),
    ("key_column", Free),
];
const OVERRIDE: &[(&str, Shape)] = &[
    ("match", Free),
    ("domain", Free),
    ("domain_id", Free),
    ("destination", Free),
    ("slug", Free),
    ("tags", Free),
    ("space", Free),
    ("redirect", Free),
    ("expires_at", Free),
    ("utm", Free),
];
const SPEC: &[(&str, Shape)] = &[
    ("campaign", Free),
    ("link", Fields(LINK)),
    ("utm", Free),
    ("rules", Fields(RULES)),
    ("dimension", Fields(DIMENSION)),
    ("rows", Fields(&[("from", Free)])),
    ("exclude", Free),
    ("override", Fields(OVERRIDE)),
];

/// Every syntax error and unknown field in the document; empty when its shape is right.
pub fn check(source: &SourceFile) -> Vec<Problem> {
    let (doc, errors) = DeTable::parse_recoverable(&source.text);
    if !errors.is_empty() {
        return errors
            .iter()
            .map(|e| {
                let loc = e
                    .span()
                    .map_or_else(|| source.whole(), |s| source.locate(&s));
                loc.problem(
                    format!("invalid spec: {}", e.message().trim()),
                    Some("fix the TOML syntax at this position".into()),
                )
            })
            .collect();
    }
    let mut problems = Vec::new();
    check_table(source, doc.get_ref(), SPEC, "", &mut problems);
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn check_table(
    source: &SourceFile,
    table: &DeTable<'_>,
    fields: &[(&str, Shape)],
    path: &str,
    problems: &mut Vec<Problem>,
) {
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        match fields.iter().find(|(f, _)| *f == name) {
            Some((_, Free)) => {}
            Some((_, Fields(inner))) => {
                let inner_path = format!("{path}{name}.");
                match value.get_ref() {
                    DeValue::Table(t) => check_table(source, t, inner, &inner_path, problems),
                    // [[dimension]] / [[override]]: an array of tables.
                    DeValue::Array(items) => {
                        for item in items {
                            if let DeValue::Table(t) = item.get_ref() {
                                check_table(source, t, inner, &inner_path, problems);
                            }
                        }
                    }
                    _ => {}
                }
            }
            None => {
                let names = fields.iter().map(|(f, _)| *f);
                let help = match closest(name, names.clone()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "{} can hold: {}",
                        if path.is_empty() {
                            "a spec".to_string()
                        } else {
                            format!("`{}`", path.trim_end_matches('.'))
                        },
                        names
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                problems.push(
                    source
                        .locate(&key.span())
                        .problem(format!("unknown field `{path}{name}`"), Some(help)),
                );
            }
        }
    }
}
