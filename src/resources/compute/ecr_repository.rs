//! The ECR repository the image is pushed to (scan on push). Its name is unique in the
//! account and region: a repeated create meets RepositoryAlreadyExistsException, and the
//! engine's lookup by name (and tags) finds the repository the first attempt made.

use std::collections::BTreeMap;

use aws_sdk_ecr::types::{ImageScanningConfiguration, Tag};

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRepositorySpec {
    pub tags: StackTags,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct EcrRepository {
    pub name: String,
    pub arn: String,
    pub uri: String,
    pub scan_on_push: bool,
    pub tags: BTreeMap<String, String>,
}

fn ecr_tags(tags: &StackTags) -> Vec<Tag> {
    tags.pairs().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value are set")).collect()
}

async fn tags_of(ctx: &Ctx, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let resp = ctx.ecr().await.list_tags_for_resource().resource_arn(arn).send().await.map_err(|e| aws_error("ListTagsForResource", arn, e))?;
    Ok(resp.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
}

/// Repositories by name, or all of the account's (`None`), with their tags. A missing name
/// fails the whole call, so a batch that meets one is read one by one.
async fn describe(ctx: &Ctx, names: Option<&[String]>) -> Result<Vec<EcrRepository>, AwsError> {
    let what = names.map(|n| n.join(",")).unwrap_or_else(|| "(stack inventory)".into());
    let mut found = Vec::new();
    let mut token = None;
    loop {
        match ctx.ecr().await.describe_repositories().set_repository_names(names.map(<[String]>::to_vec)).set_next_token(token).send().await {
            Ok(resp) => {
                for r in resp.repositories() {
                    found.push(EcrRepository {
                        name: r.repository_name().unwrap_or_default().to_string(),
                        arn: r.repository_arn().unwrap_or_default().to_string(),
                        uri: r.repository_uri().unwrap_or_default().to_string(),
                        scan_on_push: r.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
                        tags: BTreeMap::new(),
                    });
                }
                token = resp.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            Err(e) => match aws_error_typed("DescribeRepositories", &what, e, |e| e.is_repository_not_found_exception().then_some(ErrorClass::NotFound)) {
                e if e.is_not_found() => match names {
                    Some(names) if names.len() > 1 => {
                        for name in names {
                            found.extend(Box::pin(describe(ctx, Some(std::slice::from_ref(name)))).await?);
                        }
                        return Ok(found);
                    }
                    _ => return Ok(Vec::new()),
                },
                e => return Err(e),
            },
        }
    }
    for r in &mut found {
        r.tags = tags_of(ctx, &r.arn).await?;
    }
    Ok(found)
}

impl Resource for EcrRepositorySpec {
    type Observed = EcrRepository;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<EcrRepository>, AwsError> {
        Ok(describe(ctx, Some(&[id.to_string()])).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<EcrRepository>, AwsError> {
        Ok(describe(ctx, Some(&[self.name.clone()])).await?.into_iter().filter(|r| has_stack_tags(&r.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &EcrRepository) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "scan_on_push", &true, &o.scan_on_push);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ecr()
            .await
            .create_repository()
            .repository_name(&self.name)
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
            .set_tags(Some(ecr_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| {
                aws_error_typed("CreateRepository", logical_id, e, |e| e.is_repository_already_exists_exception().then_some(ErrorClass::AlreadyExists))
            })?;
        Ok(resp.repository().and_then(|r| r.repository_name()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &EcrRepository) -> Result<Option<String>, AwsError> {
        if !o.scan_on_push {
            ctx.ecr()
                .await
                .put_image_scanning_configuration()
                .repository_name(&o.name)
                .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
                .send()
                .await
                .map_err(|e| aws_error("PutImageScanningConfiguration", &o.name, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            ctx.ecr()
                .await
                .tag_resource()
                .resource_arn(&o.arn)
                .set_tags(Some(ecr_tags(&self.tags)))
                .send()
                .await
                .map_err(|e| aws_error("TagResource", &o.arn, e))?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<EcrRepository>, AwsError> {
        describe(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<EcrRepository>, AwsError> {
        // Only the stack's own names (`<stack>/...`) are worth a tag read each.
        let prefix = format!("{}/", ctx.stack);
        let ours: Vec<String> = describe_names(ctx).await?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
        if ours.is_empty() {
            return Ok(Vec::new());
        }
        Ok(describe(ctx, Some(&ours)).await?.into_iter().filter(|r| has_stack_tags(&r.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &EcrRepository) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Deletes the repository with its images (`force`): they were pushed by `up`.
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.ecr()
            .await
            .delete_repository()
            .repository_name(id)
            .force(true)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeleteRepository", id, e, |e| e.is_repository_not_found_exception().then_some(ErrorClass::NotFound)))?;
        Ok(())
    }

    fn physical_id(o: &EcrRepository) -> String {
        o.name.clone()
    }

    fn attributes(o: &EcrRepository) -> BTreeMap<String, String> {
        [("uri".to_string(), o.uri.clone()), ("arn".to_string(), o.arn.clone())].into()
    }
}

/// The names of every repository of the account (no tag reads).
async fn describe_names(ctx: &Ctx) -> Result<Vec<String>, AwsError> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let resp = ctx
            .ecr()
            .await
            .describe_repositories()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("DescribeRepositories", "(stack inventory)", e))?;
        names.extend(resp.repositories().iter().filter_map(|r| r.repository_name().map(str::to_string)));
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(names)
}
