//! `tmc-sim explain`: why a workload is placed the way it is, cluster by cluster, and the smallest
//! changes that would place it fully, each verified by solving again.
//!
//! Per-cluster reasons come from the solver ([`tmc_core::cluster_rejections`]). A fully placed
//! workload carries none, so for it the solver is asked once more with a request no fleet can
//! hold (a Divided workload asks for [`MAX_REPLICAS`] replicas, a Duplicated one for a copy on
//! every cluster): the clusters it then still cannot use are listed with their reasons, the others
//! are feasible.
//!
//! Candidate changes are derived from those reasons and from the workload's own constraints:
//! tolerate a taint, uncordon a cluster, widen the cluster affinity, drop a required API or
//! capability (or give a cluster the capability), relax a spread constraint, `numberOfClusters` or
//! the per-cluster bounds, give a cluster a weight, raise the priority, add capacity to a cluster
//! (the smallest amount in readable units, found by bisection and solving), or lower the replica
//! count. Each is applied to a copy of the input and solved as the controller would solve it right
//! after the change (today's plan as the previous decisions); only those after which the workload
//! is `Scheduled` are reported, smallest first, with what they do to the other workloads. Of the
//! steps of one bound (minGroups 3 -> 2 -> 1), only the smallest that works is reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tmc_core::{
    AffinityMismatch, Cluster, ClusterAffinity, ClusterWeight, Phase, Placement, PlacementInput, Plan, Quantity,
    Reason, ReplicaSchedulingType, Taint, Toleration, TolerationOperator, ValidationErrors, Workload, WorkloadKey,
    cluster_rejections, solve, solve_validated, validate::MAX_REPLICAS,
};

use crate::metrics::{self, Churn};

/// Why a workload cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No workload with that key.
    #[error("unknown workload {key}{}", if .known.is_empty() { String::new() } else { format!(" (workloads: {})", .known.join(", ")) })]
    UnknownWorkload {
        /// The key asked for.
        key: WorkloadKey,
        /// Some workloads that exist (the closest by namespace first).
        known: Vec<String>,
    },
    /// The input is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// One cluster, from the workload's point of view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterVerdict {
    /// Cluster name.
    pub cluster: String,
    /// Replicas of the workload on it.
    pub replicas: u64,
    /// How many more replicas of the workload would fit in its free capacity after the whole
    /// plan; absent when nothing it requests is limited.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub room: Option<u64>,
    /// How the solver scores the cluster for this workload today (higher is preferred); absent
    /// where the workload's affinity does not admit the cluster.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<i64>,
    /// `chosen`, `feasible` (passes every filter, not chosen) or `rejected`.
    pub verdict: String,
    /// The solver's reasons, as phrases.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons: Vec<String>,
}

/// A change that places the workload fully, verified by solving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fix {
    /// What to change, in words.
    pub change: String,
    /// Rough size of the change (1 for a single toleration or uncordon, the distance for a
    /// relaxed bound, more for capacity, most for fewer replicas); fixes are listed smallest first.
    pub size: u64,
    /// Other workloads that end up with fewer replicas placed.
    pub others_worse: u64,
    /// Replicas of other workloads that stop, start or move compared with today's plan.
    pub others_churn: Churn,
}

/// The explanation of one workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `namespace/name`.
    pub workload: WorkloadKey,
    /// Its phase.
    pub phase: Phase,
    /// Replicas requested (Duplicated: per cluster).
    pub requested: u64,
    /// Replicas placed.
    pub placed: u64,
    /// Replicas pending (see [`metrics::pending`]).
    pub pending: u64,
    /// The solver's message; empty when fully placed.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    /// Every cluster, by name.
    pub clusters: Vec<ClusterVerdict>,
    /// Changes that would place the workload fully, smallest first (empty when it is).
    pub fixes: Vec<Fix>,
    /// How many candidate changes were tried.
    pub candidates_tried: u64,
}

/// At most this many clusters are tried for a capacity fix.
pub const CAPACITY_TARGETS: usize = 6;

/// A candidate change.
struct Candidate {
    change: String,
    size: u64,
    /// Steps of one bound relaxed further and further share a family, tried smallest first; once
    /// one works, the larger steps are not reported.
    family: Option<String>,
    apply: Box<dyn Fn(&mut PlacementInput)>,
}

fn with_workload(key: &WorkloadKey, f: impl Fn(&mut Workload) + 'static) -> Box<dyn Fn(&mut PlacementInput)> {
    let key = key.clone();
    Box::new(move |input: &mut PlacementInput| {
        if let Some(w) = input.workloads.iter_mut().find(|w| w.key() == key) {
            f(w);
        }
    })
}

