//! The shared domain types, at the bottom of the pipeline: what one link will be before
//! anything is sent, and where a plan came from.
//!
//! `PlannedLink` is the hand-off between the offline half (spec → expand → plan) and the
//! online half (apply → manifest). Dry-run prints these; build sends exactly these.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which dimension value each dimension took for one link, in dimension order,
/// e.g. `[("brand","acme"), ("channel","paid-search"), ("variant","v3")]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Cell(pub Vec<(String, String)>);

impl Cell {
    pub fn get(&self, dimension: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(d, _)| d == dimension)
            .map(|(_, k)| k.as_str())
    }

    /// `brand=acme,channel=email,variant=v1` — stable, human-readable, used in messages.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(d, k)| format!("{d}={k}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

// A cell serialises as a JSON object whose keys keep dimension order.
impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (d, k) in &self.0 {
            map.serialize_entry(d, k)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cell;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of dimension name to value key")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Cell, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = a.next_entry::<String, String>()? {
                    v.push((k, val));
                }
                Ok(Cell(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The short domain a link lives on. At least one of the two is set. A host given without
/// an id is resolved to its `domain_id` through `GET /api/v1/domains` at build time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct DomainRef {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
}

impl DomainRef {
    /// The key slugs must be unique within: the id when known, else the host.
    pub fn key(&self) -> &str {
        self.id
            .as_deref()
            .or(self.host.as_deref())
            .unwrap_or_default()
    }
}

/// One link the spec asks for, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLink {
    /// Cell coordinates (dimension → value key). For CSV-only input: the row's key columns.
    pub cell: Cell,
    /// Final slug (already slugified, checked, unique per domain).
    pub slug: String,
    pub domain: DomainRef,
    /// `https://{host}/{slug}` when the host is known offline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub short_url: Option<String>,
    /// Destination with UTM parameters applied (what Nimriz will redirect to).
    pub destination: String,
    /// The UTM parameters that were applied, by full name (`utm_source` ...).
    pub utm: BTreeMap<String, String>,
    /// 301 or 302.
    pub redirect: u16,
    /// ISO-8601 expiry, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub space: Option<String>,
}

/// Where a plan came from: what the manifest records about the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PlanSource {
    /// Spec path as given on the command line.
    pub spec_path: String,
    pub spec_sha256: String,
    /// Every other file the spec loaded (CSV dimensions, CSV-only input), with its SHA-256.
    pub inputs: Vec<InputFile>,
    /// Campaign name from the spec, if it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub campaign: Option<String>,
    /// The spec after parsing and defaulting, as JSON (recorded in the manifest).
    pub resolved_spec: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
}

/// A fully expanded, validated plan, held in memory (build sizes are thousands, not millions;
/// the dry-run streams instead, see `plan::stream`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub source: PlanSource,
    pub links: Vec<PlannedLink>,
    /// Non-fatal findings (e.g. a utm_medium outside GA4's default channel groups).
    pub warnings: Vec<String>,
    /// The spec's `[[moved]]` entries (renames `build --update` applies).
    pub moved: Vec<Moved>,
}

/// A `[[moved]]` entry of the spec: the live link recorded at slug `from` now belongs at
/// slug `to`. `plan` shows a rename and `build --update` applies it with `update-slug`, so
/// the link keeps its `url_id` and its clicks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub from: String,
    pub to: String,
}
