//! What the stack costs a month: per resource and in total, from the price table shipped in
//! `prices/aws-prices.toml` (built into the binary). Hourly charges are multiplied out;
//! what AWS bills by use (requests, GB processed or stored, LCUs) is shown per unit, never
//! guessed. A region the table lacks is an error naming the regions it has.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Integration, Settings};
use crate::engine::Planned;
use crate::resources::{FieldChange, Kind};
use crate::stack::{front, Stack};

/// Where the table lives in the source tree (it is compiled in from there).
pub const PRICE_FILE: &str = "prices/aws-prices.toml";
const PRICES: &str = include_str!("../prices/aws-prices.toml");

/// Cognito's monthly active users that cost nothing (Lite tier).
const COGNITO_FREE_MAU: &str = "10,000";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// When the prices were taken from the pages in `sources`.
    pub taken: String,
    pub currency: String,
    pub hours_per_month: f64,
    pub sources: BTreeMap<String, String>,
    pub regions: BTreeMap<String, RegionPrices>,
}

/// One list price and the key of the page it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceClasses {
    pub source: String,
    pub classes: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSizes {
    pub source: String,
    pub sizes: BTreeMap<String, f64>,
}

/// A region's prices; every field is one the cost rows below use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionPrices {
    pub name: String,
    pub nat_gateway_hour: Price,
    pub nat_gateway_gb_processed: Price,
    pub public_ipv4_hour: Price,
    pub alb_hour: Price,
    pub alb_lcu_hour: Price,
    pub nlb_hour: Price,
    pub nlb_nlcu_hour: Price,
    pub fargate_vcpu_hour: Price,
    pub fargate_gb_hour: Price,
    pub aurora_instance_hour: InstanceClasses,
    pub aurora_storage_gb_month: Price,
    pub aurora_io_million: Price,
    pub api_cache_hour: CacheSizes,
    pub api_requests_million: Price,
    pub vpc_link_hour: Price,
    pub logs_ingested_gb: Price,
    pub logs_stored_gb_month: Price,
    pub lambda_requests_million: Price,
    pub lambda_gb_second: Price,
    pub s3_stored_gb_month: Price,
    pub s3_put_thousand: Price,
    pub cognito_mau: Price,
    pub ecr_stored_gb_month: Price,
    pub internet_out_gb: Price,
}

impl PriceTable {
    /// The table built into the binary.
    pub fn builtin() -> Result<PriceTable> {
        PriceTable::parse(PRICES).with_context(|| format!("reading the built-in price table {PRICE_FILE}"))
    }

    pub fn parse(text: &str) -> Result<PriceTable> {
        let table: PriceTable = toml::from_str(text)?;
        for (region, p) in &table.regions {
            for source in p.sources() {
                if !table.sources.contains_key(source) {
                    bail!("region {region}: source {source:?} is not in [sources]");
                }
            }
        }
        Ok(table)
    }

