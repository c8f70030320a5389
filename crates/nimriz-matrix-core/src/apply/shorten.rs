//! `shorten`: mint one link now (per-recipient links at send time), with the same client,
//! retry and conflict logic as `build`. [`mint_link`] is the library entry point.

use super::send::{self, RowResult};
use crate::manifest::{LinkStatus, RecordedError};
use crate::report::SharedReporter;
use crate::{Error, Result, exit};
use nimriz::{ApiConfig, Client, Domain, NewLink, contract};
use serde::Serialize;
use std::io::Write;

/// One link to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// Final destination (UTMs already applied, see [`with_utm`]).
    pub destination: String,
    pub domain_id: String,
    /// `None`: Nimriz picks the slug.
    pub slug: Option<String>,
    /// 301 or 302 (`None`: the server's default, 302).
    pub redirect: Option<u16>,
    pub expires_at: Option<String>,
}

/// What `shorten` prints on stdout (one JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MintedLink {
    pub url_id: Option<String>,
    pub short_url: Option<String>,
    pub short_code: Option<String>,
    /// The destination asked for.
    pub destination: String,
    /// `created`, `exists` (the slug already pointed here) or `drift` (the slug points
    /// elsewhere; left unchanged).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_destination: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Minted {
    /// Created, or already there with this destination (`status` says which).
    Ok(MintedLink),
    /// The slug exists with another destination; nothing was changed.
    Drift(MintedLink),
    /// Nimriz refused this link (validation, reserved slug, slug held elsewhere ...).
    Rejected(RecordedError),
}

/// Mint one link. `Err` only for failures of the API as a whole (auth, unreachable).
/// A lost response is resent with the same idempotency key and slug, so it never yields a
/// second link; without a slug the key is random per call (a retry of *this* call is still
/// covered; two calls are two links).
pub async fn mint_link(client: &Client, req: &MintRequest) -> Result<Minted> {
    mint_link_on(client, req, None).await
}

