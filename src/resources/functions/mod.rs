//! Lambda: the function behind `/limits/time/exceed` and API Gateway's permission to
//! invoke it.

pub mod function;
pub mod permission;
