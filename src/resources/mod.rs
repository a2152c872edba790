//! The resource contract and the dispatch over kinds.
//!
//! Each kind implements [`Resource`] on its typed `Spec` with a typed `Observed`; the engine
//! drives every kind through the type-erased [`DynResource`], so the diff of a kind is
//! checked by the compiler while the executor stays generic.

pub mod apigateway;
pub mod compute;
pub mod database;
pub mod functions;
pub mod iam;
pub mod identity;
pub mod load_balancer;
pub mod logs;
pub mod network;
pub mod secrets;
pub mod storage;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::aws::{Aws, AwsError, ErrorClass};

/// Everything a resource verb needs: the clients and the stack it belongs to.
#[derive(Clone)]
pub struct Ctx {
    pub aws: Aws,
    pub stack: String,
}

/// One accessor per service: the client, after waiting for a token of that service's rate
/// limit. Call once per request.
macro_rules! service_clients {
    ($($name:ident: $client:ty => $bucket:literal,)*) => {
        impl Ctx {
            $(pub async fn $name(&self) -> &$client {
                self.aws.limits.acquire($bucket).await;
                &self.aws.$name
            })*
        }
    };
}

service_clients! {
    ec2: aws_sdk_ec2::Client => "ec2",
    ssm: aws_sdk_ssm::Client => "ssm",
    iam: aws_sdk_iam::Client => "iam",
    logs: aws_sdk_cloudwatchlogs::Client => "logs",
    rds: aws_sdk_rds::Client => "rds",
    ecr: aws_sdk_ecr::Client => "ecr",
    ecs: aws_sdk_ecs::Client => "ecs",
    elb: aws_sdk_elasticloadbalancingv2::Client => "elasticloadbalancing",
    apigateway: aws_sdk_apigateway::Client => "apigateway",
    cognito: aws_sdk_cognitoidentityprovider::Client => "cognito",
    lambda: aws_sdk_lambda::Client => "lambda",
    s3: aws_sdk_s3::Client => "s3",
    sts: aws_sdk_sts::Client => "sts",
}

/// The tags every resource carries, set at create time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTags {
    pub stack: String,
    pub logical_id: String,
}

pub const TAG_STACK: &str = "infra:stack";
pub const TAG_ID: &str = "infra:id";

impl StackTags {
    pub fn new(stack: &str, logical_id: &str) -> StackTags {
        StackTags { stack: stack.to_string(), logical_id: logical_id.to_string() }
    }

    /// `Name` as the console shows it: `<stack>-<logical id with dots as dashes>`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.stack, self.logical_id.replace('.', "-"))
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![(TAG_STACK, self.stack.clone()), (TAG_ID, self.logical_id.clone()), ("Name", self.name())]
    }

    /// The tags among ours that `found` lacks or holds with another value.
    pub fn diff(&self, found: &BTreeMap<String, String>) -> Vec<FieldChange> {
        self.pairs()
            .into_iter()
            .filter(|(k, v)| found.get(*k) != Some(v))
            .map(|(k, v)| FieldChange {
                field: format!("tags.{k}"),
                wanted: v,
                found: found.get(k).cloned().unwrap_or_else(|| "(absent)".into()),
            })
            .collect()
    }
}

/// One field that differs between the desired spec and what AWS holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    pub field: String,
    pub wanted: String,
    pub found: String,
}

impl FieldChange {
    pub fn new(field: &str, wanted: impl fmt::Display, found: impl fmt::Display) -> FieldChange {
        FieldChange { field: field.to_string(), wanted: wanted.to_string(), found: found.to_string() }
    }
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: wanted {}, found {}", self.field, self.wanted, self.found)
    }
}

/// What converging one resource takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff {
    NoChange,
    /// Fields `update` can change in place.
    Update(Vec<FieldChange>),
    /// A field AWS cannot change in place; the resource must be recreated.
    Replace(Vec<FieldChange>),
}

impl Diff {
    /// Builds the diff from in-place changes and changes that force a replacement.
    pub fn from_changes(update: Vec<FieldChange>, replace: Vec<FieldChange>) -> Diff {
        if !replace.is_empty() {
            Diff::Replace(replace.into_iter().chain(update).collect())
        } else if !update.is_empty() {
            Diff::Update(update)
        } else {
            Diff::NoChange
        }
    }

}

/// Compares one field, pushing a change when it differs.
pub fn compare<T: PartialEq + fmt::Display>(changes: &mut Vec<FieldChange>, field: &str, wanted: &T, found: &T) {
    if wanted != found {
        changes.push(FieldChange::new(field, wanted, found));
    }
}

