//! Stage 3: the plan — every link a build would send — and its dry-run output.
//!
//! `walk` is the one expansion loop: dry-run streams it to the chosen format, `validate`
//! runs it for problems only, and `load` collects it for `build`. So the preview can
//! never disagree with what is sent.

pub mod render;
pub mod stream;
pub mod walk;

pub use crate::model::{Cell, DomainRef, InputFile, Plan, PlanSource, PlannedLink};
pub use render::PlanFormat;
pub use stream::{LinkWalk, SpecPlan, prepare_with};

use crate::diag::{Problem, Report};
use crate::report::Reporter;
use crate::spec::{InputPolicy, Spec};
use crate::{Error, Result, exit};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Parse and check a spec, including the size guard, with the default input limits.
pub fn load_spec(path: &Path, max_links: u64) -> Result<(Spec, serde_json::Value)> {
    load_spec_with(path, max_links, &InputPolicy::default())
}

/// `load_spec`; `inputs` (the runner's flags) limits what the spec may read.
pub fn load_spec_with(
    path: &Path,
    max_links: u64,
    inputs: &InputPolicy,
) -> Result<(Spec, serde_json::Value)> {
    let (spec, resolved) = crate::spec::load_with(path, inputs)?;
    let combos = spec.combinations();
    if combos > u128::from(max_links) {
        let sizes = spec
            .dimensions
            .iter()
            .map(|d| format!("{} {}", d.values.len(), d.name))
            .collect::<Vec<_>>()
            .join(" × ");
        return Err(Report {
            problems: vec![Problem {
                file: spec.path_display.clone(),
                line: 0,
                column: 0,
                message: format!("the matrix has {combos} combinations ({sizes}), more than the limit of {max_links}"),
                help: Some("split the campaign into several specs, or raise the limit with --max-links N".into()),
                snippet: None,
            }],
            ..Report::default()
        }
        .into());
    }
    Ok((spec, resolved))
}

fn source_of(spec: &Spec, resolved: serde_json::Value) -> PlanSource {
    PlanSource {
        spec_path: spec.path_display.clone(),
        spec_sha256: spec.sha256.clone(),
        inputs: spec.inputs.clone(),
        campaign: spec.campaign.get("name").cloned(),
        resolved_spec: resolved,
    }
}

/// Load, expand and validate a spec into an in-memory plan (what `build` sends).
pub fn load(path: &Path, max_links: u64, printer: &dyn Reporter) -> Result<Plan> {
    load_with(path, max_links, &InputPolicy::default(), printer)
}

/// `load`; `inputs` (the runner's flags) limits what the spec may read.
pub fn load_with(
    path: &Path,
    max_links: u64,
    inputs: &InputPolicy,
    printer: &dyn Reporter,
) -> Result<Plan> {
    let (spec, resolved) = load_spec_with(path, max_links, inputs)?;
    let mut links = Vec::new();
    let result = walk::walk_prepared(
        &spec,
        |_| (),
        |l, ()| {
            links.push(l);
            Ok(())
        },
    )
    .map_err(|walk::SinkError::Io(e)| Error::io("collect", path, e))?;
    if let Some(r) = result.report() {
        return Err(r.into());
    }
    for w in &result.warnings {
        printer.warn(w);
    }
    Ok(Plan {
        source: source_of(&spec, resolved),
        links,
        warnings: result.warnings,
        moved: spec.moved.clone(),
    })
}

/// `validate`'s settings.
#[derive(Debug, Clone)]
pub struct ValidateSettings {
    pub spec: std::path::PathBuf,
    /// Refuse a matrix that expands to more links than this.
    pub max_links: u64,
    /// What the spec may read (`--allow-outside-inputs`, `--max-input-bytes`).
    pub inputs: InputPolicy,
}

/// `build --dry-run`'s settings.
#[derive(Debug, Clone)]
pub struct DryRunSettings {
    pub spec: std::path::PathBuf,
    pub max_links: u64,
    pub inputs: InputPolicy,
    pub format: PlanFormat,
    /// `None` or `-`: stdout.
    pub output: Option<std::path::PathBuf>,
    /// Records `output` must not replace (the manifest a build would use, its journal and
    /// lock); the spec and its input files are added once the spec is loaded.
    pub protected: Vec<crate::guard::Protected>,
}

pub fn validate_command(args: &ValidateSettings, printer: &dyn Reporter) -> Result<u8> {
    let (spec, _) = load_spec_with(&args.spec, args.max_links, &args.inputs)?;
    let result = walk::walk_bytes(&spec, |_, _| (), |(), _| Ok(()))
        .map_err(|walk::SinkError::Io(e)| Error::io("check", &args.spec, e))?;
    if let Some(r) = result.report() {
        return Err(r.into());
    }
    for w in &result.warnings {
        printer.warn(w);
    }
    printer.info(&format!("{}: valid", spec.path_display));
    for line in render::summary_lines(&spec, &result.summary) {
        printer.info(&line);
    }
    Ok(exit::OK)
}

