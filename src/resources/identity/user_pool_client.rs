//! The app client: no secret, `USER_PASSWORD_AUTH` and refresh, access tokens valid 30
//! minutes. Not taggable: found by its name within the pool; its physical id is
//! `<pool id>/<client id>`, and it goes with the pool.

use std::collections::BTreeMap;

use aws_sdk_cognitoidentityprovider::types::{
    ExplicitAuthFlowsType, PreventUserExistenceErrorTypes, TimeUnitsType, TokenValidityUnitsType, UserPoolClientType,
};

use crate::aws::{aws_error, found, AwsError, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};

pub const AUTH_FLOWS: [&str; 2] = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPoolClientSpec {
    pub pool_id: String,
    pub name: String,
    pub access_token_minutes: i32,
    pub id_token_minutes: i32,
    pub refresh_token_days: i32,
}

#[derive(Debug, Clone)]
pub struct UserPoolClient {
    pub pool_id: String,
    pub id: String,
    pub name: String,
    pub has_secret: bool,
    pub flows: Vec<String>,
    /// Normalised to minutes / days whatever units the client was given.
    pub access_token_minutes: i32,
    pub id_token_minutes: i32,
    pub refresh_token_days: i32,
    pub prevent_user_existence_errors: String,
}

fn minutes(value: Option<i32>, unit: Option<&TimeUnitsType>, default_unit: TimeUnitsType) -> i32 {
    let v = value.unwrap_or(60);
    match unit.cloned().unwrap_or(default_unit) {
        TimeUnitsType::Seconds => v / 60,
        TimeUnitsType::Hours => v * 60,
        TimeUnitsType::Days => v * 1440,
        _ => v,
    }
}

fn observe(c: &UserPoolClientType) -> UserPoolClient {
    let units = c.token_validity_units();
    let mut flows: Vec<String> = c.explicit_auth_flows().iter().map(|f| f.as_str().to_string()).collect();
    flows.sort();
    UserPoolClient {
        pool_id: c.user_pool_id().unwrap_or_default().to_string(),
        id: c.client_id().unwrap_or_default().to_string(),
        name: c.client_name().unwrap_or_default().to_string(),
        has_secret: c.client_secret().is_some(),
        flows,
        access_token_minutes: minutes(c.access_token_validity(), units.and_then(|u| u.access_token()), TimeUnitsType::Hours),
        id_token_minutes: minutes(c.id_token_validity(), units.and_then(|u| u.id_token()), TimeUnitsType::Hours),
        refresh_token_days: minutes(Some(c.refresh_token_validity()), units.and_then(|u| u.refresh_token()), TimeUnitsType::Days) / 1440,
        prevent_user_existence_errors: c.prevent_user_existence_errors().map(|p| p.as_str().to_string()).unwrap_or_default(),
    }
}


async fn describe(ctx: &Ctx, pool: &str, client: &str) -> Result<Option<UserPoolClient>, AwsError> {
    let resp = ctx.cognito().await.describe_user_pool_client().user_pool_id(pool).client_id(client).send().await;
    Ok(found(resp.map_err(|e| aws_error("DescribeUserPoolClient", client, e)))?.and_then(|r| r.user_pool_client().map(observe)))
}

impl UserPoolClientSpec {
    fn units() -> TokenValidityUnitsType {
        TokenValidityUnitsType::builder()
            .access_token(TimeUnitsType::Minutes)
            .id_token(TimeUnitsType::Minutes)
            .refresh_token(TimeUnitsType::Days)
            .build()
    }

    fn flows() -> Vec<ExplicitAuthFlowsType> {
        AUTH_FLOWS.iter().map(|f| ExplicitAuthFlowsType::from(*f)).collect()
    }
}

impl Resource for UserPoolClientSpec {
    type Observed = UserPoolClient;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<UserPoolClient>, AwsError> {
        let (pool, client) = id.split_once('/').unwrap_or((id, ""));
        describe(ctx, pool, client).await
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<UserPoolClient>, AwsError> {
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let resp = ctx.cognito().await.list_user_pool_clients().user_pool_id(&self.pool_id).max_results(60).set_next_token(token).send().await;
            let Some(resp) = found(resp.map_err(|e| aws_error("ListUserPoolClients", &self.pool_id, e)))? else { return Ok(Vec::new()) };
            ids.extend(resp.user_pool_clients().iter().filter(|c| c.client_name() == Some(self.name.as_str())).filter_map(|c| c.client_id().map(str::to_string)));
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut out = Vec::new();
        for id in ids {
            out.extend(describe(ctx, &self.pool_id, &id).await?);
        }
        Ok(out)
    }

    fn diff(&self, o: &UserPoolClient) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "user_pool_id", &self.pool_id, &o.pool_id);
        compare(&mut replace, "generate_secret", &false, &o.has_secret);
        let mut update = Vec::new();
        compare(&mut update, "client_name", &self.name, &o.name);
        compare(&mut update, "explicit_auth_flows", &AUTH_FLOWS.join(","), &o.flows.join(","));
        compare(&mut update, "access_token_validity (minutes)", &self.access_token_minutes, &o.access_token_minutes);
        compare(&mut update, "id_token_validity (minutes)", &self.id_token_minutes, &o.id_token_minutes);
        compare(&mut update, "refresh_token_validity (days)", &self.refresh_token_days, &o.refresh_token_days);
        compare(&mut update, "prevent_user_existence_errors", &"ENABLED".to_string(), &o.prevent_user_existence_errors);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .cognito()
            .await
            .create_user_pool_client()
            .user_pool_id(&self.pool_id)
            .client_name(&self.name)
            .generate_secret(false)
            .set_explicit_auth_flows(Some(Self::flows()))
            .access_token_validity(self.access_token_minutes)
            .id_token_validity(self.id_token_minutes)
            .refresh_token_validity(self.refresh_token_days)
            .token_validity_units(Self::units())
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateUserPoolClient", logical_id, e))?;
        Ok(format!("{}/{}", self.pool_id, resp.user_pool_client().and_then(|c| c.client_id()).unwrap_or_default()))
    }

    /// UpdateUserPoolClient resets what it is not given, so it gets everything.
    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &UserPoolClient) -> Result<Option<String>, AwsError> {
        ctx.cognito()
            .await
            .update_user_pool_client()
            .user_pool_id(&o.pool_id)
            .client_id(&o.id)
            .client_name(&self.name)
            .set_explicit_auth_flows(Some(Self::flows()))
            .access_token_validity(self.access_token_minutes)
            .id_token_validity(self.id_token_minutes)
            .refresh_token_validity(self.refresh_token_days)
            .token_validity_units(Self::units())
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
            .send()
            .await
            .map_err(|e| aws_error("UpdateUserPoolClient", &o.id, e))?;
        Ok(None)
    }

    fn physical_id(o: &UserPoolClient) -> String {
        format!("{}/{}", o.pool_id, o.id)
    }

    fn attributes(o: &UserPoolClient) -> BTreeMap<String, String> {
        [("client_id".to_string(), o.id.clone())].into()
    }

    /// A client with a secret cannot lose it: a new one is made, then the old one goes.
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::UserPool);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<UserPoolClient>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            let (pool, client) = id.split_once('/').unwrap_or((id, ""));
            out.extend(describe(ctx, pool, client).await?);
        }
        Ok(out)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (pool, client) = id.split_once('/').unwrap_or((id, ""));
        ctx.cognito()
            .await
            .delete_user_pool_client()
            .user_pool_id(pool)
            .client_id(client)
            .send()
            .await
            .map_err(|e| aws_error("DeleteUserPoolClient", id, e))?;
        Ok(())
    }
}
