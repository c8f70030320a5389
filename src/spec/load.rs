//! Read a spec file and compile it into a checked `Spec`, collecting every problem found.

use super::csv_input::{self, io_reason};
use super::model::*;
use super::raw::*;
use super::source::{Location, SourceFile};
use super::template::{Template, closest};
use super::{Problem, SpecReport};
use crate::plan::InputFile;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use toml::Spanned;

/// Columns of a row-per-link CSV that are link fields; every other column is a key column.
const ROW_FIELDS: [&str; 8] = [
    "destination",
    "slug",
    "domain",
    "domain_id",
    "tags",
    "space",
    "redirect",
    "expires_at",
];

pub fn load(path: &Path) -> Result<(Spec, serde_json::Value), SpecReport> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        report(vec![Problem {
            file: display.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read spec file `{display}`: {}", io_reason(&e)),
            help: Some("check the path; run `nimriz-matrix validate <spec.toml>`".into()),
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
        let spec = c.rows_only(path);
        return c.finish(spec);
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
    let raw: RawSpec = match toml::from_str(&source.text) {
        Ok(r) => r,
        Err(e) => {
            let loc = e
                .span()
                .map_or_else(|| source.whole(), |s| source.locate(&s));
            let msg = e.message().trim().to_string();
            let help = toml_help(&msg);
            return Err(report(vec![
                loc.problem(format!("invalid spec: {msg}"), Some(help)),
            ]));
        }
    };
    let mut c = Compiler::new(dir, display, sha256, source);
    let spec = c.compile(raw);
    c.finish(spec)
}

fn toml_help(msg: &str) -> String {
    if msg.contains("unknown field") {
        "check the spelling; the README's spec reference lists every field".into()
    } else if msg.contains("missing field") {
        "add the missing field".into()
    } else if msg.contains("invalid type") {
        "check the value's type (quoted string, number, list, or table)".into()
    } else {
        "fix the TOML syntax at this position".into()
    }
}

fn report(problems: Vec<Problem>) -> SpecReport {
    SpecReport { problems }
}

struct Compiler<'a> {
    dir: &'a Path,
    display: String,
    sha256: String,
    source: SourceFile,
    problems: Vec<Problem>,
    inputs: Vec<InputFile>,
    /// Dimensions that failed to load: templates naming them are not reported again.
    failed_dims: Vec<String>,
    resolved: serde_json::Map<String, serde_json::Value>,
}

impl<'a> Compiler<'a> {
    fn new(dir: &'a Path, display: String, sha256: String, source: SourceFile) -> Self {
        Compiler {
            dir,
            display,
            sha256,
            source,
            problems: Vec::new(),
            inputs: Vec::new(),
            failed_dims: Vec::new(),
            resolved: serde_json::Map::new(),
        }
    }

    fn finish(self, spec: Option<Spec>) -> Result<(Spec, serde_json::Value), SpecReport> {
        match spec {
            Some(s) if self.problems.is_empty() => {
                Ok((s, serde_json::Value::Object(self.resolved)))
            }
            _ => Err(report(self.problems)),
        }
    }

    fn loc<T>(&self, s: &Spanned<T>) -> Location {
        self.source.locate(&s.span())
    }

    fn problem(&mut self, loc: &Location, msg: impl Into<String>, help: impl Into<Option<String>>) {
        self.problems.push(loc.problem(msg, help.into()));
    }

    fn compile(&mut self, raw: RawSpec) -> Option<Spec> {
        let campaign = self.campaign(raw.campaign.as_ref());
        let rules = self.rules(raw.rules.as_ref());
        let (dimensions, cells) = match (&raw.rows, raw.dimensions.is_empty()) {
            (Some(rows), true) => {
                let loc = self.loc(&rows.get_ref().from);
                let file = rows.get_ref().from.get_ref().clone();
                self.resolved
                    .insert("rows".into(), serde_json::json!({ "from": file }));
                self.rows_csv(&self.dir.join(&file), &file, &loc)?
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
        if link.redirect.is_none() {
            if let Some(v) = raw
                .campaign
                .as_ref()
                .and_then(|c| c.get_ref().get("redirect"))
            {
                link.redirect = self.redirect_value(v);
            }
        }
        if link.expires_at.is_none() {
            if let Some(v) = raw
                .campaign
                .as_ref()
                .and_then(|c| c.get_ref().get("expires_at"))
            {
                link.expires_at = self.expiry_value(v);
            }
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
            link_location,
        })
    }

    /// A bare CSV given as the spec: one row per link, default rules.
    fn rows_only(&mut self, path: &Path) -> Option<Spec> {
        let whole = self.source.whole();
        let display = self.display.clone();
        let (dimensions, cells) = self.rows_csv(path, &display, &whole)?;
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
            link_location: whole,
        })
    }

    fn campaign(
        &mut self,
        raw: Option<&Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(raw) = raw else { return out };
        for (k, v) in raw.get_ref() {
            match scalar(v.get_ref()) {
                Some(s) => {
                    out.insert(k.clone(), s);
                }
                None => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("[campaign] `{k}` must be a string, number or date"),
                        Some(
                            "campaign fields are used as `{campaign.<field>}` placeholders"
                                .to_string(),
                        ),
                    );
                }
            }
        }
        out
    }

    fn rules(&mut self, raw: Option<&Spanned<RawRules>>) -> Rules {
        let mut rules = Rules::default();
        let Some(raw) = raw else { return rules };
        rules.location = self.loc(raw);
        let r = raw.get_ref();
        if let Some(v) = &r.lowercase {
            rules.lowercase = match v.get_ref().as_str() {
                "error" => Lowercase::Error,
                "normalize" | "normalise" => Lowercase::Normalize,
                "off" => Lowercase::Off,
                other => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown lowercase rule `{other}`"),
                        Some("use \"error\", \"normalize\" or \"off\"".to_string()),
                    );
                    Lowercase::Error
                }
            };
        }
        if let Some(req) = &r.required {
            for f in req.get_ref() {
                if let Some(name) = self.utm_name(f) {
                    rules.required.push(name);
                }
            }
        }
        if let Some(allowed) = &r.allowed {
            for (k, vals) in allowed.get_ref() {
                let key = k.strip_prefix("utm_").unwrap_or(k);
                if !UTM_FIELDS.contains(&key) {
                    let loc = self.loc(vals);
                    self.problem(
                        &loc,
                        format!("rules.allowed names unknown UTM field `{k}`"),
                        Some(utm_help(key)),
                    );
                    continue;
                }
                rules
                    .allowed
                    .insert(key.to_string(), vals.get_ref().clone());
            }
        }
        let mut num =
            |v: &Option<Spanned<i64>>, min: i64, max: i64, name: &str, into: &mut usize| {
                if let Some(v) = v {
                    let n = *v.get_ref();
                    if n < min || n > max {
                        let loc = self.loc(v);
                        self.problem(
                            &loc,
                            format!("rules.{name} = {n} is out of range"),
                            Some(format!("use a number from {min} to {max}")),
                        );
                    } else {
                        *into = n as usize;
                    }
                }
            };
        num(
            &r.max_slug_length,
            1,
            200,
            "max_slug_length",
            &mut rules.max_slug_length,
        );
        num(
            &r.min_slug_length,
            1,
            200,
            "min_slug_length",
            &mut rules.min_slug_length,
        );
        num(
            &r.max_utm_length,
            1,
            2000,
            "max_utm_length",
            &mut rules.max_utm_length,
        );
        num(
            &r.max_destination_length,
            16,
            65536,
            "max_destination_length",
            &mut rules.max_destination_length,
        );
        if rules.min_slug_length > rules.max_slug_length {
            let loc = rules.location.clone();
            self.problem(
                &loc,
                "rules.min_slug_length is larger than rules.max_slug_length",
                None::<String>,
            );
        }
        if let Some(v) = &r.no_spaces {
            rules.no_spaces = *v.get_ref();
        }
        if let Some(v) = &r.allow_http {
            rules.allow_http = *v.get_ref();
        }
        if let Some(v) = &r.ga4_channel_check {
            rules.ga4_channel_check = match v.get_ref().as_str() {
                "warn" => true,
                "off" => false,
                other => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown ga4_channel_check `{other}`"),
                        Some("use \"warn\" or \"off\"".to_string()),
                    );
                    true
                }
            };
        }
        rules
    }

    fn utm_name(&mut self, f: &Spanned<String>) -> Option<String> {
        let key = f.get_ref().strip_prefix("utm_").unwrap_or(f.get_ref());
        if UTM_FIELDS.contains(&key) {
            Some(key.to_string())
        } else {
            let loc = self.loc(f);
            self.problem(
                &loc,
                format!("unknown UTM field `{}`", f.get_ref()),
                Some(utm_help(key)),
            );
            None
        }
    }

    fn dimensions(&mut self, raw: &[Spanned<RawDimension>]) -> Vec<Dimension> {
        let mut dims: Vec<Dimension> = Vec::new();
        for rd in raw {
            let d = rd.get_ref();
            let name = d.name.get_ref().trim().to_string();
            let name_loc = self.loc(&d.name);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.problem(
                    &name_loc,
                    format!("dimension name `{name}` is not usable in placeholders"),
                    Some("use letters, digits, `_` or `-`, e.g. `brand`".to_string()),
                );
                continue;
            }
            if name == "campaign" {
                self.problem(
                    &name_loc,
                    "a dimension cannot be named `campaign`",
                    Some(
                        "`{campaign.*}` refers to the [campaign] table; pick another name"
                            .to_string(),
                    ),
                );
                continue;
            }
            if let Some(prev) = dims.iter().find(|p| p.name == name) {
                let msg = format!(
                    "dimension `{name}` is defined twice (first at line {})",
                    prev.location.line
                );
                self.problem(
                    &name_loc,
                    msg,
                    Some("give each [[dimension]] a unique name".to_string()),
                );
                continue;
            }
            let dim = match (&d.values, &d.from) {
                (Some(_), Some(f)) => {
                    self.failed_dims.push(name.clone());
                    let loc = self.loc(f);
                    self.problem(
                        &loc,
                        format!("dimension `{name}` has both `values` and `from`"),
                        Some("keep one: inline `values`, or `from` a CSV file".to_string()),
                    );
                    continue;
                }
                (None, None) => {
                    self.problem(
                        &name_loc,
                        format!("dimension `{name}` has no values"),
                        Some("add values = [\"a\", \"b\"] or from = \"file.csv\"".to_string()),
                    );
                    continue;
                }
                (Some(vals), None) => self.inline_values(&name, vals, name_loc.clone()),
                (None, Some(f)) => {
                    let key_col = d
                        .key_column
                        .as_ref()
                        .map_or("key", |k| k.get_ref().as_str())
                        .to_string();
                    self.csv_values(&name, f, &key_col, name_loc.clone())
                }
            };
            let Some(dim) = dim else {
                self.failed_dims.push(name);
                continue;
            };
            if dim.values.is_empty() {
                self.failed_dims.push(name.clone());
                self.problem(&name_loc, format!("dimension `{name}` is empty"), Some("give it at least one value (a matrix with an empty dimension has no links)".to_string()));
                continue;
            }
            self.check_duplicate_keys(&dim);
            dims.push(dim);
        }
        dims
    }

    fn check_duplicate_keys(&mut self, dim: &Dimension) {
        let mut seen: HashMap<&str, &Location> = HashMap::new();
        for v in &dim.values {
            if let Some(first) = seen.insert(v.key.as_str(), &v.location) {
                let msg = format!(
                    "dimension `{}` has the key `{}` twice (also at {}:{})",
                    dim.name, v.key, first.file, first.line
                );
                self.problems.push(v.location.problem(
                    msg,
                    Some("keys must be unique within a dimension; rename or remove one".into()),
                ));
            }
        }
    }

    fn inline_values(
        &mut self,
        name: &str,
        vals: &Spanned<Vec<Spanned<toml::Value>>>,
        location: Location,
    ) -> Option<Dimension> {
        let mut attr_names: Vec<String> = Vec::new();
        let mut values = Vec::new();
        let mut pending: Vec<(String, BTreeMap<String, String>, Location)> = Vec::new();
        for v in vals.get_ref() {
            let loc = self.loc(v);
            match v.get_ref() {
                toml::Value::Table(t) => {
                    let Some(key) = t.get("key").and_then(scalar) else {
                        self.problem(
                            &loc,
                            format!("a value of dimension `{name}` has no `key`"),
                            Some(
                                "write { key = \"paid-search\", source = \"google\" }".to_string(),
                            ),
                        );
                        continue;
                    };
                    let mut attrs = BTreeMap::new();
                    for (k, val) in t {
                        if k == "key" {
                            continue;
                        }
                        match scalar(val) {
                            Some(s) => {
                                if !attr_names.contains(k) {
                                    attr_names.push(k.clone());
                                }
                                attrs.insert(k.clone(), s);
                            }
                            None => self.problem(&loc, format!("attribute `{k}` of `{name}` value `{key}` must be a string or number"), None::<String>),
                        }
                    }
                    pending.push((key, attrs, loc));
                }
                other => match scalar(other) {
                    Some(key) => pending.push((key, BTreeMap::new(), loc)),
                    None => self.problem(
                        &loc,
                        format!(
                            "a value of dimension `{name}` must be a string or a table with `key`"
                        ),
                        None::<String>,
                    ),
                },
            }
        }
        for (key, mut attrs, loc) in pending {
            if key.trim().is_empty() {
                self.problem(
                    &loc,
                    format!("a value of dimension `{name}` has an empty key"),
                    Some("give every value a non-empty key".to_string()),
                );
                continue;
            }
            values.push(DimValue {
                key,
                attrs: attr_names.iter().map(|n| attrs.remove(n)).collect(),
                location: loc,
            });
        }
        Some(Dimension {
            name: name.to_string(),
            attr_names,
            values,
            location,
        })
    }

    fn csv_values(
        &mut self,
        name: &str,
        from: &Spanned<String>,
        key_col: &str,
        location: Location,
    ) -> Option<Dimension> {
        let loc = self.loc(from);
        let file = from.get_ref();
        let table = match csv_input::read_csv(&self.dir.join(file), file, &loc) {
            Ok(t) => t,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        self.inputs.push(table.input.clone());
        let Some(ki) = table.headers.iter().position(|h| h == key_col) else {
            let hint = closest(key_col, table.headers.iter().map(String::as_str))
                .map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"));
            self.problems.push(table.source.locate_line(1).problem(
                format!("CSV `{file}` for dimension `{name}` has no `{key_col}` column{hint}"),
                Some(format!("add a `{key_col}` column, or set key_column = \"<column>\" in the [[dimension]]")),
            ));
            return None;
        };
        let attr_names: Vec<String> = table
            .headers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ki)
            .map(|(_, h)| h.clone())
            .collect();
        let mut values = Vec::new();
        for (line, fields) in &table.records {
            let row_loc = table.source.locate_line(*line);
            let key = fields[ki].clone();
            if key.is_empty() {
                self.problems.push(row_loc.problem(
                    format!("row of `{file}` has an empty `{key_col}`"),
                    Some("fill the key, or delete the row".into()),
                ));
                continue;
            }
            let attrs = fields
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != ki)
                .map(|(_, f)| Some(f.clone()))
                .collect();
            values.push(DimValue {
                key,
                attrs,
                location: row_loc,
            });
        }
        Some(Dimension {
            name: name.to_string(),
            attr_names,
            values,
            location,
        })
    }

    /// Row-per-link CSV: key columns become dimensions (values = distinct keys).
    fn rows_csv(
        &mut self,
        path: &Path,
        display: &str,
        referenced_at: &Location,
    ) -> Option<(Vec<Dimension>, Cells)> {
        let table = match csv_input::read_csv(path, display, referenced_at) {
            Ok(t) => t,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        self.inputs.push(table.input.clone());
        let is_field = |h: &str| {
            ROW_FIELDS.contains(&h)
                || h.strip_prefix("utm_")
                    .is_some_and(|u| UTM_FIELDS.contains(&u))
        };
        let key_cols: Vec<usize> = (0..table.headers.len())
            .filter(|&i| !is_field(&table.headers[i]))
            .collect();
        if key_cols.is_empty() {
            self.problems.push(table.source.locate_line(1).problem(
                format!("CSV `{display}` has no key columns"),
                Some("add columns that identify each link, e.g. brand,channel,variant (every column that is not destination/slug/domain/domain_id/tags/space/redirect/expires_at/utm_* is a key)".into()),
            ));
            return None;
        }
        let mut dims: Vec<Dimension> = key_cols
            .iter()
            .map(|&i| Dimension {
                name: table.headers[i].clone(),
                attr_names: Vec::new(),
                values: Vec::new(),
                location: table.source.locate_line(1),
            })
            .collect();
        let mut index: Vec<HashMap<String, usize>> = vec![HashMap::new(); dims.len()];
        let mut seen_cells: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut rows = Vec::new();
        if table.records.is_empty() {
            self.problems.push(table.source.locate_line(1).problem(
                format!("CSV `{display}` has no rows"),
                Some("add one row per link below the header".into()),
            ));
            return None;
        }
        for (line, fields) in &table.records {
            let loc = table.source.locate_line(*line);
            let mut cell = Vec::with_capacity(dims.len());
            let mut ok = true;
            for (d, &ci) in key_cols.iter().enumerate() {
                let key = &fields[ci];
                if key.is_empty() {
                    self.problems.push(loc.problem(
                        format!("row has an empty `{}`", table.headers[ci]),
                        Some("fill every key column".into()),
                    ));
                    ok = false;
                    continue;
                }
                let next = dims[d].values.len();
                let vi = *index[d].entry(key.clone()).or_insert_with(|| {
                    dims[d].values.push(DimValue {
                        key: key.clone(),
                        attrs: Vec::new(),
                        location: loc.clone(),
                    });
                    next
                });
                cell.push(vi);
            }
            if !ok {
                continue;
            }
            if let Some(first) = seen_cells.insert(cell.clone(), *line) {
                self.problems.push(loc.problem(
                    format!("row has the same keys as line {first}"),
                    Some("each row is one link; make the key columns unique per row".into()),
                ));
                continue;
            }
            let mut fields_t = LinkTemplates::default();
            for (ci, h) in table.headers.iter().enumerate() {
                let v = &fields[ci];
                if v.is_empty() {
                    continue;
                }
                let lit = Template::literal(v.clone(), loc.clone());
                match h.as_str() {
                    "destination" => fields_t.destination = Some(lit),
                    "slug" => fields_t.slug = Some(lit),
                    "domain" => fields_t.domain = Some(lit),
                    "domain_id" => fields_t.domain_id = Some(lit),
                    "space" => fields_t.space = Some(lit),
                    "tags" => {
                        fields_t.tags = Some(
                            v.split(';')
                                .map(str::trim)
                                .filter(|t| !t.is_empty())
                                .map(|t| Template::literal(t, loc.clone()))
                                .collect(),
                        );
                    }
                    "redirect" => match v.parse::<u16>() {
                        Ok(n @ (301 | 302)) => fields_t.redirect = Some((n, loc.clone())),
                        _ => self
                            .problems
                            .push(loc.problem(format!("redirect `{v}` must be 301 or 302"), None)),
                    },
                    "expires_at" => match check_expiry(v) {
                        Ok(s) => fields_t.expires_at = Some((s, loc.clone())),
                        Err(help) => self.problems.push(loc.problem(
                            format!("expires_at `{v}` is not a valid date-time"),
                            Some(help),
                        )),
                    },
                    other => {
                        if let Some(i) = other
                            .strip_prefix("utm_")
                            .and_then(|u| UTM_FIELDS.iter().position(|f| *f == u))
                        {
                            fields_t.utm[i] = Some(lit);
                        }
                    }
                }
            }
            rows.push(Row {
                cell,
                fields: fields_t,
                location: loc,
            });
        }
        Some((dims, Cells::Rows(rows)))
    }

    fn utm_table(
        &mut self,
        u: &Spanned<BTreeMap<String, Spanned<String>>>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> [Option<Template>; 9] {
        let mut out: [Option<Template>; 9] = Default::default();
        for (k, v) in u.get_ref() {
            let key = k.strip_prefix("utm_").unwrap_or(k);
            match UTM_FIELDS.iter().position(|f| *f == key) {
                Some(i) => out[i] = self.template(v, dims, campaign),
                None => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown UTM field `{k}`"),
                        Some(utm_help(key)),
                    );
                }
            }
        }
        out
    }

    fn template(
        &mut self,
        s: &Spanned<String>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> Option<Template> {
        let loc = self.loc(s);
        match Template::parse(s.get_ref(), loc.clone(), dims, campaign) {
            Ok(t) => Some(t),
            Err(_)
                if self
                    .failed_dims
                    .iter()
                    .any(|d| s.get_ref().contains(&format!("{{{d}"))) =>
            {
                None
            }
            Err(e) => {
                // Point inside the quoted string at the placeholder (+1 for the quote).
                let at = s.span().start + 1 + e.offset;
                let ploc = self.source.locate(&(at..at));
                self.problems.push(ploc.problem(e.message, e.help));
                None
            }
        }
    }

    fn link_fields(
        &mut self,
        f: &LinkFieldRefs<'_>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> LinkTemplates {
        let mut t = LinkTemplates {
            domain: f.domain.and_then(|s| self.template(s, dims, campaign)),
            domain_id: f.domain_id.and_then(|s| self.template(s, dims, campaign)),
            destination: f.destination.and_then(|s| self.template(s, dims, campaign)),
            slug: f.slug.and_then(|s| self.template(s, dims, campaign)),
            space: f.space.and_then(|s| self.template(s, dims, campaign)),
            ..LinkTemplates::default()
        };
        if let Some(tags) = f.tags {
            t.tags = Some(
                tags.get_ref()
                    .iter()
                    .filter_map(|s| self.template(s, dims, campaign))
                    .collect(),
            );
        }
        if let Some(r) = f.redirect {
            let loc = self.loc(r);
            match *r.get_ref() {
                n @ (301 | 302) => t.redirect = Some((n as u16, loc)),
                n => self.problem(
                    &loc,
                    format!("redirect = {n} is not supported"),
                    Some("use 302 (temporary, the default) or 301 (permanent)".to_string()),
                ),
            }
        }
        if let Some(e) = f.expires_at {
            t.expires_at = self.expiry_value(e);
        }
        if let Some(u) = f.utm {
            t.utm = self.utm_table(u, dims, campaign);
        }
        t
    }

    fn redirect_value(&mut self, v: &Spanned<toml::Value>) -> Option<(u16, Location)> {
        let loc = self.loc(v);
        match v.get_ref().as_integer() {
            Some(n @ (301 | 302)) => Some((n as u16, loc)),
            _ => {
                self.problem(
                    &loc,
                    format!("redirect = {} is not supported", v.get_ref()),
                    Some("use 302 (temporary, the default) or 301 (permanent)".to_string()),
                );
                None
            }
        }
    }

    fn expiry_value(&mut self, v: &Spanned<toml::Value>) -> Option<(String, Location)> {
        let loc = self.loc(v);
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(d) => d.to_string(),
            other => other.to_string(),
        };
        match check_expiry(&text) {
            Ok(s) => Some((s, loc)),
            Err(help) => {
                self.problem(
                    &loc,
                    format!("expires_at `{text}` is not a valid date-time"),
                    Some(help),
                );
                None
            }
        }
    }

    fn matcher(
        &mut self,
        m: &BTreeMap<String, Spanned<toml::Value>>,
        dims: &[Dimension],
        table_loc: &Location,
    ) -> Option<Vec<Option<Vec<bool>>>> {
        if m.is_empty() {
            self.problem(
                table_loc,
                "an exclude/override match is empty (it would match every link)",
                Some("name at least one dimension, e.g. brand = \"initech\"".to_string()),
            );
            return None;
        }
        let mut out: Vec<Option<Vec<bool>>> = vec![None; dims.len()];
        let mut ok = true;
        for (dim_name, v) in m {
            let loc = self.loc(v);
            let Some(d) = dims.iter().position(|d| &d.name == dim_name) else {
                let hint = closest(dim_name, dims.iter().map(|d| d.name.as_str())).map_or_else(
                    || {
                        format!(
                            "dimensions: {}",
                            dims.iter()
                                .map(|d| format!("`{}`", d.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    |c| format!("did you mean `{c}`?"),
                );
                self.problem(&loc, format!("unknown dimension `{dim_name}`"), Some(hint));
                ok = false;
                continue;
            };
            let keys: Vec<String> = match v.get_ref() {
                toml::Value::Array(a) => a.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            };
            if keys.is_empty() {
                self.problem(
                    &loc,
                    format!("`{dim_name}` needs a key or a list of keys"),
                    None::<String>,
                );
                ok = false;
                continue;
            }
            let mut set = vec![false; dims[d].values.len()];
            for k in keys {
                match dims[d].values.iter().position(|v| v.key == k) {
                    Some(i) => set[i] = true,
                    None => {
                        let hint = closest(&k, dims[d].values.iter().map(|v| v.key.as_str()))
                            .map_or_else(
                                || "check the spelling against the dimension's keys".to_string(),
                                |c| format!("did you mean `{c}`?"),
                            );
                        self.problem(
                            &loc,
                            format!("dimension `{dim_name}` has no key `{k}`"),
                            Some(hint),
                        );
                        ok = false;
                    }
                }
            }
            out[d] = Some(set);
        }
        ok.then_some(out)
    }

    fn override_(
        &mut self,
        o: &Spanned<RawOverride>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> Option<Override> {
        let location = self.loc(o);
        let ro = o.get_ref();
        let mloc = self.loc(&ro.matcher);
        let matches = self.matcher(ro.matcher.get_ref(), dims, &mloc);
        let f = ro;
        let fields = self.link_fields(
            &LinkFieldRefs {
                domain: f.domain.as_ref(),
                domain_id: f.domain_id.as_ref(),
                destination: f.destination.as_ref(),
                slug: f.slug.as_ref(),
                tags: f.tags.as_ref(),
                space: f.space.as_ref(),
                redirect: f.redirect.as_ref(),
                expires_at: f.expires_at.as_ref(),
                utm: f.utm.as_ref(),
            },
            dims,
            campaign,
        );
        Some(Override {
            matches: matches?,
            fields,
            location,
        })
    }
}

struct LinkFieldRefs<'r> {
    domain: Option<&'r Spanned<String>>,
    domain_id: Option<&'r Spanned<String>>,
    destination: Option<&'r Spanned<String>>,
    slug: Option<&'r Spanned<String>>,
    tags: Option<&'r Spanned<Vec<Spanned<String>>>>,
    space: Option<&'r Spanned<String>>,
    redirect: Option<&'r Spanned<i64>>,
    expires_at: Option<&'r Spanned<toml::Value>>,
    utm: Option<&'r Spanned<BTreeMap<String, Spanned<String>>>>,
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

fn check_expiry(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| {
            d.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .map_err(|_| "use RFC 3339 with a time zone, e.g. 2026-06-30T23:59:59Z".to_string())
}

fn utm_help(key: &str) -> String {
    match closest(key, UTM_FIELDS.into_iter()) {
        Some(c) => format!("did you mean `{c}`? UTM fields: {}", UTM_FIELDS.join(", ")),
        None => format!("UTM fields: {}", UTM_FIELDS.join(", ")),
    }
}

fn toml_to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn templates_json(l: &LinkTemplates) -> serde_json::Value {
    let t = |o: &Option<Template>| o.as_ref().map(|t| t.text.clone());
    let mut utm = serde_json::Map::new();
    for (i, f) in UTM_FIELDS.iter().enumerate() {
        if let Some(tpl) = &l.utm[i] {
            utm.insert(format!("utm_{f}"), tpl.text.clone().into());
        }
    }
    serde_json::json!({
        "domain": t(&l.domain),
        "domain_id": t(&l.domain_id),
        "destination": t(&l.destination),
        "slug": t(&l.slug),
        "tags": l.tags.as_ref().map(|v| v.iter().map(|t| t.text.clone()).collect::<Vec<_>>()),
        "space": t(&l.space),
        "redirect": l.redirect.as_ref().map(|r| r.0),
        "expires_at": l.expires_at.as_ref().map(|e| e.0.clone()),
        "utm": utm,
    })
}
