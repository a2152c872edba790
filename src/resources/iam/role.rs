//! An IAM role under the stack's path (`/infra/<stack>/`), so the stack's roles are listed
//! with one call. Role names are unique in the account: a repeated CreateRole meets
//! EntityAlreadyExists, and the engine's lookup by name (and tags) finds the role the first
//! attempt made. Policies are compared semantically (order of statements and of values, a
//! single value versus a list, do not count).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Resource, StackTags};

/// The inline policy's name on every role.
pub const INLINE_POLICY: &str = "infra";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub tags: StackTags,
    pub name: String,
    pub path: String,
    /// The service principal allowed to assume the role (`ecs-tasks.amazonaws.com`).
    pub service: String,
    /// The trust statement's `Condition` (`Value::Null`: none): the confused-deputy guard,
    /// so the service assumes the role only on behalf of this account's resources.
    pub trust_condition: Value,
    pub managed_policies: BTreeSet<String>,
    /// The inline policy document, if the role has one.
    pub inline: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub trust: Value,
    pub managed_policies: BTreeSet<String>,
    pub inline: Option<Value>,
    pub tags: BTreeMap<String, String>,
}

/// The trust policy letting `service` assume a role, under `condition` (if not null).
pub fn trust_policy(service: &str, condition: &Value) -> Value {
    let mut statement = serde_json::json!({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"});
    if !condition.is_null() {
        statement["Condition"] = condition.clone();
    }
    serde_json::json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// IAM returns policy documents URL-encoded; emulators sometimes do not.
fn parse_document(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(&decoded).or_else(|_| serde_json::from_str(text)).unwrap_or(Value::String(text.to_string()))
}

/// A policy in a canonical form: one value and a list of one are the same, lists are sets,
/// statements are a set.
pub fn canonical(policy: &Value) -> Value {
    fn walk(v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), walk(v, Some(k)))).collect()),
            Value::Array(items) => {
                let mut items: Vec<Value> = items.iter().map(|i| walk(i, key)).collect();
                items.sort_by_key(|i| i.to_string());
                items.dedup();
                if items.len() == 1 && key != Some("Statement") {
                    items.pop().unwrap()
                } else {
                    Value::Array(items)
                }
            }
            other => other.clone(),
        }
    }
    let mut out = walk(policy, None);
    // A statement list of one is still a list.
    if let Some(statement) = out.get_mut("Statement") {
        if !statement.is_array() {
            *statement = Value::Array(vec![statement.take()]);
        }
    }
    out
}

