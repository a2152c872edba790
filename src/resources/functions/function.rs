//! A Lambda function whose code `infra` zips in memory. The zip is deterministic (fixed
//! timestamps and modes), so its SHA-256 is stable and a code change is a real change.
//! Function names are unique: a repeated CreateFunction meets ResourceConflictException
//! and the lookup finds the first by name and tags.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, LastUpdateStatus, Runtime, State};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, wait_until, Ctx, Diff, Lifecycle, Poll, Replacement, Resource, StackTags};

/// Zips one source file as `name`, deterministically.
pub fn zip_source(name: &str, source: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    zip.start_file(name, options).expect("writing to memory");
    zip.write_all(source.as_bytes()).expect("writing to memory");
    zip.finish().expect("writing to memory");
    out.into_inner()
}

/// Lambda's CodeSha256: base64 of the SHA-256 of the zip.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

#[derive(Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub tags: StackTags,
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub role_arn: String,
    pub timeout_seconds: i32,
    pub memory_mb: i32,
    pub zip: Vec<u8>,
}

impl std::fmt::Debug for FunctionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionSpec").field("name", &self.name).field("code_sha256", &code_sha256(&self.zip)).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub arn: String,
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub timeout_seconds: i32,
    pub memory_mb: i32,
    pub code_sha256: String,
    pub state: String,
    pub last_update: String,
    pub tags: BTreeMap<String, String>,
}


pub async fn get_function(ctx: &Ctx, name: &str) -> Result<Option<Function>, AwsError> {
    let resp = ctx.lambda().await.get_function().function_name(name).send().await;
    let Some(resp) = found(resp.map_err(|e| aws_error("GetFunction", name, e)))? else { return Ok(None) };
    let Some(c) = resp.configuration() else { return Ok(None) };
    Ok(Some(Function {
        name: c.function_name().unwrap_or_default().to_string(),
        arn: c.function_arn().unwrap_or_default().to_string(),
        runtime: c.runtime().map(|r| r.as_str().to_string()).unwrap_or_default(),
        handler: c.handler().unwrap_or_default().to_string(),
        role: c.role().unwrap_or_default().to_string(),
        timeout_seconds: c.timeout().unwrap_or(3),
        memory_mb: c.memory_size().unwrap_or(128),
        code_sha256: c.code_sha256().unwrap_or_default().to_string(),
        state: c.state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Active".into()),
        last_update: c.last_update_status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Successful".into()),
        tags: resp.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
    }))
}

/// Waits until the function accepts another change (one update at a time on AWS).
async fn await_settled(ctx: &Ctx, name: &str) -> Result<(), AwsError> {
    wait_until(&format!("Lambda function {name} to be ready"), "GetFunction", Duration::from_secs(300), || async {
        Ok(match get_function(ctx, name).await? {
            Some(f) if f.state == State::Pending.as_str() || f.last_update == LastUpdateStatus::InProgress.as_str() => {
                Poll::Pending(format!("{}/{}", f.state, f.last_update))
            }
            Some(f) if f.state == State::Failed.as_str() => {
                Poll::Pending("Failed".into())
            }
            _ => Poll::Ready(()),
        })
    })
    .await
}

