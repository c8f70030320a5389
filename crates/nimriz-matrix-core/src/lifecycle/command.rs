//! `plan`: expand the spec, read the record, classify, print — offline, no key.

use super::classify::{Classified, classify};
use super::render::{PlanView, render_human, render_json, render_markdown, summary};
use super::saved::{Hashes, hashes_now};
use crate::report::Reporter;
use crate::{Error, Result, exit};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanOutput {
    Human,
    Json,
    Markdown,
}

#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub spec: PathBuf,
    pub manifest: PathBuf,
    pub max_links: u64,
    pub format: PlanOutput,
    /// 0 no changes, 2 changes, 1 error (Terraform's `-detailed-exitcode`).
    pub detailed_exitcode: bool,
    /// Also save the plan as JSON here, for `build --plan`.
    pub out: Option<PathBuf>,
    /// List unchanged links too.
    pub verbose: bool,
    /// What the spec may make the command read (the runner's flags).
    pub inputs: crate::spec::InputPolicy,
    /// Allow a plan that changes the slug or domain of links whose codes were printed.
    pub break_printed: bool,
}

/// The spec compared with its record: what a build would do.
pub struct Compared {
    pub classified: Classified,
    pub hashes: Hashes,
    pub manifest_exists: bool,
}

/// Expand `spec` and compare it with the manifest at `manifest` (absent: all creates).
pub fn compare(
    spec: &Path,
    manifest: &Path,
    max_links: u64,
    inputs: &crate::spec::InputPolicy,
    printer: &dyn Reporter,
) -> Result<Compared> {
    let plan = crate::plan::load_with(spec, max_links, inputs, printer)?;
    // Hash before reading, so a record written in between makes the saved plan stale.
    let hashes = hashes_now(&plan.source, manifest)?;
    let record = match std::fs::metadata(manifest) {
        Ok(_) => Some(crate::manifest::load(manifest)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("read", manifest, e)),
    };
    let classified = classify(&plan.links, record.as_ref(), &plan.moved);
    Ok(Compared {
        classified,
        hashes,
        manifest_exists: record.is_some(),
    })
}

/// `nimriz-matrix plan`: the comparison on stdout in the chosen format.
pub fn plan_command(s: &PlanSettings, printer: &dyn Reporter) -> Result<u8> {
    let c = compare(&s.spec, &s.manifest, s.max_links, &s.inputs, printer)?;
    c.classified.check_printed(s.break_printed)?;
    let spec = s.spec.display().to_string();
    let manifest = s.manifest.display().to_string();
    let view = PlanView {
        spec: &spec,
        manifest: c.manifest_exists.then_some(manifest.as_str()),
        classified: &c.classified,
        hashes: &c.hashes,
        verbose: s.verbose,
    };
    if !c.manifest_exists {
        printer.info(&format!(
            "no manifest at {manifest} yet: every link is a create"
        ));
    }
    if let Some(out) = &s.out {
        // The saved plan must not replace what it was made from.
        let mut protected = crate::guard::spec_files(&s.spec, &c.hashes.inputs);
        for (p, what) in [
            (s.manifest.clone(), "the manifest"),
            (
                crate::manifest::journal_path(&s.manifest),
                "the manifest's journal",
            ),
            (
                crate::manifest::lock_path(&s.manifest),
                "the manifest's lock file",
            ),
        ] {
            protected.push(crate::guard::Protected::new(p, what));
        }
        crate::guard::refuse_protected("--out", out, &protected)?;
        let json = render_json(&view);
        crate::manifest::write_atomic(out, |w| w.write_all(json.as_bytes()))?;
        printer.info(&format!(
            "saved the plan to {}; apply exactly it with `nimriz-matrix build {spec} --plan {}`",
            out.display(),
            out.display()
        ));
    }
    let text = match s.format {
        PlanOutput::Human => render_human(&view),
        PlanOutput::Json => render_json(&view),
        PlanOutput::Markdown => render_markdown(&view),
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("write", "stdout", e))?;
    if s.format != PlanOutput::Human {
        printer.info(&summary(&c.classified.counts));
    }
    Ok(
        if s.detailed_exitcode && c.classified.counts.has_changes() {
            exit::CHANGES
        } else {
            exit::OK
        },
    )
}
