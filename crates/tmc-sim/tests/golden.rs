//! Golden suite over `examples/scenarios/*/scenario.yaml`: each scenario is loaded, solved and
//! rendered as JSON, then compared byte for byte with the `expected.json` beside it. Run with
//! `UPDATE_EXPECT=1` to rewrite the expected files after an intended change, then review the diff.
//!
//! Bytes alone would freeze bugs too, so every plan is also checked against the policy by an
//! independent checker (capacity, filters, taints, spread, division, copies) and each scenario has
//! assertions stating its intent.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

mod support;

use support::policy_violations;
use tmc_core::{Cluster, Phase, Placement, PlacementInput, Plan, Quantity, TaintEffect, WorkloadKey, solve_validated};
use tmc_sim::{
    load_scenario,
    render::{Format, render},
};

/// The scenarios this suite must find; more may be added without touching the test.
const KNOWN: [&str; 6] =
    ["default", "edge-fleet", "failover-fallback", "gpu-training", "multi-region-webshop", "regulated-workloads"];

fn scenarios_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    dir.canonicalize().unwrap_or(dir)
}

/// Names of the folders under `examples/scenarios` that hold a `scenario.yaml`, sorted.
fn scenario_names() -> Vec<String> {
    let dir = scenarios_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            path.join("scenario.yaml").is_file().then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

/// A solved scenario.
struct Solved {
    input: PlacementInput,
    plan: Plan,
    json: String,
}

fn solve_scenario(name: &str) -> Solved {
    let path = scenarios_dir().join(name).join("scenario.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let input = load_scenario(&text).unwrap_or_else(|e| panic!("{name}: scenario does not load: {e}"));
    let plan = solve_validated(&input);
    let json = render(&plan, Format::Json).unwrap_or_else(|e| panic!("{name}: cannot render: {e}"));
    Solved { input, plan, json }
}

/// A short, line-based report of where `actual` departs from `expected`.
fn diff_report(expected: &str, actual: &str) -> String {
    let exp: Vec<&str> = expected.lines().collect();
    let act: Vec<&str> = actual.lines().collect();
    let first = exp.iter().zip(&act).position(|(e, a)| e != a).unwrap_or(exp.len().min(act.len()));
    let from = first.saturating_sub(3);
    let mut out =
        format!("first difference at line {} (expected {} lines, got {}):\n", first + 1, exp.len(), act.len());
    for (label, lines) in [("expected", &exp), ("actual", &act)] {
        out.push_str(&format!("  --- {label}\n"));
        for (i, line) in lines.iter().enumerate().skip(from).take(first - from + 6) {
            let mark = if i == first { '>' } else { ' ' };
            out.push_str(&format!("  {mark}{:>5} | {line}\n", i + 1));
        }
    }
    let changed = exp.iter().zip(&act).filter(|(e, a)| e != a).count() + exp.len().abs_diff(act.len());
    out.push_str(&format!("  ({changed} line(s) differ in total)\n"));
    out
}

#[test]
fn every_known_scenario_is_present() {
    let names = scenario_names();
    for known in KNOWN {
        assert!(names.iter().any(|n| n == known), "missing examples/scenarios/{known}/scenario.yaml; found {names:?}");
    }
}

#[test]
fn rendered_plans_match_expected_json() {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for name in scenario_names() {
        let solved = solve_scenario(&name);
        let expected_path = scenarios_dir().join(&name).join("expected.json");
        if update {
            if fs::read_to_string(&expected_path).ok().as_deref() != Some(solved.json.as_str()) {
                fs::write(&expected_path, &solved.json)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
                eprintln!("updated {}", expected_path.display());
            }
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Err(e) => failures.push(format!(
                "{name}: cannot read {}: {e}\n  (run `UPDATE_EXPECT=1 cargo test -p tmc-sim --test golden` to create it)",
                expected_path.display()
            )),
            Ok(expected) if expected != solved.json => {
                failures.push(format!("{name}: plan differs from expected.json; {}", diff_report(&expected, &solved.json)))
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden scenario(s) differ:\n\n{}\nIf the change is intended, run `UPDATE_EXPECT=1 cargo test -p tmc-sim \
         --test golden` and review the diff of expected.json.",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_plan_honours_the_policy() {
    let mut failures = Vec::new();
    for name in scenario_names() {
        let solved = solve_scenario(&name);
        failures.extend(policy_violations(&solved.input, &solved.plan).into_iter().map(|m| format!("{name}: {m}")));
    }
    assert!(failures.is_empty(), "policy violations:\n  {}", failures.join("\n  "));
}

#[test]
fn the_policy_checker_is_not_vacuous() {
    let Solved { input, plan, .. } = solve_scenario("gpu-training");
    assert!(policy_violations(&input, &plan).is_empty());
    let mut bad = plan.clone();
    for p in &mut bad.placements {
        match p.workload.0.as_str() {
            // Put the notebook on a tainted GPU cluster it does not tolerate.
            "ml-research/notebook-alice" => {
                p.decisions = vec![tmc_core::Decision { cluster: "a100-us-east-1".into(), replicas: 1 }];
                p.placed = 1;
                p.phase = Phase::Scheduled;
                p.message.clear();
            }
            // Give the ETL job far more replicas than the CPU pools hold.
            "data/feature-etl" => {
                p.decisions[0].replicas = 1990;
                p.placed = 2003;
            }
            _ => {}
        }
    }
    let found = policy_violations(&input, &bad).join("\n");
    for expected in [
        "notebook-alice: a100-us-east-1 admits no new replicas",
        "feature-etl: 2003 replicas placed, only 20 requested",
        "cpu-batch-eu is overcommitted on cpu",
        "a100-us-east-1 is overcommitted on nvidia.com/gpu: 25 placed, 24 free",
    ] {
        assert!(found.contains(expected), "checker missed {expected:?}:\n{found}");
    }
}

#[test]
fn resolving_with_the_plan_as_previous_moves_nothing() {
    for name in scenario_names() {
        let solved = solve_scenario(&name);
        let mut again = solved.input.clone();
        again.previous = solved.plan.placements.iter().filter(|p| !p.decisions.is_empty()).cloned().collect();
        let replan = solve_validated(&again);
        for (before, after) in solved.plan.placements.iter().zip(&replan.placements) {
            assert_eq!(
                (&before.decisions, &before.affinity_group),
                (&after.decisions, &after.affinity_group),
                "{name}: {} moved when re-solved with its own plan as previous",
                before.workload
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The intent of each scenario.
// ---------------------------------------------------------------------------------------------

/// Looks up a placement by `namespace/name`.
fn placement<'p>(plan: &'p Plan, key: &str) -> &'p Placement {
    plan.get(&WorkloadKey(key.to_string())).unwrap_or_else(|| panic!("no placement for {key}"))
}

/// `cluster -> replicas` of a placement.
fn decisions(p: &Placement) -> BTreeMap<&str, u32> {
    p.decisions.iter().map(|d| (d.cluster.as_str(), d.replicas)).collect()
}

fn cluster<'i>(input: &'i PlacementInput, name: &str) -> &'i Cluster {
    input.clusters.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no cluster {name}"))
}

#[test]
fn multi_region_webshop_intent() {
    let Solved { input, plan, .. } = solve_scenario("multi-region-webshop");
    let checkout = placement(&plan, "shop/checkout");
    assert_eq!(decisions(checkout), BTreeMap::from([("onprem-fra-1", 6)]), "only uncordoned pci-dss cluster");

    let storefront = placement(&plan, "shop/storefront");
    let regions: BTreeSet<_> =
        storefront.decisions.iter().map(|d| cluster(&input, &d.cluster).location.region.clone()).collect();
    assert!((2..=3).contains(&regions.len()), "storefront regions {regions:?}");
    assert!(!decisions(storefront).contains_key("aws-us-east-1b"), "maintenance taint is not tolerated");

    let log = decisions(placement(&plan, "platform/log-shipper"));
    assert!(log.contains_key("aws-us-east-1b"), "log-shipper tolerates the maintenance taint");
    assert!(!log.contains_key("onprem-fra-2") && !log.contains_key("edge-lab"), "cordoned / not ready: {log:?}");
    assert_eq!(log.len(), 10);

    let recs = placement(&plan, "shop/recommendations");
    let providers: BTreeSet<_> =
        recs.decisions.iter().map(|d| cluster(&input, &d.cluster).location.provider.clone()).collect();
    assert_eq!((recs.decisions.len(), providers.len()), (2, 2), "two clusters on two providers");

    let search = placement(&plan, "shop/search");
    assert_eq!(search.decisions.len(), 2, "Aggregated with maxReplicasPerCluster 6 needs two clusters");
    assert!(search.decisions.iter().all(|d| d.replicas <= 6));
    // search may run in Europe too; batch-reports may not: the improvement step moves search
    // off gcp-us-central1-a so batch-reports gets the room (the exact optimum, 2894).
    assert!(!decisions(search).contains_key("gcp-us-central1-a"), "search made room: {:?}", search.decisions);
    assert_eq!(search.message, "moved to make room for analytics/batch-reports.");
    assert_eq!(plan.objective, 2894.0);

    let batch = placement(&plan, "analytics/batch-reports");
    assert_eq!((batch.phase, batch.placed), (Phase::PartiallyScheduled, 11));
    assert!(batch.message.ends_with("Placed 11/40 replicas."), "{}", batch.message);

    let lab = placement(&plan, "research/lab-experiment");
    assert_eq!(lab.phase, Phase::Unschedulable);
    assert!(lab.message.contains("1 had untolerated taint {tmc.kcp.io/not-ready:NoExecute}"), "{}", lab.message);
}

#[test]
fn gpu_training_intent() {
    let Solved { input, plan, .. } = solve_scenario("gpu-training");
    let pretrain = placement(&plan, "ml-research/llm-pretrain-70b");
    assert_eq!(pretrain.phase, Phase::Unschedulable, "no cluster has 64 free GPUs");
    assert!(pretrain.message.contains("2 had insufficient nvidia.com/gpu"), "{}", pretrain.message);

    let notebook = placement(&plan, "ml-research/notebook-alice");
    assert_eq!(notebook.phase, Phase::Unschedulable);
    assert!(
        notebook.message.contains("6 had untolerated taint {nvidia.com/gpu=present:NoSchedule}")
            && notebook.message.contains("2 had insufficient nvidia.com/gpu"),
        "{}",
        notebook.message
    );

    let finetune = placement(&plan, "ml-research/finetune-llama");
    assert_eq!(finetune.phase, Phase::Scheduled);
    assert_eq!(finetune.decisions.len(), 1, "Aggregated packs 4x4 GPUs onto one cluster: {:?}", finetune.decisions);
    let gpu_mem = &cluster(&input, &finetune.decisions[0].cluster).labels["gpu-memory-gb"];
    assert_eq!(gpu_mem, "80", "finetune asked for cards with more than 40 GB");

    // The low-priority sweep takes exactly the A100/H100 GPUs the higher priorities left.
    let sweep = placement(&plan, "ml-research/hparam-sweep");
    assert_eq!(sweep.phase, Phase::PartiallyScheduled);
    let gpu = |name: &str| {
        let c = cluster(&input, name);
        let units = |q: Option<&Quantity>| q.map_or(0, |q| q.nanos() / 1_000_000_000);
        units(c.capacity.get("nvidia.com/gpu")) - units(c.allocated.get("nvidia.com/gpu"))
    };
    let left: u128 = ["a100-us-east-1", "h100-us-west-2", "a100-europe-west4"].iter().map(|c| gpu(c)).sum::<u128>()
        - 4 * u128::from(finetune.decisions[0].replicas);
    assert_eq!(u128::from(sweep.placed) * 2, left, "sweep uses every leftover GPU");

    let etl = decisions(placement(&plan, "data/feature-etl"));
    assert!(etl.keys().all(|c| c.starts_with("cpu-batch-")), "GPU taint keeps CPU work off GPU clusters: {etl:?}");

    let dcgm = decisions(placement(&plan, "gpu-operator/dcgm-exporter"));
    assert_eq!(dcgm.len(), 5, "every ready GPU cluster: {dcgm:?}");
    assert!(!dcgm.contains_key("v100-legacy-onprem"), "not-ready cluster");

    let inference = decisions(placement(&plan, "serving/llm-inference"));
    assert!(inference.keys().all(|c| c.starts_with("l4-")) && inference.values().sum::<u32>() == 6);
}

#[test]
fn regulated_workloads_intent() {
    let Solved { input, plan, .. } = solve_scenario("regulated-workloads");
    let claims = placement(&plan, "insurance/claims-processing");
    assert_eq!(claims.phase, Phase::Unschedulable, "no cluster has both hipaa and pci-dss");
    assert_eq!(claims.message, "0/11 clusters are available: 8 lacked capability hipaa, 3 lacked capability pci-dss.");

    let vault = placement(&plan, "payments/card-vault");
    assert_eq!(vault.phase, Phase::Scheduled);
    for d in &vault.decisions {
        assert_ne!(d.cluster, "pay-eu-central-1b", "excluded while under audit");
        let region = cluster(&input, &d.cluster).location.region.as_deref().unwrap_or_default();
        assert!(region.starts_with("eu-"), "card data stays in the EU: {region}");
    }
    assert_eq!(vault.decisions.len(), 2, "two zones");

    let tokenizer = decisions(placement(&plan, "payments/tokenizer"));
    assert_eq!(tokenizer.len(), 2);
    assert!(!tokenizer.contains_key("pay-eu-central-1b"));

    for p in &plan.placements {
        assert!(!decisions(p).contains_key("health-us-east-2b"), "{} landed on the cordoned cluster", p.workload);
    }
    let phi = placement(&plan, "health/phi-analytics");
    assert_eq!(phi.phase, Phase::PartiallyScheduled);
    assert!(phi.message.contains("1 had been cordoned"), "{}", phi.message);

    let portal = decisions(placement(&plan, "gov/benefits-portal"));
    assert_eq!(portal, BTreeMap::from([("gov-us-gov-east-1a", 2), ("gov-us-gov-west-1a", 2)]));

    let profile = decisions(placement(&plan, "crm/customer-profile"));
    assert_eq!(profile, BTreeMap::from([("corp-eu-west-1", 4)]), "GDPR, outside the CDE");

    let audit = decisions(placement(&plan, "platform/audit-forwarder"));
    assert_eq!(audit.len(), 10, "every soc2 cluster except the cordoned one");
}

#[test]
fn edge_fleet_intent() {
    let Solved { input, plan, .. } = solve_scenario("edge-fleet");
    assert_eq!(input.clusters.len(), 200);
    let blocked =
        |c: &Cluster| c.unschedulable || !c.ready || c.taints.iter().any(|t| t.effect == TaintEffect::NoSchedule);
    let open: BTreeSet<&str> = input.clusters.iter().filter(|c| !blocked(c)).map(|c| c.name.as_str()).collect();
    let pos: BTreeSet<&str> = decisions(placement(&plan, "pos/pos-agent")).into_keys().collect();
    assert_eq!(pos, open, "pos-agent runs on every store that accepts new work");
    assert!(open.len() < 200 && open.len() > 150);

    let diag = decisions(placement(&plan, "ops/remote-diagnostics"));
    let uncordoned = input.clusters.iter().filter(|c| !c.unschedulable).count();
    assert_eq!(diag.len(), uncordoned, "tolerating everything reaches all but cordoned stores");
    assert!(input.clusters.iter().any(|c| !c.ready && diag.contains_key(c.name.as_str())), "reaches NotReady stores");

    let format = |name: &str| cluster(&input, name).labels["format"].clone();
    let lp = placement(&plan, "vision/loss-prevention");
    assert_eq!((lp.phase, lp.placed), (Phase::Scheduled, 120));
    let by_format =
        |f: &str| -> Vec<u32> { lp.decisions.iter().filter(|d| format(&d.cluster) == f).map(|d| d.replicas).collect() };
    assert!(by_format("express").is_empty(), "express stores have no weight");
    let (hyper, superm) = (by_format("hypermarket"), by_format("supermarket"));
    assert!(!hyper.is_empty() && !superm.is_empty());
    assert!(hyper.iter().min() > superm.iter().max(), "weight 4 beats weight 1: {hyper:?} vs {superm:?}");

    let region_of = |name: &str| cluster(&input, name).location.region.clone().unwrap_or_default();
    let zone_of = |name: &str| cluster(&input, name).location.zone.clone().unwrap_or_default();
    let count_by = |p: &Placement, key: &dyn Fn(&str) -> String| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for d in &p.decisions {
            *m.entry(key(&d.cluster)).or_insert(0) += 1;
        }
        m
    };
    let price = placement(&plan, "pricing/price-sync");
    assert_eq!((price.phase, price.decisions.len()), (Phase::Scheduled, 15));
    let per_region = count_by(price, &region_of);
    assert_eq!(per_region.len(), 5);
    assert!(per_region.values().all(|&n| n == 3), "15 over 5 regions with maxSkew 1: {per_region:?}");

    let signage = placement(&plan, "promo/digital-signage");
    assert_eq!(signage.decisions.len(), 24);
    let per_zone = count_by(signage, &zone_of);
    assert_eq!(per_zone.len(), 6, "{per_zone:?}");
    assert!(per_zone.keys().all(|z| z.starts_with("eu-")));
    assert!(per_zone.values().all(|&n| n == 4), "24 over 6 zones with maxSkew 1: {per_zone:?}");

    let footfall = placement(&plan, "analytics/footfall-aggregator");
    assert_eq!((footfall.phase, footfall.placed), (Phase::Scheduled, 30));
    assert!(footfall.decisions.len() <= 10);

    let scanner = placement(&plan, "ml/shelf-scanner");
    assert_eq!(scanner.phase, Phase::PartiallyScheduled);
    assert!(scanner.message.contains("numberOfClusters needs 12 clusters"), "{}", scanner.message);
    assert!(scanner.decisions.iter().all(|d| format(&d.cluster) == "hypermarket"));
}

#[test]
fn failover_fallback_intent() {
    let Solved { input, plan, .. } = solve_scenario("failover-fallback");
    let region_of = |name: &str| cluster(&input, name).location.region.clone().unwrap_or_default();

    let web = placement(&plan, "shop/web");
    assert_eq!(web.affinity_group.as_deref(), Some("secondary"), "primary cannot hold 8 replicas");
    assert_eq!(web.phase, Phase::Scheduled);
    assert!(web.decisions.iter().all(|d| region_of(&d.cluster) == "us-west-2"));

    let previous = |key: &str| {
        let p = input.previous.iter().find(|p| p.workload.0 == key).expect("previous entry");
        (p.decisions.clone(), p.affinity_group.clone())
    };
    let unchanged = |key: &str| {
        let p = placement(&plan, key);
        assert_eq!((p.decisions.clone(), p.affinity_group.clone()), previous(key), "{key} should stay put");
    };
    unchanged("shop/cart");
    unchanged("shop/search");
    unchanged("shop/session-cache");
    assert_eq!(placement(&plan, "shop/search").affinity_group.as_deref(), Some("disaster-recovery"));

    let orders = placement(&plan, "shop/orders");
    assert_eq!(orders.phase, Phase::Scheduled);
    assert!(!decisions(orders).contains_key("use1-b"), "use1-b is not ready: orders must move");
    assert_eq!(orders.affinity_group.as_deref(), Some("secondary"));

    let reindex = placement(&plan, "batch/reindex");
    assert_eq!(reindex.phase, Phase::PartiallyScheduled);
    assert_eq!(reindex.affinity_group.as_deref(), Some("disaster-recovery"), "the group that places the most");
    assert!(
        reindex.message.starts_with(
            "no cluster affinity group could hold all replicas; using group \"disaster-recovery\": 1/5 clusters"
        ),
        "{}",
        reindex.message
    );
}
