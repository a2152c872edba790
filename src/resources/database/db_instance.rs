//! The cluster's writer instance (class from the config, not publicly accessible). Its
//! identifier is unique in the account and region: a repeat meets
//! DBInstanceAlreadyExistsFault and the engine's lookup by identifier finds it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{filter, put_tags, rds_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, wait_until, Ctx, Diff, Kind, Lifecycle, Poll, Resource, StackTags};

pub const DB_INSTANCE_CREATE_TIMEOUT: Duration = Duration::from_secs(40 * 60);
pub const DB_INSTANCE_DELETE_TIMEOUT: Duration = Duration::from_secs(40 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInstanceSpec {
    pub tags: StackTags,
    pub identifier: String,
    pub cluster_identifier: String,
    pub instance_class: String,
}

#[derive(Debug, Clone)]
pub struct DbInstance {
    pub identifier: String,
    pub arn: String,
    pub status: String,
    pub cluster_identifier: String,
    pub instance_class: String,
    pub engine: String,
    pub publicly_accessible: bool,
    pub tags: BTreeMap<String, String>,
}

fn observe(i: &aws_sdk_rds::types::DbInstance) -> DbInstance {
    DbInstance {
        identifier: i.db_instance_identifier().unwrap_or_default().to_string(),
        arn: i.db_instance_arn().unwrap_or_default().to_string(),
        status: i.db_instance_status().unwrap_or_default().to_string(),
        cluster_identifier: i.db_cluster_identifier().unwrap_or_default().to_string(),
        instance_class: i.db_instance_class().unwrap_or_default().to_string(),
        engine: i.engine().unwrap_or_default().to_string(),
        publicly_accessible: i.publicly_accessible().unwrap_or(false),
        tags: tag_map(i.tag_list()),
    }
}

pub async fn find_instances(ctx: &Ctx, ids: Option<&[String]>) -> Result<Vec<DbInstance>, AwsError> {
    let what = ids.map(|i| i.join(",")).unwrap_or_else(|| "(stack inventory)".into());
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let mut req = ctx.rds().await.describe_db_instances().set_marker(marker);
        if let Some(ids) = ids {
            req = req.filters(filter("db-instance-id", ids));
        }
        let resp = req.send().await.map_err(|e| aws_error("DescribeDBInstances", &what, e))?;
        out.extend(resp.db_instances().iter().map(observe));
        marker = resp.marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    Ok(out)
}

pub async fn find_instance(ctx: &Ctx, id: &str) -> Result<Option<DbInstance>, AwsError> {
    Ok(find_instances(ctx, Some(&[id.to_string()])).await?.into_iter().next())
}

impl Resource for DbInstanceSpec {
    type Observed = DbInstance;

    const DELETE_BEFORE: &'static [(Kind, &'static str)] = &[
        (Kind::SecurityGroup, "DeleteSecurityGroup: DependencyViolation while the instance's interface uses the group"),
        (Kind::DbSubnetGroup, "DeleteDBSubnetGroup: InvalidDBSubnetGroupStateFault while an instance uses the group"),
    ];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<DbInstance>, AwsError> {
        find_instance(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<DbInstance>, AwsError> {
        Ok(find_instance(ctx, &self.identifier).await?.into_iter().filter(|i| has_stack_tags(&i.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &DbInstance) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "identifier", &self.identifier, &o.identifier);
        compare(&mut replace, "db_cluster_identifier", &self.cluster_identifier, &o.cluster_identifier);
        compare(&mut replace, "engine", &"aurora-postgresql".to_string(), &o.engine);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "instance_class", &self.instance_class, &o.instance_class);
        compare(&mut update, "publicly_accessible", &false, &o.publicly_accessible);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        ctx.rds()
            .await
            .create_db_instance()
            .db_instance_identifier(&self.identifier)
            .db_cluster_identifier(&self.cluster_identifier)
            .db_instance_class(&self.instance_class)
            .engine("aurora-postgresql")
            .publicly_accessible(false)
            .set_tags(Some(rds_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateDBInstance", logical_id, e, |e| e.is_db_instance_already_exists_fault().then_some(ErrorClass::AlreadyExists)))?;
        Ok(self.identifier.clone())
    }

    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        let what = format!("Aurora instance {id} to be available");
        wait_until(&what, "CreateDBInstance", DB_INSTANCE_CREATE_TIMEOUT, || async {
            Ok(match find_instance(ctx, id).await? {
                Some(i) if i.status == "available" => Poll::Ready(()),
                Some(i) => Poll::Pending(i.status),
                None => Poll::Pending("not yet visible".into()),
            })
        })
        .await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &DbInstance) -> Result<Option<String>, AwsError> {
        if self.instance_class != o.instance_class || o.publicly_accessible {
            ctx.rds()
                .await
                .modify_db_instance()
                .db_instance_identifier(&o.identifier)
                .db_instance_class(&self.instance_class)
                .publicly_accessible(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error("ModifyDBInstance", &o.identifier, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.arn, rds_tags(&self.tags)).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<DbInstance>, AwsError> {
        find_instances(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<DbInstance>, AwsError> {
        Ok(find_instances(ctx, None).await?.into_iter().filter(|i| has_stack_tags(&i.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &DbInstance) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// An instance of a cluster takes no snapshot of its own (the cluster's is the backup).
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let deleting = find_instance(ctx, id).await?.is_some_and(|i| i.status == "deleting");
        if !deleting {
            ctx.rds().await.delete_db_instance().db_instance_identifier(id).skip_final_snapshot(true).send().await.map_err(|e| {
                aws_error_typed("DeleteDBInstance", id, e, |e| {
                    if e.is_db_instance_not_found_fault() {
                        Some(ErrorClass::NotFound)
                    } else if e.is_invalid_db_instance_state_fault() {
                        Some(ErrorClass::DependencyViolation)
                    } else {
                        None
                    }
                })
            })?;
        }
        let what = format!("Aurora instance {id} to be deleted");
        wait_until(&what, "DeleteDBInstance", DB_INSTANCE_DELETE_TIMEOUT, || async {
            Ok(match find_instance(ctx, id).await? {
                Some(i) => Poll::Pending(i.status),
                None => Poll::Ready(()),
            })
        })
        .await
    }

    fn physical_id(o: &DbInstance) -> String {
        o.identifier.clone()
    }

    fn lifecycle(o: &DbInstance) -> Lifecycle {
        match o.status.as_str() {
            "creating" | "backing-up" | "modifying" | "configuring-enhanced-monitoring" => Lifecycle::Settling(o.status.clone()),
            "deleting" => Lifecycle::Deleting(o.status.clone()),
            _ => Lifecycle::Ready,
        }
    }
}
