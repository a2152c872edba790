//! ECR's registry: the token that logs a builder in, and the registry's own HTTP API (v2)
//! to ask whether a tag is there. The registry is asked, not ECR's `DescribeImages`, because
//! the registry is what a push fills and a task pulls from.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::OnceCell;

use crate::aws::{aws_error, AwsError, ErrorClass};
use crate::resources::Ctx;

/// The ECR token of this run: `AWS:<password>` in base64. Valid for 12 hours, so one per run.
pub struct Auth {
    /// The `Authorization` header for the registry API (the token as it comes).
    basic: String,
    /// What a builder's `login` reads on stdin.
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<redacted>)")
    }
}

static AUTH: OnceCell<Auth> = OnceCell::const_new();

/// `GetAuthorizationToken`, once per run.
pub async fn auth(ctx: &Ctx, resource: &str) -> Result<&'static Auth, AwsError> {
    AUTH.get_or_try_init(|| async {
        let resp = ctx.ecr().await.get_authorization_token().send().await.map_err(|e| aws_error("GetAuthorizationToken", resource, e))?;
        let token = resp.authorization_data().first().and_then(|a| a.authorization_token()).unwrap_or_default().to_string();
        let decoded = base64::engine::general_purpose::STANDARD.decode(&token).ok().and_then(|d| String::from_utf8(d).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((_, password)) if !password.is_empty() => Ok(Auth { basic: format!("Basic {token}"), password: password.to_string() }),
            _ => Err(fatal("GetAuthorizationToken", resource, "ECR returned no usable authorization token".into())),
        }
    })
    .await
}

fn fatal(operation: &'static str, resource: &str, message: String) -> AwsError {
    AwsError { operation, resource: resource.to_string(), code: None, message, request_id: None, class: ErrorClass::Fatal }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    // Proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`), as the builders use them.
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client with the default TLS set-up")
    })
}

/// The manifest types a builder pushes (Docker's and OCI's, single images and lists).
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";

/// The digest of `<host>/<repository>:<tag>`, or `None` when the registry has no such tag.
/// HTTPS; a registry marked `insecure` in registries.conf may also answer over plain HTTP,
/// as the containers tools allow.
pub async fn manifest_digest(ctx: &Ctx, host: &str, repository: &str, tag: &str) -> Result<Option<String>, AwsError> {
    let image = format!("{host}/{repository}:{tag}");
    let auth = auth(ctx, &image).await?;
    let head = |scheme: &str| {
        client()
            .head(format!("{scheme}://{host}/v2/{repository}/manifests/{tag}"))
            .header(reqwest::header::AUTHORIZATION, &auth.basic)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES)
            .send()
    };
    let resp = match head("https").await {
        Ok(resp) => resp,
        Err(e) if insecure(host) => head("http").await.map_err(|e2| unreachable(&image, &format!("{e}; over HTTP: {e2}")))?,
        Err(e) => return Err(unreachable(&image, &e.to_string())),
    };
    let status = resp.status();
    match status.as_u16() {
        200 => Ok(Some(
            resp.headers().get("docker-content-digest").and_then(|d| d.to_str().ok()).unwrap_or_default().to_string(),
        )),
        404 => Ok(None),
        401 | 403 => Err(fatal("RegistryHeadManifest", &image, format!("the registry refused the ECR token ({status})"))),
        _ => Err(AwsError {
            class: if status.is_server_error() { ErrorClass::Retryable } else { ErrorClass::Fatal },
            ..fatal("RegistryHeadManifest", &image, format!("the registry answered {status}"))
        }),
    }
}

fn unreachable(image: &str, message: &str) -> AwsError {
    AwsError { class: ErrorClass::Retryable, ..fatal("RegistryHeadManifest", image, format!("cannot reach the registry: {message}")) }
}

/// Whether containers-registries.conf(5) marks `host` `insecure` (plain HTTP allowed): the
/// file the containers tools read — `CONTAINERS_REGISTRIES_CONF`, else the user's, else
/// `/etc/containers/registries.conf`. Drop-in directories are not read.
pub fn insecure(host: &str) -> bool {
    let path = match std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
        Some(path) => path.into(),
        None => {
            let user = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config/containers/registries.conf"));
            match user.filter(|p| p.is_file()) {
                Some(path) => path,
                None => "/etc/containers/registries.conf".into(),
            }
        }
    };
    std::fs::read_to_string(path).ok().is_some_and(|text| insecure_in(&text, host))
}

/// The registries.conf rule for `host`: version 2's `[[registry]]` tables (by `location` or
/// `prefix`) or version 1's `[registries.insecure] registries = [...]`.
fn insecure_in(text: &str, host: &str) -> bool {
    let Ok(conf) = text.parse::<toml::Table>() else { return false };
    let v2 = conf.get("registry").and_then(|r| r.as_array()).into_iter().flatten().any(|r| {
        let names = ["location", "prefix"].map(|k| r.get(k).and_then(|v| v.as_str()));
        names.contains(&Some(host)) && r.get("insecure").and_then(|v| v.as_bool()) == Some(true)
    });
    let v1 = conf
        .get("registries")
        .and_then(|r| r.get("insecure"))
        .and_then(|i| i.get("registries"))
        .and_then(|l| l.as_array())
        .is_some_and(|l| l.iter().any(|h| h.as_str() == Some(host)));
    v2 || v1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_marks_a_host_insecure_in_either_version() {
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let v2 = format!("unqualified-search-registries = []\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n");
        assert!(insecure_in(&v2, host));
        assert!(!insecure_in(&v2, "other.example"));
        assert!(!insecure_in(&v2.replace("insecure = true", "insecure = false"), host));
        assert!(insecure_in(&format!("[registries.insecure]\nregistries = [\"{host}\"]\n"), host));
        assert!(!insecure_in("not toml [", host));
    }
}
