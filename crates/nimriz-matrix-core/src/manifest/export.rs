//! `nimriz-matrix export MANIFEST`: the manifest as CSV (for the media team's spreadsheets)
//! or JSON (the manifest with its journal replayed).

use super::atomic::{parent_dir, write_atomic};
use super::model::{LinkRecord, LinkStatus, Manifest};
use super::store::{journal_path, load_with_notes, lock_path};
use crate::{Error, Result, exit};
use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Columns after the cell's dimension columns, in this order.
pub const LINK_COLUMNS: [&str; 12] = [
    "slug",
    "short_url",
    "destination",
    "status",
    "url_id",
    "domain_host",
    "domain_id",
    "error_code",
    "error_message",
    "support_reference",
    "attempts",
    "updated_at",
];

/// The last columns: the live link's fields a row spec reads back (`expires_at`, `redirect`,
/// `space`).
pub const LIVE_FIELD_COLUMNS: [&str; 3] = ["expires_at", "redirect", "space"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// `export`'s settings.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub manifest: std::path::PathBuf,
    pub format: ExportFormat,
    /// `None` or `-`: stdout.
    pub output: Option<std::path::PathBuf>,
    /// Start a CSV with a UTF-8 byte-order mark, which Excel needs to read UTF-8 (without
    /// it, `é` shows as `Ã©`); Google Sheets, LibreOffice and Python's `utf-8-sig` skip it.
    pub bom: bool,
}

/// The UTF-8 byte-order mark.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub fn export_command(args: &ExportSettings, printer: &dyn crate::report::Reporter) -> Result<u8> {
    if let Some(out) = args.output.as_deref() {
        refuse_to_overwrite_the_record(&args.manifest, out)?;
    }
    let (manifest, notes) = load_with_notes(&args.manifest)?;
    for note in notes
        .iter()
        .map(String::as_str)
        .chain(unfinished_build(&manifest).as_deref())
    {
        printer.warn(note);
    }
    let render = |w: &mut dyn Write| match args.format {
        ExportFormat::Csv if args.bom => {
            w.write_all(UTF8_BOM).and_then(|()| write_csv(&manifest, w))
        }
        ExportFormat::Csv => write_csv(&manifest, w),
        ExportFormat::Json => write_json(&manifest, w),
    };
    match args.output.as_deref() {
        Some(path) if path != Path::new("-") => write_atomic(path, render)?,
        _ => {
            let mut out = BufWriter::new(io::stdout().lock());
            match render(&mut out).and_then(|()| out.flush()) {
                Ok(()) => {}
                // `export ... | head`: the reader has all it wants; stop quietly.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(Error::io("write", "standard output", e)),
            }
        }
    }
    Ok(exit::OK)
}

/// After a crash (`kill -9`, power loss) the manifest holds only part of the campaign and
/// nothing in the export itself says so: the last run has no `finished_at`. Also true
/// while a build is still running, hence "did not finish (or is still running)".
pub fn unfinished_build(manifest: &Manifest) -> Option<String> {
    let last = manifest.runs.last()?;
    if last.finished_at.is_some() {
        return None;
    }
    let pending = manifest
        .links
        .iter()
        .filter(|l| l.status == LinkStatus::Pending)
        .count();
    Some(format!(
        "the last build (started {}) did not finish (or is still running); {pending} link(s) \
         are pending, and links it had not reached yet are missing from this manifest — \
         re-run `nimriz-matrix build {}` to complete it",
        last.started_at, manifest.source.spec_path
    ))
}

/// `export m.json -o m.json` would replace the record with its own CSV.
fn refuse_to_overwrite_the_record(manifest: &Path, output: &Path) -> Result<()> {
    // Compare folder (resolved) + file name: the output need not exist yet.
    let resolve = |p: &Path| {
        let dir = std::fs::canonicalize(parent_dir(p)).ok()?;
        Some(dir.join(p.file_name()?))
    };
    let Some(out) = resolve(output) else {
        return Ok(());
    };
    for own in [
        manifest.to_path_buf(),
        journal_path(manifest),
        lock_path(manifest),
    ] {
        if resolve(&own).is_some_and(|own| own == out) {
            return Err(Error::Usage(format!(
                "--output {} would overwrite the manifest's own files; choose another file",
                output.display()
            )));
        }
    }
    Ok(())
}

pub fn write_json(manifest: &Manifest, w: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, manifest)?;
    w.write_all(b"\n")
}

/// The cell's dimension names, in order of first appearance across links.
pub fn dimension_names(manifest: &Manifest) -> Vec<String> {
    let mut dimensions: Vec<String> = Vec::new();
    for link in &manifest.links {
        for (dim, _) in &link.cell.0 {
            if !dimensions.iter().any(|d| d == dim) {
                dimensions.push(dim.clone());
            }
        }
    }
    dimensions
}

