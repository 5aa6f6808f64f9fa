//! Semantic validation: every problem, each with the field path it concerns.
//!
//! Parsing (serde) rejects unknown fields, wrong types, negative or fractional replicas and
//! malformed quantities; this module checks what types cannot express, and reports all of it.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{BuildHasherDefault, DefaultHasher},
};

use crate::{
    ClusterAffinity, LabelSelector, PlacementInput, ReplicaSchedulingType, SelectorOperator, Toleration,
    TolerationOperator, Workload, WorkloadKey, taint::TaintEffect, workload::Division,
};

/// The largest replica count accepted for one workload.
pub const MAX_REPLICAS: u32 = 1_000_000;

/// One problem in the input.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidationError {
    /// Where, e.g. `workloads[3].spreadConstraints[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in an input; never empty when returned as an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the input:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Report(Vec<ValidationError>);

impl Report {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError { path: path.into(), message: message.into() });
    }
}

/// Checks `input`; `Ok(())` or every problem found.
pub fn validate(input: &PlacementInput) -> Result<(), ValidationErrors> {
    let mut r = Report::default();
    let mut cluster_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in input.clusters.iter().enumerate() {
        let p = format!("clusters[{i}]");
        check_name(&mut r, &p, ".name", &c.name);
        if let Some(first) = cluster_names.insert(&c.name, i) {
            r.err(format!("{p}.name"), format!("duplicate cluster name {:?} (first at clusters[{first}])", c.name));
        }
        if let Some(cost) = c.cost
            && (!cost.is_finite() || cost < 0.0)
        {
            r.err(format!("{p}.cost"), format!("cost must be a finite number >= 0, got {cost}"));
        }
        for (field, list) in [("capacity", &c.capacity), ("allocated", &c.allocated)] {
            for name in list.keys() {
                if name.trim().is_empty() {
                    r.err(format!("{p}.{field}"), "empty resource name");
                }
            }
        }
        let mut seen = BTreeMap::new();
        for (j, t) in c.taints.iter().enumerate() {
            if t.key.is_empty() {
                r.err(format!("{p}.taints[{j}].key"), "taint key must not be empty");
            }
            if let Some(first) = seen.insert((&t.key, t.effect), j) {
                r.err(
                    format!("{p}.taints[{j}]"),
                    format!("duplicate taint {}:{} (first at taints[{first}])", t.key, t.effect),
                );
            }
        }
    }

    // Each workload is checked on its own (in parallel where available); its problems are
    // reported in input order, before its duplicate-key check.
    let own = crate::solver::par_map(input.workloads.iter().enumerate().collect(), |(i, w)| {
        let mut r = Report::default();
        check_workload(&mut r, &format!("workloads[{i}]"), w);
        (w.key(), r.0)
    });
    // Only looked up, never iterated: a fixed-key hash map is enough (and faster on 100k keys).
    let mut keys: HashMap<WorkloadKey, usize, BuildHasherDefault<DefaultHasher>> =
        HashMap::with_capacity_and_hasher(input.workloads.len(), BuildHasherDefault::default());
    for (i, (key, problems)) in own.into_iter().enumerate() {
        r.0.extend(problems);
        let message = |first: usize| format!("duplicate workload {key} (first at workloads[{first}])");
        if let Some(first) = keys.get(&key).copied() {
            r.err(format!("workloads[{i}].name"), message(first));
        }
        keys.insert(key, i);
    }

    let mut prev_seen = BTreeMap::new();
    for (i, prev) in input.previous.iter().enumerate() {
        let p = format!("previous[{i}]");
        if !keys.contains_key(&prev.workload) {
            r.err(format!("{p}.workload"), format!("unknown workload {:?}", prev.workload.0));
        }
        if let Some(first) = prev_seen.insert(&prev.workload, i) {
            r.err(
                format!("{p}.workload"),
                format!("duplicate entry for {} (first at previous[{first}])", prev.workload),
            );
        }
        let mut clusters = BTreeMap::new();
        for (j, d) in prev.decisions.iter().enumerate() {
            if d.replicas == 0 {
                r.err(format!("{p}.decisions[{j}].replicas"), "replicas must be >= 1");
            }
            if let Some(first) = clusters.insert(&d.cluster, j) {
                r.err(
                    format!("{p}.decisions[{j}].cluster"),
                    format!("duplicate cluster {:?} (first at decisions[{first}])", d.cluster),
                );
            }
        }
    }

    if r.0.is_empty() { Ok(()) } else { Err(ValidationErrors(r.0)) }
}

