//! Handlers, extractors and the OpenAPI document they generate.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::Authenticated;
use crate::db::{self, StartupError};
use crate::error::{AppError, ErrorBody};
use crate::model::{Book, BookInput};
use crate::AppState;

/// Rows fetched per query while streaming the list: memory stays bounded
/// however many books there are.
pub const LIST_PAGE_ROWS: i64 = 500;

#[derive(OpenApi)]
#[openapi(
    info(title = "Books API", description = "Simple Books API: books with title, author and year."),
    paths(healthz, readyz, list_books, create_book, get_book, update_book, delete_book),
    components(schemas(Book, BookInput, ErrorBody, Health)),
    modifiers(&BasicAuthScheme),
    tags((name = "books", description = "Book management"), (name = "health", description = "Liveness and readiness"))
)]
pub struct ApiDoc;

struct BasicAuthScheme;

impl Modify for BasicAuthScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic_auth", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// The OpenAPI document as served: generated from the code above, then the
/// limits utoipa cannot express from attributes are written in, so the
/// document states every rule [`BookInput::from_json`], [`BookId`] and the
/// list's parameters apply (a test checks the two agree).
pub fn openapi_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("OpenAPI document serializes");
    // year: any integral JSON number in the 64-bit range except 0 (0 is
    // "missing" in the Go original). Written as numbers, not floats, so the
    // bounds are exact.
    doc["components"]["schemas"]["BookInput"]["properties"]["year"] = json!({
        "type": "integer",
        "format": "int64",
        "minimum": i64::MIN,
        "maximum": i64::MAX,
        "not": {"const": 0},
        "description": "Required: a non-zero integer. An integral number written with a fraction or exponent (2015.0, 2.015e3) is accepted too.",
        "example": 2015
    });
    let id_schema = json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX});
    let count_schema = |min: i64| json!({"type": "integer", "format": "int64", "minimum": min, "maximum": i64::MAX});
    for (path, name, schema) in [
        ("/api/v1/book/{id}", "id", id_schema),
        ("/api/v1/book", "limit", count_schema(1)),
        ("/api/v1/book", "offset", count_schema(0)),
    ] {
        // `get_mut`, not `[]`: indexing a JSON object mutably inserts a null
        // for a missing key, and `"parameters": null` is not valid OpenAPI.
        let Some(ops) = doc["paths"].get_mut(path).and_then(|p| p.as_object_mut()) else { continue };
        for op in ops.values_mut() {
            if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                for p in params.iter_mut().filter(|p| p["name"] == name) {
                    p["schema"] = schema.clone();
                }
            }
        }
    }
    // Links from a book to its operations, for clients and for
    // schemathesis's stateful phase. Written here because utoipa 5.5
    // serializes a Link's `operationId` as `operation_id`.
    let (get, put, delete) = (("GetBook", "get_book"), ("UpdateBook", "update_book"), ("DeleteBook", "delete_book"));
    for (path, method, targets) in [
        ("/api/v1/book", "post", &[get, put, delete][..]),
        ("/api/v1/book/{id}", "get", &[put, delete][..]),
        ("/api/v1/book/{id}", "put", &[get, delete][..]),
    ] {
        let links: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|(name, op)| (name.to_string(), json!({"operationId": op, "parameters": {"id": "$response.body#/ID"}})))
            .collect();
        doc["paths"][path][method]["responses"]["200"]["links"] = links.into();
    }
    doc
}

/// `GET /api-docs`: the OpenAPI 3 document, see [`openapi_json`].
pub async fn api_docs() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::to_string_pretty(&openapi_json()).expect("OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.as_str()).into_response()
}

/// Health status.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `OK` or `UNAVAILABLE`.
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// Liveness, as in the Go original: 200 while the process serves, whatever
/// the database does — a load balancer health check on it must not replace
/// every task during a short database outage.
#[utoipa::path(
    get,
    path = "/api/v1/healthz",
    tag = "health",
    responses((status = 200, description = "The process serves", body = Health))
)]
pub async fn healthz() -> Response {
    static OK: &str = r#"{"status":"OK"}"#;
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OK).into_response()
}