    /// A region's prices, or an error naming the regions the table has.
    pub fn region(&self, region: &str) -> Result<&RegionPrices> {
        match self.regions.get(region) {
            Some(p) => Ok(p),
            None => bail!(
                "the price table ({PRICE_FILE}, prices taken {}) has no prices for region {region}; it has {}. No cost is guessed for another region",
                self.taken,
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl RegionPrices {
    fn sources(&self) -> Vec<&str> {
        let prices = [
            &self.nat_gateway_hour,
            &self.nat_gateway_gb_processed,
            &self.public_ipv4_hour,
            &self.alb_hour,
            &self.alb_lcu_hour,
            &self.nlb_hour,
            &self.nlb_nlcu_hour,
            &self.fargate_vcpu_hour,
            &self.fargate_gb_hour,
            &self.aurora_storage_gb_month,
            &self.aurora_io_million,
            &self.api_requests_million,
            &self.vpc_link_hour,
            &self.logs_ingested_gb,
            &self.logs_stored_gb_month,
            &self.lambda_requests_million,
            &self.lambda_gb_second,
            &self.s3_stored_gb_month,
            &self.s3_put_thousand,
            &self.cognito_mau,
            &self.ecr_stored_gb_month,
            &self.internet_out_gb,
        ];
        let mut sources: Vec<&str> = prices.iter().map(|p| p.source.as_str()).collect();
        sources.push(&self.aurora_instance_hour.source);
        sources.push(&self.api_cache_hour.source);
        sources
    }
}

/// The setting a charge follows: what a change of it adds or saves is shown by `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Integration,
    NatGateways,
    DbInstanceClass,
    ServiceTasks,
    CacheClusterSize,
    /// Billed by use only: no fixed charge moves with a setting.
    Usage,
}

impl Setting {
    pub fn label(self) -> &'static str {
        match self {
            Setting::Integration => "integration",
            Setting::NatGateways => "nat_gateways",
            Setting::DbInstanceClass => "db_instance_class",
            Setting::ServiceTasks => "desired_count × task_cpu / task_memory",
            Setting::CacheClusterSize => "cache_cluster_size",
            Setting::Usage => "usage",
        }
    }
}

/// What billing depends on besides which resources exist: from the config, or — for the
/// stack as it is — what AWS holds where it differs (the `found` side of a diff).
#[derive(Debug, Clone, PartialEq)]
pub struct Sizes {
    pub az_count: u8,
    pub db_instance_class: String,
    pub task_cpu: u32,
    pub task_memory: u32,
    pub desired_count: u32,
    pub cache_cluster_enabled: bool,
    pub cache_cluster_size: String,
    pub log_retention_days: Option<u32>,
}

impl Sizes {
    pub fn configured(settings: &Settings) -> Sizes {
        let c = &settings.config;
        Sizes {
            az_count: c.az_count,
            db_instance_class: c.db_instance_class.clone(),
            task_cpu: c.task_cpu,
            task_memory: c.task_memory,
            desired_count: c.desired_count,
            // The stack always enables the stage cache (see `edge.rs`).
            cache_cluster_enabled: true,
            cache_cluster_size: c.cache_cluster_size.clone(),
            log_retention_days: Some(c.log_retention_days),
        }
    }

    /// Takes what AWS holds from the changes `plan` found on a resource of `kind`.
    pub fn take_found(&mut self, kind: Kind, changes: &[FieldChange]) {
        for c in changes {
            let found = c.found.as_str();
            match (kind, c.field.as_str()) {
                (Kind::DbInstance, "instance_class") => self.db_instance_class = found.to_string(),
                (Kind::EcsService, "desired_count") => self.desired_count = found.parse().unwrap_or(self.desired_count),
                (Kind::TaskDefinition, "cpu") => self.task_cpu = found.parse().unwrap_or(self.task_cpu),
                (Kind::TaskDefinition, "memory") => self.task_memory = found.parse().unwrap_or(self.task_memory),
                (Kind::ApiStage, "cache_cluster_enabled") => self.cache_cluster_enabled = found == "true",
                (Kind::ApiStage, "cache_cluster_size") => self.cache_cluster_size = found.to_string(),
                (Kind::LogGroup, "retention_in_days") => self.log_retention_days = found.parse().ok(),
                _ => {}
            }
        }
    }
}

/// The resources a cost is computed for (logical id → kind), and their sizes.
#[derive(Debug, Clone)]
pub struct Shape {
    pub items: BTreeMap<String, Kind>,
    pub sizes: Sizes,
}

impl Shape {
    /// The stack as configured.
    pub fn desired(stack: &Stack, settings: &Settings) -> Shape {
        Shape { items: stack.nodes.values().map(|n| (n.id.clone(), n.kind)).collect(), sizes: Sizes::configured(settings) }
    }

    /// The stack as it is, from a plan: what exists now (everything but what `up` would
    /// create, plus what it would delete), sized as AWS holds it. `recorded` gives the kind
    /// of resources that only the state knows (those `up` deletes).
    pub fn current(stack: &Stack, settings: &Settings, plan: &[(String, Planned)], recorded: &BTreeMap<String, Kind>) -> Shape {
        let mut sizes = Sizes::configured(settings);
        let mut items = BTreeMap::new();
        for (id, planned) in plan {
            let desired_kind = stack.nodes.get(id).map(|n| n.kind);
            // A duplicate is recorded as `<logical id>#<physical id>`.
            let kind = recorded.get(id).copied().or(desired_kind).or_else(|| stack.nodes.get(id.split('#').next()?).map(|n| n.kind));
            let Some(kind) = kind else { continue };
            match planned {
                Planned::Create { .. } => continue,
                Planned::Update { changes } | Planned::Replace { changes } => sizes.take_found(kind, changes),
                Planned::Adopt { .. } | Planned::Delete { .. } | Planned::NoChange => {}
            }
            items.insert(id.clone(), kind);
        }
        Shape { items, sizes }
    }

    /// What a setting is in this shape, in the config's words.
    fn describe(&self, setting: Setting) -> String {
        let has = |kind: Kind| self.items.values().any(|k| *k == kind);
        let s = &self.sizes;
        match setting {
            Setting::Integration => {
                let found: Vec<&str> = Integration::ALL
                    .into_iter()
                    .filter(|i| self.items.contains_key(front(*i).0))
                    .map(|i| i.as_str())
                    .collect();
                if found.is_empty() { "none".into() } else { found.join(" + ") }
            }
            Setting::NatGateways => self.items.values().filter(|k| **k == Kind::NatGateway).count().to_string(),
            Setting::DbInstanceClass if has(Kind::DbInstance) => s.db_instance_class.clone(),
            Setting::ServiceTasks if has(Kind::EcsService) => format!("{} × {} / {} MiB", s.desired_count, s.task_cpu, s.task_memory),
            Setting::CacheClusterSize if has(Kind::ApiStage) && s.cache_cluster_enabled => format!("{} GB", s.cache_cluster_size),
            Setting::CacheClusterSize if has(Kind::ApiStage) => "off".into(),
            _ => "none".into(),
        }
    }
}

/// One resource's charge.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub what: String,
    /// The fixed monthly charge in dollars, rounded to cents; `None` when billed by use only,
    /// or when the table lacks the price (`missing` says which).
    pub monthly_usd: Option<f64>,
    /// How the monthly charge is made up.
    pub how: String,
    /// What is billed by use, per unit.
    pub per_unit: Vec<String>,
    pub setting: Setting,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    pub sources: Vec<String>,
}

/// The cost of one shape in one region.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub region: String,
    pub region_name: String,
    pub prices_taken: String,
    pub currency: String,
    pub rows: Vec<Row>,
    /// The sum of the rows' fixed monthly charges.
    pub monthly_usd: f64,
    /// Rows whose price the table lacks (the total leaves them out).
    pub unpriced: Vec<String>,
}

