//! Property tests of the solver's invariants over random fleets and policies.
//!
//! The oracle here re-derives every rule from the model, independently of the solver's code:
//! capacity is never exceeded, hard constraints hold in every decision, Divided sums exactly when
//! Scheduled, Duplicated gives every chosen cluster all replicas, spread bounds hold, results are
//! deterministic and independent of input order, and re-solving with the plan as `previous`
//! moves nothing.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tmc_core::{
    Cluster, ClusterAffinity, ClusterWeight, Division, LabelSelector, LabelSelectorRequirement, Location,
    LocationSelector, Phase, PlacementInput, Plan, Preemption, Preference, Prioritizer, PrioritizerName, Quantity,
    Rebalance, RebalancePolicy, ReplicaScheduling, ReplicaSchedulingType, SelectorOperator, SpreadConstraint, Taint,
    TaintEffect, Toleration, TolerationOperator, Workload, solve, validate,
};

/// The test runner's configuration: `cases` by default, `PROPTEST_CASES` when set (a longer run).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

// ---------- strategies ----------

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn opt<T: std::fmt::Debug + Clone + 'static>(s: impl Strategy<Value = T>, p: f64) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(p, s)
}

const ENVS: &[&str] = &["prod", "dev"];
const TIERS: &[&str] = &["a", "b"];
const PROVIDERS: &[&str] = &["aws", "gcp", "onprem"];
const REGIONS: &[&str] = &["eu", "us", "ap", "sa"];
const ZONES: &[&str] = &["z1", "z2", "z3", "z4", "z5"];
const CAPS: &[&str] = &["gpu", "pci"];
const APIS: &[&str] = &["deployments.apps/v1", "jobs.batch/v1"];
const TOPOLOGY: &[&str] = &["cluster", "provider", "region", "zone", "env"];

fn taint() -> impl Strategy<Value = Taint> {
    (
        pick(&["maintenance", "spot", "gpu"]),
        pick(&["", "true"]),
        pick(&[TaintEffect::NoSchedule, TaintEffect::PreferNoSchedule, TaintEffect::NoExecute]),
    )
        .prop_map(|(k, v, effect)| Taint { key: k.into(), value: v.into(), effect, added_at: None })
}

fn cluster(i: usize) -> impl Strategy<Value = Cluster> {
    (
        (opt(pick(ENVS), 0.8), opt(pick(TIERS), 0.6), opt(pick(&["1", "3", "5"]), 0.5)),
        (opt(pick(PROVIDERS), 0.9), opt(pick(REGIONS), 0.85), opt(pick(ZONES), 0.8)),
        (proptest::sample::subsequence(CAPS, 0..=2), proptest::sample::subsequence(APIS, 0..=2)),
        (0u64..16_000, 0u64..64, opt(0u64..24, 0.5), opt(0u64..6, 0.3), 0u64..60),
        (
            proptest::collection::vec(taint(), 0..2).prop_map(|t| if t.len() > 1 { t[..1].to_vec() } else { t }),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.85),
            opt(0u32..5, 0.5),
        ),
    )
        .prop_map(
            move |(
                (env, tier, generation),
                (provider, region, zone),
                (caps, apis),
                (cpu_m, mem_gi, pods, gpus, alloc_pct),
                (mut taints, unschedulable, ready, cost),
            )| {
                let mut labels = BTreeMap::new();
                if let Some(e) = env {
                    labels.insert("env".to_string(), e.to_string());
                }
                if let Some(t) = tier {
                    labels.insert("tier".to_string(), t.to_string());
                }
                if let Some(g) = generation {
                    labels.insert("gen".to_string(), g.to_string());
                }
                let mut capacity = BTreeMap::new();
                let mut allocated = BTreeMap::new();
                capacity.insert("cpu".to_string(), Quantity::from_millis(cpu_m));
                allocated.insert("cpu".to_string(), Quantity::from_millis(cpu_m * alloc_pct / 100));
                capacity.insert("memory".to_string(), Quantity::from_units(mem_gi << 30));
                if let Some(p) = pods {
                    capacity.insert("pods".to_string(), Quantity::from_units(p));
                    allocated.insert("pods".to_string(), Quantity::from_units(p * alloc_pct / 100));
                }
                if let Some(g) = gpus {
                    capacity.insert("nvidia.com/gpu".to_string(), Quantity::from_units(g));
                }
                taints.sort_by(|a, b| (&a.key, a.effect).cmp(&(&b.key, b.effect)));
                taints.dedup_by(|a, b| a.key == b.key && a.effect == b.effect);
                Cluster {
                    name: format!("c{i:02}"),
                    labels,
                    location: Location {
                        provider: provider.map(str::to_string),
                        region: region.map(str::to_string),
                        zone: zone.map(str::to_string),
                    },
                    capabilities: caps.iter().map(|s| s.to_string()).collect(),
                    api_resources: apis.iter().map(|s| s.to_string()).collect(),
                    capacity,
                    allocated,
                    taints,
                    unschedulable,
                    ready,
                    not_ready_since: None,
                    cost: cost.map(f64::from),
                }
            },
        )
}

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    prop_oneof![
        (
            pick(&["env", "tier"]),
            pick(&[SelectorOperator::In, SelectorOperator::NotIn]),
            proptest::sample::subsequence(&["prod", "dev", "a", "b"][..], 1..=2)
        )
            .prop_map(|(k, operator, vals)| LabelSelectorRequirement {
                key: k.into(),
                operator,
                values: vals.iter().map(|v| v.to_string()).collect()
            }),
        (pick(&["env", "tier", "gen"]), pick(&[SelectorOperator::Exists, SelectorOperator::DoesNotExist]))
            .prop_map(|(k, operator)| LabelSelectorRequirement { key: k.into(), operator, values: vec![] }),
        (pick(&[SelectorOperator::Gt, SelectorOperator::Lt]), 0i64..6).prop_map(|(operator, v)| {
            LabelSelectorRequirement { key: "gen".into(), operator, values: vec![v.to_string()] }
        }),
    ]
}

