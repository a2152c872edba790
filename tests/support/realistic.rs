//! The realistic-AWS profile of the test proxy: what real AWS does that moto does not
//! (`../shared/docs/REALAWS.md`), reproduced in front of moto with durations scaled down.
//!
//! The proxy reuses the fault proxy's plumbing (one request read whole, its operation and
//! protocol named, forwarded to moto on a fresh connection). It remembers what it saw
//! created and deleted (ids parsed from moto's answers, with the instant), and then
//! - rewrites the state fields of describe answers while a resource is still settling
//!   (`pending`, `creating`, `provisioning`, `PENDING`, `IN_PROGRESS`, `DRAINING`, ...), and
//!   shows a deleted resource as `deleting` for as long as AWS would, and
//! - answers the catalog's transient errors (eventual consistency, in use, conflicts,
//!   quotas) in each protocol's own error format, with AWS's code and message, for as long
//!   as the catalog says they last.
//!
//! Every behaviour is one [`Behaviour`]; a [`Profile`] enables any set of them with one
//! scale factor over the catalog's typical durations ([`Durations`]). What fired is counted
//! per behaviour, so a test can assert that the behaviour it is about really happened.
//! Its own timers are the simulated AWS: nothing here synchronises a test.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fault_proxy::{forward, read_request, respond, Protocol, Request};

/// One behaviour of real AWS, named after its REALAWS.md row ("kind | operation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// "NatGateway | create": `pending` → `available` (typically 1-3 min).
    NatGatewayPending,
    /// "NatGateway | delete": `deleting` → `deleted` (~1 min).
    NatGatewayDeleting,
    /// "Aurora PostgreSQL DBCluster | create" and "| delete": `creating` → `available`;
    /// `deleting` → gone.
    DbClusterStates,
    /// "DBInstance (writer) | create" and "| delete": `creating` → `available` (the
    /// dominant Aurora cost); `deleting` → gone (~12 min).
    DbInstanceStates,
    /// "ALB (LoadBalancer) | create", "NLB (for VpcLink) | create/delete":
    /// `provisioning` → `active` (2-5 min).
    LoadBalancerProvisioning,
    /// "API Gateway VpcLink | create" and "| delete": `PENDING` → `AVAILABLE`, or `FAILED`
    /// with AWS's statusMessage when created while its NLB was still `provisioning`;
    /// `DELETING` → gone.
    VpcLinkStates,
    /// "API Gateway Stage (cache cluster enabled) | create": `cacheClusterStatus`
    /// `CREATE_IN_PROGRESS` → `AVAILABLE` (~4 min).
    StageCacheCreating,
    /// "ECS Service (Fargate, awsvpc, circuit breaker) | create": the primary deployment
    /// `IN_PROGRESS` → `COMPLETED` with every task running (moto never completes one).
    EcsRollout,
    /// "ECS Service ... | create" with a task that never starts: the circuit breaker marks
    /// the deployment `FAILED`. Decided per deployment when it starts; not in [`Behaviour::ALL`]
    /// (a run must report it, not survive it).
    EcsRolloutFails,
    /// "ECS Service | delete": `DRAINING` → `INACTIVE` (1-15 min).
    EcsServiceDraining,
    /// "VPC | create", "Subnet | create", "SecurityGroup | create", "RouteTable |
    /// create/delete", "RouteTableAssociation", "InternetGateway | create/attach",
    /// "ElasticIP | create", "NatGateway | create" (CreateRoute): a request naming an id EC2
    /// returned moments ago answers `Invalid…ID.NotFound`.
    Ec2NotFoundAfterCreate,
    /// "Subnet | delete", "SecurityGroup | delete", "InternetGateway | detach/delete",
    /// "VPC | delete", "(ENIs of Lambda / ALB / NLB) | delete of owner", "ALB | delete",
    /// "ECS Service | delete", "NatGateway | delete": `DependencyViolation` while network
    /// interfaces of load balancers, ECS tasks, the Aurora writer or a NAT gateway are in
    /// the subnet / group / VPC (their owner alive, or deleted moments ago).
    LingeringInterfaces,
    /// "ElasticIP | delete (release)": `InvalidIPAddress.InUse` while its NAT gateway exists
    /// or is still `deleting`.
    EipInUse,
    /// "Aurora PostgreSQL DBCluster | delete": `InvalidDBClusterStateFault` while its
    /// writer is still being deleted.
    DbClusterInvalidState,
    /// "ECS Service ... | create": `InvalidParameterException` "The target group with
    /// targetGroupArn ... does not have an associated load balancer." shortly after (or
    /// without) the listener that forwards to it.
    TargetGroupWithoutLoadBalancer,
    /// "ECS Cluster | delete": `ClusterContainsServicesException` while a service drains.
    ClusterContainsServices,
    /// "TargetGroup (ip) | delete": `ResourceInUse` just after the listener's delete.
    TargetGroupInUse,
    /// "Lambda Function | create" (and "IAM Role | use by other services"):
    /// `InvalidParameterValueException` "The role defined for the function cannot be
    /// assumed by Lambda." shortly after the role's CreateRole.
    LambdaRoleNotAssumable,
    /// "API Gateway (all ...) | any mutating call": 409 `ConflictException` "Unable to
    /// complete operation due to concurrent modification. Please try again later." when two
    /// changes to one REST API overlap (each change is held a moment, as AWS takes one).
    ApiGatewayConflict,
    /// "API Gateway (all) | control-plane rate limits": 429 `TooManyRequestsException`
    /// above CreateRestApi 1 / 3 s, CreateDeployment 1 / 5 s, DeleteRestApi 1 / 30 s.
    ApiGatewayQuota,
    /// "S3 Bucket | create": 409 `OperationAborted` on CreateBucket of a name deleted
    /// moments ago.
    BucketRecreateAborted,
    /// "S3 Bucket (+public access block) | create": 404 `NoSuchBucket` on
    /// PutPublicAccessBlock right after CreateBucket.
    PublicAccessBlockNoSuchBucket,
    /// "CloudWatch Logs LogGroup | delete": `OperationAbortedException`, once per group.
    LogGroupDeleteAborted,
    /// "Cognito UserPoolClient | update": `ConcurrentModificationException`, once per client.
    UserPoolClientConcurrentUpdate,
}

impl Behaviour {
    /// Every behaviour a run must survive (all but [`Behaviour::EcsRolloutFails`]).
    pub const ALL: [Behaviour; 23] = [
        Behaviour::NatGatewayPending,
        Behaviour::NatGatewayDeleting,
        Behaviour::DbClusterStates,
        Behaviour::DbInstanceStates,
        Behaviour::LoadBalancerProvisioning,
        Behaviour::VpcLinkStates,
        Behaviour::StageCacheCreating,
        Behaviour::EcsRollout,
        Behaviour::EcsServiceDraining,
        Behaviour::Ec2NotFoundAfterCreate,
        Behaviour::LingeringInterfaces,
        Behaviour::EipInUse,
        Behaviour::DbClusterInvalidState,
        Behaviour::TargetGroupWithoutLoadBalancer,
        Behaviour::ClusterContainsServices,
        Behaviour::TargetGroupInUse,
        Behaviour::LambdaRoleNotAssumable,
        Behaviour::ApiGatewayConflict,
        Behaviour::ApiGatewayQuota,
        Behaviour::BucketRecreateAborted,
        Behaviour::PublicAccessBlockNoSuchBucket,
        Behaviour::LogGroupDeleteAborted,
        Behaviour::UserPoolClientConcurrentUpdate,
    ];

    pub fn from_name(name: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().chain([Behaviour::EcsRolloutFails]).find(|b| format!("{b:?}").eq_ignore_ascii_case(name))
    }
}

