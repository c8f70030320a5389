//! The crash-safe store a build writes through: manifest `M` + journal `M.journal` + lock
//! `M.lock`. The journal format and the crash-safety argument are in `journal.rs`.

use super::atomic::{self, write_atomic};
use super::journal::{self, Writer};
use super::lock::Lock;
use super::model::{
    LinkRecord, LinkSummary, Manifest, RunCounts, RunRecord, SCHEMA_VERSION, TOOL_NAME, now_rfc3339,
};
use crate::model::PlanSource;
use crate::{Error, Result};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A manifest opened for one build: holds the lock until `finish` or drop.
///
/// Records are not held in memory: each link is a [`Slot`] — where its JSON is (a span of
/// `M` as last written, or a line of the journal), a [`LinkSummary`] (status, flags, a
/// digest of its planned fields) and, once something asked for it, the parsed record. So
/// a re-run that finds everything done parses only the header, and a build's memory is a
/// few dozen bytes per recorded link plus the records it touches. `M` is rewritten by
/// streaming: unchanged records are copied byte for byte from the old `M`.
#[derive(Debug)]
pub struct ManifestStore {
    path: PathBuf,
    /// Everything but `links` (always empty here).
    header: Manifest,
    /// In plan order (order of first appearance).
    slots: Vec<Slot>,
    /// key → index in `slots`.
    index: HashMap<Box<str>, usize>,
    /// `M` as last read or written (the spans of `Loc::Manifest` point into it).
    backing: Option<File>,
    backing_len: u64,
    /// Length and modification time of `backing` when read or written: a record is only
    /// ever copied from it while it is unchanged (see [`ManifestStore::check_backing`]).
    backing_stamp: Option<Stamp>,
    journal: Writer,
    /// The journal holds link lines that `M` does not: closing must rewrite `M`.
    journal_links: bool,
    /// What `M` on disk says in its header, to tell whether a run that changed no record
    /// can leave `M` as it is (see [`ManifestStore::close`]).
    disk: Option<DiskHeader>,
    lock: Lock,
    notes: Vec<String>,
}

/// The header fields of `M` as last read or written, but `runs` (journaled runs are
/// replayed over it).
#[derive(Debug)]
struct DiskHeader {
    /// Written by this version in this format (so its records are too, unless edited).
    current: bool,
    source: PlanSource,
    api_host: Option<String>,
    workspace: Option<super::model::WorkspaceRecord>,
}

impl DiskHeader {
    fn of(m: &Manifest) -> Self {
        DiskHeader {
            current: m.tool == TOOL_NAME
                && m.schema_version == SCHEMA_VERSION
                && m.tool_version == env!("CARGO_PKG_VERSION"),
            source: m.source.clone(),
            api_host: m.api_host.clone(),
            workspace: m.workspace.clone(),
        }
    }
}

/// A journal of nothing but finished runs is kept (and appended to) while it is smaller
/// than this or 1/16 of `M`: compacting it rewrites all of `M`, so that costs at most 16
/// bytes written per byte of run lines.
const RUN_LINES_FLOOR: u64 = 64 * 1024;

#[derive(Debug)]
struct Slot {
    loc: Loc,
    summary: LinkSummary,
    /// The parsed record, once asked for (always set for `Loc::Memory`).
    parsed: OnceCell<Box<LinkRecord>>,
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    /// Bytes `at..at+len` of the backing `M`; `canonical`: exactly what this version
    /// writes for the record (else it is re-serialized, e.g. an older version's record).
    Manifest { at: u64, len: u32, canonical: bool },
    /// A line of the journal.
    Journal { at: u64, len: u32 },
    /// Only in `parsed` (replayed from the journal at open, or renamed): written at the next
    /// compaction.
    Memory,
}

/// Indentation of a record inside `links` in the pretty-printed manifest.
const RECORD_INDENT: &[u8] = b"    ";
/// Between two records: `,\n` and the indent.
const SEPARATOR_LEN: u64 = 2 + RECORD_INDENT.len() as u64;

impl Slot {
    /// Where the record is in the backing `M`, when it can be copied from there as is.
    fn canonical_span(&self) -> Option<(u64, u32)> {
        match self.loc {
            Loc::Manifest {
                at,
                len,
                canonical: true,
            } => Some((at, len)),
            _ => None,
        }
    }
}

