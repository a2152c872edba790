//! Cognito: the user pool the API's authorizer trusts and the app client `infra token`
//! signs in through.

pub mod user_pool;
pub mod user_pool_client;