/// Dollars rounded to cents (after taking off float noise below a micro-dollar, so 730 h ×
/// $0.0325 is $23.73, as AWS's own calculator rounds).
pub fn cents(usd: f64) -> f64 {
    ((usd * 1e6).round() / 1e4).round() / 100.0
}

/// A signed amount as `+$1.50` / `-$7.30`.
pub fn signed(usd: f64) -> String {
    if usd < 0.0 { format!("-${:.2}", -usd) } else { format!("+${usd:.2}") }
}

fn rate(p: &Price, unit: &str) -> String {
    format!("${} {unit}", trim(p.usd))
}

/// A price as written in the table, without trailing zeros.
fn trim(usd: f64) -> String {
    let s = format!("{usd:.10}");
    let s = s.trim_end_matches('0');
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.contains('.') && s.split('.').nth(1).is_some_and(|d| d.len() == 1) { format!("{s}0") } else { s.to_string() }
}

struct RowBuilder<'a> {
    table: &'a PriceTable,
    id: &'a str,
}

impl RowBuilder<'_> {
    fn source(&self, key: &str) -> String {
        self.table.sources.get(key).cloned().unwrap_or_else(|| key.to_string())
    }

    /// A fixed charge of `hourly` dollars per hour over the month.
    fn hourly(&self, what: String, hourly: f64, how: String, per_unit: Vec<String>, setting: Setting, sources: &[&str]) -> Row {
        let hours = self.table.hours_per_month;
        Row {
            id: self.id.to_string(),
            what,
            monthly_usd: Some(cents(hours * hourly)),
            how: format!("{} h × {how}", trim(hours)),
            per_unit,
            setting,
            missing: None,
            sources: self.sources(sources),
        }
    }

    fn usage(&self, what: String, per_unit: Vec<String>, sources: &[&str]) -> Row {
        Row {
            id: self.id.to_string(),
            what,
            monthly_usd: None,
            how: "billed by use only".into(),
            per_unit,
            setting: Setting::Usage,
            missing: None,
            sources: self.sources(sources),
        }
    }

    fn missing(&self, what: String, missing: String, setting: Setting, sources: &[&str]) -> Row {
        Row { id: self.id.to_string(), what, monthly_usd: None, how: "not priced".into(), per_unit: Vec::new(), setting, missing: Some(missing), sources: self.sources(sources) }
    }

    fn sources(&self, keys: &[&str]) -> Vec<String> {
        let mut urls: Vec<String> = keys.iter().map(|k| self.source(k)).collect();
        urls.dedup();
        urls
    }
}