/// Every UTM parameter any link carries: the five standard ones in their usual order, then
/// the others by name.
pub fn utm_columns(manifest: &Manifest) -> Vec<String> {
    const STANDARD: [&str; 5] = [
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for link in &manifest.links {
        seen.extend(link.utm.keys().map(String::as_str));
    }
    let mut out: Vec<String> = STANDARD
        .iter()
        .filter(|s| seen.contains(**s))
        .map(|s| s.to_string())
        .collect();
    out.extend(
        seen.iter()
            .filter(|s| !STANDARD.contains(s))
            .map(|s| s.to_string()),
    );
    out
}

/// One row per link: the cell's dimensions (in order of first appearance across links),
/// then [`LINK_COLUMNS`], then every UTM parameter, `tags` (`;`-separated) and
/// [`LIVE_FIELD_COLUMNS`] (so the CSV is a row spec that plans as `unchanged` against its
/// manifest). A dimension named like a fixed column gets a `cell_` prefix.
pub fn write_csv(manifest: &Manifest, w: &mut dyn Write) -> io::Result<()> {
    let dimensions = dimension_names(manifest);
    let utms = utm_columns(manifest);
    let mut csv = csv::Writer::from_writer(w);
    let header = dimensions
        .iter()
        .map(|d| {
            if LINK_COLUMNS.contains(&d.as_str())
                || LIVE_FIELD_COLUMNS.contains(&d.as_str())
                || utms.contains(d)
                || d == "tags"
            {
                Cow::Owned(format!("cell_{d}"))
            } else {
                Cow::Borrowed(d.as_str())
            }
        })
        .chain(LINK_COLUMNS.iter().map(|c| Cow::Borrowed(*c)))
        .chain(utms.iter().map(|u| Cow::Borrowed(u.as_str())))
        .chain(std::iter::once(Cow::Borrowed("tags")))
        .chain(LIVE_FIELD_COLUMNS.iter().map(|c| Cow::Borrowed(*c)));
    csv.write_record(header.map(|h| neutralize(&h).into_owned()))
        .map_err(csv_io)?;
    for link in &manifest.links {
        let fields = link_fields(link);
        let tags = link.tags.join(";");
        let live = [
            link.expires_at.clone().unwrap_or_default(),
            link.redirect.map(|r| r.to_string()).unwrap_or_default(),
            link.space.clone().unwrap_or_default(),
        ];
        let cells = dimensions.iter().map(|d| link.cell.get(d).unwrap_or(""));
        let row = cells
            .chain(fields.iter().map(String::as_str))
            .chain(
                utms.iter()
                    .map(|u| link.utm.get(u).map_or("", String::as_str)),
            )
            .chain(std::iter::once(tags.as_str()))
            .chain(live.iter().map(String::as_str));
        csv.write_record(row.map(|f| neutralize(f).into_owned()))
            .map_err(csv_io)?;
    }
    csv.flush()
}

fn link_fields(link: &LinkRecord) -> [String; 12] {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let err = link.error.as_ref();
    [
        link.slug.clone(),
        opt(&link.short_url),
        link.destination.clone(),
        link.status.as_str().to_string(),
        opt(&link.url_id),
        opt(&link.domain.host),
        opt(&link.domain.id),
        err.and_then(|e| e.code.clone()).unwrap_or_default(),
        err.map(|e| e.message.clone()).unwrap_or_default(),
        err.and_then(|e| e.support_reference.clone())
            .unwrap_or_default(),
        link.attempts.to_string(),
        link.updated_at.clone(),
    ]
}

pub use crate::plan::render::neutralize_formula as neutralize;

/// Keep the io::ErrorKind (a broken pipe must stay recognisable).
fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::model::{Manifest, RunRecord};
    use crate::model::{Cell, DomainRef, PlanSource};

    #[test]
    fn dimension_named_like_a_fixed_column_is_prefixed() {
        let mut m = Manifest::new(PlanSource::default(), None);
        m.links.push(LinkRecord {
            key: "go.example/a".into(),
            cell: Cell(vec![("status".into(), "vip".into())]),
            slug: "a".into(),
            domain: DomainRef {
                id: None,
                host: Some("go.example".into()),
            },
            destination: "https://example.com/".into(),
            utm: Default::default(),
            idempotency_key: "k".into(),
            status: LinkStatus::Pending,
            short_url: None,
            url_id: None,
            existing_destination: None,
            tags: Vec::new(),
            printed_at: None,
            expires_at: None,
            redirect: None,
            space: None,
            origin: None,
            outside: None,
            retired: None,
            history: Vec::new(),
            error: None,
            attempts: 0,
            updated_at: "2026-01-01T00:00:00Z".into(),
        });
        let mut out = Vec::new();
        write_csv(&m, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("cell_status,slug,"));
        assert!(lines.next().unwrap().starts_with("vip,a,"));
    }

    #[test]
    fn only_an_unfinished_last_run_is_reported() {
        let mut m = Manifest::new(PlanSource::default(), None);
        assert_eq!(unfinished_build(&m), None, "no run yet");
        let run = |finished: Option<&str>| RunRecord {
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: finished.map(str::to_string),
            tool_version: String::new(),
            counts: None,
            outcome: None,
        };
        // An old crashed run followed by a finished one: the campaign is complete.
        m.runs = vec![run(None), run(Some("2026-01-01T00:01:00Z"))];
        assert_eq!(unfinished_build(&m), None);
        m.runs.push(run(None));
        let w = unfinished_build(&m).unwrap();
        assert!(
            w.contains("started 2026-01-01T00:00:00Z") && w.contains("0 link(s)"),
            "{w}"
        );
    }

    #[test]
    fn neutralizes_only_formula_triggers() {
        for bad in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralize(bad), format!("'{bad}"));
        }
        for fine in ["https://x.example/?a=-1", "acme", "", "1", "'quoted", " =x"] {
            assert!(matches!(neutralize(fine), Cow::Borrowed(_)), "{fine:?}");
        }
    }
}