/// Readiness: the database answers within 2 s.
#[utoipa::path(
    get,
    path = "/api/v1/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Service and database are up", body = Health),
        (status = 503, description = "Database unreachable", body = Health)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "OK" })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %db::error_chain(e.as_ref()), "readiness: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "UNAVAILABLE" })).into_response()
        }
        Err(_) => {
            tracing::warn!("readiness: database timed out");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "UNAVAILABLE" })).into_response()
        }
    }
}

/// A book id from the path: decimal digits only, 0 to 2^63-1 (the `bigint`
/// id column's range). Anything else is 400 naming `id`, as the Go original
/// answers (it parses with `strconv.ParseUint`; its range stops at 2^32-1,
/// ours at the column's). 0 parses and finds no book: 404.
pub struct BookId(pub i64);

impl BookId {
    pub fn parse(raw: &str) -> Option<i64> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse::<i64>().ok()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BookId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || AppError::validation("id", "id must be a valid integer");
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| invalid())?;
        BookId::parse(&raw).map(BookId).ok_or_else(invalid)
    }
}

/// A validated [`BookInput`] from the body, whatever its `Content-Type`: the
/// Go original decodes the body as JSON without looking at the header, and
/// `curl -d` sends `application/x-www-form-urlencoded`. Size limited by the
/// router's `DefaultBodyLimit`.
pub struct ValidBook(pub BookInput);

impl<S: Send + Sync> FromRequest<S> for ValidBook {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::validation("body", "could not read request body")
            }
        })?;
        BookInput::from_json(&body).map(ValidBook)
    }
}

/// List books (public): every book, as the original, ordered by id, deleted
/// books excluded; `limit`/`offset` page it. Streamed in pages of
/// [`LIST_PAGE_ROWS`] so memory stays flat for any table size.
#[utoipa::path(
    get,
    path = "/api/v1/book",
    tag = "books",
    params(
        ("limit" = Option<i64>, Query, description = "At most this many books (1 or more); default: all"),
        ("offset" = Option<i64>, Query, description = "Books to skip, default 0")
    ),
    responses(
        (status = 200, description = "Books", body = Vec<Book>),
        (status = 400, description = "Invalid limit or offset", body = ErrorBody)
    )
)]
pub async fn list_books(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(params) = query.map_err(|_| AppError::validation("query", "malformed query string"))?;
    let limit = match params.get("limit") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(AppError::validation("limit", "limit must be an integer of at least 1")),
        },
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => return Err(AppError::validation("offset", "offset must be a non-negative integer")),
        },
    };

    // The first page is read before the status line is sent, so a database
    // failure is still a clean 500.
    let want = |remaining: Option<i64>| remaining.map_or(LIST_PAGE_ROWS, |r| r.min(LIST_PAGE_ROWS));
    let first = state.db.conn().await?.list_first(want(limit), offset).await?;
    let remaining = limit.map(|l| l - first.len() as i64);
    let done = (first.len() as i64) < want(limit) || remaining == Some(0);
    let mut out = Vec::with_capacity(256 * first.len() + 2);
    out.push(b'[');
    write_books(&mut out, &first, false).map_err(|e| AppError::Internal(Box::new(e)))?;
    if done {
        out.push(b']');
        return Ok(json_response(out));
    }

    // Further pages by keyset (id > last seen): each is a short query on a
    // shared connection, never a long-held cursor that would stall the
    // queries pipelined behind it.
    let after = first.last().map_or(0, |b| b.id);
    let db = state.db.clone();
    let rest = futures_util::stream::unfold(Some((out, after, remaining)), move |pending| {
        let db = db.clone();
        async move {
            let (mut out, after, remaining) = pending?;
            let n = want(remaining);
            let page = match db.conn().await {
                Ok(c) => c.list_after(after, n).await.map_err(|e| Box::new(e) as StartupError),
                Err(e) => Err(Box::new(e) as StartupError),
            };
            let page = page.and_then(|page| {
                write_books(&mut out, &page, true).map_err(|e| Box::new(e) as StartupError)?;
                Ok(page)
            });
            match page {
                Ok(page) => {
                    let after = page.last().map_or(after, |b| b.id);
                    let remaining = remaining.map(|r| r - page.len() as i64);
                    if (page.len() as i64) < n || remaining == Some(0) {
                        out.push(b']');
                        Some((Ok(Bytes::from(out)), None))
                    } else {
                        let next = Vec::with_capacity(out.capacity());
                        Some((Ok(Bytes::from(out)), Some((next, after, remaining))))
                    }
                }
                Err(e) => {
                    // The status line is out: all we can do is cut the body
                    // short, so the client sees a truncated response, never a
                    // complete-looking partial list.
                    tracing::error!(error = %db::error_chain(e.as_ref()), "list: database error mid-stream");
                    Some((Err(e), None))
                }
            }
        }
    });
    let mut resp = Response::new(axum::body::Body::from_stream(rest));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn write_books(out: &mut Vec<u8>, books: &[Book], continuing: bool) -> Result<(), time::error::Format> {
    for (i, book) in books.iter().enumerate() {
        if continuing || i > 0 {
            out.push(b',');
        }
        book.write_json(out)?;
    }
    Ok(())
}