/// [`mint_link`] with the domain's entry from the domain list when known: answers are then
/// also checked against its host and other ids.
async fn mint_link_on(
    client: &Client,
    req: &MintRequest,
    domain: Option<&Domain>,
) -> Result<Minted> {
    let key = match &req.slug {
        Some(slug) => contract::idempotency_key(&req.domain_id, slug, &req.destination),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let link = NewLink {
        domain_id: req.domain_id.clone(),
        long_url: req.destination.clone(),
        custom_slug: req.slug.clone(),
        expires_at: req.expires_at.clone(),
        redirect_status_code: req.redirect,
        tags: Vec::new(),
        space: None,
    };
    let mut row = send::Outgoing::new(String::new(), key, link);
    if let Some(d) = domain.filter(|d| d.id == req.domain_id) {
        row.domain_ids.extend(d.alt_ids.iter().cloned());
        row.host = Some(d.domain_name.clone());
    }
    // Same bound as a build row: a few resends for unreadable answers, then give up.
    let mut last_why = String::new();
    for _ in 0..4 {
        let (result, _) = send::create_one(client, &row).await;
        match result {
            RowResult::Settled {
                status,
                url_id,
                short_url,
                short_code,
                existing_destination,
            } => {
                let minted = MintedLink {
                    url_id,
                    short_url,
                    short_code: short_code.or_else(|| req.slug.clone()),
                    destination: req.destination.clone(),
                    status: status.as_str().to_string(),
                    existing_destination,
                };
                return Ok(if status == LinkStatus::Drift {
                    Minted::Drift(minted)
                } else {
                    Minted::Ok(minted)
                });
            }
            RowResult::Failed(e) => return Ok(Minted::Rejected(e)),
            RowResult::Unsettled(e) => return Err(e.into()),
            RowResult::Resend(why) => last_why = why,
        }
    }
    Err(Error::Api(format!(
        "Nimriz gave no usable answer to the create request after 4 tries (last: {last_why}); \
         run the same command again (same slug, so no duplicate)"
    )))
}

/// Append UTM parameters to a destination with the `url` crate, with the checks `build`
/// makes: https only, no redirect loop via Nimriz's shared short domains. The existing
/// query is kept byte for byte, and so is the fragment. A `utm_*` the destination already
/// has with another value is an error (nothing says which should win); with the same value
/// it is kept as is.
pub fn with_utm(destination: &str, utm: &[(&str, &str)]) -> Result<String> {
    checked_destination(destination, utm, false, None)
}

/// [`with_utm`], plus plain http when `allow_http`, and loop prevention for the link's own
/// short domain `short_host`.
fn checked_destination(
    destination: &str,
    utm: &[(&str, &str)],
    allow_http: bool,
    short_host: Option<&str>,
) -> Result<String> {
    use crate::expand::utm::{UrlProblem, build_destination};
    use crate::spec::model::UtmConflict;
    let already_there = crate::expand::utm::carried_utms(destination);
    let pairs: Vec<(&str, String)> = utm
        .iter()
        // Same value already in the destination: nothing to add, and no conflict.
        .filter(|(k, v)| {
            let mut values = already_there.iter().filter(|(ek, _)| ek == k).peekable();
            !(values.peek().is_some() && values.all(|(_, ev)| ev == v))
        })
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    build_destination(
        destination,
        &pairs,
        UtmConflict::Error,
        allow_http,
        short_host,
    )
    .map_err(|p| {
        // `describe` speaks of spec settings; say what to do on this command line.
        let (msg, help) = match &p {
            UrlProblem::Http => (
                p.describe(destination).0,
                "use https://, or pass --allow-http if your domain's policy allows http".into(),
            ),
            UrlProblem::Conflict { param, existing } => {
                let flag = format!("--{}", param.replace('_', "-"));
                (
                    format!(
                        "destination `{destination}` already has {param}={existing}, and \
                         {flag} sets another value"
                    ),
                    format!("remove {param} from the destination, or leave out {flag}"),
                )
            }
            _ => p.describe(destination),
        };
        Error::Usage(format!("{msg}; {help}"))
    })
}

/// The UTM governance rules of a spec without a `[rules]` table (lowercase, no spaces,
/// length): a one-off link should not split a campaign's reports either.
fn check_utm_values(utm: &[(&str, &str)]) -> Result<()> {
    use crate::expand::rules::check_utm_value;
    let rules = crate::spec::model::Rules::default();
    let mut problems = Vec::new();
    for (param, value) in utm {
        let flag = format!("--{}", param.replace('_', "-"));
        if value.trim().is_empty() {
            problems.push(format!("{flag} is empty; give it a value or leave it out"));
            continue;
        }
        let field = param.trim_start_matches("utm_");
        let mut checked = value.to_string();
        let violations = check_utm_value(&rules, field, &mut checked);
        // Each rule's fix alone can break another rule (`E Mail` → `e mail`): give one
        // value that passes the case and space rules together.
        let both = value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-")
            .to_lowercase();
        let combined = (violations.len() > 1 && both != *value)
            .then(|| format!("{param} `{value}`: use {flag} {both} to meet both rules"));
        for v in violations {
            // The rule texts also offer spec settings (`rules.*`), which shorten has not.
            let help = ["; or set rules.", ", or set rules.", ", or raise rules."]
                .iter()
                .find_map(|cut| v.help.split_once(cut).map(|(keep, _)| keep))
                .unwrap_or(&v.help);
            problems.push(format!("{}; {help} ({flag})", v.message));
        }
        problems.extend(combined);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Usage(problems.join("\nerror: ")))
    }
}

/// `--domain-id` must be a UUID: anything else would only be refused by Nimriz.
fn check_domain_id(id: &str) -> Result<()> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        Error::Usage(format!(
            "--domain-id {id:?} is not a UUID; copy the domain's id from Nimriz (GET \
                 /api/v1/domains), or use --domain HOST"
        ))
    })
}

