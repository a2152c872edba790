//! HTTP basic auth for the write and read-one routes.
//!
//! The header every client sends, `Basic base64(user:password)`, is compared
//! with the expected one over a fixed 256-byte window with `subtle`: constant
//! time whatever either length. Anything else (other spellings, wrong
//! credentials, very long secrets) is decoded and compared as SHA-256 digests
//! of user and password, again with `subtle`. Neither path lets the content
//! or the length of the secrets show in timing.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::AppState;

/// Window of the fast comparison; headers longer than this take the digest path.
const WINDOW: usize = 256;

/// The configured user and password, as digests, and the canonical header.
pub struct Credentials {
    user: [u8; 32],
    password: [u8; 32],
    /// `Basic base64(user:password)` zero-padded to [`WINDOW`], when it fits.
    header: Option<([u8; WINDOW], u64)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Credentials {
    pub fn new(user: &str, password: &str) -> Self {
        let canonical = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let header = (canonical.len() <= WINDOW).then(|| {
            let mut padded = [0u8; WINDOW];
            padded[..canonical.len()].copy_from_slice(canonical.as_bytes());
            (padded, canonical.len() as u64)
        });
        Credentials { user: digest(user.as_bytes()), password: digest(password.as_bytes()), header }
    }

    /// True when `header` is `Basic base64(user:password)` with the configured pair.
    pub fn verify(&self, header: Option<&HeaderValue>) -> bool {
        let Some(header) = header else { return false };
        // Fast path: the canonical form, compared over the whole window (no
        // hashing: SHA-256 was the largest single cost of a GET by id).
        let presented = header.as_bytes();
        if let Some((expected, expected_len)) = &self.header {
            if presented.len() <= WINDOW {
                let mut padded = [0u8; WINDOW];
                padded[..presented.len()].copy_from_slice(presented);
                if window_eq(&padded, expected, presented.len() as u64, *expected_len) {
                    return true;
                }
            }
        }
        // Any other spelling (`basic`, extra spaces): decode on the stack.
        let mut buf = [0u8; MAX_DECODED];
        let Some((user, password)) = parse_basic(header, &mut buf) else {
            return false;
        };
        let user_ok = digest(user).ct_eq(&self.user);
        let password_ok = digest(password).ct_eq(&self.password);
        bool::from(user_ok & password_ok)
    }
}

/// Constant-time equality of two windows and their lengths: OR of XORs over
/// 64-bit words (no data-dependent branch), then one `subtle` comparison.
/// `subtle`'s byte-wise `ct_eq` on 256 bytes cost ~3k instructions.
fn window_eq(a: &[u8; WINDOW], b: &[u8; WINDOW], a_len: u64, b_len: u64) -> bool {
    let mut acc = a_len ^ b_len;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        acc |= x ^ y;
    }
    bool::from(std::hint::black_box(acc).ct_eq(&0))
}

/// Longest decoded `user:password` we look at; longer headers are refused.
const MAX_DECODED: usize = 1024;

fn parse_basic<'a>(header: &HeaderValue, buf: &'a mut [u8; MAX_DECODED]) -> Option<(&'a [u8], &'a [u8])> {
    let value = header.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let n = base64::engine::general_purpose::STANDARD.decode_slice(encoded.trim(), buf).ok()?;
    let decoded = &buf[..n];
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((&decoded[..colon], &decoded[colon + 1..]))
}

/// Extractor that rejects the request with 401 unless it carries valid
/// basic-auth credentials. Put it first in a handler's arguments so auth is
/// checked before the id or the body.
pub struct Authenticated;

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.credentials.verify(parts.headers.get(AUTHORIZATION)) {
            Ok(Authenticated)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    #[test]
    fn basic_auth_accepts_only_the_configured_pair() {
        let c = Credentials::new("admin", "pa:ss");
        assert!(c.verify(Some(&header("admin:pa:ss"))));
        assert!(!c.verify(Some(&header("admin:pa:s"))));
        assert!(!c.verify(Some(&header("admin:"))));
        assert!(!c.verify(Some(&header("Admin:pa:ss"))));
        assert!(!c.verify(Some(&header("adminpa:ss"))));
        assert!(!c.verify(Some(&HeaderValue::from_static("Bearer abc"))));
        assert!(!c.verify(Some(&HeaderValue::from_static("Basic !!!"))));
        assert!(!c.verify(None));
        // Non-canonical spellings of the right pair still pass.
        let enc = base64::engine::general_purpose::STANDARD.encode("admin:pa:ss");
        assert!(c.verify(Some(&HeaderValue::from_str(&format!("basic  {enc} ")).unwrap())));
        assert!(format!("{c:?}").contains("redacted"));
        // A pair too long for the window still works, through the digests.
        let long = "p".repeat(400);
        let c = Credentials::new("admin", &long);
        assert!(c.header.is_none());
        assert!(c.verify(Some(&header(&format!("admin:{long}")))));
        assert!(!c.verify(Some(&header(&format!("admin:{long}x")))));
        // Padding cannot be used to pass: a prefix of the right header fails.
        let c = Credentials::new("admin", "pa:ss");
        let full = header("admin:pa:ss");
        let prefix = HeaderValue::from_bytes(&full.as_bytes()[..full.len() - 2]).unwrap();
        assert!(!c.verify(Some(&prefix)));
    }
}
