//! The crash-safe store a build writes through: manifest `M` + journal `M.journal` + lock
//! `M.lock`. The journal format and the crash-safety argument are in `journal.rs`.

use super::atomic::{self, write_atomic};
use super::journal::{self, Writer};
use super::lock::Lock;
use super::model::{
    LinkRecord, Manifest, RunCounts, RunRecord, SCHEMA_VERSION, TOOL_NAME, now_rfc3339,
};
use crate::model::PlanSource;
use crate::{Error, Result};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// A manifest opened for one build: holds the lock until `finish` or drop.
#[derive(Debug)]
pub struct ManifestStore {
    path: PathBuf,
    manifest: Manifest,
    /// key → index in `manifest.links`.
    index: HashMap<String, usize>,
    journal: Writer,
    lock: Lock,
    notes: Vec<String>,
}

impl ManifestStore {
    /// Take the lock (`Error::Lock` if held), load `M` if present, replay `M.journal` on
    /// top (later records win, by `key`), immediately compact (atomic write, truncate
    /// journal), update `source`/`api_host`, and append a new `RunRecord` (started now).
    pub fn open(path: &Path, source: &PlanSource, api_host: Option<&str>) -> Result<Self> {
        let lock = Lock::acquire(&lock_path(path), path)?;
        // We hold the lock, so any temp file beside M is from a writer that crashed.
        atomic::remove_stale_temps(path);
        // Nobody else writes while we hold the lock, so one plain read of each is consistent.
        let jpath = journal_path(path);
        let mut notes = Vec::new();
        let mut manifest = match read_opt(path, "read the manifest")? {
            Some(bytes) => {
                let m = parse_manifest(path, &bytes)?;
                ensure_writable(path, &m)?;
                notes.extend(other_campaign_note(path, &m.source, source));
                m
            }
            None => Manifest::new(source.clone(), None),
        };
        let journal_bytes = read_opt(&jpath, "read the journal")?.unwrap_or_default();
        let replay = journal::parse(&jpath, &journal_bytes)?;
        notes.extend(replay.notes);
        let index = merge(&mut manifest, replay.records);

        // From here on M is written in this version's format.
        manifest.schema_version = SCHEMA_VERSION;
        manifest.tool_version = env!("CARGO_PKG_VERSION").to_string();
        manifest.source = source.clone();
        manifest.api_host = api_host.map(str::to_string);
        manifest.runs.push(RunRecord {
            started_at: now_rfc3339(),
            finished_at: None,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            counts: None,
            outcome: None,
        });
        // Compact: M now holds everything the journal had, so the journal can be emptied.
        write_manifest(path, &manifest)?;
        let journal = Writer::open_empty(&jpath)?;
        Ok(ManifestStore {
            path: path.to_path_buf(),
            manifest,
            index,
            journal,
            lock,
            notes,
        })
    }

    pub fn get(&self, key: &str) -> Option<&LinkRecord> {
        self.index.get(key).map(|&i| &self.manifest.links[i])
    }

    /// All links, in plan order (order of first appearance).
    pub fn links(&self) -> impl Iterator<Item = &LinkRecord> {
        self.manifest.links.iter()
    }

