//! Saved plans: `plan --out plan.json` records what it compared (hashes of the spec, every
//! input file and the record), and `build --plan plan.json` refuses to apply it when any of
//! them changed since — it would no longer be the plan that was reviewed.

use crate::model::{InputFile, PlanSource};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub spec_sha256: String,
    pub inputs: Vec<InputFile>,
    /// SHA-256 of the manifest's bytes followed by its journal's (`null`: no manifest).
    pub manifest_sha256: Option<String>,
}

/// Hashes of what a plan is made from, now.
pub fn hashes_now(source: &PlanSource, manifest: &Path) -> Result<Hashes> {
    let read = |p: &Path| match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", p, e)),
    };
    let manifest_sha256 = match read(manifest)? {
        None => None,
        Some(m) => {
            let mut h = Sha256::new();
            h.update(&m);
            if let Some(j) = read(&crate::manifest::journal_path(manifest))? {
                h.update(&j);
            }
            Some(hex::encode(h.finalize()))
        }
    };
    Ok(Hashes {
        spec_sha256: source.spec_sha256.clone(),
        inputs: source.inputs.clone(),
        manifest_sha256,
    })
}

/// What `build --plan` reads back from a saved plan (the rest of the JSON is for people).
#[derive(Debug, Clone, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub version: u32,
    pub spec: String,
    pub hashes: Hashes,
    pub summary: SavedSummary,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SavedSummary {
    #[serde(default)]
    pub update: usize,
    #[serde(default)]
    pub rename: usize,
    #[serde(default)]
    pub cannot_update: usize,
}

impl SavedPlan {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read the saved plan", path, e))?;
        let plan: SavedPlan = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{} is not a saved plan ({e}); make one with `nimriz-matrix plan SPEC --out {}`",
                path.display(),
                path.display()
            ))
        })?;
        if plan.format != "nimriz-matrix-plan" || plan.version != 1 {
            return Err(Error::Usage(format!(
                "{} is a {:?} version {} document, not a version-1 nimriz-matrix plan",
                path.display(),
                plan.format,
                plan.version
            )));
        }
        Ok(plan)
    }

    /// The saved plan carries changes that need `--update`.
    pub fn needs_update(&self) -> bool {
        self.summary.update + self.summary.rename + self.summary.cannot_update > 0
    }
}

/// Refuse a saved plan whose spec, inputs or record changed since it was made.
pub fn check_fresh(saved: &SavedPlan, plan_path: &Path, now: &Hashes) -> Result<()> {
    let mut changed = Vec::new();
    if saved.hashes.spec_sha256 != now.spec_sha256 {
        changed.push(format!("the spec ({})", saved.spec));
    }
    for f in &now.inputs {
        match saved.hashes.inputs.iter().find(|s| s.path == f.path) {
            Some(s) if s.sha256 == f.sha256 => {}
            Some(_) => changed.push(format!("input {}", f.path)),
            None => changed.push(format!("input {} (new)", f.path)),
        }
    }
    for s in &saved.hashes.inputs {
        if !now.inputs.iter().any(|f| f.path == s.path) {
            changed.push(format!("input {} (no longer used)", s.path));
        }
    }
    if saved.hashes.manifest_sha256 != now.manifest_sha256 {
        changed.push("the manifest (a build, refresh or import ran since)".into());
    }
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "the saved plan {} is stale: {} changed since it was made, so it is not what was \
         reviewed. Nothing was sent; make a new plan with `nimriz-matrix plan {} --out {}`",
        plan_path.display(),
        changed.join(", "),
        saved.spec,
        plan_path.display()
    )))
}
