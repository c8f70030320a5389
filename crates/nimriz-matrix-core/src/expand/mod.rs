//! Stage 2: expand the matrix into cells and render each cell's link
//! (templates, slugs, UTM-tagged destinations, governance rules).
//!
//! Expansion is a pure function of the spec: the same spec gives the same links in the
//! same order on every machine. Dry-run and build both go through `Expander::render`.

pub mod rules;
pub mod slug;
pub mod utm;

use crate::diag::Location;
use crate::diag::Problem;
use crate::model::{Cell, DomainRef, PlannedLink};
use crate::spec::model::{Cells, LinkTemplates, Spec, UTM_FIELDS, UTM_PARAMS};
use crate::spec::template::Template;
use std::collections::BTreeMap;

pub struct Expander<'s> {
    pub spec: &'s Spec,
}

/// Non-fatal findings, deduplicated (one line per distinct medium, not per link).
#[derive(Debug, Default)]
pub struct Warnings {
    /// medium → (links, ordinal of the first, its cell label)
    unassigned_media: BTreeMap<String, (u64, u64, String)>,
}

impl Warnings {
    /// Combine warnings gathered by parallel workers; the earliest cell stays the example.
    pub fn merge(&mut self, other: Warnings) {
        for (medium, (n, ord, label)) in other.unassigned_media {
            let e = self
                .unassigned_media
                .entry(medium)
                .or_insert((0, u64::MAX, String::new()));
            e.0 += n;
            if ord < e.1 {
                e.1 = ord;
                e.2 = label;
            }
        }
    }

    pub fn into_messages(self) -> Vec<String> {
        self.unassigned_media
            .into_iter()
            .map(|(medium, (n, _, first))| {
                format!(
                    "utm_medium `{medium}` ({n} link(s), e.g. {first}) matches no GA4 default channel group: GA4 will report it as \"Unassigned\" (use e.g. cpc, paid-social, email, display, affiliate, referral, sms; or set rules.ga4_channel_check = \"off\")"
                )
            })
            .collect()
    }
}

/// Rebuild a cell from its ordinal (mixed radix, last dimension fastest).
pub fn cell_at(spec: &Spec, ordinal: u64) -> Vec<usize> {
    match &spec.cells {
        Cells::Rows(rows) => rows.cell(ordinal as usize).to_vec(),
        Cells::Matrix => {
            let mut cell = vec![0; spec.dimensions.len()];
            let mut rest = ordinal;
            for (i, d) in spec.dimensions.iter().enumerate().rev() {
                let n = d.values.len() as u64;
                cell[i] = (rest % n) as usize;
                rest /= n;
            }
            cell
        }
    }
}

fn matches(m: &[Option<Vec<bool>>], cell: &[usize]) -> bool {
    m.iter()
        .zip(cell)
        .all(|(set, &v)| set.as_ref().is_none_or(|s| s[v]))
}

impl<'s> Expander<'s> {
    pub fn new(spec: &'s Spec) -> Self {
        Expander { spec }
    }

    pub fn is_excluded(&self, values: &[usize]) -> bool {
        self.spec
            .excludes
            .iter()
            .any(|e| matches(&e.matches, values))
    }

    pub fn has_override(&self, values: &[usize]) -> bool {
        self.spec
            .overrides
            .iter()
            .any(|o| matches(&o.matches, values))
    }

    pub fn cell(&self, values: &[usize]) -> Cell {
        Cell(
            self.spec
                .dimensions
                .iter()
                .zip(values)
                .map(|(d, &v)| (d.name.clone(), d.values[v].key.clone()))
                .collect(),
        )
    }

    pub fn label(&self, values: &[usize]) -> String {
        self.cell(values).label()
    }

    /// Render one cell into a link, or every problem it has.
    pub fn render(
        &self,
        ordinal: u64,
        values: &[usize],
        warnings: &mut Warnings,
    ) -> Result<PlannedLink, Vec<Problem>> {
        let mut link = empty_link();
        self.render_into(
            ordinal,
            values,
            warnings,
            &mut link,
            &mut RenderScratch::default(),
        )?;
        Ok(link)
    }

