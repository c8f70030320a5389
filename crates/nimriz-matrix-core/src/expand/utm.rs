//! Build the destination: parse it, keep its query and fragment, append UTM parameters
//! (percent-encoded by the `url` crate), and refuse what Nimriz would refuse.

use crate::spec::model::UtmConflict;
use url::Url;

/// Nimriz's shared short domains: a destination there would be a redirect loop.
pub use nimriz::facts::SHARED_SHORT_HOSTS as NIMRIZ_SHORT_DOMAINS;

#[derive(Debug, PartialEq, Eq)]
pub enum UrlProblem {
    Invalid(String),
    Scheme(String),
    Http,
    NoHost,
    /// `https://user:pass@host/`: credentials behind a public short link.
    Userinfo,
    /// A control or bidi control character (the char, the rule's name).
    Forbidden(char, &'static str),
    Loop(String),
    /// The destination already has this `utm_*` and the spec sets it too.
    Conflict {
        param: String,
        existing: String,
    },
}

impl UrlProblem {
    pub fn describe(&self, destination: &str) -> (String, String) {
        match self {
            UrlProblem::Invalid(e) => (
                format!("destination `{destination}` is not a valid URL ({e})"),
                "write a full URL such as https://www.example.com/page".into(),
            ),
            UrlProblem::Scheme(s) => (
                format!("destination `{destination}` uses `{s}:`, which Nimriz refuses"),
                "destinations must be https:// web pages".into(),
            ),
            UrlProblem::Http => (
                format!("destination `{destination}` is plain http://"),
                "use https://, or set rules.allow_http = true if your domain's policy allows http".into(),
            ),
            UrlProblem::NoHost => (
                format!("destination `{destination}` has no host"),
                "write a full URL such as https://www.example.com/page".into(),
            ),
            UrlProblem::Userinfo => (
                format!("destination `{destination}` carries a user name or password (`…@host`)"),
                "remove the `user:password@` part: the short link is public, so anyone could read them".into(),
            ),
            UrlProblem::Forbidden(c, rule) => {
                let v = super::rules::forbidden_violation(
                    &format!("destination `{}`", super::rules::escaped(destination)),
                    *c,
                    rule,
                );
                (v.message, v.help)
            }
            UrlProblem::Loop(h) => (
                format!("destination `{destination}` points at the short domain `{h}` (a redirect loop)"),
                "point the link at the landing page, not at another short link".into(),
            ),
            UrlProblem::Conflict { param, existing } => (
                format!("destination `{destination}` already has {param}={existing}, which the spec also sets"),
                "remove it from the destination, or set [link] utm_conflict = \"spec\" or \"destination\" to say which wins".into(),
            ),
        }
    }
}

/// The `utm_*` parameters a destination already carries, decoded, in order. Empty when
/// it does not parse (`build_destination` reports that).
pub fn carried_utms(destination: &str) -> Vec<(String, String)> {
    // The common case (no utm_ at all) costs a substring scan, not a URL parse.
    if !destination.contains("utm_") {
        return Vec::new();
    }
    Url::parse(destination.trim())
        .map(|u| {
            u.query_pairs()
                .filter(|(k, _)| k.starts_with("utm_"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `utms` are `(full param name, value)` in output order; empty values are skipped.
/// `short_host` is the link's own short domain, for loop prevention.
pub fn build_destination(
    destination: &str,
    utms: &[(&str, String)],
    conflict: UtmConflict,
    allow_http: bool,
    short_host: Option<&str>,
) -> Result<String, UrlProblem> {
    let parsed = parse_destination(destination, allow_http)?;
    let mut out = String::new();
    parsed.finish_into(utms, conflict, short_host, &mut out)?;
    Ok(out)
}

/// A destination checked and parsed once; `finish_into` adds a link's UTMs to it. Many
/// links share one destination text (it usually depends on one dimension), so the
/// expander parses each text once and finishes it per link.
#[derive(Debug, Clone)]
pub struct ParsedDestination {
    url: Url,
    /// The host as the parser wrote it, lowercased.
    host: String,
}

/// Everything `build_destination` checks that depends on the destination alone.
pub fn parse_destination(
    destination: &str,
    allow_http: bool,
) -> Result<ParsedDestination, UrlProblem> {
    // Before parsing: the parser would silently drop a newline or tab, and strip others.
    if let Some((c, rule)) = super::rules::forbidden_char(destination) {
        return Err(UrlProblem::Forbidden(c, rule));
    }
    let written = destination.trim();
    check_authority(written)?;
    let url = Url::parse(written).map_err(|e| UrlProblem::Invalid(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(UrlProblem::Http),
        other => return Err(UrlProblem::Scheme(other.to_string())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Userinfo);
    }
    // The parser lowercases and IDNA-maps the host; a trailing dot names the same host.
    let host = url
        .host_str()
        .ok_or(UrlProblem::NoHost)?
        .to_ascii_lowercase();
    if NIMRIZ_SHORT_DOMAINS.contains(&host.trim_end_matches('.')) {
        return Err(UrlProblem::Loop(host));
    }
    Ok(ParsedDestination { url, host })
}

/// Query bytes `Url::set_query` leaves as they are (it percent-encodes controls, space,
/// `"`, `#`, `<`, `>`, `'` and non-ASCII): for these, plain concatenation gives the same
/// URL the parser would.
fn query_byte_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%&=+*!$(),;:@/?".contains(&b)
}

/// `application/x-www-form-urlencoded`, as `form_urlencoded::byte_serialize` writes it;
/// text it leaves alone (the usual UTM value) is copied in one go.
fn form_encode_into(text: &str, out: &mut String) {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'))
    {
        out.push_str(text);
    } else {
        out.extend(url::form_urlencoded::byte_serialize(text.as_bytes()));
    }
}

impl ParsedDestination {
    /// Append the finished destination (with `utms`) to `out`, which is cleared first.
    pub fn finish_into(
        &self,
        utms: &[(&str, String)],
        conflict: UtmConflict,
        short_host: Option<&str>,
        out: &mut String,
    ) -> Result<(), UrlProblem> {
        out.clear();
        let url = &self.url;
        if short_host.is_some_and(|s| same_host(s, self.host.trim_end_matches('.'))) {
            return Err(UrlProblem::Loop(self.host.clone()));
        }
        let mut skip_from_spec: Vec<&str> = Vec::new();
        // Keep the existing query byte-for-byte, except params the spec replaces.
        let mut kept: Vec<&str> = Vec::new();
        if let Some(q) = url.query() {
            for piece in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = url::form_urlencoded::parse(piece.as_bytes())
                    .next()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .unwrap_or_default();
                match utms
                    .iter()
                    .find(|(name, val)| *name == k && !val.is_empty())
                {
                    // The destination already says the same thing: keep it, add nothing.
                    Some((name, val)) if *val == v => {
                        skip_from_spec.push(name);
                        kept.push(piece);
                    }
                    Some((name, _)) => match conflict {
                        UtmConflict::Error => {
                            return Err(UrlProblem::Conflict {
                                param: k,
                                existing: v,
                            });
                        }
                        UtmConflict::Spec => {}
                        UtmConflict::Destination => {
                            skip_from_spec.push(name);
                            kept.push(piece);
                        }
                    },
                    None => kept.push(piece),
                }
            }
        }
        // The query: what is kept, then the spec's parameters (form-encoded), written
        // straight into `out` after the URL's head.
        let head = &url[..url::Position::AfterPath];
        out.push_str(head);
        let query_start = out.len() + 1;
        out.push('?');
        for (i, piece) in kept.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(piece);
        }
        let mut first = kept.is_empty();
        for (name, value) in utms {
            if !value.is_empty() && !skip_from_spec.contains(name) {
                if !first {
                    out.push('&');
                }
                first = false;
                form_encode_into(name, out);
                out.push('=');
                form_encode_into(value, out);
            }
        }
        if out.len() == query_start {
            out.pop(); // no query at all
        } else if !out.as_bytes()[query_start..]
            .iter()
            .all(|&b| query_byte_kept(b))
        {
            // Rare: let the URL parser encode what it would encode.
            let query = out[query_start..].to_string();
            let mut url = url.clone();
            url.set_query(Some(&query));
            out.clear();
            out.push_str(url.as_str());
            return Ok(());
        }
        out.push_str(&url[url::Position::AfterQuery..]);
        Ok(())
    }
}

/// For http(s), what the parser would "repair" instead of refuse: `https:///landing` (no
/// host: the parser takes `landing` from the path), `https:/x` or `https:\\x` (not `//`),
/// and an `@` in the authority (userinfo, even empty).
fn check_authority(written: &str) -> Result<(), UrlProblem> {
    let Some((scheme, rest)) = written.split_once(':') else {
        return Ok(());
    };
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return Ok(());
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err(UrlProblem::Invalid(format!(
            "`{scheme}:` must be followed by `//` and the host"
        )));
    };
    let end = after.find(['/', '\\', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    if authority.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    if authority.contains('@') {
        return Err(UrlProblem::Userinfo);
    }
    Ok(())
}

/// `short` (as the spec names it) and `host` (as the URL parser normalised it, without a
/// trailing dot) are the same host: case, trailing dot and IDNA aside.
fn same_host(short: &str, host: &str) -> bool {
    let short = short.trim_end_matches('.');
    if short.eq_ignore_ascii_case(host) {
        return true;
    }
    !short.is_ascii()
        && url::Host::parse(short).is_ok_and(|h| h.to_string().trim_end_matches('.') == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `build_destination` wrote before it finished URLs by hand: `Url::set_query`
    /// with the kept query and a `form_urlencoded::Serializer`'s pairs.
    fn via_set_query(destination: &str, utms: &[(&str, String)]) -> String {
        let mut url = Url::parse(destination).unwrap();
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in utms {
            ser.append_pair(k, v);
        }
        let added = ser.finish();
        let mut query = url.query().unwrap_or_default().to_string();
        if !added.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&added);
        }
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        url.into()
    }

    #[test]
    fn finished_by_hand_as_the_url_parser_would() {
        let values = [
            "google",
            "paid social",
            "a&b=c",
            "café",
            "x*y-z.w_v",
            "100%",
            "'quoted'",
            "",
        ];
        let dests = [
            "https://x.example/p",
            "https://x.example/p?",
            "https://X.Example:8443/a b/?q=%22x%22&flag#frag",
            "https://x.example/?q='1'&r=\"2\"#f",
            "https://x.example/?q=caf\u{e9}",
        ];
        for d in dests {
            for v in values {
                let utms = [
                    ("utm_source", v.to_string()),
                    ("utm_medium", "cpc".to_string()),
                ];
                let kept: Vec<_> = utms
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .cloned()
                    .collect();
                assert_eq!(
                    build_destination(d, &utms, UtmConflict::Error, false, None).unwrap(),
                    via_set_query(d, &kept),
                    "{d} with {v:?}"
                );
            }
        }
    }

    fn utm(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn keeps_query_and_fragment() {
        let d = build_destination(
            "https://acme.example/spring?lang=en#offer",
            &utm(&[("utm_source", "google"), ("utm_content", "a b&c")]),
            UtmConflict::Error,
            false,
            None,
        )
        .unwrap();
        assert_eq!(
            d,
            "https://acme.example/spring?lang=en&utm_source=google&utm_content=a+b%26c#offer"
        );
    }

    #[test]
    fn conflict_policies() {
        let u = utm(&[("utm_source", "google")]);
        let dest = "https://a.example/?utm_source=bing&x=1";
        assert!(matches!(
            build_destination(dest, &u, UtmConflict::Error, false, None),
            Err(UrlProblem::Conflict { .. })
        ));
        assert_eq!(
            build_destination(dest, &u, UtmConflict::Spec, false, None).unwrap(),
            "https://a.example/?x=1&utm_source=google"
        );
        assert_eq!(
            build_destination(dest, &u, UtmConflict::Destination, false, None).unwrap(),
            "https://a.example/?utm_source=bing&x=1"
        );
    }

    #[test]
    fn identical_values_are_no_conflict() {
        let u = utm(&[("utm_source", "google"), ("utm_medium", "cpc")]);
        assert_eq!(
            build_destination(
                "https://a.example/?utm_source=google",
                &u,
                UtmConflict::Error,
                false,
                None
            )
            .unwrap(),
            "https://a.example/?utm_source=google&utm_medium=cpc"
        );
    }

    #[test]
    fn refuses_bad_schemes_and_loops() {
        assert_eq!(
            build_destination("javascript:alert(1)", &[], UtmConflict::Error, false, None),
            Err(UrlProblem::Scheme("javascript".into()))
        );
        assert_eq!(
            build_destination("ftp://x.example/f", &[], UtmConflict::Error, false, None),
            Err(UrlProblem::Scheme("ftp".into()))
        );
        assert_eq!(
            build_destination("http://x.example/", &[], UtmConflict::Error, false, None),
            Err(UrlProblem::Http)
        );
        assert!(
            build_destination("http://x.example/", &[], UtmConflict::Error, true, None).is_ok()
        );
        assert!(matches!(
            build_destination("https://nim.lu/abc", &[], UtmConflict::Error, false, None),
            Err(UrlProblem::Loop(_))
        ));
        assert!(matches!(
            build_destination(
                "https://go.acme.example/x",
                &[],
                UtmConflict::Error,
                false,
                Some("go.acme.example")
            ),
            Err(UrlProblem::Loop(_))
        ));
        assert!(matches!(
            build_destination("not a url", &[], UtmConflict::Error, false, None),
            Err(UrlProblem::Invalid(_))
        ));
    }

    fn check(d: &str, short: Option<&str>) -> Result<String, UrlProblem> {
        build_destination(d, &[], UtmConflict::Error, false, short)
    }

    #[test]
    fn nothing_the_parser_would_silently_rewrite_is_accepted() {
        assert_eq!(
            check("https://acme.example/p\nX-Injected: 1", None),
            Err(UrlProblem::Forbidden('\n', "control character"))
        );
        assert_eq!(
            check("https://acme.example/p\tq", None),
            Err(UrlProblem::Forbidden('\t', "control character"))
        );
        assert_eq!(
            check("https://acme.example/\0", None),
            Err(UrlProblem::Forbidden('\0', "control character"))
        );
        assert_eq!(
            check("https://acme.example/\u{202E}fdp.exe", None),
            Err(UrlProblem::Forbidden('\u{202E}', "bidi control character"))
        );
        assert_eq!(check("https:///landing", None), Err(UrlProblem::NoHost));
        assert_eq!(check("https://?x=1", None), Err(UrlProblem::NoHost));
        assert!(matches!(
            check("https:/landing", None),
            Err(UrlProblem::Invalid(_))
        ));
        assert!(matches!(
            check("https:\\\\landing", None),
            Err(UrlProblem::Invalid(_))
        ));
        for d in [
            "https://user:pass@acme.example/",
            "https://user@acme.example/",
            "https://@acme.example/",
            "HTTPS://u:p@acme.example",
        ] {
            assert_eq!(check(d, None), Err(UrlProblem::Userinfo), "{d}");
        }
        // An @ in the path or query is not userinfo.
        check("https://acme.example/team@acme?to=a@b.example", None).unwrap();
        let (msg, _) =
            UrlProblem::Forbidden('\n', "control character").describe("https://a.example/p\nq");
        assert!(
            msg.contains("`https://a.example/p\\nq` contains a control character (U+000A)"),
            "{msg}"
        );
    }

    #[test]
    fn the_loop_check_normalises_the_host() {
        for (d, short) in [
            (
                "https://LINKS.Example.Test./other",
                Some("links.example.test"),
            ),
            ("https://links.example.test../x", Some("links.example.test")),
            ("https://go.acme.example/x", Some("GO.ACME.EXAMPLE.")),
            ("https://XN--GRN-IOA.example/x", Some("grün.example")),
            ("https://GRÜN.example/x", Some("grün.example")),
            ("https://NIM.LU./abc", None),
        ] {
            assert!(
                matches!(check(d, short), Err(UrlProblem::Loop(_))),
                "{d} vs {short:?}: {:?}",
                check(d, short)
            );
        }
        check("https://acme.example/x", Some("go.acme.example")).unwrap();
    }
}
