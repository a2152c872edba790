//! `infra smoke`: the seed's curl walkthrough against the deployed API, one line per step
//! (`ok|FAIL  <step>: expected <x>, got <y>`), exit 1 on any mismatch. A temporary Cognito
//! user signs in for the protected methods and is deleted at the end, whatever happened.
//! With `--service URL` the book steps go to books-api itself, with basic auth as the load
//! balancer's integration sends it: a deployment's service checked without API Gateway.
//!
//! The expected answers are books-api's own, which API Gateway's HTTP_PROXY passes through:
//! POST answers 200 with the book, DELETE 200 `{}` (as the Go original does).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use super::cache::{flush_stage_cache, STAGE};
use super::token::access_token;
use super::user::{connect, create_user, delete_user, generate_password, password_from_stdin};
use crate::cli::Cli;
use crate::config::Settings;
use crate::resources::identity::user_pool::PasswordPolicy;
use crate::resources::Ctx;

/// Longer than API Gateway's 29 s integration timeout, so the 504 step sees its answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(40);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Over API Gateway's 10 MB payload limit (10485760 bytes).
const OVERSIZED_PAYLOAD_BYTES: usize = 11 * 1024 * 1024;
/// Without FlushStageCache, how long the after-delete GET retries while the stage cache
/// (GET /book/{bookId} is cached) may still hold the book: the TTL plus a margin.
const CACHE_WAIT: Duration = Duration::from_secs(65);

pub async fn run(cli: &Cli, settings: &Settings, quick: bool, url: Option<&str>, service: Option<&str>) -> Result<u8> {
    if let Some(service) = service {
        return run_against_service(cli, settings, service).await;
    }
    if url.is_none() {
        if let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()) {
            bail!(
                "the stack runs on an emulator (AWS_ENDPOINT_URL={endpoint}), where a deployed API Gateway cannot be invoked; run smoke against AWS, or pass --url"
            );
        }
    }
    if let Some(url) = url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("--url {url:?} is not an http(s) URL (expected e.g. https://<api>.execute-api.<region>.amazonaws.com/prod)");
        }
    }
    let (ctx, outputs) = connect(cli, settings).await?;
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => outputs.require("ApiGwUrl")?.to_string(),
    };
    let pool = outputs.require("UserPoolId")?.to_string();
    let client_id = outputs.require("AppClientId")?.to_string();
    let bucket = outputs.require("S3BucketName")?.to_string();
    // The stage cache can be flushed only when the URL is this stack's own API.
    let flushable = outputs
        .get("RestApiId")
        .filter(|api| outputs.get("ApiGwUrl") == Some(base.as_str()) || base.contains(&format!("//{api}.execute-api.")))
        .map(str::to_string);
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).connect_timeout(CONNECT_TIMEOUT).build()?;
    eprintln!("smoke test of {base}");
    let api = ApiGateway { ctx, pool, client_id, bucket, flushable, quick };
    let smoke = Smoke { http, base, api: Some(api), basic_auth: None, results: Vec::new(), user: None, book: None };
    Ok(finish(smoke).await)
}

/// `--service URL`: books-api itself, the basic-auth password from stdin or SSM.
async fn run_against_service(cli: &Cli, settings: &Settings, service: &str) -> Result<u8> {
    if !(service.starts_with("https://") || service.starts_with("http://")) {
        bail!("--service {service:?} is not an http(s) URL (expected e.g. http://10.0.70.12:8080)");
    }
    let password = match password_from_stdin()? {
        Some(password) => password,
        None => {
            let (ctx, _) = connect(cli, settings).await?;
            crate::resources::secrets::ssm_parameter::read_secret(&ctx, &settings.config.http_basic_auth_password_ssm_param).await?.value
        }
    };
    let basic_auth = basic_auth_header(&settings.config.http_basic_auth_user, &password);
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).connect_timeout(CONNECT_TIMEOUT).build()?;
    let base = format!("{}/api/v1", service.trim_end_matches('/'));
    eprintln!("smoke test of books-api at {base}");
    let smoke = Smoke { http, base, api: None, basic_auth: Some(basic_auth), results: Vec::new(), user: None, book: None };
    Ok(finish(smoke).await)
}

