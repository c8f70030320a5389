//! Governance rules for UTM values, checked offline so CI can run them.

use crate::spec::model::{Lowercase, Rules};
use crate::spec::template::closest;

/// One broken rule: the message and the fix.
pub struct RuleViolation {
    pub message: String,
    pub help: String,
}

/// The first character no destination or UTM value may hold, with the rule it breaks:
/// control characters (C0 incl. newline, tab and NUL; DEL; C1) — a URL parser silently
/// drops or re-encodes them, and a newline can inject a header — and the bidi overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069), which make text display in another order than
/// it is read.
pub fn forbidden_char(s: &str) -> Option<(char, &'static str)> {
    // Printable ASCII (the usual text) has neither: one byte scan, no decoding.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    s.chars().find_map(|c| {
        if c.is_control() {
            Some((c, "control character"))
        } else if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            Some((c, "bidi control character"))
        } else {
            None
        }
    })
}

/// `s` with every control and bidi character written as `\u{…}` (`\n`,
/// `\t`, `\r`, `\0` for the common ones), so a message shows what is really there.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if forbidden_char(c.encode_utf8(&mut [0; 4])).is_some() => {
                out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// `what` (e.g. "utm_source `a\nb`") holds a forbidden character: the message and the fix.
pub fn forbidden_violation(what: &str, c: char, rule: &str) -> RuleViolation {
    RuleViolation {
        message: format!("{what} contains a {rule} (U+{:04X})", u32::from(c)),
        help: if rule == "control character" {
            "remove it: a URL cannot carry it as written and it would be silently dropped or changed (a pasted line break, a stray tab or NUL)".into()
        } else {
            "remove it: it makes the text display in a different order than it is read".into()
        },
    }
}

/// `utm_<field>` in messages, written out only when a message is.
struct UtmParam<'a>(&'a str);

impl std::fmt::Display for UtmParam<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "utm_{}", self.0)
    }
}

/// Check (and, with `lowercase = "normalize"`, rewrite) one UTM value.
pub fn check_utm_value(rules: &Rules, field: &str, value: &mut String) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    // Only messages need the parameter's name: no allocation for a value that passes.
    let param = UtmParam(field);
    // First, and alone: a newline is a "control character", not "not lowercase".
    if let Some((c, rule)) = forbidden_char(value) {
        let what = format!("{param} `{}`", escaped(value));
        return vec![forbidden_violation(&what, c, rule)];
    }
    let has_upper = if value.is_ascii() {
        value.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        value.chars().any(char::is_uppercase)
    };
    match rules.lowercase {
        Lowercase::Normalize if has_upper => {
            *value = value.to_lowercase();
        }
        Lowercase::Error if has_upper => out.push(RuleViolation {
            message: format!("{param} `{value}` is not lowercase"),
            help: format!(
                "use `{}` (GA4 treats case-variants as different values), or set rules.lowercase = \"normalize\"",
                value.to_lowercase()
            ),
        }),
        _ => {}
    }
    if rules.no_spaces && value.chars().any(char::is_whitespace) {
        out.push(RuleViolation {
            message: format!("{param} `{value}` contains a space"),
            help: format!(
                "use `-` or `_` instead, e.g. `{}`",
                value.split_whitespace().collect::<Vec<_>>().join("-")
            ),
        });
    }
    let chars = if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    };
    if chars > rules.max_utm_length {
        out.push(RuleViolation {
            message: format!(
                "{param} is {} characters long (max {})",
                value.chars().count(),
                rules.max_utm_length
            ),
            help: "shorten the value, or raise rules.max_utm_length".into(),
        });
    }
    if let Some(allowed) = rules.allowed.get(field)
        && !allowed.iter().any(|a| a == value)
    {
        let hint = closest(value, allowed.iter().map(String::as_str))
            .map_or_else(String::new, |c| format!("did you mean `{c}`? "));
        out.push(RuleViolation {
            message: format!("{param} `{value}` is not an allowed value"),
            help: format!("{hint}allowed: {}", allowed.join(", ")),
        });
    }
    out
}

