//! The bare baseline for `benches/dryrun_vs_bare.sh`: writes the JSON Lines plan of
//! `benches/gen_spec.py --shape brands` the way a short hand-written program would — one
//! thread, a loop over brands × channels × variants that builds each row's strings (slug,
//! short URL, destination with its UTMs, the cell and UTM maps) and serializes the row with
//! serde_json into a BufWriter. Nothing is precomputed or read from the spec; the output is
//! byte-identical to `nimriz-matrix build SPEC --dry-run --format jsonl`.
//!
//!     bare-dryrun BRANDS CHANNELS VARIANTS DOMAIN CAMPAIGN OUTPUT
//!
//! Keep in step with `brands_spec_text` in benches/gen_spec.py.

use serde::Serialize;
use serde::ser::SerializeMap;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

/// As gen_spec.py's MEDIA.
const MEDIA: [&str; 7] = [
    "cpc",
    "paid-social",
    "email",
    "display",
    "affiliate",
    "sms",
    "referral",
];

/// Dimension name → value key, in dimension order.
struct Cell(Vec<(&'static str, String)>);

impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (d, k) in &self.0 {
            map.serialize_entry(d, k)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Domain {
    host: String,
}

#[derive(Serialize)]
struct Row {
    cell: Cell,
    slug: String,
    domain: Domain,
    short_url: String,
    destination: String,
    utm: BTreeMap<&'static str, String>,
    redirect: u16,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brands, channels, variants, domain, campaign, output] = args.as_slice() else {
        eprintln!("usage: bare-dryrun BRANDS CHANNELS VARIANTS DOMAIN CAMPAIGN OUTPUT");
        std::process::exit(2);
    };
    let count = |s: &str| -> u32 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("bare-dryrun: `{s}` is not a count");
            std::process::exit(2)
        })
    };
    let (brands, channels, variants) = (count(brands), count(channels), count(variants));
    let file = std::fs::File::create(output).unwrap_or_else(|e| {
        eprintln!("bare-dryrun: {output}: {e}");
        std::process::exit(1)
    });
    let mut out = BufWriter::with_capacity(1 << 16, file);
    if let Err(e) = write_plan(&mut out, brands, channels, variants, domain, campaign) {
        eprintln!("bare-dryrun: {output}: {e}");
        std::process::exit(1);
    }
}

fn write_plan(
    out: &mut impl Write,
    brands: u32,
    channels: u32,
    variants: u32,
    domain: &str,
    campaign: &str,
) -> std::io::Result<()> {
    for b in 0..brands {
        for c in 0..channels {
            for v in 0..variants {
                let brand = format!("b{b:02}");
                let channel = format!("ch{c:03}");
                let variant = format!("v{v:04}");
                let host = format!("{brand}.{domain}");
                let site = format!("{brand}.shop.example");
                let source = format!("src{}", c % 13);
                let medium = MEDIA[c as usize % MEDIA.len()];
                let slug = format!("{brand}-{channel}-{variant}");
                let short_url = format!("https://{host}/{slug}");
                let destination = format!(
                    "https://{site}/spring?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}&utm_content={variant}"
                );
                let mut utm = BTreeMap::new();
                utm.insert("utm_source", source);
                utm.insert("utm_medium", medium.to_string());
                utm.insert("utm_campaign", campaign.to_string());
                utm.insert("utm_content", variant.clone());
                let row = Row {
                    cell: Cell(vec![
                        ("brand", brand),
                        ("channel", channel),
                        ("variant", variant),
                    ]),
                    slug,
                    domain: Domain { host },
                    short_url,
                    destination,
                    utm,
                    redirect: 302,
                };
                serde_json::to_writer(&mut *out, &row)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()
}
