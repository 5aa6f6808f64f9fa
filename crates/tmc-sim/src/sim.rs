//! The fleet simulation: a deterministic loop on a virtual clock.
//!
//! Like quinn's protocol tests, the simulator is a pure core driven by simulated time. It keeps
//! the ground truth of the fleet (which clusters heartbeat, which are drained, their taints,
//! capacities and the workloads), and at every event time and every time the controller asks to
//! be woken ([`ControllerConfig::next_wakeup`]) it does what the controller does:
//!
//! 1. observe every cluster with [`ControllerConfig::observe`] and its [`ClusterHealth`]: a
//!    heartbeating cluster's last heartbeat is *now*, a cluster that went down keeps the time of
//!    its last heartbeat, a cluster that never heartbeat (`ready: false` at the start) has none;
//!    a drain sets `evictAfter`;
//! 2. give every workload its defaults ([`ControllerConfig::with_defaults`]);
//! 3. solve with [`tmc_core::solve`], with the previous plan as `previous` and the virtual time as
//!    `now`;
//! 4. ask [`ControllerConfig::next_wakeup`] when to look again.
//!
//! The rules (heartbeat threshold, eviction delays, what may stay and what must move) live in
//! `tmc-core`, shared with the kube adapter; this module only keeps time and measures.
//!
//! Every step is measured independently of the solver (see [`crate::metrics`]): replicas placed
//! and pending, the churn between consecutive plans (stopped, started, moved), overcommit (always
//! zero unless the solver is wrong), utilization per cluster and resource, and replicas per value
//! of each topology key. Incidents (events that take healthy replicas away) get a time to recover.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tmc_core::{
    Cluster, Phase, Placement, PlacementInput, Plan, ReplicaSchedulingType, Taint, TaintEffect, ValidationErrors,
    Workload, WorkloadKey,
    controller::{ClusterHealth, ControllerConfig, DRAINING_TAINT_KEY},
    solve,
    taint::{TaintVerdict, judge},
};

use crate::{
    metrics::{self, Churn, Overcommit, PhaseCounts},
    scenario::Scenario,
    timeline::{Event, TimedEvent, format_seconds},
};

/// A run stops with an error after this many steps (a run's steps are bounded by its events and
/// the deadlines they create, so only a broken rule gets here).
pub const MAX_STEPS: usize = 100_000;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The solver rejected the input of a step (a bug: the scenario was checked up front).
    #[error("at {}: the solver rejected the step's input: {source}", format_seconds(*.at))]
    Step {
        /// Seconds from the start.
        at: i64,
        /// The solver's errors.
        source: ValidationErrors,
    },
    /// The run did not settle.
    #[error("the run did not settle after {MAX_STEPS} steps (at {})", format_seconds(*.at))]
    TooManySteps {
        /// Seconds from the start when the run was stopped.
        at: i64,
    },
}

/// Whether a cluster sends heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heartbeat {
    /// Heartbeating all along: the last heartbeat is always *now*.
    Alive,
    /// Stopped at this time (absolute clock).
    StoppedAt(i64),
    /// Never heard from (`ready: false` at the start).
    Never,
}

#[derive(Clone, Debug)]
struct ClusterState {
    /// The spec: labels, capacity, taints added by events, cordon. `ready` is always true here;
    /// readiness comes from the heartbeat through [`ControllerConfig::observe`].
    spec: Cluster,
    heartbeat: Heartbeat,
    evict_after: Option<i64>,
}

/// The ground truth of the fleet and the workloads at one time.
#[derive(Clone, Debug, Default)]
pub struct World {
    clusters: BTreeMap<String, ClusterState>,
    workloads: BTreeMap<WorkloadKey, Workload>,
}

impl World {
    /// The fleet and workloads at the start of a scenario.
    pub fn new(scenario: &Scenario) -> Self {
        let mut world = World::default();
        for c in &scenario.clusters {
            world.add_cluster(c);
        }
        for w in &scenario.workloads {
            world.workloads.insert(w.key(), w.clone());
        }
        world
    }

    fn add_cluster(&mut self, c: &Cluster) {
        let heartbeat = if c.ready { Heartbeat::Alive } else { Heartbeat::Never };
        let spec = Cluster { ready: true, ..c.clone() };
        self.clusters.insert(c.name.clone(), ClusterState { spec, heartbeat, evict_after: None });
    }

