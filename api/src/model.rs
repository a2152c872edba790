//! The stored model (`Book`, serialized like gorm's `gorm.Model` embedding)
//! and the input type (`BookInput`), kept separate so clients can never set
//! ids or timestamps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::AppError;

/// Smallest accepted `year`.
pub const MIN_YEAR: i64 = 0;
/// Largest accepted `year`.
pub const MAX_YEAR: i64 = 9999;
/// Longest accepted `title` / `author`, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// A book as stored and returned (field names as the Go version's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Book {
    #[serde(rename = "ID")]
    #[schema(example = 1)]
    pub id: i64,
    #[serde(rename = "CreatedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2024-05-01T10:00:00.123456Z")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(rename = "UpdatedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2024-05-01T10:00:00.123456Z")]
    pub updated_at: Option<OffsetDateTime>,
    /// Always null: deleted books are never returned.
    #[serde(rename = "DeletedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
    #[schema(example = "The Go Programming Language")]
    pub title: String,
    #[schema(example = "Alan A. A. Donovan")]
    pub author: String,
    #[schema(example = 2015)]
    pub year: i64,
}

/// Body of `POST /api/v1/book` and `PUT /api/v1/book/{id}`: all fields
/// required, no others allowed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookInput {
    /// Non-empty, at most 1000 characters.
    #[schema(example = "The Go Programming Language", min_length = 1, max_length = 1000)]
    pub title: String,
    /// Non-empty, at most 1000 characters.
    #[schema(example = "Alan A. A. Donovan", min_length = 1, max_length = 1000)]
    pub author: String,
    /// Integer from 0 to 9999.
    #[schema(example = 2015, minimum = 0, maximum = 9999)]
    pub year: i64,
}

impl BookInput {
    /// Parses and validates a JSON body, naming the first field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self, AppError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| AppError::validation("body", format!("malformed JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(AppError::validation("body", "body must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "title" | "author" | "year")) {
            return Err(AppError::validation(unknown.as_str(), format!("unknown field `{unknown}`")));
        }
        let title = text_field(&map, "title")?;
        let author = text_field(&map, "author")?;
        let year = match map.get("year") {
            None | Some(Value::Null) => return Err(AppError::validation("year", "year is required")),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| AppError::validation("year", "year must be an integer"))?,
            Some(_) => return Err(AppError::validation("year", "year must be an integer")),
        };
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(AppError::validation(
                "year",
                format!("year must be between {MIN_YEAR} and {MAX_YEAR}"),
            ));
        }
        Ok(BookInput { title, author, year })
    }
}

fn text_field(map: &Map<String, Value>, name: &str) -> Result<String, AppError> {
    match map.get(name) {
        None | Some(Value::Null) => Err(AppError::validation(name, format!("{name} is required"))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(AppError::validation(name, format!("{name} must not be empty")))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT_CHARS => Err(AppError::validation(
            name,
            format!("{name} must be at most {MAX_TEXT_CHARS} characters"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(AppError::validation(name, format!("{name} must be a string"))),
    }
}