/// Copy bytes `from..end` of `file` to `w`, a block at a time.
fn copy_range(file: &File, from: u64, end: u64, w: &mut dyn Write) -> io::Result<()> {
    const BLOCK: u64 = 1 << 20;
    let mut at = from;
    while at < end {
        let n = (end - at).min(BLOCK) as u32;
        w.write_all(&atomic::read_at(file, at, n)?)?;
        at += u64::from(n);
    }
    Ok(())
}

impl ManifestStore {
    /// Take the lock (`Error::Lock` if held), read `M` if present (streamed: records are
    /// indexed, not kept), replay `M.journal` on top (later records win, by `key`), update
    /// `source`/`api_host`, and start a new `RunRecord` (started now). The run is
    /// recorded at once: when the journal had something to replay, or `M` does not exist,
    /// by compacting (atomic write of `M`, journal emptied); else as a `run` line in the
    /// journal, so an unchanged `M` is not rewritten just to open it.
    pub fn open(path: &Path, source: &PlanSource, api_host: Option<&str>) -> Result<Self> {
        let lock = Lock::acquire(&lock_path(path), path)?;
        // We hold the lock, so any temp file beside M is from a writer that crashed.
        atomic::remove_stale_temps(path);
        // Nobody else writes while we hold the lock, so one plain read of each is consistent.
        let jpath = journal_path(path);
        let mut notes = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        let mut index: HashMap<Box<str>, usize> = HashMap::new();
        let (mut header, backing, backing_len, backing_stamp) = match File::open(path) {
            Ok(file) => {
                let st = stamp(&file).map_err(|e| Error::io("read the manifest", path, e))?;
                let len = st.0;
                let header = scan_manifest(path, &file, &mut slots, &mut index)?;
                ensure_writable(path, &header)?;
                notes.extend(other_campaign_note(path, &header.source, source));
                (header, Some(file), len, Some(st))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (Manifest::new(source.clone(), None), None, 0, None)
            }
            Err(e) => return Err(Error::io("read the manifest", path, e)),
        };
        let disk = backing.as_ref().map(|_| DiskHeader::of(&header));
        let journal_bytes = read_opt(&jpath, "read the journal")?;
        let journal_existed = journal_bytes.is_some();
        let journal_bytes = journal_bytes.unwrap_or_default();
        let mut replay = journal::parse(&jpath, &journal_bytes)?;
        // Only finished runs, and not many of them: keep the journal, leave M alone.
        let keep_journal = replay.only_finished_runs()
            && (journal_bytes.len() as u64) <= RUN_LINES_FLOOR.max(backing_len / 16);
        let compact = backing.is_none() || (!journal_bytes.is_empty() && !keep_journal);
        notes.extend(std::mem::take(&mut replay.notes));
        for run in &replay.runs {
            run.apply(&mut header);
        }
        for rec in std::mem::take(&mut replay.records) {
            put(&mut slots, &mut index, Loc::Memory, rec, true);
        }
        drop(journal_bytes);

        // From here on M is written in this version's format.
        let line = journal::RunLine {
            index: header.runs.len(),
            run: RunRecord {
                started_at: now_rfc3339(),
                finished_at: None,
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                counts: None,
                outcome: None,
            },
            source: source.clone(),
            api_host: api_host.map(str::to_string),
        };
        header.schema_version = SCHEMA_VERSION;
        line.apply(&mut header);
        let journal = Writer::open_keep(&jpath)?;
        let mut store = ManifestStore {
            path: path.to_path_buf(),
            header,
            slots,
            index,
            backing,
            backing_len,
            backing_stamp,
            journal,
            journal_links: false,
            disk,
            lock,
            notes,
        };
        if compact {
            // Compact: M now holds everything the journal had, so the journal can be emptied.
            store.write_manifest()?;
            store.journal = Writer::open_empty(&jpath)?;
        } else {
            store.journal.append_run(&line)?;
            if !journal_existed {
                // The journal was just created: make its name durable too.
                atomic::sync_dir(&atomic::parent_dir(&jpath))
                    .map_err(|e| Error::io("sync the folder of", &jpath, e))?;
            }
        }
        Ok(store)
    }

    /// The record for `key`, parsed (and kept) on first use.
    pub fn get(&self, key: &str) -> Result<Option<&LinkRecord>> {
        match self.index.get(key) {
            Some(&i) => self.parsed(&self.slots[i]).map(Some),
            None => Ok(None),
        }
    }

