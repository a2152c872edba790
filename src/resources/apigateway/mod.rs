//! API Gateway (REST): the API, its resources (paths), the Cognito authorizer, the methods
//! with their integrations, the deployment and the `prod` stage with its cache.
//!
//! Only the API carries tags that a scan can read; everything inside it is found by its
//! key (a path, a name, a verb) within the API, and its physical id is `<api id>/<id>`, so
//! `down` knows they all go with the API (`DELETED_WITH`). Edits to resources and methods
//! are not live until a deployment: the stage serves the deployment's snapshot, so a method
//! can be re-put in place without an outage.

pub mod authorizer;
pub mod deployment;
pub mod method;
pub mod resource;
pub mod rest_api;
pub mod stage;
pub mod vpc_link;

use std::collections::HashMap;

use aws_sdk_apigateway::types::{Op, PatchOperation, Resource as ApiResourceItem};

use crate::aws::{aws_error, found, AwsError, ErrorClass};
use crate::resources::{Ctx, StackTags};

/// Splits `<api id>/<rest>` into its two parts.
pub fn split_id(pid: &str) -> (&str, &str) {
    pid.split_once('/').unwrap_or((pid, ""))
}

pub fn patch(op: Op, path: &str, value: Option<&str>) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).set_value(value.map(str::to_string)).build()
}

/// `~1` escapes a `/` inside one segment of a patch path (JSON Pointer).
pub fn escape_path(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// The ARN API Gateway's tagging calls take for an API or one of its stages.
pub fn arn(region: &str, api: &str, stage: Option<&str>) -> String {
    match stage {
        Some(stage) => format!("arn:aws:apigateway:{region}::/restapis/{api}/stages/{stage}"),
        None => format!("arn:aws:apigateway:{region}::/restapis/{api}"),
    }
}

/// The stack's tags as API Gateway's create and tagging calls take them.
pub fn tag_map(tags: &StackTags) -> HashMap<String, String> {
    tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Puts the stack's tags on an API, a stage or a VPC link, by its tagging ARN.
pub async fn put_tags(ctx: &Ctx, resource_arn: String, tags: &StackTags, what: &str) -> Result<(), AwsError> {
    ctx.apigateway()
        .await
        .tag_resource()
        .resource_arn(resource_arn)
        .set_tags(Some(tag_map(tags)))
        .send()
        .await
        .map_err(|e| aws_error("TagResource", what, e))?;
    Ok(())
}

/// A ConflictException: the name, path or verb is taken (by an earlier attempt of ours,
/// which the engine's lookup then finds), or something still uses what is deleted.
/// (NotFoundException is NotFound by the shared code table.)
pub fn conflict_means<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(class: ErrorClass) -> impl Fn(&E) -> Option<ErrorClass> {
    move |e: &E| (e.code() == Some("ConflictException")).then_some(class)
}

/// Every resource (path) of an API, with its methods and their integrations embedded: one
/// paged call reads the whole definition. `None` when the API is gone.
pub async fn resources_of(ctx: &Ctx, api: &str) -> Result<Option<Vec<ApiResourceItem>>, AwsError> {
    let mut out = Vec::new();
    let mut position = None;
    loop {
        let resp = ctx.apigateway().await.get_resources().rest_api_id(api).embed("methods").limit(500).set_position(position).send().await;
        let Some(resp) = found(resp.map_err(|e| aws_error("GetResources", api, e)))? else { return Ok(None) };
        out.extend(resp.items().iter().cloned());
        position = resp.position().map(str::to_string);
        if position.is_none() {
            return Ok(Some(out));
        }
    }
}

/// Reads many children of APIs (paths, authorizers, deployments, stages) with one listing per
/// API: `list` reads one API's children, `pid` names a child as its physical id.
pub async fn find_children<T, F, Fut>(ids: &[String], list: F, pid: impl Fn(&T) -> String) -> Result<Vec<T>, AwsError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, AwsError>>,
{
    let mut out = Vec::new();
    for (api, wanted) in by_api(ids) {
        out.extend(list(api).await?.into_iter().filter(|child| wanted.contains(&pid(child))));
    }
    Ok(out)
}

/// Groups physical ids `<api>/<rest>` by API.
pub fn by_api(ids: &[String]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for id in ids {
        let (api, _) = split_id(id);
        out.entry(api.to_string()).or_default().push(id.clone());
    }
    out
}
