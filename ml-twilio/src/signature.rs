//! Webhook signatures: Twilio's `X-Twilio-Signature` (HMAC-SHA1) and the SendGrid signed
//! Event Webhook (ECDSA P-256 / SHA-256).
//!
//! Pure functions over bytes and strings with no clock: the receivers add freshness and
//! replay protection on top.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use ml_core::webhook::Rejection;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Computes Twilio's signature: base64(HMAC-SHA1(auth token, url + for each parameter name
/// in code-point order, the name followed by each of its distinct values in order)).
/// This is what twilio-python's `RequestValidator.compute_signature` does.
pub fn twilio_signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac = <Hmac<Sha1>>::new_from_slice(auth_token).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    B64.encode(mac.finalize().into_bytes())
}

/// Splits `scheme://authority` from the rest of the URL, without normalising anything.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let after = &url[scheme_end + 3..];
    let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..auth_end], &after[auth_end..]))
}

/// The port part of an authority (after the last `:` outside IPv6 brackets and after any
/// userinfo), as (host part, port).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_start..];
    let bracket = host.rfind(']').map_or(0, |i| i + 1);
    match host[bracket..].rfind(':') {
        Some(i) => {
            let cut = host_start + bracket + i;
            (&authority[..cut], Some(&authority[cut + 1..]))
        }
        None => (authority, None),
    }
}

/// The URL variants Twilio's libraries accept: as given, without its port, and with the
/// scheme's default port (`:443` for https, `:80` for http) when it has none.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Some((scheme, authority, rest)) = split_url(url) {
        match split_port(authority) {
            (host, Some(_)) => out.push(format!("{scheme}://{host}{rest}")),
            (host, None) => {
                let port = match scheme.to_ascii_lowercase().as_str() {
                    "https" => Some("443"),
                    "http" => Some("80"),
                    _ => None,
                };
                if let Some(p) = port {
                    out.push(format!("{scheme}://{host}:{p}{rest}"));
                }
            }
        }
    }
    out
}

/// Constant-time comparison of two signatures (ml-core's [`ml_core::webhook::ct_eq`]).
pub fn ct_eq(a: &str, b: &str) -> bool {
    ml_core::webhook::ct_eq(a.as_bytes(), b.as_bytes())
}

/// Verifies a form-encoded Twilio request: `signature` must match `url` (or one of its
/// port variants) and every received parameter.
pub fn verify_twilio_form(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    url_variants(url).iter().fold(false, |ok, u| {
        ok | ct_eq(&twilio_signature(auth_token, u, params), signature)
    })
}

/// The lowercase hex SHA-256 of a body (Twilio's `bodySHA256`).
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Verifies a JSON-bodied Twilio request: the `bodySHA256` query parameter of `url` must be
/// the body's hash, and `signature` must match the URL (query included) with no parameters.
pub fn verify_twilio_json(auth_token: &[u8], url: &str, body: &[u8], signature: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    let Some(expected) = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()
        .and_then(|q| {
            q.into_iter()
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v)
        })
    else {
        return false;
    };
    let hash_ok = ct_eq(&body_sha256(body), &expected.to_ascii_lowercase());
    hash_ok & verify_twilio_form(auth_token, url, &[], signature)
}

/// A SendGrid Event Webhook verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendGridPublicKey(VerifyingKey);

impl SendGridPublicKey {
    /// Parses the key as SendGrid shows it: base64 of a DER SubjectPublicKeyInfo (a PEM
    /// block with header and footer is accepted too).
    pub fn from_base64(key: &str) -> Result<Self, String> {
        let body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let der = B64
            .decode(body.as_bytes())
            .map_err(|e| format!("not base64: {e}"))?;
        VerifyingKey::from_public_key_der(&der)
            .map(Self)
            .map_err(|e| format!("not a P-256 SubjectPublicKeyInfo: {e}"))
    }

    /// Verifies `signature` (base64 of a DER ECDSA signature) over `timestamp` + `body`.
    pub fn verify(&self, signature_b64: &str, timestamp: &str, body: &[u8]) -> bool {
        self.check(signature_b64, timestamp, body).is_ok()
    }

    /// [`verify`](Self::verify) telling why: [`Rejection::BadSignatureFormat`] when the
    /// signature is not base64 of a DER ECDSA signature, [`Rejection::SignatureMismatch`]
    /// when it does not verify.
    pub fn check(
        &self,
        signature_b64: &str,
        timestamp: &str,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let der = B64
            .decode(signature_b64.trim().as_bytes())
            .map_err(|_| Rejection::BadSignatureFormat)?;
        let sig = Signature::from_der(&der).map_err(|_| Rejection::BadSignatureFormat)?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        // Accept high-S signatures as SendGrid's own libraries do.
        let sig = sig.normalize_s().unwrap_or(sig);
        self.0
            .verify(&signed, &sig)
            .map_err(|_| Rejection::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    /// The example of Twilio's webhook-security page (auth token `12345`), as
    /// twilio-python 9.13.0 computes it.
    fn twilio_docs_example() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature(b"12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify_twilio_form(
            b"12345",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(verify_twilio_form(
            b"12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify_twilio_form(
            b"12345",
            "https://mycompany.com/other.php?foo=1&bar=2",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify_twilio_form(
            b"54321",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn port_variants() {
        assert_eq!(
            url_variants("https://a.example/x?y=1"),
            vec!["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://u:p@a.example:8080/x"),
            vec!["http://u:p@a.example:8080/x", "http://u:p@a.example/x"]
        );
        assert_eq!(
            url_variants("https://[::1]:443/x"),
            vec!["https://[::1]:443/x", "https://[::1]/x"]
        );
        assert_eq!(
            url_variants("https://a.example"),
            vec!["https://a.example", "https://a.example:443"]
        );
    }
}
