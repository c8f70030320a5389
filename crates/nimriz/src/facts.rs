//! Facts about Nimriz that do not depend on how a request is shaped: reserved slugs, the
//! built-in shared short hosts, the headers of the event side. Sources are in
//! `docs/nimriz-api.md` (marks: [doc] documented, [n8n] seen in Nimriz's n8n node,
//! [assumed] our decision).

/// Slugs Nimriz reserves on every domain [doc: link-creation-and-slugs]. Compared
/// case-insensitively by the sandbox; a spec slug is lowercase already.
pub const RESERVED_SLUGS: [&str; 6] =
    ["admin", "api", "login", "billing", "_health", ".well-known"];

/// Nimriz's built-in shared short domains [doc]. One slug namespace across all accounts, and
/// a destination on one of them would be a redirect loop.
pub const SHARED_SHORT_HOSTS: [&str; 3] = ["nim.lu", "riz.to", "rix.to"];

/// Default header carrying the shared secret of click-event deliveries (a generic HTTP
/// destination's custom header; the name is the user's choice in Nimriz) [assumed].
pub const DEFAULT_CLICK_HEADER: &str = "X-Nim-Click-Secret";

/// Lifecycle webhook headers [doc].
pub const HEADER_EVENT_ID: &str = "X-Nim-Event-Id";
pub const HEADER_EVENT_TYPE: &str = "X-Nim-Event-Type";
pub const HEADER_TIMESTAMP: &str = "X-Nim-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Nim-Signature";

/// Host as Nimriz compares it: lowercase, without a trailing dot (`LINKS.Example.` →
/// `links.example`). Host matching is otherwise strict (`www.` is another domain) [doc].
pub fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Is this host one of Nimriz's shared short domains?
pub fn is_shared_short_host(host: &str) -> bool {
    let h = normalize_host(host);
    SHARED_SHORT_HOSTS.contains(&h.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_case_or_trailing_dot() {
        assert_eq!(
            normalize_host(" LINKS.Example.Test. "),
            "links.example.test"
        );
        assert!(is_shared_short_host("NIM.LU."));
        assert!(!is_shared_short_host("www.nim.lu"));
    }
}