fn label_selector() -> impl Strategy<Value = LabelSelector> {
    (opt(pick(ENVS), 0.4), proptest::collection::vec(requirement(), 0..2)).prop_map(|(env, match_expressions)| {
        LabelSelector {
            match_labels: env.map(|e| [("env".to_string(), e.to_string())].into()).unwrap_or_default(),
            match_expressions,
        }
    })
}

fn location_selector() -> impl Strategy<Value = LocationSelector> {
    (proptest::sample::subsequence(PROVIDERS, 0..=2), proptest::sample::subsequence(REGIONS, 0..=3)).prop_map(
        |(p, r)| LocationSelector {
            providers: p.iter().map(|s| s.to_string()).collect(),
            regions: r.iter().map(|s| s.to_string()).collect(),
            zones: vec![],
        },
    )
}

fn affinity(n_clusters: usize) -> impl Strategy<Value = ClusterAffinity> {
    (
        opt(label_selector(), 0.4),
        opt(location_selector(), 0.25),
        opt(proptest::collection::vec(0..n_clusters.max(1), 1..4), 0.25),
        opt(proptest::collection::vec(0..n_clusters.max(1), 1..2), 0.25),
    )
        .prop_map(|(label_selector, location_selector, names, exclude)| ClusterAffinity {
            name: None,
            label_selector,
            location_selector,
            cluster_names: names.unwrap_or_default().iter().map(|i| format!("c{i:02}")).collect(),
            exclude: exclude.unwrap_or_default().iter().map(|i| format!("c{i:02}")).collect(),
        })
}

fn toleration() -> impl Strategy<Value = Toleration> {
    prop_oneof![
        (
            pick(&["maintenance", "spot", "gpu", "tmc.kcp.io/not-ready"]),
            opt(pick(&[TaintEffect::NoSchedule, TaintEffect::PreferNoSchedule, TaintEffect::NoExecute]), 0.5)
        )
            .prop_map(|(k, effect)| Toleration {
                key: k.into(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect,
                toleration_seconds: None
            }),
        (pick(&["maintenance", "spot"]), pick(&["", "true"])).prop_map(|(k, v)| Toleration {
            key: k.into(),
            operator: TolerationOperator::Equal,
            value: v.into(),
            effect: None,
            toleration_seconds: None
        }),
        (0i64..600).prop_map(|s| Toleration {
            key: "tmc.kcp.io/not-ready".into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: Some(s)
        }),
    ]
}

fn spread() -> impl Strategy<Value = Vec<SpreadConstraint>> {
    proptest::sample::subsequence(TOPOLOGY, 0..=2)
        .prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), proptest::collection::vec((opt(1u32..4, 0.6), opt(0u32..3, 0.5), opt(0u32..4, 0.5)), n))
        })
        .prop_map(|(keys, bounds)| {
            keys.iter()
                .zip(bounds)
                .map(|(k, (min, extra, skew))| SpreadConstraint {
                    topology_key: k.to_string(),
                    min_groups: min,
                    max_groups: extra.map(|e| min.unwrap_or(1) + e),
                    max_skew: skew,
                })
                .collect()
        })
}

fn scheduling(n_clusters: usize) -> impl Strategy<Value = ReplicaScheduling> {
    (
        pick(&[ReplicaSchedulingType::Divided, ReplicaSchedulingType::Divided, ReplicaSchedulingType::Duplicated]),
        pick(&[Division::Weighted, Division::Dynamic, Division::Aggregated]),
        proptest::collection::vec(
            (proptest::collection::vec(0..n_clusters.max(1), 1..3), opt(label_selector(), 0.3), 0u32..4),
            0..3,
        ),
        opt(0u32..3, 0.3),
        opt(1u32..6, 0.3),
    )
        .prop_map(|(kind, division, weights, min, max_extra)| {
            let divided = kind == ReplicaSchedulingType::Divided;
            let weights = if divided && division == Division::Weighted {
                weights
                    .into_iter()
                    .map(|(names, sel, weight)| ClusterWeight {
                        cluster_names: if sel.is_some() {
                            vec![]
                        } else {
                            names.iter().map(|i| format!("c{i:02}")).collect()
                        },
                        label_selector: sel,
                        weight,
                    })
                    .collect()
            } else {
                vec![]
            };
            ReplicaScheduling {
                kind,
                division,
                weights,
                min_replicas_per_cluster: if divided { min } else { None },
                max_replicas_per_cluster: if divided { max_extra.map(|m| m + min.unwrap_or(0)) } else { None },
            }
        })
}

