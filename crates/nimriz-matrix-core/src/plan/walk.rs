//! Walk every link of a spec once, in plan order, checking what only the whole set can
//! show: slug collisions per domain. Memory stays flat (a hash per link, not the link), so
//! a million-link dry-run streams.

use super::PlannedLink;
use crate::diag::Problem;
use crate::expand::{Expander, RenderScratch, Warnings, cell_at, empty_link, slug};
use crate::spec::Spec;
use crate::spec::model::SlugCollision;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// At most this many problems are listed; the rest are counted.
pub const MAX_LISTED_PROBLEMS: usize = 50;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Cells before excludes (product of dimension sizes, or CSV rows).
    pub combinations: u64,
    pub excluded: u64,
    pub links: u64,
    /// Links that matched at least one override.
    pub overridden: u64,
    /// Links per short domain (host, or id when no host is given).
    pub per_domain: BTreeMap<String, u64>,
    /// Links that got a hash suffix (slug_collision = "hash").
    pub hash_suffixed: u64,
}

pub struct WalkResult {
    pub summary: Summary,
    pub problems: Vec<Problem>,
    pub problem_count: usize,
    pub warnings: Vec<String>,
}

impl WalkResult {
    /// The problems as a report (with a line for those not listed), or `None` when clean.
    pub fn report(&self) -> Option<crate::diag::Report> {
        if self.problem_count == 0 {
            return None;
        }
        Some(crate::diag::Report {
            problems: self.problems.clone(),
            unlisted: self.problem_count - self.problems.len(),
            consequence: None,
        })
    }
}

#[derive(Debug)]
pub enum SinkError {
    Io(std::io::Error),
}

/// (file, line, column, message): the same problem from the same template.
type ProblemKey = (String, usize, usize, String);

fn key_hash(domain: &str, slug: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    domain.hash(&mut h);
    slug.hash(&mut h);
    h.finish()
}

/// The (domain, slug) of every link so far, as a compact open-addressing table of `u64`:
/// each slot packs the upper bits of the key's hash (a tag) above `(ordinal << 1 |
/// suffixed) + 1`. A lookup yields the ordinals whose tag matches; the caller tells real
/// collisions from hash collisions by re-rendering the earlier cell. 8 bytes per slot at
/// most 3/4 full: a million links take 16 MB (a `HashMap<u64, u64>` took 32 MB, 48 MB
/// while it grew).
struct SeenSet {
    slots: Vec<u64>,
    len: usize,
    /// Width of the low field: `(ordinal << 1 | suffixed) + 1` for any ordinal < total.
    low_bits: u32,
}

impl SeenSet {
    /// For a walk of `total` cells; `exact`: every cell will very likely be inserted
    /// (no excludes), so size the table once instead of growing it.
    fn new(total: u64, exact: bool) -> Self {
        let low_bits = (u64::BITS - total.leading_zeros() + 1).min(u64::BITS);
        let mut set = SeenSet {
            slots: Vec::new(),
            len: 0,
            low_bits,
        };
        // Sized once when the count is known (up to 32M slots), else grown from small.
        let largest = Self::capacity_for(total);
        let start = largest.min(if exact { 1 << 25 } else { 1 << 10 });
        set.slots = vec![0; start];
        set
    }

    /// Slots needed to hold `n` keys at most 3/4 full (a power of two).
    fn capacity_for(n: u64) -> usize {
        let need = n.saturating_add(n / 3).saturating_add(1);
        usize::try_from(need)
            .ok()
            .and_then(usize::checked_next_power_of_two)
            .unwrap_or(1 << (usize::BITS - 1))
            .max(16)
    }

    fn tag_bits(&self) -> u32 {
        u64::BITS - self.low_bits
    }

    fn tag(&self, hash: u64) -> u64 {
        hash.checked_shr(self.low_bits).unwrap_or(0)
    }

    /// The home slot of a key with this tag in a table of `slots` slots: the tag's top
    /// bits, so a bigger table can place an entry from its slot alone. (Only past 2^31
    /// cells is the tag narrower than the index; then entries cluster, still correct.)
    fn home(&self, tag: u64, slots: usize) -> usize {
        let k = slots.trailing_zeros();
        match self.tag_bits().checked_sub(k) {
            Some(shift) => (tag >> shift) as usize & (slots - 1),
            None => tag as usize & (slots - 1),
        }
    }