    /// Is there a record for `key`? (No parsing.)
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// What the record for `key` says in brief (no parsing).
    pub fn summary(&self, key: &str) -> Option<LinkSummary> {
        self.index.get(key).map(|&i| self.slots[i].summary)
    }

    /// Does any record carry `printed_at`? (No parsing.)
    pub fn any_printed(&self) -> bool {
        self.slots.iter().any(|s| s.summary.printed)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No records yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// All links, in plan order (order of first appearance). Parses every record (and
    /// keeps them): for the commands that visit all of them (refresh, retire).
    pub fn links(&self) -> Result<impl Iterator<Item = &LinkRecord>> {
        for slot in &self.slots {
            self.parsed(slot)?;
        }
        Ok(self
            .slots
            .iter()
            .filter_map(|s| s.parsed.get().map(|b| &**b)))
    }

    fn parsed<'s>(&'s self, slot: &'s Slot) -> Result<&'s LinkRecord> {
        if let Some(rec) = slot.parsed.get() {
            return Ok(rec);
        }
        let rec = self.read_record(slot)?;
        let _ = slot.parsed.set(Box::new(rec));
        slot.parsed
            .get()
            .map(|b| &**b)
            .ok_or_else(|| lost(&self.path))
    }

    /// The record of `slot`, as held or read from disk now (and not kept: a compaction
    /// that re-encodes every journaled record must not end up holding them all).
    fn record_of<'s>(&'s self, slot: &'s Slot) -> Result<std::borrow::Cow<'s, LinkRecord>> {
        match slot.parsed.get() {
            Some(rec) => Ok(std::borrow::Cow::Borrowed(rec)),
            None => self.read_record(slot).map(std::borrow::Cow::Owned),
        }
    }

    fn read_record(&self, slot: &Slot) -> Result<LinkRecord> {
        let (bytes, what, file) = match slot.loc {
            Loc::Manifest { at, len, .. } => {
                let Some(f) = self.backing.as_ref() else {
                    return Err(lost(&self.path));
                };
                self.check_backing()?;
                (
                    atomic::read_at(f, at, len)
                        .map_err(|e| Error::io("read the manifest", &self.path, e))?,
                    "read the manifest",
                    self.path.clone(),
                )
            }
            Loc::Journal { at, len } => {
                let jpath = journal_path(&self.path);
                (
                    self.journal
                        .read_span((at, len))
                        .map_err(|e| Error::io("read the journal", &jpath, e))?,
                    "read the journal",
                    jpath,
                )
            }
            Loc::Memory => return Err(lost(&self.path)),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::io(
                what,
                &file,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a record changed while the build ran ({e}); run again"),
                ),
            )
        })
    }

    /// Append records to the journal (one line each), flush + fsync once, then update
    /// the index. New keys are appended to `links` in call order. Call AFTER results
    /// arrive (and for rows being sent, as `Pending` with attempts incremented). On error
    /// nothing is recorded (memory unchanged); stop the run.
    pub fn record(&mut self, records: &[LinkRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let spans = self.journal.append(records)?;
        self.journal_links = true;
        for (rec, (at, len)) in records.iter().zip(spans) {
            let loc = Loc::Journal { at, len };
            let summary = LinkSummary::of(rec);
            match self.index.get(rec.key.as_str()) {
                Some(&i) => {
                    self.slots[i] = Slot {
                        loc,
                        summary,
                        parsed: OnceCell::new(),
                    }
                }
                None => {
                    self.index.insert(rec.key.as_str().into(), self.slots.len());
                    self.slots.push(Slot {
                        loc,
                        summary,
                        parsed: OnceCell::new(),
                    });
                }
            }
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
            match self.index.get(old.as_str()) {
                Some(&i) => {
                    replace.insert(i, rec.clone());
                }
                None => appended.push(rec.clone()),
            }
        }
        // A record already held under a new key gives way to the renamed one.
        let targets: std::collections::HashSet<&str> =
            moves.iter().map(|(_, r)| r.key.as_str()).collect();
        let mut key_of: Vec<Option<Box<str>>> = vec![None; self.slots.len()];
        for (k, &i) in &self.index {
            key_of[i] = Some(k.clone());
        }
        let slots = std::mem::take(&mut self.slots);
        let mut kept: Vec<(Box<str>, Slot)> = Vec::with_capacity(slots.len() + appended.len());
        for (i, (slot, key)) in slots.into_iter().zip(key_of).enumerate() {
            let key = key.unwrap_or_default();
            match replace.remove(&i) {
                Some(new) => kept.push((new.key.as_str().into(), memory_slot(new))),
                None if targets.contains(&*key) => {}
                None => kept.push((key, slot)),
            }
        }
        for rec in appended {
            if !kept.iter().any(|(k, _)| **k == *rec.key) {
                kept.push((rec.key.as_str().into(), memory_slot(rec)));
            }
        }
        self.index = kept
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        self.slots = kept.into_iter().map(|(_, s)| s).collect();
        self.checkpoint()
    }

    /// Compaction for long runs: atomic rewrite of `M` (streamed), then truncate the journal.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.write_manifest()?;
        self.journal.reset()?;
        self.journal_links = false;
        Ok(())
    }

    /// Is the journal large enough that a checkpoint is worth its cost? (Bigger than the
    /// manifest, and than 64 MB: so compactions cost O(links) over a whole run, not
    /// O(links²) as a fixed interval would.)
    pub fn compaction_due(&self) -> bool {
        const FLOOR: u64 = 64 * 1024 * 1024;
        self.journal.len() > FLOOR.max(self.backing_len)
    }

    /// Close the run: set `finished_at`/`counts`/`outcome`, compact, remove the journal,
    /// release the lock. Returns the final manifest (parsing every record: builds use
    /// [`ManifestStore::close`]).
    pub fn finish(self, counts: RunCounts, outcome: &str) -> Result<Manifest> {
        let path = self.path.clone();
        self.close(counts, outcome)?;
        load(&path)
    }

    /// [`ManifestStore::finish`] without reading the result back.
    ///
    /// A run that changed no record (a no-op re-run) does not rewrite `M`: its finish is
    /// appended to the journal as a `run_end` line, which readers replay like every other
    /// line, and the journal is kept (see `journal.rs`).
    pub fn close(mut self, counts: RunCounts, outcome: &str) -> Result<()> {
        let finished_at = now_rfc3339();
        if let Some(run) = self.header.runs.last_mut() {
            run.finished_at = Some(finished_at.clone());
            run.counts = Some(counts);
            run.outcome = Some(outcome.to_string());
        }
        if self.m_holds_all_but_runs() {
            let end = journal::RunEnd {
                index: self.header.runs.len().saturating_sub(1),
                finished_at,
                counts: Some(counts),
                outcome: Some(outcome.to_string()),
            };
            self.journal.append_run_end(&end)?;
            let ManifestStore { lock, .. } = self;
            lock.release();
            return Ok(());
        }
        self.write_manifest()?;
        let ManifestStore {
            path,
            journal,
            lock,
            backing,
            ..
        } = self;
        drop(backing);
        drop(journal);
        let jpath = journal_path(&path);
        match std::fs::remove_file(&jpath) {
            Ok(()) => atomic::sync_dir(&atomic::parent_dir(&jpath))
                .map_err(|e| Error::io("sync the folder of", &jpath, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the journal", &jpath, e)),
        }
        lock.release();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `M` plus the journal's run lines is the whole record: every record is in `M` as
    /// this version wrote it, and `M`'s header is what this run would write but `runs`.
    fn m_holds_all_but_runs(&self) -> bool {
        let Some(disk) = &self.disk else {
            return false;
        };
        !self.journal_links
            && !self.journal.is_poisoned()
            && disk.current
            && disk.source == self.header.source
            && disk.api_host == self.header.api_host
            && disk.workspace == self.header.workspace
            && self.backing.is_some()
            && !self.slots.iter().any(|s| matches!(s.loc, Loc::Memory))
    }

    /// Record the workspace the links live in (`apply/workspace.rs` checked it). Written at
    /// once when it changed, so it is on disk before the first link is sent.
    pub fn set_workspace(&mut self, workspace: super::model::WorkspaceRecord) -> Result<()> {
        if self.header.workspace.as_ref() == Some(&workspace) {
            return Ok(());
        }
        self.header.workspace = Some(workspace);
        self.checkpoint()
    }

    /// The manifest's header as it stands: every field but `links` (empty here; see
    /// [`ManifestStore::links`]).
    pub fn header(&self) -> &Manifest {
        &self.header
    }

    /// Things found while opening that the user should hear about (a torn journal line
    /// ignored, ...). Print them as warnings.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Records are copied from the `M` this store read or wrote, by offset: refuse when
    /// something else changed that file in place meanwhile (the lock is advisory), rather
    /// than write a mix of it.
    fn check_backing(&self) -> Result<()> {
        let (Some(f), Some(was)) = (self.backing.as_ref(), self.backing_stamp) else {
            return Ok(());
        };
        let now = stamp(f).map_err(|e| Error::io("read the manifest", &self.path, e))?;
        if now == was {
            return Ok(());
        }
        Err(Error::io(
            "update the manifest",
            &self.path,
            io::Error::other(
                "it was changed by something else while this build held its lock; it was \
                 not overwritten. Stop the other writer and run the build again (links \
                 already created are found by their slugs, not duplicated)",
            ),
        ))
    }

    /// Atomically replace `M` with the header and every record, streaming: an unchanged
    /// record is copied from the old `M`, a journaled one re-encoded from its line. Then
    /// the slots point into the new `M`.
    fn write_manifest(&mut self) -> Result<()> {
        let mut head = serde_json::to_vec_pretty(&self.header)
            .map_err(|e| Error::io("write", &self.path, e.into()))?;
        // `links` is the header's last field, serialized as `[]`: records go in between.
        let Some(tail) = head.strip_suffix(b"[]\n}".as_slice()).map(<[u8]>::len) else {
            return Err(Error::io(
                "write",
                &self.path,
                io::Error::other("internal error: unexpected manifest layout"),
            ));
        };
        head.truncate(tail);
        self.check_backing()?;
        let mut locs: Vec<Loc> = Vec::with_capacity(self.slots.len());
        let this = &*self;
        write_atomic(&this.path, |w| {
            let mut w = Counting { w, n: 0 };
            w.write_all(&head)?;
            if this.slots.is_empty() {
                w.write_all(b"[]\n}\n")?;
                return Ok(());
            }
            w.write_all(b"[\n")?;
            let mut buf = Vec::with_capacity(4096);
            let mut i = 0;
            while i < this.slots.len() {
                if i > 0 {
                    w.write_all(b",\n")?;
                }
                w.write_all(RECORD_INDENT)?;
                let at = w.n;
                if let Some((from, len)) = this.slots[i].canonical_span() {
                    // A run of unchanged records that sit back to back in the old M is
                    // copied as one block (separators included: they are what we write).
                    let mut j = i + 1;
                    let mut end = from + u64::from(len);
                    while let Some((f, l)) = this.slots.get(j).and_then(Slot::canonical_span) {
                        if f != end + SEPARATOR_LEN {
                            break;
                        }
                        end = f + u64::from(l);
                        j += 1;
                    }
                    let file = this.backing.as_ref().ok_or_else(|| {
                        io::Error::other("internal error: the manifest is not open")
                    })?;
                    copy_range(file, from, end, &mut w)?;
                    for slot in &this.slots[i..j] {
                        if let Some((f, l)) = slot.canonical_span() {
                            locs.push(Loc::Manifest {
                                at: at + (f - from),
                                len: l,
                                canonical: true,
                            });
                        }
                    }
                    i = j;
                    continue;
                }
                let rec = this.record_of(&this.slots[i]).map_err(io::Error::other)?;
                buf.clear();
                pretty_record(&rec, &mut buf)?;
                w.write_all(&buf)?;
                let len = u32::try_from(w.n - at).map_err(io::Error::other)?;
                locs.push(Loc::Manifest {
                    at,
                    len,
                    canonical: true,
                });
                i += 1;
            }
            w.write_all(b"\n  ]\n}\n")?;
            Ok(())
        })?;
        self.disk = Some(DiskHeader::of(&self.header));
        // M is replaced: read records from the new file from now on.
        let file =
            File::open(&self.path).map_err(|e| Error::io("read the manifest", &self.path, e))?;
        let st = stamp(&file).map_err(|e| Error::io("read the manifest", &self.path, e))?;
        self.backing_len = st.0;
        self.backing_stamp = Some(st);
        self.backing = Some(file);
        for (slot, loc) in self.slots.iter_mut().zip(locs) {
            slot.loc = loc;
        }
        Ok(())
    }
}

/// What identifies a file's content cheaply: its length and modification time.
type Stamp = (u64, Option<std::time::SystemTime>);

fn stamp(f: &File) -> io::Result<Stamp> {
    let meta = f.metadata()?;
    Ok((meta.len(), meta.modified().ok()))
}

/// A record as this version writes it inside `links`: pretty-printed, every line after the
/// first indented by [`RECORD_INDENT`] (JSON strings hold no raw newline, so this is safe).
fn pretty_record(rec: &LinkRecord, out: &mut Vec<u8>) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(rec)?;
    out.reserve(text.len() + text.len() / 8);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
            out.extend_from_slice(RECORD_INDENT);
        }
        out.extend_from_slice(line);
    }
    Ok(())
}

