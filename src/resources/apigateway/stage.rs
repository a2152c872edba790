//! The `prod` stage: which deployment it serves, its cache cluster, per-method caching and
//! the cache-control rule. Found by its name within the API; the method settings are made
//! by UpdateStage right after CreateStage (the create call cannot set them).

use std::collections::BTreeMap;

use aws_sdk_apigateway::types::{CacheClusterSize, Op, Stage as SdkStage};

use super::{arn, conflict_means, find_children, patch, put_tags, split_id, tag_map};
use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource, StackTags};

/// The settings key that applies to every method.
pub const ALL_METHODS: &str = "*/*";

/// Caching of one method (`~1book/GET`) or of all (`*/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCache {
    pub caching_enabled: bool,
    pub ttl_seconds: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub tags: StackTags,
    pub api_id: String,
    pub name: String,
    pub deployment_id: String,
    pub cache_cluster_enabled: bool,
    pub cache_cluster_size: String,
    /// By settings key (`~1book~1{bookId}/GET`, or [`ALL_METHODS`]).
    pub method_cache: BTreeMap<String, MethodCache>,
    /// What a `Cache-Control: max-age=0` from a caller without `execute-api:InvalidateCache`
    /// gets: FAIL_WITH_403, SUCCEED_WITH_RESPONSE_HEADER or SUCCEED_WITHOUT_RESPONSE_HEADER.
    pub unauthorized_cache_control: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSetting {
    pub caching_enabled: bool,
    pub ttl_seconds: i32,
    pub require_authorization: bool,
    pub unauthorized_cache_control: String,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub api_id: String,
    pub name: String,
    pub deployment_id: String,
    pub cache_cluster_enabled: bool,
    pub cache_cluster_size: String,
    pub settings: BTreeMap<String, ObservedSetting>,
    pub tags: BTreeMap<String, String>,
    /// Where callers reach the stage.
    pub url: String,
}

fn observe(api: &str, s: &SdkStage, region: &str) -> Stage {
    Stage {
        url: format!("https://{api}.execute-api.{region}.amazonaws.com/{}", s.stage_name().unwrap_or_default()),
        api_id: api.to_string(),
        name: s.stage_name().unwrap_or_default().to_string(),
        deployment_id: s.deployment_id().unwrap_or_default().to_string(),
        cache_cluster_enabled: s.cache_cluster_enabled(),
        cache_cluster_size: s.cache_cluster_size().map(|c| c.as_str().to_string()).unwrap_or_default(),
        settings: s
            .method_settings()
            .into_iter()
            .flatten()
            .map(|(k, m)| {
                (
                    k.clone(),
                    ObservedSetting {
                        caching_enabled: m.caching_enabled(),
                        ttl_seconds: m.cache_ttl_in_seconds(),
                        require_authorization: m.require_authorization_for_cache_control(),
                        unauthorized_cache_control: m.unauthorized_cache_control_header_strategy().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    },
                )
            })
            .collect(),
        tags: s.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
    }
}

async fn all(ctx: &Ctx, api: &str) -> Result<Vec<Stage>, AwsError> {
    let resp = found(ctx.apigateway().await.get_stages().rest_api_id(api).send().await.map_err(|e| aws_error("GetStages", api, e)))?;
    Ok(resp.map(|r| r.item().iter().map(|s| observe(api, s, &ctx.aws.region)).collect()).unwrap_or_default())
}

impl StageSpec {
    /// The patch operations that bring `o` to the spec (all but tags).
    fn patches(&self, o: &Stage) -> Vec<aws_sdk_apigateway::types::PatchOperation> {
        let mut ops = Vec::new();
        if o.deployment_id != self.deployment_id {
            ops.push(patch(Op::Replace, "/deploymentId", Some(&self.deployment_id)));
        }
        if o.cache_cluster_enabled != self.cache_cluster_enabled {
            ops.push(patch(Op::Replace, "/cacheClusterEnabled", Some(&self.cache_cluster_enabled.to_string())));
        }
        if self.cache_cluster_enabled && o.cache_cluster_size != self.cache_cluster_size {
            ops.push(patch(Op::Replace, "/cacheClusterSize", Some(&self.cache_cluster_size)));
        }
        for (key, want) in &self.method_cache {
            let found = o.settings.get(key);
            if found.map(|f| f.caching_enabled) != Some(want.caching_enabled) {
                ops.push(patch(Op::Replace, &format!("/{key}/caching/enabled"), Some(&want.caching_enabled.to_string())));
            }
            if found.map(|f| f.ttl_seconds) != Some(want.ttl_seconds) {
                ops.push(patch(Op::Replace, &format!("/{key}/caching/ttlInSeconds"), Some(&want.ttl_seconds.to_string())));
            }
        }
        let all = o.settings.get(ALL_METHODS);
        if all.map(|a| a.require_authorization) != Some(true) {
            ops.push(patch(Op::Replace, "/*/*/caching/requireAuthorizationForCacheControl", Some("true")));
        }
        if all.map(|a| a.unauthorized_cache_control.as_str()) != Some(self.unauthorized_cache_control.as_str()) {
            ops.push(patch(Op::Replace, "/*/*/caching/unauthorizedCacheControlHeaderStrategy", Some(&self.unauthorized_cache_control)));
        }
        ops
    }
}

