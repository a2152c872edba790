//! One `SdkConfig` → the service clients, with the retry policy, the per-service rate
//! limits and the call recorder that every AWS request passes through.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use tokio::sync::Mutex as AsyncMutex;

/// The clients of one run, all sharing one recorder and one set of rate limits.
#[derive(Clone)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub rds: aws_sdk_rds::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub recorder: Arc<Recorder>,
    pub limits: Arc<RateLimits>,
    /// Turns for changes that AWS refuses to take concurrently (one REST API's definition).
    pub serial: Arc<Serial>,
    pub region: String,
    sdk: aws_types::SdkConfig,
}

impl Aws {
    /// Loads the SDK's standard chain (profiles, `AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL`); `region` from the config wins over the chain.
    pub async fn connect(region: Option<&str>) -> anyhow::Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Throttling is retried by the SDK's standard strategy: exponential backoff
            // with full jitter; more attempts than the default 3 because API Gateway's
            // control plane throttles hard (at 30 % throttled calls, 12 attempts leave one
            // call in half a million failing; 8 left one in 4,500, a few per stack).
            .retry_config(RetryConfig::standard().with_max_attempts(12).with_initial_backoff(Duration::from_millis(200)));
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let sdk = loader.load().await;
        check_credentials(&sdk).await?;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| anyhow::anyhow!("no AWS region: set `region` in infra.toml or AWS_REGION"))?;
        let recorder = Arc::new(Recorder::from_env());
        // Every client records its calls through the same interceptor.
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf($sdk::config::Builder::from(&sdk).interceptor(RecordingInterceptor(recorder.clone())).build())
            };
        }
        Ok(Aws {
            ec2: client!(aws_sdk_ec2),
            ssm: client!(aws_sdk_ssm),
            iam: client!(aws_sdk_iam),
            logs: client!(aws_sdk_cloudwatchlogs),
            rds: client!(aws_sdk_rds),
            ecr: client!(aws_sdk_ecr),
            ecs: client!(aws_sdk_ecs),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            apigateway: client!(aws_sdk_apigateway),
            cognito: client!(aws_sdk_cognitoidentityprovider),
            lambda: client!(aws_sdk_lambda),
            // Path-style addressing: bucket names never become host names, which an
            // emulator on 127.0.0.1 cannot resolve (and dotted names break TLS on AWS).
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).interceptor(RecordingInterceptor(recorder.clone())).build(),
            ),
            sts: client!(aws_sdk_sts),
            recorder,
            limits: Arc::new(RateLimits::aws_defaults()),
            serial: Arc::default(),
            region,
            sdk,
        })
    }

    /// The state backend's own S3 client. A client of its own has its own connection pool,
    /// so state calls, which run on the backend's runtime, never ride a connection driven
    /// by the engine's. It bypasses the recorder: state calls are not stack calls (the
    /// store counts its writes) and must not trip the fault-injection kill counts.
    pub fn state_s3_client(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk)
    }
}

/// Resolves the credential chain once up front, so a machine without credentials gets one
/// readable line instead of a dispatch failure from the first call.
async fn check_credentials(sdk: &aws_config::SdkConfig) -> anyhow::Result<()> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let hint = format!(
        "no AWS credentials found (tried environment, profile \"{profile}\", SSO, web identity, container and instance metadata); set AWS_PROFILE or run aws configure"
    );
    let Some(provider) = sdk.credentials_provider() else { anyhow::bail!(hint) };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(aws_credential_types::provider::error::CredentialsError::CredentialsNotLoaded(_)) => anyhow::bail!(hint),
        // The chain's last provider (often instance metadata) failed: one line, with the
        // innermost cause, never the error's debug dump.
        Err(e) => {
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            anyhow::bail!("{hint} (the last provider tried said: {})", cause.to_string().lines().next().unwrap_or_default())
        }
    }
}

/// One AWS call as the recorder saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    /// `ok`, or the HTTP status / transport failure.
    pub outcome: String,
    pub millis: u64,
    pub mutating: bool,
}

/// Read-only operations by naming convention across AWS APIs; everything else mutates.
pub fn is_mutating(operation: &str) -> bool {
    const READ_PREFIXES: [&str; 5] = ["Describe", "Get", "List", "Lookup", "Head"];
    !READ_PREFIXES.iter().any(|p| operation.starts_with(p))
}