    /// Applies one (checked) event at absolute time `now`. References to clusters or workloads
    /// that do not exist are ignored ([`crate::timeline::Timeline::compile`] rejects them).
    pub fn apply(&mut self, event: &Event, now: i64) {
        let cluster = event.cluster().map(str::to_string);
        let state = cluster.as_ref().and_then(|c| self.clusters.get_mut(c));
        match (event, state) {
            (Event::ClusterDown(_), Some(s)) => s.heartbeat = Heartbeat::StoppedAt(now),
            (Event::ClusterUp(_), Some(s)) => {
                s.heartbeat = Heartbeat::Alive;
                s.spec.not_ready_since = None;
            }
            (Event::Taint { taint, .. }, Some(s)) => {
                s.spec.taints.push(tmc_core::Taint { added_at: Some(now), ..taint.clone() });
            }
            (Event::Untaint { key, effect, .. }, Some(s)) => {
                s.spec.taints.retain(|t| !(t.key == *key && effect.is_none_or(|e| e == t.effect)));
            }
            (Event::Cordon(_), Some(s)) => s.spec.unschedulable = true,
            (Event::Uncordon(_), Some(s)) => {
                s.spec.unschedulable = false;
                s.evict_after = None;
            }
            (Event::Drain { grace_period, .. }, Some(s)) => {
                s.evict_after = Some(now.saturating_add(*grace_period));
            }
            (Event::CapacityChange { capacity, allocated, .. }, Some(s)) => {
                s.spec.capacity.extend(capacity.iter().map(|(r, q)| (r.clone(), *q)));
                s.spec.allocated.extend(allocated.iter().map(|(r, q)| (r.clone(), *q)));
            }
            (Event::AddCluster(c), _) => self.add_cluster(c),
            (Event::RemoveCluster(name), Some(_)) => {
                self.clusters.remove(name);
            }
            (Event::AddWorkload(w), _) => {
                self.workloads.insert(w.key(), (**w).clone());
            }
            (Event::RemoveWorkload(key), _) => {
                self.workloads.remove(key);
            }
            (Event::Scale { workload, replicas }, _) => {
                if let Some(w) = self.workloads.get_mut(workload) {
                    w.replicas = *replicas;
                }
            }
            _ => {}
        }
    }

    /// The controller's health record of a cluster at `now`.
    fn health(state: &ClusterState, now: i64) -> ClusterHealth {
        let last_heartbeat = match state.heartbeat {
            Heartbeat::Alive => Some(now),
            Heartbeat::StoppedAt(t) => Some(t),
            Heartbeat::Never => None,
        };
        ClusterHealth { last_heartbeat, evict_after: state.evict_after }
    }

    /// Health records for [`ControllerConfig::next_wakeup`]: a heartbeating cluster keeps
    /// heartbeating, so its heartbeat never goes stale and it is given none (only its drain, if
    /// any, is a deadline).
    fn wakeup_health(&self) -> Vec<ClusterHealth> {
        self.clusters
            .values()
            .map(|s| match s.heartbeat {
                Heartbeat::Alive => ClusterHealth { last_heartbeat: None, evict_after: s.evict_after },
                _ => World::health(s, 0),
            })
            .collect()
    }

    /// The solver input the controller builds at absolute time `now`, with `previous` decisions.
    pub fn input(&self, cfg: &ControllerConfig, now: i64, previous: &[Placement]) -> PlacementInput {
        let clusters: Vec<Cluster> =
            self.clusters.values().map(|s| cfg.observe(&s.spec, &World::health(s, now), now)).collect();
        let workloads: Vec<Workload> = self.workloads.values().map(|w| cfg.with_defaults(w)).collect();
        let previous = previous
            .iter()
            .filter(|p| !p.decisions.is_empty() && self.workloads.contains_key(&p.workload))
            .cloned()
            .collect();
        PlacementInput { clusters, workloads, previous, now: Some(now) }
    }

    /// Clusters whose heartbeats have stopped (or never started).
    pub fn down(&self) -> BTreeSet<String> {
        self.clusters.iter().filter(|(_, s)| s.heartbeat != Heartbeat::Alive).map(|(n, _)| n.clone()).collect()
    }

