//! HTTP basic auth for the write and read-one routes.
//!
//! Expected credentials are kept only as SHA-256 digests; the presented ones
//! are hashed too and both digests compared with `subtle` in constant time,
//! so neither the content nor the length of the secrets leaks through timing.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::AppState;

/// The configured user and password, as digests.
pub struct Credentials {
    user: [u8; 32],
    password: [u8; 32],
    /// Digest of the canonical header `Basic base64(user:password)`: the
    /// header every client sends, checked with one hash and no decoding.
    header: [u8; 32],
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
        Credentials {
            user: digest(user.as_bytes()),
            password: digest(password.as_bytes()),
            header: digest(canonical.as_bytes()),
        }
    }

    /// True when `header` is `Basic base64(user:password)` with the configured pair.
    pub fn verify(&self, header: Option<&HeaderValue>) -> bool {
        let Some(header) = header else { return false };
        // Fast path: the canonical form, compared as a digest (constant time,
        // length not revealed).
        if bool::from(digest(header.as_bytes()).ct_eq(&self.header)) {
            return true;
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
    }
}
