//! A row spec's rows, kept compact: the CSV's text once, and per row its cell (a value
//! index per key column), line and byte offset. A row's fields (`LinkTemplates`, about
//! 1.5 KB with their locations) are built from its text when the walk renders it, one row
//! at a time, instead of all at load: a 950k-row CSV validates in a fraction of the memory.
//!
//! Every row was read and checked at load (`Compiler::rows_csv`, same reader settings), so
//! reading it again cannot find a new problem; the fields built here are the ones the
//! checks saw.

use super::csv_input;
use super::fields::check_expiry;
use super::model::{LinkTemplates, UTM_FIELDS};
use super::template::Template;
use crate::diag::{Location, Problem, SourceFile};
use std::sync::Arc;

/// What a CSV column of a row spec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Column {
    /// A key column (a dimension), or one read as nothing (an export-only column, or
    /// `domain_host` beside a `domain`).
    Other,
    Destination,
    Slug,
    Domain,
    DomainId,
    Space,
    Tags,
    Redirect,
    ExpiresAt,
    /// Indexed like `UTM_FIELDS`.
    Utm(usize),
}

impl Column {
    /// The field a header names (`domain_host` is `domain` unless there is a `domain`).
    pub(super) fn of(header: &str, has_domain: bool) -> Column {
        match header {
            "destination" => Column::Destination,
            "slug" => Column::Slug,
            "domain" => Column::Domain,
            "domain_host" if !has_domain => Column::Domain,
            "domain_id" => Column::DomainId,
            "space" => Column::Space,
            "tags" => Column::Tags,
            "redirect" => Column::Redirect,
            "expires_at" => Column::ExpiresAt,
            other => other
                .strip_prefix("utm_")
                .and_then(|u| UTM_FIELDS.iter().position(|f| *f == u))
                .map_or(Column::Other, Column::Utm),
        }
    }
}

/// One row: its cell, the line it starts on and where csv's reader started it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) cell: Box<[usize]>,
    pub(super) line: usize,
    pub(super) byte: u64,
}

/// The rows of a CSV row spec, in file order.
#[derive(Debug, Clone)]
pub struct Rows {
    pub(super) source: Arc<SourceFile>,
    /// The file name every location shares.
    pub(super) file: Arc<str>,
    pub(super) delimiter: u8,
    pub(super) columns: Arc<[Column]>,
    pub(super) rows: Vec<Row>,
    /// Per UTM field: whether some row sets it (the dry-run CSV's columns).
    pub(super) utm_set: [bool; UTM_FIELDS.len()],
}

