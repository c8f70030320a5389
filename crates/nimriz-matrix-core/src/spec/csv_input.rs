//! CSV files the spec loads: dimension values (`from = "brands.csv"`) and row-per-link input.

use super::input::{self, InputError, InputPolicy};
use crate::diag::Problem;
use crate::diag::{Location, SourceFile};
use crate::model::InputFile;
pub use encoding_rs::Encoding;
use encoding_rs::{DecoderResult, UTF_8};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

pub struct CsvTable {
    pub source: SourceFile,
    pub headers: Vec<String>,
    /// (1-based line, fields) per record: csv's record, one buffer per row (a `Vec<String>`
    /// per row costs twice the file's size again on a large CSV).
    pub records: Vec<(usize, csv::StringRecord)>,
    pub input: InputFile,
}

/// A CSV whose text and header are checked, its records not yet read: a row spec reads
/// them one at a time (`records`) instead of holding them all at once.
pub struct CsvText {
    pub source: SourceFile,
    pub headers: Vec<String>,
    pub delimiter: u8,
    pub input: InputFile,
}

/// The records of a `CsvText`, read one at a time into one buffer.
pub struct Records<'a> {
    source: &'a SourceFile,
    reader: csv::Reader<&'a [u8]>,
    record: csv::StringRecord,
}

impl Records<'_> {
    /// The next record that is not all empty cells: (1-based line, byte offset where
    /// csv's reader started it, fields), `None` at the end, or the problem that stops the
    /// file (a ragged row, ...).
    pub fn next_record(&mut self) -> Result<Option<(usize, u64, &csv::StringRecord)>, Problem> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(csv_problem(self.source, &e)),
            }
            // Spreadsheets leave rows of empty cells (`,,,`) below the data: not a link.
            if self.record.iter().all(str::is_empty) {
                continue;
            }
            let pos = self.record.position();
            let byte = pos.map_or(0, csv::Position::byte);
            // The byte offset, not csv's line counter: that one is off by one on CRLF files.
            let line = pos.map_or(0, |p| line_of(self.source, p));
            return Ok(Some((line, byte, &self.record)));
        }
    }
}

impl CsvText {
    /// The records below the header, in file order.
    pub fn records(&self) -> Records<'_> {
        Records {
            source: &self.source,
            reader: reader_builder(self.delimiter)
                .has_headers(true)
                .from_reader(self.source.text.as_bytes()),
            record: csv::StringRecord::new(),
        }
    }
}

/// The reader settings every read of a CSV uses (the row spec's second read of a row, in
/// the walk, must split it exactly as the first did).
pub fn reader_builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.trim(csv::Trim::All).delimiter(delimiter);
    b
}

/// The parser `reader_builder` configures inside csv, ready to read a record from its
/// start. (csv's builder builds a new one per reader, which costs more than reading a row;
/// and csv_core's `Clone` of a built parser loses its tables: one is kept per thread.)
fn core_reader(delimiter: u8) -> csv_core::Reader {
    let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    ready(&mut parser);
    parser
}

/// Back to the state a record starts in, as after a record of a file being read.
fn ready(parser: &mut csv_core::Reader) {
    parser.reset();
    // A parser that has read nothing drops a byte-order mark, which only the file's
    // first record (read whole before) can start with: a line end is read first, as
    // nothing (an empty line).
    let _ = parser.read_record(b"\n", &mut [0; 4], &mut [0; 4]);
}