/// Checks one workload on its own (everything [`validate`] checks of a workload except that its
/// key is unique); paths start at `workload`.
pub fn validate_workload(w: &Workload) -> Result<(), ValidationErrors> {
    let mut r = Report::default();
    check_workload(&mut r, "workload", w);
    if r.0.is_empty() { Ok(()) } else { Err(ValidationErrors(r.0)) }
}

/// Checks a name at `{p}{field}` (paths are only formatted for problems).
fn check_name(r: &mut Report, p: &str, field: &str, name: &str) {
    if name.trim().is_empty() {
        r.err(format!("{p}{field}"), "must not be empty");
    } else if name.contains('/') {
        r.err(format!("{p}{field}"), format!("{name:?} must not contain '/'"));
    }
}

fn check_workload(r: &mut Report, p: &str, w: &Workload) {
    check_name(r, p, ".name", &w.name);
    check_name(r, p, ".namespace", &w.namespace);
    if w.replicas > MAX_REPLICAS {
        r.err(format!("{p}.replicas"), format!("{} exceeds the maximum of {MAX_REPLICAS}", w.replicas));
    }
    for name in w.resources.keys() {
        if name.trim().is_empty() {
            r.err(format!("{p}.resources"), "empty resource name");
        }
    }
    if w.cluster_affinity.is_some() && !w.cluster_affinities.is_empty() {
        r.err(format!("{p}.clusterAffinities"), "clusterAffinity and clusterAffinities are mutually exclusive");
    }
    if let Some(a) = &w.cluster_affinity {
        check_affinity(r, || format!("{p}.clusterAffinity"), a);
    }
    let mut names = BTreeMap::new();
    for (i, a) in w.cluster_affinities.iter().enumerate() {
        let ap = || format!("{p}.clusterAffinities[{i}]");
        match a.name.as_deref() {
            None | Some("") => r.err(format!("{}.name", ap()), "each clusterAffinities entry needs a name"),
            Some(n) => {
                if let Some(first) = names.insert(n, i) {
                    r.err(
                        format!("{}.name", ap()),
                        format!("duplicate group name {n:?} (first at clusterAffinities[{first}])"),
                    );
                }
            }
        }
        check_affinity(r, ap, a);
    }
    for (i, t) in w.tolerations.iter().enumerate() {
        check_toleration(r, || format!("{p}.tolerations[{i}]"), t);
    }
    let mut keys = BTreeMap::new();
    for (i, s) in w.spread_constraints.iter().enumerate() {
        let sp = || format!("{p}.spreadConstraints[{i}]");
        if s.topology_key.trim().is_empty() {
            r.err(format!("{}.topologyKey", sp()), "must not be empty");
        }
        if let Some(first) = keys.insert(&s.topology_key, i) {
            r.err(
                format!("{}.topologyKey", sp()),
                format!("duplicate topologyKey {:?} (first at spreadConstraints[{first}])", s.topology_key),
            );
        }
        if s.min_groups == Some(0) {
            r.err(format!("{}.minGroups", sp()), "must be >= 1");
        }
        if s.max_groups == Some(0) {
            r.err(format!("{}.maxGroups", sp()), "must be >= 1");
        }
        if let (Some(min), Some(max)) = (s.min_groups, s.max_groups)
            && max < min
        {
            r.err(sp(), format!("maxGroups {max} < minGroups {min}"));
        }
    }
    let rs = &w.replica_scheduling;
    let rp = || format!("{p}.replicaScheduling");
    if !rs.weights.is_empty() && (rs.kind != ReplicaSchedulingType::Divided || rs.division != Division::Weighted) {
        r.err(format!("{}.weights", rp()), "weights are only used with type: Divided and division: Weighted");
    }
    for (i, wt) in rs.weights.iter().enumerate() {
        let wp = || format!("{}.weights[{i}]", rp());
        if wt.cluster_names.is_empty() && wt.label_selector.is_none() {
            r.err(wp(), "needs clusterNames or labelSelector");
        }
        if let Some(s) = &wt.label_selector {
            check_selector(r, || format!("{}.labelSelector", wp()), s);
        }
    }
    if rs.kind == ReplicaSchedulingType::Duplicated
        && (rs.min_replicas_per_cluster.is_some() || rs.max_replicas_per_cluster.is_some())
    {
        r.err(rp(), "minReplicasPerCluster and maxReplicasPerCluster only apply to type: Divided");
    }
    if let (Some(min), Some(max)) = (rs.min_replicas_per_cluster, rs.max_replicas_per_cluster)
        && max < min
    {
        r.err(rp(), format!("maxReplicasPerCluster {max} < minReplicasPerCluster {min}"));
    }
    if rs.max_replicas_per_cluster == Some(0) {
        r.err(format!("{}.maxReplicasPerCluster", rp()), "must be >= 1");
    }
    if w.number_of_clusters == Some(0) {
        r.err(format!("{p}.numberOfClusters"), "must be >= 1");
    }
    for (i, pref) in w.preferences.iter().enumerate() {
        let pp = || format!("{p}.preferences[{i}]");
        if !(1..=100).contains(&pref.weight) {
            r.err(format!("{}.weight", pp()), format!("must be 1..=100, got {}", pref.weight));
        }
        if pref.label_selector.is_none() && pref.location_selector.is_none() {
            r.err(pp(), "needs labelSelector or locationSelector");
        }
        if let Some(s) = &pref.label_selector {
            check_selector(r, || format!("{}.labelSelector", pp()), s);
        }
    }
    let mut seen = BTreeMap::new();
    for (i, pr) in w.prioritizers.iter().enumerate() {
        let pp = || format!("{p}.prioritizers[{i}]");
        if !(-100..=100).contains(&pr.weight) {
            r.err(format!("{}.weight", pp()), format!("must be -100..=100, got {}", pr.weight));
        }
        if let Some(first) = seen.insert(pr.name, i) {
            r.err(
                format!("{}.name", pp()),
                format!("duplicate prioritizer {:?} (first at prioritizers[{first}])", pr.name),
            );
        }
    }
}