fn workload(i: usize, n_clusters: usize) -> impl Strategy<Value = Workload> {
    (
        (0u32..13, 0u64..4000, 0u64..8, opt(0u64..3, 0.2), -2i32..3),
        (opt(pick(APIS), 0.25), opt(pick(CAPS), 0.2)),
        (opt(affinity(n_clusters), 0.5), prop::bool::weighted(0.15), affinity(n_clusters), affinity(n_clusters)),
        proptest::collection::vec(toleration(), 0..3),
        spread(),
        scheduling(n_clusters),
        opt(1u32..5, 0.3),
        (
            proptest::collection::vec((1u32..101, label_selector()), 0..2),
            proptest::collection::vec(
                (
                    pick(&[
                        PrioritizerName::Balance,
                        PrioritizerName::Steady,
                        PrioritizerName::LeastAllocated,
                        PrioritizerName::MostAllocated,
                        PrioritizerName::Cost,
                    ]),
                    -3i32..4,
                ),
                0..3,
            ),
        ),
        (
            prop::bool::weighted(0.25),
            pick(&[
                RebalancePolicy::Never,
                RebalancePolicy::Never,
                RebalancePolicy::OnRecovery,
                RebalancePolicy::Always,
            ]),
            opt(0u32..4, 0.3),
        ),
    )
        .prop_map(
            move |(
                (replicas, cpu_m, mem_gi, gpus, priority),
                (apis, caps),
                (aff, fallback, g1, g2),
                tolerations,
                spread_constraints,
                replica_scheduling,
                number_of_clusters,
                (prefs, prios),
                (preempt, policy, budget),
            )| {
                let mut w = Workload::named(&format!("w{i:02}"));
                w.replicas = replicas;
                w.priority = priority;
                w.resources.insert("cpu".into(), Quantity::from_millis(cpu_m));
                w.resources.insert("memory".into(), Quantity::from_units(mem_gi << 28));
                if let Some(g) = gpus {
                    w.resources.insert("nvidia.com/gpu".into(), Quantity::from_units(g));
                }
                w.required_apis = apis.iter().map(|s| s.to_string()).collect();
                w.required_capabilities = caps.iter().map(|s| s.to_string()).collect();
                // Keep most workloads placeable: taints are common in the generated fleets.
                if fallback {
                    w.cluster_affinities = vec![
                        ClusterAffinity { name: Some("first".into()), ..g1 },
                        ClusterAffinity { name: Some("second".into()), ..g2 },
                    ];
                } else {
                    w.cluster_affinity = aff;
                }
                w.tolerations = tolerations;
                w.spread_constraints = spread_constraints;
                w.replica_scheduling = replica_scheduling;
                w.number_of_clusters = number_of_clusters;
                w.preferences = prefs
                    .into_iter()
                    .map(|(weight, s)| Preference { weight, label_selector: Some(s), location_selector: None })
                    .collect();
                let mut seen = BTreeSet::new();
                w.prioritizers = prios
                    .into_iter()
                    .filter(|(n, _)| seen.insert(*n))
                    .map(|(name, weight)| Prioritizer { name, weight })
                    .collect();
                w.preemption = if preempt { Preemption::PreemptLowerPriority } else { Preemption::Never };
                w.rebalance = Rebalance { policy, max_moves_per_round: budget };
                w
            },
        )
}

fn input() -> impl Strategy<Value = PlacementInput> {
    input_sized(9, 7)
}

/// Inputs with fewer than `clusters` clusters and `workloads` workloads (at least one of each).
fn input_sized(clusters: usize, workloads: usize) -> impl Strategy<Value = PlacementInput> {
    (1usize..clusters, 1usize..workloads).prop_flat_map(|(nc, nw)| {
        let clusters: Vec<_> = (0..nc).map(cluster).collect();
        let workloads: Vec<_> = (0..nw).map(|i| workload(i, nc)).collect();
        (clusters, workloads).prop_map(|(clusters, workloads)| PlacementInput {
            clusters,
            workloads,
            previous: vec![],
            now: None,
        })
    })
}

// ---------- the oracle ----------

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    match t.operator {
        TolerationOperator::Exists => t.key.is_empty() || t.key == taint.key,
        TolerationOperator::Equal => t.key == taint.key && t.value == taint.value,
    }
}

/// A placement may only use clusters that pass every hard filter. `kept` is true when the cluster
/// already held at least as many replicas of the workload: then cordon, untolerated `NoSchedule`
/// and `NoExecute` tolerated for `tolerationSeconds` only stop new replicas, not these.
fn admits(w: &Workload, group: Option<&ClusterAffinity>, c: &Cluster, kept: bool) -> Result<(), String> {
    if let Some(a) = group {
        if a.exclude.contains(&c.name) {
            return Err("excluded".into());
        }
        if !a.cluster_names.is_empty() && !a.cluster_names.contains(&c.name) {
            return Err("not in clusterNames".into());
        }
        if a.label_selector.as_ref().is_some_and(|s| !s.matches(&c.labels)) {
            return Err("label selector".into());
        }
        if a.location_selector.as_ref().is_some_and(|s| !s.matches(c)) {
            return Err("location selector".into());
        }
    }
    if !w.required_apis.iter().all(|a| c.api_resources.contains(a)) {
        return Err("api".into());
    }
    if !w.required_capabilities.iter().all(|a| c.capabilities.contains(a)) {
        return Err("capability".into());
    }
    if w.spread_constraints.iter().any(|s| c.topology_value(&s.topology_key).is_none()) {
        return Err("topology key".into());
    }
    let mut taints = c.taints.clone();
    if !c.ready {
        taints.push(Taint {
            key: "tmc.kcp.io/not-ready".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            added_at: None,
        });
    }
    for taint in taints.iter().filter(|t| t.effect != TaintEffect::PreferNoSchedule) {
        let ok = w.tolerations.iter().any(|t| {
            tolerates(t, taint) && (kept || !(taint.effect == TaintEffect::NoExecute && t.toleration_seconds.is_some()))
        });
        if !(ok || (kept && taint.effect == TaintEffect::NoSchedule)) {
            return Err(format!("taint {taint}"));
        }
    }
    if c.unschedulable && !kept {
        return Err("cordoned".into());
    }
    Ok(())
}

