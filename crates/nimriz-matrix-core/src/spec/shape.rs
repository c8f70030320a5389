//! Check the spec's shape before typed parsing: every TOML syntax error, and every unknown
//! field anywhere, reported at once with its place and a "did you mean". (Typed parsing
//! stops at its first error; marketers fix typos faster when they see all of them.)

use super::raw::{RawDimension, RawLinkFields, RawOverride, RawRows, RawRules, RawSpec};
use super::template::closest;
use crate::diag::Problem;
use crate::diag::SourceFile;
use toml::de::{DeTable, DeValue};

/// What a typed table may contain: its fields, and which of them hold typed tables
/// themselves. Other fields' contents (campaign fields, UTM names, match keys) are checked
/// later, against the dimensions.
struct Shape {
    fields: &'static [&'static str],
    nested: Vec<(&'static str, Shape)>,
}

impl Shape {
    fn of<'de, T: serde::Deserialize<'de>>(nested: Vec<(&'static str, Shape)>) -> Self {
        Shape {
            fields: fields_of::<T>(),
            nested,
        }
    }
}

/// The spec's tables. Field names come from the serde structs in `raw.rs` (see
/// `fields_of`), so the two can't drift apart; only the nesting is written here.
fn spec_shape() -> Shape {
    Shape::of::<RawSpec>(vec![
        ("link", Shape::of::<RawLinkFields>(vec![])),
        ("rules", Shape::of::<RawRules>(vec![])),
        ("dimension", Shape::of::<RawDimension>(vec![])),
        ("rows", Shape::of::<RawRows>(vec![])),
        ("override", Shape::of::<RawOverride>(vec![])),
    ])
}

/// The field names a `#[derive(Deserialize)]` struct accepts, as serde declares them
/// (renames applied): ask it to deserialize from a deserializer that only listens.
fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Listen(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Listen {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut listen = Listen(&[]);
    let _ = T::deserialize(&mut listen);
    listen.0
}

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
    check_table(source, doc.get_ref(), &spec_shape(), "", &mut problems);
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn check_table(
    source: &SourceFile,
    table: &DeTable<'_>,
    shape: &Shape,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let Shape { fields, nested } = shape;
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        if let Some((_, inner)) = nested.iter().find(|(f, _)| *f == name) {
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
        } else if !fields.contains(&name) {
            let help = match closest(name, fields.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "{} can hold: {}",
                    if path.is_empty() {
                        "a spec".to_string()
                    } else {
                        format!("`{}`", path.trim_end_matches('.'))
                    },
                    fields
                        .iter()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_serde_structs_with_renames() {
        let top = fields_of::<RawSpec>();
        for f in [
            "campaign",
            "link",
            "dimension",
            "exclude",
            "override",
            "rows",
        ] {
            assert!(top.contains(&f), "{f} missing from {top:?}");
        }
        assert!(fields_of::<RawOverride>().contains(&"match"));
        assert!(fields_of::<RawLinkFields>().contains(&"slug_collision"));
    }
}
