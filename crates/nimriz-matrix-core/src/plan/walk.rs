//! Walk every link of a spec once, in plan order, checking what only the whole set can
//! show: slug collisions per domain. Memory stays flat (a hash per link, not the link), so
//! a million-link dry-run streams.

use super::PlannedLink;
use crate::diag::Problem;
use crate::expand::{Expander, Warnings, cell_at, slug};
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

/// Keys are already hashes: hashing them again would only cost time.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type SeenMap = HashMap<u64, u64, std::hash::BuildHasherDefault<PassThroughHasher>>;

/// (file, line, column, message): the same problem from the same template.
type ProblemKey = (String, usize, usize, String);

fn key_hash(domain: &str, slug: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    domain.hash(&mut h);
    slug.hash(&mut h);
    h.finish()
}

/// Below this many cells, render on the calling thread (threads cost more than they save).
const PARALLEL_FROM: u128 = 20_000;
/// Ordinals per unit of parallel work.
const CHUNK: u64 = 512;

/// What a worker hands back for one chunk of ordinals, in order.
struct Chunk<T> {
    /// (ordinal, cell, rendering) for every cell not excluded.
    items: Vec<(u64, Vec<usize>, RenderResult<T>)>,
    excluded: u64,
}

type RenderResult<T> = Result<Rendered<T>, Vec<Problem>>;

/// A rendered link with the work done for it off the collector thread: its
/// (domain, slug) hash and whatever the caller's `prepare` made of it (e.g. output bytes).
struct Rendered<T> {
    link: PlannedLink,
    hash: u64,
    prepared: T,
}

