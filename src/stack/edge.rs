//! The edge tier: the Cognito user pool and app client, the payload bucket and the role
//! API Gateway writes to it with, the Lambda behind the time limit, and the REST API (paths,
//! authorizer, methods, deployment, the cached `prod` stage), and with a private integration
//! the VPC link to the internal NLB.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{compute, Refs, Stack};
use crate::config::{Integration, Settings};
use crate::resources::apigateway::authorizer::AuthorizerSpec;
use crate::resources::apigateway::deployment::{DeploymentSpec, DESCRIPTION_PREFIX};
use crate::resources::apigateway::escape_path;
use crate::resources::apigateway::method::{Authorization, IntegrationSpec, MethodSpec, UriSecret, REDACTED};
use crate::resources::apigateway::resource::ApiResourceSpec;
use crate::resources::apigateway::rest_api::RestApiSpec;
use crate::resources::apigateway::stage::{MethodCache, StageSpec, ALL_METHODS};
use crate::resources::apigateway::vpc_link::VpcLinkSpec;
use crate::resources::functions::function::{zip_source, FunctionSpec};
use crate::resources::functions::permission::PermissionSpec;
use crate::resources::iam::role::{stack_path, RoleSpec};
use crate::resources::identity::user_pool::{PasswordPolicy, UserPoolSpec};
use crate::resources::identity::user_pool_client::UserPoolClientSpec;
use crate::resources::storage::bucket::{bucket_name, BucketSpec};
use crate::resources::StackTags;

pub const STAGE: &str = "prod";
/// The OAuth scope every Cognito access token carries: with it on a method, the
/// authorizer accepts access tokens (without, only ID tokens).
pub const ACCESS_TOKEN_SCOPE: &str = "aws.cognito.signin.user.admin";
/// API Gateway gives up on an integration after 29 s; the Lambda sleeps past it.
pub const LIMITS_SLEEP_SECONDS: u32 = 30;
const LIMITS_FUNCTION_SOURCE: &str = "import time\n\n\ndef handler(event, context):\n    # Past API Gateway's 29 s integration timeout: callers get a 504.\n    time.sleep(30)\n    return {\"statusCode\": 200, \"body\": \"slept 30 s\"}\n";

/// The API's paths: logical id, full path, parent (None: the root), path part.
const PATHS: [(&str, &str, Option<&str>, &str); 7] = [
    ("api.resource.book", "/book", None, "book"),
    ("api.resource.book_id", "/book/{bookId}", Some("api.resource.book"), "{bookId}"),
    ("api.resource.limits", "/limits", None, "limits"),
    ("api.resource.limits_time", "/limits/time", Some("api.resource.limits"), "time"),
    ("api.resource.limits_time_exceed", "/limits/time/exceed", Some("api.resource.limits_time"), "exceed"),
    ("api.resource.limits_payload", "/limits/payload", Some("api.resource.limits"), "payload"),
    ("api.resource.limits_payload_bucket", "/limits/payload/{bucket}", Some("api.resource.limits_payload"), "{bucket}"),
];

