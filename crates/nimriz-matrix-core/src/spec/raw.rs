//! The spec as written: serde structs mirroring the TOML, with spans kept for diagnostics.
//! Nothing here is checked beyond TOML types; `spec::compile` does the checking.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    #[serde(default)]
    pub campaign: Option<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    pub link: Option<Spanned<RawLinkFields>>,
    #[serde(default)]
    pub utm: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    pub rules: Option<Spanned<RawRules>>,
    #[serde(default, rename = "dimension")]
    pub dimensions: Vec<Spanned<RawDimension>>,
    /// Row-per-link input instead of dimensions.
    #[serde(default)]
    pub rows: Option<Spanned<RawRows>>,
    #[serde(default, rename = "exclude")]
    pub excludes: Vec<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Spanned<RawOverride>>,
    /// `[[moved]]`: a live link renamed from one slug to another (kept, not recreated).
    #[serde(default)]
    pub moved: Vec<Spanned<RawMoved>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMoved {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

/// Link fields: in `[link]`, and (all optional) in each `[[override]]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLinkFields {
    pub domain: Option<Spanned<String>>,
    pub domain_id: Option<Spanned<String>>,
    pub destination: Option<Spanned<String>>,
    pub slug: Option<Spanned<String>>,
    pub tags: Option<Spanned<Vec<Spanned<String>>>>,
    pub space: Option<Spanned<String>>,
    pub redirect: Option<Spanned<i64>>,
    pub expires_at: Option<Spanned<toml::Value>>,
    /// Which wins when the destination already carries a utm_* the spec sets:
    /// "error" (default), "spec", "destination".
    pub utm_conflict: Option<Spanned<String>>,
    /// Two cells with the same slug on one domain: "error" (default) or "hash".
    pub slug_collision: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    #[serde(rename = "match")]
    pub matcher: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
    pub domain: Option<Spanned<String>>,
    pub domain_id: Option<Spanned<String>>,
    pub destination: Option<Spanned<String>>,
    pub slug: Option<Spanned<String>>,
    pub tags: Option<Spanned<Vec<Spanned<String>>>>,
    pub space: Option<Spanned<String>>,
    pub redirect: Option<Spanned<i64>>,
    pub expires_at: Option<Spanned<toml::Value>>,
    pub utm: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// "error" (default), "normalize", or "off".
    pub lowercase: Option<Spanned<String>>,
    pub required: Option<Spanned<Vec<Spanned<String>>>>,
    pub allowed: Option<Spanned<BTreeMap<String, Spanned<Vec<String>>>>>,
    pub max_slug_length: Option<Spanned<i64>>,
    pub min_slug_length: Option<Spanned<i64>>,
    pub max_utm_length: Option<Spanned<i64>>,
    pub max_destination_length: Option<Spanned<i64>>,
    pub no_spaces: Option<Spanned<bool>>,
    pub allow_http: Option<Spanned<bool>>,
    /// "warn" (default) or "off": utm_medium outside GA4's default channel groups.
    pub ga4_channel_check: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimension {
    pub name: Spanned<String>,
    pub values: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub from: Option<Spanned<String>>,
    /// Column of the CSV that holds the key (default "key").
    pub key_column: Option<Spanned<String>>,
    /// Encoding of the `from` CSV, a WHATWG label (default UTF-8; a BOM always wins).
    pub encoding: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRows {
    pub from: Spanned<String>,
    /// Encoding of the CSV, a WHATWG label (default UTF-8; a BOM always wins).
    pub encoding: Option<Spanned<String>>,
}
