//! Golden runs over the example scenarios that have a `timeline`: each is simulated and its JSON
//! compared byte for byte with the `expected-run.json` beside it. Run with `UPDATE_EXPECT=1` to
//! rewrite the expected files after an intended change, then review the diff.
//!
//! Bytes alone would freeze bugs too, so every step of every run is also checked against the
//! policy by the independent checker, and each scenario has assertions stating its story.

mod support;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use support::policy_violations;
use tmc_core::{Phase, WorkloadKey};
use tmc_sim::{DEFAULT_SCENARIO, Run, Scenario, json::to_json, load_sim_scenario, simulate};

/// The timeline scenarios this suite must find; more may be added without touching the test.
const KNOWN: [&str; 2] = ["default", "multi-region-webshop"];

fn scenarios_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    dir.canonicalize().unwrap_or(dir)
}

fn load(name: &str) -> Scenario {
    let path = scenarios_dir().join(name).join("scenario.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    load_sim_scenario(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Example folders whose scenario has a timeline, sorted.
fn timeline_scenarios() -> Vec<String> {
    let dir = scenarios_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let text = fs::read_to_string(path.join("scenario.yaml")).ok()?;
            let scenario = tmc_sim::parse_sim_scenario(&text).ok()?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            (!scenario.timeline.is_empty()).then_some(name)
        })
        .collect();
    names.sort();
    names
}

