//! Property tests for the tolerant reader: link objects drawn from random combinations of
//! envelope, alias pairs, id types and informative-field types. A consistent object always
//! parses and is accepted for the row; an object whose slug or domain disagrees with the row
//! is never accepted.

use nimriz::contract::{Expect, link_inconsistency, parse_link};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const HOST: &str = "go.acme.example";
const UUID: &str = "7f1c0e2a-0000-4000-8000-000000000001";

#[derive(Debug, Clone)]
struct Drawn {
    /// 0 bare, 1 `link`, 2 `data`, 3 `data.link`.
    envelope: u8,
    /// 0 url_id, 1 id, 2 both equal, 3 url_id + numeric id, 4 numeric url_id.
    ids: u8,
    /// 0 short_code, 1 slug, 2 both.
    slug_keys: u8,
    /// Bitmask over long_url / destination / destination_url (0 = none).
    dest_keys: u8,
    /// 0 none, 1 domain_id string, 2 domain_id number, 3 nested domain object,
    /// 4 domain_name + hostname, 5 domain_id + host names.
    domain: u8,
    short_url: bool,
    redirect: Value,
    expires: Value,
    created: Value,
    unknown: Vec<(String, Value)>,
    slug: String,
}

fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!({})),
        Just(json!([1, "x"])),
        Just(json!({"nested": {"deep": [null]}})),
    ]
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        (0u8..4, 0u8..5, 0u8..3, 0u8..8, 0u8..6, any::<bool>()),
        (
            prop_oneof![odd_value(), Just(json!(302)), Just(json!("301"))],
            prop_oneof![
                odd_value(),
                Just(json!("2027-01-01T00:00:00Z")),
                Just(json!(1_900_000_000))
            ],
            odd_value(),
        ),
        proptest::collection::vec(("x_[a-z]{1,6}", odd_value()), 0..4),
        "[a-z0-9][a-z0-9-]{2,20}",
    )
        .prop_map(
            |(
                (envelope, ids, slug_keys, dest_keys, domain, short_url),
                (redirect, expires, created),
                unknown,
                slug,
            )| Drawn {
                envelope,
                ids,
                slug_keys,
                dest_keys,
                domain,
                short_url,
                redirect,
                expires,
                created,
                unknown,
                slug,
            },
        )
}

/// The domain id the row was sent with, for this draw.
fn domain_id(d: &Drawn) -> String {
    if d.domain == 2 {
        "7".into()
    } else {
        "dom-1".into()
    }
}

