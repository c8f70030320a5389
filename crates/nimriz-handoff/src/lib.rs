//! Hand-off of a built campaign to the people who use the links: QR codes (with Nimriz's
//! `?nr=qr` scan marker) for the print shop, print sheets, and the spreadsheet for the media
//! team. Reads a manifest; writes files; marks exported codes as printed in the manifest (the
//! print lock, see `plan`).
//!
//! - `qr`: one code — URL, modules, SVG, PNG, decode-back.
//! - `names`: safe file names from cell keys.
//! - `sheet`: A4 SVG print sheets, and decoding them back.
//! - `xlsx`: the workbook.

pub mod names;
pub mod qr;
pub mod sheet;
pub mod xlsx;

use nimriz_matrix_core::manifest::{
    LinkRecord, LinkStatus, Manifest, dimension_names, load_with_notes, mark_printed, write_atomic,
};
use nimriz_matrix_core::report::Reporter;
use nimriz_matrix_core::{Error, Result, exit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use names::NamePattern;
pub use qr::{Correction, QrStyle, Rgb};

/// `export MANIFEST --qr DIR`'s settings.
#[derive(Debug, Clone)]
pub struct QrSettings {
    pub manifest: PathBuf,
    pub dir: PathBuf,
    /// `--qr-name`; `None`: [`NamePattern::default_for`].
    pub name: Option<String>,
    pub style: QrStyle,
    /// Also write print sheets (`DIR/sheets/…`).
    pub sheets: bool,
    /// Dimension that groups sheets (and spreadsheet tabs); `None`: the first dimension.
    pub sheet_by: Option<String>,
    /// Replace existing files.
    pub force: bool,
}

/// One code to write.
struct Planned<'m> {
    link: &'m LinkRecord,
    url: String,
    rel: PathBuf,
}

