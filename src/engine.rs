//! Converge, plan, inspect and destroy: the provisioning contract on top of the executor.
//!
//! Intent is recorded before every create and the physical id the moment a create
//! returns, before any waiting; a resource without a recorded id is looked up by its
//! tags (or deterministic key) before anything is created. So a run killed at any instant
//! leaves a state that the next `up` completes and the next `down` removes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::watch;

use crate::aws::{AwsError, ErrorClass};
use crate::graph::{self, Outcome};
use crate::progress::Progress;
use crate::resources::{Ctx, Diff, DynResource, FieldChange, Kind, Observed, Poll};
use crate::stack::{destroy_dag, Node, Refs, Stack, UNKNOWN};
use crate::state::{Phase, ResourceState, State, StateStore};

/// How long a delete keeps retrying DependencyViolation: AWS releases network interfaces
/// of deleted load balancers, tasks and NAT gateways minutes after they are gone.
pub const DEPENDENCY_VIOLATION_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Calls in flight at once across the whole stack.
pub const DEFAULT_CONCURRENCY: usize = 16;

pub struct Engine {
    pub ctx: Ctx,
    pub store: Arc<StateStore>,
    pub stack: Stack,
    pub progress: Progress,
    pub concurrency: usize,
    tally: Mutex<Tally>,
    /// First reads of the recorded resources, one batched call per kind at the start of a
    /// run: `None` for a resource known to be gone. Each entry serves one read only; every
    /// read after a change goes to AWS.
    prefetched: Mutex<HashMap<(Kind, String), Option<Observed>>>,
    /// Tagged resources by (kind, logical id) from one scan per kind; `(kind, None)` marks
    /// a scanned kind.
    adoptable: Mutex<Adoptable>,
}

type Adoptable = HashMap<(Kind, Option<String>), Vec<Observed>>;

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
    Delete { physical_id: String },
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
    /// In state, no longer desired: `up` deletes it.
    Orphaned,
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