fn with_cluster(name: &str, f: impl Fn(&mut Cluster) + 'static) -> Box<dyn Fn(&mut PlacementInput)> {
    let name = name.to_string();
    Box::new(move |input: &mut PlacementInput| {
        if let Some(c) = input.clusters.iter_mut().find(|c| c.name == name) {
            f(c);
        }
    })
}

/// Explains workload `key` of `input`.
pub fn explain(input: &PlacementInput, key: &WorkloadKey) -> Result<Explanation, ExplainError> {
    let plan = solve(input)?;
    let Some(w) = input.workloads.iter().find(|w| w.key() == *key) else {
        let mut known: Vec<String> = input.workloads.iter().map(|w| w.key().0).collect();
        let ns = key.0.split('/').next().unwrap_or_default().to_string();
        known.sort_by_key(|k| (!k.starts_with(&format!("{ns}/")), k.clone()));
        known.truncate(8);
        return Err(ExplainError::UnknownWorkload { key: key.clone(), known });
    };
    let Some(p) = plan.get(key) else {
        return Err(ExplainError::UnknownWorkload { key: key.clone(), known: Vec::new() });
    };
    let reasons = reasons_by_cluster(input, w, p);
    let scores: BTreeMap<String, i64> =
        tmc_core::cluster_scores(input, &plan, key).unwrap_or_default().into_iter().collect();
    let used = metrics::usage(input, &plan);
    let placed_on = metrics::counts(p);
    let mut clusters: Vec<&Cluster> = input.clusters.iter().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let verdicts = clusters
        .iter()
        .map(|c| {
            let replicas = placed_on.get(&c.name).copied().unwrap_or(0);
            let why = reasons.get(&c.name);
            let (verdict, phrases) = match why {
                _ if replicas > 0 => ("chosen", Vec::new()),
                Some(rs) if rs.iter().any(|r| *r != Reason::NotSelected) => {
                    ("rejected", rs.iter().map(Reason::phrase).collect())
                }
                _ => ("feasible", Vec::new()),
            };
            // For a chosen cluster, say what else held it back (full, cordoned since).
            let phrases = if verdict == "chosen" {
                why.map(|rs| rs.iter().filter(|r| **r != Reason::NotSelected).map(Reason::phrase).collect())
                    .unwrap_or_default()
            } else {
                phrases
            };
            ClusterVerdict {
                cluster: c.name.clone(),
                replicas,
                room: room(c, w, &used),
                score: scores.get(&c.name).copied(),
                verdict: verdict.to_string(),
                reasons: phrases,
            }
        })
        .collect();
    let mut explanation = Explanation {
        workload: key.clone(),
        phase: p.phase,
        requested: u64::from(p.requested),
        placed: p.placed,
        pending: metrics::pending(w, p),
        message: p.message.clone(),
        clusters: verdicts,
        fixes: Vec::new(),
        candidates_tried: 0,
    };
    if p.phase == Phase::Scheduled {
        return Ok(explanation);
    }
    let candidates = candidates(input, &plan, w, p, &reasons, &used);
    let mut tried = BTreeSet::new();
    let mut solved_families = BTreeSet::new();
    let mut fixes = Vec::new();
    for c in candidates {
        if c.family.as_ref().is_some_and(|f| solved_families.contains(f)) || !tried.insert(c.change.clone()) {
            continue;
        }
        let mut changed = input.clone();
        (c.apply)(&mut changed);
        if let Some((others_worse, others_churn)) = verify(&changed, &plan, key) {
            solved_families.extend(c.family);
            fixes.push(Fix { change: c.change, size: c.size, others_worse, others_churn });
        }
    }
    if fixes.is_empty() {
        for c in composites(input, w, &reasons, &used) {
            if !tried.insert(c.change.clone()) {
                continue;
            }
            let mut changed = input.clone();
            (c.apply)(&mut changed);
            if let Some((others_worse, others_churn)) = verify(&changed, &plan, key) {
                fixes.push(Fix { change: c.change, size: c.size, others_worse, others_churn });
            }
        }
    }
    fixes.sort_by(|a, b| (a.size, a.others_worse, &a.change).cmp(&(b.size, b.others_worse, &b.change)));
    explanation.fixes = fixes;
    explanation.candidates_tried = tried.len() as u64;
    Ok(explanation)
}