/// The verbs of one kind. `find` returns `None` only for a resource that is gone; an
/// access error stays an error.
pub trait Resource: Send + Sync + 'static {
    type Observed: Send + Sync + fmt::Debug + 'static;

    /// Reads the resource by physical id.
    fn find(&self, ctx: &Ctx, id: &str) -> impl Future<Output = Result<Option<Self::Observed>, AwsError>> + Send;

    /// Looks for an existing resource that is this one (by the stack's tags, or by a
    /// deterministic key for untaggable kinds), so a crash between create and state
    /// write, or a lost state file, never makes a duplicate.
    fn adopt(&self, ctx: &Ctx, logical_id: &str) -> impl Future<Output = Result<Vec<Self::Observed>, AwsError>> + Send;

    fn diff(&self, observed: &Self::Observed) -> Diff;

    /// Creates the resource and returns its physical id at once, before any waiting.
    fn create(&self, ctx: &Ctx, logical_id: &str, token: &str) -> impl Future<Output = Result<String, AwsError>> + Send;

    /// Waits until a freshly created resource can be used by its dependants.
    fn await_ready(&self, _ctx: &Ctx, _id: &str) -> impl Future<Output = Result<(), AwsError>> + Send {
        async { Ok(()) }
    }

    /// Applies in-place changes; returns a new physical id where AWS issues one.
    fn update(
        &self,
        ctx: &Ctx,
        logical_id: &str,
        observed: &Self::Observed,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;

    fn physical_id(observed: &Self::Observed) -> String;

    /// A key whose changes AWS takes one at a time: creates and updates of resources that
    /// share it wait for each other's turn (the REST API of API Gateway's paths, methods,
    /// authorizer, deployment and stage). `None`: no such limit.
    fn serial_key(&self) -> Option<String> {
        None
    }

    /// Non-secret attributes worth keeping in state (and showing in `outputs`).
    fn attributes(_observed: &Self::Observed) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Where the resource is in its life. Kinds that AWS creates or deletes slowly (NAT
    /// gateways, databases) say so, and the engine waits instead of using or replacing them.
    fn lifecycle(_observed: &Self::Observed) -> Lifecycle {
        Lifecycle::Ready
    }

    // The kind-level verbs: what `down`, the tag scan and the batched first read need with
    // only a kind and physical ids in hand (`down` cannot always build a spec).

    /// Whether resources of this kind carry the stack's tags (and so show in `inventory`).
    const TAGGABLE: bool = true;

    /// Whether a resource found by `adopt` without the stack's tags is still this one (a
    /// parameter the user made, named in the config). For other kinds only tags count.
    const ADOPTS_UNTAGGED: bool = false;

    /// What `up` does when a change cannot be made in place.
    const REPLACEMENT: Replacement = Replacement::Refuse("infra does not replace this kind in place");

    /// Kinds whose resources must be gone before one of this kind is deleted, whatever
    /// their logical ids: AWS's hidden dependencies, each with the error it prevents.
    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[];

    /// The same edges seen from the other side: kinds whose resources may be deleted only
    /// once every resource of this kind is gone (an ECS service before its target group and
    /// security groups). Declared where the new kind lives, so older files stay untouched.
    const DELETE_BEFORE: &'static [(Kind, &'static str)] = &[];

    /// The kind of the parent whose deletion takes resources of this kind with it (a REST
    /// API's methods and stages, a user pool's clients, a function's permissions). Their
    /// physical ids start with the parent's and a `/`. When `down` deletes the parent too,
    /// they are not deleted one by one: API Gateway's control plane allows a few calls per
    /// second, and the parent's delete removes them all at once.
    const DELETED_WITH: Option<Kind> = None;

    /// Reads many resources of this kind at once (one call for most kinds); those that are
    /// gone are absent from the result.
    fn find_many(ctx: &Ctx, ids: &[String]) -> impl Future<Output = Result<Vec<Self::Observed>, AwsError>> + Send;

    /// Every live resource of this kind carrying the stack's tag.
    fn inventory(_ctx: &Ctx) -> impl Future<Output = Result<Vec<Self::Observed>, AwsError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The tags AWS holds for an observation (for the logical id `infra:id` names).
    fn tags(_observed: &Self::Observed) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Deletes by physical id and waits until the resource is really gone. `recorded` holds
    /// the attributes saved in state at create time (settings that must govern the delete
    /// whatever the config says later). NotFound may be returned: it counts as done.
    fn delete(ctx: &Ctx, id: &str, recorded: &BTreeMap<String, String>) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Implemented by the registry for every spec type: the kind a node of that spec is.