    /// Clusters being drained.
    pub fn draining(&self) -> BTreeSet<String> {
        self.clusters.iter().filter(|(_, s)| s.evict_after.is_some()).map(|(n, _)| n.clone()).collect()
    }
}

/// Everything about one step, for tests, `explain --at` and the report.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Seconds from the start.
    pub at: i64,
    /// Events applied at this step.
    pub events: Vec<TimedEvent>,
    /// What the solver was given.
    pub input: PlacementInput,
    /// What it decided.
    pub plan: Plan,
    /// Clusters whose heartbeats had stopped (ground truth, before the controller notices).
    pub down: BTreeSet<String>,
    /// Clusters being drained.
    pub draining: BTreeSet<String>,
    /// When the controller asked to be woken next (seconds from the start).
    pub next_wakeup: Option<i64>,
}

/// One workload whose decisions changed in a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `namespace/name`.
    pub workload: WorkloadKey,
    /// Replicas per cluster before (`a=2 b=1`, `-` for none).
    pub before: String,
    /// Replicas per cluster after.
    pub after: String,
    /// Replicas that stopped, started and moved.
    #[serde(flatten)]
    pub churn: Churn,
}

/// An event as applied at a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepEvent {
    /// What happened (`clusterDown aws-us-east-1a`).
    pub event: String,
    /// The timeline entry's label.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label: Option<String>,
}

impl StepEvent {
    /// `clusterDown aws-us-east-1a (us-east-1 outage)`.
    pub fn text(&self) -> String {
        match &self.label {
            Some(l) => format!("{} ({l})", self.event),
            None => self.event.clone(),
        }
    }
}

/// The measurements of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Seconds from the start.
    pub at: i64,
    /// The same, as `1h30m`.
    pub time: String,
    /// Events applied, in order.
    pub events: Vec<StepEvent>,
    /// What the controller noticed or did on its own (clusters not ready, evictions).
    pub controller: Vec<String>,
    /// Replicas requested (placed + pending).
    pub requested: u64,
    /// Replicas placed.
    pub placed: u64,
    /// Replicas not placed.
    pub pending: u64,
    /// Placed replicas on clusters whose heartbeats have stopped.
    pub unavailable: u64,
    /// Replicas stopped, started and moved since the previous step (see [`Churn`]).
    #[serde(flatten)]
    pub churn: Churn,
    /// Of the stopped replicas, those that had to leave their cluster (see [`evictions`]); the
    /// other stops are scale-downs, deletions, or replicas the solver chose to move.
    pub evicted: u64,
    /// Resources used beyond free capacity; always 0 for a correct solver.
    pub overcommit: u64,
    /// Workloads per phase.
    pub phases: PhaseCounts,
    /// Clusters whose heartbeats have stopped (the ground truth, before the controller notices).
    pub down: Vec<String>,
    /// Clusters being drained.
    pub draining: Vec<String>,
    /// Clusters the controller sees as not ready.
    pub not_ready: Vec<String>,
    /// Utilization per resource over the whole fleet, in percent.
    pub fleet_utilization: BTreeMap<String, f64>,
    /// Utilization per cluster and resource, in percent.
    pub utilization: BTreeMap<String, BTreeMap<String, f64>>,
    /// Replicas per cluster.
    pub replicas: BTreeMap<String, u64>,
    /// Replicas per value of each topology key (`provider`, `region`, `zone` and the keys
    /// workloads spread over).
    pub spread: BTreeMap<String, BTreeMap<String, u64>>,
    /// Workloads whose decisions changed.
    pub changes: Vec<Change>,
    /// Overcommitted resources, if any.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub overcommitted: Vec<Overcommit>,
}

/// An event (or events at one time) that took healthy replicas away, and the recovery.
///
/// A replica of workload W on cluster C is *healthy* when C heartbeats, is not being drained (or W
/// tolerates the drain's taint), and carries no `NoExecute` taint that W does not tolerate without
/// limit. Workloads with a copy on every feasible cluster (Duplicated without
/// `numberOfClusters`) are not counted: their copies stand or fall with their clusters. The
/// workloads *affected*
/// are those with fewer healthy replicas right after the events than right before (same plan).
/// The fleet has *recovered* at the first step where every affected workload that still exists
/// has at least as many healthy replicas as before (or as it now requests, if fewer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Seconds from the start.
    pub at: i64,
    /// The same, as `1h30m`.
    pub time: String,
    /// The events of the step.
    pub events: Vec<String>,
    /// Workloads that lost healthy replicas.
    pub affected_workloads: u64,
    /// Healthy replicas lost at once.
    pub replicas_hit: u64,
    /// When every affected workload was whole again, if it was before the end.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovered_at: Option<i64>,
    /// `recovered_at - at`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_to_recover: Option<i64>,
}