thread_local! {
    /// Parsers by delimiter, for `record_at`.
    static PARSERS: std::cell::RefCell<Vec<(u8, csv_core::Reader)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Read the one record that starts at byte `start` of `text` (a record `Records` read
/// before, at that offset) as csv's reader does: the same parser settings, fields UTF-8
/// and trimmed (`StringRecord::trim`, as `csv::Trim::All`).
pub fn record_at(text: &str, start: u64, delimiter: u8) -> Option<csv::StringRecord> {
    PARSERS.with(|parsers| {
        let mut parsers = parsers.borrow_mut();
        let i = match parsers.iter().position(|(d, _)| *d == delimiter) {
            Some(i) => i,
            None => {
                parsers.push((delimiter, core_reader(delimiter)));
                parsers.len() - 1
            }
        };
        let parser = &mut parsers[i].1;
        let record = read_one(text, start, parser);
        ready(parser);
        record
    })
}

fn read_one(text: &str, start: u64, parser: &mut csv_core::Reader) -> Option<csv::StringRecord> {
    use csv_core::ReadRecordResult;
    let mut input = text.as_bytes().get(usize::try_from(start).ok()?..)?;
    let mut out = vec![0u8; 512];
    let mut ends = vec![0usize; 16];
    let (mut out_len, mut ends_len) = (0, 0);
    // Each pass consumes input or grows a buffer; an empty input is the end of the file.
    let bound = 64 + input.len();
    for _ in 0..bound {
        let at_end = input.is_empty();
        let (result, n_in, n_out, n_ends) =
            parser.read_record(input, &mut out[out_len..], &mut ends[ends_len..]);
        input = &input[n_in..];
        out_len += n_out;
        ends_len += n_ends;
        match result {
            ReadRecordResult::InputEmpty if at_end => return None,
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            ReadRecordResult::Record => {
                let mut record = csv::ByteRecord::with_capacity(out_len, ends_len);
                let mut from = 0;
                for &end in &ends[..ends_len] {
                    record.push_field(out.get(from..end)?);
                    from = end;
                }
                let mut record = csv::StringRecord::from_byte_record(record).ok()?;
                record.trim();
                return Some(record);
            }
            ReadRecordResult::End => return None,
        }
    }
    None
}

/// Where the user says which encoding a CSV is in (for the help of a decoding error).
#[derive(Debug, Clone, Copy)]
pub enum EncodingSetting<'a> {
    /// `encoding = "…"` in the spec table that names the CSV, e.g. "the [[dimension]] `brand`".
    Field(&'a str),
    /// `--encoding LABEL`: the CSV is the spec.
    Flag,
}

impl EncodingSetting<'_> {
    fn how(&self, label: &str) -> String {
        match self {
            EncodingSetting::Field(table) => format!("add encoding = \"{label}\" to {table}"),
            EncodingSetting::Flag => format!("run with --encoding {label}"),
        }
    }
}

/// The encoding a WHATWG label names (`utf-8`, `windows-1252`, `latin1`, `utf-16le`,
/// `shift_jis`, ...), or why not.
pub fn encoding_for_label(label: &str) -> Result<&'static Encoding, String> {
    Encoding::for_label_no_replacement(label.trim().as_bytes()).ok_or_else(|| {
        format!(
            "unknown encoding `{label}`: use a WHATWG label such as utf-8, windows-1252 (also latin1), iso-8859-15, utf-16le, utf-16be, shift_jis, gbk"
        )
    })
}

/// Read and check a CSV: a header row of unique non-empty names, every row as wide as the
/// header. Fields are trimmed (spreadsheets leave stray spaces). The text is UTF-8 (a BOM is
/// skipped), UTF-16 with a BOM, or in `encoding` when given (a BOM still wins: it is what
/// the program that wrote the file said).
pub fn read_csv(
    path: &Path,
    display: &str,
    referenced_at: &Location,
    policy: &InputPolicy,
    confine_to: Option<&Path>,
    encoding: Option<&'static Encoding>,
    set_with: EncodingSetting<'_>,
) -> Result<CsvTable, Problem> {
    let text = open_csv(
        path,
        display,
        referenced_at,
        policy,
        confine_to,
        encoding,
        set_with,
    )?;
    let mut records = Vec::new();
    let mut rows = text.records();
    while let Some((line, _, rec)) = rows.next_record()? {
        records.push((line, rec.clone()));
    }
    drop(rows);
    Ok(CsvTable {
        source: text.source,
        headers: text.headers,
        records,
        input: text.input,
    })
}

