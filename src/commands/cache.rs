//! `infra cache flush`: FlushStageCache on the stack's `prod` stage. Invalidating one entry
//! with `Cache-Control: max-age=0` needs an IAM-signed caller allowed
//! `execute-api:InvalidateCache` (the stage answers others with 403), which is why it
//! "doesn't seem to work" in the seed; flushing the whole stage is the control-plane way.

use anyhow::{bail, Result};

use super::user::connect;
use crate::aws::aws_error;
use crate::cli::{CacheCommand, Cli};
use crate::config::Settings;
use crate::resources::Ctx;

/// The stage `infra up` deploys the API to.
pub(super) const STAGE: &str = "prod";

pub async fn run(cli: &Cli, settings: &Settings, command: &CacheCommand) -> Result<u8> {
    match command {
        CacheCommand::Flush => {
            let (ctx, outputs) = connect(cli, settings).await?;
            let api = outputs.require("RestApiId")?;
            flush_stage_cache(&ctx, api, STAGE).await?;
            let url = outputs.get("ApiGwUrl").map(|u| format!(" ({u})")).unwrap_or_default();
            println!("flushed the cache of stage {STAGE} of REST API {api}{url}");
            Ok(0)
        }
    }
}

/// FlushStageCache, with the failures a user can act on told in words.
pub(super) async fn flush_stage_cache(ctx: &Ctx, api: &str, stage: &str) -> Result<()> {
    let Err(e) = ctx.apigateway().await.flush_stage_cache().rest_api_id(api).stage_name(stage).send().await else {
        return Ok(());
    };
    if let Some(raw) = e.raw_response() {
        let content_type = raw.headers().get("content-type").unwrap_or_default().to_ascii_lowercase();
        let body_is_html = raw.body().bytes().is_some_and(|b| b.trim_ascii_start().starts_with(b"<"));
        // API Gateway answers in JSON with an error type; an HTML page (moto's 404 for an
        // operation it lacks, a proxy's error page) means the operation never got there.
        if content_type.starts_with("text/html") || body_is_html {
            let endpoint = match std::env::var("AWS_ENDPOINT_URL") {
                Ok(url) if !url.is_empty() => format!("the endpoint {url}"),
                _ => "the API Gateway endpoint".to_string(),
            };
            bail!("{endpoint} does not support FlushStageCache (it answered HTTP {} with an HTML page, not an API Gateway error)", raw.status().as_u16());
        }
    }
    if e.as_service_error().is_some_and(|s| s.is_not_found_exception()) {
        bail!("REST API {api} has no stage {stage:?} (deleted out of band?); run `infra up` to restore it");
    }
    Err(aws_error("FlushStageCache", format!("stage {stage} of REST API {api}"), e).into())
}
