//! The ECS cluster. Its name is unique in the account and region, and CreateCluster with an
//! existing name returns that cluster: a repeat is recognised by name (and tags).

use std::collections::BTreeMap;

use aws_sdk_ecs::types::ClusterField;

use super::{ecs_tags, put_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Lifecycle, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsClusterSpec {
    pub tags: StackTags,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct EcsCluster {
    pub arn: String,
    pub name: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// Clusters by ARN or name; INACTIVE ones (deleted, still listed for a while) are gone.
pub async fn find_clusters(ctx: &Ctx, ids: &[String]) -> Result<Vec<EcsCluster>, AwsError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(100) {
        let resp = ctx
            .ecs()
            .await
            .describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| aws_error("DescribeClusters", chunk.join(","), e))?;
        out.extend(resp.clusters().iter().filter(|c| c.status() != Some("INACTIVE")).map(|c| EcsCluster {
            arn: c.cluster_arn().unwrap_or_default().to_string(),
            name: c.cluster_name().unwrap_or_default().to_string(),
            status: c.status().unwrap_or_default().to_string(),
            tags: tag_map(c.tags()),
        }));
    }
    Ok(out)
}

/// Every live cluster of the account carrying the stack's tag.
pub async fn stack_clusters(ctx: &Ctx) -> Result<Vec<EcsCluster>, AwsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let resp = ctx.ecs().await.list_clusters().set_next_token(token).send().await.map_err(|e| aws_error("ListClusters", "(stack inventory)", e))?;
        arns.extend(resp.cluster_arns().iter().cloned());
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    Ok(find_clusters(ctx, &arns).await?.into_iter().filter(|c| has_stack_tags(&c.tags, &ctx.stack, None)).collect())
}

impl Resource for EcsClusterSpec {
    type Observed = EcsCluster;

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<EcsCluster>, AwsError> {
        Ok(find_clusters(ctx, &[self.name.clone()]).await?.into_iter().filter(|c| has_stack_tags(&c.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &EcsCluster) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        Diff::from_changes(self.tags.diff(&o.tags), replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ecs()
            .await
            .create_cluster()
            .cluster_name(&self.name)
            .set_tags(Some(ecs_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateCluster", logical_id, e))?;
        Ok(resp.cluster().and_then(|c| c.cluster_arn()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &EcsCluster) -> Result<Option<String>, AwsError> {
        put_tags(ctx, &o.arn, &self.tags).await?;
        Ok(None)
    }

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<EcsCluster>, AwsError> {
        Ok(find_clusters(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<EcsCluster>, AwsError> {
        find_clusters(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<EcsCluster>, AwsError> {
        stack_clusters(ctx).await
    }

    fn tags(o: &EcsCluster) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Fails with ClusterContainsServicesException while a service remains; the service is
    /// ordered first (`EcsServiceSpec::DELETE_BEFORE`).
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.ecs().await.delete_cluster().cluster(id).send().await.map_err(|e| {
            aws_error_typed("DeleteCluster", id, e, |e| {
                if e.is_cluster_not_found_exception() {
                    Some(ErrorClass::NotFound)
                } else if e.is_cluster_contains_services_exception() || e.is_cluster_contains_tasks_exception() {
                    Some(ErrorClass::DependencyViolation)
                } else {
                    None
                }
            })
        })?;
        Ok(())
    }

    fn physical_id(o: &EcsCluster) -> String {
        o.arn.clone()
    }

    fn attributes(o: &EcsCluster) -> BTreeMap<String, String> {
        [("name".to_string(), o.name.clone())].into()
    }

    fn lifecycle(o: &EcsCluster) -> Lifecycle {
        match o.status.as_str() {
            "PROVISIONING" => Lifecycle::Settling(o.status.clone()),
            "DEPROVISIONING" => Lifecycle::Deleting(o.status.clone()),
            _ => Lifecycle::Ready,
        }
    }
}