pub trait Registered: Resource {
    const KIND: Kind;
}

/// How a kind is replaced when a field AWS cannot change in place differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// Create the new resource, let its dependants move to it, then delete the old one
    /// (a task definition revision, a target group, a DB subnet group).
    CreateThenDelete,
    /// Refuse, saying why (replacing it would destroy data or cut every dependant off).
    Refuse(&'static str),
}

/// A resource that exists may not be usable yet, or may be on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Ready,
    /// Still being created (e.g. a NAT gateway `pending`): dependants must wait.
    Settling(String),
    /// Being deleted (e.g. `deleting`): nothing may be created in its place until it is gone.
    Deleting(String),
}

/// A type-erased observation: the kind's `Observed` plus what the engine reads of it.
pub struct Observed {
    pub physical_id: String,
    pub attributes: BTreeMap<String, String>,
    pub lifecycle: Lifecycle,
    inner: Box<dyn std::any::Any + Send + Sync>,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observed({})", self.physical_id)
    }
}

/// The object-safe face of [`Resource`] that the engine uses.
pub trait DynResource: Send + Sync {
    fn find<'a>(&'a self, ctx: &'a Ctx, id: &'a str) -> BoxFuture<'a, Result<Option<Observed>, AwsError>>;
    fn adopt<'a>(&'a self, ctx: &'a Ctx, logical_id: &'a str) -> BoxFuture<'a, Result<Vec<Observed>, AwsError>>;
    fn diff(&self, observed: &Observed) -> Diff;
    fn replacement(&self) -> Replacement;
    fn serial_key(&self) -> Option<String>;
    fn create<'a>(&'a self, ctx: &'a Ctx, logical_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<String, AwsError>>;
    fn await_ready<'a>(&'a self, ctx: &'a Ctx, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
    fn update<'a>(
        &'a self,
        ctx: &'a Ctx,
        logical_id: &'a str,
        observed: &'a Observed,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>>;
}

fn erase<R: Resource>(o: R::Observed) -> Observed {
    Observed { physical_id: R::physical_id(&o), attributes: R::attributes(&o), lifecycle: R::lifecycle(&o), inner: Box::new(o) }
}

fn unerase<R: Resource>(o: &Observed) -> &R::Observed {
    o.inner.downcast_ref().expect("observation handed to the resource kind that made it")
}

impl<R: Resource> DynResource for R {
    fn find<'a>(&'a self, ctx: &'a Ctx, id: &'a str) -> BoxFuture<'a, Result<Option<Observed>, AwsError>> {
        async move { Ok(Resource::find(self, ctx, id).await?.map(erase::<R>)) }.boxed()
    }
    fn adopt<'a>(&'a self, ctx: &'a Ctx, logical_id: &'a str) -> BoxFuture<'a, Result<Vec<Observed>, AwsError>> {
        async move { Ok(Resource::adopt(self, ctx, logical_id).await?.into_iter().map(erase::<R>).collect()) }.boxed()
    }
    fn diff(&self, observed: &Observed) -> Diff {
        Resource::diff(self, unerase::<R>(observed))
    }
    fn replacement(&self) -> Replacement {
        R::REPLACEMENT
    }
    fn serial_key(&self) -> Option<String> {
        Resource::serial_key(self)
    }
    fn create<'a>(&'a self, ctx: &'a Ctx, logical_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<String, AwsError>> {
        Resource::create(self, ctx, logical_id, token).boxed()
    }
    fn await_ready<'a>(&'a self, ctx: &'a Ctx, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        Resource::await_ready(self, ctx, id).boxed()
    }
    fn update<'a>(
        &'a self,
        ctx: &'a Ctx,
        logical_id: &'a str,
        observed: &'a Observed,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Resource::update(self, ctx, logical_id, unerase::<R>(observed)).boxed()
    }
}

fn tagged<R: Resource>(found: Vec<R::Observed>) -> Vec<(String, Observed)> {
    found
        .into_iter()
        .map(|o| {
            let logical = R::tags(&o).and_then(|t| t.get(TAG_ID).cloned()).unwrap_or_else(|| "(untagged)".into());
            (logical, erase::<R>(o))
        })
        .collect()
}