/// Bytes written so far, for the records' new offsets.
struct Counting<'a> {
    w: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn lost(path: &Path) -> Error {
    Error::io(
        "read the manifest",
        path,
        io::Error::other("internal error: a record's place was lost; run again"),
    )
}

fn memory_slot(rec: LinkRecord) -> Slot {
    let summary = LinkSummary::of(&rec);
    let parsed = OnceCell::new();
    let _ = parsed.set(Box::new(rec));
    Slot {
        loc: Loc::Memory,
        summary,
        parsed,
    }
}

/// Insert or replace (later wins, first position kept) a record held in memory.
fn put(
    slots: &mut Vec<Slot>,
    index: &mut HashMap<Box<str>, usize>,
    loc: Loc,
    rec: LinkRecord,
    keep: bool,
) {
    let summary = LinkSummary::of(&rec);
    let parsed = OnceCell::new();
    let key: Box<str> = rec.key.as_str().into();
    if keep {
        let _ = parsed.set(Box::new(rec));
    }
    let slot = Slot {
        loc,
        summary,
        parsed,
    };
    match index.get(&key) {
        Some(&i) => slots[i] = slot,
        None => {
            index.insert(key, slots.len());
            slots.push(slot);
        }
    }
}

/// A JSON string, borrowed from the record's bytes unless it holds an escape.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The fields of a [`LinkRecord`] its [`LinkSummary`] needs, read from borrowed text (no
/// allocation per field): the open of a 100,000-link manifest summarises every record,
/// and a full parse of each was most of a no-op re-run. The fields a record must have are
/// still required (and the whole record is still checked to be JSON); the rest is parsed
/// when the record is first asked for.
#[derive(serde::Deserialize)]
struct Brief<'a> {
    #[serde(borrow)]
    key: Text<'a>,
    status: super::model::LinkStatus,
    #[serde(borrow)]
    destination: Text<'a>,
    #[serde(default, borrow)]
    expires_at: Option<Text<'a>>,
    #[serde(default)]
    redirect: Option<u16>,
    #[serde(default, borrow)]
    tags: Vec<Text<'a>>,
    #[serde(default, borrow)]
    space: Option<Text<'a>>,
    #[serde(default)]
    printed_at: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    retired: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    outside: Option<serde::de::IgnoredAny>,
    // Required by `LinkRecord`: present, whatever they hold.
    #[allow(dead_code)]
    cell: serde::de::IgnoredAny,
    #[allow(dead_code)]
    slug: serde::de::IgnoredAny,
    #[allow(dead_code)]
    domain: serde::de::IgnoredAny,
    #[allow(dead_code)]
    idempotency_key: serde::de::IgnoredAny,
}

