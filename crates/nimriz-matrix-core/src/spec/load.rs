//! Read a spec file and compile it into a checked `Spec`, collecting every problem found.

use super::csv_input::io_reason;
use super::fields::{LinkFieldRefs, templates_json, toml_to_json};
use super::input::InputPolicy;
use super::model::*;
use super::raw::*;
use super::template::Template;
use crate::diag::{Location, SourceFile};
use crate::diag::{Problem, Report};
use crate::model::InputFile;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// `load_with` the default limits (no file outside the spec's folder, 256 MiB per file).
pub fn load(path: &Path) -> Result<(Spec, serde_json::Value), Report> {
    load_with(path, &InputPolicy::default())
}

/// Read and compile the spec at `path`; `policy` limits what it can make us read.
pub fn load_with(path: &Path, policy: &InputPolicy) -> Result<(Spec, serde_json::Value), Report> {
    let display = path.display().to_string();
    let bytes = super::input::read(path, policy).map_err(|e| {
        let (message, help) = match e {
            super::input::InputError::Io(e) => (
                format!("cannot read spec file `{display}`: {}", io_reason(&e)),
                "check the path; run `nimriz-matrix validate <spec.toml>`".to_string(),
            ),
            other => other.describe(&format!("spec file `{display}`")),
        };
        report(vec![Problem {
            file: display.clone(),
            line: 0,
            column: 0,
            message,
            help: Some(help),
            snippet: None,
        }])
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let dir = path.parent().unwrap_or(Path::new(""));
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut c = Compiler::new(
            dir,
            display.clone(),
            sha256,
            SourceFile::new(&display, String::new()),
        );
        c.policy = *policy;
        let spec = c.rows_only(path);
        return c.finish(spec);
    }
    // Editors on Windows (Notepad) may start a UTF-8 file with a byte-order mark: skip it.
    let mut bytes = bytes;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        report(vec![Problem {
            file: display.clone(),
            line: 0,
            column: 0,
            message: "spec file is not valid UTF-8".into(),
            help: Some("save the spec as UTF-8 text".into()),
            snippet: None,
        }])
    })?;
    let source = SourceFile::new(&display, text);
    // Unknown fields do not stop the load: they are set aside and the rest of the spec is
    // read in the same pass, so field, value and placeholder problems come in one report.
    let shape = super::shape::check_all(&source);
    if shape.syntax {
        return Err(report(shape.problems));
    }
    let raw: RawSpec = match toml::from_str(&shape.without_unknown) {
        Ok(r) => r,
        Err(e) => {
            let loc = e
                .span()
                .map_or_else(|| source.whole(), |s| source.locate(&s));
            let msg = e.message().trim().to_string();
            let help = toml_help(&msg);
            let mut problems = shape.problems;
            // "missing field `destination`" after `destinaton = …` is the typo again.
            let follow_on = shape
                .meant
                .iter()
                .any(|m| msg.contains(&format!("missing field `{m}`")));
            if !follow_on {
                problems.push(loc.problem(format!("invalid spec: {msg}"), Some(help)));
                problems.sort_by_key(|p| (p.line, p.column));
            }
            return Err(report(problems));
        }
    };
    let mut c = Compiler::new(dir, display, sha256, source);
    c.policy = *policy;
    let spec = c.compile(raw);
    if shape.problems.is_empty() {
        return c.finish(spec);
    }
    // A problem about a field the typo was meant to be (`[link] has no `destination``
    // after `destinaton = …`) is the same problem again: not reported twice.
    let caused_by_typo = |p: &Problem| {
        shape
            .meant
            .iter()
            .any(|m| p.message.contains(&format!("`{m}`")))
    };
    let mut problems = shape.problems;
    problems.extend(c.problems.drain(..).filter(|p| !caused_by_typo(p)));
    problems.sort_by_key(|p| (p.file != c.source.name, p.line, p.column));
    Err(report(problems))
}

