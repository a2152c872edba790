//! The database tier: the DB subnet group over the `db` subnets, the Aurora PostgreSQL
//! cluster and its writer instance. Shared RDS helpers (tags, filters) live here.

pub mod db_cluster;
pub mod db_instance;
pub mod db_subnet_group;

use std::collections::BTreeMap;

use aws_sdk_rds::types::{Filter, Tag};

use super::{Ctx, StackTags};
use crate::aws::{aws_error, AwsError};

pub fn rds_tags(tags: &StackTags) -> Vec<Tag> {
    tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

pub fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder().name(name).set_values(Some(values.to_vec())).build()
}

/// Re-applies our tags (AddTagsToResource overwrites values and adds missing keys), plus
/// any extra ones (the cluster's remembered settings).
pub async fn put_tags(ctx: &Ctx, arn: &str, tags: Vec<Tag>) -> Result<(), AwsError> {
    ctx.rds()
        .await
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| aws_error("AddTagsToResource", arn, e))?;
    Ok(())
}