/// Records every AWS call; optionally appends each as a JSON line to `INFRA_CALL_LOG`.
///
/// Fault injection for the crash-safety tests: `INFRA_FAULT_KILL_AFTER_CALLS=k` aborts
/// the process the instant the k-th call has returned, and
/// `INFRA_FAULT_KILL_AFTER_OPERATION=CreateVpc` the instant the first call of that
/// operation has returned — before the engine sees the answer, so exactly at "create
/// returned, id not yet saved".
#[derive(Debug)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
    log: Option<Mutex<std::fs::File>>,
    kill_after: Option<usize>,
    kill_after_operation: Option<String>,
}

impl Recorder {
    pub fn from_env() -> Recorder {
        let log = std::env::var_os("INFRA_CALL_LOG").and_then(|p| {
            std::fs::OpenOptions::new().create(true).append(true).open(p).ok().map(Mutex::new)
        });
        let kill_after = std::env::var("INFRA_FAULT_KILL_AFTER_CALLS").ok().and_then(|v| v.parse().ok());
        let kill_after_operation = std::env::var("INFRA_FAULT_KILL_AFTER_OPERATION").ok();
        Recorder { calls: Mutex::new(Vec::new()), log, kill_after, kill_after_operation }
    }

    fn record(&self, call: Call) {
        use std::io::Write;
        let kill = self.kill_after_operation.as_deref() == Some(call.operation.as_str());
        if let Some(log) = &self.log {
            let mut line = serde_json::to_vec(&call).unwrap_or_default();
            line.push(b'\n');
            let _ = log.lock().unwrap().write_all(&line);
        }
        let count = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(call);
            calls.len()
        };
        if kill || self.kill_after == Some(count) {
            std::process::abort();
        }
    }

    /// (mutating, read) call counts.
    pub fn counts(&self) -> (usize, usize) {
        let calls = self.calls.lock().unwrap();
        let mutating = calls.iter().filter(|c| c.mutating).count();
        (mutating, calls.len() - mutating)
    }

    /// Calls per service/operation, most frequent first: what `-v` prints.
    pub fn summary(&self) -> Vec<(String, usize)> {
        let mut by_op: HashMap<String, usize> = HashMap::new();
        for c in self.calls.lock().unwrap().iter() {
            *by_op.entry(format!("{}:{}", c.service, c.operation)).or_default() += 1;
        }
        let mut v: Vec<_> = by_op.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[derive(Debug, Clone)]
struct CallStart(Instant);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct RecordingInterceptor(Arc<Recorder>);

impl Intercept for RecordingInterceptor {
    fn name(&self) -> &'static str {
        "infra-call-recorder"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(CallStart(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let millis = cfg.load::<CallStart>().map(|s| s.0.elapsed().as_millis() as u64).unwrap_or(0);
        let outcome = match (context.output_or_error(), context.response()) {
            (Some(Ok(_)), _) => "ok".to_string(),
            (_, Some(response)) => format!("http {}", response.status().as_u16()),
            (_, None) => "no response".to_string(),
        };
        let mutating = is_mutating(&operation);
        self.0.record(Call { service, operation, outcome, millis, mutating });
        Ok(())
    }
}

/// A token bucket per service: bursts up to `burst`, refills at `per_second`.
/// AWS throttles per account and API; staying under the limit beats retrying after it.
pub struct RateLimits {
    buckets: HashMap<&'static str, AsyncMutex<Bucket>>,
}

struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: f64, per_second: f64) -> Bucket {
        Bucket { tokens: burst, burst, per_second, last: Instant::now() }
    }

    /// How long to wait before a token is available, taking it.
    fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

impl RateLimits {
    /// Mirrors AWS's documented control-plane rates (burst, per second), per account and
    /// region: EC2's non-mutating bucket holds 100 tokens and refills 20 per second (its
    /// mutating one is larger and slower, 200 at 5/s); API Gateway allows 10 calls per
    /// second per account with bursts of 40 for most control-plane calls (fewer for a few:
    /// CreateRestApi, CreateDeployment; those are throttled and retried); Cognito's user pool
    /// management about 20/s; Lambda's control plane 15/s; SSM's parameter APIs 40/s; IAM is global and slow (about
    /// 10/s); CloudWatch Logs' control plane 5/s; RDS, ECR, ECS and ELB about 20/s.
    pub fn aws_defaults() -> RateLimits {
        let mut buckets = HashMap::new();
        for (service, burst, per_second) in [
            ("ec2", 100.0, 20.0),
            ("apigateway", 40.0, 10.0),
            ("cognito", 20.0, 20.0),
            ("lambda", 15.0, 15.0),
            ("sts", 50.0, 50.0),
            ("ssm", 40.0, 40.0),
            ("iam", 20.0, 10.0),
            ("logs", 10.0, 5.0),
            ("rds", 40.0, 20.0),
            ("ecr", 20.0, 20.0),
            ("ecs", 50.0, 20.0),
            ("elasticloadbalancing", 20.0, 10.0),
            // S3 allows 3,500 writes per second per prefix: the state object never comes close.
            ("s3", 350.0, 3500.0),
        ] {
            buckets.insert(service, AsyncMutex::new(Bucket::new(burst, per_second)));
        }
        RateLimits { buckets }
    }

    /// Waits for a token of `service` (services without a bucket are not limited).
    pub async fn acquire(&self, service: &str) {
        if let Some(bucket) = self.buckets.get(service) {
            let wait = bucket.lock().await.take(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One lock per key, made on first use: changes that share a key are made one at a time,
/// while changes under other keys go on in parallel. API Gateway answers
/// `ConflictException: ... concurrent modification` to a second change of one REST API
/// while a first is in progress, so every change to an API's paths, methods, authorizer,
/// deployment and stage takes the API's turn.
#[derive(Default)]
pub struct Serial {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl Serial {
    pub async fn turn(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().unwrap().entry(key.to_string()).or_default().clone();
        lock.lock_owned().await
    }
}

/// How the engine should react to an AWS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    DependencyViolation,
    Retryable,
    Timeout,
    /// A create met its own earlier attempt (or a resource with the same unique key).
    AlreadyExists,
    /// AWS refused the call for now and did nothing (a concurrent change, a dependency not
    /// yet visible, a role not yet propagated): the same call is repeated after a pause, for
    /// the bounded time that [`AwsError::retry_budget`] gives.
    Transient,
    Fatal,
}

/// An AWS error with what was being done to what: the operation, the resource, the AWS
/// error code and request id, and its class.
#[derive(Debug)]
pub struct AwsError {
    pub operation: &'static str,
    pub resource: String,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    pub class: ErrorClass,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.operation, self.resource)?;
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// How long a refusal of this kind is repeated before it counts as a failure: the
    /// budget of its row in [`REFUSALS`] (what terraform-provider-aws tolerates for it),
    /// else [`PROPAGATION_TIMEOUT`] for a dependency that a just-made call cannot see yet.
    pub fn retry_budget(&self) -> Duration {
        self.budget_or(PROPAGATION_TIMEOUT)
    }

    /// The budget of this error's row in [`REFUSALS`], else `default`; scaled by
    /// `INFRA_TIMEOUT_SCALE`.
    pub fn budget_or(&self, default: Duration) -> Duration {
        let row = refusal(self.operation, self.code.as_deref().unwrap_or(""), &self.message);
        scaled(row.map(|r| Duration::from_secs(r.budget_secs)).unwrap_or(default))
    }

    pub fn timeout(operation: &'static str, resource: impl Into<String>, message: String) -> AwsError {
        AwsError { operation, resource: resource.into(), code: None, message, request_id: None, class: ErrorClass::Timeout }
    }
}

/// Classifies an SDK error by its code (EC2's query protocol models no error shapes, so the
/// code in the error metadata is the typed information there is) and its HTTP status.
pub fn aws_error<E>(operation: &'static str, resource: impl Into<String>, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.into();
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().map(str::to_string);
            let message = e.message().unwrap_or("(no message)").to_string();
            let class = match refusal(operation, code.as_deref().unwrap_or(""), &message) {
                Some(r) => r.class,
                None => classify(code.as_deref().unwrap_or(""), service.raw().status().as_u16()),
            };
            AwsError {
                operation,
                resource,
                message,
                request_id: e.meta().extra("aws_request_id").or_else(|| e.meta().extra("request_id")).map(str::to_string),
                code,
                class,
            }
        }
        // The request may or may not have reached AWS: a create must look before it repeats.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => AwsError {
            operation,
            resource,
            code: None,
            message: transport_message(&err),
            request_id: None,
            class: ErrorClass::Retryable,
        },
        _ => AwsError {
            operation,
            resource,
            code: None,
            message: transport_message(&err),
            request_id: None,
            class: ErrorClass::Fatal,
        },
    }
}

/// `None` for NotFound: a read of something that is not there (any more).
pub fn found<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`aws_error`] with the class taken from the SDK's typed error where the service models
/// one (`is_db_cluster_not_found_fault()`, `is_no_such_entity_exception()`, ...): the typed
/// check wins over the code table.
pub fn aws_error_typed<E>(
    operation: &'static str,
    resource: impl Into<String>,
    err: SdkError<E, HttpResponse>,
    typed: impl FnOnce(&E) -> Option<ErrorClass>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let class = err.as_service_error().and_then(typed);
    let mut error = aws_error(operation, resource, err);
    // A refusal of the table is told by its message too (a ConflictException that says
    // "concurrent modification" is not the name being taken): the table wins.
    let refused = refusal(operation, error.code.as_deref().unwrap_or(""), &error.message).is_some();
    if let Some(class) = class.filter(|_| !refused) {
        error.class = class;
    }
    error
}

