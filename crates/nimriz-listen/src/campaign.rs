//! Campaign knowledge: the links `build` recorded in its manifests, indexed by link id and by
//! (domain, slug), so an event about a link can be traced back to its cell (brand, channel...).

use nimriz_matrix_core::manifest::Manifest;
use nimriz_matrix_core::model::Cell;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What a manifest knows about one link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    pub cell: Cell,
    pub slug: String,
    pub domain_id: Option<String>,
    pub host: Option<String>,
    pub url_id: Option<String>,
    pub short_url: Option<String>,
    pub destination: String,
    /// The UTMs the manifest recorded for the link.
    pub utm: std::collections::BTreeMap<String, String>,
}

impl LinkInfo {
    /// A query parameter of the planned destination (e.g. `utm_campaign`): the recorded
    /// UTMs first; the URL is read only for other parameters and for manifests written
    /// before UTMs were recorded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        if let Some(v) = self.utm.get(name) {
            return Some(v.clone());
        }
        if name.starts_with("utm_") && !self.utm.is_empty() {
            return None;
        }
        let url = url::Url::parse(&self.destination).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Campaign {
    by_url_id: HashMap<String, Arc<LinkInfo>>,
    /// Key: `"{domain id or host, lowercase}/{slug, lowercase}"`; each link is under both.
    by_slug: HashMap<String, Arc<LinkInfo>>,
}

impl Campaign {
    pub fn load(paths: &[impl AsRef<Path>]) -> nimriz_matrix_core::Result<Self> {
        let mut c = Campaign::default();
        for p in paths {
            c.add(&nimriz_matrix_core::manifest::load(p.as_ref())?);
        }
        Ok(c)
    }

    pub fn add(&mut self, manifest: &Manifest) {
        for rec in &manifest.links {
            let host = rec.domain.host.clone().or_else(|| {
                rec.short_url
                    .as_deref()
                    .and_then(|s| url::Url::parse(s).ok())
                    .and_then(|u| u.host_str().map(str::to_string))
            });
            let info = Arc::new(LinkInfo {
                cell: rec.cell.clone(),
                slug: rec.slug.clone(),
                domain_id: rec.domain.id.clone(),
                host,
                url_id: rec.url_id.clone(),
                short_url: rec.short_url.clone(),
                destination: rec.destination.clone(),
                utm: rec.utm.clone(),
            });
            if let Some(id) = &info.url_id {
                self.by_url_id.insert(id.to_ascii_lowercase(), info.clone());
            }
            for domain in [&info.domain_id, &info.host].into_iter().flatten() {
                self.by_slug
                    .insert(slug_key(domain, &info.slug), info.clone());
            }
        }
    }

    /// How many links the campaign knows. Each link sits in `by_slug` under both its domain id
    /// and its host (and in `by_url_id` too), so count distinct records, not map entries.
    pub fn len(&self) -> usize {
        self.by_url_id
            .values()
            .chain(self.by_slug.values())
            .map(Arc::as_ptr)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_url_id.is_empty() && self.by_slug.is_empty()
    }

    /// The link an event is about: by `url_id` / `link_id`, else by domain + slug, else by the
    /// `short_url` it carries.
    pub fn find(&self, data: &Value, body: &Value) -> Option<Arc<LinkInfo>> {
        if self.is_empty() {
            return None;
        }
        let field = |name: &str| {
            data.get(name)
                .or_else(|| body.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        for id_field in ["url_id", "link_id"] {
            if let Some(hit) =
                field(id_field).and_then(|id| self.by_url_id.get(&id.to_ascii_lowercase()))
            {
                return Some(hit.clone());
            }
        }
        let slug = field("short_code").or_else(|| field("slug")).or_else(|| {
            data.pointer("/after/short_code")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if let Some(slug) = slug {
            for domain in [field("domain_id"), field("domain")].into_iter().flatten() {
                if let Some(hit) = self.by_slug.get(&slug_key(&domain, &slug)) {
                    return Some(hit.clone());
                }
            }
        }
        let short = field("short_url")?;
        let url = url::Url::parse(&short).ok()?;
        let slug = url.path().trim_start_matches('/');
        self.by_slug.get(&slug_key(url.host_str()?, slug)).cloned()
    }
}

fn slug_key(domain: &str, slug: &str) -> String {
    format!(
        "{}/{}",
        domain.to_ascii_lowercase(),
        slug.to_ascii_lowercase()
    )
}

/// The manifests named in the config, reloaded when one changes on disk (a `build` that runs
/// while `listen` is up, or a manifest that did not exist yet at start).
pub struct CampaignSource {
    paths: Vec<std::path::PathBuf>,
    state: std::sync::Mutex<(Vec<Stamp>, Arc<Campaign>)>,
}

/// Modification times of a manifest and its journal.
type Stamp = (Option<std::time::SystemTime>, Option<std::time::SystemTime>);

fn stamp(path: &Path) -> Stamp {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (
        mtime(path),
        mtime(&nimriz_matrix_core::manifest::journal_path(path)),
    )
}

impl CampaignSource {
    pub fn new(paths: Vec<std::path::PathBuf>) -> Self {
        CampaignSource {
            paths,
            // Empty stamps: the first `refresh` loads whatever exists.
            state: std::sync::Mutex::new((Vec::new(), Arc::new(Campaign::default()))),
        }
    }

    /// The current campaign, reloading first if a manifest changed. Problems (a manifest
    /// missing or unreadable) come back as messages; the last good campaign stays in use.
    pub fn refresh(&self) -> (Arc<Campaign>, Vec<String>) {
        let stamps: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == stamps {
            return (state.1.clone(), Vec::new());
        }
        let mut campaign = Campaign::default();
        let mut problems = Vec::new();
        for p in &self.paths {
            if !p.exists() {
                problems.push(format!(
                    "manifest {} not found (yet): cell fields stay empty until it exists",
                    p.display()
                ));
                continue;
            }
            match nimriz_matrix_core::manifest::load(p) {
                Ok(m) => campaign.add(&m),
                Err(e) => problems.push(format!("manifest {} not loaded: {e}", p.display())),
            }
        }
        // A half-written manifest is never seen (it is replaced atomically), but a failed
        // read keeps the previous campaign rather than forgetting every cell.
        if problems.iter().any(|p| p.contains("not loaded")) && !state.1.is_empty() {
            state.0 = stamps;
            return (state.1.clone(), problems);
        }
        *state = (stamps, Arc::new(campaign));
        (state.1.clone(), problems)
    }
}
