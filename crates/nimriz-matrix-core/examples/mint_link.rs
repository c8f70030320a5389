//! Mint a personalised short link from Rust, at send time — e.g. each loyalty-email
//! recipient gets their own link, so clicks can be traced to a member.
//!
//! ```sh
//! NIMRIZ_API_KEY=... cargo run -p nimriz-matrix-core --example mint_link -- go.acme.example member-1042
//! ```
//! Against the local sandbox instead (`nimriz-matrix sandbox --domain go.acme.example`, which
//! listens on 127.0.0.1:8787 and prints its key): `NIMRIZ_API_BASE=http://127.0.0.1:8787`
//! and `NIMRIZ_API_KEY=<the printed key>`.
//!
//! Same client, retries and conflict handling as `nimriz-matrix build` and `shorten`: the
//! slug is derived from the member id, so sending the email twice re-uses the link
//! (`exists`) instead of minting a second one.

use nimriz::{ApiConfig, ApiKey, Client};
use nimriz_matrix_core::apply::{MintRequest, Minted, mint_link, with_utm};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let (Some(domain_host), Some(member_id)) = (argv.next(), argv.next()) else {
        eprintln!("usage: mint_link SHORT_DOMAIN MEMBER_ID");
        std::process::exit(2);
    };

    // Key from NIMRIZ_API_KEY (never a literal in code); base from NIMRIZ_API_BASE.
    let base = std::env::var("NIMRIZ_API_BASE").unwrap_or_else(|_| "https://api.nimriz.com".into());
    let client = Client::new(ApiConfig::new(&base, ApiKey::load(None)?)?)?;

    // Resolve the short domain once (cache this in a long-running sender).
    let domain_id = client
        .list_domains()
        .await?
        .into_iter()
        .find(|d| d.domain_name.eq_ignore_ascii_case(&domain_host))
        .map(|d| d.id)
        .ok_or_else(|| format!("the workspace has no short domain {domain_host}"))?;

    let destination = with_utm(
        "https://shop.example/loyalty/perks",
        &[
            ("utm_source", "loyalty-email"),
            ("utm_medium", "email"),
            ("utm_campaign", "winter-perks"),
            ("utm_content", &member_id),
        ],
    )?;
    let slug = nimriz_matrix_core::apply::check_slug(&format!("perks-{member_id}"))?;

    let request = MintRequest {
        destination,
        domain_id,
        slug: Some(slug),
        redirect: Some(302),
        expires_at: None,
    };
    match mint_link(&client, &request).await? {
        Minted::Ok(link) => println!(
            "{} ({})",
            link.short_url.as_deref().unwrap_or("?"),
            link.status
        ),
        Minted::Drift(link) => eprintln!(
            "slug {} already points to {}; not changed",
            link.short_code.as_deref().unwrap_or("?"),
            link.existing_destination.as_deref().unwrap_or("?")
        ),
        Minted::Rejected(err) => eprintln!("refused: {}", err.message),
    }
    Ok(())
}
