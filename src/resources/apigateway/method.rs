//! A method with its integration (and, for AWS service integrations, the 200 method and
//! integration responses). Found by its verb on its resource: a repeated PutMethod meets a
//! ConflictException, and the lookup finds the first. The integration is a PUT, safe to
//! repeat, so a method left without one by a lost answer is completed by the update.
//!
//! An HTTP integration may carry the backend's basic-auth password in its URI (the seed
//! does so). The spec holds the URI with the password shown as `****` and the name of the
//! SSM parameter; the value is read only to make the PutIntegration call. What is read back
//! keeps the URI redacted and a fingerprint of the password, compared with the parameter's,
//! so the value never reaches state, logs or plan output, and a stale one still shows.

use std::collections::BTreeMap;

use aws_sdk_apigateway::types::{ConnectionType, ContentHandlingStrategy, IntegrationType, Method as SdkMethod};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{by_api, conflict_means, resources_of, split_id};
use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::secrets::ssm_parameter::{fingerprint, read_secret};
use crate::resources::{compare, Ctx, Diff, FieldChange, Kind, Replacement, Resource};

/// How a URI shows a password it embeds.
pub const REDACTED: &str = "****";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    None,
    /// A COGNITO_USER_POOLS authorizer, with the OAuth scopes that make it accept access
    /// tokens (without scopes it accepts only ID tokens).
    Cognito { authorizer_id: String, scopes: Vec<String> },
}

/// The secret an integration URI embeds: where it lives, and the fingerprint of its
/// current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriSecret {
    pub parameter: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationSpec {
    /// HTTP_PROXY, AWS_PROXY or AWS.
    pub kind: String,
    pub http_method: String,
    /// With any password as [`REDACTED`].
    pub uri: String,
    pub secret: Option<UriSecret>,
    pub credentials: Option<String>,
    /// The VPC link an HTTP integration goes through (`integration = "private"`); `None`:
    /// over the internet.
    pub vpc_link: Option<String>,
    pub request_parameters: BTreeMap<String, String>,
    pub cache_key_parameters: Vec<String>,
    pub passthrough_behavior: Option<String>,
    pub content_handling: Option<String>,
    pub timeout_ms: i32,
    /// Status codes with a method response and a default integration response (non-proxy
    /// integrations need them to answer at all).
    pub responses: Vec<String>,
}