fn toml_help(msg: &str) -> String {
    if msg.contains("unknown field") {
        // serde says: unknown field `destinaton`, expected one of `match`, `domain`, ...
        let quoted: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
        if let Some((field, expected)) = quoted.split_first()
            && let Some(close) = super::template::closest(field, expected.iter().copied())
        {
            return format!("did you mean `{close}`?");
        }
        "check the spelling; the README's spec reference lists every field".into()
    } else if msg.contains("invalid type: string") && msg.contains("expected i64") {
        "write the number without quotes, e.g. redirect = 302".into()
    } else if msg.contains("missing field") {
        "add the missing field".into()
    } else if msg.contains("invalid type") {
        "check the value's type (quoted string, number, list, or table)".into()
    } else {
        "fix the TOML syntax at this position".into()
    }
}

fn report(problems: Vec<Problem>) -> Report {
    Report {
        problems,
        ..Report::default()
    }
}

pub(super) struct Compiler<'a> {
    pub(super) dir: &'a Path,
    pub(super) display: String,
    pub(super) sha256: String,
    pub(super) source: SourceFile,
    pub(super) problems: Vec<Problem>,
    pub(super) inputs: Vec<InputFile>,
    /// Dimensions that failed to load: templates naming them are not reported again.
    pub(super) failed_dims: Vec<String>,
    /// Warnings found while compiling (not problems: the spec still builds).
    pub(super) notes: Vec<String>,
    /// Past expiries seen; only the first few get a note each (`note_past_expiry`).
    pub(super) past_expiries: usize,
    pub(super) resolved: serde_json::Map<String, serde_json::Value>,
    /// What the spec may make us read (set by the runner, never by the spec).
    pub(super) policy: InputPolicy,
}

impl<'a> Compiler<'a> {
    pub(super) fn new(dir: &'a Path, display: String, sha256: String, source: SourceFile) -> Self {
        Compiler {
            dir,
            display,
            sha256,
            source,
            problems: Vec::new(),
            inputs: Vec::new(),
            failed_dims: Vec::new(),
            notes: Vec::new(),
            past_expiries: 0,
            resolved: serde_json::Map::new(),
            policy: InputPolicy::default(),
        }
    }

    pub(super) fn finish(self, spec: Option<Spec>) -> Result<(Spec, serde_json::Value), Report> {
        match spec {
            Some(s) if self.problems.is_empty() => {
                Ok((s, serde_json::Value::Object(self.resolved)))
            }
            _ => Err(report(self.problems)),
        }
    }

    pub(super) fn loc<T>(&self, s: &Spanned<T>) -> Location {
        self.source.locate(&s.span())
    }

    pub(super) fn problem(
        &mut self,
        loc: &Location,
        msg: impl Into<String>,
        help: impl Into<Option<String>>,
    ) {
        self.problems.push(loc.problem(msg, help.into()));
    }

