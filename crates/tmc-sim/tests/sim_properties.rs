//! Properties of simulated runs over random fleets, workloads and timelines:
//!
//! - no overcommit at any step (the simulator's own count and an independent checker agree);
//! - every hard constraint holds at every step;
//! - replays are deterministic, byte for byte, whatever the order of clusters and workloads;
//! - no replica leaves a cluster before its toleration runs out, and none moves unless a rule
//!   requires it: a workload with rebalance `Never` (the default) whose spec and clusters did not
//!   change, and whose clusters it may still stay on, keeps every replica, even while other
//!   workloads rebalance (`OnRecovery`, `Always`) around it (preemption stays off: it is a rule
//!   that moves replicas);
//! - the controller wakes up in time: when a toleration runs out, a step happens then.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64 per property, to keep `cargo test` fast).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::{prelude::*, test_runner::FileFailurePersistence};
use support::policy_violations;
use tmc_core::{
    Cluster, Location, Quantity, RebalancePolicy, ReplicaSchedulingType, SpreadConstraint, TaintEffect, Toleration,
    TolerationOperator, Workload, WorkloadKey,
    controller::ControllerConfig,
    taint::{NOT_READY_TAINT_KEY, TaintVerdict, judge, toleration_deadline},
};
use tmc_sim::{
    Run, Scenario,
    json::to_json,
    sim::Snapshot,
    simulate,
    timeline::{CapacityChangeEvent, DrainEvent, ScaleEvent, SimTime, TaintEvent, TimelineEntry, UntaintEvent},
};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

#[derive(Clone, Debug)]
struct ClusterSpec {
    cpu: u64,
    region: u8,
    ready: bool,
}

#[derive(Clone, Debug)]
struct WorkloadSpec {
    replicas: u32,
    cpu_millis: u64,
    /// None: Divided; Some(None): Duplicated on every feasible cluster; Some(Some(n)): n copies.
    duplicated: Option<Option<u32>>,
    /// None: no own not-ready toleration (the controller default applies); Some(None): forever;
    /// Some(Some(s)): `s` seconds.
    not_ready: Option<Option<i64>>,
    /// Tolerates the `incident` NoExecute taint for this long (Some(None): forever).
    incident: Option<Option<i64>>,
    spread: bool,
    priority: i32,
    rebalance: RebalancePolicy,
}

#[derive(Clone, Debug)]
struct Spec {
    clusters: Vec<ClusterSpec>,
    workloads: Vec<WorkloadSpec>,
    /// (gap in seconds since the previous event, kind, target, parameter)
    events: Vec<(u16, u8, u8, u8)>,
    heartbeat: i64,
    default_toleration: Option<i64>,
}

fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    (2u64..=12, 0u8..3, prop::bool::weighted(0.9)).prop_map(|(cpu, region, ready)| ClusterSpec { cpu, region, ready })
}

fn seconds() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (0i64..=400).prop_map(Some)]
}

fn workload_spec() -> impl Strategy<Value = WorkloadSpec> {
    (
        1u32..=6,
        prop_oneof![Just(500u64), Just(1000), Just(2000)],
        prop_oneof![3 => Just(None), 1 => Just(Some(None)), 1 => (1u32..=3).prop_map(|n| Some(Some(n)))],
        prop_oneof![2 => Just(None), 1 => seconds().prop_map(Some)],
        prop_oneof![2 => Just(None), 1 => seconds().prop_map(Some)],
        prop::bool::weighted(0.3),
        0i32..3,
        prop_oneof![
            4 => Just(RebalancePolicy::Never),
            1 => Just(RebalancePolicy::OnRecovery),
            1 => Just(RebalancePolicy::Always)
        ],
    )
        .prop_map(|(replicas, cpu_millis, duplicated, not_ready, incident, spread, priority, rebalance)| {
            WorkloadSpec { replicas, cpu_millis, duplicated, not_ready, incident, spread, priority, rebalance }
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(cluster_spec(), 2..=6),
        prop::collection::vec(workload_spec(), 1..=5),
        prop::collection::vec((0u16..=400, 0u8..13, any::<u8>(), any::<u8>()), 0..=10),
        20i64..=120,
        prop_oneof![1 => Just(None), 3 => (0i64..=400).prop_map(Some)],
    )
        .prop_map(|(clusters, workloads, events, heartbeat, default_toleration)| Spec {
            clusters,
            workloads,
            events,
            heartbeat,
            default_toleration,
        })
}

fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: key.to_string(),
        operator: TolerationOperator::Exists,
        value: String::new(),
        effect: Some(TaintEffect::NoExecute),
        toleration_seconds: seconds,
    }
}

