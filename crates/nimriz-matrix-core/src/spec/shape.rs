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

/// What the shape check found, and how to read on past it.
#[derive(Debug, Default)]
pub struct ShapeCheck {
    pub problems: Vec<Problem>,
    /// The problems are TOML syntax errors: nothing can be read past them.
    pub syntax: bool,
    /// The text with every unknown field blanked out (same length, same lines: every span
    /// still points at the same place), for reading the rest of the spec in the same pass.
    pub without_unknown: String,
    /// The fields the unknown ones were probably meant to be ("did you mean"): a later
    /// problem saying one of them is missing is caused by the typo, not a second problem.
    pub meant: Vec<String>,
}

/// Every syntax error and unknown field in the document (no problems when its shape is
/// right), plus what the rest of the load needs to go on past unknown fields.
pub fn check_all(source: &SourceFile) -> ShapeCheck {
    let (doc, errors) = DeTable::parse_recoverable(&source.text);
    if !errors.is_empty() {
        let problems = errors
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
        return ShapeCheck {
            problems,
            syntax: true,
            without_unknown: source.text.clone(),
            meant: Vec::new(),
        };
    }
    let mut found = Found::default();
    check_table(source, doc.get_ref(), &spec_shape(), "", &mut found);
    found.problems.sort_by_key(|p| (p.line, p.column));
    let mut text = source.text.clone().into_bytes();
    for (range, whole_table) in &found.unknown {
        blank(&mut text, range.clone(), *whole_table);
    }
    ShapeCheck {
        problems: found.problems,
        syntax: false,
        // Only ASCII spaces replace bytes, newlines stay: still UTF-8.
        without_unknown: String::from_utf8_lossy(&text).into_owned(),
        meant: found.meant,
    }
}

#[derive(Default)]
struct Found {
    problems: Vec<Problem>,
    /// Byte range of each unknown field (key through value), and whether it is a table
    /// (then its whole body goes, up to the next header).
    unknown: Vec<(std::ops::Range<usize>, bool)>,
    meant: Vec<String>,
}

/// Blank `range` (whole lines); a table runs on to the next `[header]` line.
fn blank(text: &mut [u8], range: std::ops::Range<usize>, whole_table: bool) {
    let len = text.len();
    let start = text[..range.start.min(len)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = |at: usize| {
        text[at.min(len)..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(len, |i| at + i)
    };
    let mut end = line_end(range.end.saturating_sub(1).max(range.start));
    if whole_table {
        while end < len {
            let next = end + 1;
            let next_end = line_end(next);
            let line = String::from_utf8_lossy(&text[next..next_end]).into_owned();
            if line.trim_start().starts_with('[') {
                break;
            }
            end = next_end;
        }
    }
    for b in &mut text[start..end] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

fn check_table(
    source: &SourceFile,
    table: &DeTable<'_>,
    shape: &Shape,
    path: &str,
    found: &mut Found,
) {
    let Shape { fields, nested } = shape;
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        if let Some((_, inner)) = nested.iter().find(|(f, _)| *f == name) {
            let inner_path = format!("{path}{name}.");
            match value.get_ref() {
                DeValue::Table(t) => check_table(source, t, inner, &inner_path, found),
                // [[dimension]] / [[override]]: an array of tables.
                DeValue::Array(items) => {
                    for item in items {
                        if let DeValue::Table(t) = item.get_ref() {
                            check_table(source, t, inner, &inner_path, found);
                        }
                    }
                }
                _ => {}
            }
        } else if !fields.contains(&name) {
            let suggestion = closest(name, fields.iter().copied());
            if let Some(c) = suggestion {
                found.meant.push(c.to_string());
            }
            let whole_table = matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_))
                && source.text[..key.span().start]
                    .rsplit('\n')
                    .next()
                    .is_some_and(|l| l.trim_start().starts_with('['));
            found.unknown.push((
                key.span().start..value.span().end.max(key.span().end),
                whole_table,
            ));
            let help = match suggestion {
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
            found.problems.push(
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
