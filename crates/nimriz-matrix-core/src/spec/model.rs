//! The checked spec: dimensions with values, compiled templates, rules. Built by
//! `spec::load`; everything here is already validated, so expansion can't hit a bad field.

use super::template::Template;
use crate::diag::Location;
use crate::model::InputFile;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: String,
    /// Attribute names (CSV header minus the key column, or the union of inline keys).
    pub attr_names: Vec<String>,
    pub values: Vec<DimValue>,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct DimValue {
    pub key: String,
    /// Aligned with `Dimension::attr_names`; `None` where an inline value lacks it.
    pub attrs: Vec<Option<String>>,
    pub location: Location,
}

/// The GA4 campaign parameters, in the order they are appended to destinations.
pub const UTM_FIELDS: [&str; 9] = [
    "source",
    "medium",
    "campaign",
    "term",
    "content",
    "id",
    "source_platform",
    "creative_format",
    "marketing_tactic",
];

/// The same parameters as query keys, in the same order.
pub const UTM_PARAMS: [&str; 9] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "utm_source_platform",
    "utm_creative_format",
    "utm_marketing_tactic",
];

/// Link fields as templates; in overrides every field is optional.
#[derive(Debug, Clone, Default)]
pub struct LinkTemplates {
    pub domain: Option<Template>,
    pub domain_id: Option<Template>,
    pub destination: Option<Template>,
    pub slug: Option<Template>,
    pub tags: Option<Vec<Template>>,
    pub space: Option<Template>,
    pub redirect: Option<(u16, Location)>,
    pub expires_at: Option<(String, Location)>,
    /// Indexed like `UTM_FIELDS`.
    pub utm: [Option<Template>; 9],
}

#[derive(Debug, Clone)]
pub struct Override {
    /// Per dimension: which value indices match (`None` = any).
    pub matches: Vec<Option<Vec<bool>>>,
    pub fields: LinkTemplates,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Exclude {
    pub matches: Vec<Option<Vec<bool>>>,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lowercase {
    Error,
    Normalize,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UtmConflict {
    Error,
    Spec,
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlugCollision {
    Error,
    Hash,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rules {
    pub lowercase: Lowercase,
    /// UTM field names (without `utm_`).
    pub required: Vec<String>,
    pub allowed: BTreeMap<String, Vec<String>>,
    pub max_slug_length: usize,
    pub min_slug_length: usize,
    pub max_utm_length: usize,
    pub max_destination_length: usize,
    pub no_spaces: bool,
    pub allow_http: bool,
    pub ga4_channel_check: bool,
    #[serde(skip)]
    pub location: Location,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            lowercase: Lowercase::Error,
            required: Vec::new(),
            allowed: BTreeMap::new(),
            max_slug_length: 50,
            min_slug_length: 4,
            max_utm_length: 100,
            max_destination_length: 2048,
            no_spaces: true,
            allow_http: false,
            ga4_channel_check: true,
            location: Location::default(),
        }
    }
}

/// Where the cells come from.
#[derive(Debug, Clone)]
pub enum Cells {
    /// Cartesian product of all dimensions, first dimension outermost.
    Matrix,
    /// One cell per CSV row (value index per dimension), with that row's literal fields.
    Rows(super::rows::Rows),
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub path_display: String,
    pub sha256: String,
    pub inputs: Vec<InputFile>,
    pub campaign: BTreeMap<String, String>,
    pub dimensions: Vec<Dimension>,
    pub cells: Cells,
    pub link: LinkTemplates,
    pub overrides: Vec<Override>,
    pub excludes: Vec<Exclude>,
    pub rules: Rules,
    pub utm_conflict: UtmConflict,
    pub slug_collision: SlugCollision,
    /// `[[moved]]` entries: old slug → new slug of a live link.
    pub moved: Vec<crate::model::Moved>,
    /// Location of the `[link]` table (for problems about the link as a whole).
    pub link_location: Location,
    /// Warnings from reading the spec (e.g. an expiry in the past).
    pub notes: Vec<String>,
}

impl Spec {
    /// Number of cells before excludes (the size the `--max-links` guard checks).
    pub fn combinations(&self) -> u128 {
        match &self.cells {
            Cells::Matrix => self
                .dimensions
                .iter()
                .map(|d| d.values.len() as u128)
                .product(),
            Cells::Rows(rows) => rows.len() as u128,
        }
    }
}
