//! Nimriz's webhook signature [doc]: `X-Nim-Signature: v1=<hex HMAC-SHA256 of
//! "{X-Nim-Timestamp}.{raw body}">` with the endpoint's secret. The receiver (`listen`)
//! verifies with [`mac_for`]; the sandbox signs with [`sign`].

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `v1=` + hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac_for(secret, timestamp, body).finalize().into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// The keyed MAC over `"{timestamp}.{body}"`, for a constant-time `verify_slice`.
pub fn mac_for(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}
