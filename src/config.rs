//! `infra.toml`: the user's description of the stack, its defaults and validation.
//!
//! Every check here runs before the first AWS call, and every error names the key and the
//! bad value, so a typo never costs a half-created stack.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Number of subnets carved from the VPC CIDR: public, ecs and db in each of two AZs.
pub const SUBNET_COUNT: usize = 6;
/// AWS refuses subnets smaller than /28; six of them (rounded up to eight) need a /25.
const MAX_VPC_PREFIX: u8 = 25;
/// AWS refuses VPCs larger than /16.
const MIN_VPC_PREFIX: u8 = 16;
/// Stack names end up in ALB and target-group names, which AWS caps at 32 characters,
/// together with a suffix of ours.
const MAX_STACK_NAME_LEN: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the stack: tags every resource (`infra:stack`) and names the state file.
    pub stack: String,
    /// AWS region; when absent the SDK's chain decides (`AWS_REGION`, profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where the state and its lock live: absent → `state/<stack>.json` on this machine;
    /// `s3://bucket/prefix/` → `<prefix><stack>.json` in that (existing, versioned) bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default = "default_vpc_cidr")]
    pub vpc_cidr: String,
    #[serde(default = "default_az_count")]
    pub az_count: u8,
    /// Explicit AZ names; when absent the first `az_count` available AZs of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    /// 1 (one shared NAT gateway) or `az_count` (one per AZ).
    #[serde(default = "default_nat_gateways")]
    pub nat_gateways: u8,
    #[serde(default = "default_container_port")]
    pub container_port: u16,

    pub db_password_ssm_param: String,
    pub http_basic_auth_password_ssm_param: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_code_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The service's `DB_SSLMODE` with a prebuilt `image` (default `require`: TLS, the
    /// certificate not checked). An image built from `source_code_path` carries the RDS CA
    /// bundle and always gets `verify-full` with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sslmode: Option<String>,
    /// Path, inside a prebuilt `image`, of the CA bundle for `verify-ca` / `verify-full`
    /// (the service's `DB_SSLROOTCERT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sslrootcert: Option<String>,
    /// What builds and pushes the image from `source_code_path`: `auto` (the first of
    /// docker, podman, buildah that works), or one of them.
    #[serde(default = "default_image_builder")]
    pub image_builder: String,
    #[serde(default = "default_db_user")]
    pub db_user: String,
    #[serde(default = "default_db_name")]
    pub db_name: String,
    #[serde(default = "default_http_basic_auth_user")]
    pub http_basic_auth_user: String,
    #[serde(default = "default_db_instance_class")]
    pub db_instance_class: String,
    #[serde(default = "default_db_engine_version")]
    pub db_engine_version: String,
    /// Fargate task size: CPU units and memory (MiB), one of the combinations Fargate allows.
    #[serde(default = "default_task_cpu")]
    pub task_cpu: u32,
    #[serde(default = "default_task_memory")]
    pub task_memory: u32,
    /// Whether `up` waits for the service's deployment to roll out (all tasks running on the
    /// new task definition). Off only where rollouts cannot complete (an emulator).
    #[serde(default = "default_true")]
    pub wait_for_rollout: bool,
    /// How long `up` waits for a rollout before it gives up (the service stays recorded, and
    /// the next `up` picks it up).
    #[serde(default = "default_rollout_timeout_seconds")]
    pub rollout_timeout_seconds: u32,
    #[serde(default = "default_desired_count")]
    pub desired_count: u32,
    #[serde(default = "default_cache_ttl_seconds")]
    pub cache_ttl_seconds: u32,
    /// API Gateway stage cache size in GB, one of the sizes API Gateway offers.
    #[serde(default = "default_cache_cluster_size")]
    pub cache_cluster_size: String,
    /// How API Gateway reaches the service: `public` (over the internet-facing ALB) or
    /// `private` (an internal NLB behind an API Gateway VPC link; no ALB).
    #[serde(default = "default_integration")]
    pub integration: String,
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
    #[serde(default)]
    pub db_deletion_protection: bool,
    #[serde(default)]
    pub db_final_snapshot: bool,
}