/// How long a call is repeated while it answers that a resource it names does not exist
/// yet: reads lag writes on AWS (a subnet's `CreateSubnet` right after `CreateVpc` may meet
/// `InvalidVpcID.NotFound`). terraform-provider-aws tolerates this for its EC2
/// `ec2PropagationTimeout` (5 min) and IAM's `propagationTimeout` (2 min).
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// `INFRA_TIMEOUT_SCALE` multiplies every wait timeout and retry budget (the tests shorten
/// them to see a timeout's message; a user on a slow region may lengthen them).
pub fn scaled(d: Duration) -> Duration {
    match std::env::var("INFRA_TIMEOUT_SCALE").ok().and_then(|v| v.parse::<f64>().ok()) {
        Some(f) if f > 0.0 && f.is_finite() => d.mul_f64(f),
        _ => d,
    }
}

/// One refusal real AWS answers for a while and then stops answering: the operations it
/// comes from (empty: any), its code, a piece of its message (empty: any message), what
/// the engine does about it, and for how long.
pub struct Refusal {
    pub operations: &'static [&'static str],
    pub code: &'static str,
    pub message: &'static str,
    pub class: ErrorClass,
    pub budget_secs: u64,
}

const fn refused(operations: &'static [&'static str], code: &'static str, message: &'static str, class: ErrorClass, budget_secs: u64) -> Refusal {
    Refusal { operations, code, message, class, budget_secs }
}