impl Brief<'_> {
    fn summary(&self) -> LinkSummary {
        LinkSummary {
            status: self.status,
            retired: self.retired.is_some(),
            outside: self.outside.is_some(),
            printed: self.printed_at.is_some(),
            planned: super::model::planned_digest(
                self.destination.as_ref(),
                self.expires_at.as_ref().map(AsRef::as_ref),
                self.redirect,
                &self.tags,
                self.space.as_ref().map(AsRef::as_ref),
            ),
        }
    }
}

/// Insert or replace (later wins, first position kept) a record known by its summary.
fn put_summary(
    slots: &mut Vec<Slot>,
    index: &mut HashMap<Box<str>, usize>,
    key: &str,
    loc: Loc,
    summary: LinkSummary,
) {
    let slot = Slot {
        loc,
        summary,
        parsed: OnceCell::new(),
    };
    match index.get(key) {
        Some(&i) => slots[i] = slot,
        None => {
            index.insert(key.into(), slots.len());
            slots.push(slot);
        }
    }
}

/// Stream `M` (from `file`) into `slots`/`index` (each record read for its summary, not
/// kept) and return the header. Records are not re-encoded here to see whether they are
/// in this version's exact form: that is only needed when `M` is rewritten, which then
/// re-encodes them (`canonical: false`), and a no-op run does not rewrite `M`.
fn scan_manifest(
    path: &Path,
    file: &File,
    slots: &mut Vec<Slot>,
    index: &mut HashMap<Box<str>, usize>,
) -> Result<Manifest> {
    let header = match take_stash(path, file) {
        // `peek_header` indexed this very file moments ago (a build's workspace check).
        Some(stash) => {
            *slots = stash.slots;
            *index = stash.index;
            stash.header
        }
        None => match index_records(file, slots, index) {
            Ok(Ok((header, _))) => header,
            Ok(Err(why)) => return Err(invalid_manifest(path, &why)),
            Err(e) => return Err(Error::io("read the manifest", path, e)),
        },
    };
    let mut header = parse_manifest(path, &header)?;
    // A `links` the scanner did not see as such (e.g. a key spelled with escapes).
    for rec in std::mem::take(&mut header.links) {
        put(slots, index, Loc::Memory, rec, true);
    }
    Ok(header)
}

