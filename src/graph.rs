//! DAG scheduling: runs a task per node once its dependencies have succeeded, with a cap
//! on tasks in flight. A failure skips the node's dependants only; a cancellation stops
//! new starts and lets the tasks in flight finish.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

/// Nodes and the nodes each one waits for.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl Dag {
    pub fn new() -> Dag {
        Dag::default()
    }

    pub fn add_node(&mut self, id: &str) {
        self.deps.entry(id.to_string()).or_default();
    }

    /// `node` runs only after `dependency` succeeded. Edges to unknown nodes are ignored
    /// (a dependency outside this run is already satisfied).
    pub fn add_edge(&mut self, node: &str, dependency: &str) {
        if node != dependency {
            self.deps.entry(node.to_string()).or_default().insert(dependency.to_string());
        }
    }

    /// Adds `other`'s nodes and edges.
    pub fn merge(&mut self, other: &Dag) {
        for (id, deps) in &other.deps {
            self.deps.entry(id.clone()).or_default().extend(deps.iter().cloned());
        }
    }

    fn deps_of(&self, id: &str) -> impl Iterator<Item = &String> {
        self.deps[id].iter().filter(|d| self.deps.contains_key(*d))
    }

    /// A dependency-respecting order; errors naming a node on a cycle.
    pub fn topological_order(&self) -> Result<Vec<String>, String> {
        let mut done = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.deps.len() {
            let ready: Vec<&String> = self
                .deps
                .keys()
                .filter(|id| !done.contains(*id) && self.deps_of(id).all(|d| done.contains(d)))
                .collect();
            if ready.is_empty() {
                let stuck = self.deps.keys().find(|id| !done.contains(*id)).unwrap();
                return Err(format!("dependency cycle through {stuck}"));
            }
            for id in ready {
                done.insert(id.clone());
                order.push(id.clone());
            }
        }
        Ok(order)
    }
}

/// The chain of nodes that set a run's wall time, from `timings` (start, end per node):
/// the node that ended last, then — back through the graph — the dependency of each that
/// ended last before it (what it waited for). First node first, each with its own time.
pub fn critical_chain(dag: &Dag, timings: &BTreeMap<String, (Instant, Instant)>) -> Vec<(String, Duration)> {
    let last = |ids: &mut dyn Iterator<Item = &String>| {
        ids.filter_map(|id| timings.get(id).map(|t| (id, t.1))).max_by_key(|(_, end)| *end).map(|(id, _)| id.clone())
    };
    let mut chain = Vec::new();
    let mut at = last(&mut timings.keys());
    while let Some(id) = at {
        let (start, end) = timings[&id];
        chain.push((id.clone(), end.saturating_duration_since(start)));
        at = match dag.deps.get(&id) {
            Some(deps) => last(&mut deps.iter().filter(|d| timings.get(*d).is_some_and(|t| t.1 <= end))),
            None => None,
        };
    }
    chain.reverse();
    chain
}

/// How a run ended. Not a `Result`, so `?` cannot swallow a cancellation or a failure.
#[must_use]
#[derive(Debug)]
pub enum Outcome {
    Completed,
    Failed {
        failed: Vec<(String, anyhow::Error)>,
        /// Dependants of failed nodes, never started.
        skipped: Vec<String>,
    },
    Cancelled {
        failed: Vec<(String, anyhow::Error)>,
        not_started: Vec<String>,
    },
}