/// Spill to disk past this size so a million-row plan doesn't sit in memory.
const SPOOL_BYTES: usize = 8 << 20;

pub fn dry_run_command(args: &DryRunSettings, printer: &dyn Reporter) -> Result<u8> {
    let (spec, _) = load_spec_with(&args.spec, args.max_links, &args.inputs)?;
    if let Some(out) = &args.output {
        let mut protected = crate::guard::spec_files(&args.spec, &spec.inputs);
        protected.extend(args.protected.iter().cloned());
        crate::guard::refuse_protected("--output", out, &protected)?;
    }
    // Output is staged until the whole plan is known to be valid, so bad input never leaves
    // half a plan behind: a temp file beside `--output` (renamed into place at the end), or
    // a spool that spills to disk for stdout.
    let to_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    // A device or pipe (`--output /dev/null`, a named pipe) is written into at the end, like
    // stdout: a temp file renamed over it would replace it.
    let (to_file, to_stream) = match to_file {
        Some(p) if crate::guard::is_stream(p) => (None, Some(p)),
        other => (other, None),
    };
    let staged = match to_file {
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| Error::io("create a file in", dir, e))?;
            remove_on_interrupt(tmp.path().to_path_buf());
            Staged::File(tmp)
        }
        None => Staged::Spool(tempfile::SpooledTempFile::new(SPOOL_BYTES)),
    };
    let mut writer = render::PlanWriter::new(
        args.format,
        std::io::BufWriter::with_capacity(1 << 16, staged),
        &spec,
    );
    let io_err = |e| Error::io("write", "the plan", e);
    writer.begin(&spec).map_err(io_err)?;
    let encoder = writer.encoder();
    let result = walk::walk_bytes(
        &spec,
        |l, out| encoder.encode_into(l, out),
        |row, bytes| writer.link(row, bytes),
    )
    .map_err(|walk::SinkError::Io(e)| io_err(e))?;
    if let Some(r) = result.report() {
        return Err(r.into());
    }
    let buf = writer.finish(&spec, &result.summary).map_err(io_err)?;
    let staged = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
    for w in &result.warnings {
        printer.warn(w);
    }
    match staged {
        Staged::File(tmp) => {
            let p = to_file.unwrap_or(Path::new("-"));
            set_shareable(tmp.as_file());
            tmp.persist(p).map_err(|e| Error::io("write", p, e.error))?;
            if args.format != PlanFormat::Table {
                for line in render::summary_lines(&spec, &result.summary) {
                    printer.info(&line);
                }
            }
        }
        Staged::Spool(mut spool) if to_stream.is_some() => {
            let p = to_stream.unwrap_or(Path::new("-"));
            spool.rewind().map_err(io_err)?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| Error::io("open", p, e))?;
            copy_to(&mut spool, &mut out).map_err(|e| Error::io("write", p, e))?;
            if args.format != PlanFormat::Table {
                for line in render::summary_lines(&spec, &result.summary) {
                    printer.info(&line);
                }
            }
        }
        Staged::Spool(mut spool) => {
            spool.rewind().map_err(io_err)?;
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            if let Err(e) = copy_to(&mut spool, &mut lock) {
                // `nimriz-matrix build --dry-run | head` is fine: stop quietly.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(exit::OK);
                }
                return Err(Error::io("write", "stdout", e));
            }
            if args.format != PlanFormat::Table {
                for line in render::summary_lines(&spec, &result.summary) {
                    printer.detail(&line);
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Ctrl-C, SIGTERM or SIGHUP end the process without running destructors: remove the
/// half-written staging file ourselves, so an interrupted dry-run leaves nothing behind, and
/// exit 128 + the signal (130, 143, 129), as `build` does.
fn remove_on_interrupt(path: std::path::PathBuf) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if let Some(code) = rt.block_on(stop_signal()) {
            let _ = std::fs::remove_file(&path);
            std::process::exit(i32::from(code));
        }
    });
}

/// The exit code of the first stop signal (`None`: no handler could be installed).
async fn stop_signal() -> Option<u8> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return tokio::signal::ctrl_c()
                .await
                .ok()
                .map(|()| exit::INTERRUPTED);
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok().map(|()| exit::INTERRUPTED),
            _ = term.recv() => Some(143),
            _ = hup.recv() => Some(129),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .ok()
            .map(|()| exit::INTERRUPTED)
    }
}

/// Where a dry-run plan is written until it is known to be complete.
enum Staged {
    File(tempfile::NamedTempFile),
    Spool(tempfile::SpooledTempFile),
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Staged::File(f) => f.write(buf),
            Staged::Spool(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Staged::File(f) => f.flush(),
            Staged::Spool(s) => s.flush(),
        }
    }
}

/// Temp files are created owner-only; a plan is an ordinary output file.
fn set_shareable(file: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = file;
}

fn copy_to(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    std::io::copy(from, to)?;
    to.flush()
}