// Paths are passed as closures so they are only formatted for problems.

fn check_affinity(r: &mut Report, p: impl Fn() -> String, a: &ClusterAffinity) {
    if let Some(s) = &a.label_selector {
        check_selector(r, || format!("{}.labelSelector", p()), s);
    }
}

fn check_selector(r: &mut Report, p: impl Fn() -> String, s: &LabelSelector) {
    for (i, e) in s.match_expressions.iter().enumerate() {
        let ep = || format!("{}.matchExpressions[{i}]", p());
        if e.key.trim().is_empty() {
            r.err(format!("{}.key", ep()), "must not be empty");
        }
        match e.operator {
            SelectorOperator::In | SelectorOperator::NotIn if e.values.is_empty() => {
                r.err(format!("{}.values", ep()), format!("operator {:?} needs at least one value", e.operator));
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !e.values.is_empty() => {
                r.err(format!("{}.values", ep()), format!("operator {:?} takes no values", e.operator));
            }
            SelectorOperator::Gt | SelectorOperator::Lt => match e.values.as_slice() {
                [v] if v.parse::<i64>().is_ok() => {}
                _ => r.err(
                    format!("{}.values", ep()),
                    format!("operator {:?} needs exactly one integer value", e.operator),
                ),
            },
            _ => {}
        }
    }
}

fn check_toleration(r: &mut Report, p: impl Fn() -> String, t: &Toleration) {
    if t.key.is_empty() && t.operator != TolerationOperator::Exists {
        r.err(format!("{}.operator", p()), "an empty key needs operator: Exists");
    }
    if t.operator == TolerationOperator::Exists && !t.value.is_empty() {
        r.err(format!("{}.value", p()), "must be empty with operator: Exists");
    }
    if let Some(s) = t.toleration_seconds {
        if t.effect != Some(TaintEffect::NoExecute) {
            r.err(format!("{}.tolerationSeconds", p()), "only applies with effect: NoExecute");
        }
        if s < 0 {
            r.err(format!("{}.tolerationSeconds", p()), format!("must be >= 0, got {s}"));
        }
    }
}