/// Solves `changed` as the controller would right after the change, with today's `plan` as the
/// previous decisions (so the other workloads keep what is still valid); when workload `key` is
/// then Scheduled, how the others fared compared with `plan`: how many have fewer replicas
/// placed, and their churn.
fn verify(changed: &PlacementInput, plan: &Plan, key: &WorkloadKey) -> Option<(u64, Churn)> {
    let mut changed = changed.clone();
    let keys: BTreeSet<WorkloadKey> = changed.workloads.iter().map(Workload::key).collect();
    changed.previous =
        plan.placements.iter().filter(|p| !p.decisions.is_empty() && keys.contains(&p.workload)).cloned().collect();
    tmc_core::validate(&changed).ok()?;
    let after = solve_validated(&changed);
    if after.get(key)?.phase != Phase::Scheduled {
        return None;
    }
    let mut worse = 0;
    let mut churn = Churn::default();
    for p in &plan.placements {
        if p.workload == *key {
            continue;
        }
        let Some(q) = after.get(&p.workload) else { continue };
        if q.placed < p.placed || (q.phase != Phase::Scheduled && p.phase == Phase::Scheduled) {
            worse += 1;
        }
        churn.add(Churn::between(&metrics::counts(p), &metrics::counts(q)));
    }
    Some((worse, churn))
}

/// Reasons per cluster: the solver's for a workload that is not fully placed, else those of a
/// probe that asks for more than any fleet holds (see the module docs).
fn reasons_by_cluster(input: &PlacementInput, w: &Workload, p: &Placement) -> BTreeMap<String, Vec<Reason>> {
    let key = w.key();
    let from = |input: &PlacementInput| -> BTreeMap<String, Vec<Reason>> {
        let rejections = cluster_rejections(input, &key).ok().flatten().unwrap_or_default();
        rejections.into_iter().map(|r| (r.cluster, r.reasons)).collect()
    };
    if p.phase != Phase::Scheduled {
        return from(input);
    }
    let mut probe = input.clone();
    let n = u32::try_from(input.clusters.len()).unwrap_or(u32::MAX).max(1);
    for pw in probe.workloads.iter_mut().filter(|pw| pw.key() == key) {
        match pw.replica_scheduling.kind {
            ReplicaSchedulingType::Divided => pw.replicas = MAX_REPLICAS,
            ReplicaSchedulingType::Duplicated => pw.number_of_clusters = Some(n),
        }
    }
    let mut out = from(&probe);
    // A cluster the real plan uses is not rejected, whatever the probe says.
    for d in &p.decisions {
        out.remove(&d.cluster);
    }
    out
}

/// How many more replicas of `w` fit on `c` after the plan's usage `used`.
fn room(c: &Cluster, w: &Workload, used: &metrics::Usage) -> Option<u64> {
    let mut best: Option<u64> = None;
    for (resource, per) in metrics::demand(w) {
        let Some(free) = metrics::free(c, &resource) else { continue };
        let taken = used.get(&c.name).and_then(|u| u.get(&resource)).copied().unwrap_or_default();
        let n = free.saturating_sub(taken).fits(per);
        best = Some(best.map_or(n, |b| b.min(n)));
    }
    best
}

/// A toleration that tolerates `taint` without limit.
fn toleration_for(taint: &Taint) -> Toleration {
    Toleration {
        key: taint.key.clone(),
        operator: if taint.value.is_empty() { TolerationOperator::Exists } else { TolerationOperator::Equal },
        value: taint.value.clone(),
        effect: Some(taint.effect),
        toleration_seconds: None,
    }
}

/// The affinity term the workload was judged under: its `clusterAffinity`, or the
/// `clusterAffinities` group named in the placement (else the first).
fn affinity_index(w: &Workload, p: &Placement) -> Option<usize> {
    if w.cluster_affinities.is_empty() {
        return None;
    }
    Some(
        p.affinity_group
            .as_deref()
            .and_then(|g| w.cluster_affinities.iter().position(|a| a.name.as_deref() == Some(g)))
            .unwrap_or(0),
    )
}

fn edit_affinity(w: &mut Workload, group: Option<usize>, f: &dyn Fn(&mut ClusterAffinity)) {
    match group {
        Some(i) => {
            if let Some(a) = w.cluster_affinities.get_mut(i) {
                f(a);
            }
        }
        None => {
            if let Some(a) = w.cluster_affinity.as_mut() {
                f(a);
            }
        }
    }
}