/// Runs `task` for every node of `dag`, at most `concurrency` at once.
pub async fn run<F, Fut>(dag: &Dag, concurrency: usize, mut cancel: watch::Receiver<bool>, task: F) -> Outcome
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut pending: BTreeSet<String> = dag.deps.keys().cloned().collect();
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    let mut failed: Vec<(String, anyhow::Error)> = Vec::new();
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    let mut in_flight = FuturesUnordered::new();
    let mut cancelled = *cancel.borrow();

    loop {
        if !cancelled {
            let ready: Vec<String> = pending
                .iter()
                .filter(|id| dag.deps_of(id).all(|d| succeeded.contains(d)))
                .take(concurrency.saturating_sub(in_flight.len()))
                .cloned()
                .collect();
            for id in ready {
                pending.remove(&id);
                let fut = task(id.clone());
                in_flight.push(async move { (id, fut.await) });
            }
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some((id, result)) = in_flight.next() => match result {
                Ok(()) => {
                    succeeded.insert(id);
                }
                Err(e) => {
                    failed.push((id.clone(), e));
                    // Everything downstream of a failure can never run.
                    let mut frontier = vec![id];
                    while let Some(f) = frontier.pop() {
                        let dependants: Vec<String> =
                            pending.iter().filter(|p| dag.deps[*p].contains(&f)).cloned().collect();
                        for d in dependants {
                            pending.remove(&d);
                            blocked.insert(d.clone());
                            frontier.push(d);
                        }
                    }
                }
            },
            changed = cancel.changed(), if !cancelled => {
                cancelled = changed.is_err() || *cancel.borrow();
            }
        }
    }
    if !cancelled && !pending.is_empty() {
        // Nothing in flight and nothing ready: the rest wait on each other.
        let stuck: Vec<String> = pending.into_iter().collect();
        failed.push((stuck[0].clone(), anyhow::anyhow!("dependency cycle among {}", stuck.join(", "))));
        blocked.extend(stuck.into_iter().skip(1));
        return Outcome::Failed { failed, skipped: blocked.into_iter().collect() };
    }
    if cancelled && !pending.is_empty() {
        let mut not_started: Vec<String> = pending.into_iter().collect();
        not_started.extend(blocked);
        return Outcome::Cancelled { failed, not_started };
    }
    if failed.is_empty() && blocked.is_empty() {
        Outcome::Completed
    } else {
        Outcome::Failed { failed, skipped: blocked.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    fn chain_and_fan() -> Dag {
        // vpc ← subnet.a, subnet.b ← nat ; sg independent of subnets
        let mut dag = Dag::new();
        for id in ["vpc", "subnet.a", "subnet.b", "nat", "sg"] {
            dag.add_node(id);
        }
        dag.add_edge("subnet.a", "vpc");
        dag.add_edge("subnet.b", "vpc");
        dag.add_edge("nat", "subnet.a");
        dag.add_edge("sg", "vpc");
        dag
    }

    fn no_cancel() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    #[tokio::test]
    async fn dependencies_finish_before_dependants_start() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let outcome = run(&chain_and_fan(), 8, no_cancel(), |id| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!("start {id}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
                log.lock().unwrap().push(format!("end {id}"));
                Ok(())
            }
        })
        .await;
        assert!(matches!(outcome, Outcome::Completed));
        let log = log.lock().unwrap();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(pos("end vpc") < pos("start subnet.a"));
        assert!(pos("end subnet.a") < pos("start nat"));
        assert!(pos("end vpc") < pos("start sg"));
    }

    #[tokio::test]
    async fn never_exceeds_the_concurrency_cap() {
        let mut dag = Dag::new();
        for i in 0..20 {
            dag.add_node(&format!("n{i}"));
        }
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let outcome = run(&dag, 3, no_cancel(), |_| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await;
        assert!(matches!(outcome, Outcome::Completed));
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failure_skips_dependants_only_and_keeps_the_rest() {
        let ran = Arc::new(Mutex::new(BTreeSet::new()));
        let outcome = run(&chain_and_fan(), 8, no_cancel(), |id| {
            let ran = ran.clone();
            async move {
                ran.lock().unwrap().insert(id.clone());
                if id == "subnet.a" {
                    anyhow::bail!("boom");
                }
                Ok(())
            }
        })
        .await;
        let Outcome::Failed { failed, skipped } = outcome else { panic!("expected failure") };
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "subnet.a");
        assert_eq!(skipped, ["nat"]);
        let ran = ran.lock().unwrap();
        assert!(ran.contains("subnet.b") && ran.contains("sg") && !ran.contains("nat"));
    }

    #[tokio::test]
    async fn cancellation_lets_in_flight_finish_and_starts_nothing_new() {
        let (tx, rx) = watch::channel(false);
        let finished = Arc::new(Mutex::new(Vec::new()));
        let tx = Arc::new(tx);
        let outcome = run(&chain_and_fan(), 8, rx, |id| {
            let (finished, tx) = (finished.clone(), tx.clone());
            async move {
                if id == "vpc" {
                    // Ctrl-C arrives while the VPC call is in flight.
                    tx.send(true).unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                finished.lock().unwrap().push(id);
                Ok(())
            }
        })
        .await;
        let Outcome::Cancelled { not_started, .. } = outcome else { panic!("expected cancellation") };
        assert_eq!(*finished.lock().unwrap(), ["vpc"]);
        assert_eq!(not_started.len(), 4);
    }

    #[tokio::test]
    async fn a_cycle_fails_the_run_instead_of_completing() {
        let mut dag = chain_and_fan();
        dag.add_edge("vpc", "nat");
        let outcome = run(&dag, 8, no_cancel(), |_| async { Ok(()) }).await;
        let Outcome::Failed { failed, .. } = outcome else { panic!("a cycle reported as {outcome:?}") };
        assert!(failed[0].1.to_string().contains("dependency cycle"), "{:?}", failed[0].1);
    }

    #[test]
    fn the_critical_chain_follows_what_each_node_waited_for() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // vpc 0-1; subnet.a 1-2, subnet.b 1-5; nat (after subnet.a) 2-9; sg 1-3.
        let timings: BTreeMap<String, (Instant, Instant)> = [
            ("vpc", (at(0), at(1))),
            ("subnet.a", (at(1), at(2))),
            ("subnet.b", (at(1), at(5))),
            ("nat", (at(2), at(9))),
            ("sg", (at(1), at(3))),
        ]
        .into_iter()
        .map(|(id, t)| (id.to_string(), t))
        .collect();
        let chain = critical_chain(&chain_and_fan(), &timings);
        let ids: Vec<&str> = chain.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["vpc", "subnet.a", "nat"]);
        assert_eq!(chain[2].1, Duration::from_secs(7));
        assert!(critical_chain(&chain_and_fan(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn cycle_is_reported() {
        let mut dag = Dag::new();
        dag.add_edge("a", "b");
        dag.add_edge("b", "a");
        assert!(dag.topological_order().unwrap_err().contains("cycle"));
    }
}