/// Write codes (and sheets) for every live link of a manifest. Exit 0 when every link has a
/// code, 1 when some were skipped (failed, drifted or pending links have no code).
pub fn qr_command(s: &QrSettings, printer: &dyn Reporter) -> Result<u8> {
    s.style.check().map_err(Error::Usage)?;
    let (manifest, notes) = load_with_notes(&s.manifest)?;
    for note in &notes {
        printer.warn(note);
    }
    let dims = dimension_names(&manifest);
    let pattern = match &s.name {
        Some(p) => NamePattern::parse(p, &dims).map_err(Error::Usage)?,
        None => NamePattern::default_for(&dims),
    };
    let sheet_by = resolve_sheet_by(s.sheet_by.as_deref(), &dims)?;

    // 1. Choose the links and their file names; refuse clashes before writing anything.
    let mut planned = Vec::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for link in &manifest.links {
        match (&link.short_url, link.status.is_done()) {
            (Some(short), true) => planned.push(Planned {
                link,
                url: qr::scan_url(short).map_err(Error::Usage)?,
                rel: pattern.path_for(link),
            }),
            _ => *skipped.entry(link.status.as_str()).or_default() += 1,
        }
    }
    let mut by_name: BTreeMap<&Path, &LinkRecord> = BTreeMap::new();
    for p in &planned {
        if let Some(other) = by_name.insert(&p.rel, p.link) {
            return Err(Error::Usage(format!(
                "two links would get the same code file {}: {} and {}; choose a --qr-name \
                 pattern that tells them apart, e.g. --qr-name '{{slug}}'",
                p.rel.display(),
                other.cell.label(),
                p.link.cell.label()
            )));
        }
    }
    let mut targets = Vec::new();
    for p in &planned {
        for ext in ["svg", "png"] {
            targets.push(s.dir.join(p.rel.with_extension(ext)));
        }
    }
    let pages = if s.sheets {
        sheet_pages(&planned, sheet_by.as_deref(), &s.dir)
    } else {
        Vec::new()
    };
    targets.extend(pages.iter().map(|p| p.path.clone()));
    refuse_existing(&targets, s.force)?;

    // 2. Encode and check every code before anything is written.
    let codes = encode_all(&planned, &s.style)?;
    let page_svgs: Vec<String> = pages
        .iter()
        .map(|page| {
            let tiles: Vec<sheet::Tile> = page
                .members
                .iter()
                .map(|&i| sheet::Tile {
                    code: codes[i].0.clone(),
                    caption: planned[i].link.cell.label(),
                    url: planned[i].link.short_url.clone().unwrap_or_default(),
                })
                .collect();
            sheet::page(&page.title, page.number, page.of, &tiles, &s.style)
        })
        .collect();
    let check_page = |(page, svg): (&Page, &String)| -> Result<()> {
        let decoded = sheet::decode_page(svg, page.members.len()).map_err(Error::Usage)?;
        for (&i, got) in page.members.iter().zip(decoded) {
            if got.as_deref() != Ok(planned[i].url.as_str()) {
                return Err(Error::Usage(format!(
                    "the print sheet {} does not read back: the code for {} gave {got:?}; \
                     nothing was written (try a larger --qr-quiet-zone or a higher --qr-ec)",
                    page.path.display(),
                    planned[i].link.cell.label()
                )));
            }
        }
        Ok(())
    };
    let checks: Vec<(&Page, &String)> = pages.iter().zip(&page_svgs).collect();
    on_all_cores(&checks, |&pair| check_page(pair))?;

    // 3. The print lock: these links are now printed (a later slug change would break them).
    let keys: Vec<String> = planned.iter().map(|p| p.link.key.clone()).collect();
    mark_printed(&s.manifest, &keys)?;

    // 4. Write.
    for (p, (_, svg, png)) in planned.iter().zip(&codes) {
        write_file(&s.dir.join(p.rel.with_extension("svg")), svg.as_bytes())?;
        write_file(&s.dir.join(p.rel.with_extension("png")), png)?;
    }
    for (page, svg) in pages.iter().zip(&page_svgs) {
        write_file(&page.path, svg.as_bytes())?;
    }
    printer.info(&format!(
        "wrote {} QR code(s) (SVG + PNG){} to {}; each decodes to its short URL with ?nr=qr",
        planned.len(),
        if pages.is_empty() {
            String::new()
        } else {
            format!(" and {} print sheet page(s)", pages.len())
        },
        s.dir.display()
    ));
    if skipped.is_empty() {
        return Ok(exit::OK);
    }
    let what = skipped
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ");
    printer.warn(&format!(
        "no code for {what} link(s): only links that are live as planned (created or exists) \
         get a code; fix them and re-run `build`, then export again"
    ));
    Ok(exit::PARTIAL)
}

fn resolve_sheet_by(asked: Option<&str>, dims: &[String]) -> Result<Option<String>> {
    match asked {
        Some(d) if dims.iter().any(|x| x == d) => Ok(Some(d.to_string())),
        Some(d) => Err(Error::Usage(format!(
            "--sheet-by {d}: not a dimension of this manifest; use one of: {}",
            dims.join(", ")
        ))),
        None => Ok(dims.first().cloned()),
    }
}

struct Page {
    title: String,
    number: usize,
    of: usize,
    path: PathBuf,
    /// Indexes into the planned codes.
    members: Vec<usize>,
}

fn sheet_pages(planned: &[Planned<'_>], by: Option<&str>, dir: &Path) -> Vec<Page> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let value = by
            .and_then(|d| p.link.cell.get(d))
            .unwrap_or("links")
            .to_string();
        match groups.iter_mut().find(|(v, _)| *v == value) {
            Some((_, m)) => m.push(i),
            None => groups.push((value, vec![i])),
        }
    }
    let mut pages = Vec::new();
    for (value, members) in groups {
        let chunks: Vec<&[usize]> = members.chunks(sheet::PER_PAGE).collect();
        let of = chunks.len();
        let stem = names::sanitize_component(&value);
        for (n, chunk) in chunks.into_iter().enumerate() {
            let file = if of == 1 {
                format!("{stem}.svg")
            } else {
                format!("{stem}-{}.svg", n + 1)
            };
            pages.push(Page {
                title: match by {
                    Some(d) => format!("{d}: {value}"),
                    None => value.clone(),
                },
                number: n + 1,
                of,
                path: dir.join("sheets").join(file),
                members: chunk.to_vec(),
            });
        }
    }
    pages
}

