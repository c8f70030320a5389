//! The journal `M.journal`: progress since the manifest `M` was last rewritten.
//!
//! # Format
//! UTF-8 JSON lines, append-only. Each line is one complete record followed by `\n`:
//!
//! ```text
//! {"t":"link","key":"<domain key>/<slug>","cell":{...},"slug":"...","status":"pending",...}
//! ```
//!
//! `t` says what the line is: `"link"` (the other fields are a full [`LinkRecord`]) or
//! `"run"` (a run started: `{"t":"run","index":N,"run":{RunRecord},"source":{...},...}`,
//! written by `ManifestStore::open` instead of rewriting `M` when there was nothing to
//! compact). Lines with an unknown `t` (written by a newer version) are skipped with a
//! note. Replaying the journal over `M` applies the lines in order; for one `key`, the later
//! line wins; a key not yet in `M` is appended to `links` (plan order = first appearance). A
//! `run` line sets `source`/`api_host` and appends its run unless `runs` already has more
//! than `index` entries (it was compacted into `M`), so replaying twice is harmless.
//! `"run_end"` (`{"t":"run_end","index":N,"finished_at":...,"counts":{...},"outcome":...}`)
//! finishes run `index`: written by a run that changed no record, instead of rewriting `M`
//! just to store its finish (a no-op re-run of 100,000 links would rewrite 119 MB). A run
//! that changed something writes its finish straight into `M` (see below). A journal of
//! nothing but finished runs is kept by the next open and appended to (not compacted), so
//! repeated no-op runs never rewrite `M`; anything else in it (a record, a run without its
//! end, a torn or unknown line) is compacted at open as before. Older versions skip
//! `run_end` lines with a note (their run then reads as unfinished).
//!
//! # Why a `kill -9` at any instant loses nothing recorded
//! 1. `record()` writes its lines with one `write_all` on an `O_APPEND` file and then
//!    fsyncs; only after that does it return, so "recorded" means "on disk". A crash during
//!    `record()` can leave only a *torn last line*, which replay ignores (with a note): the
//!    caller was never told those records were stored. Apply journals a batch's results
//!    after its answer (nothing is journaled before a send: the idempotency key is derived
//!    from the link and what the record already holds), so a lost line at worst causes a resend with the same
//!    idempotency key, never a second link. A failed write is truncated back so a torn line never ends up
//!    in the middle; if even that fails, the journal refuses further appends.
//! 2. `M` is only replaced atomically (temp file, fsync, rename, fsync folder): any crash
//!    leaves the old or the new `M`, never a mix.
//! 3. Compaction writes `M` = old `M` + journal first, and only then empties the journal.
//!    A crash in between leaves the new `M` plus the old journal; replaying it again gives the
//!    same result, because "later line wins by key" is idempotent.
//! 4. A run is recorded before anything else is journaled: compacted into `M` when the
//!    journal had lines to replay (or `M` did not exist yet), else as the journal's first
//!    line (a `run` line, fsynced). `finish` writes the final `M` before deleting the
//!    journal. A run that crashed keeps `finished_at: null`.
//!
//! So every line in the middle of the journal was written completely and fsynced before the
//! next one began; a middle line that does not parse is real damage (or a hand edit), and
//! replay stops with an error naming the file and line rather than guess.

use super::model::{LinkRecord, RunCounts, RunRecord};
use crate::model::PlanSource;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LineOut<'a> {
    Link(&'a LinkRecord),
    Run(&'a RunLine),
    RunEnd(&'a RunEnd),
}

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LineIn {
    Link(Box<LinkRecord>),
    Run(Box<RunLine>),
    RunEnd(Box<RunEnd>),
    #[serde(other)]
    Unknown,
}

/// A `run` line: a run started, with what it set in the manifest's header.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct RunLine {
    /// Its position in `runs` (0-based): a run line replayed over a manifest that already
    /// holds that many runs was compacted into it before (a crash between a compaction's
    /// rename and its journal truncation), and is not added again.
    pub index: usize,
    pub run: RunRecord,
    pub source: PlanSource,
    #[serde(default)]
    pub api_host: Option<String>,
}

impl RunLine {
    /// Apply to a manifest header (idempotent: the same run is not added twice).
    pub fn apply(&self, m: &mut super::model::Manifest) {
        m.source = self.source.clone();
        m.api_host.clone_from(&self.api_host);
        m.tool_version.clone_from(&self.run.tool_version);
        if m.runs.len() <= self.index {
            m.runs.push(self.run.clone());
        }
    }
}

/// A `run_end` line: how run `index` finished, for a run that changed no record (its
/// close appends this instead of rewriting `M`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct RunEnd {
    pub index: usize,
    pub finished_at: String,
    #[serde(default)]
    pub counts: Option<RunCounts>,
    #[serde(default)]
    pub outcome: Option<String>,
}