impl Resource for FunctionSpec {
    type Observed = Function;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Function>, AwsError> {
        get_function(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<Function>, AwsError> {
        Ok(get_function(ctx, &self.name).await?.into_iter().filter(|f| has_stack_tags(&f.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &Function) -> Diff {
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "runtime", &self.runtime, &o.runtime);
        compare(&mut update, "handler", &self.handler, &o.handler);
        compare(&mut update, "role", &self.role_arn, &o.role);
        compare(&mut update, "timeout", &self.timeout_seconds, &o.timeout_seconds);
        compare(&mut update, "memory_size", &self.memory_mb, &o.memory_mb);
        compare(&mut update, "code_sha256", &code_sha256(&self.zip), &o.code_sha256);
        Diff::from_changes(update, Vec::new())
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        // A role made seconds ago may not be assumable by Lambda yet (IAM is eventually
        // consistent): that refusal did nothing, so it is retried here for a while.
        let mut delay = Duration::from_secs(1);
        let started = std::time::Instant::now();
        loop {
            let result = ctx
                .lambda()
                .await
                .create_function()
                .function_name(&self.name)
                .runtime(Runtime::from(self.runtime.as_str()))
                .handler(&self.handler)
                .role(&self.role_arn)
                .timeout(self.timeout_seconds)
                .memory_size(self.memory_mb)
                .code(FunctionCode::builder().zip_file(Blob::new(self.zip.clone())).build())
                .set_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
                .customize()
                .no_blind_retry()
                .send()
                .await;
            match result {
                Ok(resp) => return Ok(resp.function_name().unwrap_or(&self.name).to_string()),
                Err(e) => {
                    let role_not_ready = e.as_service_error().is_some_and(|e| {
                        e.is_invalid_parameter_value_exception() && e.meta().message().is_some_and(|m| m.contains("cannot be assumed"))
                    });
                    let e = aws_error_typed("CreateFunction", logical_id, e, |e| {
                        e.is_resource_conflict_exception().then_some(ErrorClass::AlreadyExists)
                    });
                    if !role_not_ready || started.elapsed() > Duration::from_secs(60) {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
            }
        }
    }

    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        await_settled(ctx, id).await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Function) -> Result<Option<String>, AwsError> {
        let config_differs = o.runtime != self.runtime
            || o.handler != self.handler
            || o.role != self.role_arn
            || o.timeout_seconds != self.timeout_seconds
            || o.memory_mb != self.memory_mb;
        if config_differs {
            ctx.lambda()
                .await
                .update_function_configuration()
                .function_name(&o.name)
                .runtime(Runtime::from(self.runtime.as_str()))
                .handler(&self.handler)
                .role(&self.role_arn)
                .timeout(self.timeout_seconds)
                .memory_size(self.memory_mb)
                .send()
                .await
                .map_err(|e| aws_error("UpdateFunctionConfiguration", &o.name, e))?;
            await_settled(ctx, &o.name).await?;
        }
        if o.code_sha256 != code_sha256(&self.zip) {
            ctx.lambda()
                .await
                .update_function_code()
                .function_name(&o.name)
                .zip_file(Blob::new(self.zip.clone()))
                .send()
                .await
                .map_err(|e| aws_error("UpdateFunctionCode", &o.name, e))?;
            await_settled(ctx, &o.name).await?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            ctx.lambda()
                .await
                .tag_resource()
                .resource(&o.arn)
                .set_tags(Some(self.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
                .send()
                .await
                .map_err(|e| aws_error("TagResource", &o.name, e))?;
        }
        Ok(None)
    }

    fn physical_id(o: &Function) -> String {
        o.name.clone()
    }

    fn attributes(o: &Function) -> BTreeMap<String, String> {
        [("arn".to_string(), o.arn.clone())].into()
    }

    fn lifecycle(o: &Function) -> Lifecycle {
        if o.state == State::Pending.as_str() {
            Lifecycle::Settling(o.state.clone())
        } else {
            Lifecycle::Ready
        }
    }

    const REPLACEMENT: Replacement = Replacement::Refuse("a function cannot be renamed");

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Function>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(get_function(ctx, id).await?);
        }
        Ok(out)
    }

    /// The stack's functions are named `<stack>-…`: only those are read for tags.
    async fn inventory(ctx: &Ctx) -> Result<Vec<Function>, AwsError> {
        let prefix = format!("{}-", ctx.stack);
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let resp = ctx.lambda().await.list_functions().max_items(50).set_marker(marker).send().await.map_err(|e| aws_error("ListFunctions", "(all)", e))?;
            names.extend(resp.functions().iter().filter_map(|f| f.function_name()).filter(|n| n.starts_with(&prefix)).map(str::to_string));
            marker = resp.next_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        let mut out = Vec::new();
        for name in names {
            out.extend(get_function(ctx, &name).await?.filter(|f| has_stack_tags(&f.tags, &ctx.stack, None)));
        }
        Ok(out)
    }

    fn tags(o: &Function) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.lambda()
            .await
            .delete_function()
            .function_name(id)
            .send()
            .await
            .map_err(|e| aws_error("DeleteFunction", id, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_is_deterministic_and_holds_the_source() {
        let a = zip_source("index.py", "print(1)\n");
        assert_eq!(a, zip_source("index.py", "print(1)\n"));
        assert_ne!(code_sha256(&a), code_sha256(&zip_source("index.py", "print(2)\n")));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("index.py").unwrap(), &mut text).unwrap();
        assert_eq!(text, "print(1)\n");
    }
}
