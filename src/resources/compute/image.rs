//! The service image built from `source_code_path` and pushed to the ECR repository, tagged
//! by a hash of the build context: unchanged source means the same tag, found in ECR, so no
//! build, no push and no new task definition. Changed source means a new tag: a
//! replacement, and the task definition that names the image follows. With `image` in the
//! config there is no such resource; that URI is used as it is.
//!
//! Pushing needs Docker; `up` checks for it before any AWS call (see `require_docker`).
//! The registry password (an ECR token) goes to `docker login` on stdin, never to a log.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass};
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub repository_uri: String,
    pub repository_name: String,
    /// The docker build context and the Dockerfile in it.
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// First 16 hex digits of the SHA-256 of the build context.
    pub tag: String,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub uri: String,
    pub tag: String,
    pub digest: String,
}

/// The build context of a books-api source directory: the Cargo workspace root that holds
/// it (its Dockerfile copies the workspace manifest), else the directory itself.
pub fn build_context(source: &Path) -> PathBuf {
    source
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| source.to_path_buf())
}

/// SHA-256 over every file of the context (relative path and content, in path order),
/// skipping build output and tool directories (`target`, dot-directories, `state`).
pub fn context_hash(context: &Path) -> std::io::Result<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "state" {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), files)?;
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(context, &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.strip_prefix(context).unwrap_or(&file).to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file)?);
        hash.update([0]);
    }
    Ok(hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// `up` with `source_code_path` needs a working Docker (the CLI and its daemon): checked
/// before any AWS call, with what to do instead.
pub fn require_docker() -> anyhow::Result<()> {
    let status = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => anyhow::bail!(
            "`source_code_path` is built with Docker, but the Docker daemon does not answer (`docker info` failed); start it, or set `image` in infra.toml to a prebuilt image URI"
        ),
        Err(_) => anyhow::bail!(
            "`source_code_path` is built with Docker, but `docker` was not found on PATH; install Docker, or set `image` in infra.toml to a prebuilt image URI"
        ),
    }
}

fn run(command: &mut Command, what: &str, stdin: Option<&str>) -> Result<(), AwsError> {
    let fail = |message: String| AwsError { operation: "DockerPush", resource: what.to_string(), code: None, message, request_id: None, class: ErrorClass::Fatal };
    let mut child = command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).spawn().map_err(|e| fail(format!("{what}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| fail(format!("{what}: {e}")))?;
    }
    let status = child.wait().map_err(|e| fail(format!("{what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("{what} failed ({status})")))
    }
}

async fn find_image(ctx: &Ctx, repository: &str, uri_with_tag: &str) -> Result<Option<Image>, AwsError> {
    let Some((uri, tag)) = uri_with_tag.rsplit_once(':') else { return Ok(None) };
    let resp = ctx
        .ecr()
        .await
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await;
    match resp {
        Ok(resp) => Ok(resp.image_details().first().map(|d| Image {
            uri: uri.to_string(),
            tag: tag.to_string(),
            digest: d.image_digest().unwrap_or_default().to_string(),
        })),
        Err(e) => match aws_error_typed("DescribeImages", uri_with_tag, e, |e| {
            (e.is_image_not_found_exception() || e.is_repository_not_found_exception()).then_some(ErrorClass::NotFound)
        }) {
            e if e.is_not_found() => Ok(None),
            e => Err(e),
        },
    }
}

/// `<account>.dkr.ecr.<region>.amazonaws.com/<name>:<tag>` → the repository name.
fn repository_of(uri_with_tag: &str) -> String {
    let without_tag = uri_with_tag.rsplit_once(':').map(|(u, _)| u).unwrap_or(uri_with_tag);
    without_tag.split_once('/').map(|(_, name)| name.to_string()).unwrap_or_default()
}

impl Resource for ImageSpec {
    type Observed = Image;

    const TAGGABLE: bool = false;
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[(Kind::TaskDefinition, "a task definition naming a deleted image cannot start tasks")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Image>, AwsError> {
        find_image(ctx, &repository_of(id), id).await
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Image>, AwsError> {
        Ok(find_image(ctx, &self.repository_name, &format!("{}:{}", self.repository_uri, self.tag)).await?.into_iter().collect())
    }

    fn diff(&self, o: &Image) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "repository", &self.repository_uri, &o.uri);
        compare(&mut replace, "tag (hash of the build context)", &self.tag, &o.tag);
        Diff::from_changes(Vec::new(), replace)
    }

    /// `docker build`, then `docker login` with an ECR token and `docker push`. A repeat
    /// pushes the same content under the same tag: harmless.
    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx.ecr().await.get_authorization_token().send().await.map_err(|e| aws_error("GetAuthorizationToken", logical_id, e))?;
        let auth = resp.authorization_data().first();
        let token = auth.and_then(|a| a.authorization_token()).unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD.decode(token).unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        let password = decoded.split_once(':').map(|(_, p)| p.to_string()).unwrap_or_default();
        let registry = self.repository_uri.split('/').next().unwrap_or_default().to_string();
        let image = format!("{}:{}", self.repository_uri, self.tag);
        let (context, dockerfile) = (self.context.clone(), self.dockerfile.clone());
        let what = image.clone();
        tokio::task::spawn_blocking(move || -> Result<(), AwsError> {
            run(Command::new("docker").arg("build").arg("-f").arg(&dockerfile).arg("-t").arg(&what).arg(&context), &format!("docker build of {what}"), None)?;
            run(Command::new("docker").args(["login", "--username", "AWS", "--password-stdin", &registry]), &format!("docker login to {registry}"), Some(&password))?;
            run(Command::new("docker").args(["push", &what]), &format!("docker push of {what}"), None)
        })
        .await
        .map_err(|e| AwsError { operation: "DockerPush", resource: image.clone(), code: None, message: e.to_string(), request_id: None, class: ErrorClass::Fatal })??;
        Ok(image)
    }

    async fn update(&self, _ctx: &Ctx, _logical_id: &str, _o: &Image) -> Result<Option<String>, AwsError> {
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Image>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(find_image(ctx, &repository_of(id), id).await?);
        }
        Ok(out)
    }

    /// Deletes the tag (a replaced image); the repository's own delete takes the rest.
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let Some((_, tag)) = id.rsplit_once(':') else { return Ok(()) };
        match ctx
            .ecr()
            .await
            .batch_delete_image()
            .repository_name(repository_of(id))
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match aws_error_typed("BatchDeleteImage", id, e, |e| e.is_repository_not_found_exception().then_some(ErrorClass::NotFound)) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    fn physical_id(o: &Image) -> String {
        format!("{}:{}", o.uri, o.tag)
    }

    fn attributes(o: &Image) -> BTreeMap<String, String> {
        [("uri".to_string(), format!("{}:{}", o.uri, o.tag)), ("digest".to_string(), o.digest.clone())].into()
    }
}