fn cluster(name: &str, cpu: u64, region: u8, ready: bool) -> Cluster {
    let mut c = Cluster {
        name: name.to_string(),
        location: Location {
            provider: Some(if region == 2 { "gcp" } else { "aws" }.to_string()),
            region: Some(format!("r{region}")),
            zone: Some(format!("r{region}-{name}")),
        },
        ready,
        ..Cluster::default()
    };
    c.capacity.insert("cpu".into(), Quantity::from_units(cpu));
    c.capacity.insert("pods".into(), Quantity::from_units(20));
    c
}

fn entry(at: i64) -> TimelineEntry {
    TimelineEntry {
        at: SimTime(at),
        label: None,
        cluster_down: None,
        cluster_up: None,
        taint: None,
        untaint: None,
        cordon: None,
        uncordon: None,
        drain: None,
        capacity_change: None,
        add_cluster: None,
        remove_cluster: None,
        add_workload: None,
        remove_workload: None,
        scale: None,
    }
}

/// Builds a scenario whose timeline is valid by construction: each raw event is mapped onto an
/// event that makes sense for the fleet as it is at that point.
fn scenario(spec: &Spec) -> Scenario {
    let clusters: Vec<Cluster> =
        spec.clusters.iter().enumerate().map(|(i, c)| cluster(&format!("c{i}"), c.cpu, c.region, c.ready)).collect();
    let workloads: Vec<Workload> = spec
        .workloads
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut w = Workload::named(&format!("w{i}"));
            w.namespace = "ns".into();
            w.replicas = s.replicas;
            w.priority = s.priority;
            w.rebalance.policy = s.rebalance;
            w.resources.insert("cpu".into(), Quantity::from_millis(s.cpu_millis));
            if let Some(n) = s.duplicated {
                w.replica_scheduling.kind = ReplicaSchedulingType::Duplicated;
                w.number_of_clusters = n;
            }
            if let Some(seconds) = s.not_ready {
                w.tolerations.push(toleration(NOT_READY_TAINT_KEY, seconds));
            }
            if let Some(seconds) = s.incident {
                w.tolerations.push(toleration("incident", seconds));
            }
            if s.spread {
                w.spread_constraints.push(SpreadConstraint {
                    topology_key: "region".into(),
                    min_groups: Some(2),
                    max_groups: None,
                    max_skew: None,
                });
            }
            w
        })
        .collect();

    // Fleet state as the timeline goes, to pick valid events.
    let mut live: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    let mut down: BTreeSet<String> = clusters.iter().filter(|c| !c.ready).map(|c| c.name.clone()).collect();
    let mut cordoned: BTreeSet<String> = BTreeSet::new();
    let mut tainted: BTreeSet<String> = BTreeSet::new();
    let mut keys: Vec<String> = workloads.iter().map(|w| w.key().0).collect();
    let mut added = 0;
    let mut at = 0i64;
    let mut timeline = Vec::new();
    for &(gap, kind, target, param) in &spec.events {
        at += i64::from(gap);
        let mut e = entry(at);
        let pick = |list: &[String]| list.get(usize::from(target) % list.len().max(1)).cloned();
        match kind {
            0 | 1 => {
                let Some(c) = pick(&live) else { continue };
                if down.remove(&c) {
                    e.cluster_up = Some(c);
                } else {
                    down.insert(c.clone());
                    e.cluster_down = Some(c);
                }
            }
            2 | 3 => {
                let Some(c) = pick(&live) else { continue };
                if tainted.remove(&c) {
                    e.untaint = Some(UntaintEvent { cluster: c, key: "incident".into(), effect: None });
                } else {
                    tainted.insert(c.clone());
                    let effect = if param % 3 == 0 { TaintEffect::NoSchedule } else { TaintEffect::NoExecute };
                    e.taint = Some(TaintEvent { cluster: c, key: "incident".into(), value: String::new(), effect });
                }
            }
            4 | 5 => {
                let Some(c) = pick(&live) else { continue };
                if cordoned.remove(&c) {
                    e.uncordon = Some(c);
                } else if kind == 4 {
                    cordoned.insert(c.clone());
                    e.cordon = Some(c);
                } else {
                    cordoned.insert(c.clone());
                    e.drain = Some(DrainEvent { cluster: c, grace_period: SimTime(i64::from(param) * 2) });
                }
            }
            6 => {
                let Some(c) = pick(&live) else { continue };
                let mut capacity = BTreeMap::new();
                capacity.insert("cpu".to_string(), Quantity::from_units(u64::from(param % 14)));
                e.capacity_change = Some(CapacityChangeEvent { cluster: c, capacity, allocated: BTreeMap::new() });
            }
            7 => {
                let name = format!("new{added}");
                added += 1;
                live.push(name.clone());
                e.add_cluster = Some(cluster(&name, 2 + u64::from(param % 10), param % 3, true));
            }
            8 => {
                if live.len() <= 1 {
                    continue;
                }
                let Some(c) = pick(&live) else { continue };
                live.retain(|l| *l != c);
                down.remove(&c);
                cordoned.remove(&c);
                tainted.remove(&c);
                e.remove_cluster = Some(c);
            }
            9 => {
                let mut w = Workload::named(&format!("late{added}"));
                added += 1;
                w.namespace = "ns".into();
                w.replicas = 1 + u32::from(param % 5);
                w.resources.insert("cpu".into(), Quantity::from_millis(500 * (1 + u64::from(param % 3))));
                if param % 2 == 0 {
                    w.tolerations.push(toleration(NOT_READY_TAINT_KEY, Some(i64::from(param))));
                }
                keys.push(w.key().0);
                e.add_workload = Some(w);
            }
            10 => {
                let Some(k) = pick(&keys) else { continue };
                keys.retain(|x| *x != k);
                e.remove_workload = Some(k);
            }
            _ => {
                let Some(k) = pick(&keys) else { continue };
                e.scale = Some(ScaleEvent { workload: k, replicas: u32::from(param % 9) });
            }
        }
        timeline.push(e);
    }
    Scenario {
        name: Some("property".into()),
        clusters,
        workloads,
        controller: Some(ControllerConfig {
            heartbeat_threshold_seconds: spec.heartbeat,
            default_not_ready_toleration_seconds: spec.default_toleration,
            no_execute_eviction: true,
        }),
        timeline,
        ..Scenario::default()
    }
}

