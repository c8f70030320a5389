//! Authenticating requests before anything else looks at them.
//!
//! Lifecycle webhooks: `X-Nim-Signature: v1=<hex HMAC-SHA256("{X-Nim-Timestamp}.{raw body}")>`
//! checked against every configured secret in constant time, then the timestamp window. Only
//! after that is the body parsed. Click events: a shared secret in a header, compared in
//! constant time.

use hmac::Mac;
use nimriz::Secret;
use nimriz::webhook::mac_for;
use subtle::ConstantTimeEq;

/// Why a request was refused (all become 401; the reason goes to the log, not the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingHeader(&'static str),
    BadTimestamp,
    StaleTimestamp,
    BadSignatureFormat,
    SignatureMismatch,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::MissingHeader(h) => write!(f, "missing header {h}"),
            AuthFailure::BadTimestamp => f.write_str("X-Nim-Timestamp is not unix seconds"),
            AuthFailure::StaleTimestamp => f.write_str("timestamp outside the tolerance window"),
            AuthFailure::BadSignatureFormat => f.write_str("X-Nim-Signature has no v1=<hex> entry"),
            AuthFailure::SignatureMismatch => f.write_str("signature does not match any secret"),
        }
    }
}

pub use nimriz::webhook::sign;

/// Check a webhook. `signature` may hold several space- or comma-separated entries (a sender
/// signing with two secrets during its own rotation); any `v1=` entry matching any secret wins.
pub fn verify_webhook(
    secrets: &[Secret],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), AuthFailure> {
    let timestamp = timestamp.ok_or(AuthFailure::MissingHeader("X-Nim-Timestamp"))?;
    let signature = signature.ok_or(AuthFailure::MissingHeader("X-Nim-Signature"))?;
    let tags: Vec<Vec<u8>> = signature
        .split([' ', ','])
        .filter_map(|entry| entry.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .collect();
    if tags.is_empty() {
        return Err(AuthFailure::BadSignatureFormat);
    }
    let mut matched = false;
    for secret in secrets {
        let mac = mac_for(secret.expose(), timestamp, body);
        for tag in &tags {
            // `verify_slice` compares in constant time.
            if mac.clone().verify_slice(tag).is_ok() {
                matched = true;
            }
        }
    }
    if !matched {
        return Err(AuthFailure::SignatureMismatch);
    }
    // Checked after the signature so an attacker learns nothing from the timestamp answer;
    // the timestamp is covered by the signature, so it cannot be moved without the secret.
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AuthFailure::BadTimestamp)?;
    if now_unix.abs_diff(ts) > tolerance_secs {
        return Err(AuthFailure::StaleTimestamp);
    }
    Ok(())
}

/// Check the click endpoint's shared-secret header. The value may be the secret itself or
/// `Bearer <secret>` (what an `Authorization` header usually carries).
pub fn verify_shared_secret(
    secrets: &[Secret],
    header_value: Option<&str>,
) -> Result<(), AuthFailure> {
    let value = header_value.ok_or(AuthFailure::MissingHeader("shared-secret header"))?;
    let value = value.trim();
    let bare = value.strip_prefix("Bearer ").unwrap_or(value).as_bytes();
    let mut matched = subtle::Choice::from(0u8);
    for s in secrets {
        // `ct_eq` on slices of different length is false without comparing contents.
        matched |= s.expose().ct_eq(bare) | s.expose().ct_eq(value.as_bytes());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthFailure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(s.as_bytes())).collect()
    }

    #[test]
    fn sign_then_verify_and_rotation() {
        let body = br#"{"id":"e"}"#;
        let sig = sign(b"new", "1000", body);
        let both = secrets(&["old", "new"]);
        assert_eq!(
            verify_webhook(&both, Some("1000"), Some(&sig), body, 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook(
                &secrets(&["old"]),
                Some("1000"),
                Some(&sig),
                body,
                1000,
                300
            ),
            Err(AuthFailure::SignatureMismatch)
        );
        // Several entries: any match wins.
        let multi = format!("v1=00ff, {sig}");
        assert_eq!(
            verify_webhook(&both, Some("1000"), Some(&multi), body, 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook(&both, Some("1000"), Some(&sig), body, 1301, 300),
            Err(AuthFailure::StaleTimestamp)
        );
        assert_eq!(
            verify_webhook(&both, Some("1000"), Some("sha256=abc"), body, 1000, 300),
            Err(AuthFailure::BadSignatureFormat)
        );
    }

    #[test]
    fn shared_secret_plain_or_bearer() {
        let s = secrets(&["k1"]);
        assert!(verify_shared_secret(&s, Some("k1")).is_ok());
        assert!(verify_shared_secret(&s, Some("Bearer k1")).is_ok());
        assert!(verify_shared_secret(&s, Some("k2")).is_err());
        assert!(verify_shared_secret(&s, Some("k1k1")).is_err());
        assert!(verify_shared_secret(&s, None).is_err());
    }
}
