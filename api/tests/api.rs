//! Router-level tests: `app(state).oneshot(request)` against a real,
//! throwaway PostgreSQL (one cluster per test, see `support`).

mod support;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::{basic, good_auth, test_app, TestApp};
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    raw: String,
}

async fn send(t: &TestApp, method: &str, uri: &str, auth: Option<&str>, body: Option<(&str, &str)>) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = match body {
        Some((content_type, b)) => req.header(header::CONTENT_TYPE, content_type).body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = t.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp { status, headers, body, raw }
}

async fn send_json(t: &TestApp, method: &str, uri: &str, body: &str) -> Resp {
    let auth = good_auth();
    send(t, method, uri, Some(&auth), Some(("application/json", body))).await
}

async fn get_auth(t: &TestApp, uri: &str) -> Resp {
    let auth = good_auth();
    send(t, "GET", uri, Some(&auth), None).await
}

fn assert_book_shape(b: &Value) {
    let obj = b.as_object().expect("book object");
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["CreatedAt", "DeletedAt", "ID", "UpdatedAt", "author", "title", "year"], "{b}");
    assert!(b["DeletedAt"].is_null());
    for k in ["CreatedAt", "UpdatedAt"] {
        let s = b[k].as_str().expect("timestamp string");
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{k}={s} not RFC 3339: {e}"));
    }
}