fn default_vpc_cidr() -> String {
    "10.0.0.0/16".into()
}
fn default_az_count() -> u8 {
    2
}
fn default_nat_gateways() -> u8 {
    1
}
fn default_container_port() -> u16 {
    8080
}
fn default_image_builder() -> String {
    ImageBuilder::Auto.as_str().into()
}
fn default_db_user() -> String {
    "postgres".into()
}
fn default_db_name() -> String {
    "books".into()
}
fn default_http_basic_auth_user() -> String {
    "admin".into()
}
fn default_db_instance_class() -> String {
    "db.t4g.medium".into()
}
fn default_db_engine_version() -> String {
    "16.4".into()
}
fn default_task_cpu() -> u32 {
    256
}
fn default_task_memory() -> u32 {
    512
}
fn default_true() -> bool {
    true
}
fn default_rollout_timeout_seconds() -> u32 {
    20 * 60
}
fn default_desired_count() -> u32 {
    2
}
fn default_cache_ttl_seconds() -> u32 {
    60
}
fn default_cache_cluster_size() -> String {
    "0.5".into()
}
/// The cache sizes (GB) API Gateway offers for a stage.
pub const CACHE_CLUSTER_SIZES: [&str; 8] = ["0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237"];
/// Private by default: the public route sends the basic-auth password in clear text over
/// the internet to a load balancer open to 0.0.0.0/0.
fn default_integration() -> String {
    Integration::Private.as_str().into()
}
fn default_log_retention_days() -> u32 {
    30
}

/// How API Gateway reaches the service (`integration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    /// HTTP_PROXY to the internet-facing Application Load Balancer, as the seed does.
    Public,
    /// HTTP_PROXY through an API Gateway VPC link to an internal Network Load Balancer in
    /// the service subnets: the service is not reachable from the internet except through
    /// the API, and no ALB is made.
    Private,
}

impl Integration {
    pub const ALL: [Integration; 2] = [Integration::Public, Integration::Private];

    pub fn as_str(self) -> &'static str {
        match self {
            Integration::Public => "public",
            Integration::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Integration> {
        Integration::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// What builds and pushes the image from `source_code_path` (`image_builder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBuilder {
    /// The first of Docker, Podman and Buildah that works here, in that order.
    Auto,
    Docker,
    Podman,
    Buildah,
}

impl ImageBuilder {
    pub const ALL: [ImageBuilder; 4] = [ImageBuilder::Auto, ImageBuilder::Docker, ImageBuilder::Podman, ImageBuilder::Buildah];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageBuilder::Auto => "auto",
            ImageBuilder::Docker => "docker",
            ImageBuilder::Podman => "podman",
            ImageBuilder::Buildah => "buildah",
        }
    }

    pub fn parse(s: &str) -> Option<ImageBuilder> {
        ImageBuilder::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// A configuration problem, always naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config key `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

/// The validated configuration plus what is derived from it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The directory of the config file: `source_code_path` is relative to it.
    pub base_dir: std::path::PathBuf,
    /// The team state location from `state`; `None`: the local state directory.
    pub state: Option<crate::state::S3Url>,
    pub vpc_cidr: Ipv4Net,
    /// Subnet CIDRs in the order public.a, public.b, ecs.a, ecs.b, db.a, db.b.
    pub subnet_cidrs: Vec<Ipv4Net>,
    pub integration: Integration,
    pub image_builder: ImageBuilder,
}

impl Config {
    /// The defaults `infra init` writes, for the given stack name.
    pub fn with_defaults(stack: &str) -> Config {
        Config {
            stack: stack.to_string(),
            region: None,
            state: None,
            vpc_cidr: default_vpc_cidr(),
            az_count: default_az_count(),
            availability_zones: None,
            nat_gateways: default_nat_gateways(),
            container_port: default_container_port(),
            db_password_ssm_param: format!("/{stack}/db-password"),
            http_basic_auth_password_ssm_param: format!("/{stack}/http-basic-auth-password"),
            source_code_path: Some("api".into()),
            image: None,
            db_sslmode: None,
            db_sslrootcert: None,
            image_builder: default_image_builder(),
            db_user: default_db_user(),
            db_name: default_db_name(),
            http_basic_auth_user: default_http_basic_auth_user(),
            db_instance_class: default_db_instance_class(),
            db_engine_version: default_db_engine_version(),
            task_cpu: default_task_cpu(),
            task_memory: default_task_memory(),
            wait_for_rollout: true,
            rollout_timeout_seconds: default_rollout_timeout_seconds(),
            desired_count: default_desired_count(),
            cache_ttl_seconds: default_cache_ttl_seconds(),
            cache_cluster_size: default_cache_cluster_size(),
            integration: default_integration(),
            log_retention_days: default_log_retention_days(),
            db_deletion_protection: false,
            db_final_snapshot: false,
        }
    }

