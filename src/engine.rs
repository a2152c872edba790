//! Converge, plan, inspect and destroy: the provisioning contract on top of the executor.
//!
//! Intent is recorded before every create and the physical id the moment a create
//! returns, before any waiting; a resource without a recorded id is looked up by its
//! tags (or deterministic key) before anything is created. So a run killed at any instant
//! leaves a state that the next `up` completes and the next `down` removes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::watch;

use crate::aws::{AwsError, ErrorClass};
use crate::graph::{self, Outcome};
use crate::progress::{short_duration, Progress, Reporter};
use crate::resources::{poll_interval, Ctx, Diff, DynResource, FieldChange, Kind, Lifecycle, Observed, Poll, Replacement};
use crate::stack::{destroy_dag, Known, Node, Refs, Stack, UNKNOWN};
use crate::state::{Phase, ResourceState, State, StateStore};

/// How long a delete keeps retrying DependencyViolation: AWS releases network interfaces
/// of deleted load balancers, tasks and NAT gateways minutes after they are gone
/// (terraform-provider-aws gives a subnet's delete 20 minutes).
pub const DEPENDENCY_VIOLATION_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long a delete refused because something still uses the resource is repeated: the
/// refusal's own budget where the table has one, else [`DEPENDENCY_VIOLATION_TIMEOUT`].
fn in_use_budget(e: &AwsError) -> Duration {
    e.budget_or(DEPENDENCY_VIOLATION_TIMEOUT)
}

/// How often a delete that failed without an answer (or out of throttling retries) is
/// repeated before `down` reports it.
const DELETE_RETRIES: u32 = 4;
/// Resources worked on at once across the whole stack. A resource waiting on AWS (an
/// Aurora writer, a VPC link) holds its place for minutes, as do an API's paths waiting for
/// the API's turn, so there is room for both beside the rest; the rate limits, not this,
/// bound the calls per second.
pub const DEFAULT_CONCURRENCY: usize = 24;

/// How long a recorded resource that a read does not return is re-read before it counts
/// as deleted: on AWS a resource created moments ago can be missing from a Describe.
/// `INFRA_MISSING_GRACE_MS` overrides it (the tests shorten it).
pub const MISSING_GRACE: Duration = Duration::from_secs(3);
/// How often a create is tried when AWS fails in a way that may have done the work.
pub const CREATE_ATTEMPTS: u32 = 5;

fn missing_grace() -> Duration {
    std::env::var("INFRA_MISSING_GRACE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(MISSING_GRACE)
}

pub struct Engine {
    pub ctx: Ctx,
    pub store: Arc<StateStore>,
    pub stack: Stack,
    pub progress: Arc<Progress>,
    pub concurrency: usize,
    tally: Mutex<Tally>,
    survey: Mutex<Survey>,
    /// When each resource's work of this run started and ended: the chain that set the
    /// wall time is read from them.
    timings: Mutex<BTreeMap<String, (Instant, Instant)>>,
    /// The graphs this run's work followed (converge, then any deletes).
    dag: Mutex<graph::Dag>,
}

/// What one scan of the stack's tagged resources (one call per kind) and one batched read of
/// the recorded ones (one call per kind) found at the start of a run.
#[derive(Default)]
struct Survey {
    /// First reads of recorded resources, `None` for one that is gone. Each entry serves one
    /// read only; every read after a change goes to AWS.
    recorded: HashMap<(Kind, String), Option<Observed>>,
    /// For a desired resource with no live recorded id: the tagged resources that carry its
    /// id (more than one only where a create was repeated): one is adopted, the rest deleted.
    adoptable: HashMap<(Kind, String), Vec<Observed>>,
    /// Kinds the tag scan covered; adopting the others (untaggable routes and associations)
    /// asks AWS by their key.
    scanned: std::collections::BTreeSet<Kind>,
    /// Live resources with the stack's tags that no desired resource keeps.
    extras: Vec<Extra>,
}

/// A live resource carrying the stack's tags that `up` deletes.
#[derive(Debug, Clone)]
pub struct Extra {
    pub logical_id: String,
    pub kind: Kind,
    pub physical_id: String,
    /// For a duplicate, the id of the resource kept in its place.
    pub duplicate_of: Option<String>,
    /// What AWS shows of it, recorded for its delete.
    pub attributes: BTreeMap<String, String>,
}

impl Extra {
    /// `observed`, found with `logical_id`'s tags; a duplicate when another is kept.
    fn new(logical_id: &str, kind: Kind, observed: Observed, duplicate_of: Option<&str>) -> Extra {
        Extra {
            logical_id: logical_id.to_string(),
            kind,
            physical_id: observed.physical_id,
            duplicate_of: duplicate_of.map(str::to_string),
            attributes: observed.attributes,
        }
    }

    /// The key it is recorded under until deleted: beside, never over, the one kept.
    pub fn state_key(&self) -> String {
        format!("{}#{}", self.logical_id, self.physical_id)
    }

    fn reason(&self) -> String {
        match &self.duplicate_of {
            Some(kept) => format!("a duplicate of {} ({kept}), carrying the same tags", self.logical_id),
            None => format!("tagged for this stack as {}, which is no longer in the config", self.logical_id),
        }
    }
}

/// What a run did, for the closing summary line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub created: usize,
    pub adopted: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// The per-resource verdict of `plan`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Planned {
    Create { reason: String },
    Adopt { physical_id: String },
    Update { changes: Vec<FieldChange> },
    Replace { changes: Vec<FieldChange> },
    Delete { physical_id: String, reason: String },
    NoChange,
}

