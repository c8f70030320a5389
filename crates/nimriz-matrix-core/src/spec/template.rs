//! Placeholder templates: `https://{brand.site}/spring?c={campaign.name}`.
//!
//! `{dim}` is the dimension value's key, `{dim.attr}` one of its attributes, `{campaign.x}`
//! a campaign field; `{{` and `}}` are literal braces. Templates are checked once against
//! the dimensions, so rendering a cell can't fail.

use super::model::Dimension;
use crate::diag::Location;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Key(usize),
    Attr(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// The template as written (for messages and the manifest).
    pub text: String,
    pub location: Location,
}

/// Why a template could not be compiled; `offset` is the byte offset inside the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

impl Template {
    /// A fixed string (CSV row values, flags): no placeholders are interpreted.
    pub fn literal(text: impl Into<String>, location: Location) -> Self {
        // No segments: `text` is the rendering (one copy, no list: a 950k-row CSV makes
        // ten of these per row).
        Template {
            segments: Vec::new(),
            text: text.into(),
            location,
        }
    }

    pub fn parse(
        text: &str,
        location: Location,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: format!("unmatched `}}` in template `{text}`"),
                        help: Some("write `}}` for a literal brace".into()),
                    });
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: format!("unclosed `{{` in template `{text}`"),
                            help: Some(
                                "close the placeholder with `}`, or write `{{` for a literal brace"
                                    .into(),
                            ),
                        });
                    };
                    let name = rest[..end].trim();
                    for _ in 0..rest[..end].chars().count() + 1 {
                        chars.next();
                    }
                    let seg =
                        resolve(name, dims, campaign).map_err(|(message, help)| TemplateError {
                            offset: i,
                            message,
                            help,
                        })?;
                    match seg {
                        Segment::Literal(s) => lit.push_str(&s),
                        other => {
                            if !lit.is_empty() {
                                segments.push(Segment::Literal(std::mem::take(&mut lit)));
                            }
                            segments.push(other);
                        }
                    }
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Literal(lit));
        }
        Ok(Template {
            segments,
            text: text.to_string(),
            location,
        })
    }

    /// Append the rendering for `cell` (one value index per dimension) to `out`.
    pub fn render_into(&self, dims: &[Dimension], cell: &[usize], out: &mut String) {
        if self.segments.is_empty() {
            // A literal (or the empty template, whose text is empty too).
            out.push_str(&self.text);
            return;
        }
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Key(d) => out.push_str(&dims[*d].values[cell[*d]].key),
                Segment::Attr(d, a) => {
                    if let Some(Some(v)) = dims[*d].values[cell[*d]].attrs.get(*a) {
                        out.push_str(v);
                    }
                }
            }
        }
    }

    pub fn render(&self, dims: &[Dimension], cell: &[usize]) -> String {
        let mut s = String::new();
        self.render_into(dims, cell, &mut s);
        s
    }

    /// Dimensions this template reads (used to tell whether a slug template can tell
    /// cells apart).
    pub fn dimensions_used(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Key(d) | Segment::Attr(d, _) => Some(*d),
            Segment::Literal(_) => None,
        })
    }
}

type ResolveError = (String, Option<String>);

fn resolve(
    name: &str,
    dims: &[Dimension],
    campaign: &BTreeMap<String, String>,
) -> Result<Segment, ResolveError> {
    if name.is_empty() {
        return Err((
            "empty placeholder `{}`".into(),
            Some("name a dimension, e.g. `{brand}` or `{channel.source}`".into()),
        ));
    }
    let (head, attr) = match name.split_once('.') {
        Some((h, a)) => (h.trim(), Some(a.trim())),
        None => (name, None),
    };
    if head == "campaign" {
        let Some(field) = attr else {
            return Err((
                "`{campaign}` needs a field".into(),
                Some("write `{campaign.name}` (or another field of [campaign])".into()),
            ));
        };
        return match campaign.get(field) {
            Some(v) => Ok(Segment::Literal(v.clone())),
            None => Err((
                format!("unknown placeholder `{{campaign.{field}}}`: [campaign] has no `{field}`"),
                Some(format!(
                    "[campaign] fields: {}",
                    list_or_none(campaign.keys().map(String::as_str))
                )),
            )),
        };
    }
    let Some(d) = dims.iter().position(|d| d.name == head) else {
        let mut names: Vec<&str> = dims.iter().map(|d| d.name.as_str()).collect();
        names.push("campaign.<field>");
        return Err((
            format!("unknown placeholder `{{{name}}}`: there is no dimension `{head}`"),
            Some(match closest(head, dims.iter().map(|d| d.name.as_str())) {
                Some(c) => format!(
                    "did you mean `{{{c}{}}}`?",
                    attr.map(|a| format!(".{a}")).unwrap_or_default()
                ),
                None => format!("known names: {}", list_or_none(names.into_iter())),
            }),
        ));
    };
    let dim = &dims[d];
    match attr {
        None | Some("key") => Ok(Segment::Key(d)),
        Some(a) => {
            let Some(ai) = dim.attr_names.iter().position(|n| n == a) else {
                return Err((
                    format!(
                        "unknown placeholder `{{{name}}}`: dimension `{head}` has no attribute `{a}`"
                    ),
                    Some(
                        match closest(a, dim.attr_names.iter().map(String::as_str)) {
                            Some(c) => format!("did you mean `{{{head}.{c}}}`?"),
                            None => format!(
                                "attributes of `{head}`: {}",
                                list_or_none(dim.attr_names.iter().map(String::as_str))
                            ),
                        },
                    ),
                ));
            };
            let missing: Vec<&str> = dim
                .values
                .iter()
                .filter(|v| v.attrs.get(ai).is_none_or(Option::is_none))
                .map(|v| v.key.as_str())
                .collect();
            if !missing.is_empty() {
                return Err((
                    format!(
                        "`{{{name}}}` is missing for {} value(s) of `{head}`: {}",
                        missing.len(),
                        preview(&missing)
                    ),
                    Some(format!("give every `{head}` value a `{a}`")),
                ));
            }
            Ok(Segment::Attr(d, ai))
        }
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

fn preview(items: &[&str]) -> String {
    let mut s = items
        .iter()
        .take(5)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" and {} more", items.len() - 5));
    }
    s
}

/// The closest name by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len().max(word.len()))
        .min()
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
