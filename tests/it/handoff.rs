//! Hand-off of the example campaign, as a user runs it: build against the sandbox, then
//! `export --qr --sheets` and `export --format xlsx`. Every code file and every print-sheet
//! tile is decoded back here, independently of the command's own check, with resvg + rqrr;
//! the workbook is read back with calamine.

use calamine::{Data, Reader, Xlsx};
use nimriz_matrix_core::manifest;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use test_support::{ChildGuard, command, repo};

const KEY: &str = "nmz_sandbox_key";

/// The sandbox for the example spec on a free loopback port, killed on drop.
struct Sandbox {
    _proc: ChildGuard,
    base: String,
}

fn sandbox() -> Sandbox {
    let child = command()
        .args(["sandbox", "--addr", "127.0.0.1:0", "--spec"])
        .arg(repo().join("matrix.example.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut proc = ChildGuard(child);
    let stdout = proc.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the sandbox prints its banner");
    let base = first
        .strip_prefix("nimriz sandbox listening on ")
        .expect("banner")
        .to_string();
    Sandbox { _proc: proc, base }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The example campaign, built against a fresh sandbox in a scratch folder.
fn built_example() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["matrix.example.toml", "brands.csv"] {
        std::fs::copy(repo().join(f), dir.path().join(f)).unwrap();
    }
    let sb = sandbox();
    let out = command()
        .current_dir(dir.path())
        .env("NIMRIZ_API_BASE", &sb.base)
        .env("NIMRIZ_API_KEY", KEY)
        .args(["build", "matrix.example.toml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = dir.path().join("matrix.example.manifest.json");
    (dir, m)
}

fn decode_all(pixmap: &resvg::tiny_skia::Pixmap) -> Vec<String> {
    let (w, h) = (pixmap.width() as usize, pixmap.height() as usize);
    let data = pixmap.data();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let i = (y * w + x) * 4;
        let a = 255 - u32::from(data[i + 3]);
        ((u32::from(data[i]) + a + u32::from(data[i + 1]) + a + u32::from(data[i + 2]) + a) / 3)
            .min(255) as u8
    });
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, t)| t))
        .collect()
}