    /// Parses TOML text; serde's own messages already name unknown and missing keys.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line_start = e.span().map(|s| text[..s.start].rfind('\n').map_or(0, |i| i + 1));
            let line_text = line_start.and_then(|start| text[start..].lines().next()).unwrap_or("");
            // serde names the key itself only in "unknown field `k`" / "missing field `k`";
            // elsewhere the backticks quote the bad value ("invalid value: integer `-5`"), so
            // the key is the one on the line the error points at.
            let named = e.message().starts_with("unknown field") || e.message().starts_with("missing field");
            let from_message = || e.message().split('`').nth(1).map(str::to_string);
            let from_line = || line_text.split('=').next().map(|k| k.trim().to_string()).filter(|k| !k.is_empty() && !k.starts_with('#'));
            let key = if named { from_message().or_else(from_line) } else { from_line().or_else(from_message) }
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "(file)".to_string());
            let line_no = line_start.map(|start| text[..start].lines().count() + 1);
            let message = match line_no {
                Some(n) => format!("{} (line {n}: {})", e.message().trim(), line_text.trim()),
                None => e.message().trim().to_string(),
            };
            ConfigError { key, message }
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read config {}: {e} (run `infra init` to write one)",
                path.display()
            )
        })?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Checks every key and derives the subnet plan.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        validate_stack_name(&self.stack)?;
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(bad("region", format!("{region:?} is not a region name like \"us-east-1\"")));
            }
        }
        let state = match &self.state {
            None => None,
            Some(url) => Some(crate::state::S3Url::parse(url).map_err(|e| bad("state", e))?),
        };
        let vpc_cidr: Ipv4Net = self.vpc_cidr.parse().map_err(|_| {
            bad("vpc_cidr", format!("{:?} is not an IPv4 CIDR block like \"10.0.0.0/16\"", self.vpc_cidr))
        })?;
        if vpc_cidr.network() != vpc_cidr.addr() {
            return Err(bad(
                "vpc_cidr",
                format!("{:?} has host bits set; did you mean \"{}\"?", self.vpc_cidr, vpc_cidr.trunc()),
            ));
        }
        if vpc_cidr.prefix_len() < MIN_VPC_PREFIX || vpc_cidr.prefix_len() > MAX_VPC_PREFIX {
            return Err(bad(
                "vpc_cidr",
                format!(
                    "{:?} cannot hold {SUBNET_COUNT} subnets: AWS allows VPCs from /{MIN_VPC_PREFIX} to /28 and subnets no smaller than /28, so the prefix must be between /{MIN_VPC_PREFIX} and /{MAX_VPC_PREFIX}",
                    self.vpc_cidr
                ),
            ));
        }
        if self.az_count != 2 {
            return Err(bad("az_count", format!("{} is not supported: the stack spans exactly 2 availability zones", self.az_count)));
        }
        if let Some(azs) = &self.availability_zones {
            if azs.len() != self.az_count as usize {
                return Err(bad(
                    "availability_zones",
                    format!("lists {} zones but az_count is {}", azs.len(), self.az_count),
                ));
            }
            if azs[0] == azs[1] {
                return Err(bad("availability_zones", format!("lists {:?} twice", azs[0])));
            }
        }
        if self.nat_gateways != 1 && self.nat_gateways != self.az_count {
            return Err(bad(
                "nat_gateways",
                format!("{} is not supported: use 1 (shared) or {} (one per AZ)", self.nat_gateways, self.az_count),
            ));
        }
        if self.container_port == 0 {
            return Err(bad("container_port", "0 is not a TCP port"));
        }
        validate_ssm_param("db_password_ssm_param", &self.db_password_ssm_param)?;
        validate_ssm_param("http_basic_auth_password_ssm_param", &self.http_basic_auth_password_ssm_param)?;
        if self.db_password_ssm_param == self.http_basic_auth_password_ssm_param {
            return Err(bad(
                "http_basic_auth_password_ssm_param",
                format!("{:?} is also db_password_ssm_param; the two secrets need separate parameters", self.http_basic_auth_password_ssm_param),
            ));
        }
        match (&self.source_code_path, &self.image) {
            (Some(_), Some(_)) => {
                return Err(bad("image", "set either `image` or `source_code_path`, not both"));
            }
            (None, None) => {
                return Err(bad("source_code_path", "missing: set `source_code_path` (the books-api source) or `image` (a prebuilt image URI)"));
            }
            (_, Some(image)) if image.trim().is_empty() || image.contains(char::is_whitespace) => {
                return Err(bad("image", format!("{image:?} is not an image URI")));
            }
            _ => {}
        }
        const SSLMODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
        if let Some(mode) = &self.db_sslmode {
            if self.image.is_none() {
                return Err(bad("db_sslmode", "applies to a prebuilt `image` only: an image built from `source_code_path` carries the RDS CA bundle and verifies Aurora's certificate (verify-full)"));
            }
            if !SSLMODES.contains(&mode.as_str()) {
                return Err(bad("db_sslmode", format!("{mode:?} is not a libpq sslmode ({})", SSLMODES.join(", "))));
            }
            if mode.starts_with("verify-") && self.db_sslrootcert.is_none() {
                return Err(bad("db_sslrootcert", format!("missing: db_sslmode = {mode:?} checks Aurora's certificate against a CA bundle, and the RDS CA is not among the default roots; set it to the bundle's path inside the image")));
            }
        }
        if let Some(path) = &self.db_sslrootcert {
            if self.image.is_none() || !path.starts_with('/') {
                return Err(bad("db_sslrootcert", format!("{path:?}: set it, with a prebuilt `image`, to the absolute path of a CA bundle inside that image")));
            }
        }
        let image_builder = ImageBuilder::parse(&self.image_builder).ok_or_else(|| {
            let names: Vec<String> = ImageBuilder::ALL.iter().map(|b| format!("{:?}", b.as_str())).collect();
            bad("image_builder", format!("{:?} is not one of {}", self.image_builder, names.join(", ")))
        })?;
        validate_identifier("db_user", &self.db_user, 63)?;
        if self.db_user.eq_ignore_ascii_case("admin") || self.db_user.eq_ignore_ascii_case("rdsadmin") {
            return Err(bad("db_user", format!("{:?} is reserved by Aurora PostgreSQL", self.db_user)));
        }
        validate_identifier("db_name", &self.db_name, 63)?;
        if self.http_basic_auth_user.is_empty() || self.http_basic_auth_user.contains([':', '@', '/']) {
            return Err(bad(
                "http_basic_auth_user",
                format!("{:?} must be non-empty and free of ':', '@' and '/' (it is embedded in the integration URL)", self.http_basic_auth_user),
            ));
        }
        if !self.db_instance_class.starts_with("db.") {
            return Err(bad("db_instance_class", format!("{:?} is not an RDS instance class like \"db.t4g.medium\"", self.db_instance_class)));
        }
        let version_ok = !self.db_engine_version.is_empty()
            && self.db_engine_version.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !version_ok {
            return Err(bad("db_engine_version", format!("{:?} is not an Aurora PostgreSQL version like \"16.4\"", self.db_engine_version)));
        }
        // Fargate's CPU / memory combinations.
        let memory_ok = match self.task_cpu {
            256 => [512, 1024, 2048].contains(&self.task_memory),
            512 => (1024..=4096).contains(&self.task_memory) && self.task_memory % 1024 == 0,
            1024 => (2048..=8192).contains(&self.task_memory) && self.task_memory % 1024 == 0,
            2048 => (4096..=16384).contains(&self.task_memory) && self.task_memory % 1024 == 0,
            4096 => (8192..=30720).contains(&self.task_memory) && self.task_memory % 1024 == 0,
            _ => return Err(bad("task_cpu", format!("{} is not a Fargate CPU size (256, 512, 1024, 2048, 4096)", self.task_cpu))),
        };
        if !memory_ok {
            return Err(bad("task_memory", format!("{} MiB is not allowed with task_cpu = {} on Fargate", self.task_memory, self.task_cpu)));
        }
        if self.rollout_timeout_seconds == 0 || self.rollout_timeout_seconds > 6 * 3600 {
            return Err(bad("rollout_timeout_seconds", format!("{} is outside 1..=21600", self.rollout_timeout_seconds)));
        }
        if self.desired_count == 0 || self.desired_count > 100 {
            return Err(bad("desired_count", format!("{} is outside 1..=100", self.desired_count)));
        }
        if self.cache_ttl_seconds > 3600 {
            return Err(bad("cache_ttl_seconds", format!("{} exceeds API Gateway's maximum of 3600", self.cache_ttl_seconds)));
        }
        if !CACHE_CLUSTER_SIZES.contains(&self.cache_cluster_size.as_str()) {
            return Err(bad(
                "cache_cluster_size",
                format!("{:?} is not a size API Gateway offers ({})", self.cache_cluster_size, CACHE_CLUSTER_SIZES.join(", ")),
            ));
        }
        let integration = Integration::parse(&self.integration).ok_or_else(|| {
            bad("integration", format!("{:?} is neither \"public\" (through the ALB) nor \"private\" (a VPC link to an internal NLB)", self.integration))
        })?;
        const RETENTION: [u32; 22] = [
            1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
        ];
        if !RETENTION.contains(&self.log_retention_days) {
            return Err(bad(
                "log_retention_days",
                format!("{} is not one CloudWatch Logs accepts ({RETENTION:?})", self.log_retention_days),
            ));
        }
        let subnet_cidrs = carve_subnets(vpc_cidr);
        Ok(Settings { config: self, base_dir: ".".into(), state, vpc_cidr, subnet_cidrs, integration, image_builder })
    }
}