/// Stream `M` into `slots`/`index` (each record read for its summary, not kept): the
/// header's JSON text and the number of records, or why `M` is not a manifest.
fn index_records(
    file: &File,
    slots: &mut Vec<Slot>,
    index: &mut HashMap<Box<str>, usize>,
) -> io::Result<std::result::Result<(Vec<u8>, usize), String>> {
    let mut n = 0usize;
    let scanned = super::scan::Scanner::new(file).scan(|at, bytes, eof| {
        let damaged = |e: serde_json::Error| format!("link record {} is damaged ({e})", n + 1);
        let Some((brief, len)) =
            super::scan::parse_one::<Brief<'_>>(bytes, eof).map_err(damaged)?
        else {
            return Ok(super::scan::Step::More);
        };
        n += 1;
        let len32 = u32::try_from(len).map_err(|_| format!("link record {n} is too long"))?;
        let loc = Loc::Manifest {
            at,
            len: len32,
            canonical: false,
        };
        put_summary(slots, index, brief.key.as_ref(), loc, brief.summary());
        Ok::<_, String>(super::scan::Step::Took(len))
    })?;
    Ok(match scanned {
        Ok(Ok(header)) => Ok((header, n)),
        Ok(Err(why)) | Err(why) => Err(why),
    })
}

