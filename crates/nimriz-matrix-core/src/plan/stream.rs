//! The plan for `build` without holding it: a first walk checks the whole spec (problems,
//! collisions, warnings) and keeps only what the build needs before it sends anything (the
//! number of links and their distinct short domains); the build then walks the spec a
//! second time and sends links as they come (`rows`). Memory is bounded by the send window,
//! not by the number of links (the in-memory `Plan` was ~1.65 KB per link).

use super::walk::{self, SinkError};
use crate::model::{DomainRef, Moved, PlanSource, PlannedLink};
use crate::report::Reporter;
use crate::spec::{InputPolicy, Spec};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// A checked spec whose links are produced on demand, always the same and in plan order.
#[derive(Debug, Clone)]
pub struct SpecPlan {
    pub source: PlanSource,
    pub warnings: Vec<String>,
    pub moved: Vec<Moved>,
    /// Links the spec expands to (after excludes).
    pub links: usize,
    /// Every distinct short domain of the plan, in order of first use.
    pub domains: Vec<DomainRef>,
    /// The second walk, for the build.
    pub walk: LinkWalk,
}

/// The walk over a checked spec's links (cheap to clone: the spec is shared).
#[derive(Debug, Clone)]
pub struct LinkWalk(Arc<Spec>);

/// `load_with` for `build`: parse, check and walk the spec once, keeping no link.
pub fn prepare_with(
    path: &Path,
    max_links: u64,
    inputs: &InputPolicy,
    printer: &dyn Reporter,
) -> Result<SpecPlan> {
    let (spec, resolved) = super::load_spec_with(path, max_links, inputs)?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut domains = Vec::new();
    let result = walk::walk_bytes(
        &spec,
        |l, out| encode_domain(&l.domain, out),
        |(), bytes| {
            if !seen.contains(bytes) {
                seen.insert(bytes.to_vec());
                domains.push(decode_domain(bytes));
            }
            Ok(())
        },
    )
    .map_err(|SinkError::Io(e)| Error::io("collect", path, e))?;
    if let Some(r) = result.report() {
        return Err(r.into());
    }
    for w in &result.warnings {
        printer.warn(w);
    }
    Ok(SpecPlan {
        source: super::source_of(&spec, resolved),
        warnings: result.warnings,
        moved: spec.moved.clone(),
        links: usize::try_from(result.summary.links).unwrap_or(usize::MAX),
        domains,
        walk: LinkWalk(Arc::new(spec)),
    })
}

/// A domain as `±id \0 ±host` (`+` set, `-` not; an id or host holds no NUL).
fn encode_domain(d: &DomainRef, out: &mut Vec<u8>) {
    out.push(if d.id.is_some() { b'+' } else { b'-' });
    out.extend_from_slice(d.id.as_deref().unwrap_or_default().as_bytes());
    out.push(0);
    out.push(if d.host.is_some() { b'+' } else { b'-' });
    out.extend_from_slice(d.host.as_deref().unwrap_or_default().as_bytes());
}

fn decode_domain(bytes: &[u8]) -> DomainRef {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (id, host) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let field = |b: &[u8]| match b.split_first() {
        Some((b'+', rest)) => Some(text(rest)),
        _ => None,
    };
    DomainRef {
        id: field(id),
        host: field(host),
    }
}

impl LinkWalk {
    /// Walk the spec again, handing every link to `sink` in plan order; `make` runs on the
    /// rendering threads (so the per-link work of the caller is spread over the cores).
    /// The first walk was clean, so this one is too (the expansion is deterministic); a
    /// `sink` error stops it.
    pub fn each<T: Send>(
        &self,
        make: impl Fn(&PlannedLink) -> T + Sync,
        mut sink: impl FnMut(T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let result = walk::walk_bytes(&self.0, |l, _| make(l), |t, _| sink(t))
            .map_err(|SinkError::Io(e)| e)?;
        match result.report() {
            None => Ok(()),
            Some(r) => Err(std::io::Error::other(format!(
                "the second walk of the spec found a problem the first did not: {r}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_round_trip_through_their_walk_encoding() {
        for d in [
            DomainRef {
                id: Some("dom_1".into()),
                host: None,
            },
            DomainRef {
                id: None,
                host: Some("go.example".into()),
            },
            DomainRef {
                id: Some("dom_2".into()),
                host: Some("x.example".into()),
            },
            DomainRef {
                id: Some(String::new()),
                host: None,
            },
        ] {
            let mut out = Vec::new();
            encode_domain(&d, &mut out);
            assert_eq!(decode_domain(&out), d);
        }
    }
}
