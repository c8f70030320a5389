//! Campaign, rules, link fields, UTM templates, excludes and overrides: each checked,
//! each problem pointing at its place in the spec.

use super::load::Compiler;
use super::model::*;
use super::raw::*;
use super::template::{Template, closest};
use crate::diag::Location;
use std::collections::BTreeMap;
use toml::Spanned;

impl Compiler<'_> {
    pub(super) fn campaign(
        &mut self,
        raw: Option<&Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(raw) = raw else { return out };
        for (k, v) in raw.get_ref() {
            match scalar(v.get_ref()) {
                Some(s) => {
                    out.insert(k.clone(), s);
                }
                None => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("[campaign] `{k}` must be a string, number or date"),
                        Some(
                            "campaign fields are used as `{campaign.<field>}` placeholders"
                                .to_string(),
                        ),
                    );
                }
            }
        }
        out
    }

    pub(super) fn rules(&mut self, raw: Option<&Spanned<RawRules>>) -> Rules {
        let mut rules = Rules::default();
        let Some(raw) = raw else { return rules };
        rules.location = self.loc(raw);
        let r = raw.get_ref();
        if let Some(v) = &r.lowercase {
            rules.lowercase = match v.get_ref().as_str() {
                "error" => Lowercase::Error,
                "normalize" | "normalise" => Lowercase::Normalize,
                "off" => Lowercase::Off,
                other => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown lowercase rule `{other}`"),
                        Some("use \"error\", \"normalize\" or \"off\"".to_string()),
                    );
                    Lowercase::Error
                }
            };
        }
        if let Some(req) = &r.required {
            for f in req.get_ref() {
                if let Some(name) = self.utm_name(f) {
                    rules.required.push(name);
                }
            }
        }
        if let Some(allowed) = &r.allowed {
            for (k, vals) in allowed.get_ref() {
                let key = k.strip_prefix("utm_").unwrap_or(k);
                if !UTM_FIELDS.contains(&key) {
                    let loc = self.loc(vals);
                    self.problem(
                        &loc,
                        format!("rules.allowed names unknown UTM field `{k}`"),
                        Some(utm_help(key)),
                    );
                    continue;
                }
                rules
                    .allowed
                    .insert(key.to_string(), vals.get_ref().clone());
            }
        }
        let mut num =
            |v: &Option<Spanned<i64>>, min: i64, max: i64, name: &str, into: &mut usize| {
                if let Some(v) = v {
                    let n = *v.get_ref();
                    if n < min || n > max {
                        let loc = self.loc(v);
                        self.problem(
                            &loc,
                            format!("rules.{name} = {n} is out of range"),
                            Some(format!("use a number from {min} to {max}")),
                        );
                    } else {
                        *into = n as usize;
                    }
                }
            };
        num(
            &r.max_slug_length,
            1,
            200,
            "max_slug_length",
            &mut rules.max_slug_length,
        );
        num(
            &r.min_slug_length,
            1,
            200,
            "min_slug_length",
            &mut rules.min_slug_length,
        );
        num(
            &r.max_utm_length,
            1,
            2000,
            "max_utm_length",
            &mut rules.max_utm_length,
        );
        num(
            &r.max_destination_length,
            16,
            65536,
            "max_destination_length",
            &mut rules.max_destination_length,
        );
        if rules.min_slug_length > rules.max_slug_length {
            let loc = rules.location.clone();
            self.problem(
                &loc,
                "rules.min_slug_length is larger than rules.max_slug_length",
                None::<String>,
            );
        }
        if let Some(v) = &r.no_spaces {
            rules.no_spaces = *v.get_ref();
        }
        if let Some(v) = &r.allow_http {
            rules.allow_http = *v.get_ref();
        }
        if let Some(v) = &r.ga4_channel_check {
            rules.ga4_channel_check = match v.get_ref().as_str() {
                "warn" => true,
                "off" => false,
                other => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown ga4_channel_check `{other}`"),
                        Some("use \"warn\" or \"off\"".to_string()),
                    );
                    true
                }
            };
        }
        rules
    }

    pub(super) fn utm_name(&mut self, f: &Spanned<String>) -> Option<String> {
        let key = f.get_ref().strip_prefix("utm_").unwrap_or(f.get_ref());
        if UTM_FIELDS.contains(&key) {
            Some(key.to_string())
        } else {
            let loc = self.loc(f);
            self.problem(
                &loc,
                format!("unknown UTM field `{}`", f.get_ref()),
                Some(utm_help(key)),
            );
            None
        }
    }

    pub(super) fn utm_table(
        &mut self,
        u: &Spanned<BTreeMap<String, Spanned<String>>>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> [Option<Template>; 9] {
        let mut out: [Option<Template>; 9] = Default::default();
        // `campaign` and `utm_campaign` are one parameter: given both, neither silently wins.
        // In the order written, so the second one is reported.
        let mut entries: Vec<_> = u.get_ref().iter().collect();
        entries.sort_by_key(|(_, v)| v.span().start);
        let mut seen: [Option<&str>; 9] = Default::default();
        for (k, v) in entries {
            let key = k.strip_prefix("utm_").unwrap_or(k);
            match UTM_FIELDS.iter().position(|f| *f == key) {
                Some(i) if seen[i].is_some() => {
                    let first = seen[i].unwrap_or_default();
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!(
                            "UTM parameter `utm_{key}` is given twice: as `{first}` and as `{k}`"
                        ),
                        Some(format!(
                            "`{key}` and `utm_{key}` name the same parameter: keep one of them"
                        )),
                    );
                }
                Some(i) => {
                    seen[i] = Some(k.as_str());
                    out[i] = self.template(v, dims, campaign);
                }
                None => {
                    let loc = self.loc(v);
                    self.problem(
                        &loc,
                        format!("unknown UTM field `{k}`"),
                        Some(utm_help(key)),
                    );
                }
            }
        }
        out
    }

    pub(super) fn template(
        &mut self,
        s: &Spanned<String>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> Option<Template> {
        let loc = self.loc(s);
        match Template::parse(s.get_ref(), loc.clone(), dims, campaign) {
            Ok(t) => Some(t),
            Err(_)
                if self
                    .failed_dims
                    .iter()
                    .any(|d| s.get_ref().contains(&format!("{{{d}"))) =>
            {
                None
            }
            Err(e) => {
                // Point inside the quoted string at the placeholder (+1 for the quote).
                let at = s.span().start + 1 + e.offset;
                let ploc = self.source.locate(&(at..at));
                self.problems.push(ploc.problem(e.message, e.help));
                None
            }
        }
    }

    pub(super) fn link_fields(
        &mut self,
        f: &LinkFieldRefs<'_>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> LinkTemplates {
        let mut t = LinkTemplates {
            domain: f.domain.and_then(|s| self.template(s, dims, campaign)),
            domain_id: f.domain_id.and_then(|s| self.template(s, dims, campaign)),
            destination: f.destination.and_then(|s| self.template(s, dims, campaign)),
            slug: f.slug.and_then(|s| self.template(s, dims, campaign)),
            space: f.space.and_then(|s| self.template(s, dims, campaign)),
            ..LinkTemplates::default()
        };
        if let Some(tags) = f.tags {
            t.tags = Some(
                tags.get_ref()
                    .iter()
                    .filter_map(|s| self.template(s, dims, campaign))
                    .collect(),
            );
        }
        if let Some(r) = f.redirect {
            let loc = self.loc(r);
            match *r.get_ref() {
                n @ (301 | 302) => t.redirect = Some((n as u16, loc)),
                n => self.problem(
                    &loc,
                    format!("redirect = {n} is not supported"),
                    Some("use 302 (temporary, the default) or 301 (permanent)".to_string()),
                ),
            }
        }
        if let Some(e) = f.expires_at {
            t.expires_at = self.expiry_value(e);
        }
        if let Some(u) = f.utm {
            t.utm = self.utm_table(u, dims, campaign);
        }
        t
    }

    pub(super) fn redirect_value(&mut self, v: &Spanned<toml::Value>) -> Option<(u16, Location)> {
        let loc = self.loc(v);
        match v.get_ref().as_integer() {
            Some(n @ (301 | 302)) => Some((n as u16, loc)),
            _ => {
                self.problem(
                    &loc,
                    format!("redirect = {} is not supported", v.get_ref()),
                    Some("use 302 (temporary, the default) or 301 (permanent)".to_string()),
                );
                None
            }
        }
    }

    pub(super) fn expiry_value(&mut self, v: &Spanned<toml::Value>) -> Option<(String, Location)> {
        let loc = self.loc(v);
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(d) => d.to_string(),
            other => other.to_string(),
        };
        match check_expiry(&text) {
            Ok(s) => {
                self.note_past_expiry(&s, &loc);
                Some((s, loc))
            }
            Err(help) => {
                self.problem(
                    &loc,
                    format!("expires_at `{text}` is not a valid date-time"),
                    Some(help),
                );
                None
            }
        }
    }

    pub(super) fn matcher(
        &mut self,
        m: &BTreeMap<String, Spanned<toml::Value>>,
        dims: &[Dimension],
        table_loc: &Location,
    ) -> Option<Vec<Option<Vec<bool>>>> {
        if m.is_empty() {
            self.problem(
                table_loc,
                "an exclude/override match is empty (it would match every link)",
                Some("name at least one dimension, e.g. brand = \"initech\"".to_string()),
            );
            return None;
        }
        let mut out: Vec<Option<Vec<bool>>> = vec![None; dims.len()];
        let mut ok = true;
        for (dim_name, v) in m {
            let loc = self.loc(v);
            let Some(d) = dims.iter().position(|d| &d.name == dim_name) else {
                // A dimension that failed to load (its CSV, say) was reported already.
                if self.failed_dims.contains(dim_name) {
                    ok = false;
                    continue;
                }
                let hint = closest(dim_name, dims.iter().map(|d| d.name.as_str())).map_or_else(
                    || {
                        format!(
                            "dimensions: {}",
                            dims.iter()
                                .map(|d| format!("`{}`", d.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    |c| format!("did you mean `{c}`?"),
                );
                self.problem(&loc, format!("unknown dimension `{dim_name}`"), Some(hint));
                ok = false;
                continue;
            };
            let keys: Vec<String> = match v.get_ref() {
                toml::Value::Array(a) => a.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            };
            if keys.is_empty() {
                self.problem(
                    &loc,
                    format!("`{dim_name}` needs a key or a list of keys"),
                    None::<String>,
                );
                ok = false;
                continue;
            }
            let mut set = vec![false; dims[d].values.len()];
            for k in keys {
                match dims[d].values.iter().position(|v| v.key == k) {
                    Some(i) => set[i] = true,
                    None => {
                        let hint = closest(&k, dims[d].values.iter().map(|v| v.key.as_str()))
                            .map_or_else(
                                || "check the spelling against the dimension's keys".to_string(),
                                |c| format!("did you mean `{c}`?"),
                            );
                        self.problem(
                            &loc,
                            format!("dimension `{dim_name}` has no key `{k}`"),
                            Some(hint),
                        );
                        ok = false;
                    }
                }
            }
            out[d] = Some(set);
        }
        ok.then_some(out)
    }

    pub(super) fn override_(
        &mut self,
        o: &Spanned<RawOverride>,
        dims: &[Dimension],
        campaign: &BTreeMap<String, String>,
    ) -> Option<Override> {
        let location = self.loc(o);
        let ro = o.get_ref();
        let mloc = self.loc(&ro.matcher);
        let matches = self.matcher(ro.matcher.get_ref(), dims, &mloc);
        let f = ro;
        let fields = self.link_fields(
            &LinkFieldRefs {
                domain: f.domain.as_ref(),
                domain_id: f.domain_id.as_ref(),
                destination: f.destination.as_ref(),
                slug: f.slug.as_ref(),
                tags: f.tags.as_ref(),
                space: f.space.as_ref(),
                redirect: f.redirect.as_ref(),
                expires_at: f.expires_at.as_ref(),
                utm: f.utm.as_ref(),
            },
            dims,
            campaign,
        );
        Some(Override {
            matches: matches?,
            fields,
            location,
        })
    }
}

pub(super) struct LinkFieldRefs<'r> {
    pub(super) domain: Option<&'r Spanned<String>>,
    pub(super) domain_id: Option<&'r Spanned<String>>,
    pub(super) destination: Option<&'r Spanned<String>>,
    pub(super) slug: Option<&'r Spanned<String>>,
    pub(super) tags: Option<&'r Spanned<Vec<Spanned<String>>>>,
    pub(super) space: Option<&'r Spanned<String>>,
    pub(super) redirect: Option<&'r Spanned<i64>>,
    pub(super) expires_at: Option<&'r Spanned<toml::Value>>,
    pub(super) utm: Option<&'r Spanned<BTreeMap<String, Spanned<String>>>>,
}

pub(super) fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

impl Compiler<'_> {
    /// A past expiry is legal but almost always a mistake (a copied spec from last season):
    /// every link would be dead on arrival. A warning, so an old spec still validates.
    pub(super) fn note_past_expiry(&mut self, rfc3339: &str, loc: &Location) {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339)
            && t < chrono::Utc::now()
        {
            let note = format!(
                "expires_at {rfc3339} is in the past ({}:{}): links created now would expire at once",
                loc.file, loc.line
            );
            // A CSV where every row's date is past would otherwise give a note per row.
            if self.notes.contains(&note) {
                return;
            }
            self.past_expiries += 1;
            if self.past_expiries <= PAST_EXPIRY_NOTES {
                self.notes.push(note);
            }
        }
    }

    /// The notes for the compiled spec: past the first [`PAST_EXPIRY_NOTES`] past expiries,
    /// one line counts the rest.
    pub(super) fn finished_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if let Some(more) = self.past_expiries.checked_sub(PAST_EXPIRY_NOTES)
            && more > 0
        {
            notes.push(format!(
                "and {more} more expires_at value(s) in the past (the first {PAST_EXPIRY_NOTES} are above)"
            ));
        }
        notes
    }
}