impl RunEnd {
    /// Apply to a manifest header (idempotent: it only sets fields of run `index`).
    pub fn apply(&self, m: &mut super::model::Manifest) {
        if let Some(run) = m.runs.get_mut(self.index) {
            run.finished_at = Some(self.finished_at.clone());
            run.counts = self.counts;
            run.outcome.clone_from(&self.outcome);
        }
    }
}

/// A run line of the journal: a run started, or one finished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunEvent {
    Start(RunLine),
    End(RunEnd),
}

impl RunEvent {
    pub fn apply(&self, m: &mut super::model::Manifest) {
        match self {
            RunEvent::Start(s) => s.apply(m),
            RunEvent::End(e) => e.apply(m),
        }
    }
}

/// What replay found: the records in order, run lines, and notes for the user (torn tail,
/// skipped lines).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub records: Vec<LinkRecord>,
    pub runs: Vec<RunEvent>,
    pub notes: Vec<String>,
    /// The last line was torn, or a line was of an unknown type: the journal must be
    /// compacted away before anything is appended after it.
    pub unclean: bool,
}

impl Replay {
    /// Only runs that started and finished: nothing a compaction would need to fold into
    /// `M` except run records, so the journal can be kept and appended to.
    pub fn only_finished_runs(&self) -> bool {
        if self.unclean || !self.records.is_empty() {
            return false;
        }
        let mut open: Option<usize> = None;
        for ev in &self.runs {
            match ev {
                RunEvent::Start(s) => {
                    if open.is_some() {
                        return false;
                    }
                    open = Some(s.index);
                }
                // No start before it: the run's start was compacted into `M`.
                RunEvent::End(e) => {
                    if open.is_some_and(|i| i != e.index) {
                        return false;
                    }
                    open = None;
                }
            }
        }
        open.is_none()
    }
}

pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Replay> {
    let mut replay = Replay::default();
    // (1-based line number, bytes) of every non-blank line.
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let last = lines.len();
    for (n, (line_no, line)) in lines.into_iter().enumerate() {
        match serde_json::from_slice::<LineIn>(line) {
            Ok(LineIn::Link(rec)) => replay.records.push(*rec),
            Ok(LineIn::Run(run)) => replay.runs.push(RunEvent::Start(*run)),
            Ok(LineIn::RunEnd(end)) => replay.runs.push(RunEvent::End(*end)),
            Ok(LineIn::Unknown) => {
                replay.unclean = true;
                replay.notes.push(format!(
                    "{}: skipped line {line_no}, a record type this version does not know \
                     (written by a newer nimriz-matrix?)",
                    path.display()
                ));
            }
            Err(_) if n + 1 == last => {
                replay.unclean = true;
                replay.notes.push(format!(
                    "{}: ignored an incomplete last line ({line_no}), left by an interrupted \
                     write; the records in it were never reported as saved",
                    path.display()
                ));
            }
            Err(e) => {
                return Err(Error::io(
                    "replay the journal",
                    path,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "line {line_no} is damaged ({e}); an interrupted write can only \
                             damage the last line, so this file was changed by something \
                             else. Fix or delete that line by hand, then run again"
                        ),
                    ),
                ));
            }
        }
    }
    Ok(replay)
}

/// The open, append-only journal of a locked store.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    path: PathBuf,
    /// Length of the journal after the last complete, fsynced append.
    len: u64,
    /// A failed append could not be rolled back: refuse further appends so no torn line
    /// ends up in the middle. Cleared by a successful `reset`.
    poisoned: bool,
}

impl Writer {
    /// Open (creating) the journal for appending, and empty it. Only call once its
    /// contents are safely in the manifest.
    pub fn open_empty(path: &Path) -> Result<Self> {
        let mut w = Self::open_keep(path)?;
        w.reset()?;
        super::atomic::sync_dir(&super::atomic::parent_dir(path))
            .map_err(|e| Error::io("sync the folder of", path, e))?;
        Ok(w)
    }

