//! Tests that drive the real `books-api` binary over loopback TCP.

mod support;

use std::time::{Duration, Instant};

use support::{free_port, good_auth, http, PgCluster, Service};

/// Runs curl with `args` (as the seed writes them) and returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed for this test (apt-get install curl)");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// Peak resident set size of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn seed_curl_walkthrough_works_unchanged_with_and_without_the_json_header() {
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut svc = Service::spawn(&pg.service_env(port), pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    // API Gateway forwards to http://user:password@alb/api/v1/book, so the
    // credentials arrive as basic auth; the rest is the seed's curl verbatim.
    let book_url = format!("http://{}:{}@127.0.0.1:{port}/api/v1/book", support::API_USER, support::API_PASSWORD);

    // List books
    let (status, body) = curl(&[&book_url]);
    assert_eq!((status, body.as_str()), (200, "[]"));

    // Create book (with the JSON header, as the seed writes it)
    let (status, body) = curl(&[
        "-X", "POST",
        "-H", "Content-Type: application/json",
        "--data", r#"{"title":"The Power of Geography","author":"Tim Marshall","year":2009}"#,
        &book_url,
    ]);
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["title"], "The Power of Geography");
    let id = created["ID"].as_i64().unwrap();

    // Create book without the header: curl -d sends application/x-www-form-urlencoded.
    let (status, body) = curl(&["-X", "POST", "-d", r#"{"title":"Prisoners of Geography","author":"Tim Marshall","year":2015}"#, &book_url]);
    assert_eq!(status, 200, "{body}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(second["title"], "Prisoners of Geography");
    assert_eq!(second["year"], 2015);

    // Read book
    let (status, body) = curl(&[&format!("{book_url}/{id}")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), created);

    // Update book, with and without the header
    let (status, body) = curl(&[
        "-X", "PUT",
        "-H", "Content-Type: application/json",
        "--data", r#"{"title":"The Gods are to blame","author":"John Doe","year":1992}"#,
        &format!("{book_url}/{id}"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["title"], "The Gods are to blame");
    let (status, body) = curl(&["-X", "PUT", "-d", r#"{"title":"The Gods Are Not to Blame","author":"Ola Rotimi","year":1968}"#, &format!("{book_url}/{id}")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["author"], "Ola Rotimi");

    // Delete book
    let (status, body) = curl(&["-X", "DELETE", &format!("{book_url}/{id}")]);
    assert_eq!((status, body.as_str()), (200, "{}"));

    // List: only the second book is left.
    let (status, body) = curl(&[&book_url]);
    assert_eq!(status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ID"], second["ID"]);
}

#[tokio::test]
async fn go_deployment_environment_connects_with_default_host_and_prefer_without_tls() {
    // The Go original's own deployment: DB_SSLMODE=prefer; DB_HOST unset
    // (defaults to localhost). The test cluster has no TLS.
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut env: Vec<_> = pg.service_env(port).into_iter().filter(|(k, _)| *k != "DB_HOST" && *k != "DB_SSLMODE").collect();
    env.push(("DB_SSLMODE", "prefer".into()));
    let mut svc = Service::spawn(&env, pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    let (status, body) = http(port, "GET", "/api/v1/readyz", None, None).await.unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"OK"}"#));
    let auth = good_auth();
    let (status, body) = http(port, "POST", "/api/v1/book", Some(&auth), Some(r#"{"title":"t","author":"a","year":1}"#)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let logs = svc.logs();
    assert!(logs.contains(r#"host: \"localhost\""#), "{logs}");
    assert!(logs.contains("sslmode: Prefer"), "{logs}");
}

#[tokio::test]
async fn list_of_50000_books_returns_all_of_them_with_rss_under_50_mb() {
    const BOOKS: i64 = 50_000;
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut svc = Service::spawn(&pg.service_env(port), pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    pg.sql()
        .await
        .batch_execute(&format!(
            "INSERT INTO books (created_at, updated_at, title, author, year)
             SELECT now(), now(), 'A book with a title of ordinary length, number ' || g, 'Author ' || g, 1900 + g % 120
             FROM generate_series(1, {BOOKS}) g"
        ))
        .await
        .unwrap();

    let (status, body) = http(port, "GET", "/api/v1/book", None, None).await.unwrap();
    assert_eq!(status, 200);
    let books: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a complete JSON array");
    assert_eq!(books.len() as i64, BOOKS);
    let ids: Vec<i64> = books.iter().map(|b| b["ID"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");
    assert_eq!((ids[0], ids[ids.len() - 1]), (1, BOOKS));

    let rss_mib = peak_rss_kib(svc.child.id()) as f64 / 1024.0;
    assert!(rss_mib < 50.0, "peak RSS {rss_mib:.1} MiB");
    eprintln!("50 000 books: {} bytes, peak RSS {rss_mib:.1} MiB", body.len());
}

#[tokio::test]
async fn sigterm_during_a_slow_request_lets_it_finish_then_exits_0() {
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut svc = Service::spawn(&pg.service_env(port), pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;

    let auth = good_auth();
    let (status, body) = http(port, "POST", "/api/v1/book", Some(&auth), Some(r#"{"title":"Slow","author":"Sloth","year":2001}"#))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // The container health check mode agrees.
    let hc = std::process::Command::new(env!("CARGO_BIN_EXE_books-api"))
        .arg("--healthcheck")
        .env("PORT", port.to_string())
        .status()
        .unwrap();
    assert!(hc.success());

    // Hold the table so the next read blocks inside the database.
    let mut locker = pg.sql().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE books IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let auth2 = auth.clone();
    let in_flight = tokio::spawn(async move { http(port, "GET", "/api/v1/book/1", Some(&auth2), None).await });

    // Wait until the service's query is really waiting on the lock.
    let watcher = pg.sql().await;
    let start = Instant::now();
    loop {
        let waiting: i64 = watcher
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'books'::regclass", &[])
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "request never blocked on the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    svc.signal(libc::SIGTERM);
    // The signal is taken once new connections are refused: the listener is closed.
    let start = Instant::now();
    while http(port, "GET", "/api/v1/healthz", None, None).await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "still accepting 10 s after SIGTERM\n{}", svc.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining: the process stays while its request waits on the lock.
    assert!(svc.child.try_wait().unwrap().is_none(), "exited with a request in flight\n{}", svc.logs());
    assert!(!in_flight.is_finished());

    tx.commit().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), in_flight).await.unwrap().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let book: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(book["title"], "Slow");

    let exit = svc.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.success(), "exit {exit}\n{}", svc.logs());

    // JSON logs with request ids, and neither password anywhere.
    let logs = svc.logs();
    assert!(logs.contains("shut down cleanly"), "{logs}");
    let request_line = logs
        .lines()
        .find(|l| l.contains("/api/v1/book/1") && l.contains("request_id"))
        .unwrap_or_else(|| panic!("no request log line\n{logs}"));
    serde_json::from_str::<serde_json::Value>(request_line).expect("log lines are JSON");
    assert!(!logs.contains(support::DB_PASSWORD), "DB password logged\n{logs}");
    assert!(!logs.contains(support::API_PASSWORD), "API password logged\n{logs}");
    assert!(logs.contains("<redacted>"));

    // And once it is gone the health check mode says so.
    let hc = std::process::Command::new(env!("CARGO_BIN_EXE_books-api"))
        .arg("--healthcheck")
        .env("PORT", port.to_string())
        .status()
        .unwrap();
    assert!(!hc.success());
}

#[tokio::test]
async fn startup_with_the_db_down_retries_then_succeeds_when_it_comes_up() {
    let mut pg = PgCluster::init(); // not started yet
    let port = free_port();
    let mut env = pg.service_env(port);
    env.push(("DB_CONNECT_TIMEOUT_SECS", "60".into()));
    let mut svc = Service::spawn(&env, pg.dir());

    // Wait on what the service says: two failed attempts logged, so it is retrying.
    let start = Instant::now();
    while svc.logs().matches("database not ready").count() < 2 {
        assert!(svc.child.try_wait().unwrap().is_none(), "gave up too early\n{}", svc.logs());
        assert!(start.elapsed() < Duration::from_secs(30), "no retry logged\n{}", svc.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(svc.child.try_wait().unwrap().is_none(), "gave up too early\n{}", svc.logs());
    assert!(http(port, "GET", "/api/v1/healthz", None, None).await.is_err(), "serving without a database");

    pg.start();
    pg.create_database(support::DB_NAME).await;
    svc.wait_healthy(Duration::from_secs(30)).await;
    let (status, body) = http(port, "GET", "/api/v1/book", None, None).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "[]"));
    let logs = svc.logs();
    assert!(logs.contains("database not ready"), "{logs}");
    assert!(logs.contains("database ready"), "{logs}");
}

#[tokio::test]
async fn startup_gives_up_after_the_connect_timeout() {
    let pg = PgCluster::init(); // never started
    let mut env = pg.service_env(free_port());
    env.push(("DB_CONNECT_TIMEOUT_SECS", "2".into()));
    let start = Instant::now();
    let mut svc = Service::spawn(&env, pg.dir());
    let exit = svc.wait_exit(Duration::from_secs(20)).await;
    assert!(!exit.success());
    assert!(start.elapsed() >= Duration::from_millis(1500), "did not retry");
    let logs = svc.logs();
    assert!(logs.contains("database not reachable within 2s"), "{logs}");
    assert!(!logs.contains(support::DB_PASSWORD));
}

#[tokio::test]
async fn startup_fails_naming_a_missing_or_bad_variable() {
    let pg = PgCluster::init();
    for (var, value) in [("DB_USER", None), ("BASIC_AUTH_PASSWORD", None), ("DB_SSLMODE", Some("sometimes")), ("PORT", Some("eighty"))] {
        let mut env: Vec<_> = pg.service_env(free_port()).into_iter().filter(|(k, _)| *k != var).collect();
        if let Some(v) = value {
            env.push((var, v.to_string()));
        }
        let mut svc = Service::spawn(&env, pg.dir());
        let exit = svc.wait_exit(Duration::from_secs(10)).await;
        assert!(!exit.success(), "{var}");
        let logs = svc.logs();
        let stderr = std::fs::read_to_string(&svc.stderr).unwrap();
        assert!(stderr.contains(var), "{var} not named: {logs}");
        assert!(!logs.contains(support::DB_PASSWORD) && !logs.contains(support::API_PASSWORD), "{logs}");
    }
}

#[tokio::test]
async fn sigterm_while_waiting_for_the_database_exits_0() {
    let pg = PgCluster::init(); // never started
    let mut env = pg.service_env(free_port());
    env.push(("DB_CONNECT_TIMEOUT_SECS", "60".into()));
    let mut svc = Service::spawn(&env, pg.dir());
    let start = Instant::now();
    while !svc.logs().contains("database not ready") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", svc.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    svc.signal(libc::SIGTERM);
    let exit = svc.wait_exit(Duration::from_secs(5)).await;
    assert!(exit.success(), "exit {exit}\n{}", svc.logs());
    assert!(svc.logs().contains("shutdown requested during start-up"));
}

#[tokio::test]
async fn access_lines_are_json_and_rust_log_can_drop_them() {
    let pg = PgCluster::new_running().await;
    for (filter, expect_line) in [("info", true), ("info,books_api::access=warn", false)] {
        let port = free_port();
        let mut env = pg.service_env(port);
        env.push(("RUST_LOG", filter.into()));
        let mut svc = Service::spawn(&env, pg.dir());
        svc.wait_healthy(Duration::from_secs(30)).await;
        let (status, _) = http(port, "GET", "/api/v1/book?limit=3", None, None).await.unwrap();
        assert_eq!(status, 200);
        svc.signal(libc::SIGTERM);
        assert!(svc.wait_exit(Duration::from_secs(10)).await.success());
        let logs = svc.logs();
        let line = logs.lines().find(|l| l.contains("/api/v1/book?limit=3"));
        assert_eq!(line.is_some(), expect_line, "RUST_LOG={filter}\n{logs}");
        if let Some(line) = line {
            let v: serde_json::Value = serde_json::from_str(line).expect("access line is JSON");
            assert_eq!(v["status"], 200);
            assert_eq!(v["method"], "GET");
            assert_eq!(v["target"], "books_api::access");
            assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
            assert!(v["latency_us"].is_u64() && v["timestamp"].is_string());
        }
        // Start-up lines are there either way.
        assert!(logs.contains("listening"), "{logs}");
    }
}

/// What infra's task definition gives an image built from source (DB_SSLMODE=verify-full,
/// DB_SSLROOTCERT=the CA bundle), against a TLS server with a throwaway CA: the real binary
/// connects when the chain and the host name check out, and refuses to start otherwise.
#[tokio::test]
async fn verify_full_with_a_root_certificate_connects_only_to_the_server_it_names() {
    let mut pg = PgCluster::init();
    let (tls_opts, ca) = pg.make_tls_files();
    pg.start_with(&tls_opts);
    pg.create_database(support::DB_NAME).await;
    let verified = |host: &str, root: &std::path::Path| {
        let mut env: Vec<(&str, String)> = pg.service_env(free_port()).into_iter().filter(|(k, _)| *k != "DB_SSLMODE" && *k != "DB_HOST").collect();
        env.extend([("DB_SSLMODE", "verify-full".to_string()), ("DB_SSLROOTCERT", root.display().to_string()), ("DB_HOST", host.to_string()), ("DB_CONNECT_TIMEOUT_SECS", "2".to_string())]);
        env
    };

    let env = verified("localhost", &ca);
    let mut svc = Service::spawn(&env, pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    let (status, _) = http(svc.port, "GET", "/api/v1/readyz", None, None).await.unwrap();
    assert_eq!(status, 200, "{}", svc.logs());
    let sessions: i64 = pg.sql().await.query_one("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND datname = $1", &[&support::DB_NAME]).await.unwrap().get(0);
    assert!(sessions > 0, "the service's sessions are not TLS");
    drop(svc);

    // The certificate names localhost, not 127.0.0.1: refused.
    let mut svc = Service::spawn(&verified("127.0.0.1", &ca), pg.dir());
    let exit = svc.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success(), "started against a server whose name does not match\n{}", svc.logs());

    // Another CA (a server certificate it did not sign): refused.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("other.key");
    let crt = other.path().join("other.crt");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=another CA"])
        .arg("-keyout").arg(&key).arg("-out").arg(&crt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut svc = Service::spawn(&verified("localhost", &crt), pg.dir());
    let exit = svc.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success(), "started trusting a CA that did not sign the server's certificate\n{}", svc.logs());
    assert!(svc.logs().to_lowercase().contains("certificate"), "the refusal names the certificate\n{}", svc.logs());
}

#[tokio::test]
async fn nul_in_title_or_author_is_400_naming_the_field_and_never_reaches_the_database() {
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut svc = Service::spawn(&pg.service_env(port), pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    let auth = good_auth();
    let (status, body) = http(port, "POST", "/api/v1/book", Some(&auth), Some(r#"{"title":"t","author":"a","year":1}"#)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let book: serde_json::Value = serde_json::from_str(&body).unwrap();
    let uri = format!("/api/v1/book/{}", book["ID"]);

    // The issue's body, and NUL in the title (a valid JSON escape, so the
    // body parses: the field is what is refused).
    for (body, field) in [
        (r#"{"title":"t","author":"x\u0000y","year":5}"#, "author"),
        (r#"{"title":"\u0000","author":"a","year":5}"#, "title"),
    ] {
        for (method, path) in [("POST", "/api/v1/book"), ("PUT", uri.as_str())] {
            let (status, answer) = http(port, method, path, Some(&auth), Some(body)).await.unwrap();
            assert_eq!(status, 400, "{method} {body}: {answer}");
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["field"], field, "{answer}");
            assert_eq!(v["error"], format!("{field} must not contain the NUL character (U+0000)"), "{answer}");
        }
        // A book that does not exist: 404, as for any other body.
        let (status, answer) = http(port, "PUT", "/api/v1/book/999999", Some(&auth), Some(body)).await.unwrap();
        assert_eq!((status, answer.as_str()), (404, r#"{"error":"book not found"}"#));
    }
    // Nothing written, and neither the service nor PostgreSQL logged an error.
    let (_, body) = http(port, "GET", &uri, Some(&auth), None).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), book);
    let rows: i64 = pg.sql().await.query_one("SELECT count(*) FROM books", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    svc.signal(libc::SIGTERM);
    assert!(svc.wait_exit(Duration::from_secs(10)).await.success());
    let logs = svc.logs();
    assert!(!logs.contains(r#""level":"ERROR""#), "{logs}");
    assert!(logs.contains(r#""status":400"#), "access lines written: {logs}");
    let pg_log = std::fs::read_to_string(pg.dir().join("postgres.log")).unwrap();
    assert!(!pg_log.contains("ERROR:"), "{pg_log}");
}

#[tokio::test]
async fn api_docs_served_by_the_binary_passes_an_openapi_3_validator() {
    let pg = PgCluster::new_running().await;
    let port = free_port();
    let mut svc = Service::spawn(&pg.service_env(port), pg.dir());
    svc.wait_healthy(Duration::from_secs(30)).await;
    let (status, body) = http(port, "GET", "/api-docs", None, None).await.unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    if let Err(said) = support::validate_openapi(&doc) {
        panic!("/api-docs is not a valid OpenAPI document:\n{said}\n{body}");
    }
    // No key holds null where OpenAPI wants an object or an array (the
    // shape of issue 19's `"parameters": null`).
    fn nulls(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let here = format!("{at}/{k}");
                    // A schema's `example`/`default` may be null; nothing else is.
                    if v.is_null() && k != "example" && k != "default" {
                        out.push(here.clone());
                    }
                    nulls(v, &here, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| nulls(v, &format!("{at}/{i}"), out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    nulls(&doc, "", &mut found);
    assert_eq!(found, Vec::<String>::new());
}