/// The change that lets cluster `c` pass the affinity part that rejects it.
fn widen(w: &Workload, p: &Placement, c: &Cluster, part: AffinityMismatch) -> Option<Candidate> {
    let group = affinity_index(w, p);
    let affinity = match group {
        Some(i) => w.cluster_affinities.get(i)?,
        None => w.cluster_affinity.as_ref()?,
    };
    let where_ = match group.and_then(|i| w.cluster_affinities[i].name.clone()) {
        Some(name) => format!(" of affinity group {name:?}"),
        None => String::new(),
    };
    let name = c.name.clone();
    let key = w.key();
    match part {
        AffinityMismatch::Excluded => Some(Candidate {
            family: None,
            change: format!("remove {name} from clusterAffinity{where_}.exclude"),
            size: 1,
            apply: with_workload(&key, move |w| {
                let name = name.clone();
                edit_affinity(w, group, &move |a| a.exclude.retain(|e| *e != name));
            }),
        }),
        AffinityMismatch::NotInClusterNames => Some(Candidate {
            family: None,
            change: format!("add {name} to clusterAffinity{where_}.clusterNames"),
            size: 1,
            apply: with_workload(&key, move |w| {
                let name = name.clone();
                edit_affinity(w, group, &move |a| a.cluster_names.push(name.clone()));
            }),
        }),
        AffinityMismatch::Labels => {
            let selector = affinity.label_selector.as_ref()?;
            let failing_labels: Vec<(String, String)> = selector
                .match_labels
                .iter()
                .filter(|(k, v)| c.labels.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let failing_exprs: Vec<usize> = selector
                .match_expressions
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.matches(&c.labels))
                .map(|(i, _)| i)
                .collect();
            let mut parts: Vec<String> = failing_labels.iter().map(|(k, v)| format!("matchLabels {k}={v}")).collect();
            parts.extend(failing_exprs.iter().map(|&i| {
                let e = &selector.match_expressions[i];
                format!("matchExpressions {} {:?} {:?}", e.key, e.operator, e.values)
            }));
            Some(Candidate {
                family: None,
                change: format!("widen the label selector{where_}: drop {}", parts.join(" and ")),
                size: parts.len() as u64,
                apply: with_workload(&key, move |w| {
                    let failing_labels = failing_labels.clone();
                    let failing_exprs = failing_exprs.clone();
                    edit_affinity(w, group, &move |a| {
                        if let Some(s) = a.label_selector.as_mut() {
                            for (k, _) in &failing_labels {
                                s.match_labels.remove(k);
                            }
                            let mut i = 0;
                            s.match_expressions.retain(|_| {
                                i += 1;
                                !failing_exprs.contains(&(i - 1))
                            });
                        }
                    });
                }),
            })
        }
        AffinityMismatch::Location => {
            let selector = affinity.location_selector.as_ref()?;
            let loc = &c.location;
            let mut adds: Vec<(&'static str, String)> = Vec::new();
            for (field, list, value) in [
                ("providers", &selector.providers, &loc.provider),
                ("regions", &selector.regions, &loc.region),
                ("zones", &selector.zones, &loc.zone),
            ] {
                if !list.is_empty() && value.as_ref().is_none_or(|v| !list.contains(v)) {
                    adds.push((field, value.clone()?));
                }
            }
            if adds.is_empty() {
                return None;
            }
            let words: Vec<String> = adds.iter().map(|(f, v)| format!("{v} to {f}")).collect();
            Some(Candidate {
                family: None,
                change: format!("widen the location selector{where_}: add {}", words.join(" and ")),
                size: adds.len() as u64,
                apply: with_workload(&key, move |w| {
                    let adds = adds.clone();
                    edit_affinity(w, group, &move |a| {
                        if let Some(s) = a.location_selector.as_mut() {
                            for (field, v) in &adds {
                                match *field {
                                    "providers" => s.providers.push(v.clone()),
                                    "regions" => s.regions.push(v.clone()),
                                    _ => s.zones.push(v.clone()),
                                }
                            }
                        }
                    });
                }),
            })
        }
    }
}

/// The capacity to add to `c` so that it can take `k` more replicas of `w`, per resource
/// (resources with room to spare are left out), rounded up to readable units (see [`readable`]).
fn capacity_for(c: &Cluster, w: &Workload, used: &metrics::Usage, k: u64) -> Vec<(String, Quantity)> {
    let mut out = Vec::new();
    for (resource, per) in metrics::demand(w) {
        let Some(free) = metrics::free(c, &resource) else { continue };
        let taken = used.get(&c.name).and_then(|u| u.get(&resource)).copied().unwrap_or_default();
        let room = free.saturating_sub(taken);
        let need = per.saturating_mul(k);
        if need > room {
            out.push((resource.clone(), readable(&resource, need.saturating_sub(room))));
        }
    }
    out
}

/// `q` rounded up to a unit people use for `resource`: tenths of a core for cpu, MiB below 1 GiB
/// and GiB above for memory and storage, whole units for everything else.
pub fn readable(resource: &str, q: Quantity) -> Quantity {
    let round_up = |unit: u128| Quantity::from_nanos(q.nanos().div_ceil(unit).saturating_mul(unit));
    const UNIT: u128 = 1_000_000_000;
    if resource == "cpu" {
        return round_up(UNIT / 10);
    }
    if resource.contains("memory") || resource.contains("storage") {
        let mib = UNIT << 20;
        return if q.nanos() < UNIT << 30 { round_up(mib) } else { round_up(UNIT << 30) };
    }
    round_up(UNIT)
}

/// `2.5` cores for cpu (a quantity in tenths), the canonical quantity otherwise.
fn show(resource: &str, q: Quantity) -> String {
    const TENTH: u128 = 100_000_000;
    if resource == "cpu" && q.nanos().is_multiple_of(TENTH) && !q.nanos().is_multiple_of(10 * TENTH) {
        let tenths = q.nanos() / TENTH;
        return format!("{}.{}", tenths / 10, tenths % 10);
    }
    q.to_string()
}

fn add_capacity(name: &str, amounts: Vec<(String, Quantity)>) -> Box<dyn Fn(&mut PlacementInput)> {
    with_cluster(name, move |c| {
        for (r, q) in &amounts {
            let total = c.capacity.entry(r.clone()).or_insert(Quantity::ZERO);
            *total = total.saturating_add(*q);
        }
    })
}

fn describe_amounts(amounts: &[(String, Quantity)]) -> String {
    amounts.iter().map(|(r, q)| format!("{} {r}", show(r, *q))).collect::<Vec<_>>().join(" and ")
}

/// Size of a capacity change: 2, plus one per tenth of the cluster's capacity added (for the
/// resource that grows most).
fn capacity_size(c: &Cluster, amounts: &[(String, Quantity)]) -> u64 {
    let most = amounts
        .iter()
        .map(|(r, q)| {
            let cap = c.capacity.get(r).copied().unwrap_or_default();
            if cap.is_zero() { 10 } else { (metrics::percent(*q, cap) / 10.0).ceil() as u64 }
        })
        .max()
        .unwrap_or(0);
    2 + most
}

/// The smallest capacity addition to cluster `c` after which the workload is fully placed, found
/// by bisection over the number of extra replicas `c` must hold; `None` when even room for every
/// pending replica is not enough.
fn capacity_fix(
    input: &PlacementInput,
    plan: &Plan,
    w: &Workload,
    c: &Cluster,
    used: &metrics::Usage,
    pending: u64,
) -> Option<Candidate> {
    let key = w.key();
    let copies = match w.replica_scheduling.kind {
        ReplicaSchedulingType::Divided => pending,
        ReplicaSchedulingType::Duplicated => u64::from(w.replicas),
    };
    let works = |k: u64| -> Option<Vec<(String, Quantity)>> {
        let amounts = capacity_for(c, w, used, k);
        if amounts.is_empty() {
            return None;
        }
        let mut changed = input.clone();
        add_capacity(&c.name, amounts.clone())(&mut changed);
        verify(&changed, plan, &key).map(|_| amounts)
    };
    let mut hi = copies.max(1);
    let mut best = works(hi)?;
    let mut lo = 0;
    // Invariant: `hi` works, `lo` does not (0 adds nothing).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match works(mid) {
            Some(a) => {
                hi = mid;
                best = a;
            }
            None => lo = mid,
        }
    }
    Some(Candidate {
        family: None,
        change: format!("add {} to cluster {}", describe_amounts(&best), c.name),
        size: capacity_size(c, &best),
        apply: add_capacity(&c.name, best),
    })
}