#[tokio::test]
async fn crud_walkthrough_of_the_seed() {
    let t = test_app().await;

    let r = send_json(&t, "POST", "/api/v1/book", r#"{"title":"The Go Programming Language","author":"Alan A. A. Donovan","year":2015}"#).await;
    assert_eq!(r.status, StatusCode::OK, "create answers 200 as the Go original: {}", r.raw);
    assert_book_shape(&r.body);
    let id = r.body["ID"].as_i64().unwrap();
    assert_eq!(r.body["title"], "The Go Programming Language");
    assert_eq!(r.body["author"], "Alan A. A. Donovan");
    assert_eq!(r.body["year"], 2015);

    let r2 = send_json(&t, "POST", "/api/v1/book", r#"{"title":"Rust in Action","author":"Tim McNamara","year":2021}"#).await;
    assert_eq!(r2.status, StatusCode::OK);

    // List is public.
    let list = send(&t, "GET", "/api/v1/book", None, None).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["ID"], id);
    items.iter().for_each(assert_book_shape);

    let read = get_auth(&t, &format!("/api/v1/book/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, r.body);

    let upd = send_json(&t, "PUT", &format!("/api/v1/book/{id}"), r#"{"title":"The Go Programming Language (2nd ed.)","author":"Donovan & Kernighan","year":2016}"#).await;
    assert_eq!(upd.status, StatusCode::OK, "{}", upd.raw);
    assert_book_shape(&upd.body);
    assert_eq!(upd.body["ID"], id);
    assert_eq!(upd.body["title"], "The Go Programming Language (2nd ed.)");
    assert_eq!(upd.body["year"], 2016);
    assert_eq!(upd.body["CreatedAt"], r.body["CreatedAt"]);
    let ts = |v: &Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(ts(&upd.body["UpdatedAt"]) >= ts(&r.body["UpdatedAt"]));
    assert_eq!(get_auth(&t, &format!("/api/v1/book/{id}")).await.body, upd.body);

    let auth = good_auth();
    let del = send(&t, "DELETE", &format!("/api/v1/book/{id}"), Some(&auth), None).await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.raw, "{}", "delete answers {{}} as the Go original");
    assert_eq!(del.headers[header::CONTENT_TYPE], "application/json");

    let gone = get_auth(&t, &format!("/api/v1/book/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body["error"], "book not found");

    // Deleted books are invisible to every route.
    let list = send(&t, "GET", "/api/v1/book", None, None).await;
    let ids: Vec<_> = list.body.as_array().unwrap().iter().map(|b| b["ID"].clone()).collect();
    assert_eq!(ids, [r2.body["ID"].clone()]);
    let upd = send_json(&t, "PUT", &format!("/api/v1/book/{id}"), r#"{"title":"x","author":"y","year":1}"#).await;
    assert_eq!(upd.status, StatusCode::NOT_FOUND);
    let del = send(&t, "DELETE", &format!("/api/v1/book/{id}"), Some(&auth), None).await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn protected_routes_return_401_without_or_with_wrong_credentials() {
    let t = test_app().await;
    let created = send_json(&t, "POST", "/api/v1/book", r#"{"title":"t","author":"a","year":2000}"#).await;
    let id = created.body["ID"].as_i64().unwrap();
    let book = format!("/api/v1/book/{id}");
    let body = r#"{"title":"t2","author":"a2","year":2001}"#;

    let wrong = [
        None,
        Some(basic(support::API_USER, "wrong")),
        Some(basic("intruder", support::API_PASSWORD)),
        Some(basic(support::API_USER, "")),
        Some(format!("Bearer {}", support::API_PASSWORD)),
        Some("Basic not-base64!".to_string()),
    ];
    for (method, uri, with_body) in
        [("POST", "/api/v1/book", true), ("GET", book.as_str(), false), ("PUT", book.as_str(), true), ("DELETE", book.as_str(), false)]
    {
        for auth in &wrong {
            let r = send(&t, method, uri, auth.as_deref(), with_body.then_some(("application/json", body))).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri} with {auth:?}");
            let www = r.headers.get(header::WWW_AUTHENTICATE).expect("WWW-Authenticate").to_str().unwrap();
            assert!(www.starts_with("Basic realm="), "{www}");
            assert_eq!(r.body["error"], "unauthorized");
        }
        // Auth is checked before the id: a missing book is 401 too.
        let missing = if uri == book { "/api/v1/book/999999" } else { uri };
        let r = send(&t, method, missing, None, with_body.then_some(("application/json", body))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    // Nothing was changed by the refused requests.
    let r = get_auth(&t, &book).await;
    assert_eq!(r.body, created.body);
    let list = send(&t, "GET", "/api/v1/book", None, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

/// Every body the service refuses, with the field it names: all the Go
/// original refuses, plus our bounds (1000 characters, no NUL, year exact).
fn invalid_bodies() -> Vec<(String, &'static str)> {
    let long = "x".repeat(1001);
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"author":"a","year":2000}"#, "title"),
        (r#"{"title":"","author":"a","year":2000}"#, "title"),
        (r#"{"title":null,"author":"a","year":2000}"#, "title"),
        (r#"{"title":42,"author":"a","year":2000}"#, "title"),
        // PostgreSQL text cannot hold U+0000 (issue 19: this was a 500).
        (r#"{"title":"a\u0000b","author":"a","year":2000}"#, "title"),
        (r#"{"title":"\u0000","author":"a","year":2000}"#, "title"),
        (r#"{"title":"t","year":2000}"#, "author"),
        (r#"{"title":"t","author":"","year":2000}"#, "author"),
        (r#"{"title":"t","author":["a"],"year":2000}"#, "author"),
        (r#"{"title":"t","author":"x\u0000y","year":5}"#, "author"),
        (r#"{"title":"t","author":"a"}"#, "year"),
        (r#"{"title":"t","author":"a","year":0}"#, "year"),
        (r#"{"title":"t","author":"a","year":-0.0}"#, "year"),
        (r#"{"title":"t","author":"a","year":null}"#, "year"),
        (r#"{"title":"t","author":"a","year":"2000"}"#, "year"),
        (r#"{"title":"t","author":"a","year":2000.5}"#, "year"),
        (r#"{"title":"t","author":"a","year":true}"#, "year"),
        (r#"{"title":"t","author":"a","year":9223372036854775808}"#, "year"),
        (r#"{"title":"t","author":"a","year":99999999999999999999}"#, "year"),
        (r#"{"title":"t","author":"a","year":1e300}"#, "year"),
        // Beyond f64's 53 bits: decided from the text, never rounded into range or to an integer.
        (r#"{"title":"t","author":"a","year":-9223372036854775809}"#, "year"),
        (r#"{"title":"t","author":"a","year":9223372036854775807.5}"#, "year"),
        (r#"{"title":"t","author":"a","year":100000000000000000.5}"#, "year"),
        (r#"{"title":"t","author":"a","year":1e19}"#, "year"),
        (r#"{"title":"t","author":"a","year":5e-1}"#, "year"),
        (r#"{"title":"t","author":"a","year":2000"#, "body"),
        (r#"not json"#, "body"),
        (r#"["t","a",2000]"#, "body"),
        (r#""a string""#, "body"),
        ("", "body"),
        ("title=t&author=a&year=2000", "body"),
        // A raw control character inside a string is not JSON.
        ("{\"title\":\"a\0b\",\"author\":\"a\",\"year\":1}", "body"),
        // A lone surrogate escape is no character: refused on purpose (see the README).
        (r#"{"title":"t\ud800","author":"a","year":1}"#, "body"),
        (r#"{"title":"t","author":"\udc00x","year":1}"#, "body"),
        // null decodes to nothing in Go: the first missing field is named.
        ("null", "title"),
    ];
    let mut cases: Vec<(String, &'static str)> = cases.into_iter().map(|(b, f)| (b.to_string(), f)).collect();
    cases.push((format!(r#"{{"title":"{long}","author":"a","year":1}}"#), "title"));
    cases.push((format!(r#"{{"title":"t","author":"{}","year":1}}"#, "é".repeat(1001)), "author"));
    cases
}

/// The ERROR lines of the test cluster's server log: a statement PostgreSQL
/// refused (as a NUL in a text parameter) shows there.
fn postgres_errors(t: &TestApp) -> Vec<String> {
    let log = std::fs::read_to_string(t.pg.dir().join("postgres.log")).unwrap();
    log.lines().filter(|l| l.contains("ERROR:")).map(str::to_string).collect()
}

#[tokio::test]
async fn every_validation_case_is_400_naming_the_field() {
    let t = test_app().await;
    let created = send_json(&t, "POST", "/api/v1/book", r#"{"title":"t","author":"a","year":2000}"#).await;
    let book = format!("/api/v1/book/{}", created.body["ID"]);
    let cases = invalid_bodies();

    // Everything the Go original refuses, and our bounds, is refused naming
    // the field — before any query: nothing reaches PostgreSQL to fail there.
    let auth = good_auth();
    for (method, uri) in [("POST", "/api/v1/book"), ("PUT", book.as_str())] {
        for (body, field) in &cases {
            for ct in ["application/json", "application/x-www-form-urlencoded"] {
                let r = send(&t, method, uri, Some(&auth), Some((ct, body))).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {ct} {body}: {}", r.raw);
                assert_eq!(r.body["field"], *field, "{method} {ct} {body}: {}", r.raw);
                assert!(r.body["error"].as_str().unwrap().len() > 3);
            }
        }
        // No body at all.
        let r = send(&t, method, uri, Some(&auth), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["field"], "body");
    }

    // Query parameters of the list.
    for (q, field) in [("limit=0", "limit"), ("limit=-5", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset"), ("offset=x", "offset")] {
        let r = send(&t, "GET", &format!("/api/v1/book?{q}"), None, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.body["field"], field, "{q}");
    }
    // The stored book is unchanged by all of the above, and PostgreSQL
    // refused no statement.
    assert_eq!(get_auth(&t, &book).await.body, created.body);
    assert_eq!(postgres_errors(&t), Vec::<String>::new());
}

#[tokio::test]
async fn put_of_a_missing_book_is_404_whatever_the_body() {
    let t = test_app().await;
    let auth = good_auth();
    let deleted = send_json(&t, "POST", "/api/v1/book", r#"{"title":"t","author":"a","year":2000}"#).await.body["ID"].clone();
    assert_eq!(send(&t, "DELETE", &format!("/api/v1/book/{deleted}"), Some(&auth), None).await.status, StatusCode::OK);
    let kept = send_json(&t, "POST", "/api/v1/book", r#"{"title":"kept","author":"a","year":1}"#).await;
    let big = format!(r#"{{"title":"{}","author":"a","year":2000}}"#, "x".repeat(70 * 1024));

    let mut bodies: Vec<String> = invalid_bodies().into_iter().map(|(b, _)| b).collect();
    bodies.push(r#"{"title":"valid","author":"a","year":1}"#.into());
    bodies.push(big.clone());
    for id in [deleted.to_string(), "999999".into(), "0".into()] {
        let uri = format!("/api/v1/book/{id}");
        for body in &bodies {
            let r = send(&t, "PUT", &uri, Some(&auth), Some(("application/json", body))).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "PUT {uri} {body:.80}: {}", r.raw);
            assert_eq!(r.body["error"], "book not found", "PUT {uri} {body:.80}");
        }
        let r = send(&t, "PUT", &uri, Some(&auth), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "PUT {uri} without a body: {}", r.raw);
    }
    // For a book that exists, the body's fault is told (413 here; the 400s
    // in every_validation_case_is_400_naming_the_field).
    let uri = format!("/api/v1/book/{}", kept.body["ID"]);
    let r = send_json(&t, "PUT", &uri, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.raw);
    assert_eq!(get_auth(&t, &uri).await.body, kept.body);
    // Nothing stored, no statement refused.
    let rows: i64 = t.pg.sql().await.query_one("SELECT count(*) FROM books", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2);
    assert_eq!(postgres_errors(&t), Vec::<String>::new());
}

#[tokio::test]
async fn input_the_go_original_accepts_is_accepted() {
    let t = test_app().await;
    let auth = good_auth();
    let max_title = "ü".repeat(1000);
    let max_body = format!(r#"{{"title":"{max_title}","author":"a","year":1}}"#);
    // (content type, body, expected title, author, year)
    let cases: Vec<(Option<&str>, &str, &str, &str, i64)> = vec![
        // Any content type, or none: the body is JSON regardless.
        (Some("application/x-www-form-urlencoded"), r#"{"title":"Form","author":"curl -d","year":2009}"#, "Form", "curl -d", 2009),
        (Some("text/plain"), r#"{"title":"Plain","author":"a","year":1}"#, "Plain", "a", 1),
        (Some("application/json; charset=utf-8"), r#"{"title":"Charset","author":"a","year":1}"#, "Charset", "a", 1),
        (None, r#"{"title":"None","author":"a","year":1}"#, "None", "a", 1),
        // Keys matched case-insensitively; the last match wins.
        (Some("application/json"), r#"{"Title":"Upper","AUTHOR":"Caps","Year":1992}"#, "Upper", "Caps", 1992),
        (Some("application/json"), r#"{"title":"first","TITLE":"last","author":"a","year":1}"#, "last", "a", 1),
        // null leaves a field as it was.
        (Some("application/json"), r#"{"title":"kept","title":null,"author":"a","year":1}"#, "kept", "a", 1),
        // Unknown keys ignored, whatever their value.
        (Some("application/json"), r#"{"title":"t","author":"a","year":2000,"isbn":"123","ID":7,"CreatedAt":{"x":[1]}}"#, "t", "a", 2000),
        // year: any non-zero 64-bit integer, as Go's int.
        (Some("application/json"), r#"{"title":"t","author":"a","year":-500}"#, "t", "a", -500),
        (Some("application/json"), r#"{"title":"t","author":"a","year":10000}"#, "t", "a", 10000),
        (Some("application/json"), r#"{"title":"t","author":"a","year":9223372036854775807}"#, "t", "a", i64::MAX),
        (Some("application/json"), r#"{"title":"t","author":"a","year":-9223372036854775808}"#, "t", "a", i64::MIN),
        // Integral numbers with a fraction or exponent (our deliberate choice, see BookInput).
        (Some("application/json"), r#"{"title":"t","author":"a","year":1084.0}"#, "t", "a", 1084),
        (Some("application/json"), r#"{"title":"t","author":"a","year":2e3}"#, "t", "a", 2000),
        (Some("application/json"), r#"{"title":"t","author":"a","year":1200e-2}"#, "t", "a", 12),
        // ...exactly, beyond f64's 53 bits too.
        (Some("application/json"), r#"{"title":"t","author":"a","year":1234567890123456789.0}"#, "t", "a", 1_234_567_890_123_456_789),
        (Some("application/json"), r#"{"title":"t","author":"a","year":-9223372036854775808.0}"#, "t", "a", i64::MIN),
        (Some("application/json"), r#"{"title":"t","author":"a","year":9.223372036854775807e18}"#, "t", "a", i64::MAX),
        // A surrogate pair is one character (a lone one is refused).
        (Some("application/json"), r#"{"title":"\ud83d\ude00","author":"\u00e9","year":1}"#, "😀", "é", 1),
        // Whitespace is a non-empty title in Go too.
        (Some("application/json"), r#"{"title":"   ","author":" ","year":1}"#, "   ", " ", 1),
        // Only the first JSON value is read, as json.Decoder does.
        (Some("application/json"), "{\"title\":\"t\",\"author\":\"a\",\"year\":1}\n{\"more\":1} trailing", "t", "a", 1),
        (Some("application/json"), &max_body, &max_title, "a", 1),
    ];
    for (ct, body, title, author, year) in cases {
        for (method, uri) in [("POST", "/api/v1/book".to_string()), ("PUT", "/api/v1/book/1".to_string())] {
            let r = send(&t, method, &uri, Some(&auth), ct.map(|c| (c, body))).await;
            let r = if ct.is_none() {
                // `send` only sets a body with a content type: build it by hand.
                let req = Request::builder()
                    .method(method)
                    .uri(&uri)
                    .header(header::AUTHORIZATION, &auth)
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let resp = t.router.clone().oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                Resp { status, headers: HeaderMap::new(), body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), raw: String::from_utf8_lossy(&bytes).into() }
            } else {
                r
            };
            assert_eq!(r.status, StatusCode::OK, "{method} {ct:?} {body}: {}", r.raw);
            assert_eq!((r.body["title"].as_str().unwrap(), r.body["author"].as_str().unwrap()), (title, author), "{body}");
            assert_eq!(r.body["year"].as_i64().unwrap(), year, "{body}");
            // Stored as answered.
            let id = r.body["ID"].as_i64().unwrap();
            let stored = get_auth(&t, &format!("/api/v1/book/{id}")).await;
            assert_eq!(stored.body, r.body);
        }
    }
}

#[tokio::test]
async fn body_over_64_kib_is_413() {
    let t = test_app().await;
    let big = format!(r#"{{"title":"{}","author":"a","year":2000}}"#, "x".repeat(70 * 1024));
    let r = send_json(&t, "POST", "/api/v1/book", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.raw);
    assert!(r.body["error"].is_string());
    // PUT: 413 for a book that exists, 404 for a missing one (see
    // put_of_a_missing_book_is_404_whatever_the_body).
}

#[tokio::test]
async fn bad_ids_are_400_naming_id_and_missing_books_404_on_every_verb() {
    let t = test_app().await;
    let auth = good_auth();
    let body = r#"{"title":"t","author":"a","year":2000}"#;
    for id in ["999999", "0", "9223372036854775807"] {
        let uri = format!("/api/v1/book/{id}");
        for (method, with_body) in [("GET", false), ("PUT", true), ("DELETE", false)] {
            let r = send(&t, method, &uri, Some(&auth), with_body.then_some(("application/json", body))).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri}: {}", r.raw);
            assert_eq!(r.body["error"], "book not found", "{method} {uri}");
        }
    }
    // Not an integer in the id column's range: 400 naming `id`, as the Go
    // original (strconv.ParseUint) refuses them.
    for id in ["abc", "-1", "+1", "1.5", "1e3", "9223372036854775808", "99999999999999999999999", "%20", "0x10"] {
        let uri = format!("/api/v1/book/{id}");
        for (method, with_body) in [("GET", false), ("PUT", true), ("DELETE", false)] {
            let r = send(&t, method, &uri, Some(&auth), with_body.then_some(("application/json", body))).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri}: {}", r.raw);
            assert_eq!(r.body["field"], "id", "{method} {uri}: {}", r.raw);
        }
        // Credentials are still checked first.
        let r = send(&t, "GET", &uri, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let r = send(&t, "GET", "/api/v1/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["error"].is_string());
    let r = send(&t, "PATCH", "/api/v1/book/1", Some(&auth), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.body["error"].is_string());
}

#[tokio::test]
async fn list_returns_every_book_without_limit_and_pages_with_limit_and_offset() {
    let t = test_app().await;
    let sql = t.pg.sql().await;
    sql.batch_execute(
        "INSERT INTO books (created_at, updated_at, title, author, year)
         SELECT now(), now(), 'Book ' || g, 'Author ' || g, 1900 + g FROM generate_series(1, 1005) g;
         UPDATE books SET deleted_at = now() WHERE id = 2;",
    )
    .await
    .unwrap();
    let list = |q: &'static str| {
        let t = &t;
        async move {
            let r = send(t, "GET", &format!("/api/v1/book{q}"), None, None).await;
            assert_eq!(r.status, StatusCode::OK, "{q}");
            r.body.as_array().unwrap().iter().map(|b| b["ID"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };
    // Without limit: every book, as the Go original (streamed across pages).
    let all = list("").await;
    let expected: Vec<i64> = (1..=1005).filter(|&i| i != 2).collect();
    assert_eq!(all, expected);
    assert_eq!(list("?limit=1000").await.len(), 1000);
    assert_eq!(list("?limit=1001").await, expected[..1001]);
    assert_eq!(list("?limit=5000").await, expected);
    assert_eq!(list("?offset=3").await, expected[3..]);
    assert_eq!(list("?limit=600&offset=100").await, expected[100..700]);
    assert_eq!(list("?limit=5&offset=2").await, [4, 5, 6, 7, 8]);
    assert_eq!(list("?limit=1000&offset=1000").await, [1002, 1003, 1004, 1005]);
    assert!(list("?offset=5000").await.is_empty());
    assert_eq!(list("?limit=2&unknown=1").await, [1, 3]);
}

#[tokio::test]
async fn soft_delete_leaves_the_row_with_deleted_at_set() {
    let t = test_app().await;
    let created = send_json(&t, "POST", "/api/v1/book", r#"{"title":"Ephemeral","author":"A","year":1999}"#).await;
    let id = created.body["ID"].as_i64().unwrap();
    let auth = good_auth();
    let r = send(&t, "DELETE", &format!("/api/v1/book/{id}"), Some(&auth), None).await;
    assert_eq!(r.status, StatusCode::OK);

    let sql = t.pg.sql().await;
    let row = sql
        .query_one("SELECT title, deleted_at IS NOT NULL, deleted_at <= now() FROM books WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Ephemeral");
    assert!(row.get::<_, bool>(1), "deleted_at must be set");
    assert!(row.get::<_, bool>(2));
    let count: i64 = sql.query_one("SELECT count(*) FROM books", &[]).await.unwrap().get(0);
    assert_eq!(count, 1, "row must still exist");
}

#[tokio::test]
async fn starts_against_a_table_created_by_the_go_version_and_serves_its_rows() {
    let pg = support::PgCluster::new_running().await;
    let sql = pg.sql().await;
    // gorm's AutoMigrate DDL, verbatim, plus rows as the Go service wrote them.
    sql.batch_execute(
        r#"CREATE TABLE "books" ("id" bigserial,"created_at" timestamptz,"updated_at" timestamptz,"deleted_at" timestamptz,"title" text,"author" text,"year" bigint,PRIMARY KEY ("id"));
           CREATE INDEX IF NOT EXISTS "idx_books_deleted_at" ON "books" ("deleted_at");
           INSERT INTO books (created_at, updated_at, deleted_at, title, author, year) VALUES
             ('2023-01-02 03:04:05.123456+00', '2023-01-02 03:04:05.123456+00', NULL, 'Go Book', 'Gopher', 2012),
             ('2023-01-03 00:00:00+02', '2023-01-04 00:00:00+02', '2023-02-01 00:00:00+00', 'Deleted Book', 'Gone', 2001),
             ('2023-01-05 00:00:00+00', '2023-01-05 00:00:00+00', NULL, NULL, NULL, NULL);"#,
    )
    .await
    .unwrap();

    // Start-up migrations run (twice: a restart) without touching the table.
    let db = books_api::db::Db::new(&pg.db_config()).unwrap();
    books_api::db::connect_with_retry(&db, std::time::Duration::from_secs(10)).await.unwrap();
    books_api::db::connect_with_retry(&db, std::time::Duration::from_secs(10)).await.unwrap();
    let state = books_api::AppState::new(db, support::API_USER, support::API_PASSWORD);
    let t = TestApp { router: books_api::app(state.clone()), state, pg };

    let list = send(&t, "GET", "/api/v1/book", None, None).await;
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", list.raw);
    assert_eq!(items[0]["ID"], 1);
    assert_eq!(items[0]["title"], "Go Book");
    assert_eq!(items[0]["CreatedAt"], "2023-01-02T03:04:05.123456Z");
    assert_book_shape(&items[0]);
    // NULL columns read as the Go zero values.
    assert_eq!(items[1]["title"], "");
    assert_eq!(items[1]["year"], 0);

    assert_eq!(get_auth(&t, "/api/v1/book/1").await.body, items[0]);
    assert_eq!(get_auth(&t, "/api/v1/book/2").await.status, StatusCode::NOT_FOUND);

    // New rows continue the Go table's sequence.
    let created = send_json(&t, "POST", "/api/v1/book", r#"{"title":"New","author":"Rustacean","year":2024}"#).await;
    assert_eq!(created.body["ID"], 4);

    // Rows the Go version wrote are updated and deleted in place; the one it
    // soft-deleted stays deleted for every verb and is never touched.
    let upd = send_json(&t, "PUT", "/api/v1/book/1", r#"{"title":"Go Book 2e","author":"Gopher","year":2016}"#).await;
    assert_eq!(upd.status, StatusCode::OK, "{}", upd.raw);
    assert_eq!(upd.body["CreatedAt"], "2023-01-02T03:04:05.123456Z");
    assert_eq!(upd.body["title"], "Go Book 2e");
    assert_eq!(send_json(&t, "PUT", "/api/v1/book/2", r#"{"title":"x","author":"y","year":1}"#).await.status, StatusCode::NOT_FOUND);
    let auth = good_auth();
    assert_eq!(send(&t, "DELETE", "/api/v1/book/2", Some(&auth), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(&t, "DELETE", "/api/v1/book/3", Some(&auth), None).await.status, StatusCode::OK);
    let row = t
        .pg
        .sql()
        .await
        .query_one("SELECT title, deleted_at::text FROM books WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Deleted Book");
    assert_eq!(row.get::<_, String>(1), "2023-02-01 00:00:00+00", "the Go version's deletion time is kept");
    let ids: Vec<_> = send(&t, "GET", "/api/v1/book", None, None).await.body.as_array().unwrap().iter().map(|b| b["ID"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 4]);

    // The schema is still exactly gorm's.
    let cols: Vec<(String, String)> = t
        .pg
        .sql()
        .await
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'books' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let cols: Vec<(&str, &str)> = cols.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        cols,
        [
            ("id", "bigint"),
            ("created_at", "timestamp with time zone"),
            ("updated_at", "timestamp with time zone"),
            ("deleted_at", "timestamp with time zone"),
            ("title", "text"),
            ("author", "text"),
            ("year", "bigint")
        ]
    );
}

#[tokio::test]
async fn fresh_database_gets_the_gorm_schema() {
    let t = test_app().await;
    let sql = t.pg.sql().await;
    let idx: i64 = sql
        .query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'books' AND indexname = 'idx_books_deleted_at'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 1);
    let versions: Vec<i64> = sql
        .query("SELECT version FROM books_api_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn healthz_stays_ok_while_the_db_is_down_and_readyz_reports_503_without_leaking() {
    let mut t = test_app().await;
    for path in ["/api/v1/healthz", "/api/v1/readyz"] {
        let r = send(&t, "GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.body, json!({"status": "OK"}), "{path}");
    }

    t.pg.stop();
    // Liveness does not depend on the database (the ALB must not cycle tasks).
    let r = send(&t, "GET", "/api/v1/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.raw, r#"{"status":"OK"}"#);
    let r = send(&t, "GET", "/api/v1/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body, json!({"status": "UNAVAILABLE"}), "no error details: {}", r.raw);

    // Other routes give a generic 500, never the driver's error.
    let r = get_auth(&t, "/api/v1/book/1").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body, json!({"error": "internal server error"}));

    // And once the database is back, the service reconnects by itself.
    t.pg.start();
    let start = std::time::Instant::now();
    loop {
        let r = send(&t, "GET", "/api/v1/readyz", None, None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "never ready again: {}", r.raw);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = send(&t, "GET", "/api/v1/book", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}

#[tokio::test]
async fn internal_errors_are_500_with_a_generic_body() {
    let t = test_app().await;
    t.pg.sql().await.batch_execute("ALTER TABLE books RENAME COLUMN title TO name").await.unwrap();
    let r = send(&t, "GET", "/api/v1/book", None, None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body, json!({"error": "internal server error"}));
    assert!(!r.raw.contains("title") && !r.raw.contains("column"), "{}", r.raw);
}

#[tokio::test]
async fn api_docs_is_an_openapi_3_document_generated_from_the_code() {
    let t = test_app().await;
    let r = send(&t, "GET", "/api-docs", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let doc = &r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/v1/healthz", "/api/v1/readyz", "/api/v1/book", "/api/v1/book/{id}"] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(paths["/api/v1/book"]["get"].is_object() && paths["/api/v1/book"]["post"].is_object());
    for m in ["get", "put", "delete"] {
        assert!(paths["/api/v1/book/{id}"][m].is_object(), "{m}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["basic_auth"]["scheme"], "basic");
    let book = &doc["components"]["schemas"]["Book"]["properties"];
    for f in ["ID", "CreatedAt", "UpdatedAt", "DeletedAt", "title", "author", "year"] {
        assert!(book[f].is_object(), "Book.{f} missing");
    }
    assert!(paths["/api/v1/book"]["get"]["security"].is_null(), "list is public");
    assert!(paths["/api/v1/book"]["post"]["security"].is_array());

    // A valid OpenAPI 3 document, by the reference validator (issue 19: POST
    // had `"parameters": null`, which schema-driven clients refuse)...
    if let Err(said) = support::validate_openapi(doc) {
        panic!("/api-docs is not a valid OpenAPI document:\n{said}\n{}", r.raw);
    }
    // ...which does catch that defect.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/book"]["post"]["parameters"] = Value::Null;
    assert!(support::validate_openapi(&broken).is_err(), "the validator accepts \"parameters\": null");
    // Every link names an operation of the document, with its parameter
    // (the validator does not resolve operationIds).
    let mut operations = std::collections::HashMap::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            operations.insert(op["operationId"].as_str().unwrap().to_string(), (path.clone(), method.clone(), op.clone()));
        }
    }
    let mut links = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                for (name, link) in resp["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} {status} {name}: {link}"));
                    let (_, _, target_op) = operations.get(target).unwrap_or_else(|| panic!("{name}: no operation {target}"));
                    for param in link["parameters"].as_object().unwrap().keys() {
                        assert!(target_op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == *param), "{name}: {target} has no {param}");
                    }
                    links += 1;
                }
            }
        }
    }
    assert_eq!(links, 7, "POST → get/put/delete, GET → put/delete, PUT → get/delete");
}

#[tokio::test]
async fn responses_carry_a_request_id_and_keep_the_callers() {
    let t = test_app().await;
    let r = send(&t, "GET", "/api/v1/healthz", None, None).await;
    let id = r.headers.get("x-request-id").expect("x-request-id").to_str().unwrap();
    assert_eq!(id.len(), 36, "uuid: {id}");

    let req = Request::builder()
        .uri("/api/v1/healthz")
        .header("x-request-id", "from-the-gateway-123")
        .body(Body::empty())
        .unwrap();
    let resp = t.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "from-the-gateway-123");
}

/// Connects with `mode` and reports whether the session uses TLS.
async fn session_uses_tls(
    pg: &support::PgCluster,
    mode: books_api::config::SslMode,
    host: &str,
    root: Option<std::path::PathBuf>,
) -> Result<bool, books_api::StartupError> {
    let mut cfg = pg.db_config();
    cfg.sslmode = mode;
    cfg.host = host.to_string();
    cfg.sslrootcert = root;
    let db = books_api::db::Db::new(&cfg)?;
    books_api::db::connect_with_retry(&db, std::time::Duration::from_secs(1)).await?;
    // Through a shared connection, as requests use them.
    let conn = db.conn().await?;
    let row = conn.client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn db_sslmode_every_libpq_mode_is_honoured_against_a_tls_server() {
    use books_api::config::SslMode::*;
    let mut pg = support::PgCluster::init();
    let (tls_opts, ca) = pg.make_tls_files();
    pg.start_with(&tls_opts);
    pg.create_database(support::DB_NAME).await;

    assert!(!session_uses_tls(&pg, Disable, "127.0.0.1", None).await.unwrap(), "disable must not use TLS");
    assert!(!session_uses_tls(&pg, Allow, "127.0.0.1", None).await.unwrap(), "allow tries plain first");
    assert!(session_uses_tls(&pg, Prefer, "127.0.0.1", None).await.unwrap(), "prefer uses TLS when offered");
    assert!(session_uses_tls(&pg, Require, "127.0.0.1", None).await.unwrap(), "require must use TLS");
    // require with a root certificate checks the chain, as libpq does.
    assert!(session_uses_tls(&pg, Require, "127.0.0.1", Some(ca.clone())).await.unwrap());
    // verify-ca / verify-full: the test CA is unknown to the default roots...
    assert!(session_uses_tls(&pg, VerifyCa, "127.0.0.1", None).await.is_err(), "untrusted chain accepted");
    assert!(session_uses_tls(&pg, VerifyFull, "localhost", None).await.is_err(), "untrusted certificate accepted");
    // ...trusted through DB_SSLROOTCERT; verify-ca ignores the host name,
    // verify-full only accepts the name in the certificate.
    assert!(session_uses_tls(&pg, VerifyCa, "127.0.0.1", Some(ca.clone())).await.unwrap());
    assert!(session_uses_tls(&pg, VerifyFull, "localhost", Some(ca.clone())).await.unwrap());
    assert!(session_uses_tls(&pg, VerifyFull, "127.0.0.1", Some(ca.clone())).await.is_err(), "host name not checked");

    // A server that only takes TLS sessions: allow falls back to TLS,
    // disable cannot connect.
    pg.set_hba("hostssl all all 127.0.0.1/32 scram-sha-256");
    assert!(session_uses_tls(&pg, Allow, "127.0.0.1", None).await.unwrap(), "allow must retry with TLS");
    assert!(session_uses_tls(&pg, Disable, "127.0.0.1", None).await.is_err());
    // A server that refuses TLS sessions: prefer falls back to plain.
    pg.set_hba("hostnossl all all 127.0.0.1/32 scram-sha-256");
    assert!(!session_uses_tls(&pg, Prefer, "127.0.0.1", None).await.unwrap(), "prefer must fall back to plain");
    assert!(session_uses_tls(&pg, Require, "127.0.0.1", None).await.is_err());
}

#[tokio::test]
async fn db_sslmode_prefer_and_allow_connect_to_a_server_without_tls() {
    use books_api::config::SslMode::*;
    let pg = support::PgCluster::new_running().await; // ssl=off
    assert!(!session_uses_tls(&pg, Prefer, "127.0.0.1", None).await.unwrap());
    assert!(!session_uses_tls(&pg, Allow, "127.0.0.1", None).await.unwrap());
    assert!(session_uses_tls(&pg, Require, "127.0.0.1", None).await.is_err(), "require must not fall back");
}

/// The rules a JSON Schema in the document states for `value`, evaluated
/// with JSON Schema 2020-12 semantics (what OpenAPI 3.1 uses). Only the
/// keywords the document uses are known; any other keyword fails the test,
/// so a rule added to the document cannot go unchecked.
fn schema_accepts(schema: &Value, value: &Value) -> bool {
    let obj = schema.as_object().expect("schema object");
    for key in obj.keys() {
        assert!(
            matches!(
                key.as_str(),
                "type" | "format" | "required" | "properties" | "minLength" | "maxLength" | "pattern" | "minimum"
                    | "maximum" | "not" | "const" | "description" | "example" | "examples"
            ),
            "schema keyword `{key}` unknown to this checker: {schema}"
        );
    }
    let as_f64 = |v: &Value| v.as_f64();
    let ok_type = match obj.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("string") => value.is_string(),
        // 2020-12: any number with a zero fractional part is an integer.
        Some("integer") => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        Some(t) => panic!("type {t} unknown to this checker"),
    };
    if !ok_type {
        return false;
    }
    if let Some(c) = obj.get("const") {
        let equal = match (as_f64(c), as_f64(value)) {
            (Some(a), Some(b)) => a == b,
            _ => c == value,
        };
        if !equal {
            return false;
        }
    }
    if let Some(not) = obj.get("not") {
        if schema_accepts(not, value) {
            return false;
        }
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if obj.get("minLength").and_then(Value::as_u64).is_some_and(|m| n < m) {
            return false;
        }
        if obj.get("maxLength").and_then(Value::as_u64).is_some_and(|m| n > m) {
            return false;
        }
        // The one pattern the document uses (no regex engine here).
        if let Some(p) = obj.get("pattern") {
            assert_eq!(p, r"^[^\u0000]*$", "pattern unknown to this checker: {schema}");
            if s.contains('\0') {
                return false;
            }
        }
    }
    if value.is_number() {
        // Compare exactly where both are integers, else as floats.
        let below = |bound: &Value| match (bound.as_i64(), value.as_i64()) {
            (Some(b), Some(v)) => v < b,
            _ => value.as_f64().unwrap() < bound.as_f64().unwrap(),
        };
        let above = |bound: &Value| match (bound.as_i64(), value.as_i64()) {
            (Some(b), Some(v)) => v > b,
            _ => value.as_f64().unwrap() > bound.as_f64().unwrap() || (bound.as_i64() == Some(i64::MAX) && value.is_u64() && value.as_i64().is_none()),
        };
        if obj.get("minimum").is_some_and(below) || obj.get("maximum").is_some_and(above) {
            return false;
        }
    }
    if let Some(map) = value.as_object() {
        for r in obj.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !map.contains_key(r.as_str().unwrap()) {
                return false;
            }
        }
        for (name, sub) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
            if let Some(v) = map.get(name) {
                if !schema_accepts(sub, v) {
                    return false;
                }
            }
        }
    }
    true
}

#[tokio::test]
async fn openapi_document_states_exactly_what_validation_enforces() {
    let t = test_app().await;
    let doc = send(&t, "GET", "/api-docs", None, None).await.body;
    let schema = &doc["components"]["schemas"]["BookInput"];
    let auth = good_auth();

    // Bodies at and around every limit the document can state. Exact-case
    // keys only: case-insensitive matching (a Go decoder trait) is an
    // extension JSON Schema cannot express, said in the schema's description
    // and tested in `input_the_go_original_accepts_is_accepted`.
    let s = |c: &str, n: usize| Value::String(c.repeat(n));
    let texts = [
        s("", 0), s("a", 1), s(" ", 1), s("é", 1000), s("😀", 1000), s("é", 1001), s("x", 5000), json!(null), json!(7), json!(["a"]),
        s("\0", 1), json!("a\u{0}b"), json!(format!("{}\0", "é".repeat(999))), json!("\u{1}\u{1f}\u{7f}"),
    ];
    let years = [
        json!(2015), json!(1), json!(-1), json!(0), json!(0.0), json!(-0.0), json!(1084.0), json!(2.5), json!(2e3), json!(1e300),
        json!(i64::MAX), json!(i64::MIN), json!(i64::MAX as u64 + 1), json!("2015"), json!(true), json!(null),
    ];
    let mut bodies: Vec<Value> = Vec::new();
    for title in &texts {
        bodies.push(json!({"title": title, "author": "a", "year": 1999}));
        bodies.push(json!({"title": "t", "author": title, "year": 1999}));
    }
    for year in &years {
        bodies.push(json!({"title": "t", "author": "a", "year": year}));
    }
    bodies.push(json!({"author": "a", "year": 1}));
    bodies.push(json!({"title": "t", "year": 1}));
    bodies.push(json!({"title": "t", "author": "a"}));
    bodies.push(json!({"title": "t", "author": "a", "year": 1, "extra": [1, 2]}));
    bodies.push(json!([]));
    bodies.push(json!("t"));

    let mut checked = (0, 0);
    for body in &bodies {
        let text = serde_json::to_string(body).unwrap();
        let documented = schema_accepts(schema, body);
        let r = send(&t, "POST", "/api/v1/book", Some(&auth), Some(("application/json", &text))).await;
        let accepted = match r.status {
            StatusCode::OK => true,
            StatusCode::BAD_REQUEST => false,
            other => panic!("{text}: unexpected {other}: {}", r.raw),
        };
        assert_eq!(accepted, documented, "document says {documented}, service says {accepted}: {text} -> {}", r.raw);
        if accepted { checked.0 += 1 } else { checked.1 += 1 }
    }
    assert!(checked.0 >= 8 && checked.1 >= 15, "both sides exercised: {checked:?}");

    // Path id and list parameters: the document's integer bounds.
    let param_schema = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    let id_schema = param_schema("/api/v1/book/{id}", "get", "id");
    for raw in ["1", "0", "9223372036854775807", "9223372036854775808", "-1", "abc", "1.5"] {
        let documented = serde_json::from_str::<Value>(raw).is_ok_and(|v| schema_accepts(&id_schema, &v) && !raw.contains('.'));
        let r = get_auth(&t, &format!("/api/v1/book/{raw}")).await;
        assert_eq!(r.status != StatusCode::BAD_REQUEST, documented, "id {raw}: {}", r.raw);
    }
    for name in ["limit", "offset"] {
        let schema = param_schema("/api/v1/book", "get", name);
        for raw in ["0", "1", "20", "9223372036854775807", "9223372036854775808", "-1", "x"] {
            let documented = serde_json::from_str::<Value>(raw).is_ok_and(|v| schema_accepts(&schema, &v));
            let r = send(&t, "GET", &format!("/api/v1/book?{name}={raw}"), None, None).await;
            assert_eq!(r.status == StatusCode::OK, documented, "{name}={raw}: {}", r.raw);
        }
    }
    // Required fields and the body itself are declared required.
    assert_eq!(schema["required"], json!(["title", "author", "year"]));
    assert_eq!(doc["paths"]["/api/v1/book"]["post"]["requestBody"]["required"], true);
}