use ErrorClass::{DependencyViolation as InUse, Transient as Later};

/// The transient refusals of `../shared/docs/REALAWS.md`, by code *and* message where the
/// code alone is ambiguous, each with the time terraform-provider-aws keeps retrying it.
/// Anything not listed keeps its class from the code table: a real failure fails at once.
pub const REFUSALS: &[Refusal] = &[
    // API Gateway: several changes to one REST API at once (TFP retries any ConflictException
    // saying "try again later" in the API Gateway client). Not "the name is taken".
    refused(&[], "ConflictException", "concurrent modification", Later, 5 * 60),
    refused(&[], "ConflictException", "try again later", Later, 5 * 60),
    // ECS: a target group whose listener is seconds old; the service-linked role or the
    // task role not yet propagated (TFP: propagation timeout + 2 min).
    refused(&["CreateService", "UpdateService"], "InvalidParameterException", "does not have an associated load balancer", Later, 4 * 60),
    refused(&["CreateService", "UpdateService"], "InvalidParameterException", "verify that the ECS service role", Later, 4 * 60),
    refused(&["CreateService", "UpdateService"], "InvalidParameterException", "Unable to assume the service linked role", Later, 4 * 60),
    // ECS delete: deployments still active, the cluster still holding draining services.
    refused(&["DeleteService"], "InvalidParameterException", "while deployments are active", InUse, 20 * 60),
    refused(&["DeleteCluster"], "ClusterContainsServicesException", "", InUse, 20 * 60),
    refused(&["DeleteCluster"], "ClusterContainsTasksException", "", InUse, 20 * 60),
    refused(&["DeleteCluster"], "ClusterContainsContainerInstancesException", "", InUse, 20 * 60),
    refused(&["DeleteCluster"], "UpdateInProgressException", "", InUse, 20 * 60),
    // Lambda: the execution role not yet assumable, an update of the function in progress
    // (TFP: lambdaPropagationTimeout, 15 min).
    refused(&[], "InvalidParameterValueException", "cannot be assumed by Lambda", Later, 15 * 60),
    refused(&[], "InvalidParameterValueException", "execution role does not have permissions", Later, 15 * 60),
    refused(&[], "InvalidParameterValueException", "throttled by EC2", Later, 15 * 60),
    refused(&[], "InvalidParameterValueException", "KMS key is invalid for CreateGrant", Later, 15 * 60),
    refused(&[], "ResourceConflictException", "update is in progress", Later, 15 * 60),
    refused(&[], "ResourceConflictException", "cannot be performed at this time", Later, 15 * 60),
    // IAM: a trust policy naming a principal that was just created (TFP: 2 min).
    refused(&["CreateRole", "UpdateAssumeRolePolicy"], "MalformedPolicyDocument", "Invalid principal", Later, 2 * 60),
    // Cognito: the SMS role not yet trusted; concurrent changes to a client (TFP: 2 min).
    refused(&[], "InvalidSmsRoleTrustRelationshipException", "", Later, 2 * 60),
    refused(&[], "InvalidSmsRoleAccessPolicyException", "", Later, 2 * 60),
    refused(&[], "ConcurrentModificationException", "", Later, 2 * 60),
    // S3: a bucket name deleted moments ago; CloudWatch Logs: a concurrent operation.
    refused(&[], "OperationAborted", "", Later, 10 * 60),
    refused(&[], "OperationAbortedException", "", Later, 60),
    // RDS: a role not yet usable; a cluster busy (creating, modifying, backing up) or still
    // holding an instance that is being deleted.
    refused(&[], "InvalidParameterValue", "IAM role ARN value is invalid", Later, 5 * 60),
    refused(&["CreateDBInstance", "ModifyDBCluster", "ModifyDBInstance"], "InvalidDBClusterStateFault", "", Later, 120 * 60),
    refused(&["CreateDBInstance", "ModifyDBInstance"], "InvalidDBInstanceState", "", Later, 120 * 60),
    refused(&["DeleteDBCluster"], "InvalidDBClusterStateFault", "", InUse, 120 * 60),
    refused(&["DeleteDBSubnetGroup"], "InvalidDBSubnetGroupStateFault", "", InUse, 20 * 60),
    // RDS cannot see subnets made seconds ago ("Some input subnets ... are invalid").
    refused(&["CreateDBSubnetGroup", "ModifyDBSubnetGroup"], "InvalidSubnet", "", Later, 5 * 60),
    // EC2: an address still associated while its NAT gateway is deleting (AuthFailure is
    // what some accounts answer there, and only there is it not about credentials); a
    // group still attached to an interface; a route's target not visible yet.
    refused(&["ReleaseAddress"], "AuthFailure", "", InUse, 20 * 60),
    refused(&["ReleaseAddress", "DisassociateAddress"], "InvalidIPAddress.InUse", "", InUse, 20 * 60),
    refused(&["DeleteSecurityGroup"], "InvalidGroup.InUse", "", InUse, 60 * 60),
    refused(&["CreateRoute", "ReplaceRoute"], "InvalidParameterException", "", Later, 5 * 60),
    refused(&["CreateRoute", "ReplaceRoute"], "InvalidTransitGatewayID.NotFound", "", Later, 5 * 60),
];