/// Candidate changes for a workload that is not fully placed.
fn candidates(
    input: &PlacementInput,
    plan: &Plan,
    w: &Workload,
    p: &Placement,
    reasons: &BTreeMap<String, Vec<Reason>>,
    used: &metrics::Usage,
) -> Vec<Candidate> {
    let key = w.key();
    let clusters: BTreeMap<&str, &Cluster> = input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out: Vec<Candidate> = Vec::new();
    let mut taints: BTreeSet<Taint> = BTreeSet::new();
    let mut capacity_targets: BTreeSet<String> = BTreeSet::new();
    for (cluster, rs) in reasons {
        let Some(c) = clusters.get(cluster.as_str()) else { continue };
        for r in rs {
            match r {
                Reason::UntoleratedTaint { taint } => {
                    taints.insert(Taint { added_at: None, ..taint.clone() });
                }
                Reason::Cordoned => out.push(Candidate {
                    family: None,
                    change: format!("uncordon cluster {cluster}"),
                    size: 1,
                    apply: with_cluster(cluster, |c| c.unschedulable = false),
                }),
                Reason::AffinityMismatch { part } => out.extend(widen(w, p, c, *part)),
                Reason::MissingApi { api } => {
                    let api2 = api.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("drop requiredApis {api}"),
                        size: 3,
                        apply: with_workload(&key, move |w| w.required_apis.retain(|a| *a != api2)),
                    });
                    let api3 = api.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("serve API {api} on cluster {cluster}"),
                        size: 3,
                        apply: with_cluster(cluster, move |c| c.api_resources.push(api3.clone())),
                    });
                }
                Reason::MissingCapability { capability } => {
                    let cap2 = capability.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("drop requiredCapabilities {capability}"),
                        size: 3,
                        apply: with_workload(&key, move |w| w.required_capabilities.retain(|c| *c != cap2)),
                    });
                    let cap3 = capability.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("give cluster {cluster} capability {capability}"),
                        size: 3,
                        apply: with_cluster(cluster, move |c| c.capabilities.push(cap3.clone())),
                    });
                }
                Reason::MissingTopologyKey { key: topology } => {
                    let t = topology.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("drop the spread constraint on {topology}"),
                        size: 3,
                        apply: with_workload(&key, move |w| w.spread_constraints.retain(|s| s.topology_key != t)),
                    });
                }
                Reason::Insufficient { .. } => {}
                Reason::ZeroWeight => {
                    let name = cluster.clone();
                    out.push(Candidate {
                        family: None,
                        change: format!("give cluster {cluster} weight 1 in replicaScheduling.weights"),
                        size: 1,
                        apply: with_workload(&key, move |w| {
                            w.replica_scheduling.weights.push(ClusterWeight {
                                cluster_names: vec![name.clone()],
                                label_selector: None,
                                weight: 1,
                            })
                        }),
                    });
                }
                Reason::NotSelected => {}
            }
        }
        // Clusters short of capacity only (every other check passed) may take more with more room.
        if rs.iter().all(|r| matches!(r, Reason::Insufficient { .. })) && !rs.is_empty() {
            capacity_targets.insert(cluster.clone());
        }
    }
    for taint in taints {
        let tol = toleration_for(&taint);
        // Tolerating readiness puts replicas on clusters that are down: a last resort.
        let (size, note) = if taint.key == tmc_core::taint::NOT_READY_TAINT_KEY {
            (8, " (runs replicas on clusters that are not ready)")
        } else {
            (1, "")
        };
        out.push(Candidate {
            family: None,
            change: format!("tolerate {taint}{note}"),
            size,
            apply: with_workload(&key, move |w| w.tolerations.push(tol.clone())),
        });
    }
    // Bounds of the workload's own constraints, relaxed one step at a time.
    let groups = |topology: &str| -> u32 {
        let values: BTreeSet<&str> = input.clusters.iter().filter_map(|c| c.topology_value(topology)).collect();
        u32::try_from(values.len()).unwrap_or(u32::MAX)
    };
    for (i, s) in w.spread_constraints.iter().enumerate() {
        let topology = s.topology_key.clone();
        if let Some(m) = s.min_groups {
            for to in (1..m).rev() {
                out.push(Candidate {
                    family: Some(format!("minGroups{i}")),
                    change: format!(
                        "relax the spread over {topology} to {to} group{} (minGroups {m} -> {to})",
                        plural(to)
                    ),
                    size: u64::from(m - to),
                    apply: with_workload(&key, move |w| {
                        if let Some(s) = w.spread_constraints.get_mut(i) {
                            s.min_groups = Some(to);
                        }
                    }),
                });
            }
        }
        if let Some(m) = s.max_groups {
            for to in (m + 1)..=groups(&topology).max(m) {
                out.push(Candidate {
                    family: Some(format!("maxGroups{i}")),
                    change: format!("allow the spread over {topology} to use {to} groups (maxGroups {m} -> {to})"),
                    size: u64::from(to - m),
                    apply: with_workload(&key, move |w| {
                        if let Some(s) = w.spread_constraints.get_mut(i) {
                            s.max_groups = Some(to);
                        }
                    }),
                });
            }
        }
        if let Some(m) = s.max_skew {
            for to in (m + 1)..=(m + 3) {
                out.push(Candidate {
                    family: Some(format!("maxSkew{i}")),
                    change: format!("relax maxSkew of the spread over {topology} to {to} (from {m})"),
                    size: u64::from(to - m),
                    apply: with_workload(&key, move |w| {
                        if let Some(s) = w.spread_constraints.get_mut(i) {
                            s.max_skew = Some(to);
                        }
                    }),
                });
            }
        }
    }
    let n_clusters = u32::try_from(input.clusters.len()).unwrap_or(u32::MAX);
    if let Some(n) = w.number_of_clusters {
        let range: Vec<u32> = match w.replica_scheduling.kind {
            ReplicaSchedulingType::Duplicated => (1..n).rev().collect(),
            ReplicaSchedulingType::Divided => ((n + 1)..=n_clusters.max(n)).collect(),
        };
        for to in range {
            out.push(Candidate {
                family: Some("numberOfClusters".to_string()),
                change: format!("set numberOfClusters to {to} (from {n})"),
                size: u64::from(to.abs_diff(n)),
                apply: with_workload(&key, move |w| w.number_of_clusters = Some(to)),
            });
        }
    }
    let rs = &w.replica_scheduling;
    if rs.kind == ReplicaSchedulingType::Divided {
        if let Some(m) = rs.max_replicas_per_cluster {
            for to in [m + 1, m + 2, m * 2, u32::from(m > 0) * w.replicas].into_iter().filter(|&t| t > m) {
                out.push(Candidate {
                    family: Some("maxReplicasPerCluster".to_string()),
                    change: format!("raise maxReplicasPerCluster to {to} (from {m})"),
                    size: u64::from(to - m).min(10),
                    apply: with_workload(&key, move |w| w.replica_scheduling.max_replicas_per_cluster = Some(to)),
                });
            }
        }
        if let Some(m) = rs.min_replicas_per_cluster {
            for to in (1..m).rev() {
                out.push(Candidate {
                    family: Some("minReplicasPerCluster".to_string()),
                    change: format!("lower minReplicasPerCluster to {to} (from {m})"),
                    size: u64::from(m - to),
                    apply: with_workload(&key, move |w| w.replica_scheduling.min_replicas_per_cluster = Some(to)),
                });
            }
        }
    }
    // Priority: go before every workload that competes today.
    let top = input.workloads.iter().filter(|o| o.key() != key).map(|o| o.priority).max();
    if let Some(top) = top
        && top >= w.priority
        && let Some(to) = top.checked_add(1)
    {
        out.push(Candidate {
            family: None,
            change: format!("raise priority to {to} (from {}), above every other workload", w.priority),
            size: 2,
            apply: with_workload(&key, move |w| w.priority = to),
        });
    }
    // Capacity: clusters that failed only for room, and the clusters the workload already uses.
    let pending = metrics::pending(w, p);
    for d in &p.decisions {
        capacity_targets.insert(d.cluster.clone());
    }
    // Each target costs a few solves: try the clusters needing the least first, at most
    // `CAPACITY_TARGETS` of them.
    let mut targets: Vec<(u64, &Cluster)> = capacity_targets
        .iter()
        .filter_map(|name| clusters.get(name.as_str()).copied())
        .map(|c| (capacity_size(c, &capacity_for(c, w, used, pending.max(1))), c))
        .collect();
    targets.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    for (_, c) in targets.into_iter().take(CAPACITY_TARGETS) {
        if let Some(fix) = capacity_fix(input, plan, w, c, used, pending) {
            out.push(fix);
        }
    }
    // Last resort: ask for what fits.
    if rs.kind == ReplicaSchedulingType::Divided && p.placed > 0 && p.placed < u64::from(w.replicas) {
        let to = u32::try_from(p.placed).unwrap_or(w.replicas);
        out.push(Candidate {
            family: None,
            change: format!("lower replicas to {to} (from {})", w.replicas),
            size: 10 + u64::from(w.replicas - to),
            apply: with_workload(&key, move |w| w.replicas = to),
        });
    }
    out
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// When no single change is enough: per cluster, every change that cluster needs at once
/// (tolerations, uncordon, room for every pending replica).
fn composites(
    input: &PlacementInput,
    w: &Workload,
    reasons: &BTreeMap<String, Vec<Reason>>,
    used: &metrics::Usage,
) -> Vec<Candidate> {
    let key = w.key();
    let p_pending = input.workloads.iter().find(|o| o.key() == key).map_or(0, |o| u64::from(o.replicas));
    let mut out = Vec::new();
    for (cluster, rs) in reasons {
        let Some(c) = input.clusters.iter().find(|c| c.name == *cluster) else { continue };
        let fixable = rs
            .iter()
            .all(|r| matches!(r, Reason::UntoleratedTaint { .. } | Reason::Cordoned | Reason::Insufficient { .. }));
        if !fixable || rs.len() < 2 {
            continue;
        }
        let taints: Vec<Taint> = rs
            .iter()
            .filter_map(|r| match r {
                Reason::UntoleratedTaint { taint } => Some(Taint { added_at: None, ..taint.clone() }),
                _ => None,
            })
            .collect();
        let tolerations: Vec<Toleration> = taints.iter().map(toleration_for).collect();
        let uncordon = rs.contains(&Reason::Cordoned);
        let amounts = capacity_for(c, w, used, p_pending);
        let mut words: Vec<String> = taints.iter().map(|t| format!("tolerate {t}")).collect();
        if uncordon {
            words.push(format!("uncordon {cluster}"));
        }
        if !amounts.is_empty() {
            words.push(format!("add {} to {cluster}", describe_amounts(&amounts)));
        }
        let name = cluster.clone();
        let key = key.clone();
        let size = 2 * words.len() as u64 + capacity_size(c, &amounts);
        out.push(Candidate {
            family: None,
            change: words.join(", "),
            size,
            apply: Box::new(move |input: &mut PlacementInput| {
                if let Some(w) = input.workloads.iter_mut().find(|w| w.key() == key) {
                    w.tolerations.extend(tolerations.iter().cloned());
                }
                if let Some(c) = input.clusters.iter_mut().find(|c| c.name == name) {
                    if uncordon {
                        c.unschedulable = false;
                    }
                    for (r, q) in &amounts {
                        let total = c.capacity.entry(r.clone()).or_insert(Quantity::ZERO);
                        *total = total.saturating_add(*q);
                    }
                }
            }),
        });
    }
    out
}

