//! The payload bucket: public access blocked, encrypted (SSE-S3 with bucket keys), tagged.
//! Its name is deterministic (`<stack>-payload-<account>-<region>`, bucket names being
//! global), so a repeat of CreateBucket finds our own bucket (BucketAlreadyOwnedByYou, or
//! success in us-east-1) and a lost state finds it again. CreateBucket takes no tags: a
//! bucket of that name in our account without another stack's tags is ours, and the
//! update tags it. `down` empties it, every version and delete marker, then deletes it.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Replacement, Resource, StackTags, TAG_STACK};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    pub tags: StackTags,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    /// BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets.
    pub public_access_block: Option<[bool; 4]>,
    pub encryption: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The payload bucket's name for a stack, account and region (at most 63 characters: the
/// stack name is at most 20).
pub fn bucket_name(stack: &str, account: &str, region: &str) -> String {
    format!("{stack}-payload-{account}-{region}")
}

fn code_is<E: ProvideErrorMetadata>(e: &E, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

/// Reads the bucket's settings; `None` when there is no such bucket.
pub async fn read_bucket(ctx: &Ctx, name: &str) -> Result<Option<Bucket>, AwsError> {
    match ctx.s3().await.head_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(e) => {
            let e = aws_error_typed("HeadBucket", name, e, |e| e.is_not_found().then_some(ErrorClass::NotFound));
            // HeadBucket has no body: a 404 comes without a code.
            if e.is_not_found() || e.message.contains("404") || e.code.as_deref() == Some("NotFound") {
                return Ok(None);
            }
            return Err(e);
        }
    }
    let pab = async {
        match ctx.s3().await.get_public_access_block().bucket(name).send().await {
            Ok(r) => Ok(r.public_access_block_configuration().map(|c| {
                [
                    c.block_public_acls().unwrap_or(false),
                    c.ignore_public_acls().unwrap_or(false),
                    c.block_public_policy().unwrap_or(false),
                    c.restrict_public_buckets().unwrap_or(false),
                ]
            })),
            Err(e) if e.as_service_error().is_some_and(|e| code_is(e, &["NoSuchPublicAccessBlockConfiguration"])) => Ok(None),
            Err(e) => Err(aws_error("GetPublicAccessBlock", name, e)),
        }
    };
    let encryption = async {
        match ctx.s3().await.get_bucket_encryption().bucket(name).send().await {
            Ok(r) => Ok(r
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm().as_str().to_string())),
            Err(e) if e.as_service_error().is_some_and(|e| code_is(e, &["ServerSideEncryptionConfigurationNotFoundError"])) => Ok(None),
            Err(e) => Err(aws_error("GetBucketEncryption", name, e)),
        }
    };
    let tags = async {
        match ctx.s3().await.get_bucket_tagging().bucket(name).send().await {
            Ok(r) => Ok(r.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()),
            Err(e) if e.as_service_error().is_some_and(|e| code_is(e, &["NoSuchTagSet"])) => Ok(BTreeMap::new()),
            Err(e) => Err(aws_error("GetBucketTagging", name, e)),
        }
    };
    let (public_access_block, encryption, tags) = tokio::try_join!(pab, encryption, tags)?;
    Ok(Some(Bucket { name: name.to_string(), public_access_block, encryption, tags }))
}

/// Deletes every object version and delete marker, a thousand a call.
async fn empty(ctx: &Ctx, name: &str) -> Result<(), AwsError> {
    loop {
        let resp = ctx
            .s3()
            .await
            .list_object_versions()
            .bucket(name)
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| aws_error_typed("ListObjectVersions", name, e, |e| code_is(e, &["NoSuchBucket"]).then_some(ErrorClass::NotFound)))?;
        let mut objects: Vec<ObjectIdentifier> = Vec::new();
        for v in resp.versions() {
            objects.push(ObjectIdentifier::builder().key(v.key().unwrap_or_default()).set_version_id(v.version_id().map(str::to_string)).build().expect("key set"));
        }
        for m in resp.delete_markers() {
            objects.push(ObjectIdentifier::builder().key(m.key().unwrap_or_default()).set_version_id(m.version_id().map(str::to_string)).build().expect("key set"));
        }
        if objects.is_empty() {
            return Ok(());
        }
        let resp = ctx
            .s3()
            .await
            .delete_objects()
            .bucket(name)
            .delete(Delete::builder().set_objects(Some(objects)).quiet(true).build().expect("objects set"))
            .send()
            .await
            .map_err(|e| aws_error("DeleteObjects", name, e))?;
        if let Some(err) = resp.errors().first() {
            return Err(AwsError {
                operation: "DeleteObjects",
                resource: format!("{name}/{}", err.key().unwrap_or_default()),
                code: err.code().map(str::to_string),
                message: err.message().unwrap_or("an object could not be deleted").to_string(),
                request_id: None,
                class: ErrorClass::Retryable,
            });
        }
    }
}

