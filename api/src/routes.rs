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
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::Authenticated;
use crate::db;
use crate::error::{AppError, ErrorBody};
use crate::model::{Book, BookInput};
use crate::AppState;

/// Default page size of the list.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of the list; above it the request is refused.
pub const MAX_LIMIT: i64 = 1000;

#[derive(OpenApi)]
#[openapi(
    info(title = "Books API", description = "Simple Books API: books with title, author and year."),
    paths(healthz, list_books, create_book, get_book, update_book, delete_book),
    components(schemas(Book, BookInput, ErrorBody, Health)),
    modifiers(&BasicAuthScheme),
    tags((name = "books", description = "Book management"), (name = "health", description = "Health check"))
)]
pub struct ApiDoc;

struct BasicAuthScheme;

impl Modify for BasicAuthScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic_auth", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// `GET /api-docs`: the OpenAPI 3 document, generated from the code above.
pub async fn api_docs() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.as_str()).into_response()
}

/// Health status.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `OK` or `UNAVAILABLE`.
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// Health check: the service is up and the database answers.
#[utoipa::path(
    get,
    path = "/api/v1/healthz",
    tag = "health",
    responses(
        (status = 200, description = "Service and database are up", body = Health),
        (status = 503, description = "Database unreachable", body = Health)
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let check = async {
        let client = state.pool.get().await.map_err(|e| db::error_chain(&e))?;
        db::ping(&client).await.map_err(|e| db::error_chain(&e))
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "OK" })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "UNAVAILABLE" })).into_response()
        }
        Err(_) => {
            tracing::warn!("health check: database timed out");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "UNAVAILABLE" })).into_response()
        }
    }
}

/// A book id from the path. Anything that is not a positive integer is a
/// book that does not exist: 404, like a missing id.
pub struct BookId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for BookId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound("book"))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(BookId(id)),
            _ => Err(AppError::NotFound("book")),
        }
    }
}

/// A validated [`BookInput`] from a JSON body (content type checked, size
/// limited by the router's `DefaultBodyLimit`).
pub struct ValidBook(pub BookInput);

impl<S: Send + Sync> FromRequest<S> for ValidBook {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AppError::validation("Content-Type", "Content-Type must be application/json"));
        }
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

/// List books (public). Ordered by id, deleted books excluded.
#[utoipa::path(
    get,
    path = "/api/v1/book",
    tag = "books",
    params(
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000, default 100"),
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
) -> Result<Json<Vec<Book>>, AppError> {
    let Query(params) = query.map_err(|_| AppError::validation("query", "malformed query string"))?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(AppError::validation(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => return Err(AppError::validation("offset", "offset must be a non-negative integer")),
        },
    };
    let client = state.pool.get().await?;
    Ok(Json(db::list_books(&client, limit, offset).await?))
}

/// Create a book.
#[utoipa::path(
    post,
    path = "/api/v1/book",
    tag = "books",
    request_body = BookInput,
    security(("basic_auth" = [])),
    responses(
        (status = 201, description = "Created", body = Book),
        (status = 400, description = "Invalid input; `field` names the culprit", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody)
    )
)]
pub async fn create_book(
    _: Authenticated,
    State(state): State<AppState>,
    ValidBook(input): ValidBook,
) -> Result<(StatusCode, Json<Book>), AppError> {
    let client = state.pool.get().await?;
    let book = db::create_book(&client, &input).await?;
    Ok((StatusCode::CREATED, Json(book)))
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
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book", body = ErrorBody)
    )
)]
pub async fn get_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
) -> Result<Json<Book>, AppError> {
    let client = state.pool.get().await?;
    db::get_book(&client, id).await?.map(Json).ok_or(AppError::NotFound("book"))
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
        (status = 400, description = "Invalid input; `field` names the culprit", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody)
    )
)]
pub async fn update_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
    ValidBook(input): ValidBook,
) -> Result<Json<Book>, AppError> {
    let client = state.pool.get().await?;
    db::update_book(&client, id, &input).await?.map(Json).ok_or(AppError::NotFound("book"))
}

/// Delete a book (soft delete: it disappears from every route).
#[utoipa::path(
    delete,
    path = "/api/v1/book/{id}",
    tag = "books",
    params(("id" = i64, Path, description = "Book id")),
    security(("basic_auth" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such book", body = ErrorBody)
    )
)]
pub async fn delete_book(
    _: Authenticated,
    State(state): State<AppState>,
    BookId(id): BookId,
) -> Result<StatusCode, AppError> {
    let client = state.pool.get().await?;
    if db::delete_book(&client, id).await? {
        Ok(StatusCode::NO_CONTENT)
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