/// Which file, with which content (as far as its metadata tells): device, inode, length,
/// modification time.
type FileId = (u64, u64, Stamp);

fn file_id(f: &File) -> io::Result<FileId> {
    let meta = f.metadata()?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Ok((dev, ino, (meta.len(), meta.modified().ok())))
}

/// The index [`peek_header`] built, for the [`ManifestStore::open`] of the same file that a
/// build does right after it: reading a 100,000-link manifest twice was a fifth of a
/// no-op re-run. Used only while the file is unchanged (same inode, length and mtime).
struct Stash {
    path: PathBuf,
    id: FileId,
    header: Vec<u8>,
    slots: Vec<Slot>,
    index: HashMap<Box<str>, usize>,
}

static STASH: std::sync::Mutex<Option<Stash>> = std::sync::Mutex::new(None);

fn take_stash(path: &Path, file: &File) -> Option<Stash> {
    let stash = STASH.lock().ok()?.take()?;
    let id = file_id(file).ok()?;
    (stash.path == path && stash.id == id).then_some(stash)
}

/// The manifest's header as JSON text (every field but `links`, which reads `[]`) and its
/// number of link records, streamed (the records are not kept: their index is, for the
/// store a build opens next). `None` when there is no manifest or it cannot be read as one.
pub fn peek_header(path: &Path) -> Option<(Vec<u8>, usize)> {
    let file = File::open(path).ok()?;
    let id = file_id(&file).ok()?;
    let mut slots = Vec::new();
    let mut index = HashMap::new();
    let (header, n) = match index_records(&file, &mut slots, &mut index).ok()? {
        Ok(indexed) => indexed,
        // Not all records: `open` will say what is wrong; the header may still be read.
        Err(_) => return count_elements(path),
    };
    // The file is unchanged since it was opened: else the index may mix two versions.
    if file_id(&file).ok()? == id
        && let Ok(mut stash) = STASH.lock()
    {
        *stash = Some(Stash {
            path: path.to_path_buf(),
            id,
            header: header.clone(),
            slots,
            index,
        });
    }
    Some((header, n))
}