    pub(super) fn compile(&mut self, raw: RawSpec) -> Option<Spec> {
        let campaign = self.campaign(raw.campaign.as_ref());
        let rules = self.rules(raw.rules.as_ref());
        let (dimensions, cells) = match (&raw.rows, raw.dimensions.is_empty()) {
            (Some(rows), true) => {
                let loc = self.loc(&rows.get_ref().from);
                let file = rows.get_ref().from.get_ref().clone();
                self.resolved
                    .insert("rows".into(), serde_json::json!({ "from": file }));
                let encoding = self.encoding_field(rows.get_ref().encoding.as_ref())?;
                self.rows_csv(
                    &self.dir.join(&file),
                    &file,
                    &loc,
                    true,
                    encoding,
                    super::csv_input::EncodingSetting::Field("[rows]"),
                )?
            }
            (Some(rows), false) => {
                let loc = self.loc(rows);
                self.problem(&loc, "a spec has either [[dimension]] tables or [rows], not both", Some("keep [[dimension]] for a matrix, or [rows] for a CSV with one row per link".to_string()));
                return None;
            }
            (None, true) => {
                let loc = self.source.whole();
                self.problem(&loc, "the spec defines no dimensions", Some("add [[dimension]] tables (name + values or from = \"file.csv\"), or [rows] from = \"links.csv\"".to_string()));
                return None;
            }
            (None, false) => (self.dimensions(&raw.dimensions), Cells::Matrix),
        };
        let link_location = raw
            .link
            .as_ref()
            .map_or_else(|| self.source.whole(), |l| self.loc(l));
        let mut link = LinkTemplates::default();
        let (mut utm_conflict, mut slug_collision) = (UtmConflict::Error, SlugCollision::Error);
        if let Some(l) = &raw.link {
            let l = l.get_ref();
            link = self.link_fields(
                &LinkFieldRefs {
                    domain: l.domain.as_ref(),
                    domain_id: l.domain_id.as_ref(),
                    destination: l.destination.as_ref(),
                    slug: l.slug.as_ref(),
                    tags: l.tags.as_ref(),
                    space: l.space.as_ref(),
                    redirect: l.redirect.as_ref(),
                    expires_at: l.expires_at.as_ref(),
                    utm: None,
                },
                &dimensions,
                &campaign,
            );
            if let Some(v) = &l.utm_conflict {
                utm_conflict = match v.get_ref().as_str() {
                    "error" => UtmConflict::Error,
                    "spec" => UtmConflict::Spec,
                    "destination" => UtmConflict::Destination,
                    other => {
                        let loc = self.loc(v);
                        self.problem(&loc, format!("unknown utm_conflict `{other}`"), Some("use \"error\", \"spec\" (the spec's value replaces the destination's) or \"destination\" (keep the destination's)".to_string()));
                        UtmConflict::Error
                    }
                };
            }
            if let Some(v) = &l.slug_collision {
                slug_collision = match v.get_ref().as_str() {
                    "error" => SlugCollision::Error,
                    "hash" => SlugCollision::Hash,
                    other => {
                        let loc = self.loc(v);
                        self.problem(&loc, format!("unknown slug_collision `{other}`"), Some("use \"error\" or \"hash\" (append a short stable hash to later colliding slugs)".to_string()));
                        SlugCollision::Error
                    }
                };
            }
        }
        if let Some(u) = &raw.utm {
            link.utm = self.utm_table(u, &dimensions, &campaign);
        }
        // Campaign-level redirect / expiry are defaults for [link].
        if link.redirect.is_none()
            && let Some(v) = raw
                .campaign
                .as_ref()
                .and_then(|c| c.get_ref().get("redirect"))
        {
            link.redirect = self.redirect_value(v);
        }
        if link.expires_at.is_none()
            && let Some(v) = raw
                .campaign
                .as_ref()
                .and_then(|c| c.get_ref().get("expires_at"))
        {
            link.expires_at = self.expiry_value(v);
        }
        let rows_mode = matches!(cells, Cells::Rows(_));
        if link.slug.is_none() {
            let text = dimensions
                .iter()
                .map(|d| format!("{{{}}}", d.name))
                .collect::<Vec<_>>()
                .join("-");
            link.slug = Template::parse(&text, link_location.clone(), &dimensions, &campaign).ok();
        }
        if !rows_mode {
            if raw.link.is_none() {
                let loc = self.source.whole();
                self.problem(
                    &loc,
                    "the spec has no [link] table",
                    Some(
                        "add [link] with at least `destination` and `domain` (or `domain_id`)"
                            .to_string(),
                    ),
                );
            } else {
                let given = raw.link.as_ref().map(Spanned::get_ref);
                if given.is_some_and(|l| l.destination.is_none()) {
                    self.problem(
                        &link_location,
                        "[link] has no `destination`",
                        Some("add e.g. destination = \"https://{brand.site}/spring\"".to_string()),
                    );
                }
                if given.is_some_and(|l| l.domain.is_none() && l.domain_id.is_none()) {
                    self.problem(&link_location, "[link] names no short domain", Some("add domain = \"go.example.com\" (a short host, may be a template like \"{brand.short_domain}\") or domain_id = \"<uuid>\"".to_string()));
                }
            }
        }
        let excludes = raw
            .excludes
            .iter()
            .filter_map(|e| {
                let loc = self.loc(e);
                self.matcher(e.get_ref(), &dimensions, &loc)
                    .map(|matches| Exclude {
                        matches,
                        location: loc,
                    })
            })
            .collect();
        let overrides = raw
            .overrides
            .iter()
            .filter_map(|o| self.override_(o, &dimensions, &campaign))
            .collect();
        let moved = self.moved(&raw.moved);
        self.resolved.insert(
            "rules".into(),
            serde_json::to_value(&rules).unwrap_or_default(),
        );
        self.resolved.insert(
            "campaign".into(),
            serde_json::to_value(&campaign).unwrap_or_default(),
        );
        self.resolved.insert("link".into(), templates_json(&link));
        self.resolved.insert(
            "dimensions".into(),
            serde_json::Value::Array(
                dimensions
                    .iter()
                    .map(|d| serde_json::json!({"name": d.name, "keys": d.values.iter().map(|v| &v.key).collect::<Vec<_>>()}))
                    .collect(),
            ),
        );
        self.resolved.insert(
            "excludes".into(),
            serde_json::Value::Array(
                raw.excludes
                    .iter()
                    .map(|e| toml_to_json(e.get_ref()))
                    .collect(),
            ),
        );
        self.resolved.insert(
            "overrides".into(),
            serde_json::Value::Array(
                raw.overrides
                    .iter()
                    .map(|o| serde_json::json!({"match": toml_to_json(o.get_ref().matcher.get_ref()), "line": self.loc(o).line}))
                    .collect(),
            ),
        );
        self.resolved.insert(
            "utm_conflict".into(),
            serde_json::to_value(utm_conflict).unwrap_or_default(),
        );
        self.resolved.insert(
            "slug_collision".into(),
            serde_json::to_value(slug_collision).unwrap_or_default(),
        );
        Some(Spec {
            path_display: self.display.clone(),
            sha256: self.sha256.clone(),
            inputs: self.inputs.clone(),
            campaign,
            dimensions,
            cells,
            link,
            overrides,
            excludes,
            rules,
            utm_conflict,
            slug_collision,
            moved,
            link_location,
            notes: self.finished_notes(),
        })
    }

