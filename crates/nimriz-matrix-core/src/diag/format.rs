//! Diagnostics for machines: JSON (our documented schema, `schema/diagnostics.schema.json`),
//! GitHub workflow commands (annotations on the spec's lines) and SARIF 2.1.0 (code
//! scanning). The human form is [`Report::render`](super::Report::render).
//!
//! Each problem gets a stable rule id (`lowercase`, `allowed-values`, `collision`, …), used
//! as SARIF's `ruleId` and GitHub's annotation title. Problems do not carry a kind of their
//! own yet, so the id is read from the message's wording, which the spec checker keeps
//! stable (the tests below pin every rule to a real message).

use super::Problem;
use serde_json::{Value, json};

/// Version of the JSON diagnostics document.
pub const JSON_VERSION: u32 = 1;

/// `(rule id, what it checks)`; the order is the order of [`rule_id`]'s tests.
pub const RULES: &[(&str, &str)] = &[
    (
        "syntax",
        "The spec or an input file cannot be read or parsed.",
    ),
    (
        "unknown-field",
        "A field or column the spec format does not have.",
    ),
    (
        "placeholder",
        "A template placeholder that names nothing, or is not closed.",
    ),
    (
        "dimension",
        "A dimension, its values or its keys are malformed.",
    ),
    ("csv", "A CSV input file is malformed."),
    ("reserved-slug", "The slug is reserved by Nimriz."),
    (
        "collision",
        "Two cells produce the same slug on the same short domain.",
    ),
    ("slug", "The slug is empty, too short or not a valid slug."),
    ("lowercase", "A UTM value must be lowercase."),
    (
        "allowed-values",
        "A UTM value is not in the spec's allowed list.",
    ),
    ("utm-space", "A UTM value contains a space."),
    (
        "required-utm",
        "A UTM parameter the rules require is missing or empty.",
    ),
    (
        "utm-conflict",
        "The destination already carries a UTM parameter the spec sets.",
    ),
    (
        "redirect-loop",
        "The destination points at a short domain (a redirect loop).",
    ),
    (
        "control-character",
        "A value contains a control, NUL or bidi-override character.",
    ),
    (
        "destination",
        "The destination is not an acceptable https URL.",
    ),
    ("domain", "A short domain or domain id is malformed."),
    ("expiry", "An expiry that is not a valid date-time."),
    ("redirect", "A redirect status other than 301 or 302."),
    (
        "too-many-links",
        "The matrix expands to more links than the limit.",
    ),
    ("rules", "A rule in [rules] is malformed."),
    ("spec", "Any other problem in the spec."),
    (
        "run",
        "The command failed for a reason outside the spec (I/O, API, usage).",
    ),
];

/// The rule a problem breaks; see the module docs.
pub fn rule_id(p: &Problem) -> &'static str {
    if p.file.is_empty() {
        return "run";
    }
    let m = p.message.as_str();
    let has = |s: &str| m.contains(s);
    if has("cannot read") || m.starts_with("invalid spec") || has("could not be read") {
        "syntax"
    } else if has("unknown field") || has("unknown UTM field") || has("unknown column") {
        "unknown-field"
    } else if has("placeholder") || has("unclosed `{") || has("unmatched `}") {
        "placeholder"
    } else if has("CSV") {
        "csv"
    } else if has("reserved by Nimriz") {
        "reserved-slug"
    } else if has("produced by two cells") || has("same keys as line") {
        "collision"
    } else if m.starts_with("slug ") || m.starts_with("slug template") {
        "slug"
    } else if has("control character") || has("bidi") || has("NUL") {
        "control-character"
    } else if has("is not lowercase") {
        "lowercase"
    } else if has("is not an allowed value") {
        "allowed-values"
    } else if has("contains a space") {
        "utm-space"
    } else if m.starts_with("required ") {
        "required-utm"
    } else if has("redirect loop") {
        "redirect-loop"
    } else if m.starts_with("destination") && has("already has") {
        "utm-conflict"
    } else if m.starts_with("destination") {
        "destination"
    } else if has("dimension") || has("needs a key") {
        "dimension"
    } else if has("domain") {
        "domain"
    } else if has("expires_at") {
        "expiry"
    } else if m.starts_with("redirect") {
        "redirect"
    } else if has("combinations") {
        "too-many-links"
    } else if m.starts_with("rules.") || has("rule `") {
        "rules"
    } else {
        "spec"
    }
}