/// Build the body. `lie`: 0 none, 1 other slug (every slug key), 2 short_url of another
/// slug, 3 other domain id, 4 other host.
fn body(d: &Drawn, lie: u8) -> Value {
    let mut o = Map::new();
    for (k, v) in &d.unknown {
        o.insert(k.clone(), v.clone());
    }
    o.insert("redirect_status_code".into(), d.redirect.clone());
    o.insert("expires_at".into(), d.expires.clone());
    o.insert("created_at".into(), d.created.clone());
    match d.ids {
        0 => {
            o.insert("url_id".into(), json!(UUID));
        }
        1 => {
            o.insert("id".into(), json!(UUID));
        }
        2 => {
            o.insert("url_id".into(), json!(UUID));
            o.insert("id".into(), json!(UUID));
        }
        3 => {
            o.insert("url_id".into(), json!(UUID));
            o.insert("id".into(), json!(17));
        }
        _ => {
            o.insert("url_id".into(), json!(4242));
        }
    }
    let slug = if lie == 1 {
        format!("{}-x", d.slug)
    } else {
        d.slug.clone()
    };
    match d.slug_keys {
        0 => {
            o.insert("short_code".into(), json!(slug));
        }
        1 => {
            o.insert("slug".into(), json!(slug));
        }
        _ => {
            o.insert("short_code".into(), json!(slug));
            o.insert("slug".into(), json!(slug));
        }
    }
    for (bit, key) in [(1, "long_url"), (2, "destination"), (4, "destination_url")] {
        if d.dest_keys & bit != 0 {
            o.insert(key.into(), json!("https://shop.example/a?b=1"));
        }
    }
    let dom = if lie == 3 {
        "dom-9".to_string()
    } else {
        domain_id(d)
    };
    let host = if lie == 4 { "rix.to" } else { HOST };
    match d.domain {
        1 => {
            o.insert("domain_id".into(), json!(dom));
        }
        2 => {
            let n: u64 = if lie == 3 { 9 } else { 7 };
            o.insert("domain_id".into(), json!(n));
        }
        3 => {
            o.insert("domain".into(), json!({"id": dom, "domain_name": host}));
        }
        4 => {
            o.insert("domain_name".into(), json!(host));
            o.insert("hostname".into(), json!(host));
        }
        5 => {
            o.insert("domain_id".into(), json!(dom));
            o.insert("domain_name".into(), json!(host));
        }
        _ => {}
    }
    let url_slug = if lie == 2 {
        format!("{}-y", d.slug)
    } else {
        d.slug.clone()
    };
    // Lies 3 and 4 need a field to carry the other domain; a short URL carries the host.
    if d.short_url || lie == 2 || (lie == 4 && d.domain < 3) {
        o.insert(
            "short_url".into(),
            json!(format!("https://{host}/{url_slug}")),
        );
    }
    if lie == 3 && matches!(d.domain, 0 | 4) {
        o.insert("domain_id".into(), json!(dom));
    }
    if lie == 4 && matches!(d.domain, 1 | 2) {
        o.insert("hostname".into(), json!(host));
    }
    let link = Value::Object(o);
    match d.envelope {
        0 => link,
        1 => json!({"link": link}),
        2 => json!({"data": link}),
        _ => json!({"data": {"link": link}, "request_id": "r-1"}),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn consistent_link_objects_always_parse_and_are_accepted(d in drawn()) {
        let b = body(&d, 0);
        let read = parse_link(&b);
        prop_assert!(read.is_ok(), "{b}: {:?}", read.err());
        let link = read.unwrap().value;
        let ids = vec![domain_id(&d)];
        let exp = Expect { short_code: Some(&d.slug), domain_ids: &ids, host: Some(HOST) };
        prop_assert_eq!(link_inconsistency(&link, &exp, false), None, "{}", b);
        prop_assert_eq!(link_inconsistency(&link, &exp, true), None, "{}", b);
        let want_id = if d.ids == 4 { "4242" } else { UUID };
        prop_assert_eq!(link.url_id.as_deref(), Some(want_id), "{}", b);
        prop_assert_eq!(link.short_code.as_deref(), Some(d.slug.as_str()));
        if d.dest_keys != 0 {
            prop_assert_eq!(link.long_url.as_deref(), Some("https://shop.example/a?b=1"));
        }
    }

    #[test]
    fn inconsistent_link_objects_are_never_accepted(d in drawn(), lie in 1u8..5) {
        let b = body(&d, lie);
        // Unreadable is fine (never accepted either); readable must be refused.
        if let Ok(read) = parse_link(&b) {
            let ids = vec![domain_id(&d)];
            let exp = Expect { short_code: Some(&d.slug), domain_ids: &ids, host: Some(HOST) };
            prop_assert!(
                link_inconsistency(&read.value, &exp, false).is_some(),
                "lie {} accepted: {}", lie, b
            );
        }
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_json(v in arbitrary_json()) {
        let _ = parse_link(&v);
        let _ = nimriz::contract::parse_bulk_results(&v);
        let _ = nimriz::contract::parse_domains(&v);
        let _ = nimriz::contract::body_error(&v);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = odd_value();
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("link".to_string()),
                        Just("data".to_string()),
                        Just("results".to_string()),
                        Just("domains".to_string()),
                        Just("url_id".to_string()),
                        Just("id".to_string()),
                        Just("short_code".to_string()),
                        Just("short_url".to_string()),
                        Just("error".to_string()),
                        Just("status".to_string()),
                        Just("domain".to_string()),
                        Just("next_cursor".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}
