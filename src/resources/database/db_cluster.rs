//! The Aurora PostgreSQL cluster: database `db_name`, master user `db_user` with the
//! password read from SSM at create (never stored or logged), in the DB subnet group behind
//! the `db` security group, storage encrypted. Its identifier is unique in the account and
//! region: a repeat meets DBClusterAlreadyExistsFault and the engine's lookup by identifier
//! finds the cluster the first attempt made.
//!
//! Replacing it would destroy its data, so a change AWS cannot make in place is refused.
//! Deletion protection and the final-snapshot choice are recorded at create (the latter as
//! a tag, so a lost state keeps it too) and govern `down` whatever the config says later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{filter, put_tags, rds_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::secrets::ssm_parameter::read_secret;
use crate::resources::{compare, wait_until, Ctx, Diff, Kind, Lifecycle, Poll, Replacement, Resource, StackTags};

/// Aurora takes 5–10 minutes to create a cluster and as long to delete one.
pub const DB_CLUSTER_CREATE_TIMEOUT: Duration = Duration::from_secs(40 * 60);
pub const DB_CLUSTER_DELETE_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// The tag that remembers, on the cluster itself, whether `down` takes a final snapshot.
pub const TAG_FINAL_SNAPSHOT: &str = "infra:final-snapshot";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbClusterSpec {
    pub tags: StackTags,
    pub identifier: String,
    pub engine_version: String,
    pub database_name: String,
    pub master_username: String,
    /// Name of the SSM parameter holding the master password.
    pub password_parameter: String,
    pub subnet_group: String,
    pub security_groups: BTreeSet<String>,
    pub deletion_protection: bool,
    pub final_snapshot: bool,
}

#[derive(Debug, Clone)]
pub struct DbCluster {
    pub identifier: String,
    pub arn: String,
    pub status: String,
    pub endpoint: String,
    pub port: i32,
    pub engine: String,
    pub engine_version: String,
    pub database_name: String,
    pub master_username: String,
    pub subnet_group: String,
    pub security_groups: BTreeSet<String>,
    pub storage_encrypted: bool,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
}

fn observe(c: &aws_sdk_rds::types::DbCluster) -> DbCluster {
    DbCluster {
        identifier: c.db_cluster_identifier().unwrap_or_default().to_string(),
        arn: c.db_cluster_arn().unwrap_or_default().to_string(),
        status: c.status().unwrap_or_default().to_string(),
        endpoint: c.endpoint().unwrap_or_default().to_string(),
        port: c.port().unwrap_or_default(),
        engine: c.engine().unwrap_or_default().to_string(),
        engine_version: c.engine_version().unwrap_or_default().to_string(),
        database_name: c.database_name().unwrap_or_default().to_string(),
        master_username: c.master_username().unwrap_or_default().to_string(),
        subnet_group: c.db_subnet_group().unwrap_or_default().to_string(),
        security_groups: c.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id().map(str::to_string)).collect(),
        storage_encrypted: c.storage_encrypted().unwrap_or(false),
        deletion_protection: c.deletion_protection().unwrap_or(false),
        tags: tag_map(c.tag_list()),
    }
}

/// Clusters by identifier, or all of the account's (a filter: a missing one is absent).
pub async fn find_clusters(ctx: &Ctx, ids: Option<&[String]>) -> Result<Vec<DbCluster>, AwsError> {
    let what = ids.map(|i| i.join(",")).unwrap_or_else(|| "(stack inventory)".into());
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let mut req = ctx.rds().await.describe_db_clusters().set_marker(marker);
        if let Some(ids) = ids {
            req = req.filters(filter("db-cluster-id", ids));
        }
        let resp = req.send().await.map_err(|e| aws_error("DescribeDBClusters", &what, e))?;
        out.extend(resp.db_clusters().iter().map(observe));
        marker = resp.marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    Ok(out)
}

pub async fn find_cluster(ctx: &Ctx, id: &str) -> Result<Option<DbCluster>, AwsError> {
    Ok(find_clusters(ctx, Some(&[id.to_string()])).await?.into_iter().next())
}

