//! The REST API itself: regional, with its binary media types and the stack's tags (set at
//! create). Names are not unique, so a repeated CreateRestApi after a lost answer is
//! recognised by the tags GetRestApis returns with every API.

use std::collections::BTreeMap;

use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, Op, RestApi as SdkRestApi};

use super::{arn, escape_path, patch, put_tags, tag_map};
use crate::aws::{aws_error, found, AwsError, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Replacement, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiSpec {
    pub tags: StackTags,
    pub name: String,
    pub description: String,
    pub binary_media_types: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RestApi {
    pub id: String,
    pub name: String,
    pub description: String,
    pub root_resource_id: String,
    pub endpoint_types: Vec<String>,
    pub binary_media_types: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// GetRestApi and GetRestApis answer with different types of the same shape.
macro_rules! observe {
    ($api:expr) => {{
        let api = $api;
        let mut binary: Vec<String> = api.binary_media_types().to_vec();
        binary.sort();
        RestApi {
            id: api.id().unwrap_or_default().to_string(),
            name: api.name().unwrap_or_default().to_string(),
            description: api.description().unwrap_or_default().to_string(),
            root_resource_id: api.root_resource_id().unwrap_or_default().to_string(),
            endpoint_types: api.endpoint_configuration().map(|c| c.types().iter().map(|t| t.as_str().to_string()).collect()).unwrap_or_default(),
            binary_media_types: binary,
            tags: api.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        }
    }};
}

/// Every REST API of the account and region (500 a page), with its tags.
async fn list(ctx: &Ctx) -> Result<Vec<RestApi>, AwsError> {
    let mut out = Vec::new();
    let mut position = None;
    loop {
        let resp = ctx
            .apigateway()
            .await
            .get_rest_apis()
            .limit(500)
            .set_position(position)
            .send()
            .await
            .map_err(|e| aws_error("GetRestApis", "(all)", e))?;
        out.extend(resp.items().iter().map(|a: &SdkRestApi| observe!(a)));
        position = resp.position().map(str::to_string);
        if position.is_none() {
            return Ok(out);
        }
    }
}

pub async fn find_rest_api(ctx: &Ctx, id: &str) -> Result<Option<RestApi>, AwsError> {
    let got = ctx.apigateway().await.get_rest_api().rest_api_id(id).send().await;
    Ok(found(got.map_err(|e| aws_error("GetRestApi", id, e)))?.map(|api| observe!(&api)))
}

impl Resource for RestApiSpec {
    type Observed = RestApi;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<RestApi>, AwsError> {
        find_rest_api(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<RestApi>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|a| has_stack_tags(&a.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &RestApi) -> Diff {
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "name", &self.name, &o.name);
        compare(&mut update, "description", &self.description, &o.description);
        compare(&mut update, "endpoint_configuration.types", &"REGIONAL".to_string(), &o.endpoint_types.join(","));
        // An answer without binary media types is not compared: moto never returns them,
        // and AWS always does once they are set.
        if !o.binary_media_types.is_empty() {
            compare(&mut update, "binary_media_types", &self.binary_media_types.join(","), &o.binary_media_types.join(","));
        }
        Diff::from_changes(update, Vec::new())
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .apigateway()
            .await
            .create_rest_api()
            .name(&self.name)
            .description(&self.description)
            .endpoint_configuration(EndpointConfiguration::builder().types(EndpointType::Regional).build())
            .set_binary_media_types(Some(self.binary_media_types.clone()))
            .set_tags(Some(tag_map(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateRestApi", logical_id, e))?;
        Ok(resp.id().unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &RestApi) -> Result<Option<String>, AwsError> {
        let mut ops = Vec::new();
        if o.name != self.name {
            ops.push(patch(Op::Replace, "/name", Some(&self.name)));
        }
        if o.description != self.description {
            ops.push(patch(Op::Replace, "/description", Some(&self.description)));
        }
        if o.endpoint_types != ["REGIONAL"] {
            if let Some(old) = o.endpoint_types.first() {
                ops.push(patch(Op::Replace, &format!("/endpointConfiguration/types/{old}"), Some("REGIONAL")));
            }
        }
        if !o.binary_media_types.is_empty() {
            for t in self.binary_media_types.iter().filter(|t| !o.binary_media_types.contains(t)) {
                ops.push(patch(Op::Add, &format!("/binaryMediaTypes/{}", escape_path(t)), None));
            }
        }
        if !ops.is_empty() {
            ctx.apigateway()
                .await
                .update_rest_api()
                .rest_api_id(&o.id)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(|e| aws_error("UpdateRestApi", &o.id, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, arn(&ctx.aws.region, &o.id, None), &self.tags, &o.id).await?;
        }
        Ok(None)
    }

    fn physical_id(o: &RestApi) -> String {
        o.id.clone()
    }

    fn attributes(o: &RestApi) -> BTreeMap<String, String> {
        [("root_resource_id".to_string(), o.root_resource_id.clone())].into()
    }

    const REPLACEMENT: Replacement = Replacement::Refuse("replacing the REST API would change its URL");

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<RestApi>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|a| ids.contains(&a.id)).collect())
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<RestApi>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|a| has_stack_tags(&a.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &RestApi) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        // Read first: moto answers DeleteRestApi for a missing API with a 500.
        if find_rest_api(ctx, id).await?.is_none() {
            return Ok(());
        }
        let deleted = ctx.apigateway().await.delete_rest_api().rest_api_id(id).send().await;
        match deleted.map_err(|e| aws_error("DeleteRestApi", id, e)) {
            Ok(_) => Ok(()),
            // The SDK's repeat of a delete whose answer was lost meets moto's 500 for a
            // missing API: gone is what was asked.
            Err(e) if e.class == crate::aws::ErrorClass::Retryable && find_rest_api(ctx, id).await?.is_none() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
