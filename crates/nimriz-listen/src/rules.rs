//! What an event means to the rules: a normalised view of a stored payload (plus its link's
//! cell from the campaign manifests), filters over it, and `{placeholder}` templates.

use super::campaign::{Campaign, LinkInfo};
use serde_json::Value;
use std::sync::Arc;

/// Which endpoint an event came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Signed lifecycle webhook (`link.created`, ...).
    Webhook,
    /// Click / QR scan / conversion from a generic HTTP destination.
    Click,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Click => "click",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Source::Webhook),
            "click" => Some(Source::Click),
            _ => None,
        }
    }
}

/// One event as rules and templates see it.
#[derive(Debug, Clone)]
pub struct EventView {
    pub event_id: String,
    pub source: Source,
    pub event_type: String,
    /// `click` or `qr_scan` for click-side events; `None` for lifecycle events.
    pub touch: Option<String>,
    pub body: Value,
    pub link: Option<Arc<LinkInfo>>,
}

impl EventView {
    pub fn new(event_id: &str, source: Source, body: Value, campaign: &Campaign) -> Self {
        let data = body.get("data").filter(|d| d.is_object()).unwrap_or(&body);
        let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let declared_type = str_of(body.get("type")).or_else(|| str_of(body.get("event_type")));
        // Clicks come from a destination; some Nimriz pages also list `link.clicked` /
        // `link.qr_scanned` as webhook types, so those count as touches on either endpoint.
        let raw_touch = str_of(data.get("touch_type")).or_else(|| str_of(body.get("touch_type")));
        let touch = match (source, raw_touch.as_deref(), declared_type.as_deref()) {
            (_, Some("qr_scan"), _) | (_, _, Some("link.qr_scanned")) => Some("qr_scan"),
            (Source::Click, _, _) | (_, _, Some("link.clicked")) => Some("click"),
            _ => None,
        }
        .map(str::to_string);
        let event_type = declared_type.unwrap_or_else(|| match touch.as_deref() {
            Some("qr_scan") => "link.qr_scanned".into(),
            Some(_) => "link.clicked".into(),
            None => "unknown".into(),
        });
        let link = campaign.find(data, &body);
        EventView {
            event_id: event_id.to_string(),
            source,
            event_type,
            touch,
            body,
            link,
        }
    }

    fn data(&self) -> &Value {
        self.body
            .get("data")
            .filter(|d| d.is_object())
            .unwrap_or(&self.body)
    }

    /// A field from the payload: `data.<path>` first, then the top level (dotted paths).
    fn payload(&self, path: &str) -> Option<String> {
        let get = |root: &Value| {
            let mut v = root;
            for part in path.split('.') {
                v = v.get(part)?;
            }
            match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Array(_) | Value::Object(_) => Some(v.to_string()),
                other => Some(other.to_string()),
            }
        };
        get(self.data()).or_else(|| get(&self.body))
    }

    /// Resolve a field name for conditions and templates; `None` when absent.
    pub fn lookup(&self, field: &str) -> Option<String> {
        let link = self.link.as_deref();
        match field {
            "event_id" | "id" => return Some(self.event_id.clone()),
            "event_type" | "type" => return Some(self.event_type.clone()),
            "touch" | "touch_type" => return self.touch.clone(),
            "source" => return Some(self.source.as_str().to_string()),
            "cell" => return link.map(|l| l.cell.label()),
            _ => {}
        }
        if let Some(dim) = field.strip_prefix("cell.") {
            return link.and_then(|l| l.cell.get(dim)).map(str::to_string);
        }
        if let Some(v) = self.payload(field) {
            return Some(v);
        }
        let link = link?;
        match field {
            "short_url" => link.short_url.clone(),
            "slug" | "short_code" => Some(link.slug.clone()),
            "url_id" | "link_id" => link.url_id.clone(),
            "domain_id" => link.domain_id.clone(),
            "domain" | "host" => link.host.clone(),
            "destination" | "long_url" => Some(link.destination.clone()),
            f if f.starts_with("utm_") => link.query_param(f),
            _ => None,
        }
    }

    /// Tags the payload carries (`tags`, or `after.tags` on a lifecycle event).
    fn tags(&self) -> Vec<String> {
        let data = self.data();
        [data.get("tags"), data.pointer("/after/tags")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    }

    fn domain_matches(&self, wanted: &str) -> bool {
        ["domain_id", "domain"]
            .iter()
            .filter_map(|f| self.lookup(f))
            .chain(self.link.as_ref().and_then(|l| l.host.clone()))
            .chain(self.link.as_ref().and_then(|l| l.domain_id.clone()))
            .any(|v| v.eq_ignore_ascii_case(wanted))
    }
}

/// `field = value` (or any of a list). Values compare as strings, exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub any_of: Vec<String>,
}

