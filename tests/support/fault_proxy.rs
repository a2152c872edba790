//! A fault-injecting HTTP proxy in front of moto, for the exactly-once tests.
//!
//! It reads each request whole, names its AWS operation (`Action=` of the query protocols,
//! `X-Amz-Target` of the JSON ones, else `METHOD /path`), and by a seeded draw either:
//! - answers the protocol's throttling error without forwarding (nothing was done), or
//! - forwards it, lets moto act, then answers 500 `InternalError` instead of moto's answer
//!   (the work is done, the answer is lost), or
//! - forwards it, lets moto act, then drops the connection without an answer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The protocol's throttling error, request not forwarded.
    Throttle,
    /// Forwarded and done by moto, then a 500 InternalError in place of the answer.
    LostAnswer,
    /// Forwarded and done by moto, then the connection closed without an answer.
    Reset,
}

/// One fault at `rate` (0.0–1.0), for every operation or only `operation`, at most
/// `limit` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub fault: Fault,
    pub rate: f64,
    pub operation: Option<String>,
    pub limit: Option<usize>,
}

impl Rule {
    pub fn all(fault: Fault, rate: f64) -> Rule {
        Rule { fault, rate, operation: None, limit: None }
    }

    pub fn only(fault: Fault, rate: f64, operation: &str) -> Rule {
        Rule { fault, rate, operation: Some(operation.to_string()), limit: None }
    }

    pub fn at_most(mut self, times: usize) -> Rule {
        self.limit = Some(times);
        self
    }
}

pub struct FaultProxy {
    pub url: String,
    injected: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl FaultProxy {
    /// Starts the proxy on a free loopback port, forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str, rules: Vec<Rule>, seed: u64) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let injected = Arc::new(Mutex::new(BTreeMap::new()));
        let fired = Mutex::new(vec![0; rules.len()]);
        let shared = Arc::new(Shared { upstream, rules, fired, rng: AtomicU64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1), injected: injected.clone() });
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        FaultProxy { url, injected }
    }

    /// Faults injected so far, by "Fault:Operation".
    pub fn injected(&self) -> BTreeMap<String, usize> {
        self.injected.lock().unwrap().clone()
    }

    pub fn total_injected(&self) -> usize {
        self.injected.lock().unwrap().values().sum()
    }
}

struct Shared {
    upstream: String,
    rules: Vec<Rule>,
    rng: AtomicU64,
    fired: Mutex<Vec<usize>>,
    injected: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Shared {
    /// splitmix64 over a shared counter: reproducible for a seed up to thread interleaving.
    fn draw(&self) -> f64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&self, operation: &str) -> Option<Fault> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.operation.as_deref().is_some_and(|op| op != operation) {
                continue;
            }
            if self.draw() < rule.rate {
                let mut fired = self.fired.lock().unwrap();
                if rule.limit.is_some_and(|limit| fired[i] >= limit) {
                    continue;
                }
                fired[i] += 1;
                *self.injected.lock().unwrap().entry(format!("{:?}:{operation}", rule.fault)).or_default() += 1;
                return Some(rule.fault);
            }
        }
        None
    }
}

pub struct Request {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn form_param(&self, name: &str) -> Option<String> {
        let body = std::str::from_utf8(&self.body).ok()?;
        body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The AWS operation: `Action=` (EC2, IAM, RDS, ELB), `X-Amz-Target` (JSON
    /// protocols), else `METHOD /path` (REST protocols).
    pub fn operation(&self) -> String {
        if let Some(action) = self.form_param("Action") {
            return action;
        }
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_string();
        }
        let mut parts = self.head[0].split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match rest_operation(method, path, query) {
            Some(name) => name.to_string(),
            None => format!("{method} {path}"),
        }
    }

    /// The service in the SigV4 credential scope (`Credential=AKID/date/region/s3/aws4_request`):
    /// how a path-style S3 request to 127.0.0.1 is told from the other REST protocols.
    pub fn signing_service(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
        scope.split('/').nth(3)
    }