impl Resource for StageSpec {
    type Observed = Stage;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Stage>, AwsError> {
        Ok(Self::find_many(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Stage>, AwsError> {
        Ok(all(ctx, &self.api_id).await?.into_iter().filter(|s| s.name == self.name).collect())
    }

    fn diff(&self, o: &Stage) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "api", &self.api_id, &o.api_id);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "deployment_id", &self.deployment_id, &o.deployment_id);
        compare(&mut update, "cache_cluster_enabled", &self.cache_cluster_enabled, &o.cache_cluster_enabled);
        if self.cache_cluster_enabled {
            compare(&mut update, "cache_cluster_size", &self.cache_cluster_size, &o.cache_cluster_size);
        }
        for (key, want) in &self.method_cache {
            let found = o.settings.get(key);
            let show = |v: Option<String>| v.unwrap_or_else(|| "(unset)".into());
            compare(&mut update, &format!("method_settings.{key}.caching_enabled"), &want.caching_enabled.to_string(), &show(found.map(|f| f.caching_enabled.to_string())));
            compare(&mut update, &format!("method_settings.{key}.cache_ttl_in_seconds"), &want.ttl_seconds.to_string(), &show(found.map(|f| f.ttl_seconds.to_string())));
        }
        let all = o.settings.get(ALL_METHODS);
        compare(&mut update, "method_settings.*/*.require_authorization_for_cache_control", &"true".to_string(), &all.map_or("(unset)".to_string(), |a| a.require_authorization.to_string()));
        compare(
            &mut update,
            "method_settings.*/*.unauthorized_cache_control_header_strategy",
            &self.unauthorized_cache_control,
            &all.map(|a| a.unauthorized_cache_control.clone()).unwrap_or_else(|| "(unset)".into()),
        );
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        ctx.apigateway()
            .await
            .create_stage()
            .rest_api_id(&self.api_id)
            .stage_name(&self.name)
            .deployment_id(&self.deployment_id)
            .cache_cluster_enabled(self.cache_cluster_enabled)
            .cache_cluster_size(CacheClusterSize::from(self.cache_cluster_size.as_str()))
            .set_tags(Some(tag_map(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateStage", logical_id, e, conflict_means(ErrorClass::AlreadyExists)))?;
        Ok(format!("{}/{}", self.api_id, self.name))
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Stage) -> Result<Option<String>, AwsError> {
        let ops = self.patches(o);
        if !ops.is_empty() {
            ctx.apigateway()
                .await
                .update_stage()
                .rest_api_id(&o.api_id)
                .stage_name(&o.name)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(|e| aws_error("UpdateStage", &o.name, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, arn(&ctx.aws.region, &o.api_id, Some(&o.name)), &self.tags, &o.name).await?;
        }
        Ok(None)
    }


    /// API Gateway refuses a second change to one REST API while a first is in progress.
    fn serial_key(&self) -> Option<String> {
        Some(self.api_id.clone())
    }

    fn physical_id(o: &Stage) -> String {
        format!("{}/{}", o.api_id, o.name)
    }

    fn attributes(o: &Stage) -> BTreeMap<String, String> {
        [("stage_name".to_string(), o.name.clone()), ("url".to_string(), o.url.clone())].into()
    }

    const REPLACEMENT: Replacement = Replacement::Refuse("the stage's URL would change");
    /// Tagged at create, but read by name: only the API's tags are scanned.
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::RestApi);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Stage>, AwsError> {
        find_children(ids, |api| async move { all(ctx, &api).await }, |s| format!("{}/{}", s.api_id, s.name)).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (api, stage) = split_id(id);
        ctx.apigateway()
            .await
            .delete_stage()
            .rest_api_id(api)
            .stage_name(stage)
            .send()
            .await
            .map_err(|e| aws_error("DeleteStage", id, e))?;
        Ok(())
    }
}
