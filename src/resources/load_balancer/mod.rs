//! The load balancer tier: an internet-facing ALB, its IP target group and the HTTP:80
//! listener. Shared Elastic Load Balancing helpers (tags) live here.

pub mod listener;
pub mod load_balancer;
pub mod target_group;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_elasticloadbalancingv2::types::Tag;

use super::{Ctx, StackTags};
use crate::aws::{aws_error, AwsError};

pub fn elb_tags(tags: &StackTags) -> Vec<Tag> {
    tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Tags of up to any number of ELB resources, 20 ARNs per DescribeTags call.
pub async fn describe_tags(ctx: &Ctx, arns: &[String]) -> Result<HashMap<String, BTreeMap<String, String>>, AwsError> {
    let mut out = HashMap::new();
    for chunk in arns.chunks(20) {
        let resp = ctx
            .elb()
            .await
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("DescribeTags", chunk.join(","), e))?;
        for d in resp.tag_descriptions() {
            let tags = d.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
            out.insert(d.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    Ok(out)
}

/// Re-applies our tags (AddTags overwrites values and adds missing keys).
pub async fn put_tags(ctx: &Ctx, arn: &str, tags: &StackTags) -> Result<(), AwsError> {
    ctx.elb()
        .await
        .add_tags()
        .resource_arns(arn)
        .set_tags(Some(elb_tags(tags)))
        .send()
        .await
        .map_err(|e| aws_error("AddTags", arn, e))?;
    Ok(())
}