fn check_invariants(input: &PlacementInput, plan: &Plan) -> Result<(), TestCaseError> {
    let clusters: BTreeMap<&str, &Cluster> = input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut used: BTreeMap<(&str, String), u128> = BTreeMap::new();
    prop_assert_eq!(plan.placements.len(), input.workloads.len());
    for w in &input.workloads {
        let p = plan.get(&w.key()).ok_or_else(|| TestCaseError::fail(format!("no placement for {}", w.key())))?;
        let r = u64::from(w.replicas);
        let sum: u64 = p.decisions.iter().map(|d| u64::from(d.replicas)).sum();
        let names: Vec<&str> = p.decisions.iter().map(|d| d.cluster.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(&sorted, &names, "decisions sorted by cluster, no duplicates");
        prop_assert!(p.decisions.iter().all(|d| d.replicas >= 1));
        match p.phase {
            Phase::Unschedulable => prop_assert!(p.decisions.is_empty() && r > 0),
            Phase::PartiallyScheduled => prop_assert!(!p.decisions.is_empty()),
            Phase::Scheduled => {}
        }
        if p.phase != Phase::Scheduled {
            prop_assert!(!p.message.is_empty(), "explained");
        }
        let group: Option<&ClusterAffinity> = if w.cluster_affinities.is_empty() {
            w.cluster_affinity.as_ref()
        } else {
            let name = p.affinity_group.as_deref();
            let g = w.cluster_affinities.iter().find(|g| g.name.as_deref() == name);
            prop_assert!(g.is_some(), "clusterAffinities records the group used");
            g
        };
        for d in &p.decisions {
            let c = clusters[d.cluster.as_str()];
            let previous = input.previous.iter().find(|p| p.workload == w.key());
            let kept = previous
                .is_some_and(|p| p.decisions.iter().any(|pd| pd.cluster == d.cluster && pd.replicas >= d.replicas));
            if let Err(why) = admits(w, group, c, kept) {
                return Err(TestCaseError::fail(format!("{} placed on {} despite {why}", w.key(), c.name)));
            }
            for (res, q) in &w.resources {
                *used.entry((c.name.as_str(), res.clone())).or_default() += q.nanos() * u128::from(d.replicas);
            }
            if !w.resources.contains_key("pods") {
                *used.entry((c.name.as_str(), "pods".into())).or_default() += u128::from(d.replicas) * 1_000_000_000;
            }
        }
        let rs = &w.replica_scheduling;
        match rs.kind {
            ReplicaSchedulingType::Divided => {
                prop_assert!(sum <= r, "{}: {} > {}", w.key(), sum, r);
                prop_assert_eq!(sum == r, p.phase == Phase::Scheduled, "{} Scheduled iff all replicas placed", w.key());
                for d in &p.decisions {
                    prop_assert!(rs.min_replicas_per_cluster.is_none_or(|m| d.replicas >= m));
                    prop_assert!(rs.max_replicas_per_cluster.is_none_or(|m| d.replicas <= m));
                    if rs.division == Division::Weighted && !rs.weights.is_empty() {
                        let c = clusters[d.cluster.as_str()];
                        let weight = rs
                            .weights
                            .iter()
                            .find(|e| {
                                e.cluster_names.contains(&c.name)
                                    || e.label_selector.as_ref().is_some_and(|s| s.matches(&c.labels))
                            })
                            .map_or(0, |e| e.weight);
                        prop_assert!(weight > 0, "weight-0 cluster {} used", c.name);
                    }
                }
                if let Some(n) = w.number_of_clusters {
                    prop_assert!(p.decisions.len() <= n as usize);
                }
            }
            ReplicaSchedulingType::Duplicated => {
                prop_assert!(p.decisions.iter().all(|d| d.replicas == w.replicas), "Duplicated copies all replicas");
                if let Some(n) = w.number_of_clusters {
                    prop_assert!(p.decisions.len() <= n as usize);
                    if p.phase == Phase::Scheduled && r > 0 {
                        prop_assert_eq!(p.decisions.len(), n as usize);
                    }
                }
            }
        }
        if !p.decisions.is_empty() {
            for s in &w.spread_constraints {
                let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
                for d in &p.decisions {
                    let v = clusters[d.cluster.as_str()].topology_value(&s.topology_key).unwrap_or("?");
                    *groups.entry(v).or_default() +=
                        if rs.kind == ReplicaSchedulingType::Divided { u64::from(d.replicas) } else { 1 };
                }
                let n = groups.len() as u32;
                prop_assert!(
                    s.min_groups.is_none_or(|m| n >= m),
                    "{} minGroups on {}: {:?}",
                    w.key(),
                    s.topology_key,
                    groups
                );
                prop_assert!(
                    s.max_groups.is_none_or(|m| n <= m),
                    "{} maxGroups on {}: {:?}",
                    w.key(),
                    s.topology_key,
                    groups
                );
                if let Some(skew) = s.max_skew {
                    let hi = groups.values().max().copied().unwrap_or(0);
                    let lo = groups.values().min().copied().unwrap_or(0);
                    prop_assert!(hi - lo <= u64::from(skew), "{} skew on {}: {:?}", w.key(), s.topology_key, groups);
                }
            }
        }
    }
    for ((cluster, res), amount) in used {
        let c = clusters[cluster];
        let alloc = c.allocated.get(&res).map_or(0, |q| q.nanos());
        match c.capacity.get(&res) {
            Some(cap) => prop_assert!(
                alloc + amount <= cap.nanos(),
                "{cluster} overcommitted on {res}: {} + {} > {}",
                alloc,
                amount,
                cap.nanos()
            ),
            None if res == "pods" => {}
            None => prop_assert!(amount == 0, "{cluster} does not list {res} but got {amount}"),
        }
    }
    Ok(())
}

fn valid(input: &PlacementInput) -> bool {
    validate(input).is_ok()
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn every_plan_honours_capacity_and_hard_constraints(input in input()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&input, &plan)?;
    }

    #[test]
    fn every_plan_carries_a_consistent_certificate(input in input()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lowest = input.workloads.iter().map(|w| w.priority).min().unwrap_or(0);
        let objective: f64 = plan
            .placements
            .iter()
            .map(|p| {
                let w = input.workloads.iter().find(|w| w.key() == p.workload).map_or(0, |w| w.priority);
                (1.0 + f64::from(w) - f64::from(lowest)) * p.placed as f64
            })
            .sum();
        prop_assert!((plan.objective - objective).abs() <= 1e-9 * objective.max(1.0), "{} vs {}", plan.objective, objective);
        prop_assert!(plan.bound >= plan.objective, "bound {} < objective {}", plan.bound, plan.objective);
        prop_assert!((0.0..=1.0).contains(&plan.gap), "gap {}", plan.gap);
    }

    #[test]
    fn plans_are_deterministic_and_order_independent(input in input(), seed in any::<u64>()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&plan, &solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let mut shuffled = input.clone();
        // Deterministic Fisher-Yates from the seed.
        let mut s = seed;
        let mut next = |n: usize| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 33) as usize % n };
        for i in (1..shuffled.clusters.len()).rev() { let j = next(i + 1); shuffled.clusters.swap(i, j); }
        for i in (1..shuffled.workloads.len()).rev() { let j = next(i + 1); shuffled.workloads.swap(i, j); }
        prop_assert_eq!(plan, solve(&shuffled).map_err(|e| TestCaseError::fail(e.to_string()))?);
    }

    #[test]
    fn arbitrary_previous_decisions_never_break_invariants(
        input in input(),
        picks in proptest::collection::vec((0usize..8, 0usize..10, 1u32..8), 0..12),
    ) {
        let mut input = input;
        let mut previous: BTreeMap<usize, BTreeMap<String, u32>> = BTreeMap::new();
        for (w, c, n) in picks {
            let (w, c) = (w % input.workloads.len(), c % input.clusters.len());
            previous.entry(w).or_default().insert(input.clusters[c].name.clone(), n);
        }
        input.previous = previous
            .into_iter()
            .map(|(w, ds)| tmc_core::Placement {
                workload: input.workloads[w].key(),
                decisions: ds.into_iter().map(|(cluster, replicas)| tmc_core::Decision { cluster, replicas }).collect(),
                ..Default::default()
            })
            .collect();
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&input, &plan)?;
    }

    #[test]
    fn cordoning_or_tainting_a_cluster_keeps_what_is_there_and_moves_what_must(input in input(), which in 0usize..8, cordon in any::<bool>()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut changed = input.clone();
        changed.previous = plan.placements.iter().filter(|p| !p.decisions.is_empty()).cloned().collect();
        let target = which % changed.clusters.len();
        if cordon {
            changed.clusters[target].unschedulable = true;
        } else {
            changed.clusters[target].ready = false;
        }
        let name = changed.clusters[target].name.clone();
        let replan = solve(&changed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&changed, &replan)?;
        for (before, after) in plan.placements.iter().zip(&replan.placements) {
            let on_target = |p: &tmc_core::Placement| p.decisions.iter().find(|d| d.cluster == name).map_or(0, |d| d.replicas);
            // Cordon blocks new replicas only: nothing grows on the cordoned cluster.
            if cordon {
                prop_assert!(on_target(after) <= on_target(before), "{} grew on cordoned {}", after.workload, name);
            }
            // Workloads that had nothing on the changed cluster and were fully placed stay put,
            // unless they opted into rebalance or lost replicas to a preemption. OnRecovery
            // moves too when the change makes today's placement score higher by preferences
            // (room a displaced workload left, for example).
            let w = input.workloads.iter().find(|w| w.key() == before.workload);
            let may_move = w.is_some_and(|w| match w.rebalance.policy {
                RebalancePolicy::Always => true,
                RebalancePolicy::OnRecovery => after.message.contains("rebalanc"),
                RebalancePolicy::Never => false,
            }) || after.message.contains("preempted by");
            if on_target(before) == 0 && before.phase == Phase::Scheduled && !may_move {
                // Nothing it had is taken away (a Duplicated workload may extend to clusters
                // that the change freed up).
                for d in &before.decisions {
                    let now = after.decisions.iter().find(|a| a.cluster == d.cluster).map_or(0, |a| a.replicas);
                    prop_assert!(now >= d.replicas, "{} lost replicas on {} although {} did not concern it", before.workload, d.cluster, name);
                }
            }
        }
    }

    #[test]
    fn unchanged_input_resolved_with_previous_moves_nothing(input in input()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        resolving_moves_nothing(&input, &plan)?;
    }
}