/// `source_code_path` (relative to the config's directory) must be a directory holding the
/// service's Dockerfile.
pub fn check_source_code_path(base_dir: &Path, source: &str) -> Result<(), ConfigError> {
    let dir = base_dir.join(source);
    if !dir.is_dir() {
        return Err(bad("source_code_path", format!("{source:?} does not exist (looked for the directory {}); point it at the books-api source, or set `image` to a prebuilt image URI", dir.display())));
    }
    if !dir.join("Dockerfile").is_file() {
        return Err(bad("source_code_path", format!("{source:?} has no Dockerfile ({} is missing)", dir.join("Dockerfile").display())));
    }
    Ok(())
}

fn validate_stack_name(stack: &str) -> Result<(), ConfigError> {
    let problem = if stack.is_empty() {
        Some("is empty".to_string())
    } else if stack.len() > MAX_STACK_NAME_LEN {
        Some(format!("is {} characters long; the limit is {MAX_STACK_NAME_LEN} (it prefixes load balancer names, which AWS caps at 32)", stack.len()))
    } else if !stack.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("must start with a lowercase letter".into())
    } else if !stack.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        Some("may contain only lowercase letters, digits and '-' (AWS rejects others in resource names)".into())
    } else if stack.ends_with('-') || stack.contains("--") {
        Some("may not end with '-' or contain \"--\"".into())
    } else {
        None
    };
    match problem {
        Some(p) => Err(bad("stack", format!("{stack:?} {p}"))),
        None => Ok(()),
    }
}

