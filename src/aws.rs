//! One `SdkConfig` → the service clients, with the retry policy, the per-service rate
//! limits and the call recorder that every AWS request passes through.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use tokio::sync::Mutex as AsyncMutex;

/// The clients of one run, all sharing one recorder and one set of rate limits.
#[derive(Clone)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub recorder: Arc<Recorder>,
    pub limits: Arc<RateLimits>,
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
            // control plane throttles hard.
            .retry_config(RetryConfig::standard().with_max_attempts(8).with_initial_backoff(Duration::from_millis(200)));
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| anyhow::anyhow!("no AWS region: set `region` in infra.toml or AWS_REGION"))?;
        let recorder = Arc::new(Recorder::from_env());
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&sdk).interceptor(RecordingInterceptor(recorder.clone())).build(),
        );
        Ok(Aws { ec2, recorder, limits: Arc::new(RateLimits::aws_defaults()), region, sdk })
    }

    /// The state backend's own S3 client. A client of its own has its own connection pool,
    /// so state calls, which run on the backend's runtime, never ride a connection driven
    /// by the engine's. It bypasses the recorder: state calls are not stack calls (the
    /// store counts its writes) and must not trip the fault-injection kill counts.
    pub fn state_s3_client(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk)
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
    const READ_PREFIXES: [&str; 4] = ["Describe", "Get", "List", "Lookup"];
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
    /// Mirrors AWS's documented buckets: EC2's non-mutating bucket holds 100 tokens and
    /// refills 20 per second (its mutating one is larger and slower, 200 at 5/s); API
    /// Gateway's control plane allows about 5 calls per second with bursts of 10.
    pub fn aws_defaults() -> RateLimits {
        let mut buckets = HashMap::new();
        buckets.insert("ec2", AsyncMutex::new(Bucket::new(100.0, 20.0)));
        buckets.insert("apigateway", AsyncMutex::new(Bucket::new(10.0, 5.0)));
        // S3 allows 3,500 writes and 5,500 reads per second per prefix.
        buckets.insert("s3", AsyncMutex::new(Bucket::new(350.0, 3500.0)));
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

/// How the engine should react to an AWS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    DependencyViolation,
    Retryable,
    Timeout,
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

    pub fn timeout(operation: &'static str, resource: impl Into<String>, message: String) -> AwsError {
        AwsError { operation, resource: resource.into(), code: None, message, request_id: None, class: ErrorClass::Timeout }
    }
}

/// Classifies an SDK error. EC2 does not model its error shapes, so the code string from
/// the error metadata is the typed information there is.
pub fn aws_error<E, R>(operation: &'static str, resource: impl Into<String>, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    let resource = resource.into();
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().map(str::to_string);
            let class = classify_code(code.as_deref().unwrap_or(""));
            AwsError {
                operation,
                resource,
                message: e.message().unwrap_or("(no message)").to_string(),
                request_id: e.meta().extra("aws_request_id").or_else(|| e.meta().extra("request_id")).map(str::to_string),
                code,
                class,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => AwsError {
            operation,
            resource,
            code: None,
            message: format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&err)),
            request_id: None,
            class: ErrorClass::Retryable,
        },
        _ => AwsError {
            operation,
            resource,
            code: None,
            message: format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&err)),
            request_id: None,
            class: ErrorClass::Fatal,
        },
    }
}

pub fn classify_code(code: &str) -> ErrorClass {
    if code.ends_with(".NotFound")
        || code.ends_with("NotFound")
        || code.ends_with("NotFoundException")
        || code == "NoSuchEntity"
        || code == "NoSuchBucket"
        || code == "InvalidAllocationID.NotFound"
    {
        ErrorClass::NotFound
    } else if code == "DependencyViolation" || code == "ResourceInUse" || code == "InvalidNetworkInterface.InUse" {
        ErrorClass::DependencyViolation
    } else if code.contains("Throttl") || code == "RequestLimitExceeded" || code == "TooManyRequestsException" {
        ErrorClass::Retryable
    } else {
        // AccessDenied, UnauthorizedOperation and everything unknown: never "missing".
        ErrorClass::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert_eq!(classify_code("InvalidVpcID.NotFound"), ErrorClass::NotFound);
        assert_eq!(classify_code("InvalidRouteTableID.NotFound"), ErrorClass::NotFound);
        assert_eq!(classify_code("DependencyViolation"), ErrorClass::DependencyViolation);
        assert_eq!(classify_code("UnauthorizedOperation"), ErrorClass::Fatal);
        assert_eq!(classify_code("AccessDenied"), ErrorClass::Fatal);
        assert_eq!(classify_code("RequestLimitExceeded"), ErrorClass::Retryable);
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