/// `read_csv` up to the header: the text decoded and its quotes and header checked; the
/// records are read with `CsvText::records` (whose problems `read_csv` would return).
pub fn open_csv(
    path: &Path,
    display: &str,
    referenced_at: &Location,
    policy: &InputPolicy,
    confine_to: Option<&Path>,
    encoding: Option<&'static Encoding>,
    set_with: EncodingSetting<'_>,
) -> Result<CsvText, Problem> {
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
        file: display.into(),
        line: 1,
        column: 1,
        snippet: None,
    };
    let text = decode(bytes, encoding, &whole, set_with)?;
    let source = SourceFile::new(display, text);
    let delimiter = sniff_delimiter(&source.text);
    // csv would read an unclosed quote to the end of the file and report whatever follows
    // (a "ragged row" far below, or nothing at all): find it first, where it opens.
    if let Some(at) = unterminated_quote(&source.text, delimiter) {
        return Err(source.locate(&(at..at + 1)).problem(
            "CSV field opens a quote that is never closed (unterminated quote)",
            Some("close the quote; inside a quoted field write a quote as `\"\"`, and a field that does not start with `\"` needs no quoting".into()),
        ));
    }
    let mut reader = reader_builder(delimiter)
        .has_headers(true)
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
    Ok(CsvText {
        source,
        headers,
        delimiter,
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

/// The text of a CSV file: see `read_csv`. A byte that is not valid in the encoding is an
/// error at its line and column, naming its offset and value, with the way to say which
/// encoding the file is in.
fn decode(
    mut bytes: Vec<u8>,
    chosen: Option<&'static Encoding>,
    whole: &Location,
    set_with: EncodingSetting<'_>,
) -> Result<String, Problem> {
    let (encoding, bom) = match Encoding::for_bom(&bytes) {
        Some((e, len)) => (e, len),
        None => (chosen.unwrap_or(UTF_8), 0),
    };
    let (body, Malformed { text, at, len }) = if encoding == UTF_8 {
        // The common case, without a copy: only a bad file is decoded again for the details.
        bytes.drain(..bom);
        match String::from_utf8(bytes) {
            Ok(text) => return Ok(text),
            Err(e) => {
                let bytes = e.into_bytes();
                match strict(UTF_8, &bytes) {
                    Ok(text) => return Ok(text),
                    Err(m) => (bytes, m),
                }
            }
        }
    } else {
        match strict(encoding, &bytes[bom..]) {
            Ok(text) => return Ok(text),
            Err(m) => (bytes.split_off(bom), m),
        }
    };
    let line_start = text.rfind('\n').map_or(0, |i| i + 1);
    let line = text.matches('\n').count() + 1;
    let column = text[line_start..].chars().count() + 1;
    let value = body[at..(at + len.max(1)).min(body.len())]
        .iter()
        .map(|b| format!("0x{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ");
    let loc = Location {
        line,
        column,
        snippet: Some(Arc::from(format!(
            "{}\u{FFFD}",
            text[line_start..].trim_end_matches('\r')
        ))),
        ..whole.clone()
    };
    let offset = at + bom;
    let name = encoding.name();
    if bom > 0 {
        return Err(loc.problem(
            format!("CSV file starts with a {name} byte-order mark but byte {value} at offset {offset} is not valid {name}"),
            Some("the file is damaged or mislabelled: re-save it from the spreadsheet (Excel: \"CSV UTF-8\")".into()),
        ));
    }
    let help = if chosen.is_some_and(|c| c != UTF_8) {
        format!(
            "the file is not in {name}: name the encoding it is in ({}), or re-save it as UTF-8 (Excel: \"CSV UTF-8\")",
            set_with.how("LABEL")
        )
    } else if body.iter().take(4096).any(|&b| b == 0) {
        format!(
            "it looks like UTF-16 without a byte-order mark: {} (or utf-16be), or re-save it as UTF-8 (Excel: \"CSV UTF-8\")",
            set_with.how("utf-16le")
        )
    } else {
        format!(
            "it is probably in a legacy encoding (Excel's plain \"CSV\" on Windows writes Windows-1252): {}, or re-save it as UTF-8 (Excel: \"CSV UTF-8\")",
            set_with.how("windows-1252")
        )
    };
    Err(loc.problem(
        format!("CSV file is not valid {name}: byte {value} at offset {offset}"),
        Some(help),
    ))
}

/// Where decoding stopped: the text before it, the offset and length of the bad bytes.
struct Malformed {
    text: String,
    at: usize,
    len: usize,
}

/// Decode without replacement.
fn strict(encoding: &'static Encoding, bytes: &[u8]) -> Result<String, Malformed> {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(
        decoder
            .max_utf8_buffer_length_without_replacement(bytes.len())
            .unwrap_or(bytes.len()),
    );
    let mut read = 0;
    loop {
        let (result, n) =
            decoder.decode_to_string_without_replacement(&bytes[read..], &mut out, true);
        read += n;
        match result {
            DecoderResult::InputEmpty => return Ok(out),
            DecoderResult::OutputFull => out.reserve(bytes.len() - read + 16),
            DecoderResult::Malformed(bad, extra) => {
                let len = usize::from(bad);
                let at = read.saturating_sub(len + usize::from(extra));
                return Err(Malformed { text: out, at, len });
            }
        }
    }
}

/// The byte offset of a quote that opens a field and is never closed, following csv's own
/// rules: a quote opens a quoted field only as its first byte; inside, `""` is a quote and
/// a lone `"` closes it.
fn unterminated_quote(text: &str, delimiter: u8) -> Option<usize> {
    let b = text.as_bytes();
    let mut field_start = true;
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if open.is_some() {
            if c == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    open = None;
                }
            }
        } else if c == b'"' && field_start {
            open = Some(i);
            field_start = false;
        } else {
            field_start = c == b'\n' || c == b'\r' || c == delimiter;
        }
        i += 1;
    }
    open
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