    /// Packed entries (`(ordinal << 1 | suffixed)`) whose tag matches `hash`'s.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let tag = self.tag(hash);
        let mask = self.slots.len() - 1;
        let low_mask = u64::MAX.checked_shr(self.tag_bits()).unwrap_or(0);
        let mut i = self.home(tag, self.slots.len());
        std::iter::from_fn(move || {
            loop {
                let slot = self.slots[i];
                if slot == 0 {
                    return None;
                }
                i = (i + 1) & mask;
                if self.tag_of_slot(slot) == tag {
                    return Some((slot & low_mask) - 1);
                }
            }
        })
    }

    fn tag_of_slot(&self, slot: u64) -> u64 {
        slot.checked_shr(self.low_bits).unwrap_or(0)
    }

    /// Read the home slot of every hash about to be looked up, all at once: the loads are
    /// independent, so their cache misses overlap, and the in-order lookups that follow
    /// find the slots in cache (the table is far bigger than the cache; one miss per
    /// link, one after the other, was the collector thread's largest cost).
    fn warm(&self, hashes: impl Iterator<Item = u64>) {
        let mut any = 0u64;
        for hash in hashes {
            any |= self.slots[self.home(self.tag(hash), self.slots.len())];
        }
        std::hint::black_box(any);
    }

    fn insert(&mut self, hash: u64, packed: u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let tag = self.tag(hash);
        let slot = tag.checked_shl(self.low_bits).unwrap_or(0) | (packed + 1);
        let home = self.home(tag, self.slots.len());
        Self::place(&mut self.slots, home, slot);
        self.len += 1;
    }

    fn place(slots: &mut [u64], mut i: usize, slot: u64) {
        let mask = slots.len() - 1;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = slot;
    }

    fn grow(&mut self) {
        let mut bigger = vec![0; self.slots.len() * 2];
        for &slot in self.slots.iter().filter(|&&s| s != 0) {
            let home = self.home(self.tag_of_slot(slot), bigger.len());
            Self::place(&mut bigger, home, slot);
        }
        self.slots = bigger;
    }
}

/// Below this many cells, render on the calling thread (threads cost more than they save).
const PARALLEL_FROM: u128 = 20_000;
/// Ordinals per unit of parallel work.
const CHUNK: u64 = 512;
/// Chunks each rendering thread may have finished ahead of the writer: the window that
/// bounds memory (a few hundred KB of output per chunk), whatever the number of links.
const AHEAD: usize = 2;

/// What a worker hands back for one chunk of ordinals, in order: the bytes `prepare`
/// wrote for every link, one after another, and where each link's part is.
struct Chunk<T> {
    bytes: Vec<u8>,
    items: Vec<Item<T>>,
    excluded: u64,
}

struct Item<T> {
    ordinal: u64,
    rendered: Result<Rendered<T>, Vec<Problem>>,
}

/// A link rendered off the collector thread: what the in-order checks need (ranges into
/// the chunk's bytes), and whatever the caller's `prepare` made of it.
struct Rendered<T> {
    hash: u64,
    overridden: bool,
    /// The slug, the domain key (id, else host) and the domain as counted (host, else
    /// key), each a range of `Chunk::bytes`.
    slug: std::ops::Range<usize>,
    key: std::ops::Range<usize>,
    counted: std::ops::Range<usize>,
    /// What `prepare` wrote.
    out: std::ops::Range<usize>,
    prepared: T,
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Chunk {
            bytes: Vec::new(),
            items: Vec::new(),
            excluded: 0,
        }
    }
}

/// One rendering thread's reusable state.
struct Renderer<'e, 's> {
    ex: &'e Expander<'s>,
    link: PlannedLink,
    scratch: RenderScratch,
    warnings: Warnings,
}

impl<'e, 's> Renderer<'e, 's> {
    fn new(ex: &'e Expander<'s>) -> Self {
        Renderer {
            ex,
            link: empty_link(),
            scratch: RenderScratch::default(),
            warnings: Warnings::default(),
        }
    }