/// `--expires-at`: RFC 3339 with a time zone, in the future; sent as UTC like spec expiries.
fn check_expiry(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    let at = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
        Error::Usage(format!(
            "--expires-at {text:?} is not an RFC 3339 date-time; write it with a time zone, \
             e.g. 2026-06-30T23:59:59Z"
        ))
    })?;
    let at = at.to_utc();
    if at <= now {
        return Err(Error::Usage(format!(
            "--expires-at {text:?} is in the past; the link would be dead at once. Give a \
             later time, or leave --expires-at out for a link that does not expire"
        )));
    }
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `shorten`'s settings (the flags, as given: checked by [`shorten_command`]).
#[derive(Debug, Clone, Default)]
pub struct ShortenSettings {
    pub url: String,
    pub allow_http: bool,
    pub domain: Option<String>,
    pub domain_id: Option<String>,
    pub slug: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub utm_id: Option<String>,
    pub redirect: u16,
    pub expires_at: Option<String>,
    /// `--api-base`; the key comes from `--api-key-file` or the environment.
    pub api_base: Option<String>,
    pub api_key_file: Option<std::path::PathBuf>,
}

/// Every check that needs no network, in one place, so a mistake costs no API call.
/// Returns the final destination, slug and expiry.
fn check_offline(args: &ShortenSettings) -> Result<(String, Option<String>, Option<String>)> {
    if args.redirect != 301 && args.redirect != 302 {
        return Err(Error::Usage(format!(
            "--redirect must be 301 or 302, got {}",
            args.redirect
        )));
    }
    if let Some(id) = &args.domain_id {
        check_domain_id(id)?;
    }
    let expires_at = args
        .expires_at
        .as_deref()
        .map(|t| check_expiry(t, chrono::Utc::now()))
        .transpose()?;
    let utm = utm_pairs(args);
    check_utm_values(&utm)?;
    let short_host = args
        .domain
        .as_deref()
        .map(|h| h.trim().trim_end_matches('.'));
    let destination = checked_destination(&args.url, &utm, args.allow_http, short_host)?;
    let slug = args.slug.as_deref().map(check_slug).transpose()?;
    Ok((destination, slug, expires_at))
}

fn utm_pairs(args: &ShortenSettings) -> Vec<(&'static str, &str)> {
    [
        ("utm_source", &args.utm_source),
        ("utm_medium", &args.utm_medium),
        ("utm_campaign", &args.utm_campaign),
        ("utm_term", &args.utm_term),
        ("utm_content", &args.utm_content),
        ("utm_id", &args.utm_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

/// Slugs for `shorten`: letters, digits, `-` and `_`, at most 100 characters. Nimriz does
/// not publish its character set; this is the safe subset (no spaces or slashes [doc]).
pub fn check_slug(slug: &str) -> Result<String> {
    use crate::expand::slug::slugify;
    use nimriz::facts::RESERVED_SLUGS;
    // Same rules as spec slugs, but never rewritten silently: a per-recipient slug the
    // caller computed must be the slug that is created.
    let s = slug.trim();
    let clean = slugify(s, 100);
    if clean.is_empty() {
        return Err(Error::Usage(format!(
            "--slug {s:?} has no letters or digits"
        )));
    }
    if clean != s {
        return Err(Error::Usage(format!(
            "--slug {s:?} is not a valid slug; use lowercase letters, digits and dashes, e.g. {clean:?}"
        )));
    }
    if RESERVED_SLUGS.contains(&s) || s.len() < 4 {
        return Err(Error::Usage(format!(
            "--slug {s:?} is reserved or shorter than 4 characters; Nimriz would refuse it"
        )));
    }
    Ok(clean)
}

/// Pick the domain: `--domain-id`, `--domain HOST` (resolved), or the workspace's only one
/// (checked for a redirect loop here, as `--domain` is offline).
async fn pick_domain(client: &Client, args: &ShortenSettings) -> Result<(String, Option<Domain>)> {
    if let Some(id) = &args.domain_id {
        return Ok((id.clone(), None));
    }
    let domains = client.list_domains().await?;
    let names = |ds: &[Domain]| {
        let mut v: Vec<&str> = ds.iter().map(|d| d.domain_name.as_str()).collect();
        v.sort_unstable();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    match &args.domain {
        Some(host) => domains
            .iter()
            .find(|d| {
                d.domain_name
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(host.trim().trim_end_matches('.'))
            })
            .map(|d| (d.id.clone(), Some(d.clone())))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "this workspace has no short domain {host:?}; it has: {}",
                    names(&domains)
                ))
            }),
        None if domains.len() == 1 => {
            // Picked for the user, so only known now: still refuse a loop to it.
            let host = domains[0].domain_name.trim_end_matches('.');
            checked_destination(&args.url, &[], true, Some(host))?;
            Ok((domains[0].id.clone(), Some(domains[0].clone())))
        }
        None => Err(Error::Usage(format!(
            "say which short domain to use with --domain HOST (or --domain-id ID); this \
             workspace has: {}",
            names(&domains)
        ))),
    }
}