const BLOCK_ALL: [bool; 4] = [true; 4];

impl Resource for BucketSpec {
    type Observed = Bucket;

    /// A bucket of our deterministic name, in our account, not tagged for another stack.
    const ADOPTS_UNTAGGED: bool = true;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Bucket>, AwsError> {
        read_bucket(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<Bucket>, AwsError> {
        Ok(read_bucket(ctx, &self.name)
            .await?
            .into_iter()
            .filter(|b| !b.tags.contains_key(TAG_STACK) || has_stack_tags(&b.tags, &ctx.stack, Some(logical_id)))
            .collect())
    }

    fn diff(&self, o: &Bucket) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "public_access_block", &format!("{:?}", Some(BLOCK_ALL)), &format!("{:?}", o.public_access_block));
        compare(&mut update, "encryption", &"AES256".to_string(), &o.encryption.clone().unwrap_or_else(|| "(none)".into()));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let mut req = ctx.s3().await.create_bucket().bucket(&self.name);
        if ctx.aws.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(ctx.aws.region.as_str())).build(),
            );
        }
        req.customize().no_blind_retry().send().await.map_err(|e| {
            aws_error_typed("CreateBucket", logical_id, e, |e| {
                // Ours (from an attempt whose answer was lost): the lookup finds it.
                // BucketAlreadyExists is someone else's: fatal, and the message says so.
                e.is_bucket_already_owned_by_you().then_some(ErrorClass::AlreadyExists)
            })
        })?;
        Ok(self.name.clone())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Bucket) -> Result<Option<String>, AwsError> {
        if o.public_access_block != Some(BLOCK_ALL) {
            ctx.s3()
                .await
                .put_public_access_block()
                .bucket(&o.name)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error("PutPublicAccessBlock", &o.name, e))?;
        }
        if o.encryption.as_deref() != Some("AES256") {
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build().expect("algorithm set"))
                .bucket_key_enabled(true)
                .build();
            ctx.s3()
                .await
                .put_bucket_encryption()
                .bucket(&o.name)
                .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().expect("rules set"))
                .send()
                .await
                .map_err(|e| aws_error("PutBucketEncryption", &o.name, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            // PutBucketTagging replaces the set: keep tags others added.
            let mut tags = o.tags.clone();
            tags.extend(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)));
            let set: Vec<Tag> = tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value set")).collect();
            ctx.s3()
                .await
                .put_bucket_tagging()
                .bucket(&o.name)
                .tagging(Tagging::builder().set_tag_set(Some(set)).build().expect("tag set"))
                .send()
                .await
                .map_err(|e| aws_error("PutBucketTagging", &o.name, e))?;
        }
        Ok(None)
    }

    fn physical_id(o: &Bucket) -> String {
        o.name.clone()
    }

    fn attributes(o: &Bucket) -> BTreeMap<String, String> {
        [("arn".to_string(), format!("arn:aws:s3:::{}", o.name))].into()
    }

    const REPLACEMENT: Replacement = Replacement::Refuse("a bucket cannot be renamed");

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Bucket>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(read_bucket(ctx, id).await?);
        }
        Ok(out)
    }

    /// The stack's buckets are named `<stack>-payload-…`: only those are read for tags.
    async fn inventory(ctx: &Ctx) -> Result<Vec<Bucket>, AwsError> {
        let prefix = format!("{}-payload-", ctx.stack);
        let resp = ctx.s3().await.list_buckets().prefix(&prefix).send().await.map_err(|e| aws_error("ListBuckets", &prefix, e))?;
        let mut out = Vec::new();
        for b in resp.buckets().iter().filter_map(|b| b.name()).filter(|n| n.starts_with(&prefix)) {
            out.extend(read_bucket(ctx, b).await?.filter(|b| has_stack_tags(&b.tags, &ctx.stack, None)));
        }
        Ok(out)
    }

    fn tags(o: &Bucket) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        empty(ctx, id).await?;
        ctx.s3()
            .await
            .delete_bucket()
            .bucket(id)
            .send()
            .await
            .map_err(|e| {
                aws_error_typed("DeleteBucket", id, e, |e| match e.code() {
                    Some("NoSuchBucket") => Some(ErrorClass::NotFound),
                    // An object written between the emptying and the delete: empty again.
                    Some("BucketNotEmpty") => Some(ErrorClass::DependencyViolation),
                    _ => None,
                })
            })?;
        Ok(())
    }
}