    /// Render ordinals `start..end` into `chunk` (emptied first, its buffers reused).
    fn chunk<T>(
        &mut self,
        start: u64,
        end: u64,
        prepare: &impl Fn(&PlannedLink, &mut Vec<u8>) -> T,
        chunk: &mut Chunk<T>,
    ) {
        let ex = self.ex;
        chunk.bytes.clear();
        chunk.items.clear();
        chunk.excluded = 0;
        let push = |bytes: &mut Vec<u8>, s: &str| {
            let at = bytes.len();
            bytes.extend_from_slice(s.as_bytes());
            at..bytes.len()
        };
        let mut values = Vec::new();
        for ordinal in start..end {
            cell_into(ex.spec, ordinal, &mut values);
            if ex.is_excluded(&values) {
                chunk.excluded += 1;
                continue;
            }
            let link = &mut self.link;
            let rendered = ex
                .render_into(
                    ordinal,
                    &values,
                    &mut self.warnings,
                    link,
                    &mut self.scratch,
                )
                .map(|()| {
                    let bytes = &mut chunk.bytes;
                    let key = link.domain.key();
                    let hash = key_hash(key, &link.slug);
                    let slug = push(bytes, &link.slug);
                    let key = push(bytes, key);
                    let counted = match &link.domain.host {
                        Some(h) => push(bytes, h),
                        None => key.clone(),
                    };
                    let at = bytes.len();
                    let prepared = prepare(link, bytes);
                    Rendered {
                        hash,
                        overridden: ex.has_override(&values),
                        slug,
                        key,
                        counted,
                        out: at..bytes.len(),
                        prepared,
                    }
                });
            chunk.items.push(Item { ordinal, rendered });
        }
    }
}

/// `cell_at`, into `values` (reused).
fn cell_into(spec: &Spec, ordinal: u64, values: &mut Vec<usize>) {
    match &spec.cells {
        crate::spec::model::Cells::Matrix => {
            values.clear();
            values.resize(spec.dimensions.len(), 0);
            let mut rest = ordinal;
            for (i, d) in spec.dimensions.iter().enumerate().rev() {
                let n = d.values.len() as u64;
                values[i] = (rest % n) as usize;
                rest /= n;
            }
        }
        crate::spec::model::Cells::Rows(_) => *values = cell_at(spec, ordinal),
    }
}

/// Render every link and hand the valid ones to `sink` in plan order. Problems are
/// collected, not returned early, so the user sees all of them at once; once there is a
/// problem, `sink` gets nothing more (callers buffer output until the walk is clean).
///
/// Rendering is spread over the machine's cores; collision checks and `sink` stay on this
/// thread, in order, so output is identical however many threads ran.
pub fn walk(
    spec: &Spec,
    mut sink: impl FnMut(&PlannedLink) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    walk_prepared(spec, |_| (), |l, ()| sink(&l))
}

/// `walk`, with `prepare` run on the rendering threads for each link (and again on the
/// collector for the rare link whose slug it changes); `sink` gets the link itself and
/// `prepare`'s result.
pub fn walk_prepared<T: Send>(
    spec: &Spec,
    prepare: impl Fn(&PlannedLink) -> T + Sync,
    sink: impl FnMut(PlannedLink, T) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    walk_on_threads(spec, default_workers(spec), prepare, sink)
}

fn default_workers(spec: &Spec) -> usize {
    if spec.combinations() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }
}

/// `walk_prepared` with an explicit number of rendering threads (1 = this thread only).
/// The result does not depend on `workers`; tests check exactly that.
pub fn walk_on_threads<T: Send>(
    spec: &Spec,
    workers: usize,
    prepare: impl Fn(&PlannedLink) -> T + Sync,
    mut sink: impl FnMut(PlannedLink, T) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    walk_bytes_on_threads(
        spec,
        workers,
        |l, _| (l.clone(), prepare(l)),
        |(l, t), _| sink(l, t),
    )
}

/// The walk for writers (dry-run): `prepare` runs on the rendering threads with a link
/// that is only lent (its buffers are reused for the next one) and appends whatever it
/// likes to the chunk's byte buffer; `sink` gets its result and those bytes, in plan
/// order. No per-link copy of the link is made.
pub fn walk_bytes<T: Send>(
    spec: &Spec,
    prepare: impl Fn(&PlannedLink, &mut Vec<u8>) -> T + Sync,
    sink: impl FnMut(T, &[u8]) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    walk_bytes_on_threads(spec, default_workers(spec), prepare, sink)
}