/// The charge of one resource, or `None` for a kind AWS does not bill by itself.
fn row(table: &PriceTable, region: &str, p: &RegionPrices, id: &str, kind: Kind, s: &Sizes) -> Option<Row> {
    let b = RowBuilder { table, id };
    let row = match kind {
        Kind::NatGateway => b.hourly(
            "NAT gateway".into(),
            p.nat_gateway_hour.usd,
            format!("${}/h", trim(p.nat_gateway_hour.usd)),
            vec![rate(&p.nat_gateway_gb_processed, "per GB processed")],
            Setting::NatGateways,
            &[&p.nat_gateway_hour.source],
        ),
        // Every public IPv4 address is billed, a NAT gateway's too.
        Kind::ElasticIp => b.hourly(
            "public IPv4 address (Elastic IP)".into(),
            p.public_ipv4_hour.usd,
            format!("${}/h", trim(p.public_ipv4_hour.usd)),
            Vec::new(),
            Setting::NatGateways,
            &[&p.public_ipv4_hour.source],
        ),
        Kind::LoadBalancer if id == front(Integration::Public).0 => {
            // Internet-facing: at least one node per AZ, each with a public IPv4 address.
            let ips = s.az_count as f64;
            b.hourly(
                format!("Application Load Balancer (internet-facing, {} public IPv4)", s.az_count),
                p.alb_hour.usd + ips * p.public_ipv4_hour.usd,
                format!("(${}/h + {} × ${}/h)", trim(p.alb_hour.usd), s.az_count, trim(p.public_ipv4_hour.usd)),
                vec![rate(&p.alb_lcu_hour, "per LCU-hour")],
                Setting::Integration,
                &[&p.alb_hour.source, &p.public_ipv4_hour.source],
            )
        }
        Kind::LoadBalancer => b.hourly(
            "Network Load Balancer (internal)".into(),
            p.nlb_hour.usd,
            format!("${}/h", trim(p.nlb_hour.usd)),
            vec![rate(&p.nlb_nlcu_hour, "per NLCU-hour")],
            Setting::Integration,
            &[&p.nlb_hour.source],
        ),
        Kind::VpcLink => b.hourly(
            "API Gateway VPC link (no charge of its own)".into(),
            p.vpc_link_hour.usd,
            format!("${}/h", trim(p.vpc_link_hour.usd)),
            Vec::new(),
            Setting::Integration,
            &[&p.vpc_link_hour.source],
        ),
        Kind::DbInstance => {
            let class = &s.db_instance_class;
            let what = format!("Aurora PostgreSQL instance {class}");
            match p.aurora_instance_hour.classes.get(class) {
                Some(hourly) => b.hourly(what, *hourly, format!("${}/h", trim(*hourly)), Vec::new(), Setting::DbInstanceClass, &[&p.aurora_instance_hour.source]),
                None => b.missing(
                    what,
                    format!("the price table has no Aurora PostgreSQL price for {class} in {region} (it has {})", p.aurora_instance_hour.classes.keys().cloned().collect::<Vec<_>>().join(", ")),
                    Setting::DbInstanceClass,
                    &[&p.aurora_instance_hour.source],
                ),
            }
        }
        Kind::DbCluster => b.usage(
            "Aurora storage and I/O (Aurora Standard)".into(),
            vec![rate(&p.aurora_storage_gb_month, "per GB-month stored"), rate(&p.aurora_io_million, "per million I/O requests")],
            &[&p.aurora_storage_gb_month.source],
        ),
        Kind::EcsService => {
            let (vcpu, gb) = (s.task_cpu as f64 / 1024.0, s.task_memory as f64 / 1024.0);
            let n = s.desired_count as f64;
            b.hourly(
                format!("Fargate: {} tasks × {} vCPU / {} GB", s.desired_count, trim(vcpu), trim(gb)),
                n * (vcpu * p.fargate_vcpu_hour.usd + gb * p.fargate_gb_hour.usd),
                format!(
                    "{} × ({} vCPU × ${}/h + {} GB × ${}/h)",
                    s.desired_count,
                    trim(vcpu),
                    trim(p.fargate_vcpu_hour.usd),
                    trim(gb),
                    trim(p.fargate_gb_hour.usd)
                ),
                Vec::new(),
                Setting::ServiceTasks,
                &[&p.fargate_vcpu_hour.source],
            )
        }
        Kind::ApiStage if s.cache_cluster_enabled => {
            let size = &s.cache_cluster_size;
            let what = format!("API Gateway stage cache {size} GB");
            match p.api_cache_hour.sizes.get(size) {
                Some(hourly) => b.hourly(what, *hourly, format!("${}/h", trim(*hourly)), Vec::new(), Setting::CacheClusterSize, &[&p.api_cache_hour.source]),
                None => b.missing(what, format!("the price table has no API Gateway cache price for {size} GB in {region}"), Setting::CacheClusterSize, &[&p.api_cache_hour.source]),
            }
        }
        Kind::ApiStage => return None,
        Kind::RestApi => b.usage(
            "API Gateway REST API requests".into(),
            vec![rate(&p.api_requests_million, "per million requests (first 333 million)"), rate(&p.internet_out_gb, "per GB out to the internet")],
            &[&p.api_requests_million.source, &p.internet_out_gb.source],
        ),
        Kind::LogGroup => {
            let kept = match s.log_retention_days {
                Some(days) => format!("kept {days} days"),
                None => "kept forever".into(),
            };
            b.usage(
                format!("CloudWatch Logs ({kept})"),
                vec![rate(&p.logs_ingested_gb, "per GB ingested"), rate(&p.logs_stored_gb_month, "per GB-month stored")],
                &[&p.logs_ingested_gb.source],
            )
        }
        Kind::LambdaFunction => b.usage(
            "Lambda (the 29 s limit demo)".into(),
            vec![rate(&p.lambda_requests_million, "per million requests"), rate(&p.lambda_gb_second, "per GB-second")],
            &[&p.lambda_requests_million.source],
        ),
        Kind::Bucket => b.usage(
            "S3 payload bucket".into(),
            vec![rate(&p.s3_stored_gb_month, "per GB-month stored"), rate(&p.s3_put_thousand, "per 1,000 PUT requests")],
            &[&p.s3_stored_gb_month.source],
        ),
        Kind::UserPool => b.usage(
            "Cognito user pool (Lite)".into(),
            vec![format!("${} per monthly active user after the first {COGNITO_FREE_MAU}", trim(p.cognito_mau.usd))],
            &[&p.cognito_mau.source],
        ),
        Kind::EcrRepository => b.usage("ECR repository".into(), vec![rate(&p.ecr_stored_gb_month, "per GB-month stored")], &[&p.ecr_stored_gb_month.source]),
        // No charge of their own (traffic through them is billed where it is processed;
        // standard SSM parameters, SecureString with the AWS managed key included, are free).
        Kind::Vpc
        | Kind::InternetGateway
        | Kind::Subnet
        | Kind::RouteTable
        | Kind::Route
        | Kind::RouteTableAssociation
        | Kind::SecurityGroup
        | Kind::SsmParameter
        | Kind::IamRole
        | Kind::DbSubnetGroup
        | Kind::Image
        | Kind::EcsCluster
        | Kind::TaskDefinition
        | Kind::TargetGroup
        | Kind::Listener
        | Kind::UserPoolClient
        | Kind::LambdaPermission
        | Kind::ApiResource
        | Kind::ApiAuthorizer
        | Kind::ApiMethod
        | Kind::ApiDeployment => return None,
    };
    Some(row)
}