/// A problem's message with its fix, on one line.
fn full_message(p: &Problem) -> String {
    match &p.help {
        Some(h) => format!("{} — {h}", p.message),
        None => p.message.clone(),
    }
}

/// Our JSON document: `{version, tool, errors: [...], warnings: [...], summary}`.
pub fn json_document(errors: &[Problem], unlisted: usize, warnings: &[String]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|p| {
            json!({
                "rule": rule_id(p),
                "message": p.message,
                "help": p.help,
                "file": p.file,
                "line": (p.line > 0).then_some(p.line),
                "column": (p.line > 0).then_some(p.column),
                "snippet": p.snippet,
            })
        })
        .collect();
    json!({
        "version": JSON_VERSION,
        "tool": { "name": "nimriz-matrix", "version": env!("CARGO_PKG_VERSION") },
        "summary": {
            "errors": errors.len() + unlisted,
            "unlisted": unlisted,
            "warnings": warnings.len(),
        },
        "errors": errors,
        "warnings": warnings.iter().map(|w| json!({ "message": w })).collect::<Vec<_>>(),
    })
}

/// GitHub's escaping for a command's message (`%`, CR, LF).
pub fn github_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping for a command's property value (also `:` and `,`).
pub fn github_escape_property(s: &str) -> String {
    github_escape_data(s)
        .replace(':', "%3A")
        .replace(',', "%2C")
}

/// One `::error file=…,line=…,col=…,title=…::message` per problem, `::warning::…` per
/// warning. Every piece of spec text is escaped, so no value can start a command of its own.
pub fn github_lines(errors: &[Problem], unlisted: usize, warnings: &[String]) -> String {
    let mut out = String::new();
    for p in errors {
        let mut props = Vec::new();
        if !p.file.is_empty() {
            props.push(format!("file={}", github_escape_property(&p.file)));
        }
        if p.line > 0 && !p.file.is_empty() {
            props.push(format!("line={}", p.line));
            props.push(format!("col={}", p.column.max(1)));
        }
        props.push(format!(
            "title={}",
            github_escape_property(&format!("nimriz-matrix: {}", rule_id(p)))
        ));
        out.push_str(&format!(
            "::error {}::{}\n",
            props.join(","),
            github_escape_data(&full_message(p))
        ));
    }
    if unlisted > 0 {
        out.push_str(&format!(
            "::error title=nimriz-matrix::{unlisted} more problem(s) not listed; run `nimriz-matrix validate` locally to see them\n"
        ));
    }
    for w in warnings {
        out.push_str(&format!(
            "::warning title=nimriz-matrix::{}\n",
            github_escape_data(w)
        ));
    }
    out
}