    /// Open (creating) the journal for appending, keeping what it holds.
    pub fn open_keep(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io("open the journal", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("open the journal", path, e))?
            .len();
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            len,
            poisoned: false,
        })
    }

    /// An append failed and could not be undone.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes in the journal after the last complete append.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The bytes of an earlier append's line (`span` as `append` returned it).
    pub fn read_span(&self, (at, len): (u64, u32)) -> io::Result<Vec<u8>> {
        super::atomic::read_at(&self.file, at, len)
    }

    /// Append a `run` line, then fsync.
    pub fn append_run(&mut self, run: &RunLine) -> Result<()> {
        let mut buf = serde_json::to_vec(&LineOut::Run(run))
            .map_err(|e| Error::io("encode a journal record for", &self.path, e.into()))?;
        buf.push(b'\n');
        self.append_bytes(&buf)
    }

    /// Append a `run_end` line WITHOUT fsync: it is written only by a run that changed
    /// nothing, and losing it to a power cut leaves that run looking interrupted
    /// (`finished_at: null`), never a record lost. A torn write is caught by the next
    /// open's replay (`Replay::unclean`), which then compacts.
    pub fn append_run_end(&mut self, end: &RunEnd) -> Result<()> {
        let mut buf = serde_json::to_vec(&LineOut::RunEnd(end))
            .map_err(|e| Error::io("encode a journal record for", &self.path, e.into()))?;
        buf.push(b'\n');
        self.append_with(&buf, false)
    }

    /// Append `records` as lines, then fsync. On error nothing is considered written.
    /// Returns where each record's line is (offset, length without the newline).
    pub fn append(&mut self, records: &[LinkRecord]) -> Result<Vec<(u64, u32)>> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        let mut spans = Vec::with_capacity(records.len());
        for rec in records {
            let start = buf.len();
            serde_json::to_writer(&mut buf, &LineOut::Link(rec))
                .map_err(|e| Error::io("encode a journal record for", &self.path, e.into()))?;
            spans.push((self.len + start as u64, (buf.len() - start) as u32));
            buf.push(b'\n');
        }
        self.append_bytes(&buf)?;
        Ok(spans)
    }

    fn append_bytes(&mut self, buf: &[u8]) -> Result<()> {
        self.append_with(buf, true)
    }

    fn append_with(&mut self, buf: &[u8], sync: bool) -> Result<()> {
        if self.poisoned {
            return Err(Error::io(
                "append to the journal",
                &self.path,
                io::Error::other(
                    "an earlier write to the journal failed and could not be undone; \
                     stop this run and start it again (nothing recorded is lost)",
                ),
            ));
        }
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Roll back a partial line; a failed fsync leaves the page state unknown,
                // so refuse further appends either way until the next compaction.
                let _ = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_all());
                self.poisoned = true;
                Err(Error::io("append to the journal", &self.path, e))
            }
        }
    }

    /// Empty the journal (its contents are now in the manifest).
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io("empty the journal", &self.path, e))?;
        self.len = 0;
        self.poisoned = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::model::LinkStatus;
    use crate::model::{Cell, DomainRef};

    fn rec(slug: &str, status: LinkStatus) -> LinkRecord {
        let domain = DomainRef {
            id: None,
            host: Some("go.example".into()),
        };
        LinkRecord {
            key: LinkRecord::key_for(&domain, slug),
            cell: Cell(vec![("brand".into(), "acme".into())]),
            slug: slug.into(),
            domain,
            destination: "https://example.com/".into(),
            utm: Default::default(),
            idempotency_key: "k".into(),
            status,
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
            attempts: 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn line(r: &LinkRecord) -> String {
        let mut s = serde_json::to_string(&LineOut::Link(r)).unwrap();
        s.push('\n');
        s
    }

    #[test]
    fn round_trip_and_line_shape() {
        let a = rec("a", LinkStatus::Pending);
        let text = line(&a);
        assert!(text.starts_with(r#"{"t":"link","key":"go.example/a","#));
        let replay = parse(Path::new("j"), text.as_bytes()).unwrap();
        assert_eq!(replay.records, vec![a]);
        assert!(replay.notes.is_empty());
    }

    #[test]
    fn torn_last_line_is_ignored_with_note() {
        let a = rec("a", LinkStatus::Created);
        let b = line(&rec("b", LinkStatus::Pending));
        let text = format!("{}{}", line(&a), &b[..b.len() / 2]);
        let replay = parse(Path::new("j"), text.as_bytes()).unwrap();
        assert_eq!(replay.records, vec![a]);
        assert_eq!(replay.notes.len(), 1);
        assert!(replay.notes[0].contains("incomplete last line (2)"));
    }

    #[test]
    fn damaged_middle_line_is_an_error_naming_file_and_line() {
        let a = line(&rec("a", LinkStatus::Created));
        let text = format!("{a}{{\"t\":\"link\",\"key\n{a}");
        let err = parse(Path::new("/x/m.json.journal"), text.as_bytes()).unwrap_err();
        let msg = format!("{err} {}", std::error::Error::source(&err).unwrap());
        assert!(msg.contains("/x/m.json.journal"), "{msg}");
        assert!(msg.contains("line 2 is damaged"), "{msg}");
        assert_eq!(err.exit_code(), crate::exit::LOCAL);
    }

    #[test]
    fn unknown_record_types_are_skipped_and_blank_lines_ignored() {
        let a = rec("a", LinkStatus::Created);
        let text = format!("{{\"t\":\"future\",\"x\":1}}\n\n{}", line(&a));
        let replay = parse(Path::new("j"), text.as_bytes()).unwrap();
        assert_eq!(replay.records, vec![a]);
        assert_eq!(replay.notes.len(), 1);
    }
}