impl IntegrationSpec {
    fn connection_type(&self) -> ConnectionType {
        match self.vpc_link {
            Some(_) => ConnectionType::VpcLink,
            None => ConnectionType::Internet,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSpec {
    pub api_id: String,
    pub resource_id: String,
    pub http_method: String,
    pub authorization: Authorization,
    pub request_parameters: BTreeMap<String, bool>,
    pub integration: IntegrationSpec,
}

/// An integration as read: the URI redacted, the password only as its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub kind: String,
    pub http_method: String,
    pub uri: String,
    pub password_fingerprint: Option<String>,
    pub credentials: Option<String>,
    /// INTERNET or VPC_LINK (absent in an answer means INTERNET).
    pub connection_type: String,
    pub connection_id: Option<String>,
    pub request_parameters: BTreeMap<String, String>,
    pub cache_key_parameters: Vec<String>,
    pub passthrough_behavior: Option<String>,
    pub content_handling: Option<String>,
    pub timeout_ms: i32,
    pub responses: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Method {
    pub api_id: String,
    pub resource_id: String,
    pub http_method: String,
    pub authorization_type: String,
    pub authorizer_id: Option<String>,
    pub scopes: Vec<String>,
    pub request_parameters: BTreeMap<String, bool>,
    pub method_responses: Vec<String>,
    pub integration: Option<Integration>,
}

/// Splits the password out of `scheme://user:password@host/...`: the URI with the password
/// as [`REDACTED`], and the password (percent-decoded).
pub fn redact(uri: &str, stack: &str) -> (String, Option<String>) {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else { return (uri.to_string(), None) };
    let authority_end = uri[scheme_end..].find('/').map_or(uri.len(), |i| scheme_end + i);
    let Some(at) = uri[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else { return (uri.to_string(), None) };
    let Some(colon) = uri[scheme_end..at].find(':').map(|i| scheme_end + i) else { return (uri.to_string(), None) };
    let password = percent_decode_str(&uri[colon + 1..at]).decode_utf8_lossy();
    (format!("{}{REDACTED}{}", &uri[..colon + 1], &uri[at..]), Some(fingerprint(stack, &password)))
}

/// What a password in a URI's user info keeps as it is: RFC 3986's unreserved characters.
const USERINFO_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The URI with the real password in place of [`REDACTED`], percent-encoded.
fn with_password(uri: &str, password: &str) -> String {
    uri.replacen(&format!(":{REDACTED}@"), &format!(":{}@", utf8_percent_encode(password, USERINFO_KEEP)), 1)
}

fn observe(api: &str, resource: &str, m: &SdkMethod, stack: &str) -> Method {
    let mut method_responses: Vec<String> = m.method_responses().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    method_responses.sort();
    Method {
        api_id: api.to_string(),
        resource_id: resource.to_string(),
        http_method: m.http_method().unwrap_or_default().to_string(),
        authorization_type: m.authorization_type().unwrap_or("NONE").to_string(),
        authorizer_id: m.authorizer_id().map(str::to_string),
        scopes: m.authorization_scopes().to_vec(),
        request_parameters: m.request_parameters().map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default(),
        method_responses,
        integration: m.method_integration().map(|i| {
            let (uri, password_fingerprint) = redact(i.uri().unwrap_or_default(), stack);
            let mut responses: Vec<String> = i.integration_responses().map(|r| r.keys().cloned().collect()).unwrap_or_default();
            responses.sort();
            let mut cache_key_parameters = i.cache_key_parameters().to_vec();
            cache_key_parameters.sort();
            Integration {
                kind: i.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                http_method: i.http_method().unwrap_or_default().to_string(),
                uri,
                password_fingerprint,
                credentials: i.credentials().map(str::to_string),
                connection_type: i.connection_type().map_or(ConnectionType::Internet.as_str(), |c| c.as_str()).to_string(),
                connection_id: i.connection_id().map(str::to_string),
                request_parameters: i.request_parameters().map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
                cache_key_parameters,
                passthrough_behavior: i.passthrough_behavior().map(str::to_string),
                content_handling: i.content_handling().map(|c| c.as_str().to_string()),
                timeout_ms: i.timeout_in_millis(),
                responses,
            }
        }),
    }
}

fn id_of(api: &str, resource: &str, verb: &str) -> String {
    format!("{api}/{resource}/{verb}")
}

/// `<api>/<resource>/<verb>` into its parts.
fn parts(pid: &str) -> (&str, &str, &str) {
    let (api, rest) = split_id(pid);
    let (resource, verb) = rest.split_once('/').unwrap_or((rest, ""));
    (api, resource, verb)
}

fn show<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

impl MethodSpec {
    /// The changes PutMethod makes (authorization, parameters): applied by re-putting the
    /// method, since UpdateMethod is not available everywhere (moto lacks it).
    fn method_changes(&self, o: &Method) -> Vec<FieldChange> {
        let mut c = Vec::new();
        let (kind, authorizer, scopes) = match &self.authorization {
            Authorization::None => ("NONE", None, Vec::new()),
            Authorization::Cognito { authorizer_id, scopes } => ("COGNITO_USER_POOLS", Some(authorizer_id.clone()), scopes.clone()),
        };
        compare(&mut c, "authorization_type", &kind.to_string(), &o.authorization_type);
        compare(&mut c, "authorizer_id", &show(&authorizer), &show(&o.authorizer_id));
        compare(&mut c, "authorization_scopes", &scopes.join(","), &o.scopes.join(","));
        compare(&mut c, "request_parameters", &show(&self.request_parameters), &show(&o.request_parameters));
        let responses = self.integration.responses.clone();
        compare(&mut c, "method_responses", &responses.join(","), &o.method_responses.join(","));
        c
    }

    fn integration_changes(&self, o: &Method) -> Vec<FieldChange> {
        let want = &self.integration;
        let Some(found) = &o.integration else { return vec![FieldChange::new("integration", &want.kind, "(none)")] };
        let mut c = Vec::new();
        compare(&mut c, "integration.type", &want.kind, &found.kind);
        compare(&mut c, "integration.http_method", &want.http_method, &found.http_method);
        compare(&mut c, "integration.uri", &want.uri, &found.uri);
        if let Some(secret) = &want.secret {
            let found_fp = found.password_fingerprint.clone().unwrap_or_else(|| "(none)".into());
            compare(&mut c, "integration.uri password (fingerprint)", &secret.fingerprint, &found_fp);
        }
        compare(&mut c, "integration.credentials", &show(&want.credentials), &show(&found.credentials));
        compare(&mut c, "integration.connection_type", &want.connection_type().as_str().to_string(), &found.connection_type);
        // An answer without a connection id is not compared: moto never returns it, and AWS
        // always does for a VPC_LINK integration (whose type is compared above).
        if found.connection_id.is_some() {
            compare(&mut c, "integration.connection_id", &show(&want.vpc_link), &show(&found.connection_id));
        }
        compare(&mut c, "integration.request_parameters", &show(&want.request_parameters), &show(&found.request_parameters));
        // An empty answer is not compared: moto never returns cache key parameters.
        if !found.cache_key_parameters.is_empty() {
            compare(&mut c, "integration.cache_key_parameters", &want.cache_key_parameters.join(","), &found.cache_key_parameters.join(","));
        }
        if want.passthrough_behavior.is_some() {
            compare(&mut c, "integration.passthrough_behavior", &show(&want.passthrough_behavior), &show(&found.passthrough_behavior));
        }
        compare(&mut c, "integration.content_handling", &show(&want.content_handling), &show(&found.content_handling));
        compare(&mut c, "integration.timeout_in_millis", &want.timeout_ms, &found.timeout_ms);
        compare(&mut c, "integration.responses", &want.responses.join(","), &found.responses.join(","));
        c
    }

    async fn put_method(&self, ctx: &Ctx, logical_id: &str) -> Result<(), AwsError> {
        let mut req = ctx
            .apigateway()
            .await
            .put_method()
            .rest_api_id(&self.api_id)
            .resource_id(&self.resource_id)
            .http_method(&self.http_method)
            .set_request_parameters(Some(self.request_parameters.clone().into_iter().collect()));
        req = match &self.authorization {
            Authorization::None => req.authorization_type("NONE"),
            Authorization::Cognito { authorizer_id, scopes } => req
                .authorization_type("COGNITO_USER_POOLS")
                .authorizer_id(authorizer_id)
                .set_authorization_scopes(Some(scopes.clone())),
        };
        let put = req
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("PutMethod", logical_id, e, conflict_means(ErrorClass::AlreadyExists)));
        if let Err(e) = put {
            // The answer was lost, or an earlier attempt whose answer was lost made it: if
            // the method is there as specified, the integration is what remains to do.
            if !matches!(e.class, ErrorClass::Retryable | ErrorClass::Timeout | ErrorClass::AlreadyExists) {
                return Err(e);
            }
            let id = id_of(&self.api_id, &self.resource_id, &self.http_method);
            let found = Resource::find(self, ctx, &id).await?;
            let in_place = found.is_some_and(|m| self.method_changes(&m).iter().all(|c| c.field == "method_responses"));
            if !in_place {
                return Err(e);
            }
        }
        for status in &self.integration.responses {
            ctx.apigateway()
                .await
                .put_method_response()
                .rest_api_id(&self.api_id)
                .resource_id(&self.resource_id)
                .http_method(&self.http_method)
                .status_code(status)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error_typed("PutMethodResponse", logical_id, e, conflict_means(ErrorClass::AlreadyExists)))
                // A response is only its status code: one already there is this one.
                .or_else(|e| if e.class == ErrorClass::AlreadyExists { Ok(()) } else { Err(e) })?;
        }
        Ok(())
    }

    /// PutIntegration replaces the whole integration, so a repeat is harmless.
    async fn put_integration(&self, ctx: &Ctx, logical_id: &str) -> Result<(), AwsError> {
        let i = &self.integration;
        let uri = match &i.secret {
            Some(secret) => with_password(&i.uri, &read_secret(ctx, &secret.parameter).await?),
            None => i.uri.clone(),
        };
        ctx.apigateway()
            .await
            .put_integration()
            .rest_api_id(&self.api_id)
            .resource_id(&self.resource_id)
            .http_method(&self.http_method)
            .r#type(IntegrationType::from(i.kind.as_str()))
            .integration_http_method(&i.http_method)
            .uri(uri)
            .set_credentials(i.credentials.clone())
            .connection_type(i.connection_type())
            .set_connection_id(i.vpc_link.clone())
            .set_request_parameters(Some(i.request_parameters.clone().into_iter().collect()))
            .set_cache_key_parameters(Some(i.cache_key_parameters.clone()))
            .set_passthrough_behavior(i.passthrough_behavior.clone())
            .set_content_handling(i.content_handling.as_deref().map(ContentHandlingStrategy::from))
            .timeout_in_millis(i.timeout_ms)
            .send()
            .await
            // Never the error's request: it holds the URI.
            .map_err(|e| aws_error("PutIntegration", logical_id, e))?;
        for status in &i.responses {
            ctx.apigateway()
                .await
                .put_integration_response()
                .rest_api_id(&self.api_id)
                .resource_id(&self.resource_id)
                .http_method(&self.http_method)
                .status_code(status)
                .selection_pattern("")
                .send()
                .await
                .map_err(|e| aws_error("PutIntegrationResponse", logical_id, e))?;
        }
        Ok(())
    }
}

impl Resource for MethodSpec {
    type Observed = Method;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Method>, AwsError> {
        let (api, resource, verb) = parts(id);
        let got = ctx.apigateway().await.get_method().rest_api_id(api).resource_id(resource).http_method(verb).send().await;
        let Some(m) = found(got.map_err(|e| aws_error("GetMethod", id, e)))? else { return Ok(None) };
        let m = SdkMethod::builder()
            .set_http_method(m.http_method)
            .set_authorization_type(m.authorization_type)
            .set_authorizer_id(m.authorizer_id)
            .set_authorization_scopes(m.authorization_scopes)
            .set_request_parameters(m.request_parameters)
            .set_method_responses(m.method_responses)
            .set_method_integration(m.method_integration)
            .build();
        Ok(Some(observe(api, resource, &m, &ctx.stack)))
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Method>, AwsError> {
        Ok(self.find(ctx, &id_of(&self.api_id, &self.resource_id, &self.http_method)).await?.into_iter().collect())
    }

    fn diff(&self, o: &Method) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "api", &self.api_id, &o.api_id);
        compare(&mut replace, "resource_id", &self.resource_id, &o.resource_id);
        let mut update = self.method_changes(o);
        update.extend(self.integration_changes(o));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        self.put_method(ctx, logical_id).await?;
        self.put_integration(ctx, logical_id).await?;
        Ok(id_of(&self.api_id, &self.resource_id, &self.http_method))
    }

    async fn update(&self, ctx: &Ctx, logical_id: &str, o: &Method) -> Result<Option<String>, AwsError> {
        if !self.method_changes(o).is_empty() {
            // Not live until the next deployment: the stage serves its snapshot meanwhile.
            let deleted = ctx.apigateway().await.delete_method().rest_api_id(&o.api_id).resource_id(&o.resource_id).http_method(&o.http_method).send().await;
            found(deleted.map_err(|e| aws_error("DeleteMethod", logical_id, e)))?;
            self.put_method(ctx, logical_id).await?;
            self.put_integration(ctx, logical_id).await?;
        } else if !self.integration_changes(o).is_empty() {
            self.put_integration(ctx, logical_id).await?;
        }
        Ok(None)
    }


    /// API Gateway refuses a second change to one REST API while a first is in progress.
    fn serial_key(&self) -> Option<String> {
        Some(self.api_id.clone())
    }

    fn physical_id(o: &Method) -> String {
        id_of(&o.api_id, &o.resource_id, &o.http_method)
    }

    /// On another resource (the path was recreated) the method is made there first.
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const TAGGABLE: bool = false;
    const DELETED_WITH: Option<Kind> = Some(Kind::RestApi);

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Method>, AwsError> {
        let mut out = Vec::new();
        for (api, ids) in by_api(ids) {
            for r in resources_of(ctx, &api).await?.unwrap_or_default() {
                let resource = r.id().unwrap_or_default();
                for (verb, m) in r.resource_methods().into_iter().flatten() {
                    if ids.contains(&id_of(&api, resource, verb)) {
                        out.push(observe(&api, resource, m, &ctx.stack));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let (api, resource, verb) = parts(id);
        ctx.apigateway()
            .await
            .delete_method()
            .rest_api_id(api)
            .resource_id(resource)
            .http_method(verb)
            .send()
            .await
            .map_err(|e| aws_error("DeleteMethod", id, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_uris_are_redacted_and_fingerprinted() {
        let (uri, fp) = redact("http://admin:s3cr%2Ft@lb.example.com/api/v1/book/{bookId}", "books");
        assert_eq!(uri, "http://admin:****@lb.example.com/api/v1/book/{bookId}");
        assert_eq!(fp, Some(fingerprint("books", "s3cr/t")));
        assert_eq!(redact("arn:aws:apigateway:us-east-1:s3:path/{bucket}/{key}", "books"), ("arn:aws:apigateway:us-east-1:s3:path/{bucket}/{key}".into(), None));
        assert_eq!(redact("http://lb.example.com/a@b", "books").1, None, "an @ in the path is not user info");
        let real = with_password(&uri, "s3cr/t");
        assert_eq!(real, "http://admin:s3cr%2Ft@lb.example.com/api/v1/book/{bookId}");
        assert_eq!(redact(&real, "books"), (uri, fp));
    }

    #[test]
    fn fingerprints_differ_by_value_and_stack() {
        assert_ne!(fingerprint("books", "a"), fingerprint("books", "b"));
        assert_ne!(fingerprint("books", "a"), fingerprint("other", "a"));
        assert_eq!(fingerprint("books", "a").len(), 16);
    }
}
