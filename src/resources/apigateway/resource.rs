//! One path segment of the API (`/book`, `/book/{bookId}`, ...). Found by its full path
//! within the API: API Gateway refuses a second child of the same name with a
//! ConflictException (moto allows it, so the lookup before a retry matters there too).

use std::collections::BTreeMap;

use super::{conflict_means, find_children, resources_of, split_id};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResourceSpec {
    pub api_id: String,
    pub parent_id: String,
    pub path_part: String,
    /// The full path (`/book/{bookId}`): the key the resource is found by.
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ApiResource {
    pub api_id: String,
    pub id: String,
    pub parent_id: String,
    pub path_part: String,
    pub path: String,
}

async fn all(ctx: &Ctx, api: &str) -> Result<Vec<ApiResource>, AwsError> {
    Ok(resources_of(ctx, api)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|r| ApiResource {
            api_id: api.to_string(),
            id: r.id().unwrap_or_default().to_string(),
            parent_id: r.parent_id().unwrap_or_default().to_string(),
            path_part: r.path_part().unwrap_or_default().to_string(),
            path: r.path().unwrap_or_default().to_string(),
        })
        .collect())
}

impl Resource for ApiResourceSpec {
    type Observed = ApiResource;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<ApiResource>, AwsError> {
        Ok(Self::find_many(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<ApiResource>, AwsError> {
        Ok(all(ctx, &self.api_id).await?.into_iter().filter(|r| r.path == self.path).collect())
    }

    fn diff(&self, o: &ApiResource) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "api", &self.api_id, &o.api_id);
        compare(&mut replace, "parent_id", &self.parent_id, &o.parent_id);
        compare(&mut replace, "path_part", &self.path_part, &o.path_part);
        Diff::from_changes(Vec::new(), replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .apigateway()
            .await
            .create_resource()
            .rest_api_id(&self.api_id)
            .parent_id(&self.parent_id)
            .path_part(&self.path_part)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateResource", logical_id, e, conflict_means(ErrorClass::AlreadyExists)))?;
        Ok(format!("{}/{}", self.api_id, resp.id().unwrap_or_default()))
    }

    async fn update(&self, _ctx: &Ctx, _logical_id: &str, _o: &ApiResource) -> Result<Option<String>, AwsError> {
        Ok(None)
    }


    /// API Gateway refuses a second change to one REST API while a first is in progress.
    fn serial_key(&self) -> Option<String> {
        Some(self.api_id.clone())
    }

    fn physical_id(o: &ApiResource) -> String {
        format!("{}/{}", o.api_id, o.id)
    }

    fn attributes(o: &ApiResource) -> BTreeMap<String, String> {
        [("resource_id".to_string(), o.id.clone()), ("path".to_string(), o.path.clone())].into()
    }

    /// Under a new parent the path is a new resource: it is made, the methods move to it,
    /// and the old one is deleted.
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::RestApi);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<ApiResource>, AwsError> {
        find_children(ids, |api| async move { all(ctx, &api).await }, |r| format!("{}/{}", r.api_id, r.id)).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (api, resource) = split_id(id);
        ctx.apigateway()
            .await
            .delete_resource()
            .rest_api_id(api)
            .resource_id(resource)
            .send()
            .await
            .map_err(|e| aws_error("DeleteResource", id, e))?;
        Ok(())
    }
}