/// Solves `input` again with `plan` as the previous decisions: fully placed workloads keep their
/// decisions exactly; the others may gain replicas (capacity is seen in another order), but
/// nothing they had moves; the new plan holds every invariant.
fn resolving_moves_nothing(input: &PlacementInput, plan: &Plan) -> Result<(), TestCaseError> {
    let mut again = input.clone();
    again.previous = plan.placements.iter().filter(|p| !p.decisions.is_empty()).cloned().collect();
    let replan = solve(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (a, b) in plan.placements.iter().zip(&replan.placements) {
        if a.phase == Phase::Scheduled {
            prop_assert_eq!(&a.decisions, &b.decisions, "{} moved", a.workload);
        } else {
            for d in &a.decisions {
                let now = b.decisions.iter().find(|x| x.cluster == d.cluster).map_or(0, |x| x.replicas);
                prop_assert!(now >= d.replicas, "{} lost replicas on {}", a.workload, d.cluster);
            }
        }
    }
    check_invariants(&again, &replan)
}

// ---------- contended fleets ----------

/// Inputs where capacity binds: plain clusters short of CPU or of memory, most workloads
/// Dynamic and fresh, some pinned to one cluster, demand above capacity, so the improvement
/// step's trades and shifts (and the exchanges between clusters short of different resources)
/// run. The general generator rarely gets there.
fn contended_input() -> impl Strategy<Value = PlacementInput> {
    contended(2..5, 0.2, false)
}

/// [`contended_input`] with up to six clusters over two regions and three zones, half the
/// workloads preemptors, and every other Divided one Weighted under region and zone maxSkew 0:
/// where skew repair, extension and preemption disagree about what fits. It found two
/// fixed-point breaks in its first runs (one after 161 cases) of a kind the plain generator
/// found once in 20,000 cases.
fn skewed_contended_input() -> impl Strategy<Value = PlacementInput> {
    contended(3..7, 0.5, true)
}

/// Contended inputs with `clusters` clusters, each workload a preemptor with probability
/// `preempt`; `skewed` makes every other Divided workload Weighted under region and zone
/// maxSkew 0.
fn contended(clusters: std::ops::Range<usize>, preempt: f64, skewed: bool) -> impl Strategy<Value = PlacementInput> {
    (clusters, 3usize..10).prop_flat_map(move |(nc, nw)| {
        let cluster = |i: usize| {
            (1u64..9, 1u64..9).prop_map(move |(cores, gib)| {
                let mut capacity = BTreeMap::new();
                capacity.insert("cpu".to_string(), Quantity::from_units(cores));
                capacity.insert("memory".to_string(), Quantity::from_units(gib << 30));
                Cluster {
                    name: format!("c{i:02}"),
                    labels: BTreeMap::new(),
                    location: Location {
                        provider: Some("aws".into()),
                        region: Some(format!("r{}", i % 2)),
                        zone: Some(format!("z{}", i % 3)),
                    },
                    capabilities: Vec::new(),
                    api_resources: Vec::new(),
                    capacity,
                    allocated: BTreeMap::new(),
                    taints: Vec::new(),
                    unschedulable: false,
                    ready: true,
                    not_ready_since: None,
                    cost: None,
                }
            })
        };
        let workload = move |i: usize| {
            (
                (1u32..13, 1u64..5, 1u64..5, -1i32..3),
                (0usize..10, 0..nc, prop::bool::weighted(preempt)),
                (opt(spread(), 0.3), opt(1u32..4, 0.2), opt(1u32..4, 0.2)),
            )
                .prop_map(
                    move |((replicas, cpu_q, mem_q, priority), (kind, pin, preempt), (spread, max_per, noc))| {
                        let mut w = Workload::named(&format!("w{i:02}"));
                        w.replicas = replicas;
                        w.priority = priority;
                        // CPU-heavy or memory-heavy in quarters of a core and of a GiB.
                        w.resources.insert("cpu".into(), Quantity::from_millis(250 * cpu_q));
                        w.resources.insert("memory".into(), Quantity::from_units(mem_q << 28));
                        let rs = &mut w.replica_scheduling;
                        match kind {
                            0 => rs.kind = ReplicaSchedulingType::Duplicated,
                            1 => rs.division = Division::Aggregated,
                            2 => rs.division = Division::Weighted,
                            _ => rs.division = Division::Dynamic,
                        }
                        if kind == 0 {
                            w.number_of_clusters = noc;
                        } else {
                            rs.max_replicas_per_cluster = max_per;
                        }
                        if kind >= 7 {
                            w.cluster_affinity = Some(ClusterAffinity {
                                cluster_names: vec![format!("c{pin:02}")],
                                ..ClusterAffinity::default()
                            });
                        }
                        w.spread_constraints = spread.unwrap_or_default();
                        if skewed && i.is_multiple_of(2) && kind != 0 {
                            rs.division = Division::Weighted;
                            w.spread_constraints = ["region", "zone"]
                                .map(|key| SpreadConstraint {
                                    topology_key: key.into(),
                                    min_groups: None,
                                    max_groups: None,
                                    max_skew: Some(0),
                                })
                                .to_vec();
                        }
                        w.preemption = if preempt { Preemption::PreemptLowerPriority } else { Preemption::Never };
                        w
                    },
                )
        };
        let clusters: Vec<_> = (0..nc).map(cluster).collect();
        let workloads: Vec<_> = (0..nw).map(workload).collect();
        (clusters, workloads).prop_map(|(clusters, workloads)| PlacementInput {
            clusters,
            workloads,
            previous: vec![],
            now: None,
        })
    })
}

proptest! {
    #![proptest_config(config(400))]

    /// On contended fleets every plan honours capacity and hard constraints, is deterministic,
    /// and is what the next solve keeps.
    #[test]
    fn contended_plans_hold_every_invariant_and_are_kept(input in contended_input()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&input, &plan)?;
        prop_assert_eq!(&plan, &solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?);
        resolving_moves_nothing(&input, &plan)?;
    }

    /// The same where zone and region skew, extension and preemption meet.
    #[test]
    fn skewed_contended_plans_hold_every_invariant_and_are_kept(input in skewed_contended_input()) {
        prop_assume!(valid(&input));
        let plan = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&input, &plan)?;
        resolving_moves_nothing(&input, &plan)?;
    }
}

