//! S3: the payload bucket of the API's upload-limit demonstration.

pub mod bucket;
