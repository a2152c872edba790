//! The service image built from `source_code_path` and pushed to the ECR repository, tagged
//! by a hash of the build context (the files the builder is sent, `.dockerignore` applied):
//! unchanged source means the same tag, found in the registry, so no build, no push and no
//! new task definition. Changed source means a new tag: a replacement, and the task
//! definition that names the image follows. With `image` in the config there is no such
//! resource; that URI is used as it is.
//!
//! The build and push run Docker, Podman or Buildah (`image_builder`, see `builder`); the
//! registry password (an ECR token) goes to the builder's `login` on stdin, never to an
//! argument, a log, an error or the state.

pub mod builder;
pub mod context;
mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use aws_sdk_ecr::types::ImageIdentifier;

use crate::aws::{aws_error_typed, AwsError, ErrorClass};
use crate::config::{ConfigError, ImageBuilder, Settings};
use crate::progress;
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource};
use crate::state::State;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub repository_uri: String,
    pub repository_name: String,
    /// The build context and the Dockerfile.
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// First 16 hex digits of the SHA-256 of what the builder is sent.
    pub tag: String,
    pub builder: ImageBuilder,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub uri: String,
    pub tag: String,
    pub digest: String,
}

/// The source of the image: its build context, Dockerfile and content tag.
#[derive(Debug, Clone)]
pub struct Source {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub tag: String,
}

impl Source {
    /// Reads `source_code_path` (relative to the config file): a missing directory or
    /// Dockerfile, a bad `.dockerignore` or an unreadable file is an error naming the key.
    /// Read once per run: `up` reads it before any AWS call, the stack again when built.
    pub fn read(settings: &Settings) -> Result<Option<Source>, ConfigError> {
        static READ: Mutex<BTreeMap<PathBuf, Source>> = Mutex::new(BTreeMap::new());
        let (None, Some(path)) = (&settings.config.image, &settings.config.source_code_path) else { return Ok(None) };
        let dir = settings.base_dir.join(path);
        if let Some(source) = READ.lock().unwrap().get(&dir) {
            return Ok(Some(source.clone()));
        }
        crate::config::check_source_code_path(&settings.base_dir, path)?;
        let bad = |message: String| ConfigError { key: "source_code_path".into(), message: format!("{path:?}: {message}") };
        let (context, dockerfile) = context::locate(&settings.base_dir.join(path));
        let ignore = context::Ignore::read(&context).map_err(|e| bad(format!("{}/{e}", context.display())))?;
        let entries = context::entries(&context, &ignore).map_err(|e| bad(format!("reading the build context {}: {e}", context.display())))?;
        let tag = context::hash(&context, &dockerfile, &entries).map_err(|e| bad(format!("reading the build context {}: {e}", context.display())))?;
        let source = Source { context, dockerfile, tag };
        READ.lock().unwrap().insert(dir, source.clone());
        Ok(Some(source))
    }
}

/// Whether the state records the image under `tag` (so `up` has nothing to build, unless it
/// was deleted out of band, which `find` tells).
pub fn recorded(state: &State, tag: &str) -> bool {
    state.resources.get("image").and_then(|r| r.physical_id.as_deref()).is_some_and(|id| id.ends_with(&format!(":{tag}")))
}

/// `<host>/<repository>:<tag>` → its parts.
fn parts(uri_with_tag: &str) -> Option<(&str, &str, &str)> {
    let (uri, tag) = uri_with_tag.rsplit_once(':')?;
    let (host, repository) = uri.split_once('/')?;
    Some((host, repository, tag))
}

async fn find_image(ctx: &Ctx, uri_with_tag: &str) -> Result<Option<Image>, AwsError> {
    let Some((host, repository, tag)) = parts(uri_with_tag) else { return Ok(None) };
    Ok(registry::manifest_digest(ctx, host, repository, tag).await?.map(|digest| Image {
        uri: format!("{host}/{repository}"),
        tag: tag.to_string(),
        digest,
    }))
}