    pub fn protocol(&self) -> Protocol {
        if self.form_param("Action").is_some() {
            if self.form_param("Version").as_deref() == Some("2016-11-15") {
                Protocol::Ec2
            } else {
                Protocol::Query
            }
        } else if self.header("x-amz-target").is_some() {
            Protocol::Json
        } else if self.header("host").is_some_and(|h| h.starts_with("s3") || h.contains(".s3")) || self.signing_service() == Some("s3") {
            Protocol::S3
        } else {
            Protocol::RestJson
        }
    }
}

/// The operation names of the REST protocols' writes that the fault tests aim at (API
/// Gateway, Lambda, S3 with path-style addressing), as the SDK names them.
fn rest_operation(method: &str, path: &str, query: &str) -> Option<&'static str> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let name = match (method, seg.as_slice()) {
        ("POST", ["restapis"]) => "CreateRestApi",
        ("DELETE", ["restapis", _]) => "DeleteRestApi",
        ("POST", ["restapis", _, "resources", _]) => "CreateResource",
        ("PUT", ["restapis", _, "resources", _, "methods", _]) => "PutMethod",
        ("PUT", ["restapis", _, "resources", _, "methods", _, "integration"]) => "PutIntegration",
        ("PUT", ["restapis", _, "resources", _, "methods", _, "responses", _]) => "PutMethodResponse",
        ("PUT", ["restapis", _, "resources", _, "methods", _, "integration", "responses", _]) => "PutIntegrationResponse",
        ("POST", ["restapis", _, "authorizers"]) => "CreateAuthorizer",
        ("POST", ["restapis", _, "deployments"]) => "CreateDeployment",
        ("POST", ["restapis", _, "stages"]) => "CreateStage",
        ("PATCH", ["restapis", _, "stages", _]) => "UpdateStage",
        ("POST", ["vpclinks"]) => "CreateVpcLink",
        ("DELETE", ["vpclinks", _]) => "DeleteVpcLink",
        ("POST", ["2015-03-31", "functions"]) => "CreateFunction",
        ("POST", ["2015-03-31", "functions", _, "policy"]) => "AddPermission",
        ("PUT", ["2015-03-31", "functions", _, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", [_bucket]) if query.is_empty() => "CreateBucket",
        ("PUT", [_bucket]) if query.starts_with("publicAccessBlock") => "PutPublicAccessBlock",
        ("PUT", [_bucket]) if query.starts_with("encryption") => "PutBucketEncryption",
        ("PUT", [_bucket]) if query.starts_with("tagging") => "PutBucketTagging",
        _ => return None,
    };
    Some(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ec2,
    Query,
    Json,
    RestJson,
    S3,
}

pub fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if head.is_empty() {
                continue;
            }
            break;
        }
        head.push(line);
    }
    let mut request = Request { head, body: Vec::new() };
    if request.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        request.body = read_chunked(reader)?;
    } else if let Some(len) = request.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        request.body = vec![0; len];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            let mut trailer = String::new();
            while reader.read_line(&mut trailer)? > 2 {
                trailer.clear();
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Sends the request to moto on a fresh connection and returns its whole response:
/// status line, headers (hop-by-hop ones dropped) and body.
pub fn forward(upstream: &str, request: &Request) -> std::io::Result<(String, Vec<String>, Vec<u8>)> {
    let head_request = request.head[0].starts_with("HEAD ");
    let mut server = TcpStream::connect(upstream)?;
    let mut out = Vec::new();
    out.extend_from_slice(request.head[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in &request.head[1..] {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if ["connection", "content-length", "transfer-encoding", "keep-alive"].contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", request.body.len()).as_bytes());
    out.extend_from_slice(&request.body);
    server.write_all(&out)?;
    let mut reader = BufReader::new(server);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut headers = Vec::new();
    let (mut chunked, mut length) = (false, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            // A HEAD answer's length describes the object, not this (empty) body: keep it.
            "content-length" if head_request => headers.push(line),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "connection" | "keep-alive" => {}
            _ => headers.push(line),
        }
    }
    let no_body = head_request || [" 204 ", " 304 "].iter().any(|c| status.contains(c));
    let body = if no_body {
        Vec::new()
    } else if chunked {
        read_chunked(&mut reader)?
    } else if let Some(len) = length {
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok((status.trim_end().to_string(), headers, body))
}

pub fn respond(client: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("content-length:")) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    client.write_all(&out)
}

fn error_response(protocol: Protocol, fault: Fault, n: usize) -> (String, Vec<String>, Vec<u8>) {
    let request_id = format!("fault-{n}");
    let xml = vec!["Content-Type: text/xml".to_string()];
    let json = |kind: &str| vec!["Content-Type: application/x-amz-json-1.1".to_string(), format!("x-amzn-ErrorType: {kind}")];
    let throttle = fault == Fault::Throttle;
    match protocol {
        Protocol::Ec2 => {
            let (status, code) = if throttle { ("503 Service Unavailable", "RequestLimitExceeded") } else { ("500 Internal Server Error", "InternalError") };
            let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>");
            (format!("HTTP/1.1 {status}"), xml, body.into_bytes())
        }
        Protocol::Query => {
            let (status, kind, code) = if throttle { ("400 Bad Request", "Sender", "Throttling") } else { ("500 Internal Server Error", "Receiver", "InternalFailure") };
            let body = format!("<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>injected by the fault proxy</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>");
            (format!("HTTP/1.1 {status}"), xml, body.into_bytes())
        }
        Protocol::Json => {
            let (status, code) = if throttle { ("400 Bad Request", "ThrottlingException") } else { ("500 Internal Server Error", "InternalFailure") };
            let body = format!("{{\"__type\":\"{code}\",\"message\":\"injected by the fault proxy\"}}");
            (format!("HTTP/1.1 {status}"), json(code), body.into_bytes())
        }
        Protocol::RestJson => {
            let (status, code) = if throttle { ("429 Too Many Requests", "TooManyRequestsException") } else { ("500 Internal Server Error", "InternalFailure") };
            let body = "{\"message\":\"injected by the fault proxy\"}".to_string();
            (format!("HTTP/1.1 {status}"), json(code), body.into_bytes())
        }
        Protocol::S3 => {
            let (status, code) = if throttle { ("503 Slow Down", "SlowDown") } else { ("500 Internal Server Error", "InternalError") };
            let body = format!("<Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>{request_id}</RequestId></Error>");
            (format!("HTTP/1.1 {status}"), xml, body.into_bytes())
        }
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut n = 0;
    while let Some(request) = read_request(&mut reader)? {
        n += 1;
        let operation = request.operation();
        match shared.pick(&operation) {
            Some(Fault::Throttle) => {
                let (status, headers, body) = error_response(request.protocol(), Fault::Throttle, n);
                respond(&mut client, &status, &headers, &body)?;
            }
            Some(fault @ Fault::LostAnswer) => {
                forward(&shared.upstream, &request)?;
                let (status, headers, body) = error_response(request.protocol(), fault, n);
                respond(&mut client, &status, &headers, &body)?;
            }
            Some(Fault::Reset) => {
                forward(&shared.upstream, &request)?;
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            None => {
                let (status, headers, body) = forward(&shared.upstream, &request)?;
                respond(&mut client, &status, &headers, &body)?;
            }
        }
    }
    Ok(())
}
