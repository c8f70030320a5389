//! `GET /api/v1/whoami` read tolerantly: the workspace identity a manifest is checked
//! against must come out of shapes the sandbox never serves (envelopes, numeric ids,
//! alias keys, a nested workspace object).

use nimriz::{ApiConfig, ApiKey, Client, RetryPolicy};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn whoami_of(body: Value) -> (Option<String>, Option<String>) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = ApiConfig::new(
        &server.uri(),
        ApiKey::new("nmz_k3y_whoami", "test").unwrap(),
    )
    .unwrap();
    cfg.retry = RetryPolicy::with_base(Duration::from_millis(1));
    let me = Client::new(cfg).unwrap().whoami().await.unwrap();
    (me.account_id, me.workspace_name)
}

#[tokio::test]
async fn identity_from_every_plausible_shape() {
    let some = |a: &str, n: &str| (Some(a.to_string()), Some(n.to_string()));
    let cases = [
        (
            json!({"account_id": "acc-1", "workspace_name": "Acme"}),
            some("acc-1", "Acme"),
        ),
        (
            json!({"account_id": 1042, "workspace_name": "Acme"}),
            some("1042", "Acme"),
        ),
        (
            json!({"data": {"account_id": "acc-1", "workspace_name": "Acme"}}),
            some("acc-1", "Acme"),
        ),
        (
            json!({"workspace": {"id": "ws-9", "name": "Acme"}}),
            some("ws-9", "Acme"),
        ),
        (
            json!({"accountId": "acc-2", "workspaceName": "Beta"}),
            some("acc-2", "Beta"),
        ),
        // The canonical key wins over a disagreeing alias.
        (
            json!({"account_id": "acc-1", "id": "user-7", "workspace_name": "Acme"}),
            some("acc-1", "Acme"),
        ),
        (json!({"plan": "pro"}), (None, None)),
    ];
    for (body, want) in cases {
        assert_eq!(whoami_of(body.clone()).await, want, "{body}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_malformed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(["acc-1"])))
        .mount(&server)
        .await;
    let cfg = ApiConfig::new(
        &server.uri(),
        ApiKey::new("nmz_k3y_whoami", "test").unwrap(),
    )
    .unwrap();
    let err = Client::new(cfg).unwrap().whoami().await.unwrap_err();
    assert!(
        matches!(err, nimriz::ClientError::Malformed { what: "whoami", .. }),
        "{err:?}"
    );
}