fn step_error(operation: &'static str, resource: &str, message: String) -> AwsError {
    AwsError { operation, resource: resource.to_string(), code: None, message, request_id: None, class: ErrorClass::Fatal }
}

impl ImageSpec {
    fn image(&self) -> String {
        format!("{}:{}", self.repository_uri, self.tag)
    }

    /// Build (unless the local store holds this tag from a run whose push was cut off), log
    /// in, push; each a step on the display, and on a terminal every line of their output.
    async fn build_and_push(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let image = self.image();
        let tool = builder::resolve(self.builder).await.map_err(|e| step_error("ImageBuild", &image, e))?;
        let terminal = progress::on_terminal();
        let live = |prefix: &'static str| {
            move |line: &str| {
                if terminal && !line.trim().is_empty() {
                    progress::step(&format!("{prefix}: {}", line.trim()));
                }
            }
        };
        if builder::has_local_image(tool, &image).await {
            progress::step(&format!("{image} is in {tool}'s local store (built by an earlier run); not building it again"));
        } else {
            progress::step(&format!("building with {tool} (context {})", self.context.display()));
            let args = tool.build_args(&self.dockerfile.to_string_lossy(), &image, &self.context.to_string_lossy());
            let took = builder::run(tool, &args, None, None, &live("building")).await.map_err(|e| step_error("ImageBuild", &image, e.message))?;
            progress::step(&format!("built in {:.2}s", took.as_secs_f64()));
        }
        let auth = registry::auth(ctx, &image).await?;
        let host = self.repository_uri.split('/').next().unwrap_or_default();
        progress::step(&format!("logging in to {host}"));
        let args = tool.login_args(host, registry::insecure(host));
        builder::run(tool, &args, Some(&auth.password), Some(&auth.password), &live("logging in"))
            .await
            .map_err(|e| step_error("RegistryLogin", host, e.message))?;
        progress::step(&format!("pushing {image}"));
        let took = builder::run(tool, &tool.push_args(&image), None, Some(&auth.password), &live("pushing"))
            .await
            .map_err(|e| step_error("ImagePush", &image, e.message))?;
        progress::step(&format!("pushed in {:.2}s", took.as_secs_f64()));
        Ok(())
    }
}

impl Resource for ImageSpec {
    type Observed = Image;

    const TAGGABLE: bool = false;
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[(Kind::TaskDefinition, "a task definition naming a deleted image cannot start tasks")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Image>, AwsError> {
        find_image(ctx, id).await
    }

    /// The tag is the content hash, so an image under it is this one (pushed by a run whose
    /// answer or state write was lost).
    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Image>, AwsError> {
        Ok(find_image(ctx, &self.image()).await?.into_iter().collect())
    }

    fn diff(&self, o: &Image) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "repository", &self.repository_uri, &o.uri);
        compare(&mut replace, "tag (hash of the build context)", &self.tag, &o.tag);
        Diff::from_changes(Vec::new(), replace)
    }

    /// Build, log in, push. A repeat pushes the same content under the same tag: the
    /// registry already has the layers, and the tag names the same manifest.
    async fn create(&self, ctx: &Ctx, _logical_id: &str, _token: &str) -> Result<String, AwsError> {
        self.build_and_push(ctx).await?;
        Ok(self.image())
    }

    async fn update(&self, _ctx: &Ctx, _logical_id: &str, _o: &Image) -> Result<Option<String>, AwsError> {
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Image>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(find_image(ctx, id).await?);
        }
        Ok(out)
    }

    /// Deletes the tag (a replaced image); the repository's own delete takes the rest.
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let Some((_, repository, tag)) = parts(id) else { return Ok(()) };
        match ctx
            .ecr()
            .await
            .batch_delete_image()
            .repository_name(repository)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_uri_splits_into_host_repository_and_tag() {
        assert_eq!(
            parts("123456789012.dkr.ecr.us-east-1.amazonaws.com/books/books-api:0123abcd"),
            Some(("123456789012.dkr.ecr.us-east-1.amazonaws.com", "books/books-api", "0123abcd"))
        );
        assert_eq!(parts("no-tag"), None);
    }
}
