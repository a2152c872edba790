//! IAM roles for the service (task execution, task) and the edge tier's Lambda, each with
//! its trust policy, managed policies and one inline least-privilege policy.

pub mod role;