/// A row's fields as literal templates, and the row's location.
pub struct RowFields {
    pub fields: LinkTemplates,
    pub location: Location,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`'s cell (a value index per dimension).
    pub fn cell(&self, i: usize) -> &[usize] {
        &self.rows[i].cell
    }

    /// Whether some row sets the UTM field `UTM_FIELDS[i]`.
    pub fn sets_utm(&self, i: usize) -> bool {
        self.utm_set.get(i).copied().unwrap_or(false)
    }

    /// The location of a whole line of the CSV (as `SourceFile::locate_line`).
    pub(super) fn locate_line(&self, line: usize) -> Location {
        Location {
            file: self.file.clone(),
            line,
            column: 1,
            snippet: self.source.line_text(line).map(Arc::from),
        }
    }

    /// Row `i`'s fields, read again from its text. An `Err` (a row that no longer reads
    /// as it did at load) is a bug, reported as a problem at the row rather than a panic.
    pub fn fields(&self, i: usize) -> Result<RowFields, Problem> {
        let row = &self.rows[i];
        let location = self.locate_line(row.line);
        let record = csv_input::record_at(&self.source.text, row.byte, self.delimiter)
            .filter(|r| r.len() == self.columns.len())
            .ok_or_else(|| {
                location.problem(
                    "internal error: this row no longer reads as it did when the spec was loaded",
                    Some("please report this with the CSV".into()),
                )
            })?;
        Ok(RowFields {
            fields: build_fields(&self.columns, &record, &location),
            location,
        })
    }
}

/// The fields a checked record sets. A redirect or expiry that failed its check at load
/// (the spec was refused then) is left unset.
pub(super) fn build_fields(
    columns: &[Column],
    record: &csv::StringRecord,
    loc: &Location,
) -> LinkTemplates {
    let mut f = LinkTemplates::default();
    for (column, v) in columns.iter().zip(record.iter()) {
        if v.is_empty() {
            continue;
        }
        let lit = || Template::literal(v, loc.clone());
        match *column {
            Column::Other => {}
            Column::Destination => f.destination = Some(lit()),
            Column::Slug => f.slug = Some(lit()),
            Column::Domain => f.domain = Some(lit()),
            Column::DomainId => f.domain_id = Some(lit()),
            Column::Space => f.space = Some(lit()),
            Column::Tags => {
                f.tags = Some(
                    v.split(';')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| Template::literal(t, loc.clone()))
                        .collect(),
                );
            }
            Column::Redirect => {
                if let Ok(n @ (301 | 302)) = v.parse::<u16>() {
                    f.redirect = Some((n, loc.clone()));
                }
            }
            Column::ExpiresAt => {
                if let Ok(s) = check_expiry(v) {
                    f.expires_at = Some((s, loc.clone()));
                }
            }
            Column::Utm(i) => f.utm[i] = Some(lit()),
        }
    }
    f
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::model::Cells;
    use crate::diag::Location;
    use crate::spec::csv_input::{EncodingSetting, read_csv};
    use crate::spec::input::InputPolicy;

    /// CRLF line ends, `;` as separator, padded cells, an escaped quote, a quoted cell that
    /// spans lines, rows of empty cells: what the walk reads again must be what load read.
    pub(crate) const AWKWARD: &str = "brand;variant;domain;destination;tags;utm_source;expires_at\r\n\
        acme; a ;go.acme.example;\"https://acme.example/p?q=\"\"x\"\"\";\" paid ; spring \";google;\r\n\
        ;;;;;;\r\n\
        \"multi\r\nline\";b;go.acme.example;https://acme.example/m;x;;2099-01-01T00:00:00+02:00\r\n\
        zeta;\"c;d\";go.acme.example;https://acme.example/z;;bing;\r\n";

    /// The spec of a CSV row spec file holding `text`.
    pub(crate) fn load(text: &str) -> (tempfile::TempDir, crate::spec::Spec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.csv");
        std::fs::write(&path, text).unwrap();
        let (spec, _) = crate::spec::load(&path).unwrap_or_else(|r| panic!("{r:?}"));
        (dir, spec)
    }

    #[test]
    fn a_row_read_again_in_the_walk_has_the_fields_load_read() {
        let (dir, spec) = load(AWKWARD);
        let Cells::Rows(rows) = &spec.cells else {
            panic!("a CSV spec has rows");
        };
        // An independent read of the whole file, as before rows were kept compact.
        let table = read_csv(
            &dir.path().join("links.csv"),
            "x",
            &Location::default(),
            &InputPolicy::default(),
            None,
            None,
            EncodingSetting::Flag,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(table.records.len(), 3);
        for (i, (line, record)) in table.records.iter().enumerate() {
            let again = rows.fields(i).unwrap();
            assert_eq!(again.location.line, *line);
            assert_eq!(again.location, rows.locate_line(*line));
            let first = super::build_fields(&rows.columns, record, &again.location);
            assert_eq!(format!("{:?}", again.fields), format!("{first:?}"));
        }
        let lines: Vec<usize> = table.records.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4, 6]);
        let f = rows.fields(0).unwrap().fields;
        assert_eq!(
            f.destination.unwrap().text,
            "https://acme.example/p?q=\"x\""
        );
        let tags: Vec<String> = f.tags.unwrap().into_iter().map(|t| t.text).collect();
        assert_eq!(tags, ["paid", "spring"]);
        assert_eq!(f.utm[0].as_ref().unwrap().text, "google");
        let f = rows.fields(1).unwrap().fields;
        assert_eq!(f.expires_at.unwrap().0, "2098-12-31T22:00:00Z");
        assert!(f.utm[0].is_none());
        assert!(rows.sets_utm(0) && !rows.sets_utm(1));
    }

    #[test]
    fn a_row_starting_with_a_byte_order_mark_keeps_it_when_read_again() {
        // Only a file's first bytes are a BOM; at the start of a later row it is text.
        let (_dir, spec) = load(
            "utm_content,brand,domain,destination\nfirst,a,go.acme.example,https://acme.example/\n\u{FEFF}x,b,go.acme.example,https://acme.example/\n",
        );
        let Cells::Rows(rows) = &spec.cells else {
            panic!("a CSV spec has rows");
        };
        let f = rows.fields(1).unwrap().fields;
        assert_eq!(f.utm[4].as_ref().unwrap().text, "\u{FEFF}x");
        assert_eq!(
            rows.fields(0).unwrap().fields.utm[4].as_ref().unwrap().text,
            "first"
        );
    }
}