/// `Basic base64(user:password)`.
fn basic_auth_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn finish(mut smoke: Smoke) -> u8 {
    let interrupted = tokio::select! {
        _ = smoke.walkthrough() => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        eprintln!("\ninterrupted: cleaning up");
        smoke.record(Step::not_run("walkthrough", "every step", "interrupted"));
    }
    smoke.clean_up().await;
    let code = exit_code(&smoke.results);
    let failed = smoke.results.iter().filter(|s| !s.ok).count();
    eprintln!("smoke: {} steps, {failed} failed", smoke.results.len());
    code
}

/// One step's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    name: String,
    expected: String,
    got: String,
    ok: bool,
}

impl Step {
    fn new(name: impl Into<String>, expected: impl Into<String>, got: impl Into<String>, ok: bool) -> Step {
        Step { name: name.into(), expected: expected.into(), got: got.into(), ok }
    }

    /// A step that could not run because an earlier one failed.
    fn not_run(name: impl Into<String>, expected: impl Into<String>, why: &str) -> Step {
        Step::new(name, expected, format!("nothing: not run ({why})"), false)
    }

    fn line(&self) -> String {
        let verdict = if self.ok { "ok" } else { "FAIL" };
        format!("{verdict:<4}  {}: expected {}, got {}", self.name, self.expected, self.got)
    }
}

fn exit_code(steps: &[Step]) -> u8 {
    if !steps.is_empty() && steps.iter().all(|s| s.ok) {
        0
    } else {
        1
    }
}

/// What came back: a status and body, or why nothing did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    status: u16,
    body: String,
}

type Answer = std::result::Result<Reply, String>;

/// "200", "413 or 404".
fn expected_statuses(statuses: &[u16]) -> String {
    statuses.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
}

/// The start of a body on one line, for a `got`.
fn snippet(body: &str) -> String {
    const MAX: usize = 100;
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "an empty body".into();
    }
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

fn describe(answer: &Answer) -> String {
    match answer {
        Ok(reply) => format!("{} and {}", reply.status, snippet(&reply.body)),
        Err(why) => format!("no response ({why})"),
    }
}

/// The status alone decides.
fn check_status(name: &str, expected: &[u16], answer: &Answer) -> Step {
    let ok = matches!(answer, Ok(r) if expected.contains(&r.status));
    let got = match answer {
        Ok(r) if ok => r.status.to_string(),
        _ => describe(answer),
    };
    Step::new(name, expected_statuses(expected), got, ok)
}

fn check_list(answer: &Answer) -> Step {
    let name = "GET /book";
    let expected = "200 and a JSON array";
    match answer {
        Ok(r) if r.status == 200 => match serde_json::from_str::<Value>(&r.body) {
            Ok(Value::Array(books)) => Step::new(name, expected, format!("200 and a JSON array of {}", books.len()), true),
            _ => Step::new(name, expected, describe(answer), false),
        },
        _ => Step::new(name, expected, describe(answer), false),
    }
}

