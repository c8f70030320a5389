//! Dry-run output formats. Output is a pure function of the plan: no clocks, no hash-map
//! order, so two runs are byte-identical.

use super::PlannedLink;
use super::walk::Summary;
use crate::spec::Spec;
use crate::spec::model::{Cells, UTM_FIELDS, UTM_PARAMS};
use std::io::{self, Write};

/// Dry-run output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

pub struct PlanWriter<W: Write> {
    encoder: LinkEncoder,
    out: W,
    dims: Vec<String>,
    first: bool,
    /// The table needs every row to size its columns (tables are for humans: hundreds of
    /// rows, not millions — use csv/jsonl for big plans).
    table_rows: Vec<[String; 3]>,
}

/// OWASP CSV-injection defence: a field a spreadsheet would read as a formula (starting
/// with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`; every other field is untouched.
/// The one copy, used by dry-run CSV and `export`.
pub fn neutralize_formula(field: &str) -> std::borrow::Cow<'_, str> {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{field}"))
    } else {
        std::borrow::Cow::Borrowed(field)
    }
}

impl<W: Write> PlanWriter<W> {
    pub fn new(format: PlanFormat, out: W, spec: &Spec) -> Self {
        // Only UTM columns the spec can set, so the CSV stays narrow.
        let used = |i: usize| {
            spec.link.utm[i].is_some()
                || spec.overrides.iter().any(|o| o.fields.utm[i].is_some())
                || matches!(&spec.cells, Cells::Rows(rows) if rows.sets_utm(i))
        };
        let utm_columns = (0..UTM_FIELDS.len())
            .filter(|&i| used(i))
            .map(|i| UTM_PARAMS[i])
            .collect();
        PlanWriter {
            encoder: LinkEncoder {
                format,
                utm_columns,
            },
            out,
            dims: spec.dimensions.iter().map(|d| d.name.clone()).collect(),
            first: true,
            table_rows: Vec::new(),
        }
    }

    /// The per-link encoder, to run on the rendering threads (`walk_prepared`).
    pub fn encoder(&self) -> LinkEncoder {
        self.encoder.clone()
    }

    pub fn begin(&mut self, spec: &Spec) -> io::Result<()> {
        match self.encoder.format {
            PlanFormat::Csv => {
                let mut header: Vec<String> = self.dims.clone();
                header.extend(
                    ["slug", "short_url", "domain", "domain_id", "destination"].map(String::from),
                );
                header.extend(self.encoder.utm_columns.iter().map(|s| s.to_string()));
                header.extend(["tags", "space", "redirect", "expires_at"].map(String::from));
                let line = csv_line(&header);
                self.out.write_all(line.as_bytes())
            }
            PlanFormat::Json => {
                let campaign = spec.campaign.get("name");
                write!(
                    self.out,
                    "{{\"spec\":{},\"campaign\":{},\"links\":[",
                    serde_json::to_string(&spec.path_display)?,
                    serde_json::to_string(&campaign)?
                )
            }
            PlanFormat::Jsonl | PlanFormat::Table => Ok(()),
        }
    }

    /// Write one link, given what `LinkEncoder::encode_into` made of it: its bytes (the
    /// line-based formats) or its table row.
    pub fn link(&mut self, row: Option<TableRow>, encoded: &[u8]) -> io::Result<()> {
        match self.encoder.format {
            PlanFormat::Json => {
                self.out
                    .write_all(if self.first { b"\n" } else { b",\n" })?;
                self.first = false;
                self.out.write_all(encoded)
            }
            PlanFormat::Jsonl | PlanFormat::Csv => self.out.write_all(encoded),
            PlanFormat::Table => {
                self.table_rows.extend(row);
                Ok(())
            }
        }
    }