/// `nimriz-matrix shorten URL ...`: JSON on stdout. Exit codes:
/// - 0: created, or the slug already pointed at this destination (`exists`);
/// - 1: the slug points elsewhere (`drift`, left unchanged), or Nimriz refused the link
///   (reserved or invalid slug, destination refused, ...): its words and the fix go to
///   stderr, stdout stays empty;
/// - 2: bad arguments, found before any network call (destination scheme or loop, UTM
///   rules and conflicts, `--domain-id`, `--expires-at`, slug, API key settings);
/// - 3: the API as a whole failed (auth, unreachable after retries).
pub async fn shorten_command(args: &ShortenSettings, printer: &SharedReporter) -> Result<u8> {
    let (destination, slug, expires_at) = check_offline(args)?;
    let api = ApiConfig::resolve(args.api_base.as_deref(), args.api_key_file.as_deref())?;
    let client = Client::new(api)?.with_reporter(printer.clone());
    let (domain_id, domain) = pick_domain(&client, args).await?;
    let req = MintRequest {
        destination,
        domain_id,
        slug,
        redirect: Some(args.redirect),
        expires_at,
    };
    let (link, code) = match mint_link_on(&client, &req, domain.as_ref()).await? {
        Minted::Ok(link) => (link, exit::OK),
        Minted::Drift(link) => {
            printer.warn(&format!(
                "slug {:?} already exists with another destination ({}); it was left \
                 unchanged. Pick another slug, or update that link on Nimriz",
                link.short_code.as_deref().unwrap_or_default(),
                link.existing_destination.as_deref().unwrap_or("?")
            ));
            (link, exit::PARTIAL)
        }
        Minted::Rejected(e) => {
            let mut msg = format!("error: {}; then run shorten again", e.message);
            if let Some(r) = &e.support_reference {
                msg.push_str(&format!(" (support reference: {r})"));
            }
            let _ = writeln!(std::io::stderr(), "{msg}");
            return Ok(exit::PARTIAL);
        }
    };
    let json = serde_json::to_string(&link)
        .map_err(|e| Error::Api(format!("could not encode the result: {e}")))?;
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head -c0`) is not worth a panic or an error code.
    let _ = writeln!(out, "{json}");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_appended_keeping_query_and_fragment() {
        assert_eq!(
            checked_destination(
                "https://shop.example/p?ref=a%20b&x=1#top",
                &[("utm_source", "news-letter"), ("utm_medium", "email")],
                false,
                None
            )
            .unwrap(),
            "https://shop.example/p?ref=a%20b&x=1&utm_source=news-letter&utm_medium=email#top"
        );
        assert_eq!(
            checked_destination("https://shop.example", &[("utm_source", "x")], false, None)
                .unwrap(),
            "https://shop.example/?utm_source=x"
        );
        assert!(checked_destination("javascript:alert(1)", &[], false, None).is_err());
        // The library entry point: https only, same rules otherwise.
        assert!(with_utm("http://shop.example/", &[]).is_err());
        assert_eq!(
            with_utm("https://shop.example/", &[("utm_source", "x")]).unwrap(),
            "https://shop.example/?utm_source=x"
        );
        assert!(checked_destination("not a url", &[], false, None).is_err());
    }

    #[test]
    fn utm_already_in_the_destination_same_value_is_kept_other_value_is_refused() {
        let dest = "https://shop.example/?utm_source=old&k=v";
        assert_eq!(
            checked_destination(
                dest,
                &[("utm_source", "old"), ("utm_medium", "email")],
                false,
                None
            )
            .unwrap(),
            "https://shop.example/?utm_source=old&k=v&utm_medium=email"
        );
        let e = checked_destination(dest, &[("utm_source", "new")], false, None).unwrap_err();
        assert_eq!(e.exit_code(), exit::INVALID);
        let msg = e.to_string();
        assert!(
            msg.contains("utm_source=old") && msg.contains("leave out --utm-source"),
            "{msg}"
        );
    }

    #[test]
    fn http_and_loops_are_refused_with_the_flag_to_use() {
        let e = checked_destination("http://shop.example/", &[], false, None).unwrap_err();
        assert!(e.to_string().contains("--allow-http"), "{e}");
        assert_eq!(
            checked_destination("http://shop.example/", &[], true, None).unwrap(),
            "http://shop.example/"
        );
        for dest in ["https://riz.to/abc", "https://NIM.LU/x", "https://rix.to/"] {
            let e = checked_destination(dest, &[], false, None).unwrap_err();
            assert!(e.to_string().contains("redirect loop"), "{e}");
        }
        let e = checked_destination(
            "https://go.acme.example/x",
            &[],
            false,
            Some("go.acme.example"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redirect loop"), "{e}");
        assert!(
            checked_destination("https://shop.example/", &[], false, Some("go.acme.example"))
                .is_ok()
        );
    }

    #[test]
    fn utm_values_follow_the_default_rules() {
        assert!(check_utm_values(&[("utm_source", "news"), ("utm_medium", "e-mail")]).is_ok());
        let e = check_utm_values(&[("utm_source", "News"), ("utm_campaign", "spring sale")])
            .unwrap_err();
        assert_eq!(e.exit_code(), exit::INVALID);
        let msg = e.to_string();
        for part in [
            "utm_source `News` is not lowercase",
            "use `news`",
            "utm_campaign `spring sale` contains a space",
            "spring-sale",
            "--utm-campaign",
        ] {
            assert!(msg.contains(part), "missing {part}: {msg}");
        }
        assert!(!msg.contains("rules."), "spec-only advice: {msg}");
        assert!(check_utm_values(&[("utm_term", " ")]).is_err());
        let both = check_utm_values(&[("utm_medium", "E Mail")]).unwrap_err();
        assert!(
            both.to_string()
                .contains("use --utm-medium e-mail to meet both rules"),
            "{both}"
        );
    }

    #[test]
    fn domain_id_and_expiry_checks() {
        assert!(check_domain_id("7d0c6a4e-3f5b-4c1e-9a57-2b1d1e0f9a01").is_ok());
        for bad in ["dom-1", "", "7d0c6a4e-3f5b-4c1e-9a57"] {
            let e = check_domain_id(bad).unwrap_err();
            assert!(e.to_string().contains("not a UUID"), "{e}");
        }
        let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            check_expiry("2026-06-30T23:59:59+02:00", now).unwrap(),
            "2026-06-30T21:59:59Z"
        );
        let past = check_expiry("2026-05-31T23:59:59Z", now).unwrap_err();
        assert!(past.to_string().contains("in the past"), "{past}");
        for bad in ["2026-06-30", "tomorrow", "2026-06-30T23:59:59"] {
            let e = check_expiry(bad, now).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    #[test]
    fn slug_check() {
        assert_eq!(check_slug(" vip-123-a ").unwrap(), "vip-123-a");
        assert!(check_slug("vip_123").is_err(), "would be rewritten");
        assert!(check_slug("admin").is_err());
        assert!(check_slug("a/b").is_err());
        assert!(check_slug("a b").is_err());
        assert!(check_slug("").is_err());
    }
}
