//! Slugs: transliterated, lowercase, `[a-z0-9-]`, no doubled or edge dashes, capped.

use deunicode::deunicode;

/// Nimriz's reserved slugs (`_health` and `.well-known` can't come out of `slugify`, but a
/// slug given verbatim, a CSV `slug` column, is checked too).
pub use nimriz::facts::RESERVED_SLUGS;

/// `Café Münch — Spring!` → `cafe-munch-spring`. Cut to `max_len` at a character boundary,
/// then trailing dashes are trimmed again.
pub fn slugify(input: &str, max_len: usize) -> String {
    let mut out = String::new();
    slugify_into(input, max_len, &mut out);
    out
}

/// `slugify`, appended to `out` (which keeps its allocation from one slug to the next).
pub fn slugify_into(input: &str, max_len: usize, out: &mut String) {
    let start = out.len();
    let ascii;
    let text = if input.is_ascii() {
        input
    } else {
        ascii = deunicode(input);
        &ascii
    };
    out.reserve(text.len().min(max_len + 1));
    let mut pending_dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && out.len() > start {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            // Apostrophes join words ("O'Brien" → "obrien"), everything else separates.
            if c != '\'' {
                pending_dash = true;
            }
        }
        if out.len() - start >= max_len {
            break;
        }
    }
    out.truncate(start + max_len);
    while out.len() > start && out.ends_with('-') {
        out.pop();
    }
}

/// A short suffix that depends only on the cell, so it is the same on every run.
pub fn stable_suffix(cell_label: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(cell_label.as_bytes())[..3])
}

/// `base` + `-` + suffix, keeping the total within `max_len`.
pub fn with_suffix(base: &str, suffix: &str, max_len: usize) -> String {
    let keep = max_len.saturating_sub(suffix.len() + 1);
    let mut b = base[..base.len().min(keep)].to_string();
    while b.ends_with('-') {
        b.pop();
    }
    if b.is_empty() {
        suffix.to_string()
    } else {
        format!("{b}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transliterates_and_lowercases() {
        assert_eq!(slugify("Café Münch", 50), "cafe-munch");
        assert_eq!(
            slugify("  --Acme__Paid  Search--v3 ", 50),
            "acme-paid-search-v3"
        );
        assert_eq!(slugify("O'Brien & Sons", 50), "obrien-sons");
        assert_eq!(slugify("Straße", 50), "strasse");
    }

    #[test]
    fn caps_length_without_trailing_dash() {
        assert_eq!(slugify("abc def", 4), "abc");
        assert_eq!(slugify("abcdef", 3), "abc");
    }

    #[test]
    fn suffix_fits_cap() {
        assert_eq!(with_suffix("acme-email-v1", "a1b2c3", 12), "acme-a1b2c3");
        assert!(with_suffix("x".repeat(60).as_str(), "a1b2c3", 48).len() <= 48);
    }
}