/// Codes as (modules, SVG, PNG), each PNG decoded back and compared with its URL. Spread
/// over the cores: rasterising and decoding are the slow part.
fn encode_all(
    planned: &[Planned<'_>],
    style: &QrStyle,
) -> Result<Vec<(qr::Code, String, Vec<u8>)>> {
    let one = |p: &Planned<'_>| -> Result<(qr::Code, String, Vec<u8>)> {
        let code = qr::Code::encode(&p.url, style.correction).map_err(Error::Usage)?;
        let svg = qr::svg(&code, style);
        let png = qr::png(&code, style).map_err(Error::Usage)?;
        qr::verify_png(&png, &p.url).map_err(|e| {
            Error::Usage(format!(
                "the QR code for {} ({}) does not read back: {e}; nothing was written",
                p.link.cell.label(),
                p.url
            ))
        })?;
        Ok((code, svg, png))
    };
    on_all_cores(planned, one)
}

/// `f` over `items` on every core, results in order; the first error wins.
fn on_all_cores<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Result<Vec<R>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Error::Usage("rendering a QR code failed".into()))??,
            );
        }
        Ok(out)
    })
}

/// Existing files are refused (all named at once) unless `--force`; a symbolic link is
/// refused even then, so a code is never written through a link to somewhere else.
fn refuse_existing(targets: &[PathBuf], force: bool) -> Result<()> {
    let mut existing = Vec::new();
    for t in targets {
        match std::fs::symlink_metadata(t) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Usage(format!(
                    "{} is a symbolic link; remove it or choose another --qr folder",
                    t.display()
                )));
            }
            Ok(m) if m.is_dir() => {
                return Err(Error::Usage(format!(
                    "{} is a folder where a code file would go; choose another --qr-name",
                    t.display()
                )));
            }
            Ok(_) if !force => existing.push(t.display().to_string()),
            _ => {}
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    let shown = existing
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = existing.len().saturating_sub(5);
    Err(Error::Usage(format!(
        "{} file(s) already exist ({shown}{}); nothing was written — pass --force to replace \
         them, or choose another --qr folder",
        existing.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder", dir, e))?;
    }
    write_atomic(path, |w| w.write_all(bytes))
}

/// `export MANIFEST --format xlsx -o FILE`'s settings.
#[derive(Debug, Clone)]
pub struct XlsxSettings {
    pub manifest: PathBuf,
    pub output: PathBuf,
    /// Tabs per value of this dimension; `None`: the first dimension. `Some("")`: no tabs.
    pub sheet_by: Option<String>,
}

pub fn xlsx_command(s: &XlsxSettings, printer: &dyn Reporter) -> Result<u8> {
    refuse_the_record(&s.manifest, &s.output)?;
    let (manifest, notes) = load_with_notes(&s.manifest)?;
    for note in &notes {
        printer.warn(note);
    }
    let dims = dimension_names(&manifest);
    let by = match s.sheet_by.as_deref() {
        Some("") => None,
        other => resolve_sheet_by(other, &dims)?,
    };
    let bytes = xlsx::workbook(&manifest, by.as_deref()).map_err(Error::Usage)?;
    write_atomic(&s.output, |w| w.write_all(&bytes))?;
    printer.info(&format!(
        "wrote {} link(s) to {}",
        manifest.links.len(),
        s.output.display()
    ));
    Ok(exit::OK)
}

/// `-o` must not name the manifest or its journal/lock.
fn refuse_the_record(manifest: &Path, output: &Path) -> Result<()> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let own = [
        manifest.to_path_buf(),
        nimriz_matrix_core::manifest::journal_path(manifest),
        nimriz_matrix_core::manifest::lock_path(manifest),
    ];
    if own.iter().any(|p| same(p, output)) {
        return Err(Error::Usage(format!(
            "--output {} would overwrite the manifest's own files; choose another file",
            output.display()
        )));
    }
    Ok(())
}

/// Links the manifest records as printed (for the plan's print lock).
pub fn printed(manifest: &Manifest) -> impl Iterator<Item = &LinkRecord> {
    manifest
        .links
        .iter()
        .filter(|l| l.printed_at.is_some() && l.status != LinkStatus::Failed)
}