#[derive(Clone, Copy)]
enum Target {
    /// The books service behind the ALB, at this path.
    Books(&'static str),
    TimeLimitLambda,
    PayloadBucket,
}

/// One method: logical id, its path's logical id, verb, Cognito-protected, cached, target.
struct Route {
    id: &'static str,
    resource: &'static str,
    path: &'static str,
    verb: &'static str,
    protected: bool,
    cached: bool,
    target: Target,
}

const ROUTES: [Route; 7] = [
    Route { id: "api.method.book.get", resource: "api.resource.book", path: "/book", verb: "GET", protected: false, cached: true, target: Target::Books("/api/v1/book") },
    Route { id: "api.method.book.post", resource: "api.resource.book", path: "/book", verb: "POST", protected: false, cached: false, target: Target::Books("/api/v1/book") },
    Route { id: "api.method.book_id.get", resource: "api.resource.book_id", path: "/book/{bookId}", verb: "GET", protected: true, cached: true, target: Target::Books("/api/v1/book/{bookId}") },
    Route { id: "api.method.book_id.put", resource: "api.resource.book_id", path: "/book/{bookId}", verb: "PUT", protected: true, cached: false, target: Target::Books("/api/v1/book/{bookId}") },
    Route { id: "api.method.book_id.delete", resource: "api.resource.book_id", path: "/book/{bookId}", verb: "DELETE", protected: true, cached: false, target: Target::Books("/api/v1/book/{bookId}") },
    Route { id: "api.method.limits_time_exceed.get", resource: "api.resource.limits_time_exceed", path: "/limits/time/exceed", verb: "GET", protected: false, cached: false, target: Target::TimeLimitLambda },
    Route { id: "api.method.limits_payload_bucket.post", resource: "api.resource.limits_payload_bucket", path: "/limits/payload/{bucket}", verb: "POST", protected: false, cached: false, target: Target::PayloadBucket },
];

/// Everything a method spec is made of besides what it reads through `Refs`.
#[derive(Clone)]
struct ApiInputs {
    region: String,
    basic_auth_user: String,
    basic_auth_parameter: String,
    integration: Integration,
}

/// A path parameter (`{bookId}`) of a path, if any.
fn path_parameter(path: &str) -> Option<&str> {
    path.rsplit('/').next().and_then(|last| last.strip_prefix('{')).and_then(|p| p.strip_suffix('}'))
}

fn method_spec(r: &Refs, route: &Route, inputs: &ApiInputs) -> MethodSpec {
    let parameter = path_parameter(route.path);
    let mut request_parameters = BTreeMap::new();
    let mut integration_parameters = BTreeMap::new();
    if let Some(p) = parameter {
        request_parameters.insert(format!("method.request.path.{p}"), true);
        integration_parameters.insert(format!("integration.request.path.{p}"), format!("method.request.path.{p}"));
    }
    let integration = match route.target {
        Target::Books(backend) => IntegrationSpec {
            kind: "HTTP_PROXY".into(),
            http_method: route.verb.into(),
            // The seed's way: basic-auth credentials in the URI (see `method` on the secret).
            // Public: over the internet to the ALB; private: through the VPC link to the NLB.
            uri: format!("http://{}:{REDACTED}@{}{backend}", inputs.basic_auth_user, r.attr(compute::front(inputs.integration).0, "dns_name")),
            secret: Some(UriSecret { parameter: inputs.basic_auth_parameter.clone(), version: r.attr("ssm.basic_auth_password", "version") }),
            credentials: None,
            vpc_link: (inputs.integration == Integration::Private).then(|| r.id("vpc_link")),
            // Different books never share a cache entry.
            cache_key_parameters: if route.cached { parameter.map(|p| vec![format!("method.request.path.{p}")]).unwrap_or_default() } else { Vec::new() },
            request_parameters: integration_parameters,
            passthrough_behavior: None,
            content_handling: None,
            timeout_ms: 29_000,
            responses: Vec::new(),
        },
        Target::TimeLimitLambda => IntegrationSpec {
            kind: "AWS_PROXY".into(),
            http_method: "POST".into(),
            uri: format!("arn:aws:apigateway:{}:lambda:path/2015-03-31/functions/{}/invocations", inputs.region, r.attr("lambda.limits", "arn")),
            secret: None,
            credentials: None,
            vpc_link: None,
            request_parameters: integration_parameters,
            cache_key_parameters: Vec::new(),
            passthrough_behavior: None,
            content_handling: None,
            timeout_ms: 29_000,
            responses: Vec::new(),
        },
        Target::PayloadBucket => {
            // The object key is the request id: every upload is a new object.
            integration_parameters.insert("integration.request.path.key".into(), "context.requestId".into());
            IntegrationSpec {
                kind: "AWS".into(),
                http_method: "PUT".into(),
                uri: format!("arn:aws:apigateway:{}:s3:path/{{bucket}}/{{key}}", inputs.region),
                secret: None,
                credentials: Some(r.attr("role.apigateway", "arn")),
                vpc_link: None,
                request_parameters: integration_parameters,
                cache_key_parameters: Vec::new(),
                passthrough_behavior: Some("WHEN_NO_MATCH".into()),
                content_handling: None,
                timeout_ms: 29_000,
                responses: vec!["200".into()],
            }
        }
    };
    MethodSpec {
        api_id: r.id("api"),
        resource_id: r.attr(route.resource, "resource_id"),
        http_method: route.verb.into(),
        authorization: if route.protected {
            Authorization::Cognito { authorizer_id: r.attr("api.authorizer", "authorizer_id"), scopes: vec![ACCESS_TOKEN_SCOPE.into()] }
        } else {
            Authorization::None
        },
        request_parameters,
        integration,
    }
}

/// The hash of the API's desired definition: every path and method as specified. A
/// deployment is made when it changes, never otherwise.
fn definition_hash(r: &Refs, inputs: &ApiInputs) -> String {
    let mut hasher = Sha256::new();
    for (id, path, _, _) in PATHS {
        hasher.update(format!("{id} {path} {}\n", r.id(id)));
    }
    for route in &ROUTES {
        hasher.update(format!("{} {} {:?}\n", route.id, r.id(route.id), method_spec(r, route, inputs)));
    }
    hasher.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn add(stack: &mut Stack, settings: &Settings, region: &str, account: &str) {
    let cfg = settings.config.clone();
    let name = cfg.stack.clone();
    let tags = move |id: &str| StackTags::new(&name, id);

    let (t, pool) = (tags("user_pool"), format!("{}-users", cfg.stack));
    stack.add("user_pool", &[], move |_| UserPoolSpec { tags: t.clone(), name: pool.clone(), password_policy: PasswordPolicy::strong() });
    let client = format!("{}-app", cfg.stack);
    stack.add("user_pool_client", &[], move |r| UserPoolClientSpec {
        pool_id: r.id("user_pool"),
        name: client.clone(),
        access_token_minutes: 30,
        id_token_minutes: 30,
        refresh_token_days: 30,
    });

    let (t, bucket) = (tags("bucket.payload"), bucket_name(&cfg.stack, account, region));
    stack.add("bucket.payload", &[], move |_| BucketSpec { tags: t.clone(), name: bucket.clone() });

    let (t, role_name, path) = (tags("role.apigateway"), format!("{}-apigateway", cfg.stack), stack_path(&cfg.stack));
    let condition = crate::stack::data::trust_condition(account, None);
    stack.add("role.apigateway", &[], move |r| RoleSpec {
        tags: t.clone(),
        name: role_name.clone(),
        path: path.clone(),
        service: "apigateway.amazonaws.com".into(),
        trust_condition: condition.clone(),
        managed_policies: Default::default(),
        inline: Some(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": format!("{}/*", r.attr("bucket.payload", "arn"))}]
        })),
    });

    let (t, function) = (tags("lambda.limits"), format!("{}-limits-timeout", cfg.stack));
    let zip = zip_source("index.py", LIMITS_FUNCTION_SOURCE);
    stack.add("lambda.limits", &[], move |r| FunctionSpec {
        tags: t.clone(),
        name: function.clone(),
        runtime: "python3.12".into(),
        handler: "index.handler".into(),
        role_arn: r.attr("role.lambda", "arn"),
        // Above the sleep, so API Gateway's 29 s cut-off is what the caller meets.
        timeout_seconds: LIMITS_SLEEP_SECONDS as i32 + 10,
        memory_mb: 128,
        zip: zip.clone(),
    });

    let (region_s, account_s) = (region.to_string(), account.to_string());
    stack.add("lambda_permission.limits", &[], move |r| PermissionSpec {
        function: r.id("lambda.limits"),
        statement_id: "apigateway-limits-time-exceed".into(),
        principal: "apigateway.amazonaws.com".into(),
        source_arn: format!("arn:aws:execute-api:{region_s}:{account_s}:{}/*/GET/limits/time/exceed", r.id("api")),
    });

    let (t, api) = (tags("api"), format!("{}-api", cfg.stack));
    stack.add("api", &[], move |_| RestApiSpec {
        tags: t.clone(),
        name: api.clone(),
        description: "books API (managed by infra)".into(),
        binary_media_types: vec!["*/*".into()],
    });

    for (id, path, parent, part) in PATHS {
        stack.add(id, &[], move |r| ApiResourceSpec {
            api_id: r.id("api"),
            parent_id: match parent {
                Some(parent) => r.attr(parent, "resource_id"),
                None => r.attr("api", "root_resource_id"),
            },
            path_part: part.into(),
            path: path.into(),
        });
    }

    stack.add("api.authorizer", &[], |r| AuthorizerSpec {
        api_id: r.id("api"),
        name: "cognito".into(),
        provider_arns: vec![r.attr("user_pool", "arn")],
        identity_source: "method.request.header.Authorization".into(),
        result_ttl_seconds: 300,
    });

    if settings.integration == Integration::Private {
        let (t, link) = (tags("vpc_link"), format!("{}-link", cfg.stack));
        stack.add("vpc_link", &[], move |r| VpcLinkSpec {
            tags: t.clone(),
            name: link.clone(),
            description: "API Gateway to the books service's internal NLB (managed by infra)".into(),
            target_arns: vec![r.id("nlb")],
        });
    }

    let inputs = ApiInputs {
        region: region.to_string(),
        basic_auth_user: cfg.http_basic_auth_user.clone(),
        basic_auth_parameter: cfg.http_basic_auth_password_ssm_param.clone(),
        integration: settings.integration,
    };
    for (i, route) in ROUTES.iter().enumerate() {
        let inputs = inputs.clone();
        stack.add(route.id, &[], move |r| method_spec(r, &ROUTES[i], &inputs));
    }

    let deployment_inputs = inputs.clone();
    stack.add("api.deployment", &[], move |r| DeploymentSpec {
        api_id: r.id("api"),
        description: format!("{DESCRIPTION_PREFIX}{}", definition_hash(r, &deployment_inputs)),
    });

    let (t, ttl, size) = (tags("api.stage"), cfg.cache_ttl_seconds as i32, cfg.cache_cluster_size.clone());
    stack.add("api.stage", &[], move |r| {
        let mut method_cache: BTreeMap<String, MethodCache> =
            ROUTES.iter().filter(|route| route.cached).map(|route| (format!("{}/{}", escape_path(route.path), route.verb), MethodCache { caching_enabled: ttl > 0, ttl_seconds: ttl })).collect();
        method_cache.insert(ALL_METHODS.into(), MethodCache { caching_enabled: false, ttl_seconds: ttl });
        StageSpec {
            tags: t.clone(),
            api_id: r.id("api"),
            name: STAGE.into(),
            deployment_id: r.attr("api.deployment", "deployment_id"),
            cache_cluster_enabled: true,
            cache_cluster_size: size.clone(),
            method_cache,
            unauthorized_cache_control: "FAIL_WITH_403".into(),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Known;

    #[test]
    fn path_parameters_are_found() {
        assert_eq!(path_parameter("/book/{bookId}"), Some("bookId"));
        assert_eq!(path_parameter("/book"), None);
    }

    #[test]
    fn the_definition_hash_moves_with_the_definition_only() {
        let inputs = ApiInputs { region: "us-east-1".into(), basic_auth_user: "admin".into(), basic_auth_parameter: "/p".into(), integration: Integration::Public };
        let mut known = Known::new();
        known.insert("alb".into(), ("arn:alb".into(), [("dns_name".to_string(), "a.example".to_string())].into()));
        let a = definition_hash(&Refs::new(&known), &inputs);
        assert_eq!(a, definition_hash(&Refs::new(&known), &inputs));
        known.insert("alb".into(), ("arn:alb".into(), [("dns_name".to_string(), "b.example".to_string())].into()));
        assert_ne!(a, definition_hash(&Refs::new(&known), &inputs), "a new backend is a new definition");
        let b = definition_hash(&Refs::new(&known), &inputs);
        known.insert("ssm.basic_auth_password".into(), ("p".into(), [("version".to_string(), "2".to_string())].into()));
        assert_ne!(b, definition_hash(&Refs::new(&known), &inputs), "a new password version is a new definition");
    }
}