/// POST /book: 200 (books-api's answer, as the Go original's) and the new book's "ID" (a
/// number in books-api, a string accepted).
fn check_created(answer: &Answer) -> (Step, Option<String>) {
    let name = "POST /book";
    let expected = "200 and a book with an ID";
    let id = match answer {
        Ok(r) if r.status == 200 => serde_json::from_str::<Value>(&r.body).ok().and_then(|v| match v.get("ID") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    };
    match id {
        Some(id) => (Step::new(name, expected, format!("200 and ID {id}"), true), Some(id)),
        None => (Step::new(name, expected, describe(answer), false), None),
    }
}

/// DELETE /book/{id}: 200 and `{}` (books-api's answer, as the Go original's).
fn check_deleted(name: &str, answer: &Answer) -> Step {
    let expected = "200 and {}";
    let ok = matches!(answer, Ok(r) if r.status == 200 && serde_json::from_str::<Value>(&r.body).ok() == Some(serde_json::json!({})));
    let got = if ok { expected.to_string() } else { describe(answer) };
    Step::new(name, expected, got, ok)
}

/// 200 and the book's "title".
fn check_title(name: &str, title: &str, answer: &Answer) -> Step {
    let expected = format!("200 and title {title:?}");
    match answer {
        Ok(r) if r.status == 200 => match serde_json::from_str::<Value>(&r.body).ok().as_ref().and_then(|v| v.get("title")).and_then(Value::as_str) {
            Some(found) => Step::new(name, expected, format!("200 and title {found:?}"), found == title),
            None => Step::new(name, expected, describe(answer), false),
        },
        _ => Step::new(name, expected, describe(answer), false),
    }
}

/// What the walkthrough through API Gateway also needs: Cognito, the stage, the limits.
struct ApiGateway {
    ctx: Ctx,
    pool: String,
    client_id: String,
    bucket: String,
    /// The REST API whose stage cache may be flushed (the URL is this stack's).
    flushable: Option<String>,
    quick: bool,
}

struct Smoke {
    http: reqwest::Client,
    /// Where `/book` is: the stage URL, or `<service>/api/v1`.
    base: String,
    /// `None`: books-api itself (`--service`).
    api: Option<ApiGateway>,
    /// The header books-api itself wants (`--service`).
    basic_auth: Option<String>,
    results: Vec<Step>,
    /// The temporary user, once its creation has been asked for: deleted at the end.
    user: Option<String>,
    /// The book created, until a DELETE of it succeeded.
    book: Option<String>,
}

impl Smoke {
    fn record(&mut self, step: Step) {
        println!("{}", step.line());
        let _ = std::io::stdout().flush();
        self.results.push(step);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport_error)?;
        Ok(Reply { status, body })
    }

    async fn walkthrough(&mut self) {
        let list = self.send(self.http.get(self.url("/book"))).await;
        self.record(check_list(&list));

        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let title = format!("The Power of Geography (smoke {tag})");
        let book = serde_json::json!({"title": title, "author": "Tim Marshall", "year": 2009});
        // Through API Gateway POST has no authorizer (the integration carries basic auth);
        // books-api itself wants the basic auth.
        let mut post = self.http.post(self.url("/book")).json(&book);
        if let Some(basic) = &self.basic_auth {
            post = post.header("Authorization", basic);
        }
        let created = self.send(post).await;
        let (step, id) = check_created(&created);
        self.record(step);
        self.book = id.clone();

        let token = match &self.basic_auth {
            Some(basic) => Some(basic.clone()),
            None => self.temporary_user().await,
        };

        let (id, token) = match (id, token) {
            (Some(id), Some(token)) => (id, token),
            (id, token) => {
                let why = match (id, token) {
                    (None, _) => "no book ID from POST /book",
                    _ => "no access token for the temporary user",
                };
                self.record(Step::not_run("GET /book/{id} without Authorization", "401", why));
                self.record(Step::not_run("GET /book/{id} with the access token", "200", why));
                self.record(Step::not_run("PUT /book/{id}", "200", why));
                self.record(Step::not_run("DELETE /book/{id}", "200 and {}", why));
                self.record(Step::not_run("GET /book/{id} after DELETE", "404", why));
                return self.limits().await;
            }
        };
        let book_url = self.url(&format!("/book/{id}"));
        let anonymous = self.send(self.http.get(&book_url)).await;
        self.record(check_status(&format!("GET /book/{id} without Authorization"), &[401], &anonymous));

        let read = self.send(self.http.get(&book_url).header("Authorization", &token)).await;
        self.record(check_title(&format!("GET /book/{id} with the access token"), &title, &read));

        let new_title = format!("The Gods are to blame (smoke {tag})");
        let update = serde_json::json!({"title": new_title, "author": "John Doe", "year": 1992});
        let updated = self.send(self.http.put(&book_url).header("Authorization", &token).json(&update)).await;
        self.record(check_title(&format!("PUT /book/{id}"), &new_title, &updated));

        let deleted = self.send(self.http.delete(&book_url).header("Authorization", &token)).await;
        let step = check_deleted(&format!("DELETE /book/{id}"), &deleted);
        if step.ok {
            self.book = None;
        }
        self.record(step);

        if self.api.is_none() {
            let gone = self.send(self.http.get(&book_url).header("Authorization", &token)).await;
            self.record(check_status(&format!("GET /book/{id} after DELETE"), &[404], &gone));
            return;
        }
        // GET /book/{bookId} is cached: the earlier 200 would answer for up to the TTL.
        let (name, gone) = match self.flush_cache().await {
            Ok(api) => {
                let name = format!("GET /book/{id} after DELETE (stage cache of {api} flushed)");
                (name, self.send(self.http.get(&book_url).header("Authorization", &token)).await)
            }
            Err(why) => {
                eprintln!("note: {why}; retrying GET /book/{id} for up to {}s while the stage cache may still hold it", CACHE_WAIT.as_secs());
                let started = Instant::now();
                let mut answer = self.send(self.http.get(&book_url).header("Authorization", &token)).await;
                while matches!(&answer, Ok(r) if r.status == 200) && started.elapsed() < CACHE_WAIT {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    answer = self.send(self.http.get(&book_url).header("Authorization", &token)).await;
                }
                (format!("GET /book/{id} after DELETE"), answer)
            }
        };
        self.record(check_status(&name, &[404], &gone));
        self.limits().await;
    }

    /// Creates the temporary user and signs it in: the access token, or a failed step.
    async fn temporary_user(&mut self) -> Option<String> {
        let email = format!("smoke-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = generate_password(&PasswordPolicy::strong());
        let name = format!("create temporary user {email} and sign in");
        let api = self.api.as_ref()?;
        let token = async {
            create_user(&api.ctx, &api.pool, &email, &password).await?;
            access_token(&api.ctx, &api.client_id, &email, &password).await
        }
        .await;
        self.user = Some(email.clone());
        match token {
            Ok(token) => {
                self.record(Step::new(name, "an access token", "an access token", true));
                Some(token)
            }
            Err(e) => {
                self.record(Step::new(name, "an access token", format!("{e:#}"), false));
                None
            }
        }
    }

    async fn flush_cache(&self) -> std::result::Result<String, String> {
        let Some((ctx, api)) = self.api.as_ref().and_then(|a| Some((&a.ctx, a.flushable.as_ref()?))) else {
            return Err(format!("{} is not this stack's API, so its stage cache cannot be flushed", self.base));
        };
        match flush_stage_cache(ctx, api, STAGE).await {
            Ok(()) => Ok(api.clone()),
            Err(e) => Err(format!("flushing the stage cache failed: {e:#}")),
        }
    }

    /// The seed's two API Gateway limits: the 10 MB payload and the 29 s integration timeout.
    async fn limits(&mut self) {
        let Some(api) = &self.api else { return };
        let (bucket, quick) = (api.bucket.clone(), api.quick);
        let path = format!("/limits/payload/{bucket}");
        let body = vec![b'x'; OVERSIZED_PAYLOAD_BYTES];
        let payload = self.send(self.http.post(self.url(&path)).header("Content-Type", "application/octet-stream").body(body)).await;
        self.record(check_status(&format!("POST {path} with 11 MiB"), &[413], &payload));

        if quick {
            eprintln!("skipped GET /limits/time/exceed (--quick)");
            return;
        }
        let started = Instant::now();
        let slow = self.send(self.http.get(self.url("/limits/time/exceed"))).await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut step = check_status("GET /limits/time/exceed", &[504], &slow);
        step.expected = "504 after ~29 s".into();
        step.got = format!("{} after {elapsed:.1} s", step.got);
        self.record(step);
    }

    /// Deletes what the walkthrough left: the book (when its DELETE did not pass) and the
    /// temporary user (always). The user's deletion is a step: a leftover user is a failure.
    async fn clean_up(&mut self) {
        if let Some(id) = self.book.take() {
            eprintln!("note: book {id} was not deleted by the walkthrough; it stays in the database (DELETE needs a signed-in user or the basic-auth password)");
        }
        if let (Some(email), Some(api)) = (self.user.take(), &self.api) {
            let name = format!("delete temporary user {email}");
            let step = match delete_user(&api.ctx, &api.pool, &email).await {
                Ok(_) => Step::new(name, "deleted", "deleted", true),
                Err(e) => Step::new(name, "deleted", format!("{e:#} (delete it with `infra user delete {email}`)"), false),
            };
            self.record(step);
        }
    }
}

/// The innermost cause of a failed request on one line ("connection refused"), without
/// the URL (the step names it).
fn transport_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", HTTP_TIMEOUT.as_secs());
    }
    let e = e.without_url();
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Answer {
        Ok(Reply { status, body: body.into() })
    }

    #[test]
    fn a_line_says_verdict_step_expected_and_got() {
        assert_eq!(Step::new("GET /book", "200 and a JSON array", "200 and a JSON array of 2", true).line(), "ok    GET /book: expected 200 and a JSON array, got 200 and a JSON array of 2");
        assert_eq!(Step::new("DELETE /book/7", "200 and {}", "500 and an empty body", false).line(), "FAIL  DELETE /book/7: expected 200 and {}, got 500 and an empty body");
    }

    #[test]
    fn exit_code_is_zero_only_when_every_step_passed() {
        let ok = Step::new("a", "1", "1", true);
        let failed = Step::new("b", "1", "2", false);
        assert_eq!(exit_code(&[ok.clone(), ok.clone()]), 0);
        assert_eq!(exit_code(&[ok.clone(), failed.clone(), ok]), 1);
        assert_eq!(exit_code(&[failed]), 1);
        assert_eq!(exit_code(&[]), 1, "no step run is no proof");
    }

    #[test]
    fn a_delete_is_200_with_an_empty_object_as_books_api_answers() {
        assert!(check_deleted("DELETE /book/1", &reply(200, "{}")).ok);
        assert!(!check_deleted("DELETE /book/1", &reply(204, "")).ok, "books-api never answers 204");
        let step = check_deleted("DELETE /book/1", &reply(404, r#"{"error": "book 1 not found"}"#));
        assert!(!step.ok);
        assert_eq!(step.line(), r#"FAIL  DELETE /book/1: expected 200 and {}, got 404 and {"error": "book 1 not found"}"#);
    }

    #[test]
    fn status_checks_want_the_expected_status() {
        assert!(check_status("GET /book/1 without Authorization", &[401], &reply(401, "")).ok);
        assert!(!check_status("GET /book/1 without Authorization", &[401], &reply(403, "")).ok);
        let step = check_status("GET /book/1 without Authorization", &[401], &Err("connection refused".into()));
        assert_eq!(step.got, "no response (connection refused)");
        assert!(!step.ok);
    }

    #[test]
    fn list_must_be_a_json_array() {
        assert_eq!(check_list(&reply(200, r#"[{"ID":1},{"ID":2}]"#)).got, "200 and a JSON array of 2");
        assert!(check_list(&reply(200, "[]")).ok);
        let step = check_list(&reply(200, r#"{"message":"Internal server error"}"#));
        assert!(!step.ok);
        assert_eq!(step.got, r#"200 and {"message":"Internal server error"}"#);
        assert!(!check_list(&reply(502, "[]")).ok);
    }

    #[test]
    fn created_book_must_be_200_with_an_id_as_books_api_answers() {
        let (step, id) = check_created(&reply(200, r#"{"ID":42,"title":"t","author":"a","year":2009}"#));
        assert!(step.ok);
        assert_eq!(id.as_deref(), Some("42"));
        assert_eq!(step.got, "200 and ID 42");
        assert_eq!(check_created(&reply(200, r#"{"ID":"abc"}"#)).1.as_deref(), Some("abc"));
        let (step, id) = check_created(&reply(201, r#"{"ID":42}"#));
        assert!(!step.ok, "books-api answers 200, as the Go original");
        assert_eq!(id, None);
        assert!(!check_created(&reply(200, r#"{"title":"t"}"#)).0.ok);
    }

    #[test]
    fn title_must_match() {
        let step = check_title("GET /book/1", "Dune", &reply(200, r#"{"ID":1,"title":"Dune"}"#));
        assert!(step.ok);
        assert_eq!(step.line(), r#"ok    GET /book/1: expected 200 and title "Dune", got 200 and title "Dune""#);
        let step = check_title("GET /book/1", "Dune", &reply(200, r#"{"ID":1,"title":"Emma"}"#));
        assert!(!step.ok);
        assert_eq!(step.got, r#"200 and title "Emma""#);
        assert!(!check_title("GET /book/1", "Dune", &reply(401, r#"{"message":"Unauthorized"}"#)).ok);
    }

    #[test]
    fn long_bodies_are_cut_on_one_line() {
        let body = format!("<html>\n  <body>{}</body>\n</html>", "x".repeat(300));
        let got = snippet(&body);
        assert!(!got.contains('\n'));
        assert_eq!(got.chars().count(), 101);
        assert!(got.ends_with('…'));
        assert_eq!(snippet("  \n"), "an empty body");
    }

    #[test]
    fn a_step_not_run_fails() {
        let step = Step::not_run("PUT /book/{id}", "200", "no book ID from POST /book");
        assert!(!step.ok);
        assert_eq!(step.line(), "FAIL  PUT /book/{id}: expected 200, got nothing: not run (no book ID from POST /book)");
    }
}