// ---------- exact mode ----------

/// Small instances the MILP solves in milliseconds.
#[cfg(feature = "exact")]
fn small_input() -> impl Strategy<Value = PlacementInput> {
    input_sized(6, 6)
}

proptest! {
    #![proptest_config(config(200))]

    /// The exact plan obeys every hard constraint, is optimal (so at least the fast plan's
    /// objective and at most the fast plan's bound) and deterministic.
    #[cfg(feature = "exact")]
    #[test]
    fn exact_plans_are_feasible_and_optimal(input in small_input()) {
        prop_assume!(valid(&input));
        let fast = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let exact = tmc_core::solve_exact(&input, &tmc_core::ExactOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&input, &exact)?;
        let tol = 1e-6 * exact.objective.max(1.0);
        prop_assert!(exact.objective + tol >= fast.objective, "exact {} < fast {}", exact.objective, fast.objective);
        prop_assert!(exact.objective <= fast.bound + tol, "exact {} above the fast bound {}", exact.objective, fast.bound);
        prop_assert!(exact.gap.abs() <= 1e-6, "exact gap {}", exact.gap);
        let again = tmc_core::solve_exact(&input, &tmc_core::ExactOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(exact, again);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Under contention (replicas scaled up so capacity binds) the fast plan's bound, which uses
    /// each workload's own limits (one affinity group, caps, `numberOfClusters`, spread groups,
    /// skew and minGroups, Duplicated copies), still covers the exact optimum.
    #[cfg(feature = "exact")]
    #[test]
    fn the_bound_covers_the_optimum_under_contention(input in small_input(), scale in 2u32..5) {
        let mut input = input;
        for w in &mut input.workloads {
            w.replicas = w.replicas.saturating_mul(scale).min(40);
        }
        prop_assume!(valid(&input));
        let fast = solve(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let exact = tmc_core::solve_exact(&input, &tmc_core::ExactOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let tol = 1e-6 * exact.objective.max(1.0);
        prop_assert!(exact.objective <= fast.bound + tol, "exact {} above the fast bound {}", exact.objective, fast.bound);
        prop_assert!(fast.objective <= fast.bound);
    }
}

// ---------- the incremental placer ----------

/// One change to the placer's state.
#[derive(Clone, Debug)]
enum Change {
    /// Scale workload `i % len` to this many replicas and give it this priority.
    Scale(usize, u32, i32),
    /// Add this workload (renamed so it is new).
    Add(Box<Workload>),
    /// Give workload `i % len` this cpu request (millicores).
    Resize(usize, u64),
    /// Remove workload `i % len`.
    Remove(usize),
    /// Cordon or uncordon cluster `i % len`.
    Cordon(usize, bool),
    /// Remove cluster `i % len`.
    RemoveCluster(usize),
}

fn change(n_clusters: usize) -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (any::<usize>(), 0u32..13, -2i32..3).prop_map(|(i, r, p)| Change::Scale(i, r, p)),
        3 => (100usize..200).prop_flat_map(move |i| workload(i, n_clusters)).prop_map(|w| Change::Add(Box::new(w))),
        2 => (any::<usize>(), 0u64..4000).prop_map(|(i, m)| Change::Resize(i, m)),
        2 => any::<usize>().prop_map(Change::Remove),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, c)| Change::Cordon(i, c)),
        1 => any::<usize>().prop_map(Change::RemoveCluster),
    ]
}