    /// `[[moved]]`: both slugs non-empty and different, each `to` named once.
    fn moved(&mut self, raw: &[toml::Spanned<super::raw::RawMoved>]) -> Vec<crate::model::Moved> {
        let mut out: Vec<crate::model::Moved> = Vec::new();
        for m in raw {
            let loc = self.loc(m);
            let (from, to) = (
                m.get_ref().from.get_ref().trim(),
                m.get_ref().to.get_ref().trim(),
            );
            if from.is_empty() || to.is_empty() {
                self.problem(
                    &loc,
                    "[[moved]] needs a non-empty `from` and `to` slug",
                    Some("e.g. from = \"acme-email-v1\", to = \"acme-newsletter-v1\"".to_string()),
                );
            } else if from == to {
                self.problem(
                    &loc,
                    format!("[[moved]] moves {from:?} to itself"),
                    Some("remove the entry, or name the new slug in `to`".to_string()),
                );
            } else if out.iter().any(|o| o.to == to) {
                self.problem(
                    &loc,
                    format!("[[moved]] names {to:?} as the new slug twice"),
                    Some("one live link can take each new slug; remove one entry".to_string()),
                );
            } else {
                out.push(crate::model::Moved {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
        }
        if !out.is_empty() {
            self.resolved.insert(
                "moved".into(),
                serde_json::to_value(&out).unwrap_or_default(),
            );
        }
        out
    }

    /// A bare CSV given as the spec: one row per link, default rules.
    pub(super) fn rows_only(&mut self, path: &Path) -> Option<Spec> {
        let whole = self.source.whole();
        let display = self.display.clone();
        let (dimensions, cells) = self.rows_csv(
            path,
            &display,
            &whole,
            false,
            self.policy.encoding,
            super::csv_input::EncodingSetting::Flag,
        )?;
        // The spec file *is* the CSV: record it once, as the spec.
        self.inputs.clear();
        let campaign = BTreeMap::new();
        let mut link = LinkTemplates::default();
        let text = dimensions
            .iter()
            .map(|d| format!("{{{}}}", d.name))
            .collect::<Vec<_>>()
            .join("-");
        link.slug = Template::parse(&text, whole.clone(), &dimensions, &campaign).ok();
        let rules = Rules::default();
        self.resolved
            .insert("rows".into(), serde_json::json!({"from": display}));
        self.resolved.insert(
            "rules".into(),
            serde_json::to_value(&rules).unwrap_or_default(),
        );
        Some(Spec {
            path_display: self.display.clone(),
            sha256: self.sha256.clone(),
            inputs: Vec::new(),
            campaign,
            dimensions,
            cells,
            link,
            overrides: Vec::new(),
            excludes: Vec::new(),
            rules,
            utm_conflict: UtmConflict::Error,
            slug_collision: SlugCollision::Error,
            moved: Vec::new(),
            link_location: whole,
            notes: self.finished_notes(),
        })
    }
}