/// The explanation as text: the workload, a table of every cluster, and the fixes.
pub fn table(e: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {:?}, {} placed, {} pending{}",
        e.workload,
        e.phase,
        e.placed,
        e.pending,
        if e.message.is_empty() { String::new() } else { format!("\n  {}", e.message) }
    );
    out.push('\n');
    let mut t = crate::summary::Table::new(
        &["CLUSTER", "REPLICAS", "ROOM", "SCORE", "VERDICT"],
        &[false, true, true, true, false],
    );
    for c in &e.clusters {
        let verdict =
            if c.reasons.is_empty() { c.verdict.clone() } else { format!("{}: {}", c.verdict, c.reasons.join("; ")) };
        t.row(vec![
            c.cluster.clone(),
            if c.replicas > 0 { c.replicas.to_string() } else { "-".to_string() },
            c.room.map_or_else(|| "any".to_string(), |r| r.to_string()),
            c.score.map_or_else(|| "-".to_string(), |s| s.to_string()),
            verdict,
        ]);
    }
    t.render(&mut out);
    out.push_str(
        "\nROOM: more replicas of this workload that fit in the cluster's free capacity after the whole plan.\n\
         SCORE: how the solver ranks the cluster for this workload today (preferences, prioritizers,\n\
         PreferNoSchedule taints; higher is preferred; - where its affinity does not admit the cluster).\n",
    );
    if e.phase == Phase::Scheduled {
        out.push_str("\nFully placed: nothing to relax.\n");
        return out;
    }
    if e.fixes.is_empty() {
        let _ = writeln!(
            out,
            "\nNo single change among the {} tried places every replica; several changes are needed.",
            e.candidates_tried
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\nChanges that place it fully, smallest first ({} of {} candidates; each verified by solving again):",
        e.fixes.len(),
        e.candidates_tried
    );
    let mut t = crate::summary::Table::new(&["#", "CHANGE", "OTHER WORKLOADS"], &[true, false, false]);
    for (i, f) in e.fixes.iter().enumerate() {
        let others = if f.others_worse == 0 && f.others_churn == Churn::default() {
            "unaffected".to_string()
        } else {
            format!(
                "{} get fewer replicas; {} replicas move, {} stop, {} start",
                f.others_worse, f.others_churn.moved, f.others_churn.stopped, f.others_churn.started
            )
        };
        t.row(vec![(i + 1).to_string(), f.change.clone(), others]);
    }
    t.render(&mut out);
    out
}
