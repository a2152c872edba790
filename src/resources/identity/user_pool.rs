//! The user pool: email as the user name, a password policy, sign-up by administrators only
//! (`infra user create`). Names are not unique and CreateUserPool takes no token, so a
//! repeat after a lost answer is recognised by the tags DescribeUserPool returns (moto has
//! no ListTagsForResource for pools).

use std::collections::BTreeMap;

use aws_sdk_cognitoidentityprovider::types::{
    AccountRecoverySettingType, AdminCreateUserConfigType, PasswordPolicyType, RecoveryOptionNameType, RecoveryOptionType,
    UserPoolPolicyType, UserPoolType, UsernameAttributeType, VerifiedAttributeType,
};

use crate::aws::{aws_error, found, AwsError, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Replacement, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub minimum_length: i32,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
    pub temporary_password_validity_days: i32,
}

impl PasswordPolicy {
    /// NIST-style length over composition would be kinder, but the seed's users expect
    /// the classic rules; 12 characters with every class.
    pub fn strong() -> PasswordPolicy {
        PasswordPolicy {
            minimum_length: 12,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
            temporary_password_validity_days: 7,
        }
    }

    fn to_sdk(&self) -> UserPoolPolicyType {
        UserPoolPolicyType::builder()
            .password_policy(
                PasswordPolicyType::builder()
                    .minimum_length(self.minimum_length)
                    .require_uppercase(self.require_uppercase)
                    .require_lowercase(self.require_lowercase)
                    .require_numbers(self.require_numbers)
                    .require_symbols(self.require_symbols)
                    .temporary_password_validity_days(self.temporary_password_validity_days)
                    .build(),
            )
            .build()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPoolSpec {
    pub tags: StackTags,
    pub name: String,
    pub password_policy: PasswordPolicy,
}

#[derive(Debug, Clone)]
pub struct UserPool {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub username_attributes: Vec<String>,
    pub auto_verified: Vec<String>,
    pub admin_only: bool,
    pub password_policy: Option<PasswordPolicy>,
    pub tags: BTreeMap<String, String>,
}

fn observe(p: &UserPoolType) -> UserPool {
    UserPool {
        id: p.id().unwrap_or_default().to_string(),
        arn: p.arn().unwrap_or_default().to_string(),
        name: p.name().unwrap_or_default().to_string(),
        username_attributes: p.username_attributes().iter().map(|a| a.as_str().to_string()).collect(),
        auto_verified: p.auto_verified_attributes().iter().map(|a| a.as_str().to_string()).collect(),
        admin_only: p.admin_create_user_config().is_some_and(|c| c.allow_admin_create_user_only()),
        password_policy: p.policies().and_then(|p| p.password_policy()).map(|pp| PasswordPolicy {
            minimum_length: pp.minimum_length().unwrap_or(8),
            require_uppercase: pp.require_uppercase(),
            require_lowercase: pp.require_lowercase(),
            require_numbers: pp.require_numbers(),
            require_symbols: pp.require_symbols(),
            temporary_password_validity_days: pp.temporary_password_validity_days(),
        }),
        tags: p.user_pool_tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
    }
}


pub async fn describe(ctx: &Ctx, id: &str) -> Result<Option<UserPool>, AwsError> {
    let resp = found(ctx.cognito().await.describe_user_pool().user_pool_id(id).send().await.map_err(|e| aws_error("DescribeUserPool", id, e)))?;
    Ok(resp.and_then(|r| r.user_pool().map(observe)))
}

/// The pools whose names start with the stack's, described (for their tags).
async fn stack_pools(ctx: &Ctx) -> Result<Vec<UserPool>, AwsError> {
    let prefix = format!("{}-", ctx.stack);
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let resp = ctx
            .cognito()
            .await
            .list_user_pools()
            .max_results(60)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("ListUserPools", "(all)", e))?;
        ids.extend(resp.user_pools().iter().filter(|p| p.name().is_some_and(|n| n.starts_with(&prefix))).filter_map(|p| p.id().map(str::to_string)));
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for id in ids {
        out.extend(describe(ctx, &id).await?);
    }
    Ok(out)
}

impl Resource for UserPoolSpec {
    type Observed = UserPool;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<UserPool>, AwsError> {
        describe(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<UserPool>, AwsError> {
        Ok(stack_pools(ctx).await?.into_iter().filter(|p| has_stack_tags(&p.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &UserPool) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "username_attributes", &"email".to_string(), &o.username_attributes.join(","));
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "name", &self.name, &o.name);
        compare(&mut update, "auto_verified_attributes", &"email".to_string(), &o.auto_verified.join(","));
        compare(&mut update, "admin_create_user_config.allow_admin_create_user_only", &true, &o.admin_only);
        compare(&mut update, "policies.password_policy", &format!("{:?}", Some(&self.password_policy)), &format!("{:?}", o.password_policy.as_ref()));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .cognito()
            .await
            .create_user_pool()
            .pool_name(&self.name)
            .username_attributes(UsernameAttributeType::Email)
            .auto_verified_attributes(VerifiedAttributeType::Email)
            .policies(self.password_policy.to_sdk())
            .admin_create_user_config(AdminCreateUserConfigType::builder().allow_admin_create_user_only(true).build())
            .account_recovery_setting(recovery())
            .set_user_pool_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateUserPool", logical_id, e))?;
        Ok(resp.user_pool().and_then(|p| p.id()).unwrap_or_default().to_string())
    }

    /// UpdateUserPool resets every setting it is not given, so it gets them all.
    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &UserPool) -> Result<Option<String>, AwsError> {
        ctx.cognito()
            .await
            .update_user_pool()
            .user_pool_id(&o.id)
            .auto_verified_attributes(VerifiedAttributeType::Email)
            .policies(self.password_policy.to_sdk())
            .admin_create_user_config(AdminCreateUserConfigType::builder().allow_admin_create_user_only(true).build())
            .account_recovery_setting(recovery())
            .set_user_pool_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
            .send()
            .await
            .map_err(|e| aws_error("UpdateUserPool", &o.id, e))?;
        Ok(None)
    }

    fn physical_id(o: &UserPool) -> String {
        o.id.clone()
    }

    fn attributes(o: &UserPool) -> BTreeMap<String, String> {
        [("arn".to_string(), o.arn.clone())].into()
    }

    const REPLACEMENT: Replacement = Replacement::Refuse("a new user pool would lose every user");

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<UserPool>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(describe(ctx, id).await?);
        }
        Ok(out)
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<UserPool>, AwsError> {
        Ok(stack_pools(ctx).await?.into_iter().filter(|p| has_stack_tags(&p.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &UserPool) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.cognito()
            .await
            .delete_user_pool()
            .user_pool_id(id)
            .send()
            .await
            .map_err(|e| aws_error("DeleteUserPool", id, e))?;
        Ok(())
    }
}

fn recovery() -> AccountRecoverySettingType {
    AccountRecoverySettingType::builder()
        .recovery_mechanisms(RecoveryOptionType::builder().name(RecoveryOptionNameType::VerifiedEmail).priority(1).build().expect("name and priority set"))
        .build()
}
