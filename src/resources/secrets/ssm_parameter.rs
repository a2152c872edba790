//! An SSM SecureString parameter named in the config. One that exists is used as it is and
//! never changed or deleted; one that is absent is created with a strong random value and
//! the stack's tags, and only such a parameter is deleted by `down` (the `managed` attribute
//! recorded in state says which). Ours means tagged `infra:stack=<this stack>`, which only
//! this stack's PutParameter does: a parameter another stack made (or the user's) is never
//! re-tagged, recorded as managed or deleted. The value is generated, sent once in
//! PutParameter and never logged or recorded: readers (Aurora, API Gateway's integration
//! URI, ECS at task start) fetch it. Reads never decrypt it: they keep the parameter's
//! version (SSM counts every PutParameter), which is how a rotation is seen — the copies
//! made of the value (Aurora's master password, the integration URIs, the running tasks)
//! each record the version they hold, and a newer one in SSM is drift that `up` repairs.
//!
//! A repeat of PutParameter meets ParameterAlreadyExists; the engine's lookup by name then
//! finds the parameter, and its tags tell whether it is ours.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType, ResourceTypeForTagging, Tag};
use rand::distr::{Alphanumeric, SampleString};

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Resource, StackTags};

/// Length of generated values: 32 alphanumeric characters, about 190 bits.
pub const GENERATED_LENGTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmParameterSpec {
    pub tags: StackTags,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct SsmParameter {
    pub name: String,
    pub arn: String,
    pub kind: String,
    pub tags: BTreeMap<String, String>,
    /// SSM's version of the value: 1 at the first PutParameter, one more at each overwrite.
    pub version: i64,
    /// Created by this stack (tagged with its name), so managed by it and deleted by its
    /// `down`; another stack's parameter, or the user's, is used as it is.
    pub owned: bool,
}

async fn tags_of(ctx: &Ctx, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let resp = ctx
        .ssm()
        .await
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| aws_error("ListTagsForResource", name, e))?;
    Ok(resp.tag_list().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
}

/// Parameters by exact name, with their tags and versions (never their values).
pub async fn find_parameters(ctx: &Ctx, names: &[String]) -> Result<Vec<SsmParameter>, AwsError> {
    let mut found = Vec::new();
    for chunk in names.chunks(50) {
        let filter = ParameterStringFilter::builder().key("Name").option("Equals").set_values(Some(chunk.to_vec())).build().expect("key is set");
        let mut token = None;
        loop {
            let resp = ctx
                .ssm()
                .await
                .describe_parameters()
                .parameter_filters(filter.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_error("DescribeParameters", chunk.join(","), e))?;
            for p in resp.parameters() {
                found.push(SsmParameter {
                    name: p.name().unwrap_or_default().to_string(),
                    arn: p.arn().unwrap_or_default().to_string(),
                    kind: p.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    tags: BTreeMap::new(),
                    version: p.version(),
                    owned: false,
                });
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    // GetParameters (ten names a call) has the ARN, which DescribeParameters leaves out on
    // some endpoints; not decrypted: the value is not wanted here.
    let names: Vec<String> = found.iter().map(|p| p.name.clone()).collect();
    for chunk in names.chunks(10) {
        let resp = ctx
            .ssm()
            .await
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .with_decryption(false)
            .send()
            .await
            .map_err(|e| aws_error("GetParameters", chunk.join(","), e))?;
        for got in resp.parameters() {
            if let Some(p) = found.iter_mut().find(|p| Some(p.name.as_str()) == got.name()) {
                p.arn = got.arn().unwrap_or_default().to_string();
                p.version = got.version();
            }
        }
    }
    let tags = futures::future::try_join_all(found.iter().map(|p| tags_of(ctx, &p.name))).await?;
    for (p, tags) in found.iter_mut().zip(tags) {
        p.owned = has_stack_tags(&tags, &ctx.stack, None);
        p.tags = tags;
    }
    Ok(found)
}

/// A SecureString's value and the version it is, read together for a call that embeds it.
pub struct Secret {
    pub value: String,
    pub version: i64,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret {{ value: ****, version: {} }}", self.version)
    }
}

/// Reads a SecureString's value for a call that needs it (Aurora's master password, the
/// integration URI), with its version, from one GetParameter, so what the call's resource
/// records as the version it holds is the version of that value. The value goes straight
/// into that call; it is never logged or stored.
pub async fn read_secret(ctx: &Ctx, name: &str) -> Result<Secret, AwsError> {
    let resp = ctx
        .ssm()
        .await
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| aws_error_typed("GetParameter", name, e, |e| e.is_parameter_not_found().then_some(ErrorClass::NotFound)))?;
    let parameter = resp.parameter();
    Ok(Secret { value: parameter.and_then(|p| p.value()).unwrap_or_default().to_string(), version: parameter.map_or(0, |p| p.version()) })
}

impl Resource for SsmParameterSpec {
    type Observed = SsmParameter;

    /// An existing parameter of the user's is adopted whatever its tags.
    const ADOPTS_UNTAGGED: bool = true;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<SsmParameter>, AwsError> {
        Ok(find_parameters(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<SsmParameter>, AwsError> {
        find_parameters(ctx, &[self.name.clone()]).await
    }

    fn diff(&self, o: &SsmParameter) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        // The user's own parameter, or another stack's, is used as it is: nothing of it is
        // managed (re-tagging it would make it this stack's, and this stack's `down` would
        // delete it).
        if !o.owned {
            return Diff::from_changes(Vec::new(), replace);
        }
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "type", &"SecureString".to_string(), &o.kind);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let value = Alphanumeric.sample_string(&mut rand::rng(), GENERATED_LENGTH);
        let tags: Vec<Tag> = self.tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value are set")).collect();
        ctx.ssm()
            .await
            .put_parameter()
            .name(&self.name)
            .description(format!("{}: generated by infra for stack {}", logical_id, self.tags.stack))
            .value(value)
            .r#type(ParameterType::SecureString)
            .overwrite(false)
            .set_tags(Some(tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("PutParameter", logical_id, e, |e| e.is_parameter_already_exists().then_some(ErrorClass::AlreadyExists)))?;
        Ok(self.name.clone())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &SsmParameter) -> Result<Option<String>, AwsError> {
        // Only a managed parameter gets here with changes: its tags. A type change would
        // mean overwriting the value, which infra never does.
        if !self.tags.diff(&o.tags).is_empty() {
            let tags: Vec<Tag> = self.tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value are set")).collect();
            ctx.ssm()
                .await
                .add_tags_to_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(&o.name)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| aws_error("AddTagsToResource", &o.name, e))?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<SsmParameter>, AwsError> {
        find_parameters(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<SsmParameter>, AwsError> {
        let filter = ParameterStringFilter::builder()
            .key(format!("tag:{}", crate::resources::TAG_STACK))
            .set_values(Some(vec![ctx.stack.clone()]))
            .build()
            .expect("key is set");
        let resp = ctx
            .ssm()
            .await
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .map_err(|e| aws_error("DescribeParameters", "(stack inventory)", e))?;
        let names: Vec<String> = resp.parameters().iter().filter_map(|p| p.name().map(str::to_string)).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Ok(find_parameters(ctx, &names).await?.into_iter().filter(|p| p.owned).collect())
    }

    fn tags(o: &SsmParameter) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Deletes only a parameter infra created (recorded as `managed`); the user's stays.
    async fn delete(ctx: &Ctx, id: &str, recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        if recorded.get("managed").map(String::as_str) != Some("true") {
            return Ok(());
        }
        // A state written before ownership meant this stack's tag may call another stack's
        // parameter managed: the live tag decides.
        match tags_of(ctx, id).await {
            Ok(tags) if !has_stack_tags(&tags, &ctx.stack, None) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref() == Some("InvalidResourceId") => return Ok(()),
            Err(e) => return Err(e),
        }
        ctx.ssm()
            .await
            .delete_parameter()
            .name(id)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeleteParameter", id, e, |e| e.is_parameter_not_found().then_some(ErrorClass::NotFound)))?;
        Ok(())
    }

    fn physical_id(o: &SsmParameter) -> String {
        o.name.clone()
    }

    fn attributes(o: &SsmParameter) -> BTreeMap<String, String> {
        [
            ("arn".to_string(), o.arn.clone()),
            ("managed".to_string(), o.owned.to_string()),
            ("version".to_string(), o.version.to_string()),
        ]
        .into()
    }
}
