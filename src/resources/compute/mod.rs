//! The compute tier: the ECR repository for the image, the ECS cluster, the Fargate task
//! definition and service. Shared ECS helpers (tags) live here.

pub mod ecr_repository;
pub mod ecs_cluster;
pub mod ecs_service;
pub mod image;
pub mod task_definition;

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Tag;

use super::{Ctx, StackTags};
use crate::aws::{aws_error, AwsError};

pub fn ecs_tags(tags: &StackTags) -> Vec<Tag> {
    tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

/// Re-applies our tags (TagResource overwrites values and adds missing keys).
pub async fn put_tags(ctx: &Ctx, arn: &str, tags: &StackTags) -> Result<(), AwsError> {
    ctx.ecs()
        .await
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(ecs_tags(tags)))
        .send()
        .await
        .map_err(|e| aws_error("TagResource", arn, e))?;
    Ok(())
}