/// Totals over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Steps (solves).
    pub steps: u64,
    /// Timeline events applied.
    pub events: u64,
    /// Replicas stopped, started and moved over the run (the first step's start counts).
    #[serde(flatten)]
    pub churn: Churn,
    /// Replicas that had to leave their cluster.
    pub evicted: u64,
    /// Overcommitted resources summed over all steps; must be 0.
    pub overcommit: u64,
    /// Most replicas pending at one step.
    pub max_pending: u64,
    /// Most replicas on stopped clusters at one step.
    pub max_unavailable: u64,
    /// Replicas placed at the end.
    pub final_placed: u64,
    /// Replicas pending at the end.
    pub final_pending: u64,
    /// Phases at the end.
    pub final_phases: PhaseCounts,
}

/// Final value and range over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Range<T> {
    /// At the end.
    pub last: T,
    /// Smallest over the steps.
    pub min: T,
    /// Largest over the steps.
    pub max: T,
}

/// One workload at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalPlacement {
    /// `namespace/name`.
    pub workload: WorkloadKey,
    /// Its phase.
    pub phase: Phase,
    /// Replicas placed.
    pub placed: u64,
    /// Replicas pending.
    pub pending: u64,
    /// Replicas per cluster.
    pub decisions: BTreeMap<String, u64>,
    /// Why it is not fully placed.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
}

/// About the scenario that was run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// Scenario name, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Clusters at the start.
    pub clusters: u64,
    /// Workloads at the start.
    pub workloads: u64,
    /// Timeline events.
    pub events: u64,
    /// Clock at the start (the scenario's `now`, default 0).
    pub start: i64,
    /// Seconds from the start to the end of the run (the `duration`, else the last step).
    pub end: i64,
    /// The controller configuration used.
    pub controller: ControllerConfig,
}

/// A whole run: measurements per step, incidents, totals and the final decisions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// What was run.
    pub scenario: RunInfo,
    /// Totals.
    pub totals: Totals,
    /// Incidents and their recovery.
    pub incidents: Vec<Incident>,
    /// Utilization per cluster and resource: at the end, lowest and highest.
    pub utilization: BTreeMap<String, BTreeMap<String, Range<f64>>>,
    /// Replicas per value of each topology key: at the end, lowest and highest.
    pub spread: BTreeMap<String, BTreeMap<String, Range<u64>>>,
    /// The steps.
    pub steps: Vec<Step>,
    /// The decisions at the end.
    pub final_placements: Vec<FinalPlacement>,
    /// Inputs and plans of every step (not serialized).
    #[serde(skip)]
    pub snapshots: Vec<Snapshot>,
}

/// Runs a scenario. `progress(at, end)` is called after each step with seconds from the start
/// and the expected end (which grows if the run goes past it).
pub fn simulate(scenario: &Scenario, progress: &mut dyn FnMut(i64, i64)) -> Result<Run, SimError> {
    let timeline = scenario.check()?;
    let cfg = scenario.controller_config();
    let start = scenario.now.unwrap_or(0);
    let end = scenario.duration.map(|d| d.seconds());
    let mut horizon = end.unwrap_or_else(|| timeline.events.last().map_or(0, |e| e.at)).max(1);
    let mut world = World::new(scenario);
    let mut previous: Vec<Placement> = scenario.previous.clone();
    let mut events = timeline.events.iter().peekable();
    let mut snapshots: Vec<Snapshot> = Vec::new();
    let mut at = 0i64;
    loop {
        if snapshots.len() >= MAX_STEPS {
            return Err(SimError::TooManySteps { at });
        }
        let mut applied = Vec::new();
        while let Some(e) = events.next_if(|e| e.at == at) {
            world.apply(&e.event, start.saturating_add(at));
            applied.push(e.clone());
        }
        let now = start.saturating_add(at);
        let input = world.input(&cfg, now, &previous);
        let plan = solve(&input).map_err(|source| SimError::Step { at, source })?;
        let wake = cfg
            .next_wakeup(now, &world.wakeup_health(), &input.clusters, &input.workloads, &plan.placements)
            .map(|t| t.saturating_sub(start));
        previous.clone_from(&plan.placements);
        snapshots.push(Snapshot {
            at,
            events: applied,
            input,
            plan,
            down: world.down(),
            draining: world.draining(),
            next_wakeup: wake,
        });
        horizon = horizon.max(at);
        progress(at, horizon);
        let next = match (events.peek().map(|e| e.at), wake) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(n) => n,
                None => break,
            },
        };
        if end.is_some_and(|e| next > e) {
            break;
        }
        at = next;
    }
    Ok(measure(scenario, cfg, end, snapshots))
}