/// `walk_bytes` with an explicit number of rendering threads (1 = this thread only).
pub fn walk_bytes_on_threads<T: Send>(
    spec: &Spec,
    workers: usize,
    prepare: impl Fn(&PlannedLink, &mut Vec<u8>) -> T + Sync,
    mut sink: impl FnMut(T, &[u8]) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    let ex = Expander::new(spec);
    let total = u64::try_from(spec.combinations()).unwrap_or(u64::MAX);
    let mut c = Collector::new(&ex, total);
    let mut warnings = Warnings::default();
    if workers < 2 {
        let mut r = Renderer::new(&ex);
        let mut chunk = Chunk::new();
        let mut start = 0;
        while start < total {
            let end = (start + CHUNK).min(total);
            r.chunk(start, end, &prepare, &mut chunk);
            c.take(&mut chunk, &prepare, &mut sink)?;
            start = end;
        }
        warnings.merge(r.warnings);
    } else {
        let chunks = total.div_ceil(CHUNK);
        let result = std::thread::scope(|scope| {
            // Worker w renders chunks w, w+W, w+2W, ... into its own small queue, so the
            // collector can read them back in order with bounded memory; the collector
            // hands each chunk back once written, so its buffers are filled again rather
            // than allocated anew (a worker has at most AHEAD + 2 chunks in flight).
            let mut queues = Vec::new();
            let mut returns = Vec::new();
            let mut handles = Vec::new();
            for w in 0..workers as u64 {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk<T>>(AHEAD);
                let (back, spare) = std::sync::mpsc::channel::<Chunk<T>>();
                queues.push(rx);
                returns.push(back);
                let (ex, prepare) = (&ex, &prepare);
                handles.push(scope.spawn(move || {
                    let mut r = Renderer::new(ex);
                    let mut i = w;
                    while i < chunks {
                        let start = i * CHUNK;
                        let end = (start + CHUNK).min(total);
                        let mut chunk = spare.try_recv().unwrap_or_else(|_| Chunk::new());
                        r.chunk(start, end, prepare, &mut chunk);
                        if tx.send(chunk).is_err() {
                            break; // the collector stopped early
                        }
                        i += workers as u64;
                    }
                    r.warnings
                }));
            }
            let mut outcome = Ok(());
            for i in 0..chunks {
                let w = (i % workers as u64) as usize;
                let Ok(mut chunk) = queues[w].recv() else {
                    break;
                };
                if let Err(e) = c.take(&mut chunk, &prepare, &mut sink) {
                    outcome = Err(e);
                    break;
                }
                let _ = returns[w].send(chunk); // the worker may be done: then it is dropped
            }
            drop(queues);
            drop(returns);
            for h in handles {
                if let Ok(w) = h.join() {
                    warnings.merge(w);
                }
            }
            outcome
        });
        result?;
    }
    Ok(c.finish(warnings))
}

/// The in-order half of the walk: collisions, counts, problems, and the sink.
struct Collector<'e, 's> {
    ex: &'e Expander<'s>,
    summary: Summary,
    problems: Vec<Problem>,
    problem_count: usize,
    /// The same broken template usually breaks many cells: report it once, with a count.
    /// Value: (index in `problems`, cells affected, first cell).
    same: HashMap<ProblemKey, (usize, u64, String)>,
    /// Every (domain, slug) so far.
    seen: SeenSet,
    /// `prepare`'s bytes for a link the collector changed (hash suffix).
    redo: Vec<u8>,
}

/// What the collision check made of a link.
enum Verdict {
    /// New (domain, slug): keep the link as rendered.
    Fresh,
    /// Kept with a hash-suffixed slug: this is the link now.
    Suffixed(Box<PlannedLink>),
    /// Refused (a problem is recorded).
    Collides,
}

impl<'e, 's> Collector<'e, 's> {
    fn new(ex: &'e Expander<'s>, total: u64) -> Self {
        let exact = ex.spec.excludes.is_empty();
        Collector {
            ex,
            summary: Summary {
                combinations: total,
                ..Summary::default()
            },
            problems: Vec::new(),
            problem_count: 0,
            same: HashMap::new(),
            seen: SeenSet::new(total, exact),
            redo: Vec::new(),
        }
    }

