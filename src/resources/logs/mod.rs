//! CloudWatch Logs: the service's log group.

pub mod log_group;