fn render_chunk<T>(
    ex: &Expander<'_>,
    start: u64,
    end: u64,
    warnings: &mut Warnings,
    prepare: &(impl Fn(&PlannedLink) -> T + Sync),
) -> Chunk<T> {
    let mut chunk = Chunk {
        items: Vec::with_capacity((end - start) as usize),
        excluded: 0,
    };
    for ordinal in start..end {
        let values = cell_at(ex.spec, ordinal);
        if ex.is_excluded(&values) {
            chunk.excluded += 1;
            continue;
        }
        let r = ex.render(ordinal, &values, warnings).map(|link| Rendered {
            hash: key_hash(link.domain.key(), &link.slug),
            prepared: prepare(&link),
            link,
        });
        chunk.items.push((ordinal, values, r));
    }
    chunk
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
/// collector for the rare link whose slug it changes); `sink` gets the link itself (no
/// copy for callers that keep it) and `prepare`'s result.
pub fn walk_prepared<T: Send>(
    spec: &Spec,
    prepare: impl Fn(&PlannedLink) -> T + Sync,
    sink: impl FnMut(PlannedLink, T) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    let workers = if spec.combinations() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    walk_on_threads(spec, workers, prepare, sink)
}

/// `walk_prepared` with an explicit number of rendering threads (1 = this thread only).
/// The result does not depend on `workers`; tests check exactly that.
pub fn walk_on_threads<T: Send>(
    spec: &Spec,
    workers: usize,
    prepare: impl Fn(&PlannedLink) -> T + Sync,
    mut sink: impl FnMut(PlannedLink, T) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    let ex = Expander::new(spec);
    let total = u64::try_from(spec.combinations()).unwrap_or(u64::MAX);
    let mut c = Collector::new(&ex, total);
    let mut warnings = Warnings::default();
    if workers < 2 {
        let mut start = 0;
        while start < total {
            let end = (start + CHUNK).min(total);
            let chunk = render_chunk(&ex, start, end, &mut warnings, &prepare);
            c.take(chunk, &prepare, &mut sink)?;
            start = end;
        }
    } else {
        let chunks = total.div_ceil(CHUNK);
        let result = std::thread::scope(|scope| {
            // Worker w renders chunks w, w+W, w+2W, ... into its own small queue, so the
            // collector can read them back in order with bounded memory.
            let mut queues = Vec::new();
            let mut handles = Vec::new();
            for w in 0..workers as u64 {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk<T>>(2);
                queues.push(rx);
                let (ex, prepare) = (&ex, &prepare);
                handles.push(scope.spawn(move || {
                    let mut warnings = Warnings::default();
                    let mut i = w;
                    while i < chunks {
                        let start = i * CHUNK;
                        let end = (start + CHUNK).min(total);
                        let chunk = render_chunk(ex, start, end, &mut warnings, prepare);
                        if tx.send(chunk).is_err() {
                            break; // the collector stopped early
                        }
                        i += workers as u64;
                    }
                    warnings
                }));
            }
            let mut outcome = Ok(());
            for i in 0..chunks {
                let Ok(chunk) = queues[(i % workers as u64) as usize].recv() else {
                    break;
                };
                if let Err(e) = c.take(chunk, &prepare, &mut sink) {
                    outcome = Err(e);
                    break;
                }
            }
            drop(queues);
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
    /// (domain, slug) hash → ordinal << 1 | suffixed. Collisions of the hash itself are
    /// told apart by re-rendering the earlier cell.
    seen: SeenMap,
}

impl<'e, 's> Collector<'e, 's> {
    fn new(ex: &'e Expander<'s>, total: u64) -> Self {
        Collector {
            ex,
            summary: Summary {
                combinations: total,
                ..Summary::default()
            },
            problems: Vec::new(),
            problem_count: 0,
            same: HashMap::new(),
            seen: SeenMap::default(),
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
        chunk: Chunk<T>,
        prepare: &impl Fn(&PlannedLink) -> T,
        sink: &mut impl FnMut(PlannedLink, T) -> std::io::Result<()>,
    ) -> Result<(), SinkError> {
        self.summary.excluded += chunk.excluded;
        for (ordinal, values, rendered) in chunk.items {
            let Rendered {
                link,
                hash,
                mut prepared,
            } = match rendered {
                Ok(r) => r,
                Err(ps) => {
                    let label = self.ex.label(&values);
                    for p in ps {
                        self.push_cell(p, &label);
                    }
                    continue;
                }
            };
            if let Some((link, changed)) = self.check_collision(ordinal, link, hash) {
                self.count(&values, &link);
                if self.problem_count == 0 {
                    if changed {
                        prepared = prepare(&link);
                    }
                    sink(link, prepared).map_err(SinkError::Io)?;
                }
            }
        }
        Ok(())
    }

    /// Record the link's (domain, slug); `None` when it collides (a problem is recorded).
    /// The flag says whether the slug was changed (hash suffix).
    fn check_collision(
        &mut self,
        ordinal: u64,
        mut link: PlannedLink,
        mut hash: u64,
    ) -> Option<(PlannedLink, bool)> {
        let spec = self.ex.spec;
        let mut suffixed = false;
        if let Some(earlier) = find_collision(self.ex, &self.seen, &link, hash) {
            match spec.slug_collision {
                SlugCollision::Error => {
                    let earlier_label = self.ex.label(&cell_at(spec, earlier));
                    let p = self.slug_location().problem(
                        format!(
                            "slug `{}` on `{}` is produced by two cells: {} and {}",
                            link.slug,
                            link.domain.key(),
                            earlier_label,
                            link.cell.label()
                        ),
                        Some("add a dimension to the slug template so each cell is unique, or set [link] slug_collision = \"hash\" to append a short stable hash".into()),
                    );
                    self.push(p);
                    return None;
                }
                SlugCollision::Hash => {
                    let suffix = slug::stable_suffix(&link.cell.label());
                    link.slug = slug::with_suffix(&link.slug, &suffix, spec.rules.max_slug_length);
                    if let Some(h) = &link.domain.host {
                        link.short_url = Some(format!("https://{h}/{}", link.slug));
                    }
                    suffixed = true;
                    self.summary.hash_suffixed += 1;
                    hash = key_hash(link.domain.key(), &link.slug);
                    if find_collision(self.ex, &self.seen, &link, hash).is_some() {
                        let p = self.slug_location().problem(
                            format!(
                                "slug `{}` still collides after adding a hash (cell {})",
                                link.slug,
                                link.cell.label()
                            ),
                            Some("make the slug template unique per cell".into()),
                        );
                        self.push(p);
                        return None;
                    }
                }
            }
        }
        self.seen.insert(hash, (ordinal << 1) | u64::from(suffixed));
        Some((link, suffixed))
    }

    fn count(&mut self, values: &[usize], link: &PlannedLink) {
        let s = &mut self.summary;
        s.links += 1;
        if self.ex.has_override(values) {
            s.overridden += 1;
        }
        let domain = link
            .domain
            .host
            .as_deref()
            .unwrap_or_else(|| link.domain.key());
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

/// The ordinal of an earlier link with the same (domain, slug), if any.
fn find_collision(ex: &Expander<'_>, seen: &SeenMap, link: &PlannedLink, hash: u64) -> Option<u64> {
    let packed = *seen.get(&hash)?;
    let (ordinal, suffixed) = (packed >> 1, packed & 1 == 1);
    let values = cell_at(ex.spec, ordinal);
    let mut scratch = Warnings::default();
    let mut earlier = ex.render(ordinal, &values, &mut scratch).ok()?;
    if suffixed {
        let suffix = slug::stable_suffix(&earlier.cell.label());
        earlier.slug = slug::with_suffix(&earlier.slug, &suffix, ex.spec.rules.max_slug_length);
    }
    (earlier.slug == link.slug && earlier.domain.key() == link.domain.key()).then_some(ordinal)
}

#[cfg(test)]
#[path = "walk_rows_tests.rs"]
mod rows_tests;