/// The header and the number of elements of `links`, whatever they hold.
fn count_elements(path: &Path) -> Option<(Vec<u8>, usize)> {
    let file = File::open(path).ok()?;
    let mut n = 0usize;
    let scanned =
        super::scan::Scanner::new(&file).scan(|_, bytes, eof| {
            match super::scan::parse_one::<serde::de::IgnoredAny>(bytes, eof) {
                Ok(Some((_, len))) => {
                    n += 1;
                    Ok(super::scan::Step::Took(len))
                }
                Ok(None) => Ok(super::scan::Step::More),
                Err(_) => Err(()),
            }
        });
    match scanned {
        Ok(Ok(Ok(header))) => Some((header, n)),
        _ => None,
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
    for run in &replay.runs {
        run.apply(&mut manifest);
    }
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
    for run in &replay.runs {
        run.apply(&mut manifest);
    }
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
    serde_json::from_slice(bytes).map_err(|e| invalid_manifest(path, &e.to_string()))
}

fn invalid_manifest(path: &Path, why: &str) -> Error {
    Error::io(
        "read the manifest",
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not a valid nimriz-matrix manifest ({why}); it may be damaged or \
                 a different file. Restore it from a backup or point to the right file"
            ),
        ),
    )
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
    use crate::manifest::model::{LinkStatus, Retirement};
    use crate::model::{Cell, DomainRef};

    fn tricky() -> LinkRecord {
        let domain = DomainRef {
            id: Some("d1".into()),
            host: Some("go.example".into()),
        };
        LinkRecord {
            key: LinkRecord::key_for(&domain, "caf\u{e9}"),
            cell: Cell(vec![("brand".into(), "caf\u{e9}".into())]),
            slug: "caf\u{e9}".into(),
            domain,
            destination: "https://x.example/?q=\"caf\u{e9}\"&t=a\\b\n".into(),
            utm: Default::default(),
            idempotency_key: "k".into(),
            status: LinkStatus::Created,
            short_url: Some("https://go.example/x".into()),
            url_id: Some("u1".into()),
            existing_destination: None,
            tags: vec!["spring \"26\"".into(), "caf\u{e9}".into()],
            printed_at: Some("2026-01-01T00:00:00Z".into()),
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            redirect: Some(301),
            space: Some("s\\1".into()),
            origin: None,
            outside: None,
            retired: Some(Retirement {
                at: "2026-01-02T00:00:00Z".into(),
                how: "expire".into(),
                value: None,
            }),
            history: Vec::new(),
            error: None,
            attempts: 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// The summary read from borrowed fields is the one of the parsed record, escapes and
    /// all, in the pretty form this version writes and in a compact one with `\u` escapes.
    #[test]
    fn a_brief_summarises_as_the_parsed_record_does() {
        let rec = tricky();
        let mut pretty = Vec::new();
        pretty_record(&rec, &mut pretty).unwrap();
        let compact = serde_json::to_string(&rec)
            .unwrap()
            .replace('\u{e9}', "\\u00e9");
        assert!(compact.contains("\\u00e9"));
        for bytes in [pretty.as_slice(), compact.as_bytes()] {
            let brief: Brief<'_> = serde_json::from_slice(bytes).unwrap();
            assert_eq!(brief.key.as_ref(), rec.key);
            assert_eq!(brief.summary(), LinkSummary::of(&rec));
        }
        let mut plain = rec.clone();
        plain.printed_at = None;
        plain.retired = None;
        plain.expires_at = None;
        plain.tags.clear();
        let brief_text = serde_json::to_vec(&plain).unwrap();
        let brief: Brief<'_> = serde_json::from_slice(&brief_text).unwrap();
        assert_eq!(brief.summary(), LinkSummary::of(&plain));
        assert_ne!(brief.summary().planned, LinkSummary::of(&rec).planned);
    }

    #[test]
    fn a_brief_requires_what_a_record_requires() {
        let mut v = serde_json::to_value(tricky()).unwrap();
        v.as_object_mut().unwrap().remove("idempotency_key");
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(serde_json::from_slice::<Brief<'_>>(&bytes).is_err());
        assert!(serde_json::from_slice::<LinkRecord>(&bytes).is_err());
    }

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
