//! The network tier: VPC, internet gateway, subnets, Elastic IPs, NAT gateways, route
//! tables, routes, associations and security groups. Shared EC2 helpers live here.

pub mod elastic_ip;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod route;
pub mod route_table;
pub mod route_table_association;
pub mod security_group;
pub mod subnet;
pub mod vpc;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::{Ctx, StackTags, TAG_ID, TAG_STACK};
use crate::aws::{aws_error, AwsError};

/// Tags applied in the create call itself, so a resource never exists untagged.
pub fn tag_spec(resource_type: ResourceType, tags: &StackTags) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource_type);
    for (k, v) in tags.pairs() {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    spec.build()
}

pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

/// Filters selecting this stack's resources, optionally one logical id.
pub fn stack_filters(stack: &str, logical_id: Option<&str>) -> Vec<Filter> {
    let mut filters = vec![Filter::builder().name(format!("tag:{TAG_STACK}")).values(stack).build()];
    if let Some(id) = logical_id {
        filters.push(Filter::builder().name(format!("tag:{TAG_ID}")).values(id).build());
    }
    filters
}

/// Whether `tags` mark a resource of `stack` (and of `logical_id`, if given). Applied on
/// top of the server-side filters, which some emulators ignore (moto's NAT gateways).
pub fn has_stack_tags(tags: &BTreeMap<String, String>, stack: &str, logical_id: Option<&str>) -> bool {
    tags.get(TAG_STACK).map(String::as_str) == Some(stack)
        && logical_id.is_none_or(|id| tags.get(TAG_ID).map(String::as_str) == Some(id))
}

/// Re-applies our tags (CreateTags overwrites values and adds missing keys).
pub async fn put_tags(ctx: &Ctx, id: &str, tags: &StackTags) -> Result<(), AwsError> {
    let mut req = ctx.ec2().await.create_tags().resources(id);
    for (k, v) in tags.pairs() {
        req = req.tags(Tag::builder().key(k).value(v).build());
    }
    req.send().await.map_err(|e| aws_error("CreateTags", id, e))?;
    Ok(())
}

pub fn ec2_bool(v: bool) -> aws_sdk_ec2::types::AttributeBooleanValue {
    aws_sdk_ec2::types::AttributeBooleanValue::builder().value(v).build()
}