#[cfg(test)]
mod tests {
    use super::*;

    fn whole() -> Location {
        Location {
            file: "b.csv".into(),
            line: 1,
            column: 1,
            snippet: None,
        }
    }

    fn text(bytes: &[u8], chosen: Option<&'static Encoding>) -> Result<String, Problem> {
        decode(bytes.to_vec(), chosen, &whole(), EncodingSetting::Flag)
    }

    fn utf16(s: &str, le: bool) -> Vec<u8> {
        let mut out = if le {
            vec![0xFF, 0xFE]
        } else {
            vec![0xFE, 0xFF]
        };
        for u in s.encode_utf16() {
            out.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        out
    }

    #[test]
    fn a_utf8_bom_is_skipped() {
        assert_eq!(
            text(b"\xEF\xBB\xBFkey\nacme\n", None).unwrap(),
            "key\nacme\n"
        );
        // Also when another encoding was named: the BOM is what the writer said.
        let w1252 = encoding_for_label("windows-1252").unwrap();
        assert_eq!(
            text("\u{feff}k\né\n".as_bytes(), Some(w1252)).unwrap(),
            "k\né\n"
        );
    }

    #[test]
    fn utf16_with_a_bom_is_decoded_and_its_tabs_are_the_separator() {
        let src = "key\tname\r\ncafe\tCafé Münch\r\n";
        for le in [true, false] {
            let t = text(&utf16(src, le), None).unwrap();
            assert_eq!(t, src);
            assert_eq!(sniff_delimiter(&t), b'\t');
        }
    }

    #[test]
    fn a_non_utf8_byte_is_named_with_its_line_column_offset_and_the_fix() {
        let p = text(b"key,name\nacme,Acme\ncafe,Caf\xE9\n", None).unwrap_err();
        assert_eq!((p.line, p.column), (3, 9), "{p:?}");
        assert!(p.message.contains("not valid UTF-8"), "{}", p.message);
        assert!(
            p.message.contains("byte 0xE9 at offset 27"),
            "{}",
            p.message
        );
        let help = p.help.unwrap();
        assert!(help.contains("--encoding windows-1252"), "{help}");
        assert_eq!(p.snippet.as_deref(), Some("cafe,Caf\u{FFFD}"));
        // In a spec's table, the fix is the field.
        let p = decode(
            b"k\n\x80\n".to_vec(),
            None,
            &whole(),
            EncodingSetting::Field("the [[dimension]] `brand`"),
        )
        .unwrap_err();
        assert!(
            p.help
                .unwrap()
                .contains("add encoding = \"windows-1252\" to the [[dimension]] `brand`")
        );
        // UTF-16 without a BOM: NUL bytes give it away.
        let p = text(b"k\x00e\x00y\x00\xFF\xDC", None).unwrap_err();
        assert!(p.help.unwrap().contains("--encoding utf-16le"));
    }

    #[test]
    fn a_named_encoding_decodes_and_its_own_errors_are_located() {
        let w1252 = encoding_for_label("windows-1252").unwrap();
        assert_eq!(
            text(b"key,name\ncafe,Caf\xE9 \x80\n", Some(w1252)).unwrap(),
            "key,name\ncafe,Café €\n"
        );
        let latin1 = encoding_for_label(" Latin1 ").unwrap();
        assert_eq!(latin1, w1252, "WHATWG: latin1 is windows-1252");
        let sjis = encoding_for_label("shift_jis").unwrap();
        let p = text(b"k\nok\n\x82\xA0\xFF\n", Some(sjis)).unwrap_err();
        assert_eq!(p.line, 3, "{p:?}");
        assert!(p.message.contains("not valid Shift_JIS"), "{}", p.message);
        assert!(p.message.contains("offset 7"), "{}", p.message);
    }

    #[test]
    fn a_broken_utf16_file_with_a_bom_is_an_error() {
        let mut b = utf16("k\nx", true);
        b.extend([0x00, 0xD8]); // a lone high surrogate at the end
        let p = text(&b, None).unwrap_err();
        assert!(
            p.message.contains("UTF-16LE byte-order mark"),
            "{}",
            p.message
        );
        assert_eq!(p.line, 2);
    }

    #[test]
    fn unknown_labels_are_refused_with_examples() {
        let e = encoding_for_label("cp-12345").unwrap_err();
        assert!(
            e.contains("unknown encoding `cp-12345`") && e.contains("windows-1252"),
            "{e}"
        );
        // The "replacement" encoding would turn the whole file into one U+FFFD.
        assert!(encoding_for_label("iso-2022-kr").is_err());
    }

    #[test]
    fn unterminated_quotes_are_found_where_they_open() {
        assert_eq!(unterminated_quote("a,b\n\"x,y\"\n", b','), None);
        assert_eq!(unterminated_quote("a,b\n\"x \"\"q\"\" y\",z\n", b','), None);
        // A quote inside an unquoted field is a plain character.
        assert_eq!(unterminated_quote("a,b\nsay \"hi,z\n", b','), None);
        // A quoted field may span lines; one left open runs to the end.
        let t = "a,b\n\"multi\nline\",1\nx,\"open\ny,2\nz,3\n";
        assert_eq!(unterminated_quote(t, b','), t.find("\"open"));
        assert_eq!(unterminated_quote("a;b\nx;\"open\n", b';'), Some(6));
        assert_eq!(unterminated_quote("a,b\n\"x\"\"\n", b','), Some(4));
    }
}