/// The topology keys measured: `provider`, `region`, `zone`, and every key a workload spreads over.
fn topology_keys(snapshots: &[Snapshot]) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = ["provider", "region", "zone"].map(String::from).into();
    for s in snapshots {
        for w in &s.input.workloads {
            keys.extend(w.spread_constraints.iter().map(|c| c.topology_key.clone()));
        }
    }
    keys.remove("cluster");
    keys
}

/// Healthy replicas of each workload of `plan`, judged by `truth` (see [`Incident`]). Workloads
/// with a copy on every feasible cluster (Duplicated without `numberOfClusters`) are left out:
/// their copies belong to their clusters and cannot recover elsewhere.
fn healthy(plan: &Plan, truth: &Snapshot, workloads: &BTreeMap<WorkloadKey, &Workload>) -> BTreeMap<WorkloadKey, u64> {
    let clusters: BTreeMap<&str, &Cluster> = truth.input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let draining = Taint {
        key: DRAINING_TAINT_KEY.to_string(),
        value: String::new(),
        effect: TaintEffect::NoExecute,
        added_at: None,
    };
    let mut out = BTreeMap::new();
    for p in &plan.placements {
        let Some(w) = workloads.get(&p.workload) else { continue };
        if w.replica_scheduling.kind == ReplicaSchedulingType::Duplicated && w.number_of_clusters.is_none() {
            continue;
        }
        let tolerated = |t: &Taint| judge(t, &w.tolerations, None) == TaintVerdict::Tolerated;
        let mut n = 0;
        for d in &p.decisions {
            let Some(c) = clusters.get(d.cluster.as_str()) else { continue };
            if truth.down.contains(&d.cluster) || (truth.draining.contains(&d.cluster) && !tolerated(&draining)) {
                continue;
            }
            let doomed = c.taints.iter().any(|t| t.effect == TaintEffect::NoExecute && !tolerated(t));
            if !doomed {
                n += u64::from(d.replicas);
            }
        }
        out.insert(p.workload.clone(), n);
    }
    out
}

fn workload_map(input: &PlacementInput) -> BTreeMap<WorkloadKey, &Workload> {
    input.workloads.iter().map(|w| (w.key(), w)).collect()
}

/// Replicas stopped at `cur` on each cluster because they could not stay there: the cluster is
/// gone, or it carries a `NoExecute` taint (including the automatic not-ready and draining taints)
/// that the workload does not tolerate, or no longer tolerates, at this time.
pub fn evictions(previous: &[Placement], cur: &Snapshot) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let clusters: BTreeMap<&str, &Cluster> = cur.input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let workloads = workload_map(&cur.input);
    for old in previous {
        let (Some(w), Some(p)) = (workloads.get(&old.workload), cur.plan.get(&old.workload)) else { continue };
        let now = metrics::counts(p);
        for d in &old.decisions {
            let left = u64::from(d.replicas).saturating_sub(now.get(&d.cluster).copied().unwrap_or(0));
            if left == 0 {
                continue;
            }
            let forced = match clusters.get(d.cluster.as_str()) {
                None => true,
                Some(c) => c.effective_taints().any(|t| {
                    t.effect == TaintEffect::NoExecute
                        && judge(&t, &w.tolerations, cur.input.now) == TaintVerdict::Untolerated
                }),
            };
            if forced {
                *out.entry(d.cluster.clone()).or_insert(0) += left;
            }
        }
    }
    out
}

