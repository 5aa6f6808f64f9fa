//! `explain` and `diff` on small scenarios whose answers are known.

use tmc_core::{Phase, PlacementInput, Quantity, WorkloadKey, solve};
use tmc_sim::{
    diff::{Status, diff},
    explain::{ExplainError, explain},
    load_scenario,
};

fn input(text: &str) -> PlacementInput {
    load_scenario(text).unwrap_or_else(|e| panic!("{e}"))
}

fn key(s: &str) -> WorkloadKey {
    WorkloadKey(s.to_string())
}

const TAINTED: &str = "\
clusters:
- {name: a, location: {region: r1}, capacity: {cpu: \"8\"}, taints: [{key: maintenance, value: \"true\", effect: NoSchedule}]}
- {name: b, location: {region: r2}, capacity: {cpu: \"4\"}, allocated: {cpu: \"2\"}}
- {name: c, location: {region: r3}, capacity: {cpu: \"8\"}, labels: {env: dev}}
workloads:
- {name: web, namespace: shop, replicas: 4, resources: {cpu: \"1\"}, clusterAffinity: {labelSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}}}
";

#[test]
fn every_cluster_is_explained_and_every_fix_is_verified() {
    let input = input(TAINTED);
    let e = explain(&input, &key("shop/web")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((e.phase, e.placed, e.pending), (Phase::PartiallyScheduled, 2, 2));
    let verdicts: Vec<(&str, &str, u64)> =
        e.clusters.iter().map(|c| (c.cluster.as_str(), c.verdict.as_str(), c.replicas)).collect();
    assert_eq!(verdicts, [("a", "rejected", 0), ("b", "chosen", 2), ("c", "rejected", 0)]);
    assert_eq!(e.clusters[0].reasons, ["had untolerated taint {maintenance=true:NoSchedule}"]);
    assert_eq!(e.clusters[2].reasons, ["did not match cluster affinity"]);
    assert_eq!((e.clusters[0].room, e.clusters[1].room), (Some(8), Some(0)));

    let fixes: Vec<&str> = e.fixes.iter().map(|f| f.change.as_str()).collect();
    assert_eq!(fixes[0], "tolerate {maintenance=true:NoSchedule}", "{fixes:?}");
    for expected in [
        "widen the label selector: drop matchExpressions env NotIn [\"dev\"]",
        "add 2 cpu to cluster b",
        "lower replicas to 2 (from 4)",
    ] {
        assert!(fixes.contains(&expected), "{expected:?} not in {fixes:?}");
    }
    assert!(e.fixes.windows(2).all(|w| w[0].size <= w[1].size), "smallest first: {:?}", e.fixes);
    assert!(e.fixes.iter().all(|f| f.others_worse == 0));

    // "add 2 cpu" is the smallest amount: 1.9 is not enough, 2 is.
    let with_cpu = |millis: u64| {
        let mut changed = input.clone();
        let b = changed.clusters.iter_mut().find(|c| c.name == "b").unwrap_or_else(|| panic!("no b"));
        b.capacity.insert("cpu".into(), Quantity::from_millis(4000 + millis));
        solve(&changed).unwrap_or_else(|e| panic!("{e}")).get(&key("shop/web")).map(|p| p.phase)
    };
    assert_eq!(with_cpu(1900), Some(Phase::PartiallyScheduled));
    assert_eq!(with_cpu(2000), Some(Phase::Scheduled));
}

#[test]
fn spread_that_cannot_be_met_is_relaxed_by_the_smallest_step() {
    let text = "\
clusters:
- {name: a, location: {region: r1}, capacity: {cpu: \"8\"}}
- {name: b, location: {region: r2}, capacity: {cpu: \"8\"}}
- {name: c, location: {region: r3}, capacity: {cpu: \"8\"}, unschedulable: true}
workloads:
- {name: api, replicas: 4, resources: {cpu: \"1\"}, spreadConstraints: [{topologyKey: region, minGroups: 3}]}
";
    let e = explain(&input(text), &key("default/api")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.phase, Phase::Unschedulable);
    let fixes: Vec<&str> = e.fixes.iter().map(|f| f.change.as_str()).collect();
    assert!(fixes.contains(&"uncordon cluster c"), "{fixes:?}");
    assert!(fixes.contains(&"relax the spread over region to 2 groups (minGroups 3 -> 2)"), "{fixes:?}");
    assert!(!fixes.iter().any(|f| f.contains("to 1 group")), "only the smallest relaxation that works: {fixes:?}");
}

#[test]
fn a_fully_placed_workload_shows_feasible_and_rejected_clusters_and_no_fixes() {
    let text = "\
clusters:
- {name: a, capacity: {cpu: \"8\"}}
- {name: b, capacity: {cpu: \"8\"}, taints: [{key: gpu, effect: NoSchedule}]}
- {name: c, capacity: {cpu: \"8\"}}
workloads:
- {name: one, resources: {cpu: \"1\"}, replicaScheduling: {type: Divided, division: Aggregated}}
";
    let e = explain(&input(text), &key("default/one")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.phase, Phase::Scheduled);
    assert!(e.fixes.is_empty());
    let verdicts: Vec<&str> = e.clusters.iter().map(|c| c.verdict.as_str()).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == "chosen").count(), 1);
    assert_eq!(verdicts.iter().filter(|v| **v == "feasible").count(), 1);
    assert_eq!(e.clusters[1].reasons, ["had untolerated taint {gpu:NoSchedule}"]);
}

#[test]
fn unknown_workloads_are_named_with_suggestions() {
    let err = explain(&input(TAINTED), &key("shop/nope")).err();
    match err {
        Some(ExplainError::UnknownWorkload { key, known }) => {
            assert_eq!(key.0, "shop/nope");
            assert_eq!(known, ["shop/web"]);
        }
        other => panic!("expected UnknownWorkload, got {other:?}"),
    }
}

#[test]
fn diff_carries_decisions_over_unless_fresh() {
    let before = input(TAINTED);
    let mut after = before.clone();
    // Lift the maintenance taint and cordon b: carried over, web keeps its 2 replicas on b and
    // adds 2 on a; placed from scratch, it may go anywhere that admits new replicas.
    after.clusters[0].taints.clear();
    after.clusters[1].unschedulable = true;
    let carried = diff(&before, &after, false).unwrap_or_else(|e| panic!("{e}"));
    assert!(carried.carried_over);
    let web = &carried.workloads[0];
    assert_eq!((web.status, web.before.as_str(), web.after.as_str()), (Status::Changed, "b=2", "a=2 b=2"));
    assert_eq!((web.churn.moved, web.churn.started), (0, 2));
    assert_eq!((carried.changed, carried.unchanged), (1, 0));
    let fresh = diff(&before, &after, true).unwrap_or_else(|e| panic!("{e}"));
    assert!(!fresh.carried_over);
    assert_eq!(fresh.workloads[0].after, "a=4", "a cordoned cluster takes no new replicas");
    assert_eq!(fresh.total.moved, 2);
    let same = diff(&before, &before, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((same.changed, same.unchanged, same.total.stopped), (0, 1, 0));
}