/// The monthly cost of `shape` in `region`.
pub fn estimate(table: &PriceTable, region: &str, shape: &Shape) -> Result<Estimate> {
    let p = table.region(region)?;
    let rows: Vec<Row> = shape.items.iter().filter_map(|(id, kind)| row(table, region, p, id, *kind, &shape.sizes)).collect();
    let monthly_usd = cents(rows.iter().filter_map(|r| r.monthly_usd).sum());
    let unpriced = rows.iter().filter(|r| r.missing.is_some()).map(|r| r.id.clone()).collect();
    Ok(Estimate {
        region: region.to_string(),
        region_name: p.name.clone(),
        prices_taken: table.taken.clone(),
        currency: table.currency.clone(),
        rows,
        monthly_usd,
        unpriced,
    })
}

/// What changing one setting adds or saves a month.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub setting: Setting,
    pub from: String,
    pub to: String,
    pub monthly_usd: f64,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}: {}/month", self.setting.label(), self.from, self.to, signed(self.monthly_usd))
    }
}

/// The settings whose charges differ between the stack as it is and as configured, with
/// the difference of each.
pub fn changes(now: (&Shape, &Estimate), then: (&Shape, &Estimate)) -> Vec<Change> {
    let by_setting = |e: &Estimate| {
        let mut sums: BTreeMap<Setting, f64> = BTreeMap::new();
        for r in &e.rows {
            *sums.entry(r.setting).or_default() += r.monthly_usd.unwrap_or(0.0);
        }
        sums
    };
    let (before, after) = (by_setting(now.1), by_setting(then.1));
    let mut settings: Vec<Setting> = before.keys().chain(after.keys()).copied().collect();
    settings.sort();
    settings.dedup();
    settings
        .into_iter()
        .filter_map(|s| {
            let delta = cents(after.get(&s).copied().unwrap_or(0.0) - before.get(&s).copied().unwrap_or(0.0));
            let (from, to) = (now.0.describe(s), then.0.describe(s));
            (delta != 0.0 || from != to && s != Setting::Usage).then_some(Change { setting: s, from, to, monthly_usd: delta })
        })
        .collect()
}