/// One book as the response body.
fn book_response(book: &Book) -> Result<Response, AppError> {
    let mut out = Vec::with_capacity(192 + book.title.len() + book.author.len());
    book.write_json(&mut out).map_err(|e| AppError::Internal(Box::new(e)))?;
    Ok(json_response(out))
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// Create a book.
#[utoipa::path(
    post,
    path = "/api/v1/book",
    tag = "books",
    request_body = BookInput,
    security(("basic_auth" = [])),
    responses(
        (status = 200, description = "Created (200, as the Go original answers)", body = Book),
        (status = 400, description = "Invalid input; `field` names the culprit", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody)
    )
)]
pub async fn create_book(
    _: Authenticated,
    State(state): State<AppState>,
    ValidBook(input): ValidBook,
) -> Result<Response, AppError> {
    book_response(&state.db.conn().await?.create_book(&input).await?)
}

/// Read one book.
#[utoipa::path(
    get,
    path = "/api/v1/book/{id}",
    tag = "books",
    params(("id" = i64, Path, description = "Book id")),
    security(("basic_auth" = [])),
    responses(
        (status = 200, description = "The book", body = Book),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book", body = ErrorBody)
    )
)]
pub async fn get_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
) -> Result<Response, AppError> {
    book_response(&state.db.conn().await?.get_book(id).await?.ok_or(AppError::NotFound("book"))?)
}

/// Replace a book's title, author and year.
#[utoipa::path(
    put,
    path = "/api/v1/book/{id}",
    tag = "books",
    params(("id" = i64, Path, description = "Book id")),
    request_body = BookInput,
    security(("basic_auth" = [])),
    responses(
        (status = 200, description = "Updated book", body = Book),
        (status = 400, description = "Invalid id, or invalid input for a book that exists; `field` names the culprit", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book, whatever the body", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB, for a book that exists", body = ErrorBody)
    )
)]
pub async fn update_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
    body: Result<ValidBook, AppError>,
) -> Result<Response, AppError> {
    let conn = state.db.conn().await?;
    match body {
        Ok(ValidBook(input)) => book_response(&conn.update_book(id, &input).await?.ok_or(AppError::NotFound("book"))?),
        // A missing book is 404 whatever the body, as on every other verb:
        // the body's fault is only worth telling for a book that exists. The
        // invalid input itself never reaches a query.
        Err(invalid) => match conn.get_book(id).await? {
            Some(_) => Err(invalid),
            None => Err(AppError::NotFound("book")),
        },
    }
}

/// Delete a book (soft delete: it disappears from every route).
#[utoipa::path(
    delete,
    path = "/api/v1/book/{id}",
    tag = "books",
    params(("id" = i64, Path, description = "Book id")),
    security(("basic_auth" = [])),
    responses(
        (status = 200, description = "Deleted: `{}`, as the Go original answers", body = Object),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book", body = ErrorBody)
    )
)]
pub async fn delete_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
) -> Result<Response, AppError> {
    if state.db.conn().await?.delete_book(id).await? {
        Ok(json_response(b"{}".to_vec()))
    } else {
        Err(AppError::NotFound("book"))
    }
}

/// Unknown paths.
pub async fn not_found() -> AppError {
    AppError::NotFound("route")
}

/// Known path, wrong method.
pub async fn method_not_allowed() -> Response {
    let body = ErrorBody { error: "method not allowed".into(), field: None };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