    pub fn finish(mut self, spec: &Spec, summary: &Summary) -> io::Result<W> {
        match self.encoder.format {
            PlanFormat::Json => {
                write!(self.out, "\n],\"summary\":")?;
                serde_json::to_writer(&mut self.out, summary)?;
                self.out.write_all(b"}\n")?;
            }
            PlanFormat::Table => {
                let head = [
                    "SLUG".to_string(),
                    "SHORT URL".to_string(),
                    "DESTINATION".to_string(),
                ];
                let w0 = self
                    .table_rows
                    .iter()
                    .map(|r| r[0].len())
                    .max()
                    .unwrap_or(0)
                    .max(head[0].len());
                let w1 = self
                    .table_rows
                    .iter()
                    .map(|r| r[1].len())
                    .max()
                    .unwrap_or(0)
                    .max(head[1].len());
                let rows = std::mem::take(&mut self.table_rows);
                writeln!(self.out, "{:<w0$}  {:<w1$}  {}", head[0], head[1], head[2])?;
                for r in &rows {
                    writeln!(self.out, "{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2])?;
                }
                writeln!(self.out)?;
                for line in summary_lines(spec, summary) {
                    writeln!(self.out, "{line}")?;
                }
            }
            PlanFormat::Csv | PlanFormat::Jsonl => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Turns one link into its bytes for the line-based formats. Stateless, so it runs on
/// the rendering threads.
#[derive(Debug, Clone)]
pub struct LinkEncoder {
    format: PlanFormat,
    utm_columns: Vec<&'static str>,
}

/// Slug, short URL and destination: one row of the table format.
pub type TableRow = [String; 3];

impl LinkEncoder {
    /// Append the link's bytes to `out` (JSON Lines, JSON, CSV), or give its table row.
    pub fn encode_into(&self, link: &PlannedLink, out: &mut Vec<u8>) -> Option<TableRow> {
        match self.format {
            PlanFormat::Jsonl => {
                let at = out.len();
                if serde_json::to_writer(&mut *out, link).is_err() {
                    out.truncate(at);
                }
                out.push(b'\n');
            }
            PlanFormat::Json => {
                let at = out.len();
                if serde_json::to_writer(&mut *out, link).is_err() {
                    out.truncate(at);
                }
            }
            PlanFormat::Csv => {
                let mut row: Vec<String> = link.cell.0.iter().map(|(_, k)| k.clone()).collect();
                row.push(link.slug.clone());
                row.push(link.short_url.clone().unwrap_or_default());
                row.push(link.domain.host.clone().unwrap_or_default());
                row.push(link.domain.id.clone().unwrap_or_default());
                row.push(link.destination.clone());
                for c in &self.utm_columns {
                    row.push(link.utm.get(*c).cloned().unwrap_or_default());
                }
                row.push(link.tags.join(";"));
                row.push(link.space.clone().unwrap_or_default());
                row.push(link.redirect.to_string());
                row.push(link.expires_at.clone().unwrap_or_default());
                out.extend_from_slice(csv_line(&row).as_bytes());
            }
            PlanFormat::Table => {
                let short = link
                    .short_url
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", link.domain.key(), link.slug));
                return Some([link.slug.clone(), short, link.destination.clone()]);
            }
        }
        None
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = neutralize_formula(f);
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&f);
        }
    }
    line.push('\n');
    line
}

/// Human summary: how the count came about.
pub fn summary_lines(spec: &Spec, s: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    let how = match &spec.cells {
        Cells::Matrix => spec
            .dimensions
            .iter()
            .map(|d| format!("{} {}", d.values.len(), d.name))
            .collect::<Vec<_>>()
            .join(" × "),
        Cells::Rows(_) => "rows".to_string(),
    };
    lines.push(format!(
        "{} link(s) planned: {how} = {} combination(s), {} excluded, {} with overrides{}",
        s.links,
        s.combinations,
        s.excluded,
        s.overridden,
        if s.hash_suffixed > 0 {
            format!(", {} hash-suffixed slug(s)", s.hash_suffixed)
        } else {
            String::new()
        }
    ));
    const SHOWN: usize = 10;
    let mut domains: Vec<String> = s
        .per_domain
        .iter()
        .take(SHOWN)
        .map(|(d, n)| format!("{d} ({n})"))
        .collect();
    if s.per_domain.len() > SHOWN {
        domains.push(format!("… and {} more", s.per_domain.len() - SHOWN));
    }
    lines.push(format!(
        "short domains ({}): {}",
        s.per_domain.len(),
        domains.join(", ")
    ));
    lines
}