/// `infra cost` and the cost part of `plan`, as lines of text.
pub fn render(e: &Estimate, verbose: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "Monthly cost in {} ({}), list prices taken {} ({PRICE_FILE}):",
        e.region, e.region_name, e.prices_taken
    )];
    // What is billed by the hour first, then what is billed by use.
    let mut rows: Vec<&Row> = e.rows.iter().filter(|r| verbose || r.monthly_usd.is_some() || r.missing.is_some()).collect();
    rows.sort_by_key(|r| r.monthly_usd.is_none() && r.missing.is_none());
    for r in rows {
        let amount = match (r.monthly_usd, &r.missing) {
            (Some(usd), _) => format!("${usd:.2}"),
            (None, Some(_)) => "no price".into(),
            (None, None) => "per unit".into(),
        };
        let mut line = format!("  {:<22} {amount:>9}  {}", r.id, r.what);
        if let Some(missing) = &r.missing {
            line.push_str(&format!(": {missing}"));
        } else if r.monthly_usd.is_some() {
            line.push_str(&format!(" ({})", r.how));
        }
        if !r.per_unit.is_empty() {
            let joint = if r.monthly_usd.is_some() { "; plus" } else { ":" };
            line.push_str(&format!("{joint} {}", r.per_unit.join(", ")));
        }
        lines.push(line);
    }
    let usage = e.rows.iter().filter(|r| r.monthly_usd.is_none() && r.missing.is_none()).count();
    let mut total = format!("  {:<22} {:>9}/month", "total", format!("${:.2}", e.monthly_usd));
    if usage > 0 || e.rows.iter().any(|r| !r.per_unit.is_empty()) {
        total.push_str(" plus use: requests, GB processed and stored, LCUs (per unit above");
        total.push_str(if verbose { ")" } else { "; `infra cost` lists every one)" });
    }
    lines.push(total);
    if !e.unpriced.is_empty() {
        lines.push(format!("  (the total leaves out {}: the table has no price for them)", e.unpriced.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(integration: &str, nat: u8) -> Settings {
        let mut cfg = Config::with_defaults("books");
        cfg.integration = integration.into();
        cfg.nat_gateways = nat;
        cfg.validate().unwrap()
    }

    fn desired(integration: &str, nat: u8) -> (Shape, Stack) {
        let s = settings(integration, nat);
        let stack = Stack::desired(&s, &["us-east-1a".into(), "us-east-1b".into()], "us-east-1", "123456789012").unwrap();
        (Shape::desired(&stack, &s), stack)
    }

    fn monthly(e: &Estimate, id: &str) -> f64 {
        e.rows.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no row {id}")).monthly_usd.unwrap()
    }

    #[test]
    fn the_built_in_table_parses_and_names_a_page_for_every_price() {
        let t = PriceTable::builtin().unwrap();
        assert!(t.regions.contains_key("us-east-1") && t.regions.contains_key("eu-west-1"));
        assert!(t.sources.values().all(|url| url.starts_with("https://aws.amazon.com/")));
        assert_eq!(t.hours_per_month, 730.0);
        // Every instance class and cache size the config accepts by default is priced.
        for p in t.regions.values() {
            assert!(p.aurora_instance_hour.classes.contains_key(&Config::with_defaults("b").db_instance_class));
            for size in crate::config::CACHE_CLUSTER_SIZES {
                assert!(p.api_cache_hour.sizes.contains_key(size), "cache size {size} unpriced in {}", p.name);
            }
        }
    }

    #[test]
    fn a_table_naming_an_unknown_source_is_refused() {
        let text = PRICES.replace("source = \"vpc\" }", "source = \"nowhere\" }");
        assert!(PriceTable::parse(&text).unwrap_err().to_string().contains("nowhere"));
    }

    #[test]
    fn the_arithmetic_of_the_default_public_stack_in_us_east_1() {
        let t = PriceTable::builtin().unwrap();
        let (shape, _) = desired("public", 1);
        let e = estimate(&t, "us-east-1", &shape).unwrap();
        assert_eq!(monthly(&e, "nat_gateway.a"), 32.85); // 730 × 0.045
        assert_eq!(monthly(&e, "elastic_ip.a"), 3.65); // 730 × 0.005
        assert_eq!(monthly(&e, "db_instance.writer"), 53.29); // 730 × 0.073
        assert_eq!(monthly(&e, "ecs_service"), 18.02); // 2 × (0.25 × 0.04048 + 0.5 × 0.004445) × 730
        assert_eq!(monthly(&e, "alb"), 23.73); // 730 × (0.0225 + 2 × 0.005)
        assert_eq!(monthly(&e, "api.stage"), 14.6); // 730 × 0.02
        assert_eq!(e.monthly_usd, 146.14);
        assert!(e.unpriced.is_empty());
        let nat = e.rows.iter().find(|r| r.id == "nat_gateway.a").unwrap();
        assert_eq!(nat.per_unit, ["$0.045 per GB processed"]);
        assert_eq!(nat.how, "730 h × $0.045/h");
    }

    #[test]
    fn private_drops_the_alb_and_its_addresses_for_an_internal_nlb() {
        let t = PriceTable::builtin().unwrap();
        let (public, _) = desired("public", 1);
        let (private, _) = desired("private", 1);
        let (a, b) = (estimate(&t, "us-east-1", &public).unwrap(), estimate(&t, "us-east-1", &private).unwrap());
        assert_eq!(monthly(&b, "nlb"), 16.43); // 730 × 0.0225
        assert_eq!(monthly(&b, "vpc_link"), 0.0);
        assert_eq!(b.monthly_usd, 138.84);
        let changes = changes((&public, &a), (&private, &b));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].to_string(), "integration public → private: -$7.30/month");
    }

    #[test]
    fn a_second_nat_gateway_adds_its_hours_and_its_address() {
        let t = PriceTable::builtin().unwrap();
        let (one, _) = desired("public", 1);
        let (two, _) = desired("public", 2);
        let (a, b) = (estimate(&t, "eu-west-1", &one).unwrap(), estimate(&t, "eu-west-1", &two).unwrap());
        let c = changes((&one, &a), (&two, &b));
        assert_eq!(c.len(), 1);
        // 730 × (0.048 + 0.005) in Ireland.
        assert_eq!((c[0].from.as_str(), c[0].to.as_str(), c[0].monthly_usd), ("1", "2", 38.69));
    }

    #[test]
    fn sizes_follow_the_config_and_what_aws_holds() {
        let t = PriceTable::builtin().unwrap();
        let (mut shape, _) = desired("public", 1);
        shape.sizes.take_found(Kind::DbInstance, &[FieldChange::new("instance_class", "db.t4g.medium", "db.r6g.large")]);
        shape.sizes.take_found(Kind::EcsService, &[FieldChange::new("desired_count", 2, 4)]);
        shape.sizes.take_found(Kind::TaskDefinition, &[FieldChange::new("cpu", 256, 1024), FieldChange::new("memory", 512, 2048)]);
        shape.sizes.take_found(Kind::ApiStage, &[FieldChange::new("cache_cluster_size", "0.5", "6.1")]);
        let e = estimate(&t, "us-east-1", &shape).unwrap();
        assert_eq!(monthly(&e, "db_instance.writer"), 189.8); // 730 × 0.26
        assert_eq!(monthly(&e, "ecs_service"), 144.16); // 4 × (1 × 0.04048 + 2 × 0.004445) × 730
        assert_eq!(monthly(&e, "api.stage"), 146.0); // 730 × 0.20
        shape.sizes.take_found(Kind::ApiStage, &[FieldChange::new("cache_cluster_enabled", true, false)]);
        assert!(estimate(&t, "us-east-1", &shape).unwrap().rows.iter().all(|r| r.id != "api.stage"));
    }

    #[test]
    fn an_instance_class_the_table_lacks_is_named_not_guessed() {
        let t = PriceTable::builtin().unwrap();
        let (mut shape, _) = desired("public", 1);
        shape.sizes.db_instance_class = "db.x2g.16xlarge".into();
        let e = estimate(&t, "us-east-1", &shape).unwrap();
        let row = e.rows.iter().find(|r| r.id == "db_instance.writer").unwrap();
        assert_eq!(row.monthly_usd, None);
        assert!(row.missing.as_deref().unwrap().contains("db.x2g.16xlarge"));
        assert_eq!(e.unpriced, ["db_instance.writer"]);
        assert_eq!(e.monthly_usd, cents(146.14 - 53.29));
    }

    #[test]
    fn a_region_the_table_lacks_is_an_error_naming_the_ones_it_has() {
        let t = PriceTable::builtin().unwrap();
        let (shape, _) = desired("public", 1);
        let err = estimate(&t, "ap-south-1", &shape).unwrap_err().to_string();
        assert!(err.contains("no prices for region ap-south-1") && err.contains("eu-west-1, us-east-1"), "{err}");
    }

    /// Kinds AWS bills nothing for by themselves.
    const FREE: [Kind; 21] = [
        Kind::Vpc,
        Kind::InternetGateway,
        Kind::Subnet,
        Kind::RouteTable,
        Kind::Route,
        Kind::RouteTableAssociation,
        Kind::SecurityGroup,
        Kind::SsmParameter,
        Kind::IamRole,
        Kind::DbSubnetGroup,
        Kind::Image,
        Kind::EcsCluster,
        Kind::TaskDefinition,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::UserPoolClient,
        Kind::LambdaPermission,
        Kind::ApiResource,
        Kind::ApiAuthorizer,
        Kind::ApiMethod,
        Kind::ApiDeployment,
    ];

    #[test]
    fn every_billable_kind_of_the_stack_has_a_row() {
        let t = PriceTable::builtin().unwrap();
        let mut kinds_seen = std::collections::BTreeSet::new();
        for (integration, nat) in [("public", 1), ("public", 2), ("private", 1)] {
            let (shape, stack) = desired(integration, nat);
            for region in ["us-east-1", "eu-west-1"] {
                let e = estimate(&t, region, &shape).unwrap();
                for node in stack.nodes.values() {
                    let has_row = e.rows.iter().any(|r| r.id == node.id);
                    assert_eq!(has_row, !FREE.contains(&node.kind), "{} ({}) in {region}", node.id, node.kind);
                    kinds_seen.insert(node.kind);
                }
                assert!(e.unpriced.is_empty(), "{:?}", e.unpriced);
            }
        }
        // Every kind of the registry is either free or billable, and the stacks use them all.
        assert_eq!(kinds_seen.len(), Kind::ALL.len());
        let billable: Vec<Kind> = Kind::ALL.iter().copied().filter(|k| !FREE.contains(k)).collect();
        assert_eq!(
            billable,
            [
                Kind::ElasticIp,
                Kind::NatGateway,
                Kind::LogGroup,
                Kind::DbCluster,
                Kind::DbInstance,
                Kind::EcrRepository,
                Kind::EcsService,
                Kind::LoadBalancer,
                Kind::UserPool,
                Kind::Bucket,
                Kind::LambdaFunction,
                Kind::RestApi,
                Kind::ApiStage,
                Kind::VpcLink,
            ]
        );
    }

    #[test]
    fn the_stack_as_it_is_comes_from_the_plan() {
        let (_, stack) = desired("private", 1);
        let s = settings("private", 1);
        let recorded: BTreeMap<String, Kind> = [("alb".to_string(), Kind::LoadBalancer), ("listener.http".to_string(), Kind::Listener)].into();
        let plan = vec![
            ("nat_gateway.a".to_string(), Planned::NoChange),
            ("nlb".to_string(), Planned::Create { reason: "new".into() }),
            ("alb".to_string(), Planned::Delete { physical_id: "arn:alb".into(), reason: "no longer in the config".into() }),
            ("db_instance.writer".to_string(), Planned::Update { changes: vec![FieldChange::new("instance_class", "db.t4g.medium", "db.t3.medium")] }),
            ("elastic_ip.a#eipalloc-2".to_string(), Planned::Delete { physical_id: "eipalloc-2".into(), reason: "a duplicate".into() }),
        ];
        let now = Shape::current(&stack, &s, &plan, &recorded);
        assert_eq!(now.items.keys().cloned().collect::<Vec<_>>(), ["alb", "db_instance.writer", "elastic_ip.a#eipalloc-2", "nat_gateway.a"]);
        assert_eq!(now.items["elastic_ip.a#eipalloc-2"], Kind::ElasticIp);
        assert_eq!(now.sizes.db_instance_class, "db.t3.medium");
        assert_eq!(now.describe(Setting::Integration), "public");
        let fresh = Shape::current(&stack, &s, &[("vpc".to_string(), Planned::Create { reason: "new".into() })], &BTreeMap::new());
        assert!(fresh.items.is_empty());
        assert_eq!(fresh.describe(Setting::Integration), "none");
    }

    #[test]
    fn amounts_round_to_cents_and_show_their_sign() {
        assert_eq!(cents(730.0 * 0.0325), 23.73);
        assert_eq!(cents(0.004999), 0.0);
        assert_eq!(signed(-7.3), "-$7.30");
        assert_eq!(signed(38.69), "+$38.69");
        assert_eq!(trim(0.045), "0.045");
        assert_eq!(trim(0.1), "0.10");
        assert_eq!(trim(3.5), "3.50");
        assert_eq!(trim(730.0), "730");
        assert_eq!(trim(0.0000166667), "0.0000166667");
    }
}
