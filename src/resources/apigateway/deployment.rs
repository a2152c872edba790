//! A deployment: the snapshot of the API that the stage serves. Its description carries a
//! hash of the API's desired definition, so a new one is made only when the definition
//! changed (the spec's hash differs), and a repeated CreateDeployment after a lost answer
//! is recognised by that description. The stage then moves to it and the old one goes.

use std::collections::BTreeMap;

use super::{conflict_means, find_children, split_id};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};

/// How every deployment infra makes is described: `infra <hash>`.
pub const DESCRIPTION_PREFIX: &str = "infra ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub api_id: String,
    /// `infra <hash of the definition>`.
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub api_id: String,
    pub id: String,
    pub description: String,
}

async fn all(ctx: &Ctx, api: &str) -> Result<Vec<Deployment>, AwsError> {
    let mut out = Vec::new();
    let mut position = None;
    loop {
        let resp = ctx.apigateway().await.get_deployments().rest_api_id(api).limit(500).set_position(position).send().await;
        let Some(resp) = found(resp.map_err(|e| aws_error("GetDeployments", api, e)))? else { return Ok(out) };
        out.extend(resp.items().iter().map(|d| Deployment {
            api_id: api.to_string(),
            id: d.id().unwrap_or_default().to_string(),
            description: d.description().unwrap_or_default().to_string(),
        }));
        position = resp.position().map(str::to_string);
        if position.is_none() {
            return Ok(out);
        }
    }
}

impl Resource for DeploymentSpec {
    type Observed = Deployment;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Deployment>, AwsError> {
        Ok(Self::find_many(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    /// Every deployment infra made in the API, not only one of this definition: a `down`
    /// killed after it forgot the deployment (it goes with the API) but before the API was
    /// deleted leaves one of an older definition. The engine keeps the one that matches (or
    /// replaces the closest) and deletes the others once the stage has moved.
    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Deployment>, AwsError> {
        Ok(all(ctx, &self.api_id).await?.into_iter().filter(|d| d.description.starts_with(DESCRIPTION_PREFIX)).collect())
    }

    fn diff(&self, o: &Deployment) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "api", &self.api_id, &o.api_id);
        compare(&mut replace, "description (definition hash)", &self.description, &o.description);
        Diff::from_changes(Vec::new(), replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .apigateway()
            .await
            .create_deployment()
            .rest_api_id(&self.api_id)
            .description(&self.description)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateDeployment", logical_id, e, conflict_means(ErrorClass::AlreadyExists)))?;
        Ok(format!("{}/{}", self.api_id, resp.id().unwrap_or_default()))
    }

    async fn update(&self, _ctx: &Ctx, _logical_id: &str, _o: &Deployment) -> Result<Option<String>, AwsError> {
        Ok(None)
    }


    /// API Gateway refuses a second change to one REST API while a first is in progress.
    fn serial_key(&self) -> Option<String> {
        Some(self.api_id.clone())
    }

    fn physical_id(o: &Deployment) -> String {
        format!("{}/{}", o.api_id, o.id)
    }

    fn attributes(o: &Deployment) -> BTreeMap<String, String> {
        [("deployment_id".to_string(), o.id.clone())].into()
    }

    /// The stage moves to the new deployment before the old one is deleted (API Gateway
    /// refuses to delete a deployment a stage points at).
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::RestApi);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Deployment>, AwsError> {
        find_children(ids, |api| async move { all(ctx, &api).await }, |d| format!("{}/{}", d.api_id, d.id)).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (api, deployment) = split_id(id);
        ctx.apigateway()
            .await
            .delete_deployment()
            .rest_api_id(api)
            .deployment_id(deployment)
            .send()
            .await
            .map_err(|e| {
                aws_error_typed("DeleteDeployment", id, e, |e| match e.code() {
                    // "Active stages pointing to this deployment must be moved or deleted".
                    Some("BadRequestException") | Some("ConflictException") if e.message().is_some_and(|m| m.contains("stage")) => {
                        Some(ErrorClass::DependencyViolation)
                    }
                    _ => None,
                })
            })?;
        Ok(())
    }
}