/// The catalog's typical real durations, in seconds (before scaling). "est." marks the
/// catalog's estimates.
#[derive(Debug, Clone)]
pub struct Durations {
    /// NatGateway create: "typically 1-3 min".
    pub nat_create: f64,
    /// NatGateway delete: "~1 min typical (est.)".
    pub nat_delete: f64,
    /// DBCluster create: "~1-3 min, est.; TF floor 30 s".
    pub db_cluster_create: f64,
    /// DBCluster delete: "~1 min after its instance is gone (1m3s)".
    pub db_cluster_delete: f64,
    /// DBInstance create: "several minutes to >10 min" (critical path: ~5-12 min).
    pub db_instance_create: f64,
    /// DBInstance delete: "Destruction complete after 11m47s".
    pub db_instance_delete: f64,
    /// ALB/NLB provisioning → active: "~3 min [2-5]".
    pub lb_provision: f64,
    /// Network interfaces of a deleted ALB/NLB: "ENI detach waiter up to 10m", NLB "<=5 min" (est.).
    pub lb_eni_release: f64,
    /// VpcLink PENDING → AVAILABLE: "~6-9 min, est. from the 515-750 s acceptance test".
    pub vpc_link_create: f64,
    /// VpcLink PENDING → FAILED when its NLB was not active (est.).
    pub vpc_link_fail: f64,
    /// VpcLink DELETING → gone: "minutes est., TF <=20 min".
    pub vpc_link_delete: f64,
    /// Stage cache CREATE_IN_PROGRESS → AVAILABLE: "about 4 minutes".
    pub stage_cache: f64,
    /// ECS rollout: "tasks RUNNING + targets healthy (~2-4 min)".
    pub ecs_rollout: f64,
    /// ECS service DRAINING → INACTIVE: "1-15 min".
    pub ecs_draining: f64,
    /// Fargate task ENIs after INACTIVE: "~1-2 min, est.".
    pub task_eni_release: f64,
    /// EC2 read-after-create NotFound: "real: seconds" (est.; TF tolerates 5 min).
    pub ec2_propagation: f64,
    /// ECS CreateService after CreateListener: seconds (est.; TF retries 2 min).
    pub listener_propagation: f64,
    /// TargetGroup ResourceInUse after the listener's delete: seconds (est.; TF retries 2 min).
    pub target_group_release: f64,
    /// IAM role usable by Lambda: "seconds to tens of seconds (est.)".
    pub iam_propagation: f64,
    /// S3 bucket name reusable after delete (est.).
    pub bucket_name_release: f64,
    /// PutPublicAccessBlock NoSuchBucket after CreateBucket (est.; TF retries 2 min).
    pub bucket_propagation: f64,
    /// How long API Gateway holds one change to a REST API (est.).
    pub api_change: f64,
    /// Fixed quotas: CreateRestApi 1 / 3 s, CreateDeployment 1 / 5 s, DeleteRestApi 1 / 30 s.
    pub quota_create_rest_api: f64,
    pub quota_create_deployment: f64,
    pub quota_delete_rest_api: f64,
}

impl Default for Durations {
    fn default() -> Durations {
        Durations {
            nat_create: 120.0,
            nat_delete: 60.0,
            db_cluster_create: 120.0,
            db_cluster_delete: 60.0,
            db_instance_create: 600.0,
            db_instance_delete: 600.0,
            lb_provision: 180.0,
            lb_eni_release: 90.0,
            vpc_link_create: 420.0,
            vpc_link_fail: 60.0,
            vpc_link_delete: 120.0,
            stage_cache: 240.0,
            ecs_rollout: 180.0,
            ecs_draining: 120.0,
            task_eni_release: 60.0,
            ec2_propagation: 2.0,
            listener_propagation: 15.0,
            target_group_release: 10.0,
            iam_propagation: 10.0,
            bucket_name_release: 30.0,
            bucket_propagation: 5.0,
            api_change: 1.0,
            quota_create_rest_api: 3.0,
            quota_create_deployment: 5.0,
            quota_delete_rest_api: 30.0,
        }
    }
}

/// Which behaviours are on, and how much faster than AWS the simulated clock runs.
#[derive(Debug, Clone)]
pub struct Profile {
    pub behaviours: BTreeSet<Behaviour>,
    /// Real durations are multiplied by this (1/40 in CI: the stack's critical path ~20 s).
    pub scale: f64,
    /// Transient-error windows (eventual consistency, names being released) are compressed
    /// by this, not by `scale`: they compete with the client's own pace between two calls,
    /// which no scale compresses, so 1/80 of "a few seconds" would never be met.
    pub transient_scale: f64,
    /// ... and are at least this long.
    pub min_window: Duration,
    pub durations: Durations,
    /// The account is busy: the first call of each quota'd operation finds the quota just
    /// used by another client, and the first change to each REST API meets another
    /// client's change in progress (so [`Behaviour::ApiGatewayQuota`] and
    /// [`Behaviour::ApiGatewayConflict`] fire for one stack even when it serialises its own).
    pub busy_account: bool,
    /// Each eventual-consistency or in-use window lasts at least until the first request it
    /// applies to has been refused (a worst case: AWS slower than the client's next call),
    /// so that a behaviour test fires however loaded the machine is.
    pub at_least_once: bool,
}

impl Profile {
    pub fn new(behaviours: impl IntoIterator<Item = Behaviour>, scale: f64) -> Profile {
        Profile {
            behaviours: behaviours.into_iter().collect(),
            scale,
            transient_scale: scale.max(0.5),
            min_window: Duration::from_millis(250),
            durations: Durations::default(),
            busy_account: false,
            at_least_once: false,
        }
    }

    pub fn all(scale: f64) -> Profile {
        Profile::new(Behaviour::ALL, scale)
    }

    /// Only `behaviour`, its windows met at least once (see [`Profile::at_least_once`]).
    pub fn only(behaviour: Behaviour, scale: f64) -> Profile {
        Profile { at_least_once: true, ..Profile::new([behaviour], scale) }
    }

    pub fn busy_account(mut self) -> Profile {
        self.busy_account = true;
        self
    }

    fn state(&self, real_seconds: f64) -> Duration {
        Duration::from_secs_f64(real_seconds * self.scale)
    }

    fn window(&self, real_seconds: f64) -> Duration {
        Duration::from_secs_f64(real_seconds * self.transient_scale).max(self.min_window)
    }

    /// The longest dependency chains of REALAWS.md's "Critical path" section, with this
    /// profile's scaled durations (seconds): what a perfect `up` and `down` would take.
    pub fn critical_path(&self, private: bool) -> CriticalPath {
        let d = &self.durations;
        let on = |b: Behaviour| self.behaviours.contains(&b);
        let s = |b: Behaviour, secs: f64| if on(b) { secs * self.scale } else { 0.0 };
        let lb = s(Behaviour::LoadBalancerProvisioning, d.lb_provision);
        let cache = s(Behaviour::StageCacheCreating, d.stage_cache);
        let rollout = s(Behaviour::EcsRollout, d.ecs_rollout);
        let mut up = vec![
            ("Aurora: cluster creating -> writer creating".to_string(), s(Behaviour::DbClusterStates, d.db_cluster_create) + s(Behaviour::DbInstanceStates, d.db_instance_create)),
            (
                format!("ECS: {} provisioning -> listener (CreateService refused meanwhile) -> service rollout", if private { "NLB" } else { "ALB" }),
                lb + if on(Behaviour::TargetGroupWithoutLoadBalancer) { self.window(d.listener_propagation).as_secs_f64() } else { 0.0 } + rollout,
            ),
            ("NAT: pending -> route".to_string(), s(Behaviour::NatGatewayPending, d.nat_create)),
        ];
        if private {
            up.push(("API: NLB provisioning -> VPC link PENDING -> deployment (stage cache after)".into(), lb + s(Behaviour::VpcLinkStates, d.vpc_link_create)));
            up.push(("API incl. stage cache CREATE_IN_PROGRESS (nothing waits for it)".into(), lb + s(Behaviour::VpcLinkStates, d.vpc_link_create) + cache));
        } else {
            up.push(("API incl. stage cache CREATE_IN_PROGRESS (nothing waits for it)".into(), cache));
        }
        let eni = if on(Behaviour::LingeringInterfaces) { 1.0 } else { 0.0 };
        let mut down = vec![
            (
                "Aurora: writer deleting -> cluster deleting -> db subnets -> VPC".to_string(),
                s(Behaviour::DbInstanceStates, d.db_instance_delete).max(s(Behaviour::DbClusterInvalidState, d.db_instance_delete))
                    + s(Behaviour::DbClusterStates, d.db_cluster_delete),
            ),
            (
                "ECS: service DRAINING -> task ENIs -> sg.ecs / ecs subnets".to_string(),
                s(Behaviour::EcsServiceDraining, d.ecs_draining).max(s(Behaviour::ClusterContainsServices, d.ecs_draining).max(eni * d.ecs_draining * self.scale))
                    + eni * d.task_eni_release * self.scale,
            ),
            ("NAT: deleting -> EIP release -> IGW detach".to_string(), s(Behaviour::NatGatewayDeleting, d.nat_delete).max(s(Behaviour::EipInUse, d.nat_delete))),
        ];
        let lb_gone = eni * d.lb_eni_release * self.scale;
        if private {
            down.push(("API/NLB: VPC link DELETING -> NLB delete -> its ENIs -> subnets".into(), s(Behaviour::VpcLinkStates, d.vpc_link_delete) + lb_gone));
        } else {
            down.push(("ALB: delete -> its ENIs -> IGW detach, sg.alb".into(), lb_gone));
        }
        CriticalPath { up, down }
    }
}

#[derive(Debug, Clone)]
pub struct CriticalPath {
    pub up: Vec<(String, f64)>,
    pub down: Vec<(String, f64)>,
}

impl CriticalPath {
    fn longest(chains: &[(String, f64)], skip_unwaited: bool) -> (String, f64) {
        chains
            .iter()
            .filter(|(n, _)| !skip_unwaited || !n.contains("nothing waits"))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()
            .unwrap_or_default()
    }
    /// The longest create chain that a run has to wait for.
    pub fn up(&self) -> (String, f64) {
        CriticalPath::longest(&self.up, true)
    }
    /// The longest create chain, the stage cache (that nothing waits for) included.
    pub fn up_with_cache(&self) -> (String, f64) {
        CriticalPath::longest(&self.up, false)
    }
    pub fn down(&self) -> (String, f64) {
        CriticalPath::longest(&self.down, false)
    }
}