/// A rule's filter; every non-empty part must match (an empty list matches anything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub events: Vec<String>,
    pub touch: Vec<String>,
    /// Host or domain id, lowercased.
    pub domains: Vec<String>,
    pub tags: Vec<String>,
    pub conditions: Vec<Condition>,
}

impl Filter {
    pub fn matches(&self, ev: &EventView) -> bool {
        (self.events.is_empty() || self.events.contains(&ev.event_type))
            && (self.touch.is_empty()
                || ev
                    .touch
                    .as_ref()
                    .is_some_and(|t| self.touch.iter().any(|w| w == t)))
            && (self.domains.is_empty() || self.domains.iter().any(|d| ev.domain_matches(d)))
            && (self.tags.is_empty() || {
                let tags = ev.tags();
                self.tags.iter().any(|t| tags.contains(t))
            })
            && self
                .conditions
                .iter()
                .all(|c| ev.lookup(&c.field).is_some_and(|v| c.any_of.contains(&v)))
    }
}

/// `Hello {cell.brand} from {country}`: `{name}` with name in `[A-Za-z0-9_.-]` is a
/// placeholder; any other brace is literal (so JSON bodies need no escaping). A missing
/// value renders as the empty string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(String),
}

impl Template {
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('}') {
                literal.push_str(&rest[..open]);
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(after[..name_len].to_string()));
                rest = &after[name_len + 1..];
            } else {
                literal.push_str(&rest[..=open]);
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Template { parts }
    }

    pub fn render(&self, ev: &EventView) -> String {
        self.render_with(|f| ev.lookup(f).unwrap_or_default(), false)
    }

    /// For JSON bodies: each value is escaped as the inside of a JSON string.
    pub fn render_json(&self, ev: &EventView) -> String {
        self.render_with(|f| ev.lookup(f).unwrap_or_default(), true)
    }

    fn render_with(&self, value: impl Fn(&str) -> String, json: bool) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) if json => {
                    let quoted = Value::String(value(f)).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
                Part::Field(f) => out.push_str(&value(f)),
            }
        }
        out
    }

    /// Whether the template is JSON whatever the values (checked with a sample value).
    pub fn check_json_shape(&self) -> Result<(), String> {
        let rendered = self.render_with(|_| "x\"y".to_string(), true);
        serde_json::from_str::<Value>(&rendered)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(body: Value) -> EventView {
        EventView::new("ev1", Source::Click, body, &Campaign::default())
    }

    #[test]
    fn template_keeps_json_braces_and_escapes_values() {
        let t = Template::parse(r#"{"c": "{utm_campaign}", "n": {}, "x": "{not a field}"}"#);
        let ev = view(json!({"utm_campaign": "a\"b"}));
        assert_eq!(
            t.render_json(&ev),
            r#"{"c": "a\"b", "n": {}, "x": "{not a field}"}"#
        );
        assert!(t.check_json_shape().is_ok());
        assert!(Template::parse("{\"a\": {x}}").check_json_shape().is_err());
    }

    #[test]
    fn touch_and_type_are_normalised() {
        let ev = view(json!({"touch_type": "qr_scan"}));
        assert_eq!(ev.touch.as_deref(), Some("qr_scan"));
        assert_eq!(ev.event_type, "link.qr_scanned");
        let ev = view(json!({"type": "link.clicked", "data": {"country": "FR"}}));
        assert_eq!(ev.touch.as_deref(), Some("click"));
        assert_eq!(ev.lookup("country").as_deref(), Some("FR"));
        assert_eq!(Template::parse("{missing}!").render(&ev), "!");
    }

    #[test]
    fn webhook_click_types_are_touches_too() {
        let c = Campaign::default();
        let ev = EventView::new("w", Source::Webhook, json!({"type": "link.clicked"}), &c);
        assert_eq!(ev.touch.as_deref(), Some("click"));
        let ev = EventView::new("w", Source::Webhook, json!({"type": "link.updated"}), &c);
        assert_eq!(ev.touch, None);
    }

    #[test]
    fn filter_parts_all_must_match() {
        let ev = view(json!({"utm_campaign": "spring", "domain_id": "D1", "tags": ["demo"]}));
        let mut f = Filter {
            touch: vec!["click".into()],
            domains: vec!["d1".into()],
            tags: vec!["demo".into()],
            conditions: vec![Condition {
                field: "utm_campaign".into(),
                any_of: vec!["spring".into()],
            }],
            ..Filter::default()
        };
        assert!(f.matches(&ev));
        f.touch = vec!["qr_scan".into()];
        assert!(!f.matches(&ev));
        f.touch.clear();
        f.conditions[0].any_of = vec!["autumn".into()];
        assert!(!f.matches(&ev));
    }
}