fn run(name: &str) -> Run {
    simulate(&load(name), &mut |_, _| {}).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_known_timeline_scenario_is_present() {
    let names = timeline_scenarios();
    for known in KNOWN {
        assert!(names.iter().any(|n| n == known), "no timeline in examples/scenarios/{known}; found {names:?}");
    }
}

#[test]
fn runs_match_expected_json() {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for name in timeline_scenarios() {
        let json = to_json(&run(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = scenarios_dir().join(&name).join("expected-run.json");
        if update {
            if fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
                fs::write(&path, &json).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                eprintln!("updated {}", path.display());
            }
            continue;
        }
        match fs::read_to_string(&path) {
            Err(e) => failures.push(format!("{name}: cannot read {}: {e}", path.display())),
            Ok(expected) if expected != json => {
                let first = expected.lines().zip(json.lines()).position(|(a, b)| a != b).unwrap_or(0);
                failures.push(format!(
                    "{name}: run differs from expected-run.json from line {}:\n  expected: {}\n  actual:   {}",
                    first + 1,
                    expected.lines().nth(first).unwrap_or_default(),
                    json.lines().nth(first).unwrap_or_default()
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nIf the change is intended, run `UPDATE_EXPECT=1 cargo test -p tmc-sim --test run_golden` and review the \
         diff of expected-run.json.",
        failures.join("\n")
    );
}

#[test]
fn every_step_of_every_run_honours_the_policy() {
    let mut failures = Vec::new();
    for name in timeline_scenarios() {
        let run = run(&name);
        assert_eq!(run.snapshots.len(), run.steps.len());
        for (step, snap) in run.steps.iter().zip(&run.snapshots) {
            if step.overcommit != 0 {
                failures.push(format!("{name} at {}: overcommit {:?}", step.time, step.overcommitted));
            }
            failures.extend(
                policy_violations(&snap.input, &snap.plan).into_iter().map(|v| format!("{name} at {}: {v}", step.time)),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_embedded_default_is_the_default_example() {
    let path = scenarios_dir().join("default/scenario.yaml");
    assert_eq!(fs::read_to_string(path).ok().as_deref(), Some(DEFAULT_SCENARIO));
}

/// Replicas of `key` on clusters whose name starts with `prefix`, at each step time.
fn on(run: &Run, key: &WorkloadKey, prefix: &str) -> Vec<(i64, u64)> {
    run.snapshots
        .iter()
        .map(|s| {
            let n = s.plan.get(key).map_or(0, |p| {
                p.decisions.iter().filter(|d| d.cluster.starts_with(prefix)).map(|d| u64::from(d.replicas)).sum()
            });
            (s.at, n)
        })
        .collect()
}

#[test]
fn the_default_scenario_tells_its_story() {
    let scenario = load("default");
    let providers: BTreeSet<_> = scenario.clusters.iter().filter_map(|c| c.location.provider.clone()).collect();
    let regions: BTreeSet<_> = scenario.clusters.iter().filter_map(|c| c.location.region.clone()).collect();
    assert_eq!((scenario.clusters.len(), scenario.workloads.len()), (40, 200));
    assert_eq!((providers.len(), regions.len()), (3, 6));

    let run = run("default");
    let times: Vec<i64> = run.steps.iter().map(|s| s.at).collect();
    // Events at 3m, 10m, 20m, 28m, 40m, 45m, 50m; the controller wakes at 11m (heartbeat
    // threshold), 12m (payments tolerate not-ready for 60 s), 16m (the default 300 s), 25m (the
    // drain's grace period) and 26m (databases tolerate 900 s).
    for t in [0, 180, 600, 660, 720, 960, 1200, 1500, 1560, 1680, 2400, 2700, 3000] {
        assert!(times.contains(&t), "no step at {t}s: {times:?}");
    }
    let outage = "aws-us-east-1-";
    let lost_at = |key: &WorkloadKey| {
        let series = on(&run, key, outage);
        let before = series.iter().find(|(t, _)| *t == 600).map_or(0, |(_, n)| *n);
        series.iter().find(|(t, n)| *t > 600 && *n < before).map(|(t, _)| *t)
    };
    let workloads = |pred: &dyn Fn(&tmc_core::Workload) -> bool| -> Vec<WorkloadKey> {
        scenario.workloads.iter().filter(|w| pred(w)).map(|w| w.key()).collect()
    };
    let tolerating = |secs: i64| {
        move |w: &tmc_core::Workload| {
            w.tolerations
                .iter()
                .any(|t| t.key == tmc_core::taint::NOT_READY_TAINT_KEY && t.toleration_seconds == Some(secs))
        }
    };
    let on_outage_at_10m = |key: &WorkloadKey| on(&run, key, outage).iter().any(|(t, n)| *t == 600 && *n > 0);
    let cases: [(&str, Vec<WorkloadKey>, i64); 3] = [
        ("payments (60 s)", workloads(&tolerating(60)), 720),
        ("databases (900 s)", workloads(&tolerating(900)), 1560),
        (
            "the default (300 s)",
            workloads(&|w| {
                w.tolerations.iter().all(|t| t.key != tmc_core::taint::NOT_READY_TAINT_KEY)
                    && w.number_of_clusters.is_some()
            }),
            960,
        ),
    ];
    for (what, keys, when) in cases {
        let hit: Vec<&WorkloadKey> = keys.iter().filter(|k| on_outage_at_10m(k)).collect();
        assert!(!hit.is_empty(), "{what}: no workload on the region when it fails");
        for key in hit {
            assert_eq!(
                lost_at(key),
                Some(when),
                "{what}: {key} must leave us-east-1 exactly when its toleration runs out"
            );
        }
    }
    // Daemon-like agents tolerate everything: they stay with their clusters.
    for key in workloads(&|w| w.tolerations.iter().any(|t| t.key.is_empty())) {
        assert_eq!(lost_at(&key), None, "{key} tolerates everything");
    }
    let down = run.steps.iter().find(|s| s.at == 660).map(|s| s.not_ready.len());
    assert_eq!(down, Some(7), "all of us-east-1 is not ready one heartbeat threshold after it goes dark");
    assert_eq!(run.totals.overcommit, 0);
    assert!(run.totals.evicted > 200, "the outage evicts: {:?}", run.totals);
    let outage = &run.incidents[0];
    assert_eq!((outage.time.as_str(), outage.events.len()), ("10m", 7));
    assert!(outage.affected_workloads > 50 && outage.replicas_hit > 150, "{outage:?}");
    assert!(outage.recovered_at.is_some(), "{outage:?}");
    let drain = run.incidents.iter().find(|i| i.time == "20m").expect("the drain is an incident");
    assert!(drain.time_to_recover.is_some_and(|t| t >= 300), "nothing leaves before the grace period: {drain:?}");
    // When the region returns, workloads with `rebalance: OnRecovery` go back home to it; the others
    // (rebalance Never) stay where they are.
    let back = run.steps.iter().find(|s| s.at == 2400).expect("step at 40m");
    assert!(back.churn.moved > 0, "{back:?}");
    for change in back.changes.iter().filter(|c| c.churn.stopped > 0) {
        let w = scenario.workloads.iter().find(|w| w.key() == change.workload).expect("known workload");
        assert_eq!(w.rebalance.policy, tmc_core::RebalancePolicy::OnRecovery, "{} moved: {change:?}", change.workload);
        assert_eq!(w.cluster_affinities[0].name.as_deref(), Some("home"));
        assert!(change.after.split(' ').all(|d| d.starts_with("aws-us-east-1-")), "back home: {change:?}");
    }
    let last = run.final_placements.iter().filter(|p| p.phase == Phase::Scheduled).count();
    assert!(last >= 190, "almost everything is placed at the end: {last}/200");
}

#[test]
fn the_webshop_run_tells_its_story() {
    let run = run("multi-region-webshop");
    let step = |time: &str| run.steps.iter().find(|s| s.time == time).unwrap_or_else(|| panic!("no step at {time}"));
    // The zone outage: not ready after 1m, evicted after the default 5m.
    assert_eq!(step("6m").not_ready, ["aws-eu-west-1a", "edge-lab"]);
    assert!(step("11m").evicted > 0 && step("11m").controller.iter().any(|c| c.contains("aws-eu-west-1a")));
    // The drain evicts after its 2m grace period, not before.
    assert_eq!(step("8m").evicted, 0);
    assert!(step("10m").controller.iter().any(|c| c.contains("from gcp-us-central1-a")), "{:?}", step("10m"));
    // The compromised node is emptied at once (nothing tolerates the taint).
    assert!(step("22m").evicted > 0);
    assert!(step("22m").replicas.get("gcp-europe-west4-b") == Some(&0), "{:?}", step("22m").replicas);
    // New cluster, new workload, removed workload and cluster.
    assert!(step("25m").replicas.contains_key("aws-eu-central-1a"));
    assert!(step("32m").changes.iter().any(|c| c.workload.0 == "shop/flash-sale" && c.churn.started == 6));
    // The lab experiment never found a cluster: deleting it changes no decision.
    assert!(step("40m").changes.is_empty(), "{:?}", step("40m").changes);
    assert!(run.final_placements.iter().all(|p| p.workload.0 != "research/lab-experiment"));
    assert!(!step("44m").replicas.contains_key("staging-eu"), "staging-eu is gone");
    // Incidents: the outage, the drain, the compromised node. Removing staging-eu is none: only the
    // log shipper ran there, and a copy-per-cluster workload goes with its cluster.
    let incidents: Vec<(&str, Option<i64>)> =
        run.incidents.iter().map(|i| (i.time.as_str(), i.time_to_recover)).collect();
    // Healthy replicas stay where they are (only what must move moves), and this fleet is too
    // full to re-place all 8 evicted replicas elsewhere: whole again when the zone returns at 15m.
    assert_eq!(incidents[0], ("5m", Some(600)), "whole again when aws-eu-west-1a is back");
    let times: Vec<&str> = incidents.iter().map(|i| i.0).collect();
    assert_eq!(times, ["5m", "8m", "22m"], "{:#?}", run.incidents);
}