impl Engine {
    pub fn new(ctx: Ctx, store: Arc<StateStore>, stack: Stack, progress: Progress) -> Engine {
        Engine { ctx, store, stack, progress, concurrency: DEFAULT_CONCURRENCY, tally: Mutex::new(Tally::default()), prefetched: Mutex::default(), adoptable: Mutex::default() }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    fn refs(&self) -> BTreeMap<String, String> {
        self.store
            .snapshot()
            .resources
            .into_iter()
            .filter_map(|(id, r)| Some((id, r.physical_id?)))
            .collect()
    }

    /// Reads every recorded resource with one call per kind (in parallel) instead of one
    /// or more per resource.
    async fn prefetch(&self) -> Result<(), AwsError> {
        let mut by_kind: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        for r in self.store.snapshot().resources.into_values() {
            if let (Some(kind), Some(pid)) = (Kind::parse(&r.kind), r.physical_id) {
                by_kind.entry(kind).or_default().push(pid);
            }
        }
        let found = in_parallel(self.concurrency, by_kind, |(kind, ids)| async move {
            kind.find_many(&self.ctx, &ids).await.map(|found| (kind, ids, found))
        })
        .await?;
        let mut prefetched = self.prefetched.lock().unwrap();
        for (kind, ids, observations) in found {
            for id in ids {
                prefetched.insert((kind, id), None);
            }
            for o in observations {
                prefetched.insert((kind, o.physical_id.clone()), Some(o));
            }
        }
        Ok(())
    }

    /// The stack's tagged resources of `kinds`, one call per kind, in parallel.
    async fn inventory(&self, kinds: impl Iterator<Item = Kind>) -> Result<Vec<(Kind, Vec<(String, Observed)>)>, AwsError> {
        in_parallel(self.concurrency, kinds, |kind| async move { kind.inventory(&self.ctx).await.map(|found| (kind, found)) }).await
    }

    /// For the kinds with desired resources that have no recorded id, reads the stack's
    /// tagged resources once per kind, so adopting needs no call per resource.
    async fn scan_adoptable(&self) -> Result<(), AwsError> {
        let state = self.store.snapshot();
        let kinds: std::collections::BTreeSet<Kind> = self
            .stack
            .nodes
            .values()
            .filter(|n| n.kind.is_taggable() && state.physical_id(&n.id).is_none())
            .map(|n| n.kind)
            .collect();
        let found = self.inventory(kinds.into_iter()).await?;
        let mut adoptable = self.adoptable.lock().unwrap();
        for (kind, found) in found {
            adoptable.insert((kind, None), Vec::new());
            for (logical, o) in found {
                adoptable.entry((kind, Some(logical))).or_default().push(o);
            }
        }
        Ok(())
    }

    /// Resources carrying `id`'s tags: from the scan when it covered the kind.
    async fn find_adoptable(&self, kind: Kind, spec: &dyn DynResource, id: &str) -> Result<Vec<Observed>, AwsError> {
        let scanned = {
            let mut adoptable = self.adoptable.lock().unwrap();
            adoptable
                .contains_key(&(kind, None))
                .then(|| adoptable.remove(&(kind, Some(id.to_string()))).unwrap_or_default())
        };
        match scanned {
            Some(found) => Ok(found),
            None => spec.adopt(&self.ctx, id).await,
        }
    }

    /// The first read of a recorded resource: from the prefetch when it has it.
    async fn find_recorded(&self, kind: Kind, spec: &dyn DynResource, pid: &str) -> Result<Option<Observed>, AwsError> {
        let cached = self.prefetched.lock().unwrap().remove(&(kind, pid.to_string()));
        match cached {
            Some(observed) => Ok(observed),
            None => spec.find(&self.ctx, pid).await,
        }
    }

    fn spec(&self, id: &str) -> Box<dyn DynResource> {
        self.stack.nodes[id].spec(&Refs::new(&self.refs()))
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

    /// `up`: converge every desired resource, then delete what is no longer desired.
    pub async fn apply(self: &Arc<Self>, cancel: watch::Receiver<bool>) -> Result<Outcome> {
        tokio::try_join!(self.prefetch(), self.scan_adoptable())?;
        let dag = self.stack.apply_dag();
        let outcome = graph::run(&dag, self.concurrency, cancel.clone(), |id| {
            let engine = self.clone();
            async move {
                let result = engine.converge(&id).await;
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
            if observed.is_none() {
                self.progress.step(id, &format!("{pid} is missing (deleted out of band); recreating"));
            }
        }
        let mut adopted = false;
        if observed.is_none() && recorded.as_ref().is_none_or(|r| r.physical_id.is_none()) {
            let mut found = self.find_adoptable(node.kind, spec.as_ref(), id).await?;
            if found.len() > 1 {
                let ids: Vec<_> = found.iter().map(|o| o.physical_id.clone()).collect();
                self.progress.note(&format!(
                    "warning: {id}: several resources carry its tags ({}); adopting the first, `infra down` removes all",
                    ids.join(", ")
                ));
            }
            if !found.is_empty() {
                let o = found.swap_remove(0);
                self.record(id, node.kind, &o).await?;
                self.tally.lock().unwrap().adopted += 1;
                adopted = true;
                observed = Some(o);
            }
        }
        let created = observed.is_none();
        let mut observed = match observed {
            Some(o) => o,
            None => self.create(id, node.kind, spec.as_ref(), recorded.and_then(|r| r.client_token)).await?,
        };
        let origin = if created {
            format!("created {}", observed.physical_id)
        } else if adopted {
            format!("adopted {}", observed.physical_id)
        } else {
            String::new()
        };
        match spec.diff(&observed) {
            Diff::NoChange => {
                if self.store.get(id).map(|r| r.attributes) != Some(observed.attributes.clone()) {
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
                if let Some(new_id) = spec.update(&self.ctx, id, &observed).await? {
                    observed.physical_id = new_id;
                }
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
                bail!(
                    "{id} ({}) must be replaced: {}. infra does not replace network resources in place; revert the change or run `infra down` first",
                    observed.physical_id,
                    what.join("; ")
                );
            }
        }
        Ok(())
    }

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
        let pid = spec.create(&self.ctx, id, &token).await?;
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
        spec.await_ready(&self.ctx, &pid).await?;
        // Reads right after a create are eventually consistent on AWS.
        let what = format!("{kind} {pid} to be readable after create");
        let observed = crate::resources::wait_until(&what, "Describe", Duration::from_secs(60), || async {
            Ok(match spec.find(&self.ctx, &pid).await? {
                Some(o) => Poll::Ready(o),
                None => Poll::Pending("not found".into()),
            })
        })
        .await?;
        Ok(observed)
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
    pub async fn plan(&self) -> Result<Vec<(String, Planned)>> {
        self.prefetch().await?;
        let refs = self.refs();
        let state = self.store.snapshot();
        let mut results = self
            .read_all(|node| {
                let (refs, state) = (&refs, &state);
                async move {
                    let spec = node.spec(&Refs::new(refs));
                    let planned = match state.physical_id(&node.id) {
                        Some(pid) => match self.find_recorded(node.kind, spec.as_ref(), pid).await? {
                            None => Planned::Create { reason: format!("{pid} was deleted out of band") },
                            Some(o) => match spec.diff(&o) {
                                Diff::NoChange => Planned::NoChange,
                                Diff::Update(changes) => Planned::Update { changes },
                                Diff::Replace(changes) => Planned::Replace { changes },
                            },
                        },
                        // Dependencies not created yet: nothing of this can exist either.
                        None if node.deps.iter().any(|d| !refs.contains_key(d)) => Planned::Create { reason: "new".into() },
                        None => match spec.adopt(&self.ctx, &node.id).await?.into_iter().next() {
                            Some(o) => Planned::Adopt { physical_id: o.physical_id },
                            None => Planned::Create { reason: "new".into() },
                        },
                    };
                    Ok((node.id.clone(), planned))
                }
            })
            .await?;
        for (id, pid) in Self::orphans(&state, &self.stack) {
            results.push((id, Planned::Delete { physical_id: pid.unwrap_or_else(|| UNKNOWN.into()) }));
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    /// `status`: reads every resource in parallel and compares it with the desired spec.
    pub async fn status(&self) -> Result<Vec<(String, String, Health)>> {
        self.prefetch().await?;
        let refs = self.refs();
        let state = self.store.snapshot();
        let mut results = self
            .read_all(|node| {
                let (refs, state) = (&refs, &state);
                async move {
                    let Some(pid) = state.physical_id(&node.id).map(str::to_string) else {
                        return Ok((node.id.clone(), String::new(), Health::NotCreated));
                    };
                    let spec = node.spec(&Refs::new(refs));
                    let health = match self.find_recorded(node.kind, spec.as_ref(), &pid).await? {
                        None => Health::Missing,
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
        let found = self.inventory(Kind::ALL.into_iter().filter(|k| k.is_taggable())).await?;
        let state = self.store.snapshot();
        let known: std::collections::BTreeSet<&str> =
            state.resources.values().filter_map(|r| r.physical_id.as_deref()).collect();
        for (kind, found) in found {
            let found = found.into_iter().map(|(logical, o)| (logical, o.physical_id));
            for (logical, pid) in found.filter(|(_, pid)| !known.contains(pid.as_str())) {
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
                        attributes: BTreeMap::new(),
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
        graph::run(&dag, self.concurrency, cancel, |id| {
            let engine = self.clone();
            let kind = present[&id];
            async move {
                let result = engine.delete_one(&id, kind).await;
                if let Err(e) = &result {
                    engine.progress.failed(&id, &format!("{e:#}"));
                }
                result
            }
        })
        .await
    }

    async fn delete_one(&self, id: &str, kind: Kind) -> Result<()> {
        let Some(recorded) = self.store.get(id) else { return Ok(()) };
        let Some(pid) = recorded.physical_id else {
            // An intent whose create never returned an id; the sweep found nothing
            // tagged for it, so nothing exists.
            self.store.remove(id).await?;
            return Ok(());
        };
        self.store.update(|s| {
            if let Some(r) = s.resources.get_mut(id) {
                r.phase = Phase::Deleting;
            }
        })
        .await?;
        self.progress.step(id, &format!("deleting {pid}"));
        let start = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match kind.delete(&self.ctx, &pid).await {
                Ok(()) => break,
                Err(e) if e.class == ErrorClass::DependencyViolation && start.elapsed() < DEPENDENCY_VIOLATION_TIMEOUT => {
                    self.progress.step(id, &format!("waiting for dependencies to release {pid}: {}", e.code.as_deref().unwrap_or("")));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
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
