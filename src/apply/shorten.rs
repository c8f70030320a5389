//! `shorten`: mint one link now (per-recipient links at send time), with the same client,
//! retry and conflict logic as `build`. [`mint_link`] is the library entry point.

use super::send::{self, RowResult};
use crate::cli::ShortenArgs;
use crate::client::{ApiConfig, Client, Domain, NewLink, contract};
use crate::manifest::{LinkStatus, RecordedError};
use crate::output::Printer;
use crate::{Error, Result, exit};
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
    // Same bound as a build row: a few resends for unreadable answers, then give up.
    for _ in 0..4 {
        let (result, _) = send::create_one(client, &link, &key).await;
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
            RowResult::Resend(_) => continue,
        }
    }
    Err(Error::Api(
        "Nimriz gave no usable answer to the create request after 4 tries; run the same \
         command again (same slug, so no duplicate)"
            .into(),
    ))
}

/// Append UTM parameters to a destination with the `url` crate. The existing query is
/// kept byte for byte (minus any UTM key being set, which is replaced), and so is the
/// fragment. Only `http`/`https` destinations are accepted.
pub fn with_utm(destination: &str, utm: &[(&str, &str)]) -> Result<String> {
    use crate::expand::utm::build_destination;
    use crate::spec::model::UtmConflict;
    let pairs: Vec<(&str, String)> = utm.iter().map(|(k, v)| (*k, v.to_string())).collect();
    // Same builder as spec destinations; here the flags win over the URL's own utm_*, and
    // http is left for the server to judge (some domains allow it).
    build_destination(destination, &pairs, UtmConflict::Spec, true, None).map_err(|p| {
        let (msg, help) = p.describe(destination);
        Error::Usage(format!("{msg}; {help}"))
    })
}

fn utm_pairs(args: &ShortenArgs) -> Vec<(&'static str, &str)> {
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
    use crate::expand::slug::{RESERVED_SLUGS, slugify};
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

/// Pick the domain: `--domain-id`, `--domain HOST` (resolved), or the workspace's only one.
async fn pick_domain(client: &Client, args: &ShortenArgs) -> Result<String> {
    if let Some(id) = &args.domain_id {
        return Ok(id.clone());
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
            .map(|d| d.id.clone())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "this workspace has no short domain {host:?}; it has: {}",
                    names(&domains)
                ))
            }),
        None if domains.len() == 1 => Ok(domains[0].id.clone()),
        None => Err(Error::Usage(format!(
            "say which short domain to use with --domain HOST (or --domain-id ID); this \
             workspace has: {}",
            names(&domains)
        ))),
    }
}

/// `nimriz-matrix shorten URL ...`: JSON on stdout; exit 0 created/exists, 1 drift or
/// refused, 2 bad arguments, 3 API unavailable/auth.
pub async fn shorten_command(args: &ShortenArgs, printer: &Printer) -> Result<u8> {
    if args.redirect != 301 && args.redirect != 302 {
        return Err(Error::Usage(format!(
            "--redirect must be 301 or 302, got {}",
            args.redirect
        )));
    }
    let destination = with_utm(&args.url, &utm_pairs(args))?;
    let slug = args.slug.as_deref().map(check_slug).transpose()?;
    let client = Client::new(ApiConfig::resolve(&args.api)?)?.with_printer(printer.clone());
    let domain_id = pick_domain(&client, args).await?;
    let req = MintRequest {
        destination,
        domain_id,
        slug,
        redirect: Some(args.redirect),
        expires_at: args.expires_at.clone(),
    };
    let (link, code) = match mint_link(&client, &req).await? {
        Minted::Ok(link) => (link, exit::OK),
        Minted::Drift(link) => {
            printer.warn(format!(
                "slug {:?} already exists with another destination ({}); it was left \
                 unchanged. Pick another slug, or update that link on Nimriz",
                link.short_code.as_deref().unwrap_or_default(),
                link.existing_destination.as_deref().unwrap_or("?")
            ));
            (link, exit::PARTIAL)
        }
        Minted::Rejected(e) => {
            let mut msg = format!("error: {}", e.message);
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
            with_utm(
                "https://shop.example/p?ref=a%20b&x=1#top",
                &[("utm_source", "news letter"), ("utm_medium", "email")]
            )
            .unwrap(),
            "https://shop.example/p?ref=a%20b&x=1&utm_source=news+letter&utm_medium=email#top"
        );
        assert_eq!(
            with_utm("https://shop.example", &[("utm_source", "x")]).unwrap(),
            "https://shop.example/?utm_source=x"
        );
        // An existing utm key is replaced, not duplicated.
        assert_eq!(
            with_utm(
                "https://shop.example/?utm_source=old&k=v",
                &[("utm_source", "new")]
            )
            .unwrap(),
            "https://shop.example/?k=v&utm_source=new"
        );
        assert!(with_utm("javascript:alert(1)", &[]).is_err());
        assert!(with_utm("not a url", &[]).is_err());
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