/// The per-resource verdict of `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    Ok,
    Drifted { changes: Vec<FieldChange> },
    /// In state, gone from AWS (deleted out of band).
    Missing,
    /// Desired but never created (or its create never returned).
    NotCreated,
    /// In state (or tagged for the stack), no longer desired: `up` deletes it.
    Orphaned,
    /// A second live resource with the same tags as a desired one: `up` deletes it.
    Duplicate { duplicate_of: String },
}

/// Runs `f` over `items`, at most `concurrency` at once; the first error wins.
async fn in_parallel<I: IntoIterator, T, Fut>(
    concurrency: usize,
    items: I,
    f: impl FnMut(I::Item) -> Fut,
) -> Result<Vec<T>, AwsError>
where
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    stream::iter(items).map(f).buffer_unordered(concurrency).collect::<Vec<_>>().await.into_iter().collect()
}

/// Of several live resources carrying one logical id, the one to keep: the closest to the
/// spec (no change, then in-place update, then replace), ties broken by id; the rest are
/// duplicates. Resources being deleted are never candidates.
fn choose(spec: &dyn DynResource, candidates: Vec<Observed>) -> Option<(Observed, Vec<Observed>)> {
    let rank = |o: &Observed| match spec.diff(o) {
        Diff::NoChange => 0,
        Diff::Update(_) => 1,
        Diff::Replace(_) => 2,
    };
    let mut live: Vec<(u8, Observed)> =
        candidates.into_iter().filter(|o| !matches!(o.lifecycle, Lifecycle::Deleting(_))).map(|o| (rank(&o), o)).collect();
    live.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.physical_id.cmp(&b.1.physical_id)));
    let mut live = live.into_iter().map(|(_, o)| o);
    let kept = live.next()?;
    Some((kept, live.collect()))
}

/// An error on one line for progress output: its code, else its message.
fn short(e: &AwsError) -> String {
    match &e.code {
        Some(code) => format!("{} answered {code}", e.operation),
        None => format!("{} {}", e.operation, e.message),
    }
}

/// Full jitter: a random delay up to `max`, so parallel retries do not march in step.
fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

/// Whether AWS refused a create or an update for now, having done nothing: a refusal of
/// the table (a concurrent change, a role not yet propagated), or NotFound — what a call
/// naming a dependency that was just made answers until AWS can see it (the dependency
/// exists: it converged before this resource started).
fn refused_for_now(e: &AwsError) -> bool {
    matches!(e.class, ErrorClass::Transient | ErrorClass::NotFound)
}

/// The time of the first refusal of a call that is being repeated until AWS accepts it.
#[derive(Default)]
struct Refused(Option<Instant>);

impl Refused {
    /// Waits before the call is repeated — briskly at first, as every wait — or fails with
    /// AWS's own message once the refusal has lasted longer than its budget.
    async fn wait_out(&mut self, id: &str, error: AwsError) -> Result<()> {
        let since = *self.0.get_or_insert_with(Instant::now);
        let (waited, budget) = (since.elapsed(), error.retry_budget());
        if waited >= budget {
            let budget = short_duration(budget);
            return Err(anyhow!(error).context(format!("{id}: AWS still refused after {budget}")));
        }
        crate::progress::step(&format!("{}; trying again ({} so far)", short(&error), short_duration(waited)));
        let pause = poll_interval(waited);
        tokio::time::sleep(pause.mul_f64(0.8) + jitter(pause.mul_f64(0.4))).await;
        Ok(())
    }
}