/// How many past expiries get a note of their own.
const PAST_EXPIRY_NOTES: usize = 5;

pub(super) fn check_expiry(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| {
            d.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .map_err(|_| "use RFC 3339 with a time zone, e.g. 2026-06-30T23:59:59Z".to_string())
}

pub(super) fn utm_help(key: &str) -> String {
    match closest(key, UTM_FIELDS.into_iter()) {
        Some(c) => format!("did you mean `{c}`? UTM fields: {}", UTM_FIELDS.join(", ")),
        None => format!("UTM fields: {}", UTM_FIELDS.join(", ")),
    }
}

pub(super) fn toml_to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

pub(super) fn templates_json(l: &LinkTemplates) -> serde_json::Value {
    let t = |o: &Option<Template>| o.as_ref().map(|t| t.text.clone());
    let mut utm = serde_json::Map::new();
    for (i, f) in UTM_FIELDS.iter().enumerate() {
        if let Some(tpl) = &l.utm[i] {
            utm.insert(format!("utm_{f}"), tpl.text.clone().into());
        }
    }
    serde_json::json!({
        "domain": t(&l.domain),
        "domain_id": t(&l.domain_id),
        "destination": t(&l.destination),
        "slug": t(&l.slug),
        "tags": l.tags.as_ref().map(|v| v.iter().map(|t| t.text.clone()).collect::<Vec<_>>()),
        "space": t(&l.space),
        "redirect": l.redirect.as_ref().map(|r| r.0),
        "expires_at": l.expires_at.as_ref().map(|e| e.0.clone()),
        "utm": utm,
    })
}