fn render_svg(path: &Path, scale: f32) -> resvg::tiny_skia::Pixmap {
    let text = std::fs::read_to_string(path).unwrap();
    let tree = resvg::usvg::Tree::from_str(&text, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
}

fn files_with(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_with(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

#[test]
fn qr_codes_and_print_sheets_decode_to_every_scan_url_and_lock_the_links() {
    let (dir, m) = built_example();
    let before = manifest::load(&m).unwrap();
    assert!(before.links.iter().all(|l| l.printed_at.is_none()));
    let expected: BTreeSet<String> = before
        .links
        .iter()
        .map(|l| format!("{}?nr=qr", l.short_url.as_deref().unwrap()))
        .collect();
    assert_eq!(expected.len(), 196);

    let out = run(
        dir.path(),
        &[
            "export",
            "matrix.example.manifest.json",
            "--qr",
            "qr",
            "--sheets",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote 196 QR code(s)"));

    // Named by cell: brand folder, channel-variant file.
    let first = &before.links[0];
    let named = dir
        .path()
        .join("qr")
        .join(first.cell.get("brand").unwrap())
        .join(format!(
            "{}-{}.png",
            first.cell.get("channel").unwrap(),
            first.cell.get("variant").unwrap()
        ));
    assert!(named.is_file(), "{}", named.display());

    // Every PNG decodes (here, independently) to its link's scan URL; all 196 are there.
    let mut pngs = Vec::new();
    files_with(&dir.path().join("qr"), "png", &mut pngs);
    assert_eq!(pngs.len(), 196);
    let mut from_png = BTreeSet::new();
    for p in &pngs {
        let pixmap = resvg::tiny_skia::Pixmap::load_png(p).unwrap();
        assert_eq!((pixmap.width(), pixmap.height()), (1024, 1024));
        let found = decode_all(&pixmap);
        assert_eq!(found.len(), 1, "{}", p.display());
        from_png.insert(found[0].clone());
    }
    assert_eq!(from_png, expected);
    // The SVGs too (a sample: they are the same modules).
    let mut svgs = Vec::new();
    files_with(&dir.path().join("qr"), "svg", &mut svgs);
    let code_svgs: Vec<_> = svgs
        .iter()
        .filter(|p| !p.starts_with(dir.path().join("qr/sheets")))
        .collect();
    assert_eq!(code_svgs.len(), 196);
    for p in code_svgs.iter().take(5) {
        let found = decode_all(&render_svg(p, 0.5));
        assert!(
            found.len() == 1 && expected.contains(&found[0]),
            "{}",
            p.display()
        );
    }

    // Print sheets: one set of pages per brand; every code on them reads back (whole page
    // rendered at ~200 dpi, decoded tile by tile by the page layout).
    let mut sheets = Vec::new();
    files_with(&dir.path().join("qr/sheets"), "svg", &mut sheets);
    let brands: BTreeSet<_> = before
        .links
        .iter()
        .map(|l| l.cell.get("brand").unwrap())
        .collect();
    for b in &brands {
        assert!(
            sheets
                .iter()
                .any(|s| s.file_name().unwrap().to_string_lossy().starts_with(b)),
            "no sheet for {b}"
        );
    }
    let mut from_sheets = BTreeSet::new();
    for s in &sheets {
        let text = std::fs::read_to_string(s).unwrap();
        let tiles = text.matches("<g transform").count();
        let decoded = nimriz_handoff::sheet::decode_page(&text, tiles).unwrap();
        for d in decoded {
            from_sheets.insert(d.unwrap());
        }
        assert!(text.contains("https://"), "captions carry the short URL");
    }
    assert_eq!(from_sheets, expected, "every code is on a sheet, once");

    // The print lock is recorded; the rest of the record is untouched.
    let after = manifest::load(&m).unwrap();
    assert!(after.links.iter().all(|l| l.printed_at.is_some()));
    for (a, b) in after.links.iter().zip(&before.links) {
        assert_eq!(
            (&a.key, &a.status, &a.url_id),
            (&b.key, &b.status, &b.url_id)
        );
    }

    // A second export refuses to overwrite, names the files, and writes nothing.
    let png_before = std::fs::read(&named).unwrap();
    let again = run(
        dir.path(),
        &["export", "matrix.example.manifest.json", "--qr", "qr"],
    );
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exist") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&named).unwrap(), png_before);
    // --force replaces them.
    let forced = run(
        dir.path(),
        &[
            "export",
            "matrix.example.manifest.json",
            "--qr",
            "qr",
            "--force",
            "--qr-size",
            "512",
        ],
    );
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let small = resvg::tiny_skia::Pixmap::load_png(&named).unwrap();
    assert_eq!(small.width(), 512);

    // The example's CSV export round-trips: as a row spec it plans all 196 as unchanged.
    let csv = run(
        dir.path(),
        &[
            "export",
            "matrix.example.manifest.json",
            "-o",
            // The default for a file: a UTF-8 BOM (Excel needs it); the row spec skips it.
            "links.csv",
        ],
    );
    assert_eq!(csv.status.code(), Some(0));
    let plan = run(
        dir.path(),
        &[
            "plan",
            "links.csv",
            "--manifest",
            "matrix.example.manifest.json",
            "--detailed-exitcode",
        ],
    );
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(out.contains("196 unchanged"), "{out}");
}

#[test]
fn hostile_cells_bad_styles_and_clashing_names_are_refused_before_writing() {
    let (dir, m) = built_example();
    let record = std::fs::read(&m).unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--qr-dark", "#aaaaaa"], "contrast"),
        (
            &["--qr-dark", "#ffffff", "--qr-light", "#000000"],
            "inverted",
        ),
        (&["--qr-dark", "black"], "#rrggbb"),
        (&["--qr-size", "40"], "too small"),
        (&["--qr-name", "{brand}"], "same code file"),
        (&["--qr-name", "../{slug}"], "relative pattern"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["export", "matrix.example.manifest.json", "--qr", "out"];
        args.extend_from_slice(flags);
        let out = run(dir.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{flags:?} wrote files");
    }
    assert_eq!(
        std::fs::read(&m).unwrap(),
        record,
        "the record is untouched"
    );

    // Cell text that tries to leave the folder stays inside it.
    let mut manifest: serde_json::Value = serde_json::from_slice(&record).unwrap();
    manifest["links"][0]["cell"]["brand"] = "../../escape".into();
    manifest["links"][1]["cell"]["brand"] = "CON".into();
    std::fs::write(&m, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = run(
        dir.path(),
        &["export", "matrix.example.manifest.json", "--qr", "out"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("escape").exists());
    assert!(dir.path().join("out/escape").is_dir());
    assert!(dir.path().join("out/_CON").is_dir());
}

#[test]
fn the_workbook_has_a_filterable_sheet_per_brand_with_clickable_links() {
    let (dir, m) = built_example();
    let manifest = manifest::load(&m).unwrap();
    let out = run(
        dir.path(),
        &[
            "export",
            "matrix.example.manifest.json",
            "--format",
            "xlsx",
            "-o",
            "links.xlsx",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // xlsx needs a file; -o must not be the record.
    let no_file = run(
        dir.path(),
        &["export", "matrix.example.manifest.json", "--format", "xlsx"],
    );
    assert_eq!(no_file.status.code(), Some(2));
    let record = std::fs::read(&m).unwrap();
    let clobber = run(
        dir.path(),
        &[
            "export",
            "matrix.example.manifest.json",
            "--format",
            "xlsx",
            "-o",
            "matrix.example.manifest.json",
        ],
    );
    assert_eq!(clobber.status.code(), Some(2));
    assert_eq!(std::fs::read(&m).unwrap(), record);

    let mut book: Xlsx<_> = calamine::open_workbook(dir.path().join("links.xlsx")).unwrap();
    let names = book.sheet_names();
    let brands: Vec<&str> = {
        let mut v = Vec::new();
        for l in &manifest.links {
            let b = l.cell.get("brand").unwrap();
            if !v.contains(&b) {
                v.push(b);
            }
        }
        v
    };
    let mut expected_names = vec!["links".to_string()];
    expected_names.extend(brands.iter().map(|b| b.to_string()));
    assert_eq!(names, expected_names);

    let flat = book.worksheet_range("links").unwrap();
    let header: Vec<String> = flat
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for col in [
        "brand",
        "channel",
        "variant",
        "slug",
        "short_url",
        "destination",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "tags",
        "status",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "no {col} column in {header:?}"
        );
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(flat.height(), manifest.links.len() + 1);
    for (row, link) in flat.rows().skip(1).zip(&manifest.links) {
        assert_eq!(row[col("slug")], Data::String(link.slug.clone()));
        assert_eq!(
            row[col("short_url")].to_string(),
            *link.short_url.as_ref().unwrap()
        );
        assert_eq!(row[col("destination")].to_string(), link.destination);
        assert_eq!(row[col("utm_source")].to_string(), link.utm["utm_source"]);
        assert_eq!(row[col("tags")].to_string(), link.tags.join(";"));
        assert_eq!(row[col("status")].to_string(), "created");
    }
    let per_brand: usize = brands
        .iter()
        .map(|b| book.worksheet_range(b).unwrap().height() - 1)
        .sum();
    assert_eq!(per_brand, manifest.links.len());

    // Short links are hyperlinks; the header is frozen and filtered (read from the XML).
    let zip = std::fs::read(dir.path().join("links.xlsx")).unwrap();
    let sheet1 = unzip_entry(&zip, "xl/worksheets/sheet1.xml");
    assert!(sheet1.contains("<autoFilter"), "filters");
    assert!(sheet1.contains("state=\"frozen\""), "frozen header");
    let rels = unzip_entry(&zip, "xl/worksheets/_rels/sheet1.xml.rels");
    assert!(rels.contains(manifest.links[0].short_url.as_deref().unwrap()));
}

/// One entry of the xlsx container (a zip), to check what calamine does not expose.
fn unzip_entry(bytes: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entry = archive.by_name(name).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut entry, &mut out).unwrap();
    out
}
