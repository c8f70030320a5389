//! File names for codes, from cell keys — which are user text and may hold anything.
//!
//! A pattern like `{brand}/{channel}-{variant}` is filled from the link's cell, `{slug}` and
//! `{domain}`; `/` in the *pattern* makes folders, while every filled-in value is sanitised
//! into one safe path component: no separators, no `..`, no leading dot, no control
//! characters, no Windows reserved names (`CON`, `NUL`, `COM1` …), at most 100 bytes.

use nimriz_matrix_core::manifest::LinkRecord;
use std::path::PathBuf;

/// How code files are named; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    /// The default: the first dimension is a folder, the others joined by `-`
    /// (`acme/paid-search-v1`); a one-dimension cell is just its value.
    pub fn default_for(dimensions: &[String]) -> NamePattern {
        let parts: Vec<String> = dimensions.iter().map(|d| format!("{{{d}}}")).collect();
        NamePattern(match parts.as_slice() {
            [] => "{slug}".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first}/{}", rest.join("-")),
        })
    }

    /// A user's `--qr-name`; its placeholders are checked against the dimensions.
    pub fn parse(text: &str, dimensions: &[String]) -> Result<NamePattern, String> {
        if text.trim().is_empty() {
            return Err("--qr-name is empty; e.g. --qr-name '{brand}/{slug}'".into());
        }
        if text.starts_with('/') || text.split('/').any(|p| p == ".." || p == ".") {
            return Err(format!(
                "--qr-name {text:?} must be a relative pattern without `.` or `..` parts"
            ));
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("--qr-name {text:?} has an unclosed `{{`"));
            };
            let name = &rest[open + 1..open + close];
            if name != "slug" && name != "domain" && !dimensions.iter().any(|d| d == name) {
                return Err(format!(
                    "--qr-name {text:?} uses {{{name}}}, which is not a dimension of this \
                     manifest; use one of: {}, {{slug}}, {{domain}}",
                    dimensions
                        .iter()
                        .map(|d| format!("{{{d}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(NamePattern(text.to_string()))
    }

    /// The relative path (without extension) for one link.
    pub fn path_for(&self, link: &LinkRecord) -> PathBuf {
        let mut path = PathBuf::new();
        for part in self.0.split('/').filter(|p| !p.is_empty()) {
            let mut filled = String::new();
            let mut rest = part;
            while let Some(open) = rest.find('{') {
                filled.push_str(&rest[..open]);
                let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
                let name = &rest[open + 1..close.min(rest.len())];
                let value = match name {
                    "slug" => link.slug.as_str(),
                    "domain" => link.domain.host.as_deref().unwrap_or("domain"),
                    dim => link.cell.get(dim).unwrap_or(""),
                };
                filled.push_str(value);
                rest = rest.get(close + 1..).unwrap_or("");
            }
            filled.push_str(rest);
            path.push(sanitize_component(&filled));
        }
        if path.as_os_str().is_empty() {
            path.push(sanitize_component(&link.slug));
        }
        path
    }
}

const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// One safe file-name component from user text (see the module docs).
pub fn sanitize_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep = c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '@');
        let c = if keep && !is_format_char(c) { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '.' || c == ' ');
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > 100 {
            break;
        }
        name.push(c);
    }
    if name.is_empty() {
        return "_".to_string();
    }
    let stem = name.split('.').next().unwrap_or("");
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        name.insert(0, '_');
    }
    name
}

/// Bidi controls and other invisible format characters: kept out of file names so a name
/// cannot display differently from what it is.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_cell_text_stays_one_safe_component() {
        assert_eq!(sanitize_component("../../etc/passwd"), "etc-passwd");
        assert_eq!(sanitize_component(".hidden"), "hidden");
        assert_eq!(sanitize_component("CON"), "_CON");
        assert_eq!(sanitize_component("nul.txt"), "_nul.txt");
        assert_eq!(sanitize_component("a\\b:c*d?"), "a-b-c-d");
        assert_eq!(sanitize_component("evil\u{202E}gnp.exe"), "evil-gnp.exe");
        assert_eq!(sanitize_component(""), "_");
        assert_eq!(sanitize_component("..."), "_");
        assert_eq!(sanitize_component("Café Ünïcode"), "Café-Ünïcode");
        assert!(sanitize_component(&"x".repeat(500)).len() <= 100);
        assert!(sanitize_component(&"é".repeat(500)).len() <= 100);
    }

    #[test]
    fn patterns_are_checked_against_the_dimensions() {
        let dims = vec!["brand".to_string(), "channel".to_string()];
        assert_eq!(
            NamePattern::default_for(&dims),
            NamePattern("{brand}/{channel}".into())
        );
        assert!(NamePattern::parse("{brand}/{slug}", &dims).is_ok());
        assert!(
            NamePattern::parse("{variant}", &dims)
                .unwrap_err()
                .contains("not a dimension")
        );
        assert!(NamePattern::parse("../{brand}", &dims).is_err());
        assert!(NamePattern::parse("/abs/{brand}", &dims).is_err());
        assert!(NamePattern::parse("{brand", &dims).is_err());
    }
}