/// The row of [`REFUSALS`] an error matches, if any.
pub fn refusal(operation: &str, code: &str, message: &str) -> Option<&'static Refusal> {
    REFUSALS.iter().find(|r| {
        r.code == code && (r.operations.is_empty() || r.operations.contains(&operation)) && (r.message.is_empty() || contains_ignore_case(message, r.message))
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_ascii_lowercase().contains(&needle.to_ascii_lowercase())
}

/// The innermost cause of a transport failure, on one line ("connection refused"), never
/// the error's `Debug` form.
fn transport_message<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    let kind = match err {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "request failed",
        SdkError::ResponseError(_) => "response could not be read",
        SdkError::ConstructionFailure(_) => "request could not be built",
        _ => "failed",
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut innermost = None;
    while let Some(e) = source {
        innermost = Some(e.to_string());
        source = e.source();
    }
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

/// Throttling: the request was refused before any work was done, so repeating it is safe.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
];

/// The one table of error codes that decide what the engine does, for the services whose
/// SDK has no typed error for them (EC2's query protocol models none).
const CODE_CLASSES: &[(&str, ErrorClass)] = &[
    // Gone: a delete is done, a read says None.
    ("InvalidAllocationID.NotFound", ErrorClass::NotFound),
    ("InvalidAssociationID.NotFound", ErrorClass::NotFound),
    ("InvalidRoute.NotFound", ErrorClass::NotFound),
    ("InvalidPermission.NotFound", ErrorClass::NotFound),
    ("NatGatewayNotFound", ErrorClass::NotFound),
    ("NoSuchEntity", ErrorClass::NotFound),
    ("NoSuchBucket", ErrorClass::NotFound),
    // Something still uses it: wait, then delete again.
    ("DependencyViolation", ErrorClass::DependencyViolation),
    ("InvalidIPAddress.InUse", ErrorClass::DependencyViolation),
    ("InvalidNetworkInterface.InUse", ErrorClass::DependencyViolation),
    ("ResourceInUse", ErrorClass::DependencyViolation),
    ("DeleteConflict", ErrorClass::DependencyViolation),
    // What a repeat of our own create meets: look it up and verify it is ours.
    ("InvalidSubnet.Conflict", ErrorClass::AlreadyExists),
    ("InvalidGroup.Duplicate", ErrorClass::AlreadyExists),
    ("InvalidPermission.Duplicate", ErrorClass::AlreadyExists),
    ("Resource.AlreadyAssociated", ErrorClass::AlreadyExists),
    ("RouteAlreadyExists", ErrorClass::AlreadyExists),
    ("InvalidVpcID.Conflict", ErrorClass::AlreadyExists),
    // AWS failed, maybe after doing the work.
    ("InternalError", ErrorClass::Retryable),
    ("InternalFailure", ErrorClass::Retryable),
    ("ServiceUnavailable", ErrorClass::Retryable),
    ("Unavailable", ErrorClass::Retryable),
];

pub fn classify(code: &str, http_status: u16) -> ErrorClass {
    if let Some((_, class)) = CODE_CLASSES.iter().find(|(c, _)| *c == code) {
        return *class;
    }
    if THROTTLING_CODES.contains(&code) {
        ErrorClass::Retryable
    } else if code.ends_with(".NotFound") || code.ends_with("NotFound") || code.ends_with("NotFoundException") || code.ends_with("NotFoundFault") {
        ErrorClass::NotFound
    } else if code.ends_with(".Duplicate")
        || code.ends_with("AlreadyExists")
        || code.ends_with("AlreadyExistsException")
        || code.ends_with("AlreadyExistsFault")
    {
        ErrorClass::AlreadyExists
    } else if http_status >= 500 {
        ErrorClass::Retryable
    } else {
        // AccessDenied, UnauthorizedOperation and everything unknown: never "missing".
        ErrorClass::Fatal
    }
}

/// A retry classifier for creates whose repeat would make a second resource: throttling is
/// left to the SDK's retry (nothing was done), every other failure — a 5xx, a timeout, a
/// dropped connection, after which AWS may have done the work — is returned to the engine,
/// which looks the resource up by its tags or key before it tries again.
pub struct NoBlindRetry<E>(PhantomData<fn() -> E>);

impl<E> fmt::Debug for NoBlindRetry<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoBlindRetry")
    }
}

