//! The service's log group with its retention. Names are unique in the account and region:
//! a repeated CreateLogGroup meets ResourceAlreadyExistsException, and the engine's lookup
//! by name (and tags) finds the group the first attempt made.

use std::collections::BTreeMap;

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupSpec {
    pub tags: StackTags,
    pub name: String,
    pub retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct LogGroup {
    pub name: String,
    pub arn: String,
    pub retention_days: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

/// The stack's log group names start with this.
pub fn stack_prefix(stack: &str) -> String {
    format!("/infra/{stack}/")
}

async fn tags_of(ctx: &Ctx, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
    #[allow(deprecated)]
    let resp = ctx.logs().await.list_tags_log_group().log_group_name(name).send().await.map_err(|e| aws_error("ListTagsLogGroup", name, e))?;
    Ok(resp.tags().cloned().unwrap_or_default().into_iter().collect())
}

/// Log groups whose names start with `prefix`, with their tags.
async fn describe(ctx: &Ctx, prefix: &str) -> Result<Vec<LogGroup>, AwsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let resp = ctx
            .logs()
            .await
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("DescribeLogGroups", prefix, e))?;
        for g in resp.log_groups() {
            out.push(LogGroup {
                name: g.log_group_name().unwrap_or_default().to_string(),
                arn: g.arn().unwrap_or_default().trim_end_matches(":*").to_string(),
                retention_days: g.retention_in_days(),
                tags: BTreeMap::new(),
            });
        }
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    for g in &mut out {
        g.tags = tags_of(ctx, &g.name).await?;
    }
    Ok(out)
}

pub async fn find_log_group(ctx: &Ctx, name: &str) -> Result<Option<LogGroup>, AwsError> {
    Ok(describe(ctx, name).await?.into_iter().find(|g| g.name == name))
}

impl Resource for LogGroupSpec {
    type Observed = LogGroup;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<LogGroup>, AwsError> {
        find_log_group(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<LogGroup>, AwsError> {
        Ok(find_log_group(ctx, &self.name).await?.into_iter().filter(|g| has_stack_tags(&g.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &LogGroup) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        let mut update = self.tags.diff(&o.tags);
        let found = o.retention_days.map(|d| d.to_string()).unwrap_or_else(|| "never expire".into());
        compare(&mut update, "retention_in_days", &self.retention_days.to_string(), &found);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        ctx.logs()
            .await
            .create_log_group()
            .log_group_name(&self.name)
            .set_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| {
                aws_error_typed("CreateLogGroup", logical_id, e, |e| e.is_resource_already_exists_exception().then_some(ErrorClass::AlreadyExists))
            })?;
        Ok(self.name.clone())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &LogGroup) -> Result<Option<String>, AwsError> {
        if o.retention_days != Some(self.retention_days as i32) {
            ctx.logs()
                .await
                .put_retention_policy()
                .log_group_name(&o.name)
                .retention_in_days(self.retention_days as i32)
                .send()
                .await
                .map_err(|e| aws_error("PutRetentionPolicy", &o.name, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            #[allow(deprecated)]
            ctx.logs()
                .await
                .tag_log_group()
                .log_group_name(&o.name)
                .set_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
                .send()
                .await
                .map_err(|e| aws_error("TagLogGroup", &o.name, e))?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<LogGroup>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(find_log_group(ctx, id).await?);
        }
        Ok(out)
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<LogGroup>, AwsError> {
        Ok(describe(ctx, &stack_prefix(&ctx.stack)).await?.into_iter().filter(|g| has_stack_tags(&g.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &LogGroup) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.logs()
            .await
            .delete_log_group()
            .log_group_name(id)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeleteLogGroup", id, e, |e| e.is_resource_not_found_exception().then_some(ErrorClass::NotFound)))?;
        Ok(())
    }

    fn physical_id(o: &LogGroup) -> String {
        o.name.clone()
    }

    fn attributes(o: &LogGroup) -> BTreeMap<String, String> {
        [("arn".to_string(), o.arn.clone())].into()
    }
}
