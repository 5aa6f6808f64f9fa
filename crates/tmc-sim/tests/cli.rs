//! End-to-end tests of the `tmc-sim` binary: output formats, the embedded default scenario, and
//! exit code 2 with a message naming the offending field for every kind of bad input.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

use serde_json::Value;

fn tmc_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tmc-sim")).args(args).output().expect("tmc-sim runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios").join(name).join("scenario.yaml");
    path.to_string_lossy().into_owned()
}

/// A scenario file under the temp dir, removed when dropped.
struct TempScenario(PathBuf);

impl TempScenario {
    fn new(label: &str, text: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tmc-sim-cli-{}-{n}-{label}.yaml", std::process::id()));
        std::fs::write(&path, text).expect("write temp scenario");
        TempScenario(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempScenario {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks the shape shared by the JSON and YAML documents.
fn assert_plan_document(doc: &Value) {
    let placements = doc["placements"].as_array().expect("top-level placements array");
    assert!(!placements.is_empty());
    for p in placements {
        assert!(p["workload"].as_str().is_some_and(|w| w.contains('/')), "workload is namespace/name: {p}");
        assert!(
            matches!(p["phase"].as_str(), Some("Scheduled" | "PartiallyScheduled" | "Unschedulable")),
            "phase: {p}"
        );
        let decisions = p["decisions"].as_array().expect("decisions array");
        for d in decisions {
            assert!(d["cluster"].is_string() && d["replicas"].as_u64().is_some_and(|n| n >= 1), "decision: {d}");
        }
        // The message is present exactly when the workload is not fully placed.
        assert_eq!(p["message"].is_string(), p["phase"] != "Scheduled", "message: {p}");
    }
    assert!(placements.iter().any(|p| p["message"].is_string()), "some workload is explained");
}

#[test]
fn json_output_is_a_plan_document() {
    let o = tmc_sim(&["place", &example("gpu-training"), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_plan_document(&doc);
    let pretrain = doc["placements"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["workload"] == "ml-research/llm-pretrain-70b"))
        .expect("the 64-GPU job");
    assert_eq!(pretrain["phase"], "Unschedulable");
    assert!(pretrain["message"].as_str().is_some_and(|m| m.contains("had insufficient nvidia.com/gpu")));
}

#[test]
fn yaml_output_is_the_same_document() {
    let json = tmc_sim(&["place", &example("regulated-workloads"), "--format", "json"]);
    let yaml = tmc_sim(&["place", &example("regulated-workloads"), "--format", "yaml"]);
    assert_eq!(yaml.status.code(), Some(0), "{}", stderr(&yaml));
    let from_yaml: Value = serde_saphyr::from_str(&stdout(&yaml)).expect("valid YAML");
    let from_json: Value = serde_json::from_str(&stdout(&json)).expect("valid JSON");
    assert_plan_document(&from_yaml);
    assert_eq!(from_yaml, from_json, "YAML and JSON carry the same plan");
}

#[test]
fn table_output_has_header_rows_explanations_and_summary() {
    let o = tmc_sim(&["place", &example("failover-fallback"), "--format", "table"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["WORKLOAD", "PHASE", "REPLICAS", "DECISIONS"]);
    assert!(out.contains("shop/cart") && out.contains("use1-a=2"), "{out}");
    assert!(out.contains("\n    no cluster affinity group could hold all replicas"), "explanation indented: {out}");
    assert!(out.ends_with("6 workloads: 5 Scheduled, 1 PartiallyScheduled, 0 Unschedulable\n"), "{out}");
    // Table is the default format.
    let default = tmc_sim(&["place", &example("failover-fallback")]);
    assert_eq!(stdout(&default), out);
}

#[test]
fn no_arguments_runs_the_embedded_default() {
    let o = tmc_sim(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("embedded default scenario"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("WORKLOAD"), "{out}");
    assert!(out.contains("shop/storefront") && out.contains("8 workloads:"), "{out}");
    let explicit = tmc_sim(&["place", &example("multi-region-webshop")]);
    assert_eq!(stdout(&explicit), out, "the default is multi-region-webshop");
}

/// Runs `place` on `text` and returns stderr, asserting exit code 2 and an empty stdout.
fn rejected(label: &str, text: &str) -> String {
    let file = TempScenario::new(label, text);
    let o = tmc_sim(&["place", file.path()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{label}: expected exit 2, stderr: {err}");
    assert!(stdout(&o).is_empty(), "{label}: nothing on stdout when the input is bad");
    assert!(err.starts_with("error: "), "{label}: {err}");
    assert!(err.contains(file.path()), "{label}: the message names the file: {err}");
    err
}

#[test]
fn bad_inputs_exit_2_naming_the_field() {
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "unknown-field",
            "clusters:\n- name: a\n  capcity: {cpu: \"1\"}\n",
            &["clusters[0].capcity", "unknown field `capcity`", "line 3"],
        ),
        ("negative-replicas", "workloads:\n- name: w\n  replicas: -3\n", &["workloads[0].replicas", "-3"]),
        ("fractional-replicas", "workloads:\n- name: w\n  replicas: 2.5\n", &["workloads[0].replicas", "2.5"]),
        ("text-replicas", "workloads:\n- name: w\n  replicas: three\n", &["workloads[0].replicas", "\"three\""]),
        (
            "malformed-quantity",
            "clusters:\n- name: a\n  capacity: {memory: 12Gx}\n",
            &["clusters[0].capacity.memory", "12Gx"],
        ),
        (
            "duplicate-cluster",
            "clusters:\n- name: eu-1\n- name: us-1\n- name: eu-1\n",
            &["clusters[2].name: duplicate cluster name \"eu-1\" (first at clusters[0])"],
        ),
        (
            "duplicate-workload",
            "workloads:\n- {name: web, namespace: shop}\n- {name: web, namespace: shop}\n",
            &["workloads[1].name: duplicate workload shop/web (first at workloads[0])"],
        ),
        (
            "unknown-operator",
            "workloads:\n- name: w\n  clusterAffinity:\n    labelSelector:\n      matchExpressions:\n      - {key: env, operator: Near, values: [prod]}\n",
            &["workloads[0].clusterAffinity.labelSelector.matchExpressions[0].operator", "Near"],
        ),
        (
            "max-below-min-groups",
            "workloads:\n- name: w\n  spreadConstraints:\n  - {topologyKey: region, minGroups: 2, maxGroups: 1}\n",
            &["workloads[0].spreadConstraints[0]: maxGroups 1 < minGroups 2"],
        ),
        ("not-yaml", "clusters: [unclosed\n", &["invalid scenario", "line"]),
    ];
    for (label, text, needles) in cases {
        let err = rejected(label, text);
        for needle in needles {
            assert!(err.contains(needle), "{label}: {needle:?} not in {err:?}");
        }
    }
}

#[test]
fn every_validation_problem_is_reported_at_once() {
    let err = rejected(
        "many-problems",
        "clusters:\n- name: a\n- name: a\nworkloads:\n- name: w\n  numberOfClusters: 0\n  spreadConstraints:\n  - {topologyKey: region, minGroups: 2, maxGroups: 1}\n",
    );
    assert!(err.contains("3 problem(s) in the input"), "{err}");
    for needle in [
        "clusters[1].name: duplicate cluster name",
        "workloads[0].numberOfClusters: must be >= 1",
        "workloads[0].spreadConstraints[0]: maxGroups 1 < minGroups 2",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

#[test]
fn missing_file_exits_2() {
    let path = std::env::temp_dir().join(format!("tmc-sim-cli-{}-does-not-exist.yaml", std::process::id()));
    let shown = path.to_string_lossy().into_owned();
    let o = tmc_sim(&["place", &shown]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&format!("cannot read {shown}")), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn bad_flags_exit_2() {
    let o = tmc_sim(&["place", &example("gpu-training"), "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unexpected argument '--frobnicate'"), "{}", stderr(&o));

    let o = tmc_sim(&["place", &example("gpu-training"), "--format", "xml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'xml' for '--format"), "{}", stderr(&o));

    let o = tmc_sim(&["place"]);
    assert_eq!(o.status.code(), Some(2), "a scenario path is required");
    assert!(stderr(&o).contains("<SCENARIO>"), "{}", stderr(&o));

    let o = tmc_sim(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unrecognized subcommand 'frobnicate'"), "{}", stderr(&o));
}

#[test]
fn help_and_version_exit_0() {
    let o = tmc_sim(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("place"), "{}", stdout(&o));
    let o = tmc_sim(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("tmc-sim "), "{}", stdout(&o));
}
