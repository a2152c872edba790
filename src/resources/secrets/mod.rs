//! The two SSM SecureString parameters: the database password and the HTTP basic-auth
//! password.

pub mod ssm_parameter;
