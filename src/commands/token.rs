//! `infra token EMAIL`: signs in through the app client and prints only the access token,
//! so `ACCESS_TOKEN=$(... | infra token EMAIL)` captures nothing else.

use std::io::IsTerminal;

use anyhow::{anyhow, bail, Result};
use aws_sdk_cognitoidentityprovider::types::AuthFlowType;

use super::user::{connect, password_from_stdin, validate_email};
use crate::aws::aws_error;
use crate::cli::Cli;
use crate::config::Settings;
use crate::resources::Ctx;

pub async fn run(cli: &Cli, settings: &Settings, email: &str) -> Result<u8> {
    validate_email(email).map_err(|rule| anyhow!("{email:?} is not an email address: {rule}"))?;
    if std::io::stdin().is_terminal() {
        bail!("`infra token` reads the password from stdin: pipe it in, e.g. printf '%s\\n' \"$PASSWORD\" | infra token {email}");
    }
    let Some(password) = password_from_stdin()? else {
        bail!("no password on stdin: pipe it in, e.g. printf '%s\\n' \"$PASSWORD\" | infra token {email}");
    };
    let (ctx, outputs) = connect(cli, settings).await?;
    let client = outputs.require("AppClientId")?;
    let token = access_token(&ctx, client, email, &password).await?;
    println!("{token}");
    Ok(0)
}

/// InitiateAuth with USER_PASSWORD_AUTH through the app client (it has no secret, so no
/// SECRET_HASH); the access token, or an error that never repeats the password.
pub(super) async fn access_token(ctx: &Ctx, client_id: &str, email: &str, password: &str) -> Result<String> {
    let resp = ctx
        .cognito()
        .await
        .initiate_auth()
        .client_id(client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", email)
        .auth_parameters("PASSWORD", password)
        .send()
        .await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(service) = e.as_service_error() {
                // With PreventUserExistenceErrors an unknown user is NotAuthorized too.
                if service.is_not_authorized_exception() || service.is_user_not_found_exception() {
                    bail!("wrong email or password for {email}");
                }
                if service.is_password_reset_required_exception() {
                    bail!("user {email} must reset the password: run `infra user delete {email}` and `infra user create {email}`");
                }
                if service.is_user_not_confirmed_exception() {
                    bail!("user {email} is not confirmed: create users with `infra user create {email}`");
                }
            }
            return Err(aws_error("InitiateAuth", format!("user {email} through app client {client_id}"), e).into());
        }
    };
    if let Some(challenge) = resp.challenge_name() {
        bail!(
            "user {email} cannot sign in yet: Cognito asks for the {} challenge (the user has a temporary password, e.g. it was created outside infra); give it a permanent password with `infra user delete {email}` then `infra user create {email}`",
            challenge.as_str()
        );
    }
    resp.authentication_result()
        .and_then(|r| r.access_token())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("InitiateAuth for user {email} returned neither a token nor a challenge"))
}
