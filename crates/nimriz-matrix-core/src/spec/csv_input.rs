//! CSV files the spec loads: dimension values (`from = "brands.csv"`) and row-per-link input.

use super::input::{self, InputError, InputPolicy};
use crate::diag::Problem;
use crate::diag::{Location, SourceFile};
use crate::model::InputFile;
use sha2::{Digest, Sha256};
use std::path::Path;

pub struct CsvTable {
    pub source: SourceFile,
    pub headers: Vec<String>,
    /// (1-based line, fields) per record.
    pub records: Vec<(usize, Vec<String>)>,
    pub input: InputFile,
}

/// Read and check a CSV: UTF-8 without BOM, a header row of unique non-empty names,
/// every row as wide as the header. Fields are trimmed (spreadsheets leave stray spaces).
pub fn read_csv(
    path: &Path,
    display: &str,
    referenced_at: &Location,
    policy: &InputPolicy,
    confine_to: Option<&Path>,
) -> Result<CsvTable, Problem> {
    let refused = |e: InputError| {
        let (msg, help) = e.describe(&format!("CSV file `{display}`"));
        referenced_at.problem(msg, Some(help))
    };
    if let Some(dir) = confine_to {
        input::confine(dir, path, policy).map_err(refused)?;
    }
    let bytes = input::read(path, policy).map_err(refused)?;
    let input = InputFile {
        path: display.to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let whole = Location {
        file: display.to_string(),
        line: 1,
        column: 1,
        snippet: None,
    };
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(whole.problem(
            "CSV file starts with a byte-order mark (BOM)",
            Some("save it as UTF-8 without a BOM: Google Sheets' \"Download → CSV\" does, or strip the first 3 bytes (`sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`); Excel's \"CSV UTF-8\" adds a BOM and its plain \"CSV\" is not UTF-8".into()),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        Location {
            line,
            ..whole.clone()
        }
        .problem(
            "CSV file is not valid UTF-8",
            Some("re-save it with UTF-8 encoding".into()),
        )
    })?;
    let source = SourceFile::new(display, text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .delimiter(sniff_delimiter(&source.text))
        .from_reader(source.text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(csv_problem(&source, &e)),
    };
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(source.locate_line(1).problem(
            "CSV file has no header row",
            Some("the first line must name the columns, e.g. `key,name,site`".into()),
        ));
    }
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(source.locate_line(1).problem(
                format!("CSV header column {} has no name", i + 1),
                Some("name every column in the header row".into()),
            ));
        }
        if headers[..i].contains(h) {
            return Err(source.locate_line(1).problem(
                format!("CSV header names column `{h}` twice"),
                Some("column names must be unique".into()),
            ));
        }
    }
    let mut records = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| csv_problem(&source, &e))?;
        // The byte offset, not csv's line counter: that one is off by one on CRLF files.
        let line = rec.position().map_or(0, |p| line_of(&source, p));
        // Spreadsheets leave rows of empty cells (`,,,`) below the data: not a link.
        if rec.iter().all(str::is_empty) {
            continue;
        }
        records.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(CsvTable {
        source,
        headers,
        records,
        input,
    })
}

fn csv_problem(source: &SourceFile, e: &csv::Error) -> Problem {
    let line = e.position().map_or(0, |p| line_of(source, p));
    let loc = if line > 0 {
        source.locate_line(line)
    } else {
        source.whole()
    };
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => loc.problem(
            format!("CSV row has {len} field(s) but the header has {expected_len} (ragged row)"),
            Some(
                "every row needs one field per header column; quote fields that contain commas"
                    .into(),
            ),
        ),
        _ => loc.problem(format!("CSV file could not be read: {e}"), None),
    }
}

/// The line a record starts on. csv's own line counter, and its byte offset on CRLF files
/// (which points at the `\n` ending the previous line), are one short: skip line ends.
fn line_of(source: &SourceFile, pos: &csv::Position) -> usize {
    let bytes = source.text.as_bytes();
    let mut at = (pos.byte() as usize).min(bytes.len());
    while at < bytes.len() && (bytes[at] == b'\n' || bytes[at] == b'\r') {
        at += 1;
    }
    source.line_col(at).0
}

/// Spreadsheets in many locales export `;`-separated files, some tab-separated: take the
/// separator the header line uses most (outside quotes), comma when in doubt.
fn sniff_delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for c in &mut counts {
                if c.0 == b {
                    c.1 += 1;
                }
            }
        }
    }
    counts
        .iter()
        .filter(|c| c.1 > 0)
        .max_by_key(|c| (c.1, c.0 == b','))
        .map_or(b',', |c| c.0)
}

pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