/// Strips the constraints that leave workloads unplaced (affinity, APIs, capabilities, spread,
/// taints), so most states are settled and changes take the incremental path.
fn simplify(w: &mut Workload) {
    w.cluster_affinity = None;
    w.cluster_affinities.clear();
    w.required_apis.clear();
    w.required_capabilities.clear();
    w.spread_constraints.clear();
    if w.replica_scheduling.kind == ReplicaSchedulingType::Duplicated && w.number_of_clusters.is_none() {
        w.number_of_clusters = Some(1);
    }
}

/// A fleet, workloads, and a list of changes. Half the cases have room to spare and simple
/// workloads that do not rebalance, so most of their changes take the incremental path.
fn placer_case() -> impl Strategy<Value = (PlacementInput, Vec<Change>)> {
    (1usize..9, 1usize..7, any::<bool>()).prop_flat_map(|(nc, nw, roomy)| {
        let clusters: Vec<_> = (0..nc).map(cluster).collect();
        let workloads: Vec<_> = (0..nw).map(|i| workload(i, nc)).collect();
        let changes = proptest::collection::vec(change(nc), 1..8);
        (clusters, workloads, changes).prop_map(move |(mut clusters, mut workloads, changes)| {
            if roomy {
                for w in &mut workloads {
                    w.rebalance.policy = RebalancePolicy::Never;
                }
                for c in &mut clusters {
                    for q in c.capacity.values_mut() {
                        *q = Quantity::from_nanos(q.nanos().saturating_mul(100));
                    }
                    c.taints.clear();
                    c.ready = true;
                    c.unschedulable = false;
                }
                workloads.iter_mut().for_each(simplify);
            }
            (PlacementInput { clusters, workloads, previous: vec![], now: None }, changes)
        })
    })
}