fn run(scenario: &Scenario) -> Run {
    match simulate(scenario, &mut |_, _| {}) {
        Ok(run) => run,
        Err(e) => panic!("simulation failed: {e}\n{scenario:#?}"),
    }
}

/// Whether a workload may have to leave one of the clusters it is on at `cur`: the cluster is
/// gone, its spec changed (capacity, outside usage, labels, APIs, capabilities), or it carries a
/// `NoExecute` taint the workload does not (or no longer) tolerate.
fn must_or_may_move(w: &Workload, clusters: &[&str], prev: &Snapshot, cur: &Snapshot) -> bool {
    let find = |s: &Snapshot, name: &str| s.input.clusters.iter().find(|c| c.name == name).cloned();
    clusters.iter().any(|name| {
        let (Some(before), Some(now)) = (find(prev, name), find(cur, name)) else { return true };
        let spec_changed = before.capacity != now.capacity
            || before.allocated != now.allocated
            || before.labels != now.labels
            || before.location != now.location
            || before.api_resources != now.api_resources
            || before.capabilities != now.capabilities;
        spec_changed
            || now.effective_taints().any(|t| {
                t.effect == TaintEffect::NoExecute
                    && judge(&t, &w.tolerations, cur.input.now) == TaintVerdict::Untolerated
            })
    })
}

/// Every removal of replicas that no rule requires, as messages.
fn unjustified_moves(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for pair in run.snapshots.windows(2) {
        let (prev, cur) = (&pair[0], &pair[1]);
        for w in &cur.input.workloads {
            let key = w.key();
            let Some(before) = prev.input.workloads.iter().find(|o| o.key() == key) else { continue };
            if before != w || w.rebalance.policy != RebalancePolicy::Never {
                continue; // scaled, or allowed to move for a better placement
            }
            let (Some(p), Some(q)) = (prev.plan.get(&key), cur.plan.get(&key)) else { continue };
            let names: Vec<&str> = p.decisions.iter().map(|d| d.cluster.as_str()).collect();
            if must_or_may_move(w, &names, prev, cur) {
                continue;
            }
            for d in &p.decisions {
                let now = q.decisions.iter().find(|e| e.cluster == d.cluster).map_or(0, |e| e.replicas);
                if now < d.replicas {
                    out.push(format!(
                        "at {}s {key} lost {} replica(s) on {} although nothing required it ({:?} -> {:?})",
                        cur.at,
                        d.replicas - now,
                        d.cluster,
                        p.decisions,
                        q.decisions
                    ));
                }
            }
        }
    }
    out
}