impl<E> ClassifyRetry for NoBlindRetry<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else { return RetryAction::NoActionIndicated };
        let code = err.as_operation_error().and_then(|e| e.downcast_ref::<E>()).and_then(|e| e.code());
        if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
            RetryAction::NoActionIndicated
        } else {
            RetryAction::RetryForbidden
        }
    }

    fn name(&self) -> &'static str {
        "infra-no-blind-retry"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// `.customize().no_blind_retry()` on a create call: see [`NoBlindRetry`].
pub trait SendOnce {
    fn no_blind_retry(self) -> Self;
}

macro_rules! send_once_for {
    ($($sdk:ident),*) => {$(
        impl<T, E, B> SendOnce for $sdk::client::customize::CustomizableOperation<T, E, B>
        where
            E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        {
            fn no_blind_retry(self) -> Self {
                self.config_override($sdk::config::Builder::default().retry_classifier(NoBlindRetry::<E>(PhantomData)))
            }
        }
    )*};
}

send_once_for!(
    aws_sdk_ec2,
    aws_sdk_ssm,
    aws_sdk_iam,
    aws_sdk_cloudwatchlogs,
    aws_sdk_rds,
    aws_sdk_ecr,
    aws_sdk_ecs,
    aws_sdk_elasticloadbalancingv2,
    aws_sdk_apigateway,
    aws_sdk_cognitoidentityprovider,
    aws_sdk_lambda,
    aws_sdk_s3
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert_eq!(classify("InvalidVpcID.NotFound", 400), ErrorClass::NotFound);
        assert_eq!(classify("InvalidRouteTableID.NotFound", 400), ErrorClass::NotFound);
        // The edge tier relies on these (no typed check of its own).
        assert_eq!(classify("ResourceNotFoundException", 400), ErrorClass::NotFound);
        assert_eq!(classify("NotFoundException", 404), ErrorClass::NotFound);
        assert_eq!(classify("DependencyViolation", 400), ErrorClass::DependencyViolation);
        assert_eq!(classify("InvalidIPAddress.InUse", 400), ErrorClass::DependencyViolation);
        assert_eq!(classify("UnauthorizedOperation", 403), ErrorClass::Fatal);
        assert_eq!(classify("AccessDenied", 403), ErrorClass::Fatal);
        assert_eq!(classify("RequestLimitExceeded", 503), ErrorClass::Retryable);
        assert_eq!(classify("InternalError", 500), ErrorClass::Retryable);
        assert_eq!(classify("SomethingNew", 502), ErrorClass::Retryable);
        assert_eq!(classify("InvalidPermission.Duplicate", 400), ErrorClass::AlreadyExists);
        assert_eq!(classify("Resource.AlreadyAssociated", 400), ErrorClass::AlreadyExists);
    }

    #[test]
    fn refusals_are_told_by_code_and_message() {
        let class = |op: &str, code: &str, message: &str| refusal(op, code, message).map(|r| r.class);
        // API Gateway's 409: a concurrent change is retried, a taken name is not a refusal.
        let busy = "Unable to complete operation due to concurrent modification. Please try again later.";
        assert_eq!(class("CreateResource", "ConflictException", busy), Some(ErrorClass::Transient));
        assert_eq!(class("CreateResource", "ConflictException", "Another resource with the same parent already has this name: book"), None);
        // ECS's "no load balancer yet" only from CreateService / UpdateService.
        let no_lb = "The target group with targetGroupArn arn:aws:elasticloadbalancing:x does not have an associated load balancer.";
        assert_eq!(class("CreateService", "InvalidParameterException", no_lb), Some(ErrorClass::Transient));
        assert_eq!(class("CreateService", "InvalidParameterException", "Invalid launch type"), None);
        assert_eq!(class("CreateFunction", "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda."), Some(ErrorClass::Transient));
        assert_eq!(class("CreateFunction", "InvalidParameterValueException", "Unsupported runtime"), None);
        // AuthFailure is a refusal on ReleaseAddress only: elsewhere it is about credentials.
        assert_eq!(class("ReleaseAddress", "AuthFailure", ""), Some(ErrorClass::DependencyViolation));
        assert_eq!(class("DescribeVpcs", "AuthFailure", ""), None);
        assert_eq!(class("DeleteDBCluster", "InvalidDBClusterStateFault", "is not currently in the available state"), Some(ErrorClass::DependencyViolation));
        assert_eq!(class("CreateRole", "MalformedPolicyDocument", "Invalid principal in policy: \"SERVICE\":\"x\""), Some(ErrorClass::Transient));
        assert_eq!(class("CreateRole", "MalformedPolicyDocument", "Syntax errors in policy."), None);
    }

    #[test]
    fn operation_names_split_into_reads_and_writes() {
        assert!(!is_mutating("DescribeVpcs"));
        assert!(!is_mutating("GetRestApi"));
        assert!(is_mutating("CreateVpc"));
        assert!(is_mutating("AuthorizeSecurityGroupIngress"));
    }

    #[test]
    fn bucket_allows_burst_then_spaces_calls() {
        let start = Instant::now();
        let mut b = Bucket::new(2.0, 4.0);
        b.last = start;
        assert_eq!(b.take(start), Duration::ZERO);
        assert_eq!(b.take(start), Duration::ZERO);
        assert_eq!(b.take(start), Duration::from_millis(250));
        // Half a second later the debt is repaid and one token has accrued.
        assert_eq!(b.take(start + Duration::from_millis(500)), Duration::ZERO);
    }
}