proptest! {
    #![proptest_config(config(300))]

    /// After every change the placer's plan is the plan a full re-plan of the same state gives
    /// (with the plan before the change as the previous decisions); its bound stays an upper
    /// bound on its objective, and equals the full re-plan's after a full update.
    #[test]
    fn the_incremental_placer_matches_a_full_replan((input, changes) in placer_case()) {
        placer_matches_a_full_replan(input, changes)?;
    }

    /// The same on contended fleets, where the improvement step's shifts run on the partial
    /// path.
    #[test]
    fn the_incremental_placer_matches_a_full_replan_under_contention(
        (input, changes) in (contended_input(), proptest::collection::vec(change(4), 1..8))
    ) {
        placer_matches_a_full_replan(input, changes)?;
    }
}

/// Applies `changes` to a placer built from `input` and checks each result against a full
/// re-plan of the same state.
fn placer_matches_a_full_replan(input: PlacementInput, changes: Vec<Change>) -> Result<(), TestCaseError> {
    prop_assume!(valid(&input));
    let mut placer = tmc_core::Placer::new(input).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for change in changes {
        let mut reference = placer.input();
        let update = match change {
            Change::Scale(i, replicas, priority) => {
                let mut w = reference.workloads[i % reference.workloads.len()].clone();
                w.replicas = replicas;
                w.priority = priority;
                let at = i % reference.workloads.len();
                reference.workloads[at] = w.clone();
                placer.upsert_workload(w).map_err(|e| TestCaseError::fail(e.to_string()))?
            }
            Change::Add(w) => {
                let mut w = *w;
                w.rebalance.policy = RebalancePolicy::Never;
                simplify(&mut w);
                if reference.workloads.iter().any(|x| x.key() == w.key()) {
                    continue;
                }
                reference.workloads.push(w.clone());
                placer.upsert_workload(w).map_err(|e| TestCaseError::fail(e.to_string()))?
            }
            Change::Resize(i, millis) => {
                let at = i % reference.workloads.len();
                let mut w = reference.workloads[at].clone();
                w.resources.insert("cpu".into(), Quantity::from_nanos(u128::from(millis) * 1_000_000));
                reference.workloads[at] = w.clone();
                placer.upsert_workload(w).map_err(|e| TestCaseError::fail(e.to_string()))?
            }
            Change::Remove(i) => {
                if reference.workloads.len() <= 1 {
                    continue;
                }
                let w = reference.workloads.remove(i % reference.workloads.len());
                reference.previous.retain(|p| p.workload != w.key());
                let update = placer.remove_workload(&w.key());
                // Removing again finds nothing.
                prop_assert!(placer.remove_workload(&w.key()).is_none());
                update.ok_or_else(|| TestCaseError::fail("the workload was not found"))?
            }
            Change::Cordon(i, cordon) => {
                let at = i % reference.clusters.len();
                reference.clusters[at].unschedulable = cordon;
                placer.upsert_cluster(reference.clusters[at].clone()).map_err(|e| TestCaseError::fail(e.to_string()))?
            }
            Change::RemoveCluster(i) => {
                if reference.clusters.len() <= 1 {
                    continue;
                }
                let c = reference.clusters.remove(i % reference.clusters.len());
                placer.remove_cluster(&c.name).ok_or_else(|| TestCaseError::fail("the cluster was not found"))?
            }
        };
        prop_assume!(valid(&reference));
        let expected = solve(&reference).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = placer.plan();
        prop_assert_eq!(&got.placements, &expected.placements, "after {:?}", update);
        prop_assert_eq!(got.objective, expected.objective);
        prop_assert!(got.bound >= got.objective);
        if update == tmc_core::Update::Full {
            prop_assert_eq!(got.bound, expected.bound);
        }
        check_invariants(&reference, got)?;
    }
    Ok(())
}

/// How close the fast solver comes to the exact optimum over a fixed sample of 300 small random
/// instances. The target is 99% on every instance; it is **not** met: measured, 298 of 300 reach
/// 99% and the sample as a whole reaches 99.79% (99.72% and 297 before smaller replicas went first
/// within a priority, 98.7% before shifts and the roomier choice of groups under maxGroups, 97.3%
/// before the improvement step). The two misses: an Aggregated workload that would have to split
/// to let another in, and a higher-priority replica the optimum gives up for two lower-priority
/// ones of a workload that rebalances (the improvement step does not grow those). This test keeps
/// the measured level from regressing.
#[cfg(feature = "exact")]
#[test]
fn the_fast_solver_stays_close_to_the_exact_optimum() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let (mut fast_total, mut exact_total, mut below, mut solved) = (0.0, 0.0, 0usize, 0usize);
    while solved < 300 {
        let Ok(tree) = small_input().new_tree(&mut runner) else { continue };
        let input = tree.current();
        if !valid(&input) {
            continue;
        }
        let (Ok(fast), Ok(exact)) = (solve(&input), tmc_core::solve_exact(&input, &tmc_core::ExactOptions::default()))
        else {
            panic!("a valid input failed to solve: {input:?}");
        };
        solved += 1;
        fast_total += fast.objective;
        exact_total += exact.objective;
        if fast.objective < 0.99 * exact.objective {
            below += 1;
        }
    }
    let ratio = fast_total / exact_total;
    eprintln!("fast/exact over {solved} instances: {ratio:.4}; {below} instances below 99%");
    assert!(ratio >= 0.997 && below <= 2, "fast/exact = {ratio:.4} over {solved} instances ({below} below 99%)");
}
