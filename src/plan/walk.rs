//! Walk every link of a spec once, in plan order, checking what only the whole set can
//! show: slug collisions per domain. Memory stays flat (a hash per link, not the link), so
//! a million-link dry-run streams.

use super::PlannedLink;
use crate::expand::{Expander, Warnings, cell_at, slug};
use crate::spec::model::SlugCollision;
use crate::spec::{Problem, Spec};
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

/// Render every link and hand the valid ones to `sink` in plan order. Problems are
/// collected, not returned early, so the user sees all of them at once. A caller that must
/// not emit partial output buffers what `sink` receives until the walk is clean.
pub fn walk(
    spec: &Spec,
    mut sink: impl FnMut(&PlannedLink) -> std::io::Result<()>,
) -> Result<WalkResult, SinkError> {
    let ex = Expander::new(spec);
    let mut warnings = Warnings::default();
    let mut summary = Summary {
        combinations: u64::try_from(spec.combinations()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    let mut problems = Vec::new();
    let mut problem_count = 0usize;
    // The same broken template usually breaks many cells: report it once, with a count.
    // Value: (index in `problems`, cells affected, first cell).
    let mut same: HashMap<ProblemKey, (usize, u64, String)> = HashMap::new();
    let mut push_cell = |p: Problem, cell: &str, problems: &mut Vec<Problem>, count: &mut usize| {
        let key = (p.file.clone(), p.line, p.column, p.message.clone());
        if let Some(entry) = same.get_mut(&key) {
            entry.1 += 1;
            return;
        }
        *count += 1;
        if problems.len() < MAX_LISTED_PROBLEMS {
            same.insert(key, (problems.len(), 1, cell.to_string()));
            problems.push(p);
        }
    };
    let push = |p: Problem, problems: &mut Vec<Problem>, count: &mut usize| {
        *count += 1;
        if problems.len() < MAX_LISTED_PROBLEMS {
            problems.push(p);
        }
    };
    // (domain, slug) hash → ordinal << 1 | suffixed. Collisions of the hash itself are
    // told apart by re-rendering the earlier cell.
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut cells = ex.cells();
    for (ordinal, values) in cells.by_ref() {
        let mut link = match ex.render(ordinal, &values, &mut warnings) {
            Ok(l) => l,
            Err(ps) => {
                let label = ex.label(&values);
                for p in ps {
                    push_cell(p, &label, &mut problems, &mut problem_count);
                }
                continue;
            }
        };
        let mut suffixed = false;
        if let Some(earlier) = find_collision(&ex, &seen, &link) {
            let earlier_label = ex.label(&cell_at(spec, earlier));
            match spec.slug_collision {
                SlugCollision::Error => {
                    let loc = spec
                        .link
                        .slug
                        .as_ref()
                        .map_or(&spec.link_location, |t| &t.location);
                    push(
                        loc.problem(
                            format!(
                                "slug `{}` on `{}` is produced by two cells: {} and {}",
                                link.slug,
                                link.domain.key(),
                                earlier_label,
                                link.cell.label()
                            ),
                            Some("add a dimension to the slug template so each cell is unique, or set [link] slug_collision = \"hash\" to append a short stable hash".into()),
                        ),
                        &mut problems,
                        &mut problem_count,
                    );
                    continue;
                }
                SlugCollision::Hash => {
                    let suffix = slug::stable_suffix(&link.cell.label());
                    link.slug = slug::with_suffix(&link.slug, &suffix, spec.rules.max_slug_length);
                    if let Some(h) = &link.domain.host {
                        link.short_url = Some(format!("https://{h}/{}", link.slug));
                    }
                    suffixed = true;
                    summary.hash_suffixed += 1;
                    if find_collision(&ex, &seen, &link).is_some() {
                        let loc = spec
                            .link
                            .slug
                            .as_ref()
                            .map_or(&spec.link_location, |t| &t.location);
                        push(
                            loc.problem(
                                format!(
                                    "slug `{}` still collides after adding a hash (cell {})",
                                    link.slug,
                                    link.cell.label()
                                ),
                                Some("make the slug template unique per cell".into()),
                            ),
                            &mut problems,
                            &mut problem_count,
                        );
                        continue;
                    }
                }
            }
        }
        seen.insert(
            key_hash(link.domain.key(), &link.slug),
            (ordinal << 1) | u64::from(suffixed),
        );
        summary.links += 1;
        if spec.overrides.iter().any(|o| {
            o.matches
                .iter()
                .zip(&values)
                .all(|(m, &v)| m.as_ref().is_none_or(|s| s[v]))
        }) {
            summary.overridden += 1;
        }
        *summary
            .per_domain
            .entry(
                link.domain
                    .host
                    .clone()
                    .unwrap_or_else(|| link.domain.key().to_string()),
            )
            .or_default() += 1;
        if problem_count == 0 {
            sink(&link).map_err(SinkError::Io)?;
        }
    }
    summary.excluded = cells.excluded;
    for (_, (i, n, first)) in same {
        let p = &mut problems[i];
        p.message = if n == 1 {
            format!("{} (cell {first})", p.message)
        } else {
            format!("{} ({n} cells, e.g. {first})", p.message)
        };
    }
    Ok(WalkResult {
        summary,
        problems,
        problem_count,
        warnings: warnings.into_messages(),
    })
}

/// The ordinal of an earlier link with the same (domain, slug), if any.
fn find_collision(ex: &Expander<'_>, seen: &HashMap<u64, u64>, link: &PlannedLink) -> Option<u64> {
    let packed = *seen.get(&key_hash(link.domain.key(), &link.slug))?;
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