/// Steps missing at a toleration deadline: a replica on a cluster whose taint it tolerates for a
/// while must be looked at again when that time comes.
fn late_wakeups(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let start = 0;
    for (i, snap) in run.snapshots.iter().enumerate() {
        let next = run.snapshots.get(i + 1).map(|s| s.at);
        let workloads: BTreeMap<WorkloadKey, &Workload> = snap.input.workloads.iter().map(|w| (w.key(), w)).collect();
        for p in &snap.plan.placements {
            let Some(w) = workloads.get(&p.workload) else { continue };
            for d in &p.decisions {
                let Some(c) = snap.input.clusters.iter().find(|c| c.name == d.cluster) else { continue };
                for t in c.effective_taints() {
                    let Some(deadline) = toleration_deadline(&t, &w.tolerations) else { continue };
                    let deadline = deadline - start;
                    if deadline > snap.at && next.is_none_or(|n| n > deadline) {
                        out.push(format!(
                            "at {}s {} stays on {} tolerating {} until {deadline}s, but the next step is {next:?}",
                            snap.at, p.workload, d.cluster, *t
                        ));
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_overcommit_and_hard_constraints_hold_at_every_step(spec in spec()) {
        let scenario = scenario(&spec);
        prop_assert!(scenario.check().is_ok(), "generated timeline is invalid: {:?}", scenario.check().err());
        let run = run(&scenario);
        prop_assert_eq!(run.totals.overcommit, 0);
        for (step, snap) in run.steps.iter().zip(&run.snapshots) {
            prop_assert_eq!(step.overcommit, 0, "overcommit at {}s: {:?}", step.at, step.overcommitted);
            let violations = policy_violations(&snap.input, &snap.plan);
            prop_assert!(violations.is_empty(), "at {}s: {}", snap.at, violations.join("\n"));
        }
    }

    #[test]
    fn replays_are_byte_identical_whatever_the_input_order(spec in spec()) {
        let scenario = scenario(&spec);
        let first = to_json(&run(&scenario)).unwrap_or_else(|e| panic!("{e}"));
        let again = to_json(&run(&scenario)).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(&first, &again);
        let mut shuffled = scenario.clone();
        shuffled.clusters.reverse();
        shuffled.workloads.reverse();
        let reordered = to_json(&run(&shuffled)).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(&first, &reordered);
    }

    #[test]
    fn replicas_leave_only_when_a_rule_requires_it(spec in spec()) {
        let run = run(&scenario(&spec));
        let moves = unjustified_moves(&run);
        prop_assert!(moves.is_empty(), "{}", moves.join("\n"));
    }

    #[test]
    fn the_controller_wakes_up_when_a_toleration_runs_out(spec in spec()) {
        let run = run(&scenario(&spec));
        let late = late_wakeups(&run);
        prop_assert!(late.is_empty(), "{}", late.join("\n"));
    }
}

/// A fixed case of the properties above, with numbers: a cluster dies at 100 s; the workload
/// tolerating not-ready for 30 s leaves at 100 + 60 + 30, the one with the default 300 s at
/// 100 + 60 + 300, the one tolerating it forever stays; nothing leaves before.
fn outage() -> Scenario {
    let mut a = cluster("a", 10, 0, true);
    a.labels.insert("pool".into(), "a".into());
    let b = cluster("b", 10, 1, true);
    let pinned = |name: &str, tolerate: Option<Option<i64>>| {
        let mut w = Workload::named(name);
        w.resources.insert("cpu".into(), Quantity::from_units(1));
        // Prefer cluster a, so every workload starts there.
        w.preferences.push(tmc_core::Preference {
            weight: 100,
            label_selector: Some(tmc_core::LabelSelector {
                match_labels: [("pool".to_string(), "a".to_string())].into(),
                ..Default::default()
            }),
            location_selector: None,
        });
        if let Some(s) = tolerate {
            w.tolerations.push(toleration(NOT_READY_TAINT_KEY, s));
        }
        w
    };
    let mut entry_down = entry(100);
    entry_down.cluster_down = Some("a".into());
    let mut entry_up = entry(1000);
    entry_up.cluster_up = Some("a".into());
    Scenario {
        clusters: vec![a, b],
        workloads: vec![pinned("fast", Some(Some(30))), pinned("default", None), pinned("forever", Some(None))],
        timeline: vec![entry_down, entry_up],
        ..Scenario::default()
    }
}

#[test]
fn evictions_follow_heartbeat_threshold_and_toleration_seconds() {
    let run = run(&outage());
    let on_a = |key: &str| -> Vec<(i64, bool)> {
        run.snapshots
            .iter()
            .map(|s| {
                let p = s.plan.get(&WorkloadKey::new("default", key));
                (s.at, p.is_some_and(|p| p.decisions.iter().any(|d| d.cluster == "a")))
            })
            .collect()
    };
    let times: Vec<i64> = run.snapshots.iter().map(|s| s.at).collect();
    assert_eq!(times, [0, 100, 160, 190, 460, 1000], "steps: start, down, not ready, two deadlines, up");
    assert_eq!(on_a("fast"), [(0, true), (100, true), (160, true), (190, false), (460, false), (1000, false)]);
    assert_eq!(on_a("default"), [(0, true), (100, true), (160, true), (190, true), (460, false), (1000, false)]);
    assert!(on_a("forever").iter().all(|(_, on)| *on), "{:?}", on_a("forever"));
    let evicted: Vec<(i64, u64)> = run.steps.iter().map(|s| (s.at, s.evicted)).collect();
    assert_eq!(evicted, [(0, 0), (100, 0), (160, 0), (190, 1), (460, 1), (1000, 0)]);
    let moved: Vec<u64> = run.steps.iter().map(|s| s.churn.moved).collect();
    assert_eq!(moved, [0, 0, 0, 1, 1, 0], "nothing moves back when the cluster returns (rebalance Never)");
    assert_eq!(run.steps[1].unavailable, 3, "all three replicas are on the dead cluster");
    assert_eq!(run.steps[4].unavailable, 1, "only the one that tolerates it forever stays");
    assert_eq!(run.incidents.len(), 1);
    let incident = &run.incidents[0];
    assert_eq!((incident.at, incident.affected_workloads, incident.replicas_hit), (100, 3, 3));
    assert_eq!(incident.time_to_recover, Some(900), "the replica that stayed is healthy again when a returns");
    assert!(unjustified_moves(&run).is_empty() && late_wakeups(&run).is_empty());
}

#[test]
fn the_checkers_are_not_vacuous() {
    let honest = run(&outage());
    // A step skipped: the replica tolerating not-ready for 300 s would outstay its toleration.
    let mut sleepy = honest.clone();
    sleepy.snapshots.retain(|s| s.at != 460);
    let late = late_wakeups(&sleepy).join("\n");
    assert!(
        late.contains("default/default stays on a tolerating {tmc.kcp.io/not-ready:NoExecute} until 460s"),
        "{late}"
    );
    // A replica moved while its cluster was still fine to stay on (down, not yet not ready).
    let mut restless = honest.clone();
    let snap = restless.snapshots.iter_mut().find(|s| s.at == 100).unwrap_or_else(|| panic!("no step at 100"));
    for p in snap.plan.placements.iter_mut().filter(|p| p.workload.0 == "default/forever") {
        p.decisions = vec![tmc_core::Decision { cluster: "b".into(), replicas: 1 }];
    }
    let moves = unjustified_moves(&restless).join("\n");
    assert!(moves.contains("at 100s default/forever lost 1 replica(s) on a although nothing required it"), "{moves}");
}

#[test]
fn the_generator_exercises_evictions_moves_and_wakeups() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut evicting, mut moving, mut incidents, mut woken) = (0, 0, 0, 0);
    for _ in 0..100 {
        let spec = spec().new_tree(&mut runner).unwrap_or_else(|e| panic!("{e}")).current();
        let run = run(&scenario(&spec));
        evicting += usize::from(run.totals.evicted > 0);
        moving += usize::from(run.totals.churn.moved > 0);
        incidents += usize::from(!run.incidents.is_empty());
        woken += usize::from(run.steps.iter().any(|s| s.at > 0 && s.events.is_empty()));
    }
    for (what, n) in [("evictions", evicting), ("moves", moving), ("incidents", incidents), ("wakeups", woken)] {
        assert!(n >= 10, "only {n} of 100 generated runs have {what}");
    }
}