fn policies_equal(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

fn iam_tags(tags: &StackTags) -> Vec<Tag> {
    tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value are set")).collect()
}

fn not_found(code: bool) -> Option<ErrorClass> {
    code.then_some(ErrorClass::NotFound)
}

/// One role with its policies, or None when it does not exist.
/// A role's managed policy ARNs and inline policy names, read at once; `None` when the
/// role is gone.
async fn policies_of(ctx: &Ctx, name: &str) -> Result<Option<(Vec<String>, Vec<String>)>, AwsError> {
    let attached = async {
        found(
            ctx.iam().await.list_attached_role_policies().role_name(name).send().await.map_err(|e| {
                aws_error_typed("ListAttachedRolePolicies", name, e, |e| not_found(e.is_no_such_entity_exception()))
            }),
        )
    };
    let inline = async {
        found(
            ctx.iam()
                .await
                .list_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(|e| aws_error_typed("ListRolePolicies", name, e, |e| not_found(e.is_no_such_entity_exception()))),
        )
    };
    Ok(match tokio::try_join!(attached, inline)? {
        (Some(a), Some(i)) => Some((a.attached_policies().iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect(), i.policy_names().to_vec())),
        _ => None,
    })
}

/// One role with its policies, or None when it does not exist: the four reads at once,
/// one round trip instead of four.
pub async fn find_role(ctx: &Ctx, name: &str) -> Result<Option<Role>, AwsError> {
    let role = async {
        found(ctx.iam().await.get_role().role_name(name).send().await.map_err(|e| {
            aws_error_typed("GetRole", name, e, |e| not_found(e.is_no_such_entity_exception()))
        }))
    };
    // Read whether it exists or not (NoSuchEntity then): a round trip saved when it does.
    let inline = async {
        found(
            ctx.iam()
                .await
                .get_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .send()
                .await
                .map_err(|e| aws_error_typed("GetRolePolicy", name, e, |e| not_found(e.is_no_such_entity_exception()))),
        )
    };
    let (role, policies, inline) = tokio::try_join!(role, policies_of(ctx, name), inline)?;
    let (Some(Some(role)), Some((managed, inline_names))) = (role.map(|r| r.role), policies) else { return Ok(None) };
    let inline = inline.map(|resp| parse_document(resp.policy_document()));
    // Another inline policy added out of band shows as drift of the inline policy.
    let foreign_inline = inline_names.iter().any(|p| p != INLINE_POLICY);
    Ok(Some(Role {
        name: role.role_name().to_string(),
        arn: role.arn().to_string(),
        path: role.path().to_string(),
        trust: role.assume_role_policy_document().map(parse_document).unwrap_or(Value::Null),
        managed_policies: managed.into_iter().collect(),
        inline: if foreign_inline { Some(serde_json::json!({"unexpected inline policies": inline_names})) } else { inline },
        tags: role.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
    }))
}

/// Detaches every managed policy and deletes every inline one (DeleteRole fails with
/// DeleteConflict while any remain), then deletes the role.
pub async fn delete_role(ctx: &Ctx, name: &str) -> Result<(), AwsError> {
    let Some((managed, inline)) = policies_of(ctx, name).await? else { return Ok(()) };
    let detach = managed.iter().map(|arn| async move {
        found(ctx.iam().await.detach_role_policy().role_name(name).policy_arn(arn).send().await.map_err(|e| {
            aws_error_typed("DetachRolePolicy", name, e, |e| not_found(e.is_no_such_entity_exception()))
        }))
    });
    let remove = inline.iter().map(|policy| async move {
        found(ctx.iam().await.delete_role_policy().role_name(name).policy_name(policy).send().await.map_err(|e| {
            aws_error_typed("DeleteRolePolicy", name, e, |e| not_found(e.is_no_such_entity_exception()))
        }))
    });
    tokio::try_join!(futures::future::try_join_all(detach), futures::future::try_join_all(remove))?;
    ctx.iam().await.delete_role().role_name(name).send().await.map_err(|e| {
        aws_error_typed("DeleteRole", name, e, |e| {
            if e.is_no_such_entity_exception() {
                Some(ErrorClass::NotFound)
            } else if e.is_delete_conflict_exception() {
                Some(ErrorClass::DependencyViolation)
            } else {
                None
            }
        })
    })?;
    Ok(())
}

impl Resource for RoleSpec {
    type Observed = Role;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Role>, AwsError> {
        find_role(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<Role>, AwsError> {
        Ok(find_role(ctx, &self.name).await?.into_iter().filter(|r| has_stack_tags(&r.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &Role) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        compare(&mut replace, "path", &self.path, &o.path);
        let mut update = self.tags.diff(&o.tags);
        let trust = trust_policy(&self.service, &self.trust_condition);
        if !policies_equal(&trust, &o.trust) {
            compare(&mut update, "assume_role_policy", &canonical(&trust).to_string(), &canonical(&o.trust).to_string());
        }
        let join = |s: &BTreeSet<String>| if s.is_empty() { "(none)".to_string() } else { s.iter().cloned().collect::<Vec<_>>().join(", ") };
        compare(&mut update, "managed_policies", &join(&self.managed_policies), &join(&o.managed_policies));
        let same_inline = match (&self.inline, &o.inline) {
            (Some(a), Some(b)) => policies_equal(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_inline {
            let show = |p: &Option<Value>| p.as_ref().map(|p| canonical(p).to_string()).unwrap_or_else(|| "(none)".into());
            compare(&mut update, "inline_policy", &show(&self.inline), &show(&o.inline));
        }
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        ctx.iam()
            .await
            .create_role()
            .role_name(&self.name)
            .path(&self.path)
            .assume_role_policy_document(trust_policy(&self.service, &self.trust_condition).to_string())
            .description(format!("infra stack {}: {logical_id}", self.tags.stack))
            .set_tags(Some(iam_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateRole", logical_id, e, |e| e.is_entity_already_exists_exception().then_some(ErrorClass::AlreadyExists)))?;
        Ok(self.name.clone())
    }

    /// Sets what the create call cannot (policies) and repairs drift.
    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Role) -> Result<Option<String>, AwsError> {
        let trust = trust_policy(&self.service, &self.trust_condition);
        if !policies_equal(&trust, &o.trust) {
            ctx.iam()
                .await
                .update_assume_role_policy()
                .role_name(&o.name)
                .policy_document(trust.to_string())
                .send()
                .await
                .map_err(|e| aws_error("UpdateAssumeRolePolicy", &o.name, e))?;
        }
        for arn in o.managed_policies.difference(&self.managed_policies) {
            ctx.iam().await.detach_role_policy().role_name(&o.name).policy_arn(arn).send().await.map_err(|e| aws_error("DetachRolePolicy", &o.name, e))?;
        }
        for arn in self.managed_policies.difference(&o.managed_policies) {
            ctx.iam().await.attach_role_policy().role_name(&o.name).policy_arn(arn).send().await.map_err(|e| aws_error("AttachRolePolicy", &o.name, e))?;
        }
        let same_inline = match (&self.inline, &o.inline) {
            (Some(a), Some(b)) => policies_equal(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_inline {
            // Foreign inline policies go; ours is put (PutRolePolicy overwrites).
            let names = ctx.iam().await.list_role_policies().role_name(&o.name).send().await.map_err(|e| aws_error("ListRolePolicies", &o.name, e))?;
            for policy in names.policy_names().iter().filter(|p| *p != INLINE_POLICY || self.inline.is_none()) {
                ctx.iam()
                    .await
                    .delete_role_policy()
                    .role_name(&o.name)
                    .policy_name(policy)
                    .send()
                    .await
                    .map_err(|e| aws_error("DeleteRolePolicy", &o.name, e))?;
            }
            if let Some(document) = &self.inline {
                ctx.iam()
                    .await
                    .put_role_policy()
                    .role_name(&o.name)
                    .policy_name(INLINE_POLICY)
                    .policy_document(document.to_string())
                    .send()
                    .await
                    .map_err(|e| aws_error("PutRolePolicy", &o.name, e))?;
            }
        }
        if !self.tags.diff(&o.tags).is_empty() {
            ctx.iam()
                .await
                .tag_role()
                .role_name(&o.name)
                .set_tags(Some(iam_tags(&self.tags)))
                .send()
                .await
                .map_err(|e| aws_error("TagRole", &o.name, e))?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Role>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(find_role(ctx, id).await?);
        }
        Ok(out)
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<Role>, AwsError> {
        let path = stack_path(&ctx.stack);
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let resp = ctx
                .iam()
                .await
                .list_roles()
                .path_prefix(&path)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| aws_error("ListRoles", &path, e))?;
            names.extend(resp.roles().iter().map(|r| r.role_name().to_string()));
            marker = resp.marker().map(str::to_string);
            if !resp.is_truncated() || marker.is_none() {
                break;
            }
        }
        // One role at a time (its four reads at once): all of them at once only slows a
        // local emulator, and AWS's IAM allows few calls per second anyway.
        let mut out = Vec::new();
        for name in names {
            out.extend(find_role(ctx, &name).await?.filter(|r| has_stack_tags(&r.tags, &ctx.stack, None)));
        }
        Ok(out)
    }

    fn tags(o: &Role) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_role(ctx, id).await
    }

    fn physical_id(o: &Role) -> String {
        o.name.clone()
    }

    fn attributes(o: &Role) -> BTreeMap<String, String> {
        [("arn".to_string(), o.arn.clone())].into()
    }
}

/// The IAM path of the stack's roles.
pub fn stack_path(stack: &str) -> String {
    format!("/infra/{stack}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_compare_semantically() {
        let a = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": ["arn:b", "arn:a"]},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]});
        let b = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": ["*"]},
            {"Resource": ["arn:a", "arn:b"], "Action": "ssm:GetParameters", "Effect": "Allow"}]});
        assert!(policies_equal(&a, &b));
        let c = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": ["arn:a", "arn:b", "arn:c"]},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]});
        assert!(!policies_equal(&a, &c));
    }

    #[test]
    fn url_encoded_documents_are_read() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(parse_document(encoded), serde_json::json!({"Version": "2012-10-17", "Statement": []}));
    }
}
