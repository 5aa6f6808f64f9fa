//! Data-driven tests of the placement semantics: each case is a small YAML input and the plan
//! it must produce, rendered one line per workload as `ns/name Phase cluster=replicas ...`.

use tmc_core::{Phase, PlacementInput, Plan, solve};

fn parse(yaml: &str) -> PlacementInput {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad test YAML: {e}"))
}

fn solve_yaml(yaml: &str) -> Plan {
    solve(&parse(yaml)).unwrap_or_else(|e| panic!("invalid test input: {e}"))
}

fn render(plan: &Plan) -> String {
    plan.placements
        .iter()
        .map(|p| {
            let mut line = format!("{} {:?}", p.workload, p.phase);
            for d in &p.decisions {
                line.push_str(&format!(" {}={}", d.cluster, d.replicas));
            }
            if let Some(g) = &p.affinity_group {
                line.push_str(&format!(" group={g}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn check(yaml: &str, expect: &str) -> Plan {
    let plan = solve_yaml(yaml);
    let got = render(&plan);
    let want: Vec<&str> = expect.trim().lines().map(str::trim).collect();
    assert_eq!(got, want.join("\n"), "\n--- input ---\n{yaml}");
    plan
}

const THREE: &str = "
clusters:
  - {name: a, labels: {env: prod, gen: '3'}, location: {provider: aws, region: eu, zone: eu-1}, capacity: {cpu: '10'}}
  - {name: b, labels: {env: prod, gen: '5'}, location: {provider: gcp, region: us, zone: us-1}, capacity: {cpu: '10'}}
  - {name: c, labels: {env: dev}, location: {provider: aws, region: eu, zone: eu-2}, capacity: {cpu: '10'}}
";

fn with(clusters: &str, workloads: &str) -> String {
    format!("{clusters}\nworkloads:\n{workloads}")
}

#[test]
fn label_selectors_follow_kubernetes() {
    let cases = [
        ("{matchLabels: {env: prod}}", "a=1 b=1"),
        ("{matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}", "c=2"),
        ("{matchExpressions: [{key: gen, operator: DoesNotExist}]}", "c=2"),
        ("{matchExpressions: [{key: gen, operator: Exists}]}", "a=1 b=1"),
        ("{matchExpressions: [{key: gen, operator: Gt, values: ['4']}]}", "b=2"),
        ("{matchExpressions: [{key: gen, operator: Lt, values: ['4']}]}", "a=2"),
        ("{}", "a=1 b=1"),
    ];
    for (selector, want) in cases {
        let yaml = with(
            THREE,
            &format!(
                "  - {{name: w, replicas: 2, resources: {{cpu: '1'}}, clusterAffinity: {{labelSelector: {selector}}}, replicaScheduling: {{type: Divided, division: Weighted}}}}"
            ),
        );
        let plan = solve_yaml(&yaml);
        let got: Vec<String> =
            plan.placements[0].decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect();
        assert_eq!(got.join(" "), want, "selector {selector}");
    }
}

#[test]
fn exclude_always_wins_and_names_restrict() {
    check(
        &with(
            THREE,
            "  - {name: w, replicas: 4, replicaScheduling: {type: Divided, division: Weighted}, clusterAffinity: {clusterNames: [a, b], exclude: [b]}}",
        ),
        "default/w Scheduled a=4",
    );
    check(
        &with(
            THREE,
            "  - {name: w, replicas: 4, clusterAffinity: {locationSelector: {providers: [aws], zones: [eu-2]}}}",
        ),
        "default/w Scheduled c=4",
    );
}

#[test]
fn taints_and_tolerations() {
    let clusters = "
clusters:
  - {name: a, capacity: {cpu: '10'}, taints: [{key: maintenance, value: 'true', effect: NoSchedule}]}
  - {name: b, capacity: {cpu: '10'}, taints: [{key: spot, effect: PreferNoSchedule}]}
  - {name: c, capacity: {cpu: '10'}, ready: false}
";
    // Untolerated NoSchedule and the not-ready NoExecute filter; PreferNoSchedule only scores.
    check(
        &with(clusters, "  - {name: w, replicas: 3, replicaScheduling: {type: Duplicated}}"),
        "default/w Scheduled b=3",
    );
    // Empty key + Exists tolerates everything; Duplicated then uses all three.
    check(
        &with(
            clusters,
            "  - {name: w, replicas: 1, replicaScheduling: {type: Duplicated}, tolerations: [{operator: Exists}]}",
        ),
        "default/w Scheduled a=1 b=1 c=1",
    );
    // A toleration with an empty effect matches every effect of that key.
    check(
        &with(
            clusters,
            "  - {name: w, replicas: 1, replicaScheduling: {type: Duplicated}, tolerations: [{key: maintenance, value: 'true'}]}",
        ),
        "default/w Scheduled a=1 b=1",
    );
    // A NoExecute toleration with tolerationSeconds does not admit new replicas.
    check(
        &with(
            clusters,
            "  - {name: w, replicas: 1, replicaScheduling: {type: Duplicated}, tolerations: [{key: tmc.kcp.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 60}]}",
        ),
        "default/w Scheduled b=1",
    );
    // PreferNoSchedule lowers the score: with one cluster to pick, the untainted one wins.
    let two = "
clusters:
  - {name: a, capacity: {cpu: '10'}, taints: [{key: spot, effect: PreferNoSchedule}]}
  - {name: b, capacity: {cpu: '10'}}
";
    check(&with(two, "  - {name: w, replicas: 2, numberOfClusters: 1}"), "default/w Scheduled b=2");
}

#[test]
fn bounded_no_execute_tolerations_run_out_at_added_at_plus_seconds() {
    let yaml = |now: i64| {
        format!(
            "
now: {now}
clusters:
  - {{name: a, capacity: {{cpu: '10'}}, taints: [{{key: tmc.kcp.io/not-ready, effect: NoExecute, addedAt: 1000}}]}}
  - {{name: b, capacity: {{cpu: '10'}}}}
workloads:
  - {{name: w, replicas: 2, tolerations: [{{key: tmc.kcp.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}}]}}
previous:
  - {{workload: default/w, decisions: [{{cluster: a, replicas: 2}}]}}
"
        )
    };
    check(&yaml(1299), "default/w Scheduled a=2");
    check(&yaml(1300), "default/w Scheduled b=2");
}

#[test]
fn cordon_blocks_new_replicas_only() {
    let yaml = "
clusters:
  - {name: a, capacity: {cpu: '10'}, unschedulable: true}
  - {name: b, capacity: {cpu: '10'}}
workloads:
  - {name: old, replicas: 2, resources: {cpu: '1'}}
  - {name: new, replicas: 2, resources: {cpu: '1'}, clusterAffinity: {clusterNames: [a]}}
previous:
  - {workload: default/old, decisions: [{cluster: a, replicas: 2}]}
";
    let plan = check(yaml, "default/new Unschedulable\ndefault/old Scheduled a=2");
    assert_eq!(
        plan.placements[0].message,
        "0/2 clusters are available: 1 did not match cluster affinity, 1 had been cordoned."
    );
}

#[test]
fn capacity_is_hard_and_counted_across_the_batch() {
    let yaml = "
clusters:
  - {name: a, capacity: {cpu: '4', memory: 8Gi, pods: 3}, allocated: {cpu: '1'}}
workloads:
  - {name: big, replicas: 2, priority: 10, resources: {cpu: '1', memory: 1Gi}}
  - {name: small, replicas: 5, resources: {cpu: 500m}}
  - {name: gpu, replicas: 1, resources: {nvidia.com/gpu: '1'}}
";
    // 3 cpu free; pods 3: big takes 2 pods, small gets the last pod. Within priority 0, gpu
    // comes after small (no cluster has a GPU, so its replicas are the largest), so it finds the
    // pods gone as well.
    let plan =
        check(yaml, "default/big Scheduled a=2\ndefault/gpu Unschedulable\ndefault/small PartiallyScheduled a=1");
    let gpu = &plan.placements[1];
    assert_eq!(gpu.message, "0/1 clusters are available: 1 had insufficient nvidia.com/gpu, 1 had insufficient pods.");
    assert_eq!(
        plan.placements[2].message,
        "1/1 clusters are available. 1 used cluster ran out of pods. Placed 1/5 replicas."
    );
}

#[test]
fn every_short_resource_is_named() {
    let yaml = "
clusters:
  - {name: a, capacity: {cpu: '1', memory: 1Gi}}
workloads:
  - {name: w, resources: {cpu: '2', memory: 4Gi, nvidia.com/gpu: '1'}}
";
    let plan = check(yaml, "default/w Unschedulable");
    let input = parse(yaml);
    let rejections = tmc_core::cluster_rejections(&input, &plan.placements[0].workload).unwrap().unwrap();
    let names: Vec<String> = rejections[0].reasons.iter().map(|r| r.phrase()).collect();
    assert_eq!(names, ["had insufficient cpu", "had insufficient memory", "had insufficient nvidia.com/gpu"]);
    assert_eq!(
        plan.placements[0].message,
        "0/1 clusters are available: 1 had insufficient cpu, 1 had insufficient memory, 1 had insufficient nvidia.com/gpu."
    );
}

#[test]
fn duplicated_uses_exactly_n_or_all_feasible() {
    check(
        &with(THREE, "  - {name: w, replicas: 3, replicaScheduling: {type: Duplicated}}"),
        "default/w Scheduled a=3 b=3 c=3",
    );
    check(
        &with(
            THREE,
            "  - {name: w, replicas: 3, replicaScheduling: {type: Duplicated}, numberOfClusters: 2, preferences: [{weight: 10, labelSelector: {matchLabels: {env: dev}}}]}",
        ),
        "default/w Scheduled a=3 c=3",
    );
    let plan = check(
        &with(
            THREE,
            "  - {name: w, replicas: 4, resources: {cpu: '2'}, replicaScheduling: {type: Duplicated}, numberOfClusters: 4}",
        ),
        "default/w PartiallyScheduled a=4 b=4 c=4",
    );
    assert_eq!(
        plan.placements[0].message,
        "3/3 clusters are available. numberOfClusters needs 4 clusters, 3 can hold a copy of 4 replicas."
    );
    let plan = check(
        &with(THREE, "  - {name: w, replicas: 6, resources: {cpu: '2'}, replicaScheduling: {type: Duplicated}}"),
        "default/w Unschedulable",
    );
    assert_eq!(plan.placements[0].message, "0/3 clusters are available: 3 had insufficient cpu.");
}

#[test]
fn divided_weighted_uses_largest_remainder() {
    let weights = "weights: [{clusterNames: [a], weight: 2}, {clusterNames: [b], weight: 1}]";
    for (replicas, want) in [(2, "a=1 b=1"), (3, "a=2 b=1"), (7, "a=5 b=2"), (1, "a=1")] {
        let plan = solve_yaml(&with(
            THREE,
            &format!(
                "  - {{name: w, replicas: {replicas}, replicaScheduling: {{type: Divided, division: Weighted, {weights}}}}}"
            ),
        ));
        let got: Vec<String> =
            plan.placements[0].decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect();
        assert_eq!(got.join(" "), want, "{replicas} replicas at 2:1");
    }
}

#[test]
fn divided_dynamic_follows_free_capacity_and_aggregated_packs() {
    let fleet = "
clusters:
  - {name: a, capacity: {cpu: '30'}}
  - {name: b, capacity: {cpu: '10'}}
  - {name: c, capacity: {cpu: '20'}, allocated: {cpu: '10'}}
";
    check(&with(fleet, "  - {name: w, replicas: 10, resources: {cpu: '1'}}"), "default/w Scheduled a=6 b=2 c=2");
    check(
        &with(
            fleet,
            "  - {name: w, replicas: 35, resources: {cpu: '1'}, replicaScheduling: {type: Divided, division: Aggregated}}",
        ),
        "default/w Scheduled a=30 b=5",
    );
    check(
        &with(
            fleet,
            "  - {name: w, replicas: 10, resources: {cpu: '1'}, replicaScheduling: {minReplicasPerCluster: 3, maxReplicasPerCluster: 4}}",
        ),
        "default/w Scheduled a=4 b=3 c=3",
    );
    check(
        &with(fleet, "  - {name: w, replicas: 10, resources: {cpu: '1'}, numberOfClusters: 1}"),
        "default/w Scheduled a=10",
    );
}

/// Priorities weigh the objective linearly: a higher-priority workload that may not preempt gives
/// up a copy when the room places more priority-weighted replicas of a lower one (weights 2 and
/// 1 here: one copy of `big` is worth 4, the room it frees holds 8 of `small`). One that may
/// preempt keeps both copies, since it would take the room back on the next solve.
#[test]
fn a_copy_is_traded_for_more_weighted_replicas_unless_it_may_preempt() {
    let two = "
clusters:
  - {name: a, location: {provider: aws, region: eu, zone: eu-1}, capacity: {cpu: '10'}}
  - {name: b, location: {provider: aws, region: eu, zone: eu-2}, capacity: {cpu: '10'}}
";
    let small = "  - {name: small, replicas: 10, resources: {cpu: '1'}, clusterAffinity: {clusterNames: [a]}}";
    let big = |preemption: &str| {
        format!(
            "  - {{name: big, priority: 1, replicas: 2, resources: {{cpu: '4'}}, replicaScheduling: {{type: Duplicated}}, numberOfClusters: 2, preemption: {preemption}}}\n{small}"
        )
    };
    let plan = check(
        &with(two, &big("Never")),
        "default/big PartiallyScheduled b=2
         default/small Scheduled a=10",
    );
    assert_eq!((plan.objective, plan.placements[0].placed), (14.0, 2));
    let plan = check(
        &with(two, &big("PreemptLowerPriority")),
        "default/big Scheduled a=2 b=2
         default/small PartiallyScheduled a=2",
    );
    assert_eq!(plan.objective, 10.0);
}

#[test]
fn spread_bounds_groups_and_skew() {
    let fleet = "
clusters:
  - {name: eu-1, location: {region: eu}, capacity: {cpu: '100'}}
  - {name: eu-2, location: {region: eu}, capacity: {cpu: '100'}}
  - {name: us-1, location: {region: us}, capacity: {cpu: '3'}}
  - {name: ap-1, location: {region: ap}, capacity: {cpu: '100'}}
  - {name: nowhere, capacity: {cpu: '100'}}
";
    // Clusters without the key are ineligible; maxGroups 2 keeps to two regions.
    let plan = solve_yaml(&with(
        fleet,
        "  - {name: w, replicas: 8, resources: {cpu: '1'}, spreadConstraints: [{topologyKey: region, minGroups: 2, maxGroups: 2}]}",
    ));
    let p = &plan.placements[0];
    assert_eq!(p.phase, Phase::Scheduled);
    assert!(p.decisions.iter().all(|d| d.cluster != "nowhere"));
    let regions: std::collections::BTreeSet<&str> = p.decisions.iter().map(|d| &d.cluster[..2]).collect();
    assert_eq!(regions.len(), 2, "{p:?}");
    // maxSkew 1 over three regions with us capped at 3: 3+3+... cannot exceed us by more than 1.
    let plan = solve_yaml(&with(
        fleet,
        "  - {name: w, replicas: 12, resources: {cpu: '1'}, spreadConstraints: [{topologyKey: region, minGroups: 3, maxSkew: 1}]}",
    ));
    let p = &plan.placements[0];
    let mut per_region = std::collections::BTreeMap::new();
    for d in &p.decisions {
        *per_region.entry(&d.cluster[..2]).or_insert(0u32) += d.replicas;
    }
    let (lo, hi) = (per_region.values().min().copied(), per_region.values().max().copied());
    assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1, "{per_region:?}");
    assert_eq!(per_region.len(), 3);
    assert_eq!(p.phase, Phase::PartiallyScheduled, "us holds 3, so at most 4+4+3 = 11 of 12");
    assert_eq!(p.placed, 11);
    // Not enough groups: nothing is placed and the shortfall is named.
    let plan = check(
        &with(fleet, "  - {name: w, replicas: 8, spreadConstraints: [{topologyKey: region, minGroups: 4}]}"),
        "default/w Unschedulable",
    );
    assert!(
        plan.placements[0].message.contains("spread on region needs at least 4 groups, 3 eligible"),
        "{}",
        plan.placements[0].message
    );
}

#[test]
fn max_groups_counts_the_room_of_a_whole_group() {
    // One provider at most: the preferred provider has one cluster, the other two. Starting from
    // the best-ranked cluster settles on the preferred provider (6 of 18, or 1 of 2 copies); the
    // other provider holds 12 (or both copies), so that is the placement, whatever the division.
    let fleet = "
clusters:
  - {name: home, labels: {site: home}, location: {provider: onprem}, capacity: {cpu: '100'}}
  - {name: gcp-1, location: {provider: gcp}, capacity: {cpu: '100'}}
  - {name: gcp-2, location: {provider: gcp}, capacity: {cpu: '100'}}
";
    let policy = "spreadConstraints: [{topologyKey: provider, maxGroups: 1}], \
                  preferences: [{weight: 100, labelSelector: {matchLabels: {site: home}}}]";
    for division in ["Aggregated", "Dynamic"] {
        let workload = format!(
            "  - {{name: w, replicas: 18, resources: {{cpu: '1'}}, {policy}, \
             replicaScheduling: {{division: {division}, maxReplicasPerCluster: 6}}}}"
        );
        check(&with(fleet, &workload), "default/w PartiallyScheduled gcp-1=6 gcp-2=6");
    }
    let copies = format!(
        "  - {{name: w, replicas: 2, resources: {{cpu: '1'}}, {policy}, numberOfClusters: 2, \
         replicaScheduling: {{type: Duplicated}}}}"
    );
    check(&with(fleet, &copies), "default/w Scheduled gcp-1=2 gcp-2=2");
}

/// Under `numberOfClusters`, when the best-scored clusters cannot hold the request, the clusters
/// with the most room go first: replicas placed come before preferences. Every candidate counts,
/// not only the best-ranked few that selection reads otherwise.
#[test]
fn number_of_clusters_takes_the_clusters_that_hold_the_request() {
    let fleet = "
clusters:
  - {name: a, labels: {fast: 'yes'}, capacity: {cpu: '2'}}
  - {name: b, labels: {fast: 'yes'}, capacity: {cpu: '2'}}
  - {name: c, capacity: {cpu: '10'}}
  - {name: d, capacity: {cpu: '1'}}
";
    let workload = "  - {name: w, replicas: 10, resources: {cpu: '1'}, numberOfClusters: 2, \
                    preferences: [{weight: 100, labelSelector: {matchLabels: {fast: 'yes'}}}]}";
    check(&with(fleet, workload), "default/w Scheduled a=2 c=8");
    // When the best-scored clusters hold it all, preferences decide as before.
    let small = "  - {name: w, replicas: 4, resources: {cpu: '1'}, numberOfClusters: 2, \
                 preferences: [{weight: 100, labelSelector: {matchLabels: {fast: 'yes'}}}]}";
    check(&with(fleet, small), "default/w Scheduled a=2 b=2");
}

/// `head` (clusters and a workload `w`) with six small workloads that prefer zones z1 and z2
/// and each put one replica on two clusters there, placed before `w`.
fn with_six_small_workloads(head: &str) -> String {
    let mut yaml = String::from(head);
    for k in 1..=6 {
        yaml.push_str(&format!(
            "  - {{name: s{k}, replicas: 2, resources: {{cpu: '1'}}, numberOfClusters: 2, \
             preferences: [{{weight: 100, locationSelector: {{zones: [z1, z2]}}}}]}}\n"
        ));
    }
    yaml
}

/// The six small workloads of [`with_six_small_workloads`], moved out of z1 and z2.
const SIX_MOVED: &str = "
    default/s1 Scheduled c=2
    default/s2 Scheduled c=2
    default/s3 Scheduled c=2
    default/s4 Scheduled c=2
    default/s5 Scheduled c=2
    default/s6 Scheduled c=2";

#[test]
fn room_is_made_in_every_group_a_spread_needs_at_once() {
    // Six small workloads fill the two zones `w` may use, one replica in each. `w` needs six
    // replicas in each zone at once (minGroups 2, minReplicasPerCluster 6): taking four of them
    // out (a trade) frees too little, so room is made in both zones by moving their replicas to
    // `c`, one at a time.
    let yaml = with_six_small_workloads(
        "
clusters:
  - {name: a, location: {zone: z1}, capacity: {cpu: '6'}}
  - {name: b, location: {zone: z2}, capacity: {cpu: '6'}}
  - {name: c, location: {zone: z3}, capacity: {cpu: '100'}}
workloads:
  - name: w
    replicas: 12
    resources: {cpu: '1'}
    clusterAffinity: {locationSelector: {zones: [z1, z2]}}
    spreadConstraints: [{topologyKey: zone, minGroups: 2}]
    replicaScheduling: {minReplicasPerCluster: 6}
",
    );
    check(&yaml, &format!("{SIX_MOVED}\ndefault/w Scheduled a=6 b=6"));
}

#[test]
fn room_is_made_in_a_later_affinity_group_when_the_first_cannot_start() {
    // As above, but `w` prefers `p`, alone in its zone: its first affinity group can never hold
    // two zones, so room is made in the second one.
    let yaml = with_six_small_workloads(
        "
clusters:
  - {name: p, labels: {tier: primary}, location: {zone: z0}, capacity: {cpu: '100'}}
  - {name: a, location: {zone: z1}, capacity: {cpu: '6'}}
  - {name: b, location: {zone: z2}, capacity: {cpu: '6'}}
  - {name: c, location: {zone: z3}, capacity: {cpu: '100'}}
workloads:
  - name: w
    replicas: 12
    resources: {cpu: '1'}
    clusterAffinities:
      - {name: primary, labelSelector: {matchLabels: {tier: primary}}}
      - {name: backup, locationSelector: {zones: [z1, z2]}}
    spreadConstraints: [{topologyKey: zone, minGroups: 2}]
    replicaScheduling: {minReplicasPerCluster: 6}
",
    );
    check(&yaml, &format!("{SIX_MOVED}\ndefault/w Scheduled a=6 b=6 group=backup"));
}

#[test]
fn skew_repair_never_opens_a_group_beyond_another_constraints_max_groups() {
    let yaml = "
clusters:
  - {name: a, labels: {team: t1}, location: {region: r1}, capacity: {cpu: '100'}}
  - {name: b, labels: {team: t1}, location: {region: r2}, capacity: {cpu: '1'}}
  - {name: c, labels: {team: t2}, location: {region: r2}, capacity: {cpu: '100'}}
workloads:
  - name: w
    replicas: 4
    resources: {cpu: '1'}
    spreadConstraints:
      - {topologyKey: region, minGroups: 2, maxSkew: 0}
      - {topologyKey: team, maxGroups: 1}
";
    let plan = check(yaml, "default/w PartiallyScheduled a=1 b=1");
    assert!(plan.placements[0].message.ends_with("Placed 2/4 replicas."), "{}", plan.placements[0].message);
}

#[test]
fn skew_repair_trims_an_odd_total_and_keeps_the_groups_min_groups_needs() {
    // 11 replicas over two regions with maxSkew 0 cannot all be placed: 5 + 5 can. Moving a
    // replica between the regions only swaps which one is larger, and emptying c's zone breaks
    // minGroups 3; the repair did both and placed nothing.
    let yaml = "
clusters:
  - {name: a, location: {region: r0, zone: z0}, capacity: {cpu: '4', memory: 5Gi}}
  - {name: b, location: {region: r1, zone: z1}, capacity: {cpu: '4', memory: 2Gi}}
  - {name: c, location: {region: r0, zone: z2}, capacity: {cpu: '4', memory: 1Gi}}
workloads:
  - name: w
    replicas: 11
    resources: {cpu: 500m, memory: 256Mi}
    spreadConstraints:
      - {topologyKey: region, maxSkew: 0}
      - {topologyKey: zone, minGroups: 3}
    replicaScheduling: {type: Divided, division: Weighted}
";
    let plan = check(yaml, "default/w PartiallyScheduled a=4 b=5 c=1");
    assert!(plan.placements[0].message.ends_with("Placed 10/11 replicas."), "{}", plan.placements[0].message);
}

#[test]
fn cluster_affinities_fall_back_by_capacity() {
    let fleet = "
clusters:
  - {name: primary, labels: {tier: primary}, capacity: {cpu: '4'}}
  - {name: secondary, labels: {tier: secondary}, capacity: {cpu: '40'}}
";
    let groups = "clusterAffinities: [{name: first, labelSelector: {matchLabels: {tier: primary}}}, {name: second, labelSelector: {matchLabels: {tier: secondary}}}]";
    check(
        &with(fleet, &format!("  - {{name: w, replicas: 4, resources: {{cpu: '1'}}, {groups}}}")),
        "default/w Scheduled primary=4 group=first",
    );
    check(
        &with(fleet, &format!("  - {{name: w, replicas: 5, resources: {{cpu: '1'}}, {groups}}}")),
        "default/w Scheduled secondary=5 group=second",
    );
    let plan = check(
        &with(fleet, &format!("  - {{name: w, replicas: 50, resources: {{cpu: '1'}}, {groups}}}")),
        "default/w PartiallyScheduled secondary=40 group=second",
    );
    assert!(
        plan.placements[0]
            .message
            .starts_with("no cluster affinity group could hold all replicas; using group \"second\"")
    );
}

#[test]
fn higher_priority_wins_contention_and_ties_are_by_name() {
    let fleet = "
clusters:
  - {name: a, capacity: {cpu: '4'}}
";
    check(
        &with(
            fleet,
            "  - {name: low, replicas: 4, resources: {cpu: '1'}}\n  - {name: high, replicas: 3, priority: 5, resources: {cpu: '1'}}",
        ),
        "default/high Scheduled a=3\ndefault/low PartiallyScheduled a=1",
    );
    check(
        &with(
            fleet,
            "  - {name: zed, replicas: 3, resources: {cpu: '1'}}\n  - {name: abe, replicas: 3, resources: {cpu: '1'}}",
        ),
        "default/abe Scheduled a=3\ndefault/zed PartiallyScheduled a=1",
    );
}

#[test]
fn explanations_are_kubernetes_style() {
    let yaml = "
clusters:
  - {name: a, labels: {gpu: 'yes'}, capacity: {nvidia.com/gpu: '1'}}
  - {name: b, labels: {gpu: 'yes'}, capacity: {nvidia.com/gpu: '8'}, taints: [{key: maintenance, value: 'true', effect: NoSchedule}]}
  - {name: c, capacity: {nvidia.com/gpu: '8'}}
workloads:
  - {name: train, replicas: 1, resources: {nvidia.com/gpu: '4'}, clusterAffinity: {labelSelector: {matchLabels: {gpu: 'yes'}}}}
";
    let plan = check(yaml, "default/train Unschedulable");
    let p = &plan.placements[0];
    assert_eq!(
        p.message,
        "0/3 clusters are available: 1 did not match cluster affinity, 1 had insufficient nvidia.com/gpu, 1 had untolerated taint {maintenance=true:NoSchedule}."
    );
    let counts: Vec<(String, u32)> = p.unavailable.iter().map(|c| (c.reason.phrase(), c.clusters)).collect();
    assert_eq!(
        counts,
        [
            ("did not match cluster affinity".to_string(), 1),
            ("had untolerated taint {maintenance=true:NoSchedule}".to_string(), 1),
            ("had insufficient nvidia.com/gpu".to_string(), 1)
        ]
    );
    let input = parse(yaml);
    let rejections = tmc_core::cluster_rejections(&input, &p.workload).unwrap().unwrap();
    let by_cluster: Vec<(&str, Vec<String>)> =
        rejections.iter().map(|r| (r.cluster.as_str(), r.reasons.iter().map(|x| x.phrase()).collect())).collect();
    assert_eq!(
        by_cluster,
        [
            ("a", vec!["had insufficient nvidia.com/gpu".to_string()]),
            ("b", vec!["had untolerated taint {maintenance=true:NoSchedule}".to_string()]),
            ("c", vec!["did not match cluster affinity".to_string()]),
        ]
    );
    let unknown = tmc_core::WorkloadKey::new("default", "nope");
    assert_eq!(tmc_core::cluster_rejections(&input, &unknown).unwrap(), None);
}

#[test]
fn unchanged_input_with_previous_moves_nothing() {
    let yaml = with(
        THREE,
        "  - {name: w, replicas: 5, resources: {cpu: '1'}}\n  - {name: d, replicas: 2, replicaScheduling: {type: Duplicated}, numberOfClusters: 2}",
    );
    let first = solve_yaml(&yaml);
    let mut input: PlacementInput = serde_saphyr::from_str(&yaml).unwrap();
    input.previous = first.placements.clone();
    let second = solve(&input).unwrap();
    assert_eq!(render(&first), render(&second));
    // A previous decision on a cluster that became not ready moves; the rest stays.
    input.clusters[0].ready = false;
    let third = solve(&input).unwrap();
    for p in &third.placements {
        assert!(p.decisions.iter().all(|d| d.cluster != "a"), "{p:?}");
    }
}

#[test]
fn a_spread_pinned_by_max_groups_tries_other_first_groups() {
    // The largest cluster comes first for Aggregated, but its zone has no second provider: with
    // one zone allowed, the selection must start from the zone that has both.
    let yaml = "
clusters:
  - {name: big, location: {provider: aws, zone: z1}, capacity: {cpu: 8}}
  - {name: mid, location: {provider: aws, zone: z4}, capacity: {cpu: 4}}
  - {name: small, location: {provider: gcp, zone: z4}, capacity: {cpu: 2}}
workloads:
  - name: w
    replicas: 4
    resources: {cpu: 1}
    spreadConstraints: [{topologyKey: provider, minGroups: 2}, {topologyKey: zone, maxGroups: 1}]
    replicaScheduling: {type: Divided, division: Aggregated}
";
    check(yaml, "default/w Scheduled mid=3 small=1");
}

#[test]
fn a_spread_that_runs_out_of_clusters_tries_other_first_groups() {
    // Two clusters must cover two zones and two regions: a then b covers one region only, and
    // no cluster pairs with a; b and c cover both.
    let yaml = "
clusters:
  - {name: a, location: {region: r1, zone: z1}, capacity: {cpu: '4'}}
  - {name: b, location: {region: r1, zone: z2}, capacity: {cpu: '4'}}
  - {name: c, location: {region: r2, zone: z1}, capacity: {cpu: '4'}}
workloads:
  - name: w
    replicas: 1
    resources: {cpu: '1'}
    numberOfClusters: 2
    replicaScheduling: {type: Duplicated}
    spreadConstraints: [{topologyKey: zone, minGroups: 2}, {topologyKey: region, minGroups: 2}]
";
    check(yaml, "default/w Scheduled b=1 c=1");
}

/// Solves `yaml`, then solves it again with that plan as `previous`: nothing fully placed moves,
/// and nothing partly placed loses replicas.
#[track_caller]
fn assert_plan_is_stable(yaml: &str) {
    let first = solve_yaml(yaml);
    let mut input = parse(yaml);
    input.previous = first.placements.iter().filter(|p| !p.decisions.is_empty()).cloned().collect();
    let second = solve(&input).unwrap_or_else(|e| panic!("invalid test input: {e}"));
    for (a, b) in first.placements.iter().zip(&second.placements) {
        if a.phase == Phase::Scheduled {
            assert_eq!(a.decisions, b.decisions, "{} moved: {}\n--- input ---\n{yaml}", a.workload, b.message);
        }
        for d in &a.decisions {
            let now = b.decisions.iter().find(|x| x.cluster == d.cluster).map_or(0, |x| x.replicas);
            assert!(now >= d.replicas, "{} lost replicas on {}\n--- input ---\n{yaml}", a.workload, d.cluster);
        }
    }
}

// Plans the property test `unchanged_input_resolved_with_previous_moves_nothing` found unstable,
// shrunk. Each names what the next solve did before the fix.

#[test]
fn stable_when_a_spread_fails_greedily_on_an_empty_fleet() {
    // w04 (a preemptor) was Unschedulable on the empty fleet (the greedy selection pinned the
    // wrong zone); the next solve preempted w00 and w01 to place it.
    assert_plan_is_stable(
        "
clusters:
  - {name: c01, location: {provider: aws, zone: z2}, capacity: {cpu: 3162m, memory: 3Gi, nvidia.com/gpu: 3}}
  - {name: c03, location: {provider: aws, region: eu, zone: z4}, capacity: {cpu: 4269m, memory: 4Gi}}
  - {name: c04, location: {provider: aws, region: eu, zone: z1}, capacity: {cpu: 8201m, memory: 6Gi}}
  - {name: c07, location: {provider: gcp, zone: z4}, capacity: {cpu: 1824m, memory: 2Gi, nvidia.com/gpu: 1}}
workloads:
  - {name: w00, replicas: 6, resources: {cpu: 949m}, spreadConstraints: [{topologyKey: region}], replicaScheduling: {type: Divided, division: Weighted}}
  - {name: w01, replicas: 4, resources: {cpu: 402m, memory: 768Mi, nvidia.com/gpu: 1}, replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w04, replicas: 4, resources: {cpu: 1339m, memory: 1280Mi}, spreadConstraints: [{topologyKey: provider, minGroups: 2}, {topologyKey: zone, maxGroups: 1}], replicaScheduling: {type: Divided, division: Aggregated, minReplicasPerCluster: 0, maxReplicasPerCluster: 5}, preferences: [{weight: 86, labelSelector: {matchExpressions: [{key: tier, operator: In, values: [prod, dev]}]}}], priority: 1, preemption: PreemptLowerPriority, rebalance: {policy: OnRecovery}}
",
    );
}

#[test]
fn stable_when_a_preemptor_places_more_on_a_fuller_fleet() {
    // w00 got 5 replicas on the empty fleet; with the lower-priority w01 and w02 in place, the
    // skew repair reached 7, so the next solve preempted them. Preemption now takes back at most
    // what the preemptor gets with every later workload gone.
    assert_plan_is_stable(
        "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '4', memory: 5Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '4', memory: 2Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '4', memory: 1Gi}}
workloads:
  - {name: w00, replicas: 11, resources: {cpu: 500m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 1}, {topologyKey: zone, minGroups: 3, maxSkew: 1}], replicaScheduling: {type: Divided, division: Weighted}, preemption: PreemptLowerPriority}
  - {name: w01, replicas: 1, resources: {cpu: 250m, memory: 512Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w02, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w03, replicas: 1, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w04, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: zone, maxGroups: 1}], replicaScheduling: {type: Duplicated}}
  - {name: w05, replicas: 4, resources: {cpu: 750m, memory: 512Mi}, clusterAffinity: {clusterNames: [c01]}, replicaScheduling: {type: Divided, division: Dynamic}, priority: -1}
  - {name: w06, replicas: 4, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w07, replicas: 3, resources: {cpu: '1', memory: 256Mi}, replicaScheduling: {type: Divided, division: Dynamic, maxReplicasPerCluster: 3}, priority: 1}
",
    );
}

#[test]
fn stable_when_extending_a_fresh_placement_places_more() {
    // Placed from scratch, w02's zone skew 0 dropped the short c02 and left 3 + 3; kept and
    // extended on the next solve it reached 4 + 4 by preempting w00's copy on c00. A fresh
    // placement is now extended until it stops growing: 8 at once, and w00 leaves c00 alone.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '2', memory: 3Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '2', memory: 4Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '2', memory: 2Gi}}
workloads:
  - {name: w00, replicas: 2, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w01, replicas: 1, resources: {cpu: 750m, memory: 512Mi}, replicaScheduling: {type: Divided, division: Aggregated}, priority: 2}
  - {name: w02, replicas: 9, resources: {cpu: 250m, memory: 768Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2, preemption: PreemptLowerPriority}
";
    assert_plan_is_stable(yaml);
    check(
        yaml,
        "default/w00 Scheduled c01=2 c02=2\ndefault/w01 Scheduled c02=1\ndefault/w02 PartiallyScheduled c00=4 c01=4",
    );
    // The extension must be the next solve's: from its previous decision, which the Steady
    // prioritizer favours. Extended without that, w00 stayed at c02=1 c03=1; the next solve
    // reached 2 + 2 by preempting w01 on c03.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '3', memory: 3Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '7', memory: 3Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '2', memory: 1Gi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '3', memory: 5Gi}}
workloads:
  - {name: w00, replicas: 7, resources: {cpu: '1', memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 2}, priority: 1, preemption: PreemptLowerPriority}
  - {name: w01, replicas: 6, resources: {cpu: 750m, memory: 256Mi}, replicaScheduling: {type: Divided, division: Aggregated}}
  - {name: w02, replicas: 10, resources: {cpu: 250m, memory: 256Mi}, clusterAffinity: {clusterNames: [c01]}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 1}
";
    assert_plan_is_stable(yaml);
    check(
        yaml,
        "default/w00 PartiallyScheduled c02=2 c03=2\ndefault/w01 Scheduled c00=4 c01=2\ndefault/w02 Scheduled c01=10",
    );
}

#[test]
fn stable_when_moves_free_room_a_preemptor_reaches_by_preempting() {
    // w05 moved off c04 to make room for w01; w08 (a preemptor, skew 0 over regions and zones)
    // could then grow to 2 + 2 only by displacing w00's copy on c02, and the next solve did so
    // (w00 had meanwhile grown onto c04 too). The improvement step now preempts as the next
    // solve would, and reports no eviction: nothing ran.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '2', memory: 5Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '4', memory: 2Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '7', memory: 2Gi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '4', memory: 3Gi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '6', memory: 3Gi}}
workloads:
  - {name: w00, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w01, replicas: 2, resources: {cpu: 750m, memory: 256Mi}, clusterAffinity: {clusterNames: [c04]}, replicaScheduling: {type: Divided, division: Dynamic}, priority: 1}
  - {name: w02, replicas: 8, resources: {cpu: 500m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w03, replicas: 1, resources: {cpu: 250m, memory: 512Mi}, replicaScheduling: {type: Duplicated}, priority: 1}
  - {name: w04, replicas: 1, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w05, replicas: 6, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w06, replicas: 4, resources: {cpu: '1', memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w07, replicas: 10, resources: {cpu: 500m, memory: 512Mi}, spreadConstraints: [{topologyKey: region, minGroups: 1, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w08, replicas: 8, resources: {cpu: 500m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 3}, priority: 1, preemption: PreemptLowerPriority}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let w08 = plan.placements.iter().find(|p| p.workload.0 == "default/w08").map(|p| p.decisions.clone());
    assert_eq!(
        format!("{w08:?}"),
        r#"Some([Decision { cluster: "c02", replicas: 2 }, Decision { cluster: "c04", replicas: 2 }])"#
    );
    let w00 = plan.placements.iter().find(|p| p.workload.0 == "default/w00").map(|p| p.message.clone());
    // Nothing runs yet, so nothing is evicted: w00 is short for room, and neither message says
    // otherwise.
    assert!(w00.is_some_and(|m| m.contains("insufficient") && !m.contains("preempt")));
    assert!(plan.placements.iter().all(|p| !p.message.contains("preempt")));
}

#[test]
fn stable_when_the_improvement_step_leaves_a_preemptor_short() {
    // Moving w01 out of w03's way left it short next to the lower-priority w02; the next solve
    // preempted w02.
    assert_plan_is_stable(
        "
clusters:
  - {name: c00, labels: {env: prod}, location: {region: us}, capabilities: [gpu], capacity: {cpu: 5769m, memory: 11Gi}}
  - {name: c01, location: {region: us}, capacity: {cpu: 15408m, memory: 6Gi}, allocated: {cpu: 2773m}}
workloads:
  - {name: w01, replicas: 4, resources: {cpu: 710m, memory: 1280Mi}, spreadConstraints: [{topologyKey: region, minGroups: 1}], replicaScheduling: {type: Divided, division: Dynamic}, prioritizers: [{name: MostAllocated, weight: 1}], preemption: PreemptLowerPriority}
  - {name: w02, replicas: 2, resources: {memory: 768Mi}, replicaScheduling: {type: Divided, division: Dynamic}, priority: -1}
  - {name: w03, replicas: 7, resources: {memory: 1536Mi}, spreadConstraints: [{topologyKey: env}], replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w04, replicas: 2, resources: {memory: 768Mi}, spreadConstraints: [{topologyKey: env}], replicaScheduling: {type: Divided, division: Weighted, weights: [{clusterNames: [c00], weight: 0}]}}
",
    );
}

#[test]
fn stable_when_a_duplicated_workload_could_take_a_freed_cluster() {
    // w01 moved away from c03; w02 (Duplicated on every cluster with room) took c03 only on the
    // next solve.
    assert_plan_is_stable(
        "
clusters:
  - {name: c01, capabilities: [gpu], capacity: {cpu: 6382m, memory: 0}}
  - {name: c03, labels: {env: dev}, location: {provider: aws, region: ap}, capabilities: [gpu], capacity: {cpu: 5136m, memory: 1Gi}, allocated: {cpu: 616m}}
workloads:
  - {name: w01, replicas: 1, resources: {cpu: 3009m}, replicaScheduling: {type: Divided, division: Weighted, weights: [{labelSelector: {}, weight: 1}]}, preferences: [{weight: 1, labelSelector: {matchLabels: {env: dev}}}], prioritizers: [{name: MostAllocated, weight: 0}]}
  - {name: w02, replicas: 2, resources: {cpu: 378m}, replicaScheduling: {type: Duplicated, division: Weighted}, priority: -1}
  - {name: w05, replicas: 2, resources: {cpu: 756m}, clusterAffinity: {clusterNames: [c03]}, replicaScheduling: {type: Divided, division: Weighted}}
",
    );
}

#[test]
fn stable_when_freed_room_takes_a_duplicated_copy_a_guard_kept_out() {
    // w01 traded for w05's second replica on c02; w00 (Duplicated on every cluster with room)
    // did not grow into the room left there, since w03 (a short preemptor of higher priority)
    // guarded c02; the next solve extended w00 to c02 all the same.
    assert_plan_is_stable(
        "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '1', memory: 1Gi}}
  - {name: c01, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '1', memory: 1Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '3', memory: 2Gi}}
workloads:
  - {name: w00, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w01, replicas: 3, resources: {cpu: 250m, memory: 256Mi}, clusterAffinity: {clusterNames: [c02]}}
  - {name: w02, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}, numberOfClusters: 1}
  - {name: w03, replicas: 2, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Duplicated}, preemption: PreemptLowerPriority}
  - {name: w05, replicas: 2, resources: {cpu: 250m, memory: 1Gi}, clusterAffinity: {clusterNames: [c02]}, priority: 1}
  - {name: w06, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w07, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {division: Aggregated}}
",
    );
}

#[test]
fn stable_when_a_move_changes_a_rebalancing_workloads_target() {
    // w00 moved to c01 after w02 (rebalance Always) was placed against it; the next solve
    // rebalanced w02.
    assert_plan_is_stable(
        "
clusters:
  - {name: c00, apiResources: [deployments.apps/v1], capacity: {cpu: 5836m, memory: 2Gi}}
  - {name: c01, capacity: {cpu: 4542m, memory: 12Gi}, taints: [{key: maintenance, effect: PreferNoSchedule}]}
  - {name: c02, capabilities: [gpu], apiResources: [deployments.apps/v1], capacity: {cpu: 13507m, memory: 14Gi}}
workloads:
  - {name: w00, replicas: 7, resources: {memory: 1536Mi}, replicaScheduling: {type: Divided, division: Aggregated}}
  - {name: w02, replicas: 2, resources: {memory: 256Mi}, replicaScheduling: {type: Divided, division: Dynamic}, rebalance: {policy: Always}}
  - {name: w04, replicas: 3, resources: {memory: 1280Mi}, clusterAffinity: {exclude: [c01]}, replicaScheduling: {type: Duplicated, division: Weighted}}
",
    );
}

#[test]
fn scale_down_trims_the_least_preferred_and_scale_up_extends() {
    let base = "
clusters:
  - {name: a, labels: {tier: gold}, capacity: {cpu: '100'}}
  - {name: b, capacity: {cpu: '100'}}
workloads:
  - {name: w, replicas: REPLICAS, resources: {cpu: '1'}, preferences: [{weight: 50, labelSelector: {matchLabels: {tier: gold}}}]}
previous:
  - {workload: default/w, decisions: [{cluster: a, replicas: 3}, {cluster: b, replicas: 3}]}
";
    check(&base.replace("REPLICAS", "4"), "default/w Scheduled a=3 b=1");
    check(&base.replace("REPLICAS", "2"), "default/w Scheduled a=2");
    let plan = check(&base.replace("REPLICAS", "10"), "default/w Scheduled a=5 b=5");
    assert!(plan.placements[0].message.is_empty());
}

#[test]
fn rebalance_moves_back_per_policy_and_budget() {
    let fleet = "
clusters:
  - {name: a, labels: {tier: gold}, capacity: {cpu: '10'}}
  - {name: b, capacity: {cpu: '10'}}
previous:
  - {workload: default/w, decisions: [{cluster: b, replicas: 4}]}
workloads:
";
    let w = |rebalance: &str| {
        format!(
            "{fleet}  - {{name: w, replicas: 4, resources: {{cpu: '1'}}, replicaScheduling: {{division: Aggregated}}, preferences: [{{weight: 50, labelSelector: {{matchLabels: {{tier: gold}}}}}}], rebalance: {rebalance}}}"
        )
    };
    check(&w("{policy: Never}"), "default/w Scheduled b=4");
    let plan = check(&w("{policy: OnRecovery}"), "default/w Scheduled a=4");
    assert_eq!(plan.placements[0].message, "rebalanced: 4 replicas moved.");
    // A budget of 2 moves per round: half now, the rest next round.
    let input: PlacementInput = serde_saphyr::from_str(&w("{policy: OnRecovery, maxMovesPerRound: 2}")).unwrap();
    let round1 = solve(&input).unwrap();
    assert_eq!(render(&round1), "default/w Scheduled a=2 b=2");
    assert_eq!(round1.placements[0].rebalance_pending, 2);
    let round2 = solve(&PlacementInput { previous: round1.placements.clone(), ..input.clone() }).unwrap();
    assert_eq!(render(&round2), "default/w Scheduled a=4");
    let round3 = solve(&PlacementInput { previous: round2.placements.clone(), ..input }).unwrap();
    assert_eq!(render(&round3), "default/w Scheduled a=4", "settled: nothing moves once the ideal is reached");
}

#[test]
fn rebalance_returns_to_the_primary_affinity_group() {
    let yaml = |policy: &str| {
        format!(
            "
clusters:
  - {{name: primary, labels: {{tier: primary}}, capacity: {{cpu: '10'}}}}
  - {{name: secondary, labels: {{tier: secondary}}, capacity: {{cpu: '10'}}}}
workloads:
  - name: w
    replicas: 3
    resources: {{cpu: '1'}}
    clusterAffinities:
      - {{name: first, labelSelector: {{matchLabels: {{tier: primary}}}}}}
      - {{name: second, labelSelector: {{matchLabels: {{tier: secondary}}}}}}
    rebalance: {{policy: {policy}}}
previous:
  - {{workload: default/w, affinityGroup: second, decisions: [{{cluster: secondary, replicas: 3}}]}}
"
        )
    };
    check(&yaml("Never"), "default/w Scheduled secondary=3 group=second");
    check(&yaml("OnRecovery"), "default/w Scheduled primary=3 group=first");
}

#[test]
fn preemption_displaces_the_fewest_lower_priority_replicas() {
    let yaml = |preemption: &str| {
        format!(
            "
clusters:
  - {{name: a, capacity: {{cpu: '4'}}}}
workloads:
  - {{name: batch, replicas: 4, priority: 0, resources: {{cpu: '1'}}}}
  - {{name: web, replicas: 2, priority: 10, resources: {{cpu: '1'}}, preemption: {preemption}}}
previous:
  - {{workload: default/batch, decisions: [{{cluster: a, replicas: 4}}]}}
"
        )
    };
    check(&yaml("Never"), "default/batch Scheduled a=4\ndefault/web Unschedulable");
    let plan = check(&yaml("PreemptLowerPriority"), "default/batch PartiallyScheduled a=2\ndefault/web Scheduled a=2");
    assert_eq!(plan.placements[1].message, "preempted 2 replicas of default/batch on a.");
    assert!(
        plan.placements[0].message.ends_with("2 replicas on a preempted by default/web."),
        "{}",
        plan.placements[0].message
    );
}

#[test]
fn preempted_replicas_are_replaced_elsewhere_when_possible() {
    let yaml = "
clusters:
  - {name: a, labels: {zone: one}, capacity: {cpu: '4'}}
  - {name: b, capacity: {cpu: '4'}}
workloads:
  - {name: batch, replicas: 4, resources: {cpu: '1'}}
  - {name: web, replicas: 2, priority: 10, resources: {cpu: '1'}, preemption: PreemptLowerPriority, clusterAffinity: {labelSelector: {matchLabels: {zone: one}}}}
previous:
  - {workload: default/batch, decisions: [{cluster: a, replicas: 4}]}
";
    check(yaml, "default/batch Scheduled a=2 b=2\ndefault/web Scheduled a=2");
}

#[test]
fn only_replicas_on_a_failed_cluster_move() {
    let yaml = "
clusters:
  - {name: a, capacity: {cpu: '10'}}
  - {name: b, capacity: {cpu: '10'}}
  - {name: c, capacity: {cpu: '10'}, ready: false}
  - {name: d, capacity: {cpu: '10'}}
workloads:
  - {name: web, replicas: 6, resources: {cpu: '1'}}
  - {name: agent, replicas: 1, replicaScheduling: {type: Duplicated}}
previous:
  - {workload: default/web, decisions: [{cluster: a, replicas: 2}, {cluster: b, replicas: 2}, {cluster: c, replicas: 2}]}
  - {workload: default/agent, decisions: [{cluster: a, replicas: 1}, {cluster: b, replicas: 1}, {cluster: c, replicas: 1}]}
";
    let plan = solve_yaml(yaml);
    let web = &plan.placements[1];
    let on = |cluster: &str| web.decisions.iter().find(|d| d.cluster == cluster).map_or(0, |d| d.replicas);
    assert!(on("a") >= 2 && on("b") >= 2 && on("c") == 0, "{web:?}");
    assert_eq!(web.placed, 6);
    // The Duplicated agent keeps its healthy copies and extends to d.
    assert_eq!(render(&plan).lines().next(), Some("default/agent Scheduled a=1 b=1 d=1"));
}

#[test]
fn preemption_never_leaves_a_victim_below_its_minimum_per_cluster() {
    let yaml = "
clusters: [{name: c0, capacity: {cpu: '4'}}, {name: c1, capacity: {cpu: '4'}}]
workloads:
  - {name: low, replicas: 4, resources: {cpu: '1'}, replicaScheduling: {minReplicasPerCluster: 2}}
  - {name: high, priority: 1, preemption: PreemptLowerPriority, replicas: 3, resources: {cpu: '1'}, clusterAffinity: {clusterNames: [c0]}}
previous: [{workload: default/low, decisions: [{cluster: c0, replicas: 2}, {cluster: c1, replicas: 2}]}]
";
    let plan = solve_yaml(yaml);
    let low = &plan.placements[1];
    assert!(low.decisions.iter().all(|d| d.replicas >= 2), "{low:?}");
    assert!(!low.message.contains("internal"), "{}", low.message);
    assert_eq!(render(&plan).lines().next(), Some("default/high Scheduled c0=3"));
}

#[test]
fn cluster_scores_rank_the_clusters_the_workload_may_use() {
    let yaml = "
clusters:
  - {name: a, labels: {tier: gold}, capacity: {cpu: '10'}}
  - {name: b, capacity: {cpu: '10'}}
  - {name: c, labels: {tier: none}, capacity: {cpu: '10'}, unschedulable: true}
workloads:
  - {name: w, replicas: 1, resources: {cpu: '1'}, prioritizers: [{name: Cost, weight: 1}], preferences: [{weight: 40, labelSelector: {matchLabels: {tier: gold}}}], clusterAffinity: {exclude: [c]}}
";
    let input: PlacementInput = serde_saphyr::from_str(yaml).unwrap();
    let plan = solve(&input).unwrap();
    let key = tmc_core::WorkloadKey::new("default", "w");
    let scores = tmc_core::cluster_scores(&input, &plan, &key).unwrap();
    // No costs: Cost gives 0 everywhere, so only the preference separates a and b; c is excluded.
    assert_eq!(scores, vec![("a".to_string(), 40), ("b".to_string(), 0)]);
    assert!(tmc_core::cluster_scores(&input, &plan, &tmc_core::WorkloadKey::new("x", "y")).is_none());
}

/// Room is made by moving single replicas of fresh workloads to other clusters they admit, when
/// taking whole blockers out cannot do it: four blocker trials free four of the five replicas
/// `pinned` needs on `a`; one replica of `e` moving to `b` frees the fifth. Nobody loses a
/// replica, and the moved workload says why it moved.
#[test]
fn single_replicas_move_to_make_room() {
    let two = "
clusters:
  - {name: a, capacity: {cpu: '10'}}
  - {name: b, capacity: {cpu: '10'}}
";
    let mut workloads: String = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| format!("  - {{name: {n}, priority: 10, replicas: 2, resources: {{cpu: '1'}}}}\n"))
        .collect();
    workloads.push_str("  - {name: pinned, replicas: 10, resources: {cpu: '1'}, clusterAffinity: {clusterNames: [a]}}");
    let plan = check(
        &with(two, &workloads),
        "default/a Scheduled b=2
         default/b Scheduled b=2
         default/c Scheduled b=2
         default/d Scheduled b=2
         default/e Scheduled b=2
         default/pinned Scheduled a=10",
    );
    let e = &plan.placements[4];
    assert!(e.message.contains("replicas moved to make room for default/pinned"), "{}", e.message);
}

/// A trade takes out the blockers that free the room the workload is short of, not those with
/// the most replicas: `pinned` needs one replica's memory on `a` (and one on `c`, another zone)
/// and is placed last. The four `light` workloads hold more replicas on `a`, but taking them
/// out frees too little and loses their higher-priority replicas; `heavy` frees the memory of two
/// `pinned` replicas and has room on `b`. (Single moves cannot start `pinned`: it needs two
/// zones at once.)
#[test]
fn a_trade_takes_out_the_blockers_that_free_the_short_resource() {
    let fleet = "
clusters:
  - {name: a, labels: {fast: 'yes'}, location: {zone: z1}, capacity: {cpu: '100', memory: '10'}}
  - {name: b, location: {zone: z1}, capacity: {cpu: '100', memory: '100'}}
  - {name: c, location: {zone: z2}, capacity: {cpu: '100', memory: '100'}}
";
    let mut workloads = String::from(
        "  - {name: heavy, priority: 10, replicas: 1, resources: {memory: '6'}, clusterAffinity: {clusterNames: [a, b]}, numberOfClusters: 1, preferences: [{weight: 100, labelSelector: {matchLabels: {fast: 'yes'}}}]}\n",
    );
    for n in 1..=4 {
        workloads.push_str(&format!(
            "  - {{name: light-{n}, priority: 10, replicas: 2, resources: {{memory: 500m}}, clusterAffinity: {{clusterNames: [a]}}}}\n"
        ));
    }
    workloads.push_str(
        "  - {name: pinned, replicas: 2, resources: {memory: '3'}, clusterAffinity: {clusterNames: [a, c]}, spreadConstraints: [{topologyKey: zone, minGroups: 2}]}",
    );
    let plan = check(
        &with(fleet, &workloads),
        "default/heavy Scheduled b=1
         default/light-1 Scheduled a=2
         default/light-2 Scheduled a=2
         default/light-3 Scheduled a=2
         default/light-4 Scheduled a=2
         default/pinned Scheduled a=1 c=1",
    );
    assert!(
        plan.placements[0].message.contains("moved to make room for default/pinned"),
        "{}",
        plan.placements[0].message
    );
    assert_plan_is_stable(&with(fleet, &workloads));
}

/// Two clusters with 4 cpu and 4 memory each, for the exchange tests.
const TWO_SQUARE: &str = "
clusters:
  - {name: a, capacity: {cpu: '4', memory: '4'}}
  - {name: b, capacity: {cpu: '4', memory: '4'}}
";

/// Clusters full of one resource trade units: `cpu-heavy` on `a` and `mem-heavy` on `b` swap
/// one replica each, which frees the CPU `pinned` needs on `a`. Moving either alone does not fit,
/// and taking either out loses one of its higher-priority replicas.
#[test]
fn units_are_exchanged_between_clusters_short_of_different_resources() {
    let workloads = "  - {name: cpu-heavy, priority: 10, replicas: 2, resources: {cpu: '2', memory: '1'}}
  - {name: mem-heavy, priority: 10, replicas: 2, resources: {cpu: '1', memory: '2'}}
  - {name: pinned, replicas: 1, resources: {cpu: '2'}, clusterAffinity: {clusterNames: [a]}}";
    check(
        &with(TWO_SQUARE, workloads),
        "default/cpu-heavy Scheduled b=2
         default/mem-heavy Scheduled a=2
         default/pinned Scheduled a=1",
    );
}

/// An exchange moves only units that may move under their division: a Weighted workload keeps
/// the split its weights give (here 1:1), so the exchange above cannot happen and `pinned` finds
/// no room. (An exchange once moved a Weighted replica onto a cluster of weight 0; exact mode
/// caught it with a better-than-optimal fast plan.)
#[test]
fn an_exchange_never_moves_a_weighted_replica() {
    let workloads = "  - {name: cpu-heavy, priority: 10, replicas: 2, resources: {cpu: '2', memory: '1'}}
  - {name: mem-heavy, priority: 10, replicas: 2, resources: {cpu: '1', memory: '2'}, replicaScheduling: {type: Divided, division: Weighted}}
  - {name: pinned, replicas: 1, resources: {cpu: '2'}, clusterAffinity: {clusterNames: [a]}}";
    check(
        &with(TWO_SQUARE, workloads),
        "default/cpu-heavy Scheduled a=1 b=1
         default/mem-heavy Scheduled a=1 b=1
         default/pinned Unschedulable",
    );
}

/// Under `maxGroups`, a workload that the groups of its preferred clusters cannot hold goes
/// where it places more: `a` is preferred but holds 2 of 9, `b` (another zone) holds 7.
#[test]
fn max_groups_picks_the_groups_that_hold_more_when_the_preferred_ones_cannot_hold_all() {
    let two = "
clusters:
  - {name: a, labels: {fast: 'yes'}, location: {zone: z1}, capacity: {cpu: '2'}}
  - {name: b, location: {zone: z2}, capacity: {cpu: '7'}}
";
    let w = "  - {name: w, replicas: 9, resources: {cpu: '1'}, spreadConstraints: [{topologyKey: zone, maxGroups: 1}], preferences: [{weight: 100, labelSelector: {matchLabels: {fast: 'yes'}}}]}";
    check(&with(two, w), "default/w PartiallyScheduled b=7");
    // When the preferred group holds everything, the preference decides.
    let w = "  - {name: w, replicas: 2, resources: {cpu: '1'}, spreadConstraints: [{topologyKey: zone, maxGroups: 1}], preferences: [{weight: 100, labelSelector: {matchLabels: {fast: 'yes'}}}]}";
    check(&with(two, w), "default/w Scheduled a=2");
}

#[test]
fn stable_when_a_short_workload_extends_on_the_fuller_fleet() {
    // w06 (skew 0 over regions and zones) stopped at 4 + 4 when it was placed; on the fleet the
    // later workloads filled, the next solve extended it by one on c04 and c05, and w08 (a
    // preemptor placed after it) could then reach 6 by preempting lower-priority replicas.
    // Placing is not monotone in free capacity, so the last pass of the improvement step checks
    // every incomplete workload, not only those next to room the moves freed.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '2', memory: 5Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '4', memory: 4Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '7', memory: 3Gi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '1', memory: 1Gi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '2', memory: 4Gi}}
  - {name: c05, location: {provider: aws, region: r1, zone: z2}, capacity: {cpu: '4', memory: 6Gi}}
workloads:
  - {name: w00, replicas: 1, resources: {cpu: 250m, memory: 512Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w01, replicas: 1, resources: {cpu: 250m, memory: 768Mi}, clusterAffinity: {clusterNames: [c00]}, replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w02, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, clusterAffinity: {clusterNames: [c00]}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}}
  - {name: w03, replicas: 4, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Divided, division: Weighted}}
  - {name: w04, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w05, replicas: 12, resources: {cpu: 250m, memory: 512Mi}, replicaScheduling: {type: Divided, division: Dynamic}, priority: 2}
  - {name: w06, replicas: 11, resources: {cpu: 500m, memory: 512Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w07, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w08, replicas: 8, resources: {cpu: 750m, memory: 768Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 1, preemption: PreemptLowerPriority}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let decisions = |name: &str| {
        let p = plan.placements.iter().find(|p| p.workload.0 == format!("default/{name}"));
        p.map(|p| p.decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(decisions("w06").as_deref(), Some("c01=4 c02=4 c04=1 c05=1"));
    assert_eq!(decisions("w08").as_deref(), Some("c00=2 c01=1 c04=1 c05=2"));
}

#[test]
fn stable_when_a_short_workload_extends_its_own_decision_differently() {
    // w08 (skew 0 over regions and zones, at most 2 per cluster) was placed 2 + 1 + 1 + 2; the
    // next solve, extending it as its previous decision (which the Steady prioritizer favours),
    // reached 2 + 2 + 2 + 2, and w06 (a preemptor) then preempted w00 on c01. The last pass of
    // the improvement step extended it as a fresh workload and found nothing; it now extends
    // every workload as the next solve sees it.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '5', memory: 8192Mi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '2', memory: 1024Mi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '8', memory: 5120Mi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '5', memory: 5120Mi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '6', memory: 6144Mi}}
  - {name: c05, location: {provider: aws, region: r1, zone: z2}, capacity: {cpu: '2', memory: 3072Mi}}
workloads:
  - {name: w00, replicas: 4, resources: {cpu: '1', memory: 512Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: -1}
  - {name: w01, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: env}], replicaScheduling: {type: Duplicated}}
  - {name: w02, replicas: 5, resources: {cpu: 750m, memory: 768Mi}, replicaScheduling: {type: Duplicated}}
  - {name: w03, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: env}], replicaScheduling: {type: Duplicated}}
  - {name: w04, replicas: 8, resources: {cpu: 250m, memory: 512Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 1}
  - {name: w05, replicas: 1, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Divided, division: Aggregated}}
  - {name: w06, replicas: 5, resources: {cpu: '1', memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 1}, priority: 1, preemption: PreemptLowerPriority}
  - {name: w07, replicas: 6, resources: {cpu: 500m, memory: 512Mi}, replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w08, replicas: 10, resources: {cpu: 500m, memory: 1024Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 2}, priority: 2}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let w08 = plan.placements.iter().find(|p| p.workload.0 == "default/w08");
    assert_eq!(w08.map(|p| p.decisions.iter().map(|d| d.replicas).sum::<u32>()), Some(8));
}

#[test]
fn stable_when_a_preemptor_extends_before_it_preempts() {
    // w02 (a preemptor, skew 0 over regions and zones) had 2 + 2 when the last pass preempted
    // for it (nothing to gain) and 4 + 4 once extended; the next solve, which extends first,
    // then preempted w01 on c00 for 5 + 5. The last pass now extends first too.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '3', memory: 3072Mi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '1', memory: 1024Mi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '2', memory: 3072Mi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '1', memory: 1024Mi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '1', memory: 2048Mi}}
  - {name: c05, location: {provider: aws, region: r1, zone: z2}, capacity: {cpu: '5', memory: 3072Mi}}
workloads:
  - {name: w00, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, clusterAffinity: {clusterNames: [c01]}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}}
  - {name: w01, replicas: 4, resources: {cpu: 750m, memory: 256Mi}, replicaScheduling: {type: Divided, division: Aggregated, maxReplicasPerCluster: 1}}
  - {name: w02, replicas: 10, resources: {cpu: 500m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 1, preemption: PreemptLowerPriority}
  - {name: w03, replicas: 1, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, minGroups: 2}], replicaScheduling: {type: Divided, division: Aggregated}}
  - {name: w04, replicas: 2, resources: {cpu: '1', memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let w02 = plan.placements.iter().find(|p| p.workload.0 == "default/w02");
    assert_eq!(w02.map(|p| p.decisions.iter().map(|d| d.replicas).sum::<u32>()), Some(10));
    assert!(plan.placements.iter().all(|p| !p.message.contains("preempt")), "nothing ran, nothing is evicted");
}

#[test]
fn stable_when_an_extension_stops_short_of_a_second_one() {
    // w02 (skew 0 over regions and zones) was 2 + 2 when the last pass extended it; that
    // extension stopped at 4 + 4, one from 4 + 4 reaches 5 + 5. The next solve, extending the
    // 4 + 4 it kept, reached 5 + 5, after which w00 (a preemptor) could grow by preempting w04
    // on c00. The last pass now extends until an extension gains nothing.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '1', memory: 1Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '6', memory: 7Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '5', memory: 8Gi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '7', memory: 6Gi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '3', memory: 7Gi}}
workloads:
  - {name: w00, replicas: 9, resources: {cpu: 500m, memory: 768Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 2}, preemption: PreemptLowerPriority}
  - {name: w01, replicas: 9, resources: {cpu: 750m, memory: 1Gi}, clusterAffinity: {clusterNames: [c04]}, spreadConstraints: [{topologyKey: provider, minGroups: 3, maxGroups: 5}, {topologyKey: zone, minGroups: 3, maxGroups: 3, maxSkew: 0}], replicaScheduling: {type: Divided, division: Dynamic}}
  - {name: w02, replicas: 10, resources: {cpu: 500m, memory: 1Gi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2}
  - {name: w03, replicas: 10, resources: {cpu: 500m, memory: 512Mi}, clusterAffinity: {clusterNames: [c04]}, replicaScheduling: {type: Divided, division: Dynamic, maxReplicasPerCluster: 3}, priority: -1}
  - {name: w04, replicas: 7, resources: {cpu: 500m, memory: 768Mi}, clusterAffinity: {clusterNames: [c00]}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: -1}
";
    assert_plan_is_stable(yaml);
    check(
        yaml,
        "
default/w00 PartiallyScheduled c00=1 c01=1 c03=2 c04=2
default/w01 Unschedulable
default/w02 Scheduled c01=5 c02=5
default/w03 PartiallyScheduled c04=3
default/w04 Unschedulable
",
    );
}

#[test]
fn stable_when_a_rebalancing_workload_leaves_room_an_earlier_one_grows_into() {
    // w01 (one cluster) was regrouped onto c04, where w00's two replicas left room for 3 of its
    // 6; w00 (fresh, rebalance Always) then followed its target and left c04 with one, so the
    // next solve extended w01 to 4 there before moving w00 again. The last pass now grows into
    // that room and follows the targets again.
    let yaml = "
clusters:
  - {name: c00, capacity: {cpu: 7688m, memory: '0'}}
  - {name: c01, capacity: {cpu: '0'}, ready: false}
  - {name: c02, capacity: {cpu: 10712m, memory: 3Gi}, allocated: {cpu: 2785m}}
  - {name: c03, capacity: {cpu: '0'}, ready: false}
  - {name: c04, capacity: {cpu: 11592m, memory: 6Gi}, allocated: {cpu: 1970m}}
  - {name: c05, capacity: {cpu: 2701m, memory: '0'}, allocated: {cpu: 270m}}
  - {name: c06, capacity: {cpu: 4344m, memory: 2Gi}, allocated: {cpu: 1650m}}
workloads:
  - {name: w00, replicas: 5, resources: {cpu: 1999m, memory: '0'}, prioritizers: [{name: MostAllocated, weight: 1}], rebalance: {policy: Always}}
  - {name: w01, priority: 1, replicas: 6, resources: {cpu: 1407m, memory: 1280Mi}, numberOfClusters: 1, replicaScheduling: {type: Divided, division: Weighted}, prioritizers: [{name: Balance, weight: 0}]}
  - {name: w02, replicas: 0, replicaScheduling: {type: Divided, division: Weighted}}
";
    assert_plan_is_stable(yaml);
    check(
        yaml,
        "
default/w00 Scheduled c00=2 c02=2 c05=1
default/w01 PartiallyScheduled c04=4
default/w02 Scheduled
",
    );
}

#[test]
fn stable_when_a_preemption_gains_less_than_it_evicts_for() {
    // w02 (a preemptor, skew 0 over regions and zones) was short by 4; the last pass evicted all
    // three of w03's replicas on c01 for it, but the skew let it use one there (8 of 10), and
    // w03 took the rest back. The next solve preempted again from 8 and reached 10. The last
    // pass now preempts until it stops gaining.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '4', memory: 2Gi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '3', memory: 6Gi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '1', memory: 1Gi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '4', memory: 5Gi}}
  - {name: c04, location: {provider: aws, region: r0, zone: z1}, capacity: {cpu: '3', memory: 2Gi}}
  - {name: c05, location: {provider: aws, region: r1, zone: z2}, capacity: {cpu: '3', memory: 7Gi}}
workloads:
  - {name: w00, replicas: 4, resources: {cpu: 250m, memory: 512Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 1}
  - {name: w01, replicas: 11, resources: {cpu: 750m, memory: 512Mi}, replicaScheduling: {type: Divided, division: Aggregated, maxReplicasPerCluster: 2}, priority: 2}
  - {name: w02, replicas: 10, resources: {cpu: 500m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, priority: 2, preemption: PreemptLowerPriority}
  - {name: w03, replicas: 10, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Aggregated, maxReplicasPerCluster: 3}}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let w02 = plan.placements.iter().find(|p| p.workload.0 == "default/w02");
    assert_eq!(w02.map(|p| p.decisions.iter().map(|d| d.replicas).sum::<u32>()), Some(10));
}

#[test]
fn stable_when_a_short_workload_grows_where_a_preemptor_only_seems_to_fit() {
    // w00 (a preemptor, skew 0 over regions and zones, at most 1 per cluster) guarded c01, where
    // its skew lets it place nothing; the guard kept w02 (a preemptor pinned to c01) off it, and
    // w03's copy (Duplicated, lower priority) took c01. The next solve placed w02 there and
    // preempted w03. The last pass now grows a short workload whatever the guards, as the next
    // solve does, and gives the guarding preemptor its turn again.
    let yaml = "
clusters:
  - {name: c00, location: {provider: aws, region: r0, zone: z0}, capacity: {cpu: '7', memory: 6144Mi}}
  - {name: c01, location: {provider: aws, region: r1, zone: z1}, capacity: {cpu: '1', memory: 1024Mi}}
  - {name: c02, location: {provider: aws, region: r0, zone: z2}, capacity: {cpu: '2', memory: 3072Mi}}
  - {name: c03, location: {provider: aws, region: r1, zone: z0}, capacity: {cpu: '3', memory: 5120Mi}}
workloads:
  - {name: w00, replicas: 4, resources: {cpu: 500m, memory: 768Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted, maxReplicasPerCluster: 1}, priority: 2, preemption: PreemptLowerPriority}
  - {name: w01, replicas: 3, resources: {cpu: 750m, memory: 256Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w02, replicas: 1, resources: {cpu: 250m, memory: 512Mi}, clusterAffinity: {clusterNames: [c01]}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}, preemption: PreemptLowerPriority}
  - {name: w03, replicas: 1, resources: {cpu: 250m, memory: 768Mi}, replicaScheduling: {type: Duplicated}, priority: -1}
  - {name: w04, replicas: 6, resources: {cpu: 250m, memory: 256Mi}, spreadConstraints: [{topologyKey: region, maxSkew: 0}, {topologyKey: zone, maxSkew: 0}], replicaScheduling: {type: Divided, division: Weighted}}
  - {name: w05, replicas: 6, resources: {cpu: 250m, memory: 1024Mi}, clusterAffinity: {clusterNames: [c00]}, replicaScheduling: {type: Divided, division: Dynamic}, priority: 2}
";
    assert_plan_is_stable(yaml);
    let plan = solve_yaml(yaml);
    let w02 = plan.placements.iter().find(|p| p.workload.0 == "default/w02");
    assert_eq!(
        w02.map(|p| p.decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect::<Vec<_>>()),
        Some(vec!["c01=1".to_string()])
    );
}

/// A trade for a workload that `numberOfClusters` keeps on the cluster it has weighs the
/// blockers on that cluster only. Four workloads spread one replica over each of four other
/// clusters would free the most room in all (four each, against three for `big`), but `w` can
/// never add those clusters: ranked first, they crowded `big` out of the trial, and `w` stayed at
/// one replica. `big` (Aggregated, so no shift moves it) makes way to `f`.
#[test]
fn a_trade_weighs_blockers_where_number_of_clusters_lets_the_workload_grow() {
    let mut yaml = String::from(
        "
clusters:
  - {name: a, labels: {w: 'yes', big: 'yes'}, capacity: {cpu: '4'}}
  - {name: b, labels: {w: 'yes', wide: 'yes'}, capacity: {cpu: '4'}}
  - {name: c, labels: {w: 'yes', wide: 'yes'}, capacity: {cpu: '4'}}
  - {name: d, labels: {w: 'yes', wide: 'yes'}, capacity: {cpu: '4'}}
  - {name: e, labels: {w: 'yes', wide: 'yes'}, capacity: {cpu: '4'}}
  - {name: f, labels: {big: 'yes'}, capacity: {cpu: '3'}}
workloads:
  - {name: w, replicas: 4, resources: {cpu: '1'}, numberOfClusters: 1, \
     clusterAffinity: {labelSelector: {matchLabels: {w: 'yes'}}}}
  - {name: big, priority: 1, replicas: 3, resources: {cpu: '1'}, \
     replicaScheduling: {type: Divided, division: Aggregated}, \
     clusterAffinity: {labelSelector: {matchLabels: {big: 'yes'}}}, \
     preferences: [{weight: 100, labelSelector: {matchLabels: {w: 'yes'}}}]}
",
    );
    for k in 1..=4 {
        yaml.push_str(&format!(
            "  - {{name: wide{k}, priority: 1, replicas: 4, resources: {{cpu: '1'}}, \
             replicaScheduling: {{maxReplicasPerCluster: 1}}, \
             clusterAffinity: {{labelSelector: {{matchLabels: {{wide: 'yes'}}}}}}}}\n"
        ));
    }
    check(
        &yaml,
        "
        default/big Scheduled f=3
        default/w Scheduled a=4
        default/wide1 Scheduled b=1 c=1 d=1 e=1
        default/wide2 Scheduled b=1 c=1 d=1 e=1
        default/wide3 Scheduled b=1 c=1 d=1 e=1
        default/wide4 Scheduled b=1 c=1 d=1 e=1",
    );
}

/// A trade's blocker that comes back smaller makes room in turn. `r` may only use `a`, where
/// `big` (Aggregated, placed first) sits; `big` could go to `b`, but `low` fills it. A trade
/// that only moves `big` loses more than `r` gains (4 x 3 against 4 x 2); with `big` displacing
/// `low` on `b`, `r` gains 8 and `low` loses 4.
#[test]
fn a_blocker_that_comes_back_smaller_displaces_lower_priorities() {
    check(
        "
clusters:
  - {name: a, capacity: {cpu: '4'}}
  - {name: b, capacity: {cpu: '4'}}
workloads:
  - {name: big, priority: 2, replicas: 4, resources: {cpu: '1'}, replicaScheduling: {type: Divided, division: Aggregated}}
  - {name: r, priority: 1, replicas: 4, resources: {cpu: '1'}, clusterAffinity: {clusterNames: [a]}}
  - {name: low, replicas: 4, resources: {cpu: '1'}}
",
        "
        default/big Scheduled b=4
        default/low Unschedulable
        default/r Scheduled a=4",
    );
}

/// An incomplete workload is explained against the plan as it ends. `r` is first placed on the
/// cheapest cluster `a`, where one replica fits, and then regrouped onto `b`, which holds both;
/// `x` (no cluster has a GPU) was explained while `r` still sat on `a`, and said `a` had too
/// little CPU, though the plan leaves `a` empty.
#[test]
fn explanations_describe_the_plan_after_the_improvement_step() {
    let yaml = "
clusters:
  - {name: a, cost: 0, capacity: {cpu: '4'}}
  - {name: b, cost: 3, capacity: {cpu: '12'}}
workloads:
  - {name: r, priority: 1, replicas: 2, resources: {cpu: 3600m}, numberOfClusters: 1, \
     prioritizers: [{name: Cost, weight: 1}]}
  - {name: x, replicas: 1, resources: {cpu: 3500m, nvidia.com/gpu: '1'}}
";
    let plan = check(yaml, "default/r Scheduled b=2\ndefault/x Unschedulable");
    let x = plan.placements.iter().find(|p| p.workload.to_string() == "default/x").expect("x is in the plan");
    assert_eq!(x.message, "0/2 clusters are available: 2 had insufficient nvidia.com/gpu.");
}
