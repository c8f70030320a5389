//! Dimension values: inline in the spec, from a CSV, or the key columns of a
//! row-per-link CSV.

use super::csv_input;
use super::fields::{check_expiry, scalar};
use super::load::Compiler;
use super::model::*;
use super::raw::*;
use super::rows::{Column, Row, Rows};
use super::template::closest;
use crate::diag::{Location, Problem};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// Columns of a row-per-link CSV that are link fields; every other column is a key column.
pub(super) const ROW_FIELDS: [&str; 8] = [
    "destination",
    "slug",
    "domain",
    "domain_id",
    "tags",
    "space",
    "redirect",
    "expires_at",
];

/// Columns `export` writes that describe a built link, not what to build: a CSV exported
/// from a manifest is a valid row spec again (they are read as nothing). `domain_host` is
/// read as `domain`.
pub(super) const EXPORT_ONLY: [&str; 11] = [
    "short_url",
    "status",
    "url_id",
    "error_code",
    "error_message",
    "support_reference",
    "attempts",
    "updated_at",
    "printed_at",
    "origin",
    "existing_destination",
];

impl Compiler<'_> {
    pub(super) fn dimensions(&mut self, raw: &[Spanned<RawDimension>]) -> Vec<Dimension> {
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
                    self.csv_values(&name, f, &key_col, d.encoding.as_ref(), name_loc.clone())
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

    pub(super) fn check_duplicate_keys(&mut self, dim: &Dimension) {
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

    pub(super) fn inline_values(
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

    pub(super) fn csv_values(
        &mut self,
        name: &str,
        from: &Spanned<String>,
        key_col: &str,
        encoding: Option<&Spanned<String>>,
        location: Location,
    ) -> Option<Dimension> {
        let loc = self.loc(from);
        let file = from.get_ref();
        let encoding = self.encoding_field(encoding)?;
        let table_name = format!("the [[dimension]] `{name}`");
        let table = match csv_input::read_csv(
            &self.dir.join(file),
            file,
            &loc,
            &self.policy,
            Some(self.dir),
            encoding,
            csv_input::EncodingSetting::Field(&table_name),
        ) {
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
            let key = fields[ki].to_string();
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
                .map(|(_, f)| Some(f.to_string()))
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

    /// The encoding an `encoding = "…"` field names, or the runner's `--encoding` without
    /// one; `None` (after a problem) for an unknown label.
    pub(super) fn encoding_field(
        &mut self,
        field: Option<&Spanned<String>>,
    ) -> Option<Option<&'static csv_input::Encoding>> {
        let Some(f) = field else {
            return Some(self.policy.encoding);
        };
        match csv_input::encoding_for_label(f.get_ref()) {
            Ok(e) => Some(Some(e)),
            Err(msg) => {
                let loc = self.loc(f);
                self.problem(
                    &loc,
                    msg,
                    Some("name the encoding the CSV was saved in; without `encoding` a CSV is read as UTF-8 (a byte-order mark, UTF-8 or UTF-16, is always followed)".to_string()),
                );
                None
            }
        }
    }

    /// Row-per-link CSV: key columns become dimensions (values = distinct keys). The
    /// records are read one at a time and each row is kept as its cell and place in the
    /// text (`rows::Rows`); its fields are built again in the walk.
    ///
    /// The problems are those of reading the whole file first: a CSV-level problem (a
    /// ragged row, ...) anywhere in the file is the only one reported, header and row
    /// problems found before it are dropped (they would be follow-on noise).
    pub(super) fn rows_csv(
        &mut self,
        path: &Path,
        display: &str,
        referenced_at: &Location,
        confine: bool,
        encoding: Option<&'static csv_input::Encoding>,
        set_with: csv_input::EncodingSetting<'_>,
    ) -> Option<(Vec<Dimension>, Cells)> {
        let confine_to = confine.then_some(self.dir);
        let table = match csv_input::open_csv(
            path,
            display,
            referenced_at,
            &self.policy,
            confine_to,
            encoding,
            set_with,
        ) {
            Ok(t) => t,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        let header_problems = self.row_headers(&table, display);
        if !header_problems.is_empty() {
            // A CSV-level problem further down wins, as when the file is read first.
            let mut records = table.records();
            loop {
                match records.next_record() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(p) => {
                        self.problems.push(p);
                        return None;
                    }
                }
            }
            self.inputs.push(table.input.clone());
            self.problems.extend(header_problems);
            return None;
        }
        let is_field = |h: &str| {
            ROW_FIELDS.contains(&h)
                || EXPORT_ONLY.contains(&h)
                || h == "domain_host"
                || h.strip_prefix("utm_")
                    .is_some_and(|u| UTM_FIELDS.contains(&u))
        };
        let key_cols: Vec<usize> = (0..table.headers.len())
            .filter(|&i| !is_field(&table.headers[i]))
            .collect();
        let has_domain = table.headers.iter().any(|h| h == "domain");
        let columns: Vec<Column> = table
            .headers
            .iter()
            .map(|h| Column::of(h, has_domain))
            .collect();
        let file: Arc<str> = Arc::from(table.source.name.as_str());
        let locate = |line: usize| Location {
            file: file.clone(),
            line,
            column: 1,
            snippet: table.source.line_text(line).map(Arc::from),
        };
        let mut dims: Vec<Dimension> = key_cols
            .iter()
            .map(|&i| Dimension {
                name: table.headers[i].clone(),
                attr_names: Vec::new(),
                values: Vec::new(),
                location: locate(1),
            })
            .collect();
        let mut index: Vec<HashMap<String, usize>> = vec![HashMap::new(); dims.len()];
        let mut seen_cells: HashMap<Box<[usize]>, usize> = HashMap::new();
        let mut rows = Vec::new();
        let mut utm_set = [false; UTM_FIELDS.len()];
        let mut records_read = 0usize;
        // Problems and notes of rows read before a CSV-level problem are dropped with them.
        let (problems_before, notes_before, past_before) =
            (self.problems.len(), self.notes.len(), self.past_expiries);
        let mut records = table.records();
        loop {
            let (line, byte, fields) = match records.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(p) => {
                    self.problems.truncate(problems_before);
                    self.notes.truncate(notes_before);
                    self.past_expiries = past_before;
                    self.problems.push(p);
                    return None;
                }
            };
            records_read += 1;
            // Built only when needed: a location copies the line's text.
            let mut loc_cache: Option<Location> = None;
            let mut loc = || loc_cache.get_or_insert_with(|| locate(line)).clone();
            let mut cell = Vec::with_capacity(dims.len());
            let mut ok = true;
            for (d, &ci) in key_cols.iter().enumerate() {
                let key = &fields[ci];
                if key.is_empty() {
                    self.problems.push(loc().problem(
                        format!("row has an empty `{}`", table.headers[ci]),
                        Some("fill every key column".into()),
                    ));
                    ok = false;
                    continue;
                }
                let next = dims[d].values.len();
                let vi = match index[d].get(key) {
                    Some(&vi) => vi,
                    None => {
                        index[d].insert(key.to_string(), next);
                        dims[d].values.push(DimValue {
                            key: key.to_string(),
                            attrs: Vec::new(),
                            location: loc(),
                        });
                        next
                    }
                };
                cell.push(vi);
            }
            if !ok {
                continue;
            }
            let cell = cell.into_boxed_slice();
            if let Some(first) = seen_cells.insert(cell.clone(), line) {
                self.problems.push(loc().problem(
                    format!("row has the same keys as line {first}"),
                    Some("each row is one link; make the key columns unique per row".into()),
                ));
                continue;
            }
            // The checks of the fields the walk builds again (`rows::build_fields`).
            for (column, v) in columns.iter().zip(fields.iter()) {
                if v.is_empty() {
                    continue;
                }
                match *column {
                    Column::Redirect if !matches!(v.parse::<u16>(), Ok(301 | 302)) => {
                        self.problems.push(
                            loc().problem(format!("redirect `{v}` must be 301 or 302"), None),
                        );
                    }
                    Column::ExpiresAt => match check_expiry(v) {
                        Ok(s) => {
                            let at = loc();
                            self.note_past_expiry(&s, &at);
                        }
                        Err(help) => self.problems.push(loc().problem(
                            format!("expires_at `{v}` is not a valid date-time"),
                            Some(help),
                        )),
                    },
                    Column::Utm(i) => utm_set[i] = true,
                    _ => {}
                }
            }
            rows.push(Row { cell, line, byte });
        }
        drop(records);
        self.inputs.push(table.input.clone());
        if records_read == 0 {
            self.problems.push(locate(1).problem(
                format!("CSV `{display}` has no rows"),
                Some("add one row per link below the header".into()),
            ));
            return None;
        }
        drop(seen_cells);
        drop(index);
        let rows = Rows {
            source: Arc::new(table.source),
            file,
            delimiter: table.delimiter,
            columns: columns.into(),
            rows,
            utm_set,
        };
        Some((dims, Cells::Rows(rows)))
    }

    /// The problems of a row spec's header: a near miss of a field name (it would silently
    /// become a key column), or no key column at all.
    fn row_headers(&self, table: &csv_input::CsvText, display: &str) -> Vec<Problem> {
        let is_field = |h: &str| {
            ROW_FIELDS.contains(&h)
                || EXPORT_ONLY.contains(&h)
                || h == "domain_host"
                || h.strip_prefix("utm_")
                    .is_some_and(|u| UTM_FIELDS.contains(&u))
        };
        let mut problems = Vec::new();
        for h in &table.headers {
            if is_field(h) {
                continue;
            }
            let hint = if let Some(u) = h.strip_prefix("utm_") {
                Some(closest(u, UTM_FIELDS.into_iter()).map_or_else(
                    || format!("UTM columns: utm_{}", UTM_FIELDS.join(", utm_")),
                    |c| format!("did you mean `utm_{c}`?"),
                ))
            } else {
                closest(h, ROW_FIELDS.into_iter().filter(|f| f.len() >= 6))
                    .map(|c| format!("did you mean `{c}`? (rename the column; a key column needs a name that is not this close to a link field)"))
            };
            if let Some(hint) = hint {
                let mut at = table.source.locate_line(1);
                if let Some(i) = at.snippet.as_deref().and_then(|l| l.find(h.as_str())) {
                    at.column = at
                        .snippet
                        .as_deref()
                        .map_or(1, |l| l[..i].chars().count() + 1);
                }
                problems.push(at.problem(
                    format!("CSV `{display}` has an unknown column `{h}`"),
                    Some(hint),
                ));
            }
        }
        if problems.is_empty() && table.headers.iter().all(|h| is_field(h)) {
            problems.push(table.source.locate_line(1).problem(
                format!("CSV `{display}` has no key columns"),
                Some("add columns that identify each link, e.g. brand,channel,variant (every column that is not destination/slug/domain/domain_id/tags/space/redirect/expires_at/utm_* is a key)".into()),
            ));
        }
        problems
    }
}