    fn push(&mut self, p: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(p);
        }
    }

    fn push_cell(&mut self, p: Problem, cell: &str) {
        let key = (p.file.clone(), p.line, p.column, p.message.clone());
        if let Some(entry) = self.same.get_mut(&key) {
            entry.1 += 1;
            return;
        }
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.same
                .insert(key, (self.problems.len(), 1, cell.to_string()));
            self.problems.push(p);
        }
    }

    fn slug_location(&self) -> &crate::diag::Location {
        let spec = self.ex.spec;
        spec.link
            .slug
            .as_ref()
            .map_or(&spec.link_location, |t| &t.location)
    }

    fn take<T>(
        &mut self,
        chunk: &mut Chunk<T>,
        prepare: &impl Fn(&PlannedLink, &mut Vec<u8>) -> T,
        sink: &mut impl FnMut(T, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), SinkError> {
        self.summary.excluded += chunk.excluded;
        self.seen.warm(
            chunk
                .items
                .iter()
                .filter_map(|i| i.rendered.as_ref().ok().map(|r| r.hash)),
        );
        let bytes = &chunk.bytes;
        let text =
            |r: &std::ops::Range<usize>| std::str::from_utf8(&bytes[r.clone()]).unwrap_or_default();
        for Item { ordinal, rendered } in chunk.items.drain(..) {
            let r = match rendered {
                Ok(r) => r,
                Err(ps) => {
                    let label = self.ex.label(&cell_at(self.ex.spec, ordinal));
                    for p in ps {
                        self.push_cell(p, &label);
                    }
                    continue;
                }
            };
            match self.check_collision(ordinal, text(&r.slug), text(&r.key), r.hash) {
                Verdict::Collides => {}
                Verdict::Fresh => {
                    self.count(r.overridden, text(&r.counted));
                    if self.problem_count == 0 {
                        sink(r.prepared, &bytes[r.out]).map_err(SinkError::Io)?;
                    }
                }
                Verdict::Suffixed(link) => {
                    self.count(r.overridden, text(&r.counted));
                    if self.problem_count == 0 {
                        self.redo.clear();
                        let prepared = prepare(&link, &mut self.redo);
                        sink(prepared, &self.redo).map_err(SinkError::Io)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Record the link's (domain, slug), or a problem when it collides; with
    /// slug_collision = "hash", a colliding link is re-rendered and given a suffix.
    fn check_collision(&mut self, ordinal: u64, slug: &str, key: &str, hash: u64) -> Verdict {
        let spec = self.ex.spec;
        let Some(earlier) = find_collision(self.ex, &self.seen, slug, key, hash) else {
            self.seen.insert(hash, ordinal << 1);
            return Verdict::Fresh;
        };
        let cell = cell_at(spec, ordinal);
        match spec.slug_collision {
            SlugCollision::Error => {
                let earlier_label = self.ex.label(&cell_at(spec, earlier));
                let p = self.slug_location().problem(
                    format!(
                        "slug `{slug}` on `{key}` is produced by two cells: {earlier_label} and {}",
                        self.ex.label(&cell)
                    ),
                    Some("add a dimension to the slug template so each cell is unique, or set [link] slug_collision = \"hash\" to append a short stable hash".into()),
                );
                self.push(p);
                Verdict::Collides
            }
            SlugCollision::Hash => {
                // Rendered cleanly on a worker, so it renders cleanly again.
                let Ok(mut link) = self.ex.render(ordinal, &cell, &mut Warnings::default()) else {
                    return Verdict::Collides;
                };
                let suffix = slug::stable_suffix(&link.cell.label());
                link.slug = slug::with_suffix(&link.slug, &suffix, spec.rules.max_slug_length);
                if let Some(h) = &link.domain.host {
                    link.short_url = Some(format!("https://{h}/{}", link.slug));
                }
                self.summary.hash_suffixed += 1;
                let hash = key_hash(link.domain.key(), &link.slug);
                if find_collision(self.ex, &self.seen, &link.slug, link.domain.key(), hash)
                    .is_some()
                {
                    let p = self.slug_location().problem(
                        format!(
                            "slug `{}` still collides after adding a hash (cell {})",
                            link.slug,
                            link.cell.label()
                        ),
                        Some("make the slug template unique per cell".into()),
                    );
                    self.push(p);
                    return Verdict::Collides;
                }
                self.seen.insert(hash, (ordinal << 1) | 1);
                Verdict::Suffixed(Box::new(link))
            }
        }
    }

    fn count(&mut self, overridden: bool, domain: &str) {
        let s = &mut self.summary;
        s.links += 1;
        if overridden {
            s.overridden += 1;
        }
        match s.per_domain.get_mut(domain) {
            Some(n) => *n += 1,
            None => {
                s.per_domain.insert(domain.to_string(), 1);
            }
        }
    }

    fn finish(mut self, warnings: Warnings) -> WalkResult {
        for (_, (i, n, first)) in self.same {
            let p = &mut self.problems[i];
            p.message = if n == 1 {
                format!("{} (cell {first})", p.message)
            } else {
                format!("{} ({n} cells, e.g. {first})", p.message)
            };
        }
        WalkResult {
            summary: self.summary,
            problems: self.problems,
            problem_count: self.problem_count,
            warnings: self
                .ex
                .spec
                .notes
                .iter()
                .cloned()
                .chain(warnings.into_messages())
                .collect(),
        }
    }
}

/// The ordinal of an earlier link with the same (domain, slug), if any: every entry whose
/// hash tag matches is re-rendered and compared.
fn find_collision(
    ex: &Expander<'_>,
    seen: &SeenSet,
    slug: &str,
    key: &str,
    hash: u64,
) -> Option<u64> {
    seen.candidates(hash).find_map(|packed| {
        let (ordinal, suffixed) = (packed >> 1, packed & 1 == 1);
        let values = cell_at(ex.spec, ordinal);
        let mut scratch = Warnings::default();
        let mut earlier = ex.render(ordinal, &values, &mut scratch).ok()?;
        if suffixed {
            let suffix = slug::stable_suffix(&earlier.cell.label());
            earlier.slug = slug::with_suffix(&earlier.slug, &suffix, ex.spec.rules.max_slug_length);
        }
        (earlier.slug == slug && earlier.domain.key() == key).then_some(ordinal)
    })
}

#[cfg(test)]
mod seen_tests {
    use super::SeenSet;

    /// A fixed, well-mixed sequence of hashes (splitmix64).
    fn hashes(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn finds_every_entry_across_growth() {
        let mut set = SeenSet::new(1 << 20, false);
        let start = set.slots.len();
        let hs = hashes(100_000, 1);
        for (i, &h) in hs.iter().enumerate() {
            set.insert(h, (i as u64) << 1 | (i as u64 & 1));
        }
        assert!(set.slots.len() > start, "the table grew");
        assert!(set.len * 4 <= set.slots.len() * 3);
        for (i, &h) in hs.iter().enumerate() {
            let want = (i as u64) << 1 | (i as u64 & 1);
            assert!(set.candidates(h).any(|p| p == want), "entry {i} lost");
        }
        let absent = hashes(1_000, 2);
        let false_hits: usize = absent.iter().map(|&h| set.candidates(h).count()).sum();
        assert_eq!(
            false_hits, 0,
            "43-bit tags: no false candidates in 1,000 lookups"
        );
    }

    #[test]
    fn with_no_room_for_a_tag_every_entry_is_a_candidate() {
        // 2^64 cells leave no hash bits beside the ordinal: lookups fall back to
        // comparing every entry (the caller re-renders each one), never missing one.
        let mut set = SeenSet::new(u64::MAX, false);
        for (i, &h) in hashes(3_000, 3).iter().enumerate() {
            set.insert(h, (i as u64) << 1);
        }
        let mut all: Vec<u64> = set.candidates(12345).collect();
        all.sort_unstable();
        assert_eq!(all, (0..3_000u64).map(|i| i << 1).collect::<Vec<_>>());
    }

    #[test]
    fn sized_once_when_the_count_is_known() {
        let mut set = SeenSet::new(1_000_000, true);
        assert_eq!(set.slots.len(), 1 << 21, "16 MB for a million links");
        for (i, &h) in hashes(1_000_000, 4).iter().enumerate() {
            set.insert(h, (i as u64) << 1);
        }
        assert_eq!(set.slots.len(), 1 << 21, "no growth");
    }
}

#[cfg(test)]
#[path = "walk_rows_tests.rs"]
mod rows_tests;
