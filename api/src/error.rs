//! One error type for every handler. Client errors carry a message meant for
//! the client; internal errors are logged (inside the request span, so with
//! the request id) and answered with a generic body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Error body returned to clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable message.
    #[schema(example = "title is required")]
    pub error: String,
    /// The input field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "title")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub enum AppError {
    /// 400 naming the offending field.
    Validation { field: String, message: String },
    /// 401 with `WWW-Authenticate`.
    Unauthorized,
    /// 404.
    NotFound(&'static str),
    /// 413.
    PayloadTooLarge,
    /// 500; the cause is logged, never shown.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation { field: field.into(), message: message.into() }
    }
}

pub const WWW_AUTHENTICATE: &str = r#"Basic realm="books-api", charset="UTF-8""#;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, error, field) = match self {
            AppError::Validation { field, message } => (StatusCode::BAD_REQUEST, message, Some(field)),
            AppError::Unauthorized => {
                let body = ErrorBody { error: "unauthorized".into(), field: None };
                let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
                return resp;
            }
            AppError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found"), None),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {} bytes", crate::BODY_LIMIT_BYTES),
                None,
            ),
            AppError::Internal(e) => {
                tracing::error!(
                    error = %crate::db::error_chain(e.as_ref()),
                    request_id = %crate::access_log::current_request_id(),
                    "internal error"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, "internal server error".into(), None)
            }
        };
        (status, Json(ErrorBody { error, field })).into_response()
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        AppError::Internal(Box::new(e))
    }
}

impl From<crate::db::Unavailable> for AppError {
    fn from(e: crate::db::Unavailable) -> Self {
        AppError::Internal(Box::new(e))
    }
}