impl DbClusterSpec {
    fn all_tags(&self) -> Vec<aws_sdk_rds::types::Tag> {
        let mut tags = rds_tags(&self.tags);
        tags.push(aws_sdk_rds::types::Tag::builder().key(TAG_FINAL_SNAPSHOT).value(self.final_snapshot.to_string()).build());
        tags
    }
}

async fn wait_cluster_gone(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let what = format!("Aurora cluster {id} to be deleted");
    wait_until(&what, "DeleteDBCluster", DB_CLUSTER_DELETE_TIMEOUT, || async {
        Ok(match find_cluster(ctx, id).await? {
            Some(c) => Poll::Pending(c.status),
            None => Poll::Ready(()),
        })
    })
    .await
}

impl Resource for DbClusterSpec {
    type Observed = DbCluster;

    const REPLACEMENT: Replacement = Replacement::Refuse("replacing the Aurora cluster would destroy its data");
    const DELETE_AFTER: &'static [(Kind, &'static str)] =
        &[(Kind::DbInstance, "DeleteDBCluster: InvalidDBClusterStateFault while the cluster still has instances")];
    const DELETE_BEFORE: &'static [(Kind, &'static str)] = &[
        (Kind::DbSubnetGroup, "DeleteDBSubnetGroup: InvalidDBSubnetGroupStateFault while a cluster uses the group"),
        (Kind::SecurityGroup, "DeleteSecurityGroup: DependencyViolation while the cluster's interfaces use the group"),
    ];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<DbCluster>, AwsError> {
        find_cluster(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<DbCluster>, AwsError> {
        Ok(find_cluster(ctx, &self.identifier).await?.into_iter().filter(|c| has_stack_tags(&c.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &DbCluster) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "identifier", &self.identifier, &o.identifier);
        compare(&mut replace, "engine", &"aurora-postgresql".to_string(), &o.engine);
        compare(&mut replace, "database_name", &self.database_name, &o.database_name);
        compare(&mut replace, "master_username", &self.master_username, &o.master_username);
        compare(&mut replace, "db_subnet_group", &self.subnet_group, &o.subnet_group);
        compare(&mut replace, "storage_encrypted", &true, &o.storage_encrypted);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "engine_version", &self.engine_version, &o.engine_version);
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        compare(&mut update, "vpc_security_groups", &join(&self.security_groups), &join(&o.security_groups));
        compare(&mut update, "deletion_protection", &self.deletion_protection, &o.deletion_protection);
        let snapshot = o.tags.get(TAG_FINAL_SNAPSHOT).cloned().unwrap_or_else(|| "(absent)".into());
        compare(&mut update, &format!("tags.{TAG_FINAL_SNAPSHOT}"), &self.final_snapshot.to_string(), &snapshot);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let password = read_secret(ctx, &self.password_parameter).await?;
        ctx.rds()
            .await
            .create_db_cluster()
            .db_cluster_identifier(&self.identifier)
            .engine("aurora-postgresql")
            .engine_version(&self.engine_version)
            .database_name(&self.database_name)
            .master_username(&self.master_username)
            .master_user_password(password)
            .db_subnet_group_name(&self.subnet_group)
            .set_vpc_security_group_ids(Some(self.security_groups.iter().cloned().collect()))
            .storage_encrypted(true)
            .deletion_protection(self.deletion_protection)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(self.all_tags()))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateDBCluster", logical_id, e, |e| e.is_db_cluster_already_exists_fault().then_some(ErrorClass::AlreadyExists)))?;
        Ok(self.identifier.clone())
    }

    /// Ready for its dependants once it has an endpoint, not once it is `available`: the
    /// writer instance needs only the cluster's identifier — RDS takes `CreateDBInstance`
    /// for a cluster that is still `creating`, as the console does when it creates both in
    /// one go (and `InvalidDBClusterStateFault`, should a region refuse, is a refusal the
    /// engine waits out) — and the task definition only the endpoint, which AWS assigns at
    /// create. So the writer's 5–12 minutes start with the cluster's, not after them.
    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        let what = format!("Aurora cluster {id} to have an endpoint");
        wait_until(&what, "CreateDBCluster", DB_CLUSTER_CREATE_TIMEOUT, || async {
            Ok(match find_cluster(ctx, id).await? {
                Some(c) if !c.endpoint.is_empty() || c.status == "available" => Poll::Ready(()),
                Some(c) => Poll::Pending(c.status),
                None => Poll::Pending("not yet visible".into()),
            })
        })
        .await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &DbCluster) -> Result<Option<String>, AwsError> {
        let modify = self.engine_version != o.engine_version || self.security_groups != o.security_groups || self.deletion_protection != o.deletion_protection;
        if modify {
            ctx.rds()
                .await
                .modify_db_cluster()
                .db_cluster_identifier(&o.identifier)
                .engine_version(&self.engine_version)
                .set_vpc_security_group_ids(Some(self.security_groups.iter().cloned().collect()))
                .deletion_protection(self.deletion_protection)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error("ModifyDBCluster", &o.identifier, e))?;
        }
        let snapshot_tag = o.tags.get(TAG_FINAL_SNAPSHOT) != Some(&self.final_snapshot.to_string());
        if !self.tags.diff(&o.tags).is_empty() || snapshot_tag {
            put_tags(ctx, &o.arn, self.all_tags()).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<DbCluster>, AwsError> {
        find_clusters(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<DbCluster>, AwsError> {
        Ok(find_clusters(ctx, None).await?.into_iter().filter(|c| has_stack_tags(&c.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &DbCluster) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Honours what was recorded at create: deletion protection refuses with the way to lift
    /// it; the final snapshot is taken when it was asked for.
    async fn delete(ctx: &Ctx, id: &str, recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let Some(live) = find_cluster(ctx, id).await? else { return Ok(()) };
        if live.status == "deleting" {
            return wait_cluster_gone(ctx, id).await;
        }
        if live.deletion_protection {
            return Err(AwsError {
                operation: "DeleteDBCluster",
                resource: id.to_string(),
                code: Some("DeletionProtection".into()),
                message: format!(
                    "Aurora cluster {id} has deletion protection on; set `db_deletion_protection = false` in infra.toml and run `infra up`, then `infra down` (or: aws rds modify-db-cluster --db-cluster-identifier {id} --no-deletion-protection --apply-immediately)"
                ),
                request_id: None,
                class: ErrorClass::Fatal,
            });
        }
        let final_snapshot = recorded
            .get("final_snapshot")
            .or_else(|| live.tags.get(TAG_FINAL_SNAPSHOT))
            .is_some_and(|v| v == "true");
        let mut req = ctx.rds().await.delete_db_cluster().db_cluster_identifier(id).skip_final_snapshot(!final_snapshot);
        if final_snapshot {
            let stamp = crate::state::now_rfc3339().replace([':', '.', 'T', 'Z', '+'], "-").trim_end_matches('-').to_lowercase();
            req = req.final_db_snapshot_identifier(format!("{id}-final-{stamp}"));
        }
        req.send().await.map_err(|e| {
            aws_error_typed("DeleteDBCluster", id, e, |e| {
                if e.is_db_cluster_not_found_fault() {
                    Some(ErrorClass::NotFound)
                } else if e.is_invalid_db_cluster_state_fault() {
                    Some(ErrorClass::DependencyViolation)
                } else {
                    None
                }
            })
        })?;
        wait_cluster_gone(ctx, id).await
    }

    fn physical_id(o: &DbCluster) -> String {
        o.identifier.clone()
    }

    fn attributes(o: &DbCluster) -> BTreeMap<String, String> {
        [
            ("endpoint".to_string(), o.endpoint.clone()),
            ("port".to_string(), o.port.to_string()),
            ("arn".to_string(), o.arn.clone()),
            ("deletion_protection".to_string(), o.deletion_protection.to_string()),
            ("final_snapshot".to_string(), o.tags.get(TAG_FINAL_SNAPSHOT).cloned().unwrap_or_else(|| "false".into())),
        ]
        .into()
    }

    fn lifecycle(o: &DbCluster) -> Lifecycle {
        match o.status.as_str() {
            // Usable by its dependants as soon as it has an endpoint (see `await_ready`); a
            // change while it is busy meets InvalidDBClusterStateFault, which is waited out.
            "creating" if o.endpoint.is_empty() => Lifecycle::Settling(o.status.clone()),
            "deleting" => Lifecycle::Deleting(o.status.clone()),
            _ => Lifecycle::Ready,
        }
    }
}