/// A SARIF 2.1.0 log with one run: the rule catalogue, one result per problem (level
/// `error`) and per warning (level `warning`).
pub fn sarif_document(errors: &[Problem], unlisted: usize, warnings: &[String]) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(id, text)| {
            json!({
                "id": id,
                "name": id,
                "shortDescription": { "text": text },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let index = |id: &str| RULES.iter().position(|(r, _)| *r == id).unwrap_or(0);
    let mut results: Vec<Value> = errors
        .iter()
        .map(|p| {
            let id = rule_id(p);
            let mut region = serde_json::Map::new();
            if p.line > 0 {
                region.insert("startLine".into(), json!(p.line));
                region.insert("startColumn".into(), json!(p.column.max(1)));
                if let Some(s) = &p.snippet {
                    region.insert("snippet".into(), json!({ "text": s }));
                }
            }
            let mut physical = json!({ "artifactLocation": { "uri": sarif_uri(&p.file) } });
            if !region.is_empty() {
                physical["region"] = Value::Object(region);
            }
            let mut result = json!({
                "ruleId": id,
                "ruleIndex": index(id),
                "level": "error",
                "message": { "text": full_message(p) },
            });
            if !p.file.is_empty() {
                result["locations"] = json!([{ "physicalLocation": physical }]);
            }
            result
        })
        .collect();
    if unlisted > 0 {
        results.push(json!({
            "ruleId": "spec",
            "ruleIndex": index("spec"),
            "level": "error",
            "message": { "text": format!("{unlisted} more problem(s) not listed") },
        }));
    }
    for w in warnings {
        results.push(json!({
            "ruleId": "spec",
            "ruleIndex": index("spec"),
            "level": "warning",
            "message": { "text": w },
        }));
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "nimriz-matrix",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/nimriz/nimriz-matrix",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// A relative URI reference for a file name as the spec reader shows it (`/` separators,
/// spaces and `%` percent-encoded).
fn sarif_uri(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for c in file.replace('\\', "/").chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '~' | '/' => out.push(c),
            c => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(message: &str) -> Problem {
        Problem {
            file: "spec.toml".into(),
            line: 3,
            column: 7,
            message: message.into(),
            help: Some("fix it".into()),
            snippet: Some("x = 1".into()),
        }
    }

    #[test]
    fn rule_ids_follow_the_checker_wording() {
        let cases = [
            ("invalid spec: expected `=`", "syntax"),
            ("unknown field `link.slgu`", "unknown-field"),
            ("unknown UTM field `sorce`", "unknown-field"),
            (
                "unknown placeholder `{chanel}`: there is no dimension `chanel`",
                "placeholder",
            ),
            (
                "CSV row has 3 field(s) but the header has 4 (ragged row)",
                "csv",
            ),
            ("slug `admin` is reserved by Nimriz", "reserved-slug"),
            (
                "slug `a-b` on `go.example` is produced by two cells: x and y",
                "collision",
            ),
            ("slug `ab` is shorter than 3 characters", "slug"),
            ("utm_source `Google` is not lowercase", "lowercase"),
            ("utm_medium `tv` is not an allowed value", "allowed-values"),
            ("utm_campaign `a b` contains a space", "utm-space"),
            ("required utm_source is missing or empty", "required-utm"),
            (
                "destination `https://go.x/a` points at the short domain `go.x` (a redirect loop)",
                "redirect-loop",
            ),
            (
                "destination `https://x/?utm_source=a` already has utm_source=a, which the spec also sets",
                "utm-conflict",
            ),
            (
                "destination `ftp://x` uses `ftp:`, which Nimriz refuses",
                "destination",
            ),
            ("dimension `brand` has no values", "dimension"),
            ("domain_id `x` is not a UUID", "domain"),
            ("expires_at `soon` is not a valid date-time", "expiry"),
            ("redirect = 307 is not supported", "redirect"),
            (
                "the matrix has 9 combinations (3 × 3), more than the limit of 5",
                "too-many-links",
            ),
        ];
        for (message, rule) in cases {
            assert_eq!(rule_id(&p(message)), rule, "{message}");
            assert!(RULES.iter().any(|(r, _)| *r == rule));
        }
    }

    #[test]
    fn github_commands_cannot_be_injected_from_spec_text() {
        let evil = Problem {
            file: "a,b:c.toml".into(),
            message: "value `x\n::error::pwned 100%`".into(),
            ..p("x")
        };
        let out = github_lines(&[evil], 0, &["w\r\n::warning::x".into()]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.starts_with(
                "::error file=a%2Cb%3Ac.toml,line=3,col=7,title=nimriz-matrix%3A spec::"
            )
        );
        assert!(out.contains("x%0A::error::pwned 100%25"));
        assert!(out.contains("w%0D%0A::warning::x"));
    }
}