/// GA4's default channel group for a source/medium/campaign, or `None` when the traffic
/// would land in "Unassigned". Simplified from Google's published rules (medium-based ones;
/// source-list rules such as "Paid Search needs a search engine source" are not modelled).
pub fn ga4_channel_group(source: &str, medium: &str, campaign: &str) -> Option<&'static str> {
    // Values are usually lowercase already (the rules ask for it): no copy then.
    fn lower(v: &str) -> std::borrow::Cow<'_, str> {
        if v.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(v.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(v)
        }
    }
    let (s, m, c) = (lower(source), lower(medium), lower(campaign));
    let (s, m) = (s.as_ref(), m.as_ref());
    let email = ["email", "e-mail", "e_mail", "e mail"];
    if c.contains("cross-network") {
        return Some("Cross-network");
    }
    if m.contains("cp") || m == "ppc" || m == "retargeting" || m.starts_with("paid") {
        return Some("Paid (Search/Social/Video/Shopping/Other)");
    }
    if ["display", "banner", "expandable", "interstitial", "cpm"].contains(&m) {
        return Some("Display");
    }
    if [
        "social",
        "social-network",
        "social-media",
        "sm",
        "social network",
        "social media",
    ]
    .contains(&m)
    {
        return Some("Organic Social");
    }
    if m.contains("video") {
        return Some("Organic Video");
    }
    if m == "organic" {
        return Some("Organic Search");
    }
    if ["referral", "app", "link"].contains(&m) {
        return Some("Referral");
    }
    if email.contains(&m) || email.contains(&s) {
        return Some("Email");
    }
    if m == "affiliate" {
        return Some("Affiliates");
    }
    if m == "audio" {
        return Some("Audio");
    }
    if m == "sms" || s == "sms" {
        return Some("SMS");
    }
    if m.ends_with("push") || m.contains("mobile") || m.contains("notification") || s == "firebase"
    {
        return Some("Mobile Push Notifications");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga4_groups() {
        assert_eq!(
            ga4_channel_group("google", "cpc", "x"),
            Some("Paid (Search/Social/Video/Shopping/Other)")
        );
        assert_eq!(
            ga4_channel_group("meta", "paid-social", "x"),
            Some("Paid (Search/Social/Video/Shopping/Other)")
        );
        assert_eq!(ga4_channel_group("newsletter", "email", "x"), Some("Email"));
        assert_eq!(ga4_channel_group("acme", "newsletter", "x"), None);
    }

    #[test]
    fn control_and_bidi_characters_are_named_before_other_rules() {
        let rules = Rules::default();
        for (value, rule, code) in [
            ("Spring\nX-Injected: 1", "control character", "U+000A"),
            ("spring\0", "control character", "U+0000"),
            ("a\tb", "control character", "U+0009"),
            ("spring\u{202E}gnp", "bidi control character", "U+202E"),
            ("\u{2066}spring", "bidi control character", "U+2066"),
        ] {
            let mut v = value.to_string();
            let errs = check_utm_value(&rules, "campaign", &mut v);
            assert_eq!(errs.len(), 1, "{value:?}");
            assert!(
                errs[0]
                    .message
                    .contains(&format!("contains a {rule} ({code})")),
                "{}",
                errs[0].message
            );
            assert!(
                !errs[0].message.contains("lowercase"),
                "{}",
                errs[0].message
            );
            assert!(!errs[0].message.contains(['\n', '\0', '\u{202E}']));
            assert_eq!(v, value, "the value is not rewritten");
        }
        assert!(forbidden_char("café-été_2026").is_none());
        assert_eq!(escaped("a\nb\u{202E}"), "a\\nb\\u{202E}");
    }

    #[test]
    fn lowercase_and_allowed() {
        let mut rules = Rules::default();
        rules
            .allowed
            .insert("medium".into(), vec!["cpc".into(), "email".into()]);
        let mut v = "CPC".to_string();
        let errs = check_utm_value(&rules, "medium", &mut v);
        assert_eq!(errs.len(), 2, "not lowercase, and not allowed as written");
        rules.lowercase = Lowercase::Normalize;
        let mut v = "CPC".to_string();
        assert!(check_utm_value(&rules, "medium", &mut v).is_empty());
        assert_eq!(v, "cpc");
        let mut v = "emial".to_string();
        let errs = check_utm_value(&rules, "medium", &mut v);
        assert!(errs[0].help.contains("did you mean `email`"));
    }
}