    /// Append records to the journal (one line each), flush + fsync once, then update
    /// memory. New keys are appended to `links` in call order. Call BEFORE sending a batch
    /// (status `Pending`, attempts incremented) and AFTER its results arrive. On error
    /// nothing is recorded (memory unchanged); stop the run.
    pub fn record(&mut self, records: &[LinkRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.journal.append(records)?;
        for rec in records {
            upsert(&mut self.manifest, &mut self.index, rec.clone());
        }
        Ok(())
    }

    /// Renames: each `(old key, record)` replaces the old key's record in place (same
    /// position in `links`). The journal has no line for "this key is gone", so the manifest
    /// is compacted at once. A crash before that leaves the old record; the next plan shows
    /// the rename again and repeating `update-slug` to the slug it already has is confirmed
    /// by reading the link back.
    pub fn rekey(&mut self, moves: &[(String, LinkRecord)]) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        let mut replace: HashMap<usize, LinkRecord> = HashMap::new();
        let mut appended = Vec::new();
        for (old, rec) in moves {
            match self.index.get(old) {
                Some(&i) => {
                    replace.insert(i, rec.clone());
                }
                None => appended.push(rec.clone()),
            }
        }
        // A record already held under a new key gives way to the renamed one.
        let targets: std::collections::HashSet<String> =
            moves.iter().map(|(_, r)| r.key.clone()).collect();
        let links = std::mem::take(&mut self.manifest.links);
        let mut kept = Vec::with_capacity(links.len() + appended.len());
        for (i, rec) in links.into_iter().enumerate() {
            match replace.remove(&i) {
                Some(new) => kept.push(new),
                None if targets.contains(&rec.key) => {}
                None => kept.push(rec),
            }
        }
        for rec in appended {
            if !kept.iter().any(|k: &LinkRecord| k.key == rec.key) {
                kept.push(rec);
            }
        }
        self.manifest.links = kept;
        self.index = self
            .manifest
            .links
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.clone(), i))
            .collect();
        self.checkpoint()
    }

    /// Compaction for long runs: atomic rewrite of `M`, then truncate the journal.
    pub fn checkpoint(&mut self) -> Result<()> {
        write_manifest(&self.path, &self.manifest)?;
        self.journal.reset()
    }

    /// Close the run: set `finished_at`/`counts`/`outcome`, compact, remove the journal,
    /// release the lock. Returns the final manifest.
    pub fn finish(self, counts: RunCounts, outcome: &str) -> Result<Manifest> {
        let ManifestStore {
            path,
            mut manifest,
            journal,
            lock,
            ..
        } = self;
        if let Some(run) = manifest.runs.last_mut() {
            run.finished_at = Some(now_rfc3339());
            run.counts = Some(counts);
            run.outcome = Some(outcome.to_string());
        }
        write_manifest(&path, &manifest)?;
        drop(journal);
        let jpath = journal_path(&path);
        match std::fs::remove_file(&jpath) {
            Ok(()) => atomic::sync_dir(&atomic::parent_dir(&jpath))
                .map_err(|e| Error::io("sync the folder of", &jpath, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the journal", &jpath, e)),
        }
        lock.release();
        Ok(manifest)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record the workspace the links live in (`apply/workspace.rs` checked it). Written at
    /// once when it changed, so it is on disk before the first link is sent.
    pub fn set_workspace(&mut self, workspace: super::model::WorkspaceRecord) -> Result<()> {
        if self.manifest.workspace.as_ref() == Some(&workspace) {
            return Ok(());
        }
        self.manifest.workspace = Some(workspace);
        self.checkpoint()
    }

    /// The manifest as it stands (everything recorded so far).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Things found while opening that the user should hear about (a torn journal line
    /// ignored, ...). Print them as warnings.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// Read-only load (manifest + journal replay, no lock) for `export` and other tools.
pub fn load(path: &Path) -> Result<Manifest> {
    load_with_notes(path).map(|(m, _)| m)
}

/// [`load`], plus notes for the user (e.g. a torn last journal line was ignored).
pub fn load_with_notes(path: &Path) -> Result<(Manifest, Vec<String>)> {
    let jpath = journal_path(path);
    let (manifest_bytes, journal_bytes) = read_snapshot(path, &jpath)?;
    let Some(manifest_bytes) = manifest_bytes else {
        return Err(Error::io(
            "read the manifest",
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                "no manifest there; pass the file `build` wrote (by default \
                 <spec name>.manifest.json beside the spec, or its --manifest path)",
            ),
        ));
    };
    let mut manifest = parse_manifest(path, &manifest_bytes)?;
    let replay = journal::parse(&jpath, &journal_bytes)?;
    merge(&mut manifest, replay.records);
    Ok((manifest, replay.notes))
}

/// Mark links as printed (`export --qr`): under the manifest lock (refused while a build
/// runs), replay the journal, set `printed_at` on the given keys, replace `M` atomically and
/// remove the compacted journal. Unknown keys are ignored.
pub fn mark_printed(path: &Path, keys: &[String]) -> Result<()> {
    let lock = Lock::acquire(&lock_path(path), path)?;
    atomic::remove_stale_temps(path);
    let jpath = journal_path(path);
    let Some(bytes) = read_opt(path, "read the manifest")? else {
        return Err(Error::io(
            "read the manifest",
            path,
            io::Error::new(io::ErrorKind::NotFound, "no manifest there"),
        ));
    };
    let mut manifest = parse_manifest(path, &bytes)?;
    ensure_writable(path, &manifest)?;
    let journal_bytes = read_opt(&jpath, "read the journal")?.unwrap_or_default();
    let replay = journal::parse(&jpath, &journal_bytes)?;
    let index = merge(&mut manifest, replay.records);
    let now = now_rfc3339();
    for key in keys {
        if let Some(&i) = index.get(key) {
            manifest.links[i].printed_at = Some(now.clone());
        }
    }
    write_manifest(path, &manifest)?;
    match std::fs::remove_file(&jpath) {
        Ok(()) => atomic::sync_dir(&atomic::parent_dir(&jpath))
            .map_err(|e| Error::io("sync the folder of", &jpath, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove the journal", &jpath, e)),
    }
    lock.release();
    Ok(())
}

/// Read `M` and its journal as one consistent pair while a build may be writing them
/// (we take no lock). Replaying a journal over a *newer* `M` could roll a link back
/// (e.g. `created` → `pending`), so retry until `M` did not change around the journal
/// read and the journal only grew meanwhile (a compaction truncates it).
fn read_snapshot(path: &Path, jpath: &Path) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
    // ~5 s: compactions are occasional, a clean window comes quickly.
    const TRIES: u32 = 250;
    for _ in 0..TRIES {
        let m1 = read_opt(path, "read the manifest")?;
        let j1 = read_opt(jpath, "read the journal")?.unwrap_or_default();
        let m2 = read_opt(path, "read the manifest")?;
        let j2 = read_opt(jpath, "read the journal")?.unwrap_or_default();
        if m1 == m2 && j2.starts_with(&j1) {
            return Ok((m1, j1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(Error::io(
        "read the manifest",
        path,
        io::Error::other("it kept changing while being read (a build is rewriting it); try again"),
    ))
}

/// A manifest reused by another spec or campaign (`build b.toml --manifest a.manifest.json`)
/// mixes two campaigns' links in one file; `source` then only names the latest. Say so.
/// Compared by spec file name (not the whole path: `cd` elsewhere is the same spec) and
/// campaign.
fn other_campaign_note(path: &Path, previous: &PlanSource, now: &PlanSource) -> Option<String> {
    let file_name = |s: &PlanSource| {
        Path::new(&s.spec_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    if file_name(previous) == file_name(now) && previous.campaign == now.campaign {
        return None;
    }
    let campaign = |s: &PlanSource| match &s.campaign {
        Some(c) => format!("campaign `{c}`"),
        None => "no campaign name".to_string(),
    };
    Some(format!(
        "manifest {} was last written for spec `{}` ({}); it now also records `{}` ({}) — use \
         --manifest to keep campaigns apart",
        path.display(),
        previous.spec_path,
        campaign(previous),
        now.spec_path,
        campaign(now)
    ))
}

/// `<dir>/<stem>.manifest.json` for a spec at `<dir>/<stem>.<ext>`.
pub fn default_path(spec: &Path) -> PathBuf {
    let stem = spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "matrix".to_string());
    spec.with_file_name(format!("{stem}.manifest.json"))
}

/// `M.journal`.
pub fn journal_path(manifest: &Path) -> PathBuf {
    with_suffix(manifest, ".journal")
}

/// `M.lock`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    with_suffix(manifest, ".lock")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// The file's bytes, or `None` if it does not exist.
fn read_opt(path: &Path, action: &'static str) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(action, path, e)),
    }
}

fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::io(
            "read the manifest",
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it is not a valid nimriz-matrix manifest ({e}); it may be damaged or \
                     a different file. Restore it from a backup or point to the right file"
                ),
            ),
        )
    })
}

/// Refuse to rewrite a manifest this version would damage.
fn ensure_writable(path: &Path, m: &Manifest) -> Result<()> {
    let problem = if m.tool != TOOL_NAME {
        format!("it was written by \"{}\", not {TOOL_NAME}", m.tool)
    } else if m.schema_version > SCHEMA_VERSION {
        format!(
            "it uses manifest format {} from nimriz-matrix {}, newer than this version \
             ({}, format {SCHEMA_VERSION}); upgrade nimriz-matrix",
            m.schema_version,
            m.tool_version,
            env!("CARGO_PKG_VERSION")
        )
    } else {
        return Ok(());
    };
    Err(Error::io(
        "update the manifest",
        path,
        io::Error::new(io::ErrorKind::InvalidData, problem),
    ))
}

/// Replay `records` over `manifest` (later wins by key; new keys appended) and return the
/// key index. Also folds duplicate keys a hand-edited manifest might have.
fn merge(manifest: &mut Manifest, records: Vec<LinkRecord>) -> HashMap<String, usize> {
    let existing = std::mem::take(&mut manifest.links);
    let mut index = HashMap::with_capacity(existing.len() + records.len());
    for rec in existing.into_iter().chain(records) {
        upsert(manifest, &mut index, rec);
    }
    index
}

fn upsert(manifest: &mut Manifest, index: &mut HashMap<String, usize>, rec: LinkRecord) {
    match index.get(&rec.key) {
        Some(&i) => manifest.links[i] = rec,
        None => {
            index.insert(rec.key.clone(), manifest.links.len());
            manifest.links.push(rec);
        }
    }
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, manifest)?;
        w.write_all(b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_sits_beside_the_spec() {
        assert_eq!(
            default_path(Path::new("/c/matrix.example.toml")),
            PathBuf::from("/c/matrix.example.manifest.json")
        );
        assert_eq!(
            default_path(Path::new("links.csv")),
            PathBuf::from("links.manifest.json")
        );
        assert_eq!(
            journal_path(Path::new("a/m.json")),
            PathBuf::from("a/m.json.journal")
        );
        assert_eq!(lock_path(Path::new("m.json")), PathBuf::from("m.json.lock"));
    }
}
