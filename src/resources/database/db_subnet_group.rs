//! The DB subnet group over the `db` subnets. Its name is unique in the account and region;
//! a repeat meets DBSubnetGroupAlreadyExists and the engine's lookup by name finds it. A
//! new name is a replacement: the new group is created before the old one is deleted.

use std::collections::{BTreeMap, BTreeSet};

use super::{filter, put_tags, rds_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSubnetGroupSpec {
    pub tags: StackTags,
    pub name: String,
    pub subnets: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct DbSubnetGroup {
    pub name: String,
    pub arn: String,
    pub subnets: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

/// Subnet groups by name, or all of the account's, with their tags.
async fn describe(ctx: &Ctx, names: Option<&[String]>) -> Result<Vec<DbSubnetGroup>, AwsError> {
    let mut out = Vec::new();
    let names: Vec<Option<&String>> = match names {
        Some(names) => names.iter().map(Some).collect(),
        None => vec![None],
    };
    for name in names {
        let mut marker = None;
        loop {
            let resp = ctx.rds().await.describe_db_subnet_groups().set_db_subnet_group_name(name.cloned()).set_marker(marker).send().await;
            let resp = match resp {
                Ok(resp) => resp,
                Err(e) => match aws_error_typed("DescribeDBSubnetGroups", name.cloned().unwrap_or_default(), e, |e| {
                    e.is_db_subnet_group_not_found_fault().then_some(ErrorClass::NotFound)
                }) {
                    e if e.is_not_found() => break,
                    e => return Err(e),
                },
            };
            for g in resp.db_subnet_groups() {
                out.push(DbSubnetGroup {
                    name: g.db_subnet_group_name().unwrap_or_default().to_string(),
                    arn: g.db_subnet_group_arn().unwrap_or_default().to_string(),
                    subnets: g.subnets().iter().filter_map(|s| s.subnet_identifier().map(str::to_string)).collect(),
                    tags: BTreeMap::new(),
                });
            }
            marker = resp.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
    }
    for g in &mut out {
        let resp = ctx.rds().await.list_tags_for_resource().resource_name(&g.arn).send().await.map_err(|e| aws_error("ListTagsForResource", &g.arn, e))?;
        g.tags = tag_map(resp.tag_list());
    }
    Ok(out)
}

impl Resource for DbSubnetGroupSpec {
    type Observed = DbSubnetGroup;

    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const DELETE_BEFORE: &'static [(Kind, &'static str)] =
        &[(Kind::Subnet, "DeleteSubnet: InvalidSubnet / DependencyViolation while a DB subnet group holds the subnet")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<DbSubnetGroup>, AwsError> {
        Ok(describe(ctx, Some(&[id.to_string()])).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<DbSubnetGroup>, AwsError> {
        Ok(describe(ctx, Some(&[self.name.clone()])).await?.into_iter().filter(|g| has_stack_tags(&g.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &DbSubnetGroup) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        let mut update = self.tags.diff(&o.tags);
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        compare(&mut update, "subnets", &join(&self.subnets), &join(&o.subnets));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        ctx.rds()
            .await
            .create_db_subnet_group()
            .db_subnet_group_name(&self.name)
            .db_subnet_group_description(format!("infra stack {}: the db subnets", self.tags.stack))
            .set_subnet_ids(Some(self.subnets.iter().cloned().collect()))
            .set_tags(Some(rds_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateDBSubnetGroup", logical_id, e, |e| e.is_db_subnet_group_already_exists_fault().then_some(ErrorClass::AlreadyExists)))?;
        Ok(self.name.clone())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &DbSubnetGroup) -> Result<Option<String>, AwsError> {
        if self.subnets != o.subnets {
            ctx.rds()
                .await
                .modify_db_subnet_group()
                .db_subnet_group_name(&o.name)
                .set_subnet_ids(Some(self.subnets.iter().cloned().collect()))
                .send()
                .await
                .map_err(|e| aws_error("ModifyDBSubnetGroup", &o.name, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.arn, rds_tags(&self.tags)).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<DbSubnetGroup>, AwsError> {
        describe(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<DbSubnetGroup>, AwsError> {
        let _ = filter;
        Ok(describe(ctx, None).await?.into_iter().filter(|g| has_stack_tags(&g.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &DbSubnetGroup) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Fails with InvalidDBSubnetGroupStateFault while a cluster uses the group.
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.rds().await.delete_db_subnet_group().db_subnet_group_name(id).send().await.map_err(|e| {
            aws_error_typed("DeleteDBSubnetGroup", id, e, |e| {
                if e.is_db_subnet_group_not_found_fault() {
                    Some(ErrorClass::NotFound)
                } else if e.is_invalid_db_subnet_group_state_fault() {
                    Some(ErrorClass::DependencyViolation)
                } else {
                    None
                }
            })
        })?;
        Ok(())
    }

    fn physical_id(o: &DbSubnetGroup) -> String {
        o.name.clone()
    }

    fn attributes(o: &DbSubnetGroup) -> BTreeMap<String, String> {
        [("arn".to_string(), o.arn.clone())].into()
    }
}