/// Generates [`Kind`] and its dispatch from one line per kind: `Variant = "name" => Spec`.
/// Everything else about a kind lives in its own file, on its `Resource` impl.
macro_rules! registry {
    ($($variant:ident = $name:literal => $spec:ty,)*) => {
        /// Every kind `infra` manages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant,)*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// Whether resources of this kind carry the stack's tags (and so show in `inventory`).
            pub fn is_taggable(self) -> bool {
                match self {
                    $(Kind::$variant => <$spec as Resource>::TAGGABLE,)*
                }
            }

            /// Kinds that must be gone before one of this kind is deleted, with the reason.
            pub fn delete_after(self) -> &'static [(Kind, &'static str)] {
                match self {
                    $(Kind::$variant => <$spec as Resource>::DELETE_AFTER,)*
                }
            }

            /// The parent kind whose deletion removes resources of this kind (see `DELETED_WITH`).
            pub fn deleted_with(self) -> Option<Kind> {
                match self {
                    $(Kind::$variant => <$spec as Resource>::DELETED_WITH,)*
                }
            }

            /// Whether `adopt` may return resources without the stack's tags.
            pub fn adopts_untagged(self) -> bool {
                match self {
                    $(Kind::$variant => <$spec as Resource>::ADOPTS_UNTAGGED,)*
                }
            }

            /// Kinds that may be deleted only once this kind's resources are gone.
            pub fn delete_before(self) -> &'static [(Kind, &'static str)] {
                match self {
                    $(Kind::$variant => <$spec as Resource>::DELETE_BEFORE,)*
                }
            }

            async fn delete_by_kind(self, ctx: &Ctx, id: &str, recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
                match self {
                    $(Kind::$variant => <$spec as Resource>::delete(ctx, id, recorded).await,)*
                }
            }

            /// Reads many resources of this kind at once; those that are gone are absent.
            pub async fn find_many(self, ctx: &Ctx, ids: &[String]) -> Result<Vec<Observed>, AwsError> {
                match self {
                    $(Kind::$variant => Ok(<$spec as Resource>::find_many(ctx, ids).await?.into_iter().map(erase::<$spec>).collect()),)*
                }
            }

            /// Every live resource of this kind carrying the stack's tag, with the logical id
            /// its tag names. Untaggable kinds (routes, associations) go with their parent.
            pub async fn inventory(self, ctx: &Ctx) -> Result<Vec<(String, Observed)>, AwsError> {
                match self {
                    $(Kind::$variant => Ok(tagged::<$spec>(<$spec as Resource>::inventory(ctx).await?)),)*
                }
            }
        }

        $(impl Registered for $spec {
            const KIND: Kind = Kind::$variant;
        })*
    };
}