/// A running proxy with the realistic profile.
pub struct RealisticProxy {
    pub url: String,
    world: Arc<Mutex<World>>,
}

impl RealisticProxy {
    /// Starts it on a free loopback port in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str, profile: Profile) -> RealisticProxy {
        RealisticProxy::start_on(upstream, profile, 0)
    }

    pub fn start_on(upstream: &str, profile: Profile, port: u16) -> RealisticProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let world = Arc::new(Mutex::new(World::new(profile)));
        let shared = world.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (world, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &world);
                });
            }
        });
        RealisticProxy { url, world }
    }

    /// How often each behaviour fired (an error answered or a state rewritten).
    pub fn fired(&self) -> BTreeMap<Behaviour, usize> {
        self.world.lock().unwrap().fired.clone()
    }

    pub fn fired_count(&self, behaviour: Behaviour) -> usize {
        self.fired().get(&behaviour).copied().unwrap_or(0)
    }

    /// What fired, by "Behaviour:Operation".
    pub fn details(&self) -> BTreeMap<String, usize> {
        self.world.lock().unwrap().details.clone()
    }

    /// Turns a behaviour on or off for what happens from now on (resources keep the fate
    /// decided when they were created: a deployment that was to fail still fails).
    pub fn set(&self, behaviour: Behaviour, on: bool) {
        let mut w = self.world.lock().unwrap();
        if on {
            w.profile.behaviours.insert(behaviour);
        } else {
            w.profile.behaviours.remove(&behaviour);
        }
    }

    pub fn profile(&self) -> Profile {
        self.world.lock().unwrap().profile.clone()
    }

    /// Changes to one REST API that overlapped another change to it (each answered 409).
    pub fn api_overlaps(&self) -> usize {
        self.world.lock().unwrap().api_overlaps
    }

    /// VPC links that went FAILED because they were created while their NLB provisioned.
    pub fn failed_vpc_links(&self) -> usize {
        self.world.lock().unwrap().vpc_links.values().filter(|l| l.fails).count()
    }
}

// ---------------------------------------------------------------------------------------
// What the proxy remembers of the simulated account.

#[derive(Default)]
struct Nat {
    created: Option<Instant>,
    deleted: Option<Instant>,
    subnet: String,
    allocation: String,
}

struct Lb {
    created: Instant,
    deleted: Option<Instant>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    internet_facing: bool,
}

struct Db {
    created: Instant,
    deleted: Option<Instant>,
    /// The last element moto showed of it, shown `deleting` once moto has dropped it.
    last_seen: Option<xml::Element>,
    /// Instances: the cluster. Clusters: the DB subnet group.
    parent: String,
    security_groups: Vec<String>,
}

struct Service {
    cluster: String,
    created: Instant,
    deleted: Option<Instant>,
    rollout_started: Instant,
    rollout_fails: bool,
    task_definition: String,
    subnets: Vec<String>,
    security_groups: Vec<String>,
}

struct Link {
    created: Instant,
    fails: bool,
    deleted: Option<Instant>,
    last_seen: Option<serde_json::Value>,
    targets: Vec<String>,
}

struct World {
    profile: Profile,
    started: Instant,
    /// EC2 ids by creation instant, with their NotFound code and noun.
    ec2_created: HashMap<String, (Instant, &'static str, &'static str)>,
    subnet_vpc: HashMap<String, String>,
    nats: HashMap<String, Nat>,
    public_ips: HashMap<String, String>,
    lbs: HashMap<String, Lb>,
    /// Listener arn → (target group, created, deleted).
    listeners: HashMap<String, (String, Instant, Option<Instant>)>,
    db_subnet_groups: HashMap<String, Vec<String>>,
    db_clusters: HashMap<String, Db>,
    db_instances: HashMap<String, Db>,
    services: HashMap<String, Service>,
    roles: HashMap<String, Instant>,
    vpc_links: HashMap<String, Link>,
    stages: HashMap<(String, String), Instant>,
    buckets_created: HashMap<String, Instant>,
    buckets_deleted: HashMap<String, Instant>,
    once: HashSet<String>,
    api_in_flight: HashMap<String, usize>,
    /// Changes to one REST API that arrived while another was in progress.
    api_overlaps: usize,
    quota_last: HashMap<&'static str, Instant>,
    fired: BTreeMap<Behaviour, usize>,
    details: BTreeMap<String, usize>,
    requests: usize,
    /// `REALISTIC_PROXY_LOG=<file>`: one line per request (seconds since start, operation,
    /// status, what the profile did), to see a run's timeline.
    log: Option<std::fs::File>,
}

impl World {
    fn new(profile: Profile) -> World {
        World {
            profile,
            started: Instant::now(),
            ec2_created: HashMap::new(),
            subnet_vpc: HashMap::new(),
            nats: HashMap::new(),
            public_ips: HashMap::new(),
            lbs: HashMap::new(),
            listeners: HashMap::new(),
            db_subnet_groups: HashMap::new(),
            db_clusters: HashMap::new(),
            db_instances: HashMap::new(),
            services: HashMap::new(),
            roles: HashMap::new(),
            vpc_links: HashMap::new(),
            stages: HashMap::new(),
            buckets_created: HashMap::new(),
            buckets_deleted: HashMap::new(),
            once: HashSet::new(),
            api_in_flight: HashMap::new(),
            api_overlaps: 0,
            quota_last: HashMap::new(),
            fired: BTreeMap::new(),
            details: BTreeMap::new(),
            requests: 0,
            log: std::env::var_os("REALISTIC_PROXY_LOG").and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok()),
        }
    }

    fn on(&self, b: Behaviour) -> bool {
        self.profile.behaviours.contains(&b)
    }

    fn fire(&mut self, b: Behaviour, operation: &str) {
        *self.fired.entry(b).or_default() += 1;
        *self.details.entry(format!("{b:?}:{operation}")).or_default() += 1;
        self.note(&format!("{operation} {b:?}"));
    }

    fn note(&mut self, line: &str) {
        let t = self.started.elapsed().as_secs_f64();
        if let Some(f) = &mut self.log {
            use std::io::Write;
            let _ = writeln!(f, "{t:9.3} {line}");
        }
    }

    fn d(&self) -> &Durations {
        &self.profile.durations
    }

    fn within(&self, since: Instant, real_seconds: f64, now: Instant) -> bool {
        now < since + self.profile.state(real_seconds)
    }

    fn within_window(&self, since: Instant, real_seconds: f64, now: Instant) -> bool {
        now < since + self.profile.window(real_seconds)
    }

    /// Whether a window opened at `since` still applies to `what`: by the clock, or, with
    /// `at_least_once`, because nothing it applies to has been refused yet.
    fn fresh(&mut self, b: Behaviour, what: &str, since: Instant, real_seconds: f64, now: Instant) -> bool {
        let by_clock = self.within_window(since, real_seconds, now);
        let first = self.profile.at_least_once && !self.once.contains(&format!("{b:?} {what}"));
        if by_clock || first {
            self.once.insert(format!("{b:?} {what}"));
        }
        by_clock || first
    }

    fn lb_provisioning(&self, arn: &str, now: Instant) -> bool {
        self.on(Behaviour::LoadBalancerProvisioning) && self.lbs.get(arn).is_some_and(|lb| self.within(lb.created, self.d().lb_provision, now))
    }

    fn nat_present(&self, nat: &Nat, now: Instant) -> bool {
        match nat.deleted {
            None => true,
            Some(at) => self.within(at, self.d().nat_delete, now),
        }
    }

    fn db_instance_deleting(&self, db: &Db, now: Instant) -> bool {
        db.deleted.is_some_and(|at| self.within(at, self.d().db_instance_delete, now))
    }

    fn service_draining(&self, s: &Service, now: Instant) -> bool {
        s.deleted.is_some_and(|at| self.within(at, self.d().ecs_draining, now))
    }

    /// Network interfaces in the account: (owner, subnets, security groups, maps a public
    /// address) of every owner alive or deleted too recently for AWS to have released them.
    /// With `ever`, also those of owners deleted at any time (for `at_least_once`).
    fn interfaces(&self, now: Instant, ever: bool) -> Vec<(String, Vec<String>, Vec<String>, bool)> {
        let d = self.d();
        let mut out = Vec::new();
        for (arn, lb) in &self.lbs {
            if ever || lb.deleted.is_none_or(|at| self.within(at, d.lb_eni_release, now)) {
                out.push((format!("ELB {}", short(arn)), lb.subnets.clone(), lb.security_groups.clone(), lb.internet_facing));
            }
        }
        for (arn, s) in &self.services {
            if ever || s.deleted.is_none_or(|at| self.within(at, d.ecs_draining + d.task_eni_release, now)) {
                out.push((format!("ECS tasks of {}", short(arn)), s.subnets.clone(), s.security_groups.clone(), false));
            }
        }
        for (id, nat) in &self.nats {
            if ever || self.nat_present(nat, now) {
                out.push((format!("NAT gateway {id}"), vec![nat.subnet.clone()], Vec::new(), true));
            }
        }
        for (id, db) in &self.db_instances {
            if ever || db.deleted.is_none() || self.db_instance_deleting(db, now) {
                let cluster = self.db_clusters.get(&db.parent);
                let subnets = cluster.and_then(|c| self.db_subnet_groups.get(&c.parent)).cloned().unwrap_or_default();
                let sgs = cluster.map(|c| c.security_groups.clone()).unwrap_or_default();
                out.push((format!("RDS instance {id}"), subnets, sgs, false));
            }
        }
        out
    }
}

fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

// ---------------------------------------------------------------------------------------
// One request, as the rules read it.

struct Call {
    operation: String,
    protocol: Protocol,
    method: String,
    segments: Vec<String>,
    query: String,
    /// Form parameters (query protocols), percent-decoded.
    params: Vec<(String, String)>,
    /// JSON body (JSON and REST-JSON protocols).
    json: serde_json::Value,
}

impl Call {
    fn new(request: &Request) -> Call {
        let mut parts = request.head[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segments = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(|s| decode(s)).collect();
        let protocol = request.protocol();
        let params = if matches!(protocol, Protocol::Ec2 | Protocol::Query) {
            std::str::from_utf8(&request.body)
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        } else {
            Vec::new()
        };
        let json = serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null);
        let mut call = Call { operation: request.operation(), protocol, method, segments, query: query.to_string(), params, json };
        if let Some(name) = call.rest_name() {
            call.operation = name.to_string();
        }
        call
    }

    /// The SDK's names for the REST calls the rules look at.
    fn rest_name(&self) -> Option<&'static str> {
        if !matches!(self.protocol, Protocol::RestJson | Protocol::S3) {
            return None;
        }
        let seg: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        let q = self.query.as_str();
        Some(match (self.method.as_str(), seg.as_slice()) {
            ("POST", ["restapis"]) => "CreateRestApi",
            ("DELETE", ["restapis", _]) => "DeleteRestApi",
            ("POST", ["restapis", _, "deployments"]) => "CreateDeployment",
            ("POST", ["restapis", _, "stages"]) => "CreateStage",
            ("PATCH", ["restapis", _, "stages", _]) => "UpdateStage",
            ("GET", ["restapis", _, "stages"]) => "GetStages",
            ("GET", ["restapis", _, "stages", _]) => "GetStage",
            ("POST", ["vpclinks"]) => "CreateVpcLink",
            ("GET", ["vpclinks"]) => "GetVpcLinks",
            ("GET", ["vpclinks", _]) => "GetVpcLink",
            ("DELETE", ["vpclinks", _]) => "DeleteVpcLink",
            ("POST", ["2015-03-31", "functions"]) => "CreateFunction",
            ("PUT", [_]) if self.protocol == Protocol::S3 && q.is_empty() => "CreateBucket",
            ("DELETE", [_]) if self.protocol == Protocol::S3 && q.is_empty() => "DeleteBucket",
            ("PUT", [_]) if self.protocol == Protocol::S3 && q.starts_with("publicAccessBlock") => "PutPublicAccessBlock",
            _ => return None,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Values of a list parameter: `Prefix.1` (EC2), `Prefix.member.1` (ELB),
    /// `Prefix.SubnetIdentifier.1` (RDS).
    fn list(&self, prefix: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn str(&self, pointer: &str) -> String {
        self.json.pointer(pointer).and_then(|v| v.as_str()).unwrap_or("").to_string()
    }

    /// A REST API mutated by this call: `/restapis/{id}/...` with a write method.
    fn mutated_rest_api(&self) -> Option<String> {
        if self.protocol != Protocol::RestJson || self.method == "GET" || self.segments.first().map(String::as_str) != Some("restapis") {
            return None;
        }
        self.segments.get(1).cloned()
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------
// Errors in each protocol's own format.

type Answer = (String, Vec<String>, Vec<u8>);

fn aws_error(protocol: Protocol, status: &str, code: &str, message: &str, n: usize) -> Answer {
    let request_id = format!("realistic-{n}");
    let xml = vec!["Content-Type: text/xml".to_string()];
    let message = escape(message);
    match protocol {
        Protocol::Ec2 => (
            format!("HTTP/1.1 {status}"),
            xml,
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").into_bytes(),
        ),
        Protocol::Query => (
            format!("HTTP/1.1 {status}"),
            xml,
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>").into_bytes(),
        ),
        Protocol::S3 => (
            format!("HTTP/1.1 {status}"),
            xml,
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>").into_bytes(),
        ),
        Protocol::Json | Protocol::RestJson => {
            let body = serde_json::json!({ "__type": code, "message": unescape(&message) }).to_string();
            let headers = vec![
                "Content-Type: application/x-amz-json-1.1".to_string(),
                format!("x-amzn-ErrorType: {code}"),
                format!("x-amzn-RequestId: {request_id}"),
            ];
            (format!("HTTP/1.1 {status}"), headers, body.into_bytes())
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&apos;", "'").replace("&amp;", "&")
}

/// A transient error to answer instead of forwarding: behaviour, HTTP status, code, message.
type Refusal = (Behaviour, &'static str, &'static str, String);

/// The EC2 ids whose creates the proxy tracks: create operation, response tag, NotFound
/// code, noun of the message.
const EC2_CREATES: [(&str, &str, &str, &str); 7] = [
    ("CreateVpc", "vpcId", "InvalidVpcID.NotFound", "vpc ID"),
    ("CreateSubnet", "subnetId", "InvalidSubnetID.NotFound", "subnet ID"),
    ("CreateSecurityGroup", "groupId", "InvalidGroup.NotFound", "security group"),
    ("CreateRouteTable", "routeTableId", "InvalidRouteTableID.NotFound", "routeTable ID"),
    ("CreateInternetGateway", "internetGatewayId", "InvalidInternetGatewayID.NotFound", "internetGateway ID"),
    ("CreateNatGateway", "natGatewayId", "InvalidNatGatewayID.NotFound", "natGateway ID"),
    ("AllocateAddress", "allocationId", "InvalidAllocationID.NotFound", "allocation ID"),
];

// ---------------------------------------------------------------------------------------
// Before forwarding: the transient errors.

fn refuse(w: &mut World, c: &Call, now: Instant) -> Option<Refusal> {
    use Behaviour as B;
    let d = w.d().clone();
    let op = c.operation.as_str();

    if w.on(B::Ec2NotFoundAfterCreate) && c.protocol == Protocol::Ec2 {
        for (key, value) in &c.params {
            if key.starts_with("Filter.") || key.starts_with("ClientToken") {
                continue;
            }
            if let Some(&(created, code, noun)) = w.ec2_created.get(value) {
                // A NAT gateway is named by routes only (REALAWS: CreateRoute before it is visible).
                if code == "InvalidNatGatewayID.NotFound" && op != "CreateRoute" {
                    continue;
                }
                if w.fresh(B::Ec2NotFoundAfterCreate, value, created, d.ec2_propagation, now) {
                    let message = if noun == "security group" {
                        format!("The security group '{value}' does not exist")
                    } else {
                        format!("The {noun} '{value}' does not exist")
                    };
                    return Some((B::Ec2NotFoundAfterCreate, "400 Bad Request", code, message));
                }
            }
        }
    }

    if w.on(B::LingeringInterfaces) && matches!(op, "DeleteSecurityGroup" | "DeleteSubnet" | "DetachInternetGateway" | "DeleteVpc") {
        let interfaces = w.interfaces(now, false);
        let (id, message) = match op {
            "DeleteSecurityGroup" => {
                let id = c.param("GroupId").unwrap_or("").to_string();
                (id.clone(), format!("resource {id} has a dependent object"))
            }
            "DeleteSubnet" => {
                let id = c.param("SubnetId").unwrap_or("").to_string();
                (id.clone(), format!("The subnet '{id}' has dependencies and cannot be deleted."))
            }
            "DetachInternetGateway" => {
                let vpc = c.param("VpcId").unwrap_or("").to_string();
                (vpc.clone(), format!("Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."))
            }
            _ => {
                let id = c.param("VpcId").unwrap_or("").to_string();
                (id.clone(), format!("The vpc '{id}' has dependencies and cannot be deleted."))
            }
        };
        let uses = |list: &[(String, Vec<String>, Vec<String>, bool)]| {
            list.iter().any(|(_, subnets, sgs, public)| match op {
                "DeleteSecurityGroup" => sgs.contains(&id),
                "DeleteSubnet" => subnets.contains(&id),
                "DetachInternetGateway" => *public && subnets.iter().any(|s| w.subnet_vpc.get(s) == Some(&id)),
                _ => subnets.iter().any(|s| w.subnet_vpc.get(s) == Some(&id)),
            })
        };
        let key = format!("{op} {id}");
        let blocked = uses(&interfaces) || (w.profile.at_least_once && !w.once.contains(&key) && uses(&w.interfaces(now, true)));
        if blocked {
            w.once.insert(key);
            return Some((B::LingeringInterfaces, "400 Bad Request", "DependencyViolation", message));
        }
    }

    if w.on(B::EipInUse) && op == "ReleaseAddress" {
        let allocation = c.param("AllocationId").unwrap_or("");
        let key = format!("ReleaseAddress {allocation}");
        let first = w.profile.at_least_once && !w.once.contains(&key);
        if w.nats.values().any(|n| n.allocation == allocation && (w.nat_present(n, now) || (first && n.deleted.is_some()))) {
            w.once.insert(key);
            let ip = w.public_ips.get(allocation).cloned().unwrap_or_else(|| allocation.to_string());
            return Some((B::EipInUse, "400 Bad Request", "InvalidIPAddress.InUse", format!("Address {ip} is in use.")));
        }
    }

    if w.on(B::DbClusterInvalidState) && op == "DeleteDBCluster" {
        let cluster = c.param("DBClusterIdentifier").unwrap_or("");
        if w.db_instances.values().any(|i| i.parent == cluster && w.db_instance_deleting(i, now)) {
            return Some((B::DbClusterInvalidState, "400 Bad Request", "InvalidDBClusterStateFault", format!("DbCluster {cluster} is not currently in the available state.")));
        }
    }

    if w.on(B::TargetGroupWithoutLoadBalancer) && op == "CreateService" {
        for lb in c.json["loadBalancers"].as_array().into_iter().flatten() {
            let tg = lb["targetGroupArn"].as_str().unwrap_or("");
            if tg.is_empty() {
                continue;
            }
            let listener = w.listeners.values().find(|(t, _, deleted)| t == tg && deleted.is_none()).map(|l| l.1);
            let settled = listener.is_some_and(|created| !w.fresh(B::TargetGroupWithoutLoadBalancer, tg, created, d.listener_propagation, now));
            if !settled {
                return Some((
                    B::TargetGroupWithoutLoadBalancer,
                    "400 Bad Request",
                    "InvalidParameterException",
                    format!("The target group with targetGroupArn {tg} does not have an associated load balancer."),
                ));
            }
        }
    }

    if w.on(B::ClusterContainsServices) && op == "DeleteCluster" {
        let cluster = c.str("/cluster");
        let key = format!("DeleteCluster {cluster}");
        let first = w.profile.at_least_once && !w.once.contains(&key);
        if w.services.values().any(|s| (s.cluster == cluster || short(&s.cluster) == short(&cluster)) && (w.service_draining(s, now) || (first && s.deleted.is_some()))) {
            w.once.insert(key);
            return Some((B::ClusterContainsServices, "400 Bad Request", "ClusterContainsServicesException", "The Cluster cannot be deleted while Services are active.".into()));
        }
    }

    if w.on(B::TargetGroupInUse) && op == "DeleteTargetGroup" {
        let tg = c.param("TargetGroupArn").unwrap_or("");
        let released = w.listeners.values().filter(|(t, ..)| t == tg).filter_map(|l| l.2).max();
        if released.is_some_and(|at| w.fresh(B::TargetGroupInUse, tg, at, d.target_group_release, now)) {
            return Some((B::TargetGroupInUse, "400 Bad Request", "ResourceInUse", format!("Target group '{tg}' is currently in use by a listener or a rule")));
        }
    }

    if w.on(B::LambdaRoleNotAssumable) && op == "CreateFunction" {
        let role = c.str("/Role");
        if w.roles.get(&role).copied().is_some_and(|created| w.fresh(B::LambdaRoleNotAssumable, &role, created, d.iam_propagation, now)) {
            return Some((B::LambdaRoleNotAssumable, "400 Bad Request", "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda.".into()));
        }
    }

    if w.on(B::ApiGatewayQuota) {
        let quota = match op {
            "CreateRestApi" => Some(d.quota_create_rest_api),
            "CreateDeployment" => Some(d.quota_create_deployment),
            "DeleteRestApi" => Some(d.quota_delete_rest_api),
            _ => None,
        };
        if let Some(interval) = quota {
            let key: &'static str = match op {
                "CreateRestApi" => "CreateRestApi",
                "CreateDeployment" => "CreateDeployment",
                _ => "DeleteRestApi",
            };
            let last = match w.quota_last.get(key) {
                Some(last) => Some(*last),
                None if w.profile.busy_account => Some(now),
                None => None,
            };
            if last.is_some_and(|last| now < last + w.profile.state(interval)) {
                w.quota_last.entry(key).or_insert(now);
                return Some((B::ApiGatewayQuota, "429 Too Many Requests", "TooManyRequestsException", "Too Many Requests".into()));
            }
            w.quota_last.insert(key, now);
        }
    }

    if w.on(B::ApiGatewayConflict) {
        if let Some(api) = c.mutated_rest_api() {
            let overlap = w.api_in_flight.get(&api).copied().unwrap_or(0) > 0;
            if overlap {
                w.api_overlaps += 1;
            }
            let other_writer = w.profile.busy_account && w.once.insert(format!("change to REST API {api}"));
            if overlap || other_writer {
                return Some((
                    B::ApiGatewayConflict,
                    "409 Conflict",
                    "ConflictException",
                    "Unable to complete operation due to concurrent modification. Please try again later.".into(),
                ));
            }
        }
    }

    if w.on(B::BucketRecreateAborted) && op == "CreateBucket" {
        let bucket = c.segments[0].clone();
        if w.buckets_deleted.get(&bucket).copied().is_some_and(|at| w.fresh(B::BucketRecreateAborted, &bucket, at, d.bucket_name_release, now)) {
            return Some((B::BucketRecreateAborted, "409 Conflict", "OperationAborted", "A conflicting conditional operation is currently in progress against this resource. Please try again.".into()));
        }
    }

    if w.on(B::PublicAccessBlockNoSuchBucket) && op == "PutPublicAccessBlock" {
        let bucket = c.segments[0].clone();
        if w.buckets_created.get(&bucket).copied().is_some_and(|at| w.fresh(B::PublicAccessBlockNoSuchBucket, &bucket, at, d.bucket_propagation, now)) {
            return Some((B::PublicAccessBlockNoSuchBucket, "404 Not Found", "NoSuchBucket", "The specified bucket does not exist".into()));
        }
    }

    if w.on(B::LogGroupDeleteAborted) && op == "DeleteLogGroup" {
        let group = c.str("/logGroupName");
        if w.once.insert(format!("DeleteLogGroup {group}")) {
            return Some((
                B::LogGroupDeleteAborted,
                "400 Bad Request",
                "OperationAbortedException",
                "A conflicting operation is currently in progress against this resource. Please try again.".into(),
            ));
        }
    }

    if w.on(B::UserPoolClientConcurrentUpdate) && op == "UpdateUserPoolClient" {
        let client = c.str("/ClientId");
        if w.once.insert(format!("UpdateUserPoolClient {client}")) {
            return Some((
                B::UserPoolClientConcurrentUpdate,
                "400 Bad Request",
                "ConcurrentModificationException",
                "Only one request to update user pool client can be processed at a time.".into(),
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// After forwarding: remember what was created or deleted, and show states as AWS would.

fn observe(w: &mut World, c: &Call, status: &str, body: &mut Vec<u8>, now: Instant) {
    let ok = status.split_whitespace().nth(1).is_some_and(|s| s.starts_with('2'));
    let op = c.operation.clone();
    match c.protocol {
        Protocol::Ec2 | Protocol::Query => {
            let Ok(text) = std::str::from_utf8(body) else { return };
            let Some(mut doc) = xml::parse(text) else { return };
            let changed = if ok { observe_xml(w, c, &mut doc.root, now) } else { observe_xml_error(w, c, &mut doc, now) };
            if changed {
                *body = doc.to_string().into_bytes();
            }
        }
        Protocol::Json | Protocol::RestJson => {
            if !ok {
                if op == "GetVpcLink" {
                    synthesize_deleting_vpc_link(w, c, status, body, now);
                }
                return;
            }
            let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else { return };
            if observe_json(w, c, &mut json, now) {
                *body = json.to_string().into_bytes();
            }
        }
        Protocol::S3 => {
            if ok {
                let bucket = c.segments.first().cloned().unwrap_or_default();
                match op.as_str() {
                    "CreateBucket" => {
                        w.buckets_created.insert(bucket, now);
                    }
                    "DeleteBucket" => {
                        w.buckets_deleted.insert(bucket, now);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn observe_xml(w: &mut World, c: &Call, root: &mut xml::Element, now: Instant) -> bool {
    use Behaviour as B;
    let d = w.d().clone();
    let op = c.operation.as_str();
    let mut changed = false;

    // Creates and deletes.
    if let Some(&(_, tag, code, noun)) = EC2_CREATES.iter().find(|(o, ..)| *o == op) {
        if let Some(id) = root.find(tag).map(|e| e.text()) {
            w.ec2_created.insert(id.clone(), (now, code, noun));
            match op {
                "CreateSubnet" => {
                    w.subnet_vpc.insert(id, c.param("VpcId").unwrap_or("").to_string());
                }
                "CreateNatGateway" => {
                    let nat = Nat { created: Some(now), deleted: None, subnet: c.param("SubnetId").unwrap_or("").into(), allocation: c.param("AllocationId").unwrap_or("").into() };
                    w.nats.insert(id, nat);
                }
                "AllocateAddress" => {
                    if let Some(ip) = root.find("publicIp") {
                        w.public_ips.insert(id, ip.text());
                    }
                }
                _ => {}
            }
        }
    }
    match op {
        "DeleteNatGateway" => {
            if let Some(nat) = c.param("NatGatewayId").and_then(|id| w.nats.get_mut(id)) {
                nat.deleted.get_or_insert(now);
            }
        }
        "CreateLoadBalancer" => {
            if let Some(arn) = root.find("LoadBalancerArn").map(|e| e.text()) {
                let lb = Lb {
                    created: now,
                    deleted: None,
                    subnets: c.list("Subnets"),
                    security_groups: c.list("SecurityGroups"),
                    internet_facing: c.param("Scheme") != Some("internal"),
                };
                w.lbs.entry(arn).or_insert(lb);
            }
        }
        "DeleteLoadBalancer" => {
            if let Some(lb) = c.param("LoadBalancerArn").and_then(|a| w.lbs.get_mut(a)) {
                lb.deleted.get_or_insert(now);
            }
        }
        "CreateListener" => {
            if let Some(arn) = root.find("ListenerArn").map(|e| e.text()) {
                let tg = c.param("DefaultActions.member.1.TargetGroupArn").or(c.param("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn")).unwrap_or("");
                w.listeners.entry(arn).or_insert((tg.to_string(), now, None));
            }
        }
        "DeleteListener" => {
            if let Some(l) = c.param("ListenerArn").and_then(|a| w.listeners.get_mut(a)) {
                l.2.get_or_insert(now);
            }
        }
        "CreateDBSubnetGroup" => {
            w.db_subnet_groups.insert(c.param("DBSubnetGroupName").unwrap_or("").to_lowercase(), c.list("SubnetIds"));
        }
        "CreateDBCluster" => {
            let id = c.param("DBClusterIdentifier").unwrap_or("").to_lowercase();
            let db = Db {
                created: now,
                deleted: None,
                last_seen: None,
                parent: c.param("DBSubnetGroupName").unwrap_or("").to_lowercase(),
                security_groups: c.list("VpcSecurityGroupIds"),
            };
            w.db_clusters.entry(id).or_insert(db);
        }
        "CreateDBInstance" => {
            let id = c.param("DBInstanceIdentifier").unwrap_or("").to_lowercase();
            let db = Db { created: now, deleted: None, last_seen: None, parent: c.param("DBClusterIdentifier").unwrap_or("").to_lowercase(), security_groups: Vec::new() };
            w.db_instances.entry(id).or_insert(db);
        }
        "DeleteDBCluster" | "DeleteDBInstance" => {
            let (key, tag) = if op == "DeleteDBCluster" { ("DBClusterIdentifier", "DBCluster") } else { ("DBInstanceIdentifier", "DBInstance") };
            let id = c.param(key).unwrap_or("").to_lowercase();
            let seen = root.find(tag).cloned();
            let map = if op == "DeleteDBCluster" { &mut w.db_clusters } else { &mut w.db_instances };
            if let Some(db) = map.get_mut(&id) {
                db.deleted.get_or_insert(now);
                if seen.is_some() {
                    db.last_seen = seen;
                }
            }
        }
        "CreateRole" => {
            if let Some(arn) = root.find("Arn").map(|e| e.text()) {
                w.roles.insert(arn, now);
            }
        }
        _ => {}
    }

    // States shown as AWS would.
    if matches!(op, "CreateNatGateway" | "DescribeNatGateways" | "DeleteNatGateway") && (w.on(B::NatGatewayPending) || w.on(B::NatGatewayDeleting)) {
        let mut fired = Vec::new();
        root.visit_mut(&mut |e| {
            let Some(id) = e.child("natGatewayId").map(|c| c.text()) else { return };
            let Some(nat) = w.nats.get(&id) else { return };
            let want = match (nat.created, nat.deleted) {
                (_, Some(at)) if w.on(B::NatGatewayDeleting) && w.within(at, d.nat_delete, now) => Some(("deleting", B::NatGatewayDeleting)),
                (Some(at), None) if w.on(B::NatGatewayPending) && w.within(at, d.nat_create, now) => Some(("pending", B::NatGatewayPending)),
                _ => None,
            };
            if let (Some((state, b)), Some(field)) = (want, e.child_mut("state")) {
                if field.text() != state {
                    field.set_text(state);
                    fired.push(b);
                }
            }
        });
        changed |= !fired.is_empty();
        for b in fired {
            w.fire(b, op);
        }
    }

    if matches!(op, "CreateLoadBalancer" | "DescribeLoadBalancers") && w.on(B::LoadBalancerProvisioning) {
        let mut n = 0;
        root.visit_mut(&mut |e| {
            let Some(arn) = e.child("LoadBalancerArn").map(|c| c.text()) else { return };
            if !w.lb_provisioning(&arn, now) {
                return;
            }
            if let Some(code) = e.child_mut("State").and_then(|s| s.child_mut("Code")) {
                code.set_text("provisioning");
                n += 1;
            }
        });
        changed |= n > 0;
        for _ in 0..n {
            w.fire(B::LoadBalancerProvisioning, op);
        }
    }

    if matches!(op, "CreateDBCluster" | "DescribeDBClusters") && w.on(B::DbClusterStates) {
        changed |= db_states(w, c, root, now, true);
    }
    if matches!(op, "CreateDBInstance" | "DescribeDBInstances") && w.on(B::DbInstanceStates) {
        changed |= db_states(w, c, root, now, false);
    }
    changed
}

/// `creating` while a cluster / instance is young; once moto has dropped a deleted one,
/// the last element seen of it, `deleting`, for as long as AWS takes.
fn db_states(w: &mut World, c: &Call, root: &mut xml::Element, now: Instant, cluster: bool) -> bool {
    let (behaviour, tag, id_tag, status_tag) =
        if cluster { (Behaviour::DbClusterStates, "DBCluster", "DBClusterIdentifier", "Status") } else { (Behaviour::DbInstanceStates, "DBInstance", "DBInstanceIdentifier", "DBInstanceStatus") };
    let (create, delete) = if cluster { (w.d().db_cluster_create, w.d().db_cluster_delete) } else { (w.d().db_instance_create, w.d().db_instance_delete) };
    let mut n = 0;
    let mut present = HashSet::new();
    {
        let map = if cluster { &mut w.db_clusters } else { &mut w.db_instances };
        let scale = w.profile.scale;
        root.visit_mut(&mut |e| {
            if e.name != tag {
                return;
            }
            let Some(id) = e.child(id_tag).map(|c| c.text().to_lowercase()) else { return };
            present.insert(id.clone());
            let Some(db) = map.get_mut(&id) else { return };
            db.last_seen = Some(e.clone());
            if db.deleted.is_none() && now < db.created + Duration::from_secs_f64(create * scale) {
                if let Some(s) = e.child_mut(status_tag) {
                    s.set_text("creating");
                    n += 1;
                }
            }
        });
    }
    // Deleted in moto, still `deleting` on AWS: shown where the request asks for it.
    if c.operation.starts_with("Describe") {
        let wanted: Vec<String> = c
            .params
            .iter()
            .filter(|(k, _)| k.starts_with("Filters.") && k.contains(".Values."))
            .map(|(_, v)| v.to_lowercase())
            .chain(c.param(id_tag).map(str::to_lowercase))
            .collect();
        let map = if cluster { &w.db_clusters } else { &w.db_instances };
        let mut ghosts = Vec::new();
        for (id, db) in map {
            let Some(at) = db.deleted else { continue };
            if present.contains(id) || now >= at + w.profile.state(delete) || !(wanted.is_empty() || wanted.contains(id)) {
                continue;
            }
            if let Some(mut e) = db.last_seen.clone() {
                e.name = tag.to_string();
                if let Some(s) = e.child_mut(status_tag) {
                    s.set_text("deleting");
                }
                ghosts.push(e);
            }
        }
        if !ghosts.is_empty() {
            let list = if cluster { "DBClusters" } else { "DBInstances" };
            if let Some(parent) = root.find_mut(list) {
                n += ghosts.len();
                parent.children.extend(ghosts.into_iter().map(xml::Node::El));
            }
        }
    }
    for _ in 0..n {
        w.fire(behaviour, &c.operation);
    }
    n > 0
}

/// moto answers NotFound for a resource AWS still shows `deleting`: a describe by
/// identifier becomes a describe that finds it.
fn observe_xml_error(w: &mut World, c: &Call, doc: &mut xml::Document, now: Instant) -> bool {
    let (cluster, id_tag) = match c.operation.as_str() {
        "DescribeDBClusters" => (true, "DBClusterIdentifier"),
        "DescribeDBInstances" => (false, "DBInstanceIdentifier"),
        _ => return false,
    };
    let behaviour = if cluster { Behaviour::DbClusterStates } else { Behaviour::DbInstanceStates };
    if !w.on(behaviour) {
        return false;
    }
    let Some(id) = c.param(id_tag).map(str::to_lowercase) else { return false };
    let delete = if cluster { w.d().db_cluster_delete } else { w.d().db_instance_delete };
    let map = if cluster { &w.db_clusters } else { &w.db_instances };
    let Some(db) = map.get(&id) else { return false };
    let (Some(at), Some(mut e)) = (db.deleted, db.last_seen.clone()) else { return false };
    if now >= at + w.profile.state(delete) {
        return false;
    }
    let (tag, status_tag, action) = if cluster { ("DBCluster", "Status", "DescribeDBClusters") } else { ("DBInstance", "DBInstanceStatus", "DescribeDBInstances") };
    e.name = tag.into();
    if let Some(s) = e.child_mut(status_tag) {
        s.set_text("deleting");
    }
    let list = if cluster { "DBClusters" } else { "DBInstances" };
    let text = format!(
        "<{action}Response xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><{action}Result><{list}>{}</{list}></{action}Result><ResponseMetadata><RequestId>realistic</RequestId></ResponseMetadata></{action}Response>",
        e.to_string()
    );
    *doc = xml::parse(&text).unwrap();
    w.fire(behaviour, action);
    true
}

fn observe_json(w: &mut World, c: &Call, json: &mut serde_json::Value, now: Instant) -> bool {
    use Behaviour as B;
    let d = w.d().clone();
    let op = c.operation.as_str();
    let mut changed = false;
    match op {
        "CreateService" => {
            let s = &json["service"];
            if let Some(arn) = s["serviceArn"].as_str() {
                let net = &c.json["networkConfiguration"]["awsvpcConfiguration"];
                let strings = |v: &serde_json::Value| v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
                let service = Service {
                    cluster: s["clusterArn"].as_str().unwrap_or("").to_string(),
                    created: now,
                    deleted: None,
                    rollout_started: now,
                    rollout_fails: w.on(B::EcsRolloutFails),
                    task_definition: s["taskDefinition"].as_str().unwrap_or("").to_string(),
                    subnets: strings(&net["subnets"]),
                    security_groups: strings(&net["securityGroups"]),
                };
                w.services.entry(arn.to_string()).or_insert(service);
            }
        }
        "UpdateService" => {
            let arn = json["service"]["serviceArn"].as_str().unwrap_or("").to_string();
            let fails = w.on(B::EcsRolloutFails);
            if let Some(s) = w.services.get_mut(&arn) {
                // A new deployment: another task definition, or forced (the same one again).
                let task_definition = c.str("/taskDefinition");
                let new_deployment = (!task_definition.is_empty() && task_definition != s.task_definition) || c.json["forceNewDeployment"].as_bool() == Some(true);
                if !task_definition.is_empty() {
                    s.task_definition = task_definition;
                }
                if new_deployment {
                    s.rollout_started = now;
                    s.rollout_fails = fails;
                }
            }
        }
        "DeleteService" => {
            let arn = json["service"]["serviceArn"].as_str().unwrap_or("").to_string();
            if let Some(s) = w.services.get_mut(&arn) {
                s.deleted.get_or_insert(now);
            }
        }
        "CreateVpcLink" => {
            if let Some(id) = json["id"].as_str() {
                let targets: Vec<String> = c.json["targetArns"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
                let fails = targets.iter().any(|t| w.lb_provisioning(t, now));
                w.vpc_links.insert(id.to_string(), Link { created: now, fails, deleted: None, last_seen: None, targets });
            }
        }
        "DeleteVpcLink" => {
            if let Some(l) = w.vpc_links.get_mut(&c.segments[1]) {
                l.deleted.get_or_insert(now);
            }
        }
        "CreateStage" => {
            if c.json["cacheClusterEnabled"].as_bool() == Some(true) {
                w.stages.insert((c.segments[1].clone(), c.str("/stageName")), now);
            }
        }
        "UpdateStage" => {
            let resized = c.json["patchOperations"].as_array().into_iter().flatten().any(|p| {
                let path = p["path"].as_str().unwrap_or("");
                (path == "/cacheClusterEnabled" && p["value"].as_str() == Some("true")) || path == "/cacheClusterSize"
            });
            if resized {
                w.stages.insert((c.segments[1].clone(), c.segments[3].clone()), now);
            }
        }
        _ => {}
    }

    let rollouts = w.on(B::EcsRollout) || w.on(B::EcsRolloutFails);
    if matches!(op, "CreateService" | "UpdateService" | "DescribeServices" | "DeleteService") && (rollouts || w.on(B::EcsServiceDraining)) {
        let services: Vec<&mut serde_json::Value> = match json.get_mut("services").and_then(|s| s.as_array_mut()) {
            Some(list) => list.iter_mut().collect(),
            None => json.get_mut("service").into_iter().collect(),
        };
        let mut fired = Vec::new();
        for s in services {
            let Some(arn) = s["serviceArn"].as_str().map(str::to_string) else { continue };
            let Some(tracked) = w.services.get(&arn) else { continue };
            if w.on(B::EcsServiceDraining) && w.service_draining(tracked, now) {
                s["status"] = "DRAINING".into();
                fired.push(B::EcsServiceDraining);
            }
            if rollouts && tracked.deleted.is_none() {
                let desired = s["desiredCount"].as_i64().unwrap_or(0);
                let elapsed = now.saturating_duration_since(tracked.rollout_started).as_secs_f64();
                let total = w.profile.state(d.ecs_rollout).as_secs_f64();
                let done = desired == 0 || elapsed >= total;
                let running = if done && !tracked.rollout_fails { desired } else if tracked.rollout_fails { 0 } else { ((desired as f64) * elapsed / total.max(1e-9)).floor() as i64 };
                let (state, reason) = if !done {
                    ("IN_PROGRESS", None)
                } else if tracked.rollout_fails && desired > 0 {
                    ("FAILED", Some("ECS deployment circuit breaker: tasks failed to start.".to_string()))
                } else {
                    ("COMPLETED", None)
                };
                let threshold = (desired / 2).clamp(3, 200);
                s["runningCount"] = running.into();
                s["pendingCount"] = (if done { 0 } else { desired - running }).into();
                if let Some(deployments) = s["deployments"].as_array_mut() {
                    for dep in deployments.iter_mut().filter(|dep| dep["status"] == "PRIMARY") {
                        let id = dep["id"].as_str().unwrap_or("").to_string();
                        dep["rolloutState"] = state.into();
                        dep["rolloutStateReason"] = reason.clone().unwrap_or_else(|| format!("ECS deployment {id} {}.", if done { "completed" } else { "in progress" })).into();
                        dep["desiredCount"] = desired.into();
                        dep["runningCount"] = running.into();
                        dep["pendingCount"] = (if done { 0 } else { desired - running }).into();
                        dep["failedTasks"] = (if state == "FAILED" { threshold } else { 0 }).into();
                    }
                }
                fired.push(if state == "FAILED" { B::EcsRolloutFails } else { B::EcsRollout });
            }
        }
        changed |= !fired.is_empty();
        for b in fired {
            w.fire(b, op);
        }
    }

    if matches!(op, "CreateVpcLink" | "GetVpcLink" | "GetVpcLinks") && w.on(B::VpcLinkStates) {
        let links: Vec<&mut serde_json::Value> = match json.get_mut("item").and_then(|s| s.as_array_mut()) {
            Some(list) => list.iter_mut().collect(),
            None => vec![&mut *json],
        };
        let mut n = 0;
        for l in links {
            let Some(id) = l["id"].as_str().map(str::to_string) else { continue };
            let Some(link) = w.vpc_links.get_mut(&id) else { continue };
            link.last_seen = Some(l.clone());
            let scale = w.profile.scale;
            let after = |secs: f64| now >= link.created + Duration::from_secs_f64(secs * scale);
            let (status, message) = if link.fails {
                if after(d.vpc_link_fail) {
                    ("FAILED", "NLB is not in active state. If you recently created this NLB, please wait for it to become active and try again.")
                } else {
                    ("PENDING", "")
                }
            } else if after(d.vpc_link_create) {
                continue;
            } else {
                ("PENDING", "")
            };
            l["status"] = status.into();
            l["statusMessage"] = message.into();
            n += 1;
        }
        changed |= n > 0;
        for _ in 0..n {
            w.fire(B::VpcLinkStates, op);
        }
    }

    if matches!(op, "CreateStage" | "UpdateStage" | "GetStage" | "GetStages") && w.on(B::StageCacheCreating) {
        let api = c.segments[1].clone();
        let stages: Vec<&mut serde_json::Value> = match json.get_mut("item").and_then(|s| s.as_array_mut()) {
            Some(list) => list.iter_mut().collect(),
            None => vec![&mut *json],
        };
        let mut n = 0;
        for s in stages {
            let name = s["stageName"].as_str().unwrap_or("").to_string();
            let Some(since) = w.stages.get(&(api.clone(), name)) else { continue };
            if s["cacheClusterEnabled"].as_bool() == Some(true) && w.within(*since, d.stage_cache, now) {
                s["cacheClusterStatus"] = "CREATE_IN_PROGRESS".into();
                n += 1;
            }
        }
        changed |= n > 0;
        for _ in 0..n {
            w.fire(B::StageCacheCreating, op);
        }
    }
    changed
}

/// A VPC link moto already dropped is `DELETING` on AWS for a while: GetVpcLink finds it.
fn synthesize_deleting_vpc_link(w: &mut World, c: &Call, status: &str, body: &mut Vec<u8>, now: Instant) {
    if !w.on(Behaviour::VpcLinkStates) || !status.contains(" 404") {
        return;
    }
    let delete = w.d().vpc_link_delete;
    let Some(link) = w.vpc_links.get(&c.segments[1]) else { return };
    let (Some(at), Some(mut seen)) = (link.deleted, link.last_seen.clone()) else { return };
    if now >= at + w.profile.state(delete) {
        return;
    }
    seen["status"] = "DELETING".into();
    seen["statusMessage"] = "".into();
    *body = seen.to_string().into_bytes();
    w.fire(Behaviour::VpcLinkStates, "GetVpcLink");
}

// ---------------------------------------------------------------------------------------

fn serve(client: TcpStream, upstream: &str, world: &Mutex<World>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while let Some(request) = read_request(&mut reader)? {
        if request.head[0].contains(" /__realistic/") {
            let body = control(world, &request);
            respond(&mut client, "HTTP/1.1 200 OK", &["Content-Type: application/json".into()], body.as_bytes())?;
            continue;
        }
        let call = Call::new(&request);
        let now = Instant::now();
        let (refusal, n, hold) = {
            let mut w = world.lock().unwrap();
            w.requests += 1;
            let refusal = refuse(&mut w, &call, now);
            if let Some((b, ..)) = &refusal {
                w.fire(*b, &call.operation);
            }
            let api = call.mutated_rest_api().filter(|_| refusal.is_none() && w.on(Behaviour::ApiGatewayConflict));
            if let Some(api) = &api {
                *w.api_in_flight.entry(api.clone()).or_default() += 1;
            }
            let hold = api.map(|api| (api, w.profile.state(w.d().api_change).max(Duration::from_millis(20))));
            (refusal, w.requests, hold)
        };
        if let Some((_, status, code, message)) = refusal {
            let (status, headers, body) = aws_error(call.protocol, status, code, &message, n);
            respond(&mut client, &status, &headers, &body)?;
            continue;
        }
        // A change to a REST API takes API Gateway a moment; another change to the same API
        // in that moment is the concurrent modification it refuses.
        if let Some((_, pause)) = &hold {
            std::thread::sleep(*pause);
        }
        let forwarded = forward(upstream, &request);
        if let Some((api, _)) = &hold {
            let mut w = world.lock().unwrap();
            if let Some(n) = w.api_in_flight.get_mut(api) {
                *n -= 1;
            }
        }
        let (mut status, mut headers, mut body) = forwarded?;
        let before = body.clone();
        {
            let mut w = world.lock().unwrap();
            observe(&mut w, &call, &status, &mut body, Instant::now());
            w.note(&format!("{} {}", call.operation, status.split_whitespace().nth(1).unwrap_or("")));
        }
        if body != before {
            headers.retain(|h| !h.to_ascii_lowercase().starts_with("content-length:"));
            // A NotFound turned into an answer that finds the resource `deleting`.
            if !status.split_whitespace().nth(1).is_some_and(|s| s.starts_with('2')) {
                status = "HTTP/1.1 200 OK".into();
                headers.retain(|h| !h.to_ascii_lowercase().starts_with("x-amzn-errortype:"));
            }
        }
        respond(&mut client, &status, &headers, &body)?;
    }
    Ok(())
}

/// `GET /__realistic/fired`: what fired, as JSON (for the bench and the example).
fn control(world: &Mutex<World>, _request: &Request) -> String {
    let w = world.lock().unwrap();
    let fired: BTreeMap<String, usize> = w.fired.iter().map(|(b, n)| (format!("{b:?}"), *n)).collect();
    serde_json::json!({ "fired": fired, "details": w.details, "requests": w.requests, "uptime_s": w.started.elapsed().as_secs_f64() }).to_string()
}

/// Just enough XML for AWS's answers: elements, attributes kept verbatim, text kept raw.
pub mod xml {
    #[derive(Debug, Clone)]
    pub enum Node {
        El(Element),
        Text(String),
    }

    #[derive(Debug, Clone)]
    pub struct Element {
        pub name: String,
        pub attrs: String,
        pub children: Vec<Node>,
    }

    pub struct Document {
        pub prolog: String,
        pub root: Element,
    }

    impl std::fmt::Display for Document {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}{}", self.prolog, self.root)
        }
    }

    pub fn parse(text: &str) -> Option<Document> {
        let start = text.find('<')?;
        let mut prolog = text[..start].to_string();
        let mut rest = &text[start..];
        while rest.starts_with("<?") || rest.starts_with("<!--") {
            let end = if rest.starts_with("<?") { rest.find("?>")? + 2 } else { rest.find("-->")? + 3 };
            prolog.push_str(&rest[..end]);
            rest = &rest[end..];
            let ws = rest.len() - rest.trim_start().len();
            prolog.push_str(&rest[..ws]);
            rest = &rest[ws..];
        }
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        while !rest.is_empty() {
            if let Some(tail) = rest.strip_prefix("</") {
                let end = tail.find('>')?;
                rest = &tail[end + 1..];
                let done = stack.pop()?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::El(done)),
                    None => {
                        root = Some(done);
                        break;
                    }
                }
            } else if rest.starts_with("<!--") {
                let end = rest.find("-->")? + 3;
                rest = &rest[end..];
            } else if let Some(tail) = rest.strip_prefix('<') {
                let end = tail.find('>')?;
                let inner = &tail[..end];
                rest = &tail[end + 1..];
                let (inner, closed) = match inner.strip_suffix('/') {
                    Some(i) => (i, true),
                    None => (inner, false),
                };
                let (name, attrs) = match inner.find(char::is_whitespace) {
                    Some(i) => (&inner[..i], &inner[i..]),
                    None => (inner, ""),
                };
                let el = Element { name: name.to_string(), attrs: attrs.to_string(), children: Vec::new() };
                if closed {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::El(el)),
                        None => {
                            root = Some(el);
                            break;
                        }
                    }
                } else {
                    stack.push(el);
                }
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::Text(rest[..end].to_string()));
                }
                rest = &rest[end..];
            }
        }
        Some(Document { prolog, root: root? })
    }

    impl std::fmt::Display for Element {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.children.is_empty() {
                return write!(f, "<{}{}/>", self.name, self.attrs);
            }
            write!(f, "<{}{}>", self.name, self.attrs)?;
            for c in &self.children {
                match c {
                    Node::El(e) => write!(f, "{e}")?,
                    Node::Text(t) => f.write_str(t)?,
                }
            }
            write!(f, "</{}>", self.name)
        }
    }

    impl Element {
        pub fn child(&self, name: &str) -> Option<&Element> {
            self.children.iter().find_map(|c| match c {
                Node::El(e) if e.name == name => Some(e),
                _ => None,
            })
        }

        pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
            self.children.iter_mut().find_map(|c| match c {
                Node::El(e) if e.name == name => Some(e),
                _ => None,
            })
        }

        /// The first element of that name, depth first (this one included).
        pub fn find(&self, name: &str) -> Option<&Element> {
            if self.name == name {
                return Some(self);
            }
            self.children.iter().find_map(|c| match c {
                Node::El(e) => e.find(name),
                _ => None,
            })
        }

        pub fn find_mut(&mut self, name: &str) -> Option<&mut Element> {
            if self.name == name {
                return Some(self);
            }
            self.children.iter_mut().find_map(|c| match c {
                Node::El(e) => e.find_mut(name),
                _ => None,
            })
        }

        pub fn text(&self) -> String {
            self.children.iter().filter_map(|c| if let Node::Text(t) = c { Some(t.as_str()) } else { None }).collect::<String>().trim().to_string()
        }

        pub fn set_text(&mut self, text: &str) {
            self.children = vec![Node::Text(text.to_string())];
        }

        /// Calls `f` on every element, this one first, then depth first.
        pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Element)) {
            f(self);
            for c in &mut self.children {
                if let Node::El(e) = c {
                    e.visit_mut(f);
                }
            }
        }
    }
}
