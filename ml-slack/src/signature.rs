//! Slack request signing (v0): `X-Slack-Signature: v0=hex(HMAC-SHA256(secret,
//! "v0:" + timestamp + ":" + raw body))`, with a 5-minute window and a constant-time
//! comparison.
//!
//! ```
//! use ml_slack::signature::SignatureVerifier;
//!
//! // The example from Slack's documentation.
//! let verifier = SignatureVerifier::new(&"8f742231b10e8888abcd99yyyzzz85a5".into());
//! let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
//! let now = jiff::Timestamp::from_second(1_531_420_618 + 10).unwrap();
//! verifier
//!     .verify_at("1531420618", body, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", now)
//!     .unwrap();
//! ```

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use ml_core::webhook::{Rejection, check_timestamp, ct_eq};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

/// Slack's replay window: requests more than 5 minutes old (or ahead) are refused.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// The request header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The request header carrying the signing timestamp (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// A decoded, well-formed `v0=` signature (32 bytes).
pub type SignatureBytes = [u8; 32];

/// Verifies (and, for tests and emulators, computes) Slack request signatures.
///
/// The HMAC key schedule is computed once, when the verifier is built, so each
/// verification hashes only the request. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SignatureVerifier {
    keyed: Hmac<Sha256>,
    window: Duration,
}

impl SignatureVerifier {
    /// A verifier for the app's signing secret, with the 5-minute window.
    pub fn new(signing_secret: &SecretString) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(signing_secret.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self {
            keyed,
            window: DEFAULT_WINDOW,
        }
    }

    /// Sets the tolerated clock difference (default 5 minutes, as Slack and slack_sdk).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The tolerated clock difference.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> SignatureBytes {
        let mut mac = self.keyed.clone();
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `X-Slack-Signature` value for `timestamp` and `body` (`v0=<64 hex>`).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!("v0={}", hex::encode(self.mac(timestamp, body)))
    }

    /// Checks `signature` over `timestamp` and `body` at `now`.
    ///
    /// Order: the signature's format first (a garbage header is
    /// [`Rejection::BadSignatureFormat`]), then the timestamp ([`Rejection::BadTimestamp`],
    /// [`Rejection::Stale`] / [`Rejection::FutureDated`], by ml-core's window check), then
    /// the HMAC, compared in constant time ([`Rejection::SignatureMismatch`]). Returns the
    /// decoded signature, which the receiver's replay cache keys on.
    pub fn verify_at(
        &self,
        timestamp: &str,
        body: &[u8],
        signature: &str,
        now: Timestamp,
    ) -> Result<SignatureBytes, Rejection> {
        let given = decode_signature(signature)?;
        check_timestamp(timestamp, now, self.window)?;
        let expected = self.mac(timestamp, body);
        if ct_eq(&expected, &given) {
            Ok(given)
        } else {
            Err(Rejection::SignatureMismatch)
        }
    }
}

/// `v0=` + 64 hex digits (either case) → 32 bytes.
fn decode_signature(signature: &str) -> Result<SignatureBytes, Rejection> {
    let hex_part = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(Rejection::BadSignatureFormat)?;
    if hex_part.len() != 64 {
        return Err(Rejection::BadSignatureFormat);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| Rejection::BadSignatureFormat)?;
    Ok(out)
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("signing_secret", &"<redacted>")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("ts")
    }

    #[test]
    fn slack_docs_known_answer() {
        let v = SignatureVerifier::new(&SECRET.into());
        assert_eq!(v.sign("1531420618", BODY.as_bytes()), SIG);
        assert!(
            v.verify_at("1531420618", BODY.as_bytes(), SIG, at(1_531_420_618))
                .is_ok()
        );
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", SIG[3..].to_ascii_uppercase());
        assert!(
            v.verify_at("1531420618", BODY.as_bytes(), &upper, at(1_531_420_618))
                .is_ok()
        );
    }

    #[test]
    fn window_edges() {
        let v = SignatureVerifier::new(&SECRET.into());
        let t = 1_531_420_618;
        let ok = |now| v.verify_at("1531420618", BODY.as_bytes(), SIG, at(now));
        assert!(ok(t + 300).is_ok());
        assert_eq!(ok(t + 301), Err(Rejection::Stale));
        assert!(ok(t - 300).is_ok());
        assert_eq!(ok(t - 301), Err(Rejection::FutureDated));
    }

    #[test]
    fn refusals_are_distinct() {
        let v = SignatureVerifier::new(&SECRET.into());
        let now = at(1_531_420_618);
        let check = |ts: &str, body: &str, sig: &str| v.verify_at(ts, body.as_bytes(), sig, now);
        assert_eq!(
            check("1531420618", &format!("{BODY}x"), SIG),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check("1531420618", &BODY[..BODY.len() - 1], SIG),
            Err(Rejection::SignatureMismatch)
        );
        let other = SignatureVerifier::new(&"another-secret".into());
        let forged = other.sign("1531420618", BODY.as_bytes());
        assert_eq!(
            check("1531420618", BODY, &forged),
            Err(Rejection::SignatureMismatch)
        );
        for bad in [
            "",
            "v0=",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b50",
            "v0=z2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ] {
            assert_eq!(
                check("1531420618", BODY, bad),
                Err(Rejection::BadSignatureFormat),
                "{bad}"
            );
        }
        for bad_ts in ["", "abc", "-1531420618", "1531420618.5", "99999999999999"] {
            assert_eq!(
                check(bad_ts, BODY, SIG),
                Err(Rejection::BadTimestamp),
                "{bad_ts}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let v = SignatureVerifier::new(&SECRET.into());
        assert!(!format!("{v:?}").contains(SECRET));
    }
}
