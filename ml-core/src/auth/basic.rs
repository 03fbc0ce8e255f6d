//! [`BasicCredentials`]: HTTP Basic (RFC 7617), for SAP, Twilio and token endpoints.

use ::http::HeaderValue;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret as _, SecretString};

/// HTTP Basic credentials (RFC 7617).
///
/// `Debug` shows the username, never the password.
#[derive(Clone, Debug)]
pub struct BasicCredentials {
    /// The user name. It must not contain `:` (the server splits at the first one).
    pub username: String,
    /// The password.
    pub password: SecretString,
}

impl BasicCredentials {
    /// Credentials for `username`.
    pub fn new(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value, `Basic base64(user:password)` (UTF-8), marked
    /// sensitive so that `http`'s `Debug` and HPACK leave it out.
    pub fn header_value(&self) -> HeaderValue {
        let mut plain = Zeroizing::new(Vec::with_capacity(
            self.username.len() + 1 + self.password.expose_secret().len(),
        ));
        plain.extend_from_slice(self.username.as_bytes());
        plain.push(b':');
        plain.extend_from_slice(self.password.expose_secret().as_bytes());
        let mut header = Zeroizing::new(b"Basic ".to_vec());
        base64_encode(&plain, &mut header);
        let mut value =
            HeaderValue::from_bytes(&header).expect("`Basic ` and base64 output are visible ASCII");
        value.set_sensitive(true);
        value
    }
}

/// Standard base64 with padding (RFC 4648 §4), appended to `out`.
pub(super) fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
        let sextet = |shift: u32| ALPHABET[(n >> shift) as usize & 63];
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { b'=' });
    }
}
