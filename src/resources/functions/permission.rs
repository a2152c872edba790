//! The statement in a function's resource policy that lets API Gateway invoke it, scoped
//! to one API's method ARN. Found by its statement id in GetPolicy; a repeated
//! AddPermission meets ResourceConflictException. A change is a remove and an add of the
//! same statement id. Its physical id is `<function>/<statement id>`; it goes with the
//! function.

use std::collections::BTreeMap;

use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSpec {
    pub function: String,
    pub statement_id: String,
    pub principal: String,
    pub source_arn: String,
}

#[derive(Debug, Clone)]
pub struct Permission {
    pub function: String,
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: String,
}


/// The statements of a function's policy, by statement id.
async fn statements(ctx: &Ctx, function: &str) -> Result<Vec<Permission>, AwsError> {
    let resp = ctx.lambda().await.get_policy().function_name(function).send().await;
    let Some(resp) = found(resp.map_err(|e| aws_error("GetPolicy", function, e)))? else { return Ok(Vec::new()) };
    let policy = resp.policy().unwrap_or("{}");
    let doc: serde_json::Value = serde_json::from_str(&policy).unwrap_or_default();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(doc["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Permission {
            function: function.to_string(),
            statement_id: text(&s["Sid"]),
            action: text(&s["Action"]),
            principal: s["Principal"]["Service"].as_str().map(str::to_string).unwrap_or_else(|| text(&s["Principal"])),
            source_arn: s["Condition"]["ArnLike"]["AWS:SourceArn"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

async fn find_one(ctx: &Ctx, function: &str, sid: &str) -> Result<Vec<Permission>, AwsError> {
    Ok(statements(ctx, function).await?.into_iter().filter(|p| p.statement_id == sid).collect())
}

impl PermissionSpec {
    async fn add(&self, ctx: &Ctx, logical_id: &str) -> Result<(), AwsError> {
        ctx.lambda()
            .await
            .add_permission()
            .function_name(&self.function)
            .statement_id(&self.statement_id)
            .action("lambda:InvokeFunction")
            .principal(&self.principal)
            .source_arn(&self.source_arn)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("AddPermission", logical_id, e, |e| e.is_resource_conflict_exception().then_some(ErrorClass::AlreadyExists)))?;
        Ok(())
    }
}

impl Resource for PermissionSpec {
    type Observed = Permission;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Permission>, AwsError> {
        let (function, sid) = id.split_once('/').unwrap_or((id, ""));
        Ok(find_one(ctx, function, sid).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Permission>, AwsError> {
        // One statement id holds one statement: moto lets a second through, AWS does not.
        Ok(find_one(ctx, &self.function, &self.statement_id).await?.into_iter().take(1).collect())
    }

    fn diff(&self, o: &Permission) -> Diff {
        let mut update = Vec::new();
        compare(&mut update, "action", &"lambda:InvokeFunction".to_string(), &o.action);
        compare(&mut update, "principal", &self.principal, &o.principal);
        compare(&mut update, "source_arn", &self.source_arn, &o.source_arn);
        let mut replace = Vec::new();
        compare(&mut replace, "function", &self.function, &o.function);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        self.add(ctx, logical_id).await?;
        Ok(format!("{}/{}", self.function, self.statement_id))
    }

    async fn update(&self, ctx: &Ctx, logical_id: &str, o: &Permission) -> Result<Option<String>, AwsError> {
        found(Self::delete(ctx, &format!("{}/{}", o.function, o.statement_id), &BTreeMap::new()).await)?;
        self.add(ctx, logical_id).await?;
        Ok(None)
    }

    fn physical_id(o: &Permission) -> String {
        format!("{}/{}", o.function, o.statement_id)
    }

    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::LambdaFunction);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Permission>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            let (function, sid) = id.split_once('/').unwrap_or((id, ""));
            out.extend(find_one(ctx, function, sid).await?.into_iter().take(1));
        }
        Ok(out)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (function, sid) = id.split_once('/').unwrap_or((id, ""));
        ctx.lambda()
            .await
            .remove_permission()
            .function_name(function)
            .statement_id(sid)
            .send()
            .await
            .map_err(|e| aws_error("RemovePermission", id, e))?;
        Ok(())
    }
}
