//! Request ids and the access log: one middleware, one log event per request.
//!
//! Replaces tower-http's `SetRequestIdLayer` + `TraceLayer` +
//! `PropagateRequestIdLayer`, which cost a UUID from the OS (`getrandom`
//! syscall), a tracing span with formatted fields and two events per request
//! (see the README's profile). The request id is kept in a task-local so an
//! internal error logged inside a handler still names it.

use std::cell::Cell;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;

pub const REQUEST_ID: &str = "x-request-id";

/// Where access lines go once the binary set up logging (see [`start_writer`]).
/// Unset (tests driving the router), access lines go through `tracing`.
static SINK: OnceLock<Sink> = OnceLock::new();

/// Access lines are formatted into one shared buffer that a writer thread
/// empties to stdout every [`FLUSH_EVERY`] in one `write`. Handing each line
/// to a channel woke the writer thread once per request (a futex wake and a
/// context switch: ~4 % of the service's CPU in `perf`).
struct Sink {
    buf: Mutex<Vec<u8>>,
    /// The buffer last written out, kept with its capacity: the two swap
    /// roles, so steady logging allocates nothing (a fresh buffer per flush,
    /// grown on the request threads and freed on the writer's, kept ~10 MB
    /// more resident under mimalloc).
    spare: Mutex<Vec<u8>>,
    dropped: std::sync::atomic::AtomicU64,
}

const INITIAL_CAPACITY: usize = 256 * 1024;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Lines beyond this much unwritten output (stdout stuck) are dropped and counted.
const MAX_BUFFERED: usize = 4 << 20;

/// Flushes the access lines still buffered when dropped (keep it until exit).
pub struct WriterGuard(());

impl Drop for WriterGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// Starts the access-line writer thread (the binary does, in `init_tracing`).
pub fn start_writer() -> WriterGuard {
    let sink = Sink {
        buf: Mutex::new(Vec::with_capacity(INITIAL_CAPACITY)),
        spare: Mutex::new(Vec::with_capacity(INITIAL_CAPACITY)),
        dropped: Default::default(),
    };
    if SINK.set(sink).is_err() {
        return WriterGuard(());
    }
    // Detached: it sleeps most of the time; the guard's drop does the last flush.
    let spawned = std::thread::Builder::new().name("access-log".into()).spawn(|| loop {
        std::thread::sleep(FLUSH_EVERY);
        flush();
    });
    if let Err(e) = spawned {
        eprintln!("books-api: cannot start the access-log writer: {e}");
    }
    WriterGuard(())
}

/// Writes out the buffered access lines now.
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    // One flusher at a time (the writer thread, or the guard at exit).
    let mut spare = sink.spare.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut buf = sink.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.is_empty() {
            return;
        }
        std::mem::swap(&mut *buf, &mut *spare);
    }
    let dropped = sink.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&spare);
    if dropped > 0 {
        let _ = writeln!(out, r#"{{"level":"WARN","message":"access lines dropped: stdout not keeping up","dropped":{dropped},"target":"books_api::access"}}"#);
    }
    let _ = out.flush();
    spare.clear();
    if spare.capacity() > 4 * INITIAL_CAPACITY {
        // After a stall: give the memory back.
        *spare = Vec::with_capacity(INITIAL_CAPACITY);
    }
}

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
/// A plain tower layer: axum's `from_fn` clones the boxed inner service
/// and boxes a second future per request.
#[derive(Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S> tower::Service<Request> for AccessLog<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
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
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = CURRENT_REQUEST_ID.scope(id.clone(), fut).await?;
            log(start, &method, &uri, resp.status().as_u16(), &id);
            resp.headers_mut().insert(REQUEST_ID, id);
            Ok(resp)
        })
    }
}