fn validate_ssm_param(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(bad(key, "is empty: name the SSM parameter that holds the secret"));
    }
    let ok = name.len() <= 1011
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !name.to_ascii_lowercase().trim_start_matches('/').starts_with("aws")
        && !name.to_ascii_lowercase().trim_start_matches('/').starts_with("ssm");
    if !ok {
        return Err(bad(key, format!("{name:?} is not a valid SSM parameter name (letters, digits, _ . - /; not starting with aws or ssm)")));
    }
    Ok(())
}

fn validate_identifier(key: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(bad(key, format!("{value:?} must start with a letter and hold only letters, digits and '_' (at most {max})")));
    }
    Ok(())
}

/// Splits the VPC block into eight equal parts and takes the first six, in the order
/// public.a, public.b, ecs.a, ecs.b, db.a, db.b. Deterministic, so a re-run or an adoption
/// always finds the same CIDRs.
pub fn carve_subnets(vpc: Ipv4Net) -> Vec<Ipv4Net> {
    let prefix = vpc.prefix_len() + 3;
    let size = 1u32 << (32 - prefix);
    let base = u32::from(vpc.network());
    (0..SUBNET_COUNT as u32)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(base + i * size), prefix).expect("prefix <= 28"))
        .collect()
}

/// The commented file `infra init` writes.
pub fn render_init_file(config: &Config) -> String {
    format!(
        r#"# infra.toml: the books API stack. `infra up` converges AWS to this file.
# Keys mirror the original CDK context values; unknown keys are rejected.

# Tags every resource (infra:stack) and names the state file state/<stack>.json.
stack = "{stack}"
# region = "eu-west-1"          # default: the SDK chain (AWS_REGION, profile)
{state}

# Network
vpc_cidr = "{vpc_cidr}"         # carved into 6 equal subnets: public/ecs/db x 2 AZs
az_count = {az_count}                     # exactly 2 supported
# availability_zones = ["eu-west-1a", "eu-west-1b"]   # default: first two of the region
nat_gateways = {nat}                 # 1 (shared) or 2 (one per AZ)
container_port = {port}

# Secrets: names of SSM SecureString parameters (values never enter state or logs)
db_password_ssm_param = "{dbp}"
http_basic_auth_password_ssm_param = "{hap}"

# Service
source_code_path = "{src}"          # the books-api source, built into the image; or set `image` to a prebuilt URI
image_builder = "{builder}"             # docker, podman or buildah; auto: the first that works, in that order
# The image built from source carries the Amazon RDS CA bundle (fetched when it is built)
# and checks Aurora's certificate and name (DB_SSLMODE=verify-full). A prebuilt image gets:
# db_sslmode = "require"              # default: TLS, but any certificate is accepted
# db_sslrootcert = "/certs/rds.pem"   # its CA bundle, for db_sslmode = "verify-full"
db_user = "{db_user}"
db_name = "{db_name}"
http_basic_auth_user = "{hau}"
db_instance_class = "{class}"
db_engine_version = "{engine}"       # Aurora PostgreSQL
task_cpu = {cpu}                     # Fargate CPU units (256, 512, 1024, ...)
task_memory = {memory}                  # MiB, a combination Fargate allows with task_cpu
desired_count = {desired}
wait_for_rollout = true              # up waits until the service runs the new task definition
rollout_timeout_seconds = {rollout}       # and gives up after this long (the next up resumes)
cache_ttl_seconds = {ttl}             # API Gateway caches the book GETs this long (0: no caching)
cache_cluster_size = "{cache_size}"          # GB: 0.5, 1.6, 6.1, 13.5, 28.4, 58.2, 118 or 237
# How API Gateway reaches the service:
#   "private": through a VPC link to an internal NLB in the service subnets; nothing of the
#              service is on the internet, and the basic-auth password API Gateway sends
#              stays inside AWS's network.
#   "public":  the seed's route: HTTP (port 80, plain text) over the internet to an
#              internet-facing ALB open to 0.0.0.0/0, the basic-auth password in every
#              request; anyone can reach the ALB and bypass API Gateway's authorizer.
integration = "{integration}"
log_retention_days = {ret}
db_deletion_protection = false
db_final_snapshot = false
"#,
        stack = config.stack,
        state = match &config.state {
            Some(url) => format!("state = \"{url}\"   # team state: <prefix><stack>.json and .lock in this versioned bucket"),
            None => "# state = \"s3://my-bucket/infra/\"   # team state in S3; default: the local state/ directory".to_string(),
        },
        vpc_cidr = config.vpc_cidr,
        az_count = config.az_count,
        nat = config.nat_gateways,
        port = config.container_port,
        dbp = config.db_password_ssm_param,
        hap = config.http_basic_auth_password_ssm_param,
        src = config.source_code_path.as_deref().unwrap_or("api"),
        builder = config.image_builder,
        db_user = config.db_user,
        db_name = config.db_name,
        hau = config.http_basic_auth_user,
        class = config.db_instance_class,
        engine = config.db_engine_version,
        cpu = config.task_cpu,
        memory = config.task_memory,
        rollout = config.rollout_timeout_seconds,
        desired = config.desired_count,
        ttl = config.cache_ttl_seconds,
        cache_size = config.cache_cluster_size,
        integration = config.integration,
        ret = config.log_retention_days,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        render_init_file(&Config::with_defaults("books"))
    }

    fn err_for(replace: (&str, &str)) -> ConfigError {
        let text = minimal().replace(replace.0, replace.1);
        Config::parse(&text).and_then(Config::validate).unwrap_err()
    }

    #[test]
    fn init_file_round_trips_to_defaults() {
        let parsed = Config::parse(&minimal()).unwrap();
        assert_eq!(parsed, Config::with_defaults("books"));
        parsed.validate().unwrap();
    }

    #[test]
    fn carve_subnets_splits_into_eighths() {
        let cidrs = carve_subnets("10.0.0.0/16".parse().unwrap());
        let got: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            got,
            ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19", "10.0.96.0/19", "10.0.128.0/19", "10.0.160.0/19"]
        );
        let smallest = carve_subnets("10.1.2.0/25".parse().unwrap());
        assert_eq!(smallest[5].to_string(), "10.1.2.80/28");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            (("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"10.0.0/16\""), "vpc_cidr"),
            (("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"10.0.0.0/27\""), "vpc_cidr"),
            (("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"10.0.0.1/16\""), "vpc_cidr"),
            (("az_count = 2", "az_count = 3"), "az_count"),
            (("nat_gateways = 1", "nat_gateways = 3"), "nat_gateways"),
            (("stack = \"books\"", "stack = \"\""), "stack"),
            (("stack = \"books\"", "stack = \"Books_API\""), "stack"),
            (("stack = \"books\"", "stack = \"a-very-long-stack-name-indeed\""), "stack"),
            (("db_user = \"postgres\"", "db_user = \"rdsadmin\""), "db_user"),
            (("log_retention_days = 30", "log_retention_days = 31"), "log_retention_days"),
            (("db_engine_version = \"16.4\"", "db_engine_version = \"sixteen\""), "db_engine_version"),
            (("task_cpu = 256", "task_cpu = 300"), "task_cpu"),
            (("task_memory = 512", "task_memory = 4096"), "task_memory"),
            (("db_password_ssm_param = \"/books/db-password\"", "db_password_ssm_param = \"\""), "db_password_ssm_param"),
            (("container_port = 8080", "container_port = 8080\nfoo = 1"), "foo"),
            (("db_password_ssm_param = \"/books/db-password\"", ""), "db_password_ssm_param"),
            (("desired_count = 2", "desired_count = \"two\""), "desired_count"),
            (("# state = \"s3://my-bucket/infra/\"", "state = \"gs://my-bucket/infra/\""), "state"),
            (("# state = \"s3://my-bucket/infra/\"", "state = \"s3://My_Bucket/\""), "state"),
            (("cache_cluster_size = \"0.5\"", "cache_cluster_size = \"1\""), "cache_cluster_size"),
            (("cache_ttl_seconds = 60", "cache_ttl_seconds = 7200"), "cache_ttl_seconds"),
            (("integration = \"private\"", "integration = \"vpc-link\""), "integration"),
            (("# db_sslmode = \"require\"", "db_sslmode = \"require\""), "db_sslmode"),
            (("source_code_path = \"api\"", "image = \"x:1\"\ndb_sslmode = \"verify\""), "db_sslmode"),
            (("source_code_path = \"api\"", "image = \"x:1\"\ndb_sslmode = \"verify-full\""), "db_sslrootcert"),
            (("source_code_path = \"api\"", "image = \"x:1\"\ndb_sslrootcert = \"rds.pem\""), "db_sslrootcert"),
            // Type errors: serde quotes the value; the key is still the one named.
            (("rollout_timeout_seconds = 1200", "rollout_timeout_seconds = -5"), "rollout_timeout_seconds"),
            (("container_port = 8080", "container_port = 70000"), "container_port"),
            (("az_count = 2", "az_count = 300"), "az_count"),
            (("wait_for_rollout = true", "wait_for_rollout = \"yes\""), "wait_for_rollout"),
            (("# availability_zones = [\"eu-west-1a\", \"eu-west-1b\"]", "availability_zones = [1, 2]"), "availability_zones"),
            (("image_builder = \"auto\"", "image_builder = \"kaniko\""), "image_builder"),
        ];
        for ((from, to), key) in cases {
            let err = err_for((from, to));
            assert_eq!(err.key, key, "replacing {from:?} by {to:?} gave {err}");
            assert!(err.to_string().starts_with(&format!("invalid config key `{key}`: ")), "{err}");
        }
    }
}