// The registry: one line per kind.
registry! {
    Vpc = "vpc" => network::vpc::VpcSpec,
    InternetGateway = "internet_gateway" => network::internet_gateway::InternetGatewaySpec,
    Subnet = "subnet" => network::subnet::SubnetSpec,
    ElasticIp = "elastic_ip" => network::elastic_ip::ElasticIpSpec,
    NatGateway = "nat_gateway" => network::nat_gateway::NatGatewaySpec,
    RouteTable = "route_table" => network::route_table::RouteTableSpec,
    Route = "route" => network::route::RouteSpec,
    RouteTableAssociation = "route_table_association" => network::route_table_association::RouteTableAssociationSpec,
    SecurityGroup = "security_group" => network::security_group::SecurityGroupSpec,
    SsmParameter = "ssm_parameter" => secrets::ssm_parameter::SsmParameterSpec,
    IamRole = "iam_role" => iam::role::RoleSpec,
    LogGroup = "log_group" => logs::log_group::LogGroupSpec,
    DbSubnetGroup = "db_subnet_group" => database::db_subnet_group::DbSubnetGroupSpec,
    DbCluster = "db_cluster" => database::db_cluster::DbClusterSpec,
    DbInstance = "db_instance" => database::db_instance::DbInstanceSpec,
    EcrRepository = "ecr_repository" => compute::ecr_repository::EcrRepositorySpec,
    Image = "image" => compute::image::ImageSpec,
    EcsCluster = "ecs_cluster" => compute::ecs_cluster::EcsClusterSpec,
    TaskDefinition = "task_definition" => compute::task_definition::TaskDefinitionSpec,
    EcsService = "ecs_service" => compute::ecs_service::EcsServiceSpec,
    LoadBalancer = "load_balancer" => load_balancer::load_balancer::LoadBalancerSpec,
    TargetGroup = "target_group" => load_balancer::target_group::TargetGroupSpec,
    Listener = "listener" => load_balancer::listener::ListenerSpec,
    UserPool = "user_pool" => identity::user_pool::UserPoolSpec,
    UserPoolClient = "user_pool_client" => identity::user_pool_client::UserPoolClientSpec,
    Bucket = "bucket" => storage::bucket::BucketSpec,
    LambdaFunction = "lambda_function" => functions::function::FunctionSpec,
    LambdaPermission = "lambda_permission" => functions::permission::PermissionSpec,
    RestApi = "rest_api" => apigateway::rest_api::RestApiSpec,
    ApiResource = "api_resource" => apigateway::resource::ApiResourceSpec,
    ApiAuthorizer = "api_authorizer" => apigateway::authorizer::AuthorizerSpec,
    ApiMethod = "api_method" => apigateway::method::MethodSpec,
    ApiDeployment = "api_deployment" => apigateway::deployment::DeploymentSpec,
    ApiStage = "api_stage" => apigateway::stage::StageSpec,
    VpcLink = "vpc_link" => apigateway::vpc_link::VpcLinkSpec,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Deletes by physical id and waits until the resource is really gone.
    /// NotFound is success: the resource is already gone.
    pub async fn delete(self, ctx: &Ctx, id: &str, recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        match self.delete_by_kind(ctx, id, recorded).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Polls `check` until it yields a value or `timeout` passes; the error says what was
/// awaited and the last state seen. Each state AWS answers is reported to the progress
/// display with the time waited.
///
/// A read that AWS refuses for now or that fails without an answer does not end the wait:
/// it is a state like another, until the timeout. Other errors end it — NotFound too,
/// which a wait for a deletion counts as done (a wait for a create maps its own "not yet
/// visible" to `Poll::Pending`).
pub async fn wait_until<T, F, Fut>(what: &str, operation: &'static str, timeout: Duration, mut check: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, AwsError>>,
{
    let timeout = crate::aws::scaled(timeout);
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(Poll::Ready(v)) => return Ok(v),
            Ok(Poll::Pending(last)) => last,
            Err(e) if matches!(e.class, ErrorClass::Retryable | ErrorClass::Transient) => match &e.code {
                Some(code) => format!("{} answered {code}", e.operation),
                None => format!("{}: {}", e.operation, e.message),
            },
            Err(e) => return Err(e),
        };
        crate::progress::waiting(&last, start);
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(AwsError::timeout(
                operation,
                what.to_string(),
                format!("waiting for {what}: timed out after {} (last state: {last})", humantime::format_duration(timeout)),
            ));
        }
        tokio::time::sleep(poll_interval(waited).min(timeout - waited)).await;
    }
}

/// How long to wait before the next poll, `waited` into a wait. In the first minute a
/// tenth of the time waited so far, at least 250 ms and at most 2 s — brisk, for the many
/// states that last seconds, which a wait then overshoots by ~10 % at most. After it, a
/// twentieth, at least 10 s and at most 30 s: a minutes-long state (an Aurora writer) is
/// overshot by under 7 % and costs about 90 reads in ten minutes, not the thousands a fixed
/// brisk poll would.
pub fn poll_interval(waited: Duration) -> Duration {
    if waited < Duration::from_secs(60) {
        (waited / 10).clamp(Duration::from_millis(250), Duration::from_secs(2))
    } else {
        (waited / 20).clamp(Duration::from_secs(10), Duration::from_secs(30))
    }
}

/// One poll of a wait: done, or still pending in the named state.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_briskly_first_then_at_most_every_ten_seconds() {
        let at = |s: f64| poll_interval(Duration::from_secs_f64(s));
        assert_eq!(at(0.0), Duration::from_millis(250));
        assert_eq!(at(5.0), Duration::from_millis(500));
        assert_eq!(at(59.0), Duration::from_secs(2));
        assert_eq!(at(60.0), Duration::from_secs(10));
        assert_eq!(at(150.0), Duration::from_secs(10));
        assert_eq!(at(400.0), Duration::from_secs(20));
        assert_eq!(at(3000.0), Duration::from_secs(30));
        // A ten-minute wait: tens of polls, not hundreds.
        let (mut t, mut polls) = (0.0, 0);
        while t < 600.0 {
            t += at(t).as_secs_f64();
            polls += 1;
        }
        assert!((40..=95).contains(&polls), "{polls} polls in ten minutes");
    }
}