fn log(start: Instant, method: &axum::http::Method, uri: &axum::http::Uri, status: u16, id: &HeaderValue) {
    if !tracing::enabled!(target: "books_api::access", tracing::Level::INFO) {
        return;
    }
    let latency_us = start.elapsed().as_micros() as u64;
    match SINK.get() {
        Some(sink) => {
            let now = SystemTime::now();
            let mut buf = sink.buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.len() < MAX_BUFFERED {
                format_line(&mut buf, now, method.as_str(), uri, status, latency_us, id.as_bytes());
            } else {
                sink.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        None => tracing::info!(
            target: "books_api::access",
            method = method.as_str(),
            uri = %uri,
            status,
            latency_us,
            request_id = id.to_str().unwrap_or("-"),
            "request"
        ),
    }
}

/// One access line, in the shape of the other (tracing JSON) log lines:
/// `{"timestamp":…,"level":"INFO","message":"request","method":…,"uri":…,
/// "status":…,"latency_us":…,"request_id":…,"target":"books_api::access"}`.
pub fn format_line(
    out: &mut Vec<u8>,
    now: SystemTime,
    method: &str,
    uri: &axum::http::Uri,
    status: u16,
    latency_us: u64,
    id: &[u8],
) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
    escape_into(out, method.as_bytes());
    out.extend_from_slice(b"\",\"uri\":\"");
    match uri.path_and_query() {
        Some(pq) => escape_into(out, pq.as_str().as_bytes()),
        None => escape_into(out, uri.to_string().as_bytes()),
    }
    out.extend_from_slice(b"\",\"status\":");
    push_decimal(out, u64::from(status), 1);
    out.extend_from_slice(b",\"latency_us\":");
    push_decimal(out, latency_us, 1);
    out.extend_from_slice(b",\"request_id\":\"");
    escape_into(out, id);
    out.extend_from_slice(b"\",\"target\":\"books_api::access\"}\n");
}

/// JSON string escaping for header-ish bytes (ASCII expected; other bytes
/// are written as `\u00XX` so the line stays valid UTF-8 JSON).
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().all(|&b| matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2024-05-01T10:00:00.123456Z`.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_decimal(out, year.max(0) as u64, 4);
    out.push(b'-');
    push_decimal(out, month as u64, 2);
    out.push(b'-');
    push_decimal(out, day as u64, 2);
    out.push(b'T');
    push_decimal(out, rem / 3600, 2);
    out.push(b':');
    push_decimal(out, rem / 60 % 60, 2);
    out.push(b':');
    push_decimal(out, rem % 60, 2);
    out.push(b'.');
    push_decimal(out, u64::from(d.subsec_micros()), 6);
    out.push(b'Z');
}

/// `n` in decimal, zero-padded to at least `width` digits (no `fmt` machinery).
fn push_decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_are_json_with_an_rfc3339_timestamp() {
        let uri: axum::http::Uri = "/api/v1/book/1?x=%22y".parse().unwrap();
        for (secs, micros, ts) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
            (1_714_557_600, 123_456, "2024-05-01T10:00:00.123456Z"),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        ] {
            let t = UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000);
            let mut line = Vec::new();
            format_line(&mut line, t, "GET", &uri, 200, 42, b"id-\"quoted\"\x01");
            assert_eq!(line.last(), Some(&b'\n'));
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["timestamp"], ts);
            assert_eq!(v["uri"], "/api/v1/book/1?x=%22y");
            assert_eq!(v["status"], 200);
            assert_eq!(v["latency_us"], 42);
            assert_eq!(v["request_id"], "id-\"quoted\"\u{1}");
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["target"], "books_api::access");
        }
        let mut out = Vec::new();
        for (n, w, s) in [(0, 1, "0"), (7, 2, "07"), (123456, 6, "123456"), (5, 6, "000005"), (u64::MAX, 1, "18446744073709551615")] {
            out.clear();
            push_decimal(&mut out, n, w);
            assert_eq!(std::str::from_utf8(&out).unwrap(), s);
        }
    }

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