/// What the controller noticed or did on its own at `cur`, compared with `prev`.
fn controller_notes(
    cfg: &ControllerConfig,
    prev: Option<&Snapshot>,
    cur: &Snapshot,
    evicted: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let before: BTreeMap<&str, bool> =
        prev.map(|p| p.input.clusters.iter().map(|c| (c.name.as_str(), c.ready)).collect()).unwrap_or_default();
    let lost: Vec<&str> = cur
        .input
        .clusters
        .iter()
        .filter(|c| !c.ready && before.get(c.name.as_str()) == Some(&true) && cur.down.contains(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if !lost.is_empty() {
        notes.push(format!(
            "not ready after {} without heartbeat: {}",
            format_seconds(cfg.heartbeat_threshold_seconds),
            lost.join(", ")
        ));
    }
    if !evicted.is_empty() {
        let list: Vec<String> = evicted.iter().map(|(c, n)| format!("{n} from {c}")).collect();
        notes.push(format!("evicted {} replicas ({})", evicted.values().sum::<u64>(), list.join(", ")));
    }
    notes
}

fn measure(scenario: &Scenario, cfg: ControllerConfig, end: Option<i64>, snapshots: Vec<Snapshot>) -> Run {
    let keys = topology_keys(&snapshots);
    let mut steps: Vec<Step> = Vec::with_capacity(snapshots.len());
    let mut totals = Totals::default();
    let initial: Vec<Placement> = scenario.previous.clone();
    for (i, snap) in snapshots.iter().enumerate() {
        let prev_snap = i.checked_sub(1).map(|j| &snapshots[j]);
        let prev_placements: &[Placement] = prev_snap.map_or(&initial, |s| &s.plan.placements);
        let before: BTreeMap<&WorkloadKey, BTreeMap<String, u64>> =
            prev_placements.iter().map(|p| (&p.workload, metrics::counts(p))).collect();
        let workloads = workload_map(&snap.input);
        let mut churn = Churn::default();
        let mut changes = Vec::new();
        let mut placed = 0u64;
        let mut pending = 0u64;
        let mut unavailable = 0u64;
        let mut seen = BTreeSet::new();
        for p in &snap.plan.placements {
            seen.insert(&p.workload);
            let after = metrics::counts(p);
            let old = before.get(&p.workload).cloned().unwrap_or_default();
            let c = Churn::between(&old, &after);
            churn.add(c);
            if old != after {
                changes.push(Change {
                    workload: p.workload.clone(),
                    before: metrics::format_counts(&old),
                    after: metrics::format_counts(&after),
                    churn: c,
                });
            }
            placed += p.placed;
            if let Some(w) = workloads.get(&p.workload) {
                pending += metrics::pending(w, p);
            }
            unavailable += p
                .decisions
                .iter()
                .filter(|d| snap.down.contains(&d.cluster))
                .map(|d| u64::from(d.replicas))
                .sum::<u64>();
        }
        // Workloads that were removed stop all their replicas.
        for (key, old) in &before {
            if !seen.contains(key) && !old.is_empty() {
                let c = Churn::between(old, &BTreeMap::new());
                churn.add(c);
                changes.push(Change {
                    workload: (*key).clone(),
                    before: metrics::format_counts(old),
                    after: "-".to_string(),
                    churn: c,
                });
            }
        }
        changes.sort_by(|a, b| a.workload.cmp(&b.workload));
        let evicted = evictions(prev_placements, snap);
        let used = metrics::usage(&snap.input, &snap.plan);
        let overcommitted = metrics::overcommit(&snap.input, &used);
        let mut replicas: BTreeMap<String, u64> = snap.input.clusters.iter().map(|c| (c.name.clone(), 0)).collect();
        let mut spread: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let clusters: BTreeMap<&str, &Cluster> = snap.input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
        for p in &snap.plan.placements {
            for d in &p.decisions {
                *replicas.entry(d.cluster.clone()).or_insert(0) += u64::from(d.replicas);
                let Some(c) = clusters.get(d.cluster.as_str()) else { continue };
                for key in &keys {
                    if let Some(v) = c.topology_value(key) {
                        *spread.entry(key.clone()).or_default().entry(v.to_string()).or_insert(0) +=
                            u64::from(d.replicas);
                    }
                }
            }
        }
        // Values with no replicas at this step still count (as 0) so ranges show them.
        for c in &snap.input.clusters {
            for key in &keys {
                if let Some(v) = c.topology_value(key) {
                    spread.entry(key.clone()).or_default().entry(v.to_string()).or_insert(0);
                }
            }
        }
        let events =
            snap.events.iter().map(|e| StepEvent { event: e.event.describe(), label: e.label.clone() }).collect();
        let step = Step {
            at: snap.at,
            time: format_seconds(snap.at),
            events,
            controller: controller_notes(&cfg, prev_snap, snap, &evicted),
            evicted: evicted.values().sum(),
            requested: placed + pending,
            placed,
            pending,
            unavailable,
            churn,
            overcommit: overcommitted.len() as u64,
            phases: PhaseCounts::of(&snap.plan),
            down: snap.down.iter().cloned().collect(),
            draining: snap.draining.iter().cloned().collect(),
            not_ready: snap.input.clusters.iter().filter(|c| !c.ready).map(|c| c.name.clone()).collect(),
            fleet_utilization: metrics::fleet_utilization(&snap.input, &used),
            utilization: metrics::utilization(&snap.input, &used),
            replicas,
            spread,
            changes,
            overcommitted,
        };
        totals.steps += 1;
        totals.events += snap.events.len() as u64;
        totals.churn.add(step.churn);
        totals.evicted += step.evicted;
        totals.overcommit += step.overcommit;
        totals.max_pending = totals.max_pending.max(step.pending);
        totals.max_unavailable = totals.max_unavailable.max(step.unavailable);
        steps.push(step);
    }
    if let Some(last) = steps.last() {
        totals.final_placed = last.placed;
        totals.final_pending = last.pending;
        totals.final_phases = last.phases;
    }
    let incidents = incidents(&snapshots, &steps);
    let final_placements = snapshots
        .last()
        .map(|s| {
            let workloads = workload_map(&s.input);
            s.plan
                .placements
                .iter()
                .map(|p| FinalPlacement {
                    workload: p.workload.clone(),
                    phase: p.phase,
                    placed: p.placed,
                    pending: workloads.get(&p.workload).map_or(0, |w| metrics::pending(w, p)),
                    decisions: metrics::counts(p),
                    message: p.message.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut utilization: BTreeMap<String, BTreeMap<String, Range<f64>>> = BTreeMap::new();
    let mut spread: BTreeMap<String, BTreeMap<String, Range<u64>>> = BTreeMap::new();
    for step in &steps {
        for (c, per) in &step.utilization {
            for (r, &v) in per {
                let e = utilization.entry(c.clone()).or_default().entry(r.clone()).or_insert(Range {
                    last: v,
                    min: v,
                    max: v,
                });
                *e = Range { last: v, min: e.min.min(v), max: e.max.max(v) };
            }
        }
        for (k, per) in &step.spread {
            for (v, &n) in per {
                let e =
                    spread.entry(k.clone()).or_default().entry(v.clone()).or_insert(Range { last: n, min: n, max: n });
                *e = Range { last: n, min: e.min.min(n), max: e.max.max(n) };
            }
        }
    }
    // A value that disappears (its clusters were removed) ends at 0.
    if let Some(last) = steps.last() {
        for (k, per) in &mut spread {
            for (v, r) in per.iter_mut() {
                if last.spread.get(k).and_then(|m| m.get(v)).is_none() {
                    r.last = 0;
                    r.min = 0;
                }
            }
        }
    }
    let last_at = snapshots.last().map_or(0, |s| s.at);
    Run {
        scenario: RunInfo {
            name: scenario.name.clone(),
            clusters: scenario.clusters.len() as u64,
            workloads: scenario.workloads.len() as u64,
            events: scenario.timeline.len() as u64,
            start: scenario.now.unwrap_or(0),
            end: end.unwrap_or(last_at),
            controller: cfg,
        },
        totals,
        incidents,
        utilization,
        spread,
        steps,
        final_placements,
        snapshots,
    }
}

/// Finds the incidents and their recovery (see [`Incident`]).
fn incidents(snapshots: &[Snapshot], steps: &[Step]) -> Vec<Incident> {
    let mut out = Vec::new();
    for (i, snap) in snapshots.iter().enumerate() {
        // Events at the very start set the scene; they are not incidents.
        if snap.events.is_empty() || i == 0 {
            continue;
        }
        let prev = &snapshots[i - 1];
        let prev_plan = &prev.plan;
        let before = healthy(prev_plan, prev, &workload_map(&prev.input));
        // The previous plan, judged by the world right after the events.
        let hit = healthy(prev_plan, snap, &workload_map(&snap.input));
        let mut affected: BTreeMap<WorkloadKey, u64> = BTreeMap::new();
        let mut lost = 0;
        for (key, &b) in &before {
            let after = hit.get(key).copied().unwrap_or(b);
            if after < b {
                affected.insert(key.clone(), b);
                lost += b - after;
            }
        }
        if affected.is_empty() {
            continue;
        }
        let recovered_at = snapshots[i..].iter().find_map(|s| {
            let workloads = workload_map(&s.input);
            let now = healthy(&s.plan, s, &workloads);
            let whole = affected.iter().all(|(key, &b)| {
                let Some(p) = s.plan.get(key) else { return true };
                let Some(w) = workloads.get(key) else { return true };
                let wanted = p.placed + metrics::pending(w, p);
                now.get(key).copied().unwrap_or(0) >= b.min(wanted)
            });
            whole.then_some(s.at)
        });
        out.push(Incident {
            at: snap.at,
            time: format_seconds(snap.at),
            events: steps[i].events.iter().map(StepEvent::text).collect(),
            affected_workloads: affected.len() as u64,
            replicas_hit: lost,
            recovered_at,
            time_to_recover: recovered_at.map(|r| r - snap.at),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_sim_scenario;

    fn run(text: &str) -> Run {
        let scenario = load_sim_scenario(text).unwrap_or_else(|e| panic!("{e}"));
        simulate(&scenario, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn times_are_offsets_from_the_scenario_clock() {
        let run =
            run("now: 1000\nclusters:\n- {name: a, capacity: {cpu: \"4\"}}\n- {name: b, capacity: {cpu: \"4\"}}\n\
             workloads:\n- {name: w, resources: {cpu: \"1\"}, clusterAffinity: {clusterNames: [a]}}\n\
             timeline:\n- {at: 100, clusterDown: a}\n");
        let times: Vec<i64> = run.snapshots.iter().map(|s| s.at).collect();
        assert_eq!(times, [0, 100, 160, 460], "start, down, not ready after 60 s, evicted after 300 s more");
        let nows: Vec<Option<i64>> = run.snapshots.iter().map(|s| s.input.now).collect();
        assert_eq!(nows, [Some(1000), Some(1100), Some(1160), Some(1460)]);
        assert_eq!(run.snapshots[2].input.clusters[0].not_ready_since, Some(1160));
        assert_eq!((run.scenario.start, run.scenario.end), (1000, 460));
        assert_eq!(run.steps[3].evicted, 1);
        assert_eq!(run.steps[3].pending, 1, "only cluster a is allowed");
    }

    #[test]
    fn without_a_timeline_a_run_is_one_step_unless_a_toleration_runs_out() {
        let still = run("clusters:\n- {name: a, capacity: {cpu: \"4\"}}\nworkloads:\n- {name: w}\n");
        assert_eq!(still.steps.len(), 1);
        assert_eq!((still.totals.churn.started, still.totals.final_placed), (1, 1));
        // A cluster that has been down since 0 (the scenario's clock) evicts at 300.
        let dying =
            run("clusters:\n- {name: a, ready: false, notReadySince: 0}\n- {name: b}\nworkloads:\n- {name: w}\n\
             previous:\n- {workload: default/w, decisions: [{cluster: a, replicas: 1}]}\n");
        let times: Vec<i64> = dying.steps.iter().map(|s| s.at).collect();
        assert_eq!(times, [0, 300]);
        assert_eq!(dying.steps[1].changes[0].after, "b=1");
        assert_eq!(dying.steps[1].churn, Churn { stopped: 1, started: 1, moved: 1 });
    }

    #[test]
    fn duration_ends_the_run_and_the_charts() {
        let run = run(
            "clusters:\n- {name: a}\nworkloads:\n- {name: w}\nduration: 2m\ntimeline:\n- {at: 1m, clusterDown: a}\n",
        );
        let times: Vec<i64> = run.steps.iter().map(|s| s.at).collect();
        assert_eq!(times, [0, 60, 120], "a step at the end is in; the eviction at 7m is not");
        assert_eq!(run.scenario.end, 120);
    }
}