impl Engine {
    pub fn new(ctx: Ctx, store: Arc<StateStore>, stack: Stack, progress: Progress) -> Engine {
        let progress = Arc::new(progress);
        progress.start_heartbeat();
        Engine {
            ctx,
            store,
            stack,
            progress,
            concurrency: DEFAULT_CONCURRENCY,
            tally: Mutex::new(Tally::default()),
            survey: Mutex::default(),
            timings: Mutex::default(),
            dag: Mutex::default(),
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    fn refs(&self) -> Known {
        self.store
            .snapshot()
            .resources
            .into_iter()
            .filter_map(|(id, r)| Some((id, (r.physical_id?, r.attributes))))
            .collect()
    }

    /// Scans the stack's tagged resources (one call per taggable kind) and reads the
    /// recorded resources the scan did not return (one call per kind), all in parallel.
    /// Sorts what it finds into: the recorded resources' first reads, one resource to adopt
    /// per desired id without a live recorded one, and the extras `up` deletes (duplicates
    /// of a kept resource, and tagged resources no longer desired).
    async fn survey(&self) -> Result<(), AwsError> {
        let state = self.store.snapshot();
        let taggable = Kind::ALL.iter().copied().filter(|k| k.is_taggable());
        let tagged = self.inventory(taggable).await?;

        let recorded_ids: HashMap<(Kind, String), String> = state
            .resources
            .iter()
            .filter_map(|(id, r)| Some(((Kind::parse(&r.kind)?, r.physical_id.clone()?), id.clone())))
            .collect();
        let mut survey = Survey::default();
        // Tagged resources nobody recorded, by the logical id their tag names.
        let mut unrecorded: BTreeMap<(Kind, String), Vec<Observed>> = BTreeMap::new();
        for (kind, found) in tagged {
            survey.scanned.insert(kind);
            for (logical, o) in found {
                let key = (kind, o.physical_id.clone());
                if recorded_ids.contains_key(&key) {
                    survey.recorded.insert(key, Some(o));
                } else if logical != "(untagged)" {
                    unrecorded.entry((kind, logical)).or_default().push(o);
                }
            }
        }

        // The recorded resources the scan did not see: untaggable kinds, tags changed out of
        // band, or gone.
        let mut unseen: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for (kind, pid) in recorded_ids.keys() {
            if !survey.recorded.contains_key(&(*kind, pid.clone())) {
                unseen.entry(*kind).or_default().push(pid.clone());
            }
        }
        let found = in_parallel(self.concurrency, unseen, |(kind, ids)| async move {
            kind.find_many(&self.ctx, &ids).await.map(|found| (kind, ids, found))
        })
        .await?;
        for (kind, ids, observations) in found {
            for id in ids {
                survey.recorded.insert((kind, id), None);
            }
            for o in observations {
                survey.recorded.insert((kind, o.physical_id.clone()), Some(o));
            }
        }

        for ((kind, logical), candidates) in unrecorded {
            let desired = self.stack.nodes.get(&logical).is_some_and(|n| n.kind == kind);
            let live_recorded = state
                .physical_id(&logical)
                .filter(|pid| matches!(survey.recorded.get(&(kind, pid.to_string())), Some(Some(_))))
                .map(str::to_string);
            match (desired, live_recorded) {
                // Which one to keep is decided when the spec can be compared (`choose`).
                (true, None) => {
                    survey.adoptable.insert((kind, logical), candidates);
                }
                (true, Some(kept)) => survey.extras.extend(candidates.into_iter().map(|o| Extra::new(&logical, kind, o, Some(&kept)))),
                (false, _) => survey.extras.extend(candidates.into_iter().map(|o| Extra::new(&logical, kind, o, None))),
            }
        }
        *self.survey.lock().unwrap() = survey;
        Ok(())
    }

    fn extras(&self) -> Vec<Extra> {
        self.survey.lock().unwrap().extras.clone()
    }

    /// The stack's tagged resources of `kinds`, one call per kind, in parallel.
    async fn inventory(&self, kinds: impl Iterator<Item = Kind>) -> Result<Vec<(Kind, Vec<(String, Observed)>)>, AwsError> {
        in_parallel(self.concurrency, kinds, |kind| async move { kind.inventory(&self.ctx).await.map(|found| (kind, found)) }).await
    }

    /// The resource to adopt for `id`, and any duplicates of it: from the survey when it
    /// scanned the kind, else by the kind's own lookup (a key for untaggable kinds).
    async fn find_adoptable(&self, kind: Kind, spec: &dyn DynResource, id: &str) -> Result<Option<(Observed, Vec<Observed>)>, AwsError> {
        let scanned = {
            let mut survey = self.survey.lock().unwrap();
            survey.scanned.contains(&kind).then(|| survey.adoptable.remove(&(kind, id.to_string())).unwrap_or_default())
        };
        let candidates = match scanned {
            Some(found) if !found.is_empty() || !kind.adopts_untagged() => found,
            _ => spec.adopt(&self.ctx, id).await?,
        };
        Ok(choose(spec, candidates))
    }

    /// Adds the duplicates of an adoptable resource to what `plan` and `status` report.
    fn report_duplicates(&self, id: &str, kind: Kind, kept: &Observed, duplicates: Vec<Observed>) {
        let extras = duplicates.into_iter().map(|d| Extra::new(id, kind, d, Some(&kept.physical_id)));
        self.survey.lock().unwrap().extras.extend(extras);
    }

    /// Records duplicates beside the resource kept, so they are deleted after the converge
    /// (and known to the next run if this one dies first).
    async fn record_duplicates(&self, id: &str, kind: Kind, kept: &Observed, duplicates: Vec<Observed>) -> Result<()> {
        for o in duplicates {
            let extra = Extra::new(id, kind, o, Some(&kept.physical_id));
            self.progress.note(&format!("found {} {}: {}; deleting it", kind, extra.physical_id, extra.reason()));
            self.store.set(
                &extra.state_key(),
                ResourceState {
                    kind: kind.as_str().to_string(),
                    phase: Phase::Created,
                    physical_id: Some(extra.physical_id.clone()),
                    client_token: None,
                    attributes: extra.attributes.clone(),
                },
            ).await?;
        }
        Ok(())
    }

    /// The first read of a recorded resource: from the survey when it has it.
    async fn find_recorded(&self, kind: Kind, spec: &dyn DynResource, pid: &str) -> Result<Option<Observed>, AwsError> {
        let cached = self.survey.lock().unwrap().recorded.remove(&(kind, pid.to_string()));
        let found = match cached {
            Some(observed) => observed,
            // NotFound from one of several reads (an attribute of a VPC AWS cannot see yet)
            // is read again below, as a resource the read did not return.
            None => crate::aws::found(spec.find(&self.ctx, pid).await)?.flatten(),
        };
        match found {
            Some(o) => Ok(Some(o)),
            None => self.reread_missing(spec, pid).await,
        }
    }

    /// A recorded id that a read did not return, read again for a short grace period before
    /// it counts as gone (reads lag creates on AWS).
    async fn reread_missing(&self, spec: &dyn DynResource, pid: &str) -> Result<Option<Observed>, AwsError> {
        let deadline = Instant::now() + missing_grace();
        let mut delay = Duration::from_millis(100);
        while Instant::now() < deadline {
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            if let Some(o) = spec.find(&self.ctx, pid).await? {
                return Ok(Some(o));
            }
            delay = (delay * 2).min(Duration::from_secs(1));
        }
        Ok(None)
    }

    fn spec(&self, id: &str) -> Box<dyn DynResource> {
        self.stack.nodes[id].spec(&Refs::new(&self.refs()))
    }

    /// Runs a change of `spec` in its turn when AWS takes changes under its key one at a
    /// time (see [`DynResource::serial_key`]).
    async fn serially<T>(&self, spec: &dyn DynResource, change: impl std::future::Future<Output = T>) -> T {
        self.under_key(spec.serial_key(), change).await
    }

    async fn under_key<T>(&self, key: Option<String>, change: impl std::future::Future<Output = T>) -> T {
        match key {
            Some(key) => {
                let _turn = self.ctx.aws.serial.turn(&key).await;
                change.await
            }
            None => change.await,
        }
    }

    /// Runs one resource's work with its waits reported as its own, and times it.
    async fn timed<T>(self: &Arc<Self>, id: &str, work: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = Reporter { id: id.to_string(), progress: self.progress.clone() }.scope(work).await;
        self.timings.lock().unwrap().insert(id.to_string(), (start, Instant::now()));
        out
    }

    /// The chain of resources that set the wall time of the last `up` or `down`: from the
    /// one that finished last, back through the dependency each one waited for longest.
    /// With it, the time from the chain's first start to its last end (more than the sum
    /// when its resources waited for a turn: the concurrency cap, a rate limit).
    pub fn critical_chain(&self) -> (Vec<(String, Duration)>, Duration) {
        let timings = self.timings.lock().unwrap();
        let chain = graph::critical_chain(&self.dag.lock().unwrap(), &timings);
        let span = match (chain.first(), chain.last()) {
            (Some((first, _)), Some((last, _))) => timings[last].1.saturating_duration_since(timings[first].0),
            _ => Duration::ZERO,
        };
        (chain, span)
    }

    /// How long each resource's work of this run took (what `infra graph` draws).
    pub fn node_times(&self) -> BTreeMap<String, Duration> {
        self.timings.lock().unwrap().iter().map(|(id, (start, end))| (id.clone(), end.saturating_duration_since(*start))).collect()
    }

    async fn record(&self, id: &str, kind: Kind, observed: &Observed) -> Result<()> {
        self.store.set(
            id,
            ResourceState {
                kind: kind.as_str().to_string(),
                phase: Phase::Created,
                physical_id: Some(observed.physical_id.clone()),
                client_token: None,
                attributes: observed.attributes.clone(),
            },
        )
        .await
    }

    /// `up`: converge every desired resource, then delete what is no longer desired, and
    /// any duplicate of a desired resource.
    pub async fn apply(self: &Arc<Self>, cancel: watch::Receiver<bool>) -> Result<Outcome> {
        self.survey().await?;
        // Recorded before anything else happens, so a run killed before deleting them still
        // knows them (and `status` shows them).
        for extra in self.extras() {
            self.progress.note(&format!("found {} {}: {}; deleting it", extra.kind, extra.physical_id, extra.reason()));
            self.store.set(
                &extra.state_key(),
                ResourceState {
                    kind: extra.kind.as_str().to_string(),
                    phase: Phase::Created,
                    physical_id: Some(extra.physical_id.clone()),
                    client_token: None,
                    attributes: extra.attributes.clone(),
                },
            ).await?;
        }
        let dag = self.stack.apply_dag();
        self.dag.lock().unwrap().merge(&dag);
        let outcome = graph::run(&dag, self.concurrency, cancel.clone(), |id| {
            let engine = self.clone();
            async move {
                let result = engine.timed(&id, engine.converge(&id)).await;
                if let Err(e) = &result {
                    engine.progress.failed(&id, &format!("{e:#}"));
                }
                result
            }
        })
        .await;
        if !matches!(outcome, Outcome::Completed) {
            return Ok(outcome);
        }
        let orphans: Vec<String> = Self::orphans(&self.store.snapshot(), &self.stack).into_iter().map(|(id, _)| id).collect();
        if orphans.is_empty() {
            return Ok(outcome);
        }
        Ok(self.destroy_ids(orphans, cancel).await)
    }

    async fn converge(&self, id: &str) -> Result<()> {
        let node = &self.stack.nodes[id];
        let spec = self.spec(id);
        let recorded = self.store.get(id);
        let mut observed = None;
        if let Some(pid) = recorded.as_ref().and_then(|r| r.physical_id.clone()) {
            observed = self.find_recorded(node.kind, spec.as_ref(), &pid).await?;
            if let Some(Lifecycle::Deleting(state)) = observed.as_ref().map(|o| &o.lifecycle) {
                // An interrupted `down` (or a delete out of band): whatever it holds (an
                // address, a name) is free only once it is gone.
                self.progress.step(id, &format!("{pid} is being deleted ({state}); waiting for it to go"));
                self.wait_gone(node.kind, spec.as_ref(), &pid).await?;
                observed = None;
            } else if observed.is_none() {
                self.progress.step(id, &format!("{pid} is missing (deleted out of band)"));
            }
        }
        let mut adopted = false;
        if observed.is_none() {
            if let Some((o, duplicates)) = self.find_adoptable(node.kind, spec.as_ref(), id).await? {
                self.record_duplicates(id, node.kind, &o, duplicates).await?;
                self.record(id, node.kind, &o).await?;
                self.tally.lock().unwrap().adopted += 1;
                adopted = true;
                observed = Some(o);
            }
        }
        let created = observed.is_none();
        let mut observed = match observed {
            Some(o) => o,
            None => {
                let token = recorded.and_then(|r| r.client_token);
                self.create(id, node.kind, spec.as_ref(), token).await?
            }
        };
        if let Lifecycle::Settling(state) = observed.lifecycle.clone() {
            // Adopted or recorded while AWS is still creating it: dependants wait.
            self.progress.step(id, &format!("waiting for {} ({state})", observed.physical_id));
            self.await_ready(id, spec.as_ref(), &observed.physical_id).await?;
            observed = self.read_back(node.kind, spec.as_ref(), &observed.physical_id).await?;
        }
        let origin = if created {
            format!("created {}", observed.physical_id)
        } else if adopted {
            format!("adopted {}", observed.physical_id)
        } else {
            String::new()
        };
        match spec.diff(&observed) {
            Diff::NoChange => {
                if self.store.get(id).map(|r| (r.physical_id, r.attributes)) != Some((Some(observed.physical_id.clone()), observed.attributes.clone())) {
                    self.record(id, node.kind, &observed).await?;
                }
                if origin.is_empty() {
                    self.tally.lock().unwrap().unchanged += 1;
                    self.progress.done(id, "unchanged");
                } else {
                    self.progress.done(id, &origin);
                }
            }
            Diff::Update(changes) => {
                // Right after a create this sets what the create call cannot (DNS
                // attributes, ingress rules): part of the create, not drift.
                let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
                self.progress.step(id, &format!("updating {}", fields.join(", ")));
                observed = self.update(id, node.kind, spec.as_ref(), observed).await?;
                self.record(id, node.kind, &observed).await?;
                if created {
                    self.progress.done(id, &format!("created {}", observed.physical_id));
                } else {
                    self.tally.lock().unwrap().updated += 1;
                    let sep = if origin.is_empty() { "" } else { ", " };
                    self.progress.done(id, &format!("{origin}{sep}updated {}", fields.join(", ")));
                }
            }
            Diff::Replace(changes) => {
                let what: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                let old = observed.physical_id.clone();
                match spec.replacement() {
                    Replacement::Refuse(why) => bail!(
                        "{id} ({old}) must be replaced: {}. {why}; revert the change, or run `infra down` first",
                        what.join("; ")
                    ),
                    Replacement::CreateThenDelete => {
                        // The old one is kept, under its own key, until the dependants have
                        // moved to the new one; it is deleted after the converge.
                        self.progress.step(id, &format!("replacing {old}: {}", what.join("; ")));
                        self.store.set(
                            &format!("{id}#{old}"),
                            ResourceState {
                                kind: node.kind.as_str().to_string(),
                                phase: Phase::Created,
                                physical_id: Some(old.clone()),
                                client_token: None,
                                attributes: observed.attributes.clone(),
                            },
                        ).await?;
                        let mut new = self.create(id, node.kind, spec.as_ref(), None).await?;
                        if let Diff::Update(_) = spec.diff(&new) {
                            new = self.update(id, node.kind, spec.as_ref(), new).await?;
                        }
                        self.record(id, node.kind, &new).await?;
                        self.tally.lock().unwrap().updated += 1;
                        self.progress.done(id, &format!("replaced {old} with {}", new.physical_id));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies the in-place changes. When the call fails, AWS may have applied it before
    /// its answer was lost, and a repeat then meets its own work ("duplicate", "already
    /// associated", "not found" on a revoke): the resource is read again, and if it now
    /// matches the spec, the update is done.
    async fn update(&self, id: &str, kind: Kind, spec: &dyn DynResource, mut observed: Observed) -> Result<Observed> {
        let mut refused = Refused::default();
        loop {
            match self.serially(spec, spec.update(&self.ctx, id, &observed)).await {
                // Refused for now: read again (part of the change may be in place), then
                // make what is still missing.
                Err(e) if refused_for_now(&e) => {
                    refused.wait_out(id, e).await?;
                    observed = self.read_back(kind, spec, &observed.physical_id).await?;
                    if spec.diff(&observed) == Diff::NoChange {
                        return Ok(observed);
                    }
                }
                result => return self.updated(id, kind, spec, observed, result).await,
            }
        }
    }

    /// The outcome of an update call that AWS did not refuse for now.
    async fn updated(&self, id: &str, kind: Kind, spec: &dyn DynResource, mut observed: Observed, result: Result<Option<String>, AwsError>) -> Result<Observed> {
        match result {
            Ok(new_id) => {
                if let Some(new_id) = new_id {
                    observed.physical_id = new_id;
                }
                Ok(observed)
            }
            Err(e) if e.class != ErrorClass::Fatal || e.code.is_some() => {
                let again = self.read_back(kind, spec, &observed.physical_id).await?;
                if spec.diff(&again) == Diff::NoChange {
                    self.progress.step(id, &format!("{} answered {}, but the change is in place", e.operation, e.code.as_deref().unwrap_or(&e.message)));
                    Ok(again)
                } else {
                    Err(anyhow!(e).context(format!("updating {id}")))
                }
            }
            Err(e) => Err(anyhow!(e).context(format!("updating {id}"))),
        }
    }

    /// Waits until a resource can be used by its dependants; a NotFound while AWS cannot
    /// see the new resource yet is waited out like any refusal.
    async fn await_ready(&self, id: &str, spec: &dyn DynResource, pid: &str) -> Result<()> {
        let mut refused = Refused::default();
        loop {
            match spec.await_ready(&self.ctx, pid).await {
                Err(e) if e.is_not_found() => refused.wait_out(id, e).await?,
                result => return Ok(result?),
            }
        }
    }

    /// Reads a resource that must exist (just created, adopted or updated), allowing for
    /// reads that lag writes.
    async fn read_back(&self, kind: Kind, spec: &dyn DynResource, pid: &str) -> Result<Observed> {
        let what = format!("{kind} {pid} to be readable");
        let observed = crate::resources::wait_until(&what, "Describe", crate::aws::PROPAGATION_TIMEOUT, || async {
            // A read of one of its attributes may say NotFound too while AWS catches up.
            Ok(match crate::aws::found(spec.find(&self.ctx, pid).await)?.flatten() {
                Some(o) => Poll::Ready(o),
                None => Poll::Pending("not visible yet".into()),
            })
        })
        .await?;
        Ok(observed)
    }

    /// Waits until a resource being deleted is gone.
    async fn wait_gone(&self, kind: Kind, spec: &dyn DynResource, pid: &str) -> Result<()> {
        let what = format!("{kind} {pid} to finish deleting");
        crate::resources::wait_until(&what, "Describe", DEPENDENCY_VIOLATION_TIMEOUT, || async {
            Ok(match crate::aws::found(spec.find(&self.ctx, pid).await)?.flatten() {
                Some(o) => match o.lifecycle {
                    Lifecycle::Deleting(state) => Poll::Pending(state),
                    _ => Poll::Ready(()),
                },
                None => Poll::Ready(()),
            })
        })
        .await?;
        Ok(())
    }

    /// Creates the resource, exactly once. Intent is recorded before the call and the id
    /// the moment it returns. When AWS fails in a way that may have done the work (a 5xx,
    /// a timeout, a dropped connection — the SDK does not repeat those for creates), or a
    /// repeat meets its own earlier attempt ("already exists"), the resource is looked up
    /// by its tags or key before anything is tried again.
    async fn create(&self, id: &str, kind: Kind, spec: &dyn DynResource, token: Option<String>) -> Result<Observed> {
        // Intent first: if the process dies during the call, the next run knows to look.
        let token = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.store.set(
            id,
            ResourceState {
                kind: kind.as_str().to_string(),
                phase: Phase::Creating,
                physical_id: None,
                client_token: Some(token.clone()),
                attributes: BTreeMap::new(),
            },
        )
        .await?;
        self.progress.step(id, "creating");
        let mut attempt = 1;
        let mut delay = Duration::from_millis(200);
        let mut refused = Refused::default();
        let pid = loop {
            let error = match self.serially(spec, spec.create(&self.ctx, id, &token)).await {
                Ok(pid) => break pid,
                Err(e) => e,
            };
            if refused_for_now(&error) {
                refused.wait_out(id, error).await?;
                continue;
            }
            let ambiguous = matches!(error.class, ErrorClass::Retryable | ErrorClass::Timeout);
            if !ambiguous && error.class != ErrorClass::AlreadyExists {
                return Err(anyhow!(error).context(format!("creating {id}")));
            }
            self.progress.step(id, &format!("{}; looking for it before trying again", short(&error)));
            if let Some(found) = self.look_for(kind, spec, id).await? {
                self.record(id, kind, &found).await?;
                self.tally.lock().unwrap().created += 1;
                self.progress.step(id, &format!("found {}, made by the attempt whose answer was lost", found.physical_id));
                return Ok(found);
            }
            if !ambiguous || attempt >= CREATE_ATTEMPTS {
                // "Already exists" for something that is not ours: never swallowed.
                return Err(anyhow!(error).context(format!("creating {id} (attempt {attempt})")));
            }
            attempt += 1;
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        if pid.is_empty() {
            bail!("creating {id}: AWS returned no id");
        }
        // The id is saved before any waiting.
        self.store.update(|s| {
            if let Some(r) = s.resources.get_mut(id) {
                r.phase = Phase::Created;
                r.physical_id = Some(pid.clone());
            }
        })
        .await?;
        self.tally.lock().unwrap().created += 1;
        self.progress.step(id, &format!("waiting for {pid}"));
        self.await_ready(id, spec, &pid).await?;
        self.read_back(kind, spec, &pid).await
    }

    /// After an ambiguous create: the resource by its tags or key, looked for over the grace
    /// period (a tag lookup can lag the create on AWS).
    async fn look_for(&self, kind: Kind, spec: &dyn DynResource, id: &str) -> Result<Option<Observed>> {
        let deadline = Instant::now() + missing_grace();
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some((kept, duplicates)) = choose(spec, spec.adopt(&self.ctx, id).await?) {
                self.record_duplicates(id, kind, &kept, duplicates).await?;
                return Ok(Some(kept));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Runs `read` for every desired resource, `concurrency` at a time.
    async fn read_all<'a, T, Fut>(&'a self, read: impl Fn(&'a Node) -> Fut) -> Result<Vec<T>, AwsError>
    where
        Fut: std::future::Future<Output = Result<T, AwsError>> + 'a,
    {
        in_parallel(self.concurrency, self.stack.nodes.values(), read).await
    }

    /// Resources in the state that the desired stack no longer has: `up` deletes them.
    fn orphans(state: &State, stack: &Stack) -> Vec<(String, Option<String>)> {
        state
            .resources
            .iter()
            .filter(|(id, _)| !stack.nodes.contains_key(*id))
            .map(|(id, r)| (id.clone(), r.physical_id.clone()))
            .collect()
    }

    /// `plan`: what `up` would do, per resource, without changing anything.
    /// The first read of every recorded resource, in parallel, and the refs that hold what
    /// those reads found: a spec that reads another resource's attributes (an ARN, the
    /// version of a secret) is compared as `up` would build it, from the live
    /// dependency, not from what the state remembers of it.
    async fn read_recorded(&self) -> Result<(Known, HashMap<String, (String, Option<Observed>)>)> {
        let refs = self.refs();
        let state = self.store.snapshot();
        let reads = self
            .read_all(|node| {
                let (refs, state) = (&refs, &state);
                async move {
                    let Some(pid) = state.physical_id(&node.id) else { return Ok(None) };
                    let spec = node.spec(&Refs::new(refs));
                    let found = self.find_recorded(node.kind, spec.as_ref(), pid).await?;
                    Ok(Some((node.id.clone(), (pid.to_string(), found))))
                }
            })
            .await?;
        let recorded: HashMap<String, (String, Option<Observed>)> = reads.into_iter().flatten().collect();
        let mut live = refs;
        for (id, (_, found)) in &recorded {
            if let Some(o) = found.as_ref().filter(|o| !matches!(o.lifecycle, Lifecycle::Deleting(_))) {
                live.insert(id.clone(), (o.physical_id.clone(), o.attributes.clone()));
            }
        }
        Ok((live, recorded))
    }

    pub async fn plan(&self) -> Result<Vec<(String, Planned)>> {
        self.survey().await?;
        let state = self.store.snapshot();
        let (refs, recorded) = self.read_recorded().await?;
        let recorded = Mutex::new(recorded);
        let mut results = self
            .read_all(|node| {
                let (refs, recorded) = (&refs, &recorded);
                async move {
                    let spec = node.spec(&Refs::new(refs));
                    let recorded = recorded.lock().unwrap().remove(&node.id);
                    let planned = match recorded {
                        Some((_, Some(o))) if !matches!(o.lifecycle, Lifecycle::Deleting(_)) => match spec.diff(&o) {
                            Diff::NoChange => Planned::NoChange,
                            Diff::Update(changes) => Planned::Update { changes },
                            Diff::Replace(changes) => Planned::Replace { changes },
                        },
                        // Dependencies not created yet: nothing of this can exist either.
                        None if node.deps.iter().any(|d| !refs.contains_key(d)) => Planned::Create { reason: "new".into() },
                        _ => match self.find_adoptable(node.kind, spec.as_ref(), &node.id).await? {
                            Some((o, duplicates)) => {
                                self.report_duplicates(&node.id, node.kind, &o, duplicates);
                                Planned::Adopt { physical_id: o.physical_id }
                            }
                            None => match recorded {
                                Some((pid, Some(_))) => Planned::Create { reason: format!("{pid} is being deleted") },
                                Some((pid, None)) => Planned::Create { reason: format!("{pid} was deleted out of band") },
                                None => Planned::Create { reason: "new".into() },
                            },
                        },
                    };
                    Ok((node.id.clone(), planned))
                }
            })
            .await?;
        for (id, pid) in Self::orphans(&state, &self.stack) {
            let reason = if id.contains('#') { "a duplicate found earlier" } else { "no longer in the config" };
            results.push((id, Planned::Delete { physical_id: pid.unwrap_or_else(|| UNKNOWN.into()), reason: reason.into() }));
        }
        for extra in self.extras() {
            results.push((extra.state_key(), Planned::Delete { physical_id: extra.physical_id.clone(), reason: extra.reason() }));
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    /// `status`: reads every resource in parallel and compares it with the desired spec;
    /// reports duplicates and stray tagged resources too.
    pub async fn status(&self) -> Result<Vec<(String, String, Health)>> {
        self.survey().await?;
        let state = self.store.snapshot();
        let (refs, recorded) = self.read_recorded().await?;
        let recorded = Mutex::new(recorded);
        let mut results = self
            .read_all(|node| {
                let (refs, recorded) = (&refs, &recorded);
                async move {
                    let spec = node.spec(&Refs::new(refs));
                    let Some((pid, found)) = recorded.lock().unwrap().remove(&node.id) else {
                        // Lost state: what `up` would adopt, and its duplicates.
                        if let Some((o, duplicates)) = self.find_adoptable(node.kind, spec.as_ref(), &node.id).await? {
                            self.report_duplicates(&node.id, node.kind, &o, duplicates);
                        }
                        return Ok((node.id.clone(), String::new(), Health::NotCreated));
                    };
                    let health = match found {
                        None => Health::Missing,
                        Some(o) if matches!(o.lifecycle, Lifecycle::Deleting(_)) => Health::Missing,
                        Some(o) => match spec.diff(&o) {
                            Diff::NoChange => Health::Ok,
                            Diff::Update(changes) | Diff::Replace(changes) => Health::Drifted { changes },
                        },
                    };
                    Ok((node.id.clone(), pid, health))
                }
            })
            .await?;
        for (id, pid) in Self::orphans(&state, &self.stack) {
            results.push((id, pid.unwrap_or_default(), Health::Orphaned));
        }
        for extra in self.extras() {
            let health = match &extra.duplicate_of {
                Some(kept) => Health::Duplicate { duplicate_of: kept.clone() },
                None => Health::Orphaned,
            };
            results.push((extra.state_key(), extra.physical_id, health));
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    /// `down`: everything in state plus anything still carrying the stack's tags.
    pub async fn destroy(self: &Arc<Self>, cancel: watch::Receiver<bool>) -> Result<Outcome> {
        self.sweep().await?;
        let ids: Vec<String> = self.store.snapshot().resources.keys().cloned().collect();
        Ok(self.destroy_ids(ids, cancel).await)
    }

    /// Records every tagged resource of the stack that the state does not know, so the
    /// destroy removes resources from lost states and crashed runs too.
    async fn sweep(&self) -> Result<()> {
        let found = self.inventory(Kind::ALL.iter().copied().filter(|k| k.is_taggable())).await?;
        let state = self.store.snapshot();
        let known: std::collections::BTreeSet<&str> =
            state.resources.values().filter_map(|r| r.physical_id.as_deref()).collect();
        for (kind, found) in found {
            let found = found.into_iter().map(|(logical, o)| (logical, o.physical_id, o.attributes));
            for (logical, pid, attributes) in found.filter(|(_, pid, _)| !known.contains(pid.as_str())) {
                let key = match state.resources.get(&logical) {
                    // An intent whose create returned but was never recorded: this is it.
                    Some(r) if r.physical_id.is_none() && r.kind == kind.as_str() => logical,
                    None if logical != "(untagged)" => logical,
                    _ => format!("{logical}#{pid}"),
                };
                self.progress.note(&format!("found {kind} {pid} ({key}) by its tags; deleting it too"));
                self.store.set(
                    &key,
                    ResourceState {
                        kind: kind.as_str().to_string(),
                        phase: Phase::Created,
                        physical_id: Some(pid),
                        client_token: None,
                        attributes,
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn destroy_ids(self: &Arc<Self>, ids: Vec<String>, cancel: watch::Receiver<bool>) -> Outcome {
        let state = self.store.snapshot();
        let present: BTreeMap<String, Kind> = ids
            .iter()
            .filter_map(|id| {
                let kind = Kind::parse(&state.resources.get(id)?.kind)?;
                Some((id.clone(), kind))
            })
            .collect();
        let dag = destroy_dag(&self.stack, &present);
        self.dag.lock().unwrap().merge(&dag);
        // Parents deleted in this run: their children go with them (`DELETED_WITH`).
        let parents: Arc<HashSet<(Kind, String)>> = Arc::new(
            present
                .iter()
                .filter_map(|(id, kind)| Some((*kind, state.resources.get(id)?.physical_id.clone()?)))
                .collect(),
        );
        graph::run(&dag, self.concurrency, cancel, |id| {
            let engine = self.clone();
            let kind = present[&id];
            let parents = parents.clone();
            async move {
                let result = engine.timed(&id, engine.delete_one(&id, kind, &parents)).await;
                if let Err(e) = &result {
                    engine.progress.failed(&id, &format!("{e:#}"));
                }
                result
            }
        })
        .await
    }

    async fn delete_one(&self, id: &str, kind: Kind, deleted_parents: &HashSet<(Kind, String)>) -> Result<()> {
        let Some(recorded) = self.store.get(id) else { return Ok(()) };
        let Some(pid) = recorded.physical_id else {
            // An intent whose create never returned an id; the sweep found nothing
            // tagged for it, so nothing exists.
            self.store.remove(id).await?;
            return Ok(());
        };
        let parent = kind.deleted_with().zip(pid.split_once('/')).map(|(k, (parent, _))| (k, parent.to_string()));
        if let Some(parent) = parent.filter(|p| deleted_parents.contains(p)) {
            // Forgotten now, gone with the parent (deleted after it, as a dependant). If this
            // run dies first, the parent is still recorded, and the next `down` deletes it.
            self.store.remove(id).await?;
            self.tally.lock().unwrap().deleted += 1;
            self.progress.done(id, &format!("deleted with {} {}", parent.0, parent.1));
            return Ok(());
        }
        self.store.update(|s| {
            if let Some(r) = s.resources.get_mut(id) {
                r.phase = Phase::Deleting;
            }
        })
        .await?;
        self.progress.step(id, &format!("deleting {pid}"));
        let start = Instant::now();
        let mut delay = Duration::from_millis(500);
        let mut retries = 0;
        // A child of a REST API deleted on its own (the API stays) takes the API's turn.
        let key = (kind.deleted_with() == Some(Kind::RestApi)).then(|| pid.split('/').next().unwrap_or_default().to_string());
        loop {
            match self.under_key(key.clone(), kind.delete(&self.ctx, &pid, &recorded.attributes)).await {
                Ok(()) => break,
                // A delete is safe to repeat (gone is success): a call that failed in a way
                // that may not have reached AWS, or ran out of throttling retries, is tried
                // again a few times.
                Err(e) if matches!(e.class, ErrorClass::Retryable | ErrorClass::Timeout) && retries < DELETE_RETRIES => {
                    retries += 1;
                    self.progress.step(id, &format!("{}; trying again", short(&e)));
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                // Something still uses it (an interface of a deleted load balancer, a draining
                // service), or AWS refuses for now: repeated, polling as a wait does, for
                // the refusal's budget.
                Err(e) if matches!(e.class, ErrorClass::DependencyViolation | ErrorClass::Transient) && start.elapsed() < in_use_budget(&e) => {
                    let waited = start.elapsed();
                    self.progress.waiting(id, &format!("in use ({})", e.code.as_deref().unwrap_or("refused")), waited);
                    tokio::time::sleep(poll_interval(waited)).await;
                }
                Err(e) => return Err(anyhow!(e).context(format!("deleting {id} ({pid})"))),
            }
        }
        self.store.remove(id).await?;
        self.tally.lock().unwrap().deleted += 1;
        self.progress.done(id, &format!("deleted {pid}"));
        Ok(())
    }
}
