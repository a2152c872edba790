//! Request ids and the access log: one middleware, one log event per request.
//!
//! Replaces tower-http's `SetRequestIdLayer` + `TraceLayer` +
//! `PropagateRequestIdLayer`, which cost a UUID from the OS (`getrandom`
//! syscall), a tracing span with formatted fields and two events per request
//! (see the README's profile). The request id is kept in a task-local so an
//! internal error logged inside a handler still names it.

use std::cell::Cell;
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static CURRENT_REQUEST_ID: HeaderValue;
}

/// The id of the request being served, for log lines ("-" outside a request).
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(|id| id.to_str().unwrap_or("-").to_owned())
        .unwrap_or_else(|_| "-".to_owned())
}

/// A random (version 4 layout) UUID from a per-thread splitmix64 generator
/// seeded once from the OS-keyed `RandomState`: unique enough to trace a
/// request, and no syscall per request. Not for secrets.
pub fn new_request_id() -> HeaderValue {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
            h.finish()
        });
    }
    let next = || {
        STATE.with(|s| {
            let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let (hi, lo) = (next(), next());
    let hi = (hi & !0xF000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(b >> 4) as usize];
        out[j + 1] = HEX[(b & 0xF) as usize];
        j += 2;
    }
    HeaderValue::from_bytes(&out).expect("hex and dashes are a valid header value")
}

/// Middleware: keeps the caller's `x-request-id` (API Gateway / ALB) or makes
/// one, serves the request with it in scope, copies it to the response and
/// logs one line: method, path, status, latency, request id. Target
/// `books_api::access`, so `RUST_LOG=info,books_api::access=warn` drops it.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = match req.headers().get(REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = new_request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let method = req.method().clone();
    let uri = req.uri().clone();
    let mut resp = CURRENT_REQUEST_ID.scope(id.clone(), next.run(req)).await;
    tracing::info!(
        target: "books_api::access",
        method = method.as_str(),
        uri = %uri,
        status = resp.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        request_id = id.to_str().unwrap_or("-"),
        "request"
    );
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_request_id().to_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(20) {
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            assert_eq!(id.matches('-').count(), 4, "{id}");
        }
    }
}
