//! The Cognito user pool authorizer on the `Authorization` header. Found by its name
//! within the API. A new user pool means a new authorizer (moto cannot patch the provider
//! ARNs): it is made, the methods move to it, and the old one is deleted.

use std::collections::BTreeMap;

use aws_sdk_apigateway::types::{AuthorizerType, Op};

use super::{conflict_means, find_children, patch, split_id};
use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSpec {
    pub api_id: String,
    pub name: String,
    pub provider_arns: Vec<String>,
    pub identity_source: String,
    pub result_ttl_seconds: i32,
}

#[derive(Debug, Clone)]
pub struct Authorizer {
    pub api_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub provider_arns: Vec<String>,
    pub identity_source: String,
    pub result_ttl_seconds: i32,
}

async fn all(ctx: &Ctx, api: &str) -> Result<Vec<Authorizer>, AwsError> {
    let mut out = Vec::new();
    let mut position = None;
    loop {
        let resp = ctx.apigateway().await.get_authorizers().rest_api_id(api).limit(500).set_position(position).send().await;
        let Some(resp) = found(resp.map_err(|e| aws_error("GetAuthorizers", api, e)))? else { return Ok(out) };
        for a in resp.items() {
            out.push(Authorizer {
                api_id: api.to_string(),
                id: a.id().unwrap_or_default().to_string(),
                name: a.name().unwrap_or_default().to_string(),
                kind: a.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                provider_arns: a.provider_arns().to_vec(),
                identity_source: a.identity_source().unwrap_or_default().to_string(),
                result_ttl_seconds: a.authorizer_result_ttl_in_seconds().unwrap_or(300),
            });
        }
        position = resp.position().map(str::to_string);
        if position.is_none() {
            return Ok(out);
        }
    }
}

impl Resource for AuthorizerSpec {
    type Observed = Authorizer;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Authorizer>, AwsError> {
        Ok(Self::find_many(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Authorizer>, AwsError> {
        Ok(all(ctx, &self.api_id).await?.into_iter().filter(|a| a.name == self.name).collect())
    }

    fn diff(&self, o: &Authorizer) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "api", &self.api_id, &o.api_id);
        compare(&mut replace, "type", &"COGNITO_USER_POOLS".to_string(), &o.kind);
        compare(&mut replace, "provider_arns", &self.provider_arns.join(","), &o.provider_arns.join(","));
        let mut update = Vec::new();
        compare(&mut update, "identity_source", &self.identity_source, &o.identity_source);
        compare(&mut update, "authorizer_result_ttl_in_seconds", &self.result_ttl_seconds, &o.result_ttl_seconds);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .apigateway()
            .await
            .create_authorizer()
            .rest_api_id(&self.api_id)
            .name(&self.name)
            .r#type(AuthorizerType::CognitoUserPools)
            .set_provider_arns(Some(self.provider_arns.clone()))
            .identity_source(&self.identity_source)
            .authorizer_result_ttl_in_seconds(self.result_ttl_seconds)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateAuthorizer", logical_id, e, conflict_means(ErrorClass::AlreadyExists)))?;
        Ok(format!("{}/{}", self.api_id, resp.id().unwrap_or_default()))
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Authorizer) -> Result<Option<String>, AwsError> {
        let ttl = self.result_ttl_seconds.to_string();
        let ops = vec![patch(Op::Replace, "/identitySource", Some(&self.identity_source)), patch(Op::Replace, "/authorizerResultTtlInSeconds", Some(&ttl))];
        ctx.apigateway()
            .await
            .update_authorizer()
            .rest_api_id(&o.api_id)
            .authorizer_id(&o.id)
            .set_patch_operations(Some(ops))
            .send()
            .await
            .map_err(|e| aws_error("UpdateAuthorizer", &o.id, e))?;
        Ok(None)
    }


    /// API Gateway refuses a second change to one REST API while a first is in progress.
    fn serial_key(&self) -> Option<String> {
        Some(self.api_id.clone())
    }

    fn physical_id(o: &Authorizer) -> String {
        format!("{}/{}", o.api_id, o.id)
    }

    fn attributes(o: &Authorizer) -> BTreeMap<String, String> {
        [("authorizer_id".to_string(), o.id.clone())].into()
    }

    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::RestApi);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Authorizer>, AwsError> {
        find_children(ids, |api| async move { all(ctx, &api).await }, |a| format!("{}/{}", a.api_id, a.id)).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (api, authorizer) = split_id(id);
        ctx.apigateway()
            .await
            .delete_authorizer()
            .rest_api_id(api)
            .authorizer_id(authorizer)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeleteAuthorizer", id, e, conflict_means(ErrorClass::DependencyViolation)))?;
        Ok(())
    }
}