    /// `render`, into `link`, reusing its buffers and `scratch`'s: a thread that renders
    /// many links keeps one of each, so a link costs no allocation in the common case.
    /// On `Err` the contents of `link` are unspecified.
    pub fn render_into(
        &self,
        ordinal: u64,
        values: &[usize],
        warnings: &mut Warnings,
        link: &mut PlannedLink,
        scratch: &mut RenderScratch,
    ) -> Result<(), Vec<Problem>> {
        let spec = self.spec;
        let dims = &spec.dimensions;
        let RenderScratch {
            overrides: matched,
            text,
            raw_destination,
            value,
            pairs,
            destination_cache,
        } = scratch;
        // A row spec's row: its fields are built from its text here, one row at a time.
        let row_fields = match &spec.cells {
            Cells::Rows(rows) => Some(rows.fields(ordinal as usize).map_err(|p| vec![p])?),
            Cells::Matrix => None,
        };
        let row = row_fields.as_ref().map(|r| &r.fields);
        matched.clear();
        matched.extend(
            spec.overrides
                .iter()
                .enumerate()
                .filter(|(_, o)| matches(&o.matches, values))
                .map(|(i, _)| i),
        );
        let overrides = || matched.iter().map(|&i| &spec.overrides[i]);
        let pick = |f: &dyn Fn(&LinkTemplates) -> Option<&Template>| -> Option<&Template> {
            row.and_then(f)
                .or_else(|| overrides().rev().find_map(|o| f(&o.fields)))
                .or_else(|| f(&spec.link))
        };
        let mut problems = Vec::new();
        let label = || self.label(values);
        let mut fail = |loc: &Location, msg: String, help: String| {
            problems.push(loc.problem(msg, Some(help)));
        };
        // Only row input can leave these unset ([link] requires them for a matrix).
        let row_loc = row_fields
            .as_ref()
            .map_or(&spec.link_location, |r| &r.location);
        if pick(&|l| l.destination.as_ref()).is_none() {
            fail(
                row_loc,
                "row has no destination".into(),
                "fill the `destination` column, or set [link] destination".into(),
            );
        }
        if pick(&|l| l.domain.as_ref()).is_none() && pick(&|l| l.domain_id.as_ref()).is_none() {
            fail(row_loc, "row names no short domain".into(), "fill a `domain` (short host) or `domain_id` column, or set [link] domain in a TOML spec with [rows]".into());
        }

        // Domain.
        let mut host = link.domain.host.take().unwrap_or_default();
        link.domain.id = None;
        if let Some(t) = pick(&|l| l.domain.as_ref()) {
            text.clear();
            t.render_into(dims, values, text);
            host.clear();
            host.push_str(text.trim().trim_end_matches('.'));
            host.make_ascii_lowercase();
            if host.is_empty()
                || host.contains("://")
                || host.contains('/')
                || host.contains(char::is_whitespace)
                || !host.contains('.')
            {
                fail(
                    &t.location,
                    format!("short domain `{host}` is not a host name"),
                    "give the bare host, e.g. go.acme.com (no https://, no path)".into(),
                );
            } else {
                link.domain.host = Some(host);
            }
        }
        if let Some(t) = pick(&|l| l.domain_id.as_ref()) {
            let id = t.render(dims, values).trim().to_string();
            if uuid::Uuid::parse_str(&id).is_err() {
                fail(&t.location, format!("domain_id `{id}` is not a UUID"), "copy the domain's id from Nimriz (GET /api/v1/domains), or use domain = \"<host>\"".into());
            } else {
                link.domain.id = Some(id.to_ascii_lowercase());
            }
        }

        // Slug.
        let rules = &spec.rules;
        let slug = &mut link.slug;
        slug.clear();
        if let Some(t) = pick(&|l| l.slug.as_ref()) {
            text.clear();
            t.render_into(dims, values, text);
            let raw = &*text;
            slug::slugify_into(raw, rules.max_slug_length, slug);
            let verbatim = row
                .and_then(|r| r.slug.as_ref())
                .is_some_and(|r| std::ptr::eq(r, t));
            if verbatim && slug != raw {
                fail(
                    &t.location,
                    format!("slug `{raw}` is not a valid slug"),
                    format!("use lowercase letters, digits and dashes, e.g. `{slug}`"),
                );
            } else if slug.is_empty() {
                fail(
                    &t.location,
                    format!("slug template `{}` gives an empty slug", t.text),
                    "make sure the slug contains letters or digits".into(),
                );
            } else if slug::RESERVED_SLUGS.contains(&slug.as_str()) {
                fail(
                    &t.location,
                    format!("slug `{slug}` is reserved by Nimriz"),
                    format!(
                        "reserved slugs: {}; change the slug template or the key",
                        slug::RESERVED_SLUGS.join(", ")
                    ),
                );
            } else if slug.len() < rules.min_slug_length {
                fail(&t.location, format!("slug `{slug}` is shorter than {} characters", rules.min_slug_length), "Nimriz rejects slugs below the domain's minimum length; lengthen the slug template".into());
            }
        }

        // The destination as written, and the UTMs it already carries: with
        // utm_conflict = "destination" those are the values that end up in the link, so
        // they are the ones the rules must check.
        let dest_template = pick(&|l| l.destination.as_ref());
        raw_destination.clear();
        if let Some(t) = dest_template {
            t.render_into(dims, values, raw_destination);
        }
        let carried = if dest_template.is_some() {
            utm::carried_utms(raw_destination)
        } else {
            Vec::new()
        };

        // UTM values, checked. `set` has bit i for each UTM_PARAMS[i] in the link's map;
        // `pairs[..n]` are the (param, value) pairs for the destination, in field order.
        let utm_map = &mut link.utm;
        let mut set = 0u32;
        let mut n = 0;
        let mut put = |map: &mut BTreeMap<String, String>, i: usize, v: &str| {
            set |= 1 << i;
            match map.get_mut(UTM_PARAMS[i]) {
                Some(old) => {
                    old.clear();
                    old.push_str(v);
                }
                None => {
                    map.insert(UTM_PARAMS[i].to_string(), v.to_string());
                }
            }
        };
        for (i, field) in UTM_FIELDS.iter().enumerate() {
            let Some(t) = pick(&|l| l.utm[i].as_ref()) else {
                continue;
            };
            text.clear();
            t.render_into(dims, values, text);
            let rendered = &*text;
            // Before trimming (which would delete a trailing newline) and before the other
            // rules (a newline is a "control character", not "not lowercase").
            if let Some((c, rule)) = rules::forbidden_char(rendered) {
                let what = format!("{} `{}`", UTM_PARAMS[i], rules::escaped(rendered));
                let v = rules::forbidden_violation(&what, c, rule);
                fail(&t.location, v.message, v.help);
                // Set, though refused: not also "required ... is missing".
                put(utm_map, i, "");
                continue;
            }
            value.clear();
            value.push_str(rendered.trim());
            if value.is_empty() {
                continue;
            }
            let kept = carried
                .iter()
                .find(|(k, _)| k == UTM_PARAMS[i])
                .map(|(_, v)| v);
            let mut field_rules = std::borrow::Cow::Borrowed(rules);
            if let (Some(kept), crate::spec::model::UtmConflict::Destination) =
                (kept, spec.utm_conflict)
            {
                // The URL keeps its own bytes, so "normalize" can't fix it: check strictly.
                value.clone_from(kept);
                if rules.lowercase == crate::spec::model::Lowercase::Normalize {
                    field_rules.to_mut().lowercase = crate::spec::model::Lowercase::Error;
                }
            }
            for v in rules::check_utm_value(&field_rules, field, value) {
                fail(&t.location, v.message, v.help);
            }
            put(utm_map, i, value);
            if pairs.len() == n {
                pairs.push((UTM_PARAMS[i], String::new()));
            }
            pairs[n].0 = UTM_PARAMS[i];
            pairs[n].1.clone_from(value);
            n += 1;
        }
        // What the last link set and this one does not.
        if utm_map.len() != set.count_ones() as usize {
            utm_map.retain(|k, _| {
                UTM_PARAMS
                    .iter()
                    .position(|p| p == k)
                    .is_some_and(|i| set & (1 << i) != 0)
            });
        }
        for req in &rules.required {
            let is_set = UTM_FIELDS
                .iter()
                .position(|f| f == req)
                .is_some_and(|i| set & (1 << i) != 0);
            if !is_set {
                let loc = rules.location.clone();
                fail(
                    &loc,
                    format!("required utm_{req} is missing or empty"),
                    format!("set [utm] {req} = \"...\" (rules.required lists it)"),
                );
            }
        }
        if rules.ga4_channel_check
            && let Some(m) = utm_map.get("utm_medium")
        {
            let s = utm_map.get("utm_source").map_or("", String::as_str);
            let c = utm_map.get("utm_campaign").map_or("", String::as_str);
            if rules::ga4_channel_group(s, m, c).is_none() {
                let e = warnings.unassigned_media.entry(m.clone()).or_insert((
                    0,
                    u64::MAX,
                    String::new(),
                ));
                if ordinal < e.1 {
                    e.1 = ordinal;
                    e.2 = label();
                }
                e.0 += 1;
            }
        }

        // Destination: each distinct text is parsed once (the last one is kept).
        let destination = &mut link.destination;
        destination.clear();
        if let Some(t) = dest_template {
            let raw = &*raw_destination;
            if destination_cache
                .as_ref()
                .is_none_or(|(cached, _)| cached != raw)
            {
                *destination_cache = None;
            }
            let (_, parsed) = destination_cache.get_or_insert_with(|| {
                (raw.clone(), utm::parse_destination(raw, rules.allow_http))
            });
            let finished = parsed.as_ref().map_err(|p| p.describe(raw)).and_then(|p| {
                p.finish_into(
                    &pairs[..n],
                    spec.utm_conflict,
                    link.domain.host.as_deref(),
                    destination,
                )
                .map_err(|p| p.describe(raw))
            });
            match finished {
                Ok(()) if destination.len() > rules.max_destination_length => fail(
                    &t.location,
                    format!(
                        "destination is {} characters long (max {})",
                        destination.len(),
                        rules.max_destination_length
                    ),
                    "shorten the URL, or raise rules.max_destination_length".into(),
                ),
                Ok(()) => {}
                Err((msg, help)) => fail(&t.location, msg, help),
            }
        }

        let tags = &mut link.tags;
        let mut n_tags = 0;
        let tag_templates = row
            .and_then(|r| r.tags.as_ref())
            .or_else(|| overrides().rev().find_map(|o| o.fields.tags.as_ref()))
            .or(spec.link.tags.as_ref());
        for t in tag_templates.into_iter().flatten() {
            text.clear();
            t.render_into(dims, values, text);
            let tag = text.trim();
            if !tag.is_empty() && !tags[..n_tags].iter().any(|x| x == tag) {
                if n_tags == tags.len() {
                    tags.push(String::new());
                }
                tags[n_tags].clear();
                tags[n_tags].push_str(tag);
                n_tags += 1;
            }
        }
        tags.truncate(n_tags);
        let mut space = link.space.take().unwrap_or_default();
        if let Some(t) = pick(&|l| l.space.as_ref()) {
            text.clear();
            t.render_into(dims, values, text);
            space.clear();
            space.push_str(text.trim());
            if !space.is_empty() {
                link.space = Some(space);
            }
        }
        link.redirect = row
            .and_then(|r| r.redirect.as_ref())
            .or_else(|| overrides().rev().find_map(|o| o.fields.redirect.as_ref()))
            .or(spec.link.redirect.as_ref())
            .map_or(302, |r| r.0);
        let expires_at = row
            .and_then(|r| r.expires_at.as_ref())
            .or_else(|| overrides().rev().find_map(|o| o.fields.expires_at.as_ref()))
            .or(spec.link.expires_at.as_ref());
        match (expires_at, &mut link.expires_at) {
            (Some(e), Some(old)) => old.clone_from(&e.0),
            (e, old) => *old = e.map(|e| e.0.clone()),
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        match (&link.domain.host, &mut link.short_url) {
            (Some(h), short) => {
                let url = short.get_or_insert_default();
                url.clear();
                url.push_str("https://");
                url.push_str(h);
                url.push('/');
                url.push_str(&link.slug);
            }
            (None, short) => *short = None,
        }
        let cell = &mut link.cell.0;
        if cell.len() != dims.len() {
            cell.resize(dims.len(), (String::new(), String::new()));
        }
        for ((d, &v), (name, key)) in dims.iter().zip(values).zip(cell.iter_mut()) {
            name.clone_from(&d.name);
            key.clone_from(&d.values[v].key);
        }
        Ok(())
    }
}

/// A link with nothing in it, for `render_into` to fill.
pub fn empty_link() -> PlannedLink {
    PlannedLink {
        cell: Cell::default(),
        slug: String::new(),
        domain: DomainRef::default(),
        short_url: None,
        destination: String::new(),
        utm: BTreeMap::new(),
        redirect: 302,
        expires_at: None,
        tags: Vec::new(),
        space: None,
    }
}

/// The buffers `Expander::render_into` reuses from one link to the next.
#[derive(Default)]
pub struct RenderScratch {
    /// Indices of the overrides that match the cell, in spec order.
    overrides: Vec<usize>,
    /// A rendered template, before it is trimmed or checked.
    text: String,
    raw_destination: String,
    /// A UTM value being checked.
    value: String,
    /// (UTM param, value) for the destination; only a prefix is in use.
    pairs: Vec<(&'static str, String)>,
    /// The last destination text and what parsing it gave.
    destination_cache: Option<(String, Result<utm::ParsedDestination, utm::UrlProblem>)>,
}
