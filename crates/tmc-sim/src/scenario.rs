//! Scenario files: YAML (or JSON, a subset of YAML) with `clusters`, `workloads` and optionally
//! `previous` and `now`, in the schema of [`tmc_core::PlacementInput`], extended for simulation
//! with an optional `name`, `controller` block ([`tmc_core::controller::ControllerConfig`]),
//! `duration` and `timeline` (see [`crate::timeline`]).
//!
//! Errors name the field path (`workloads[3].replicas`, `timeline[2].at`) and the line and column;
//! a file that parses is then validated, and every semantic problem is reported at once.

use std::fmt;

use serde::{Deserialize, Serialize};
use tmc_core::{
    Cluster, Placement, PlacementInput, ValidationError, ValidationErrors, Workload, controller::ControllerConfig,
    validate,
};

use crate::timeline::{SimTime, Timeline, TimelineEntry};

/// The embedded default scenario that `tmc-sim` runs with no arguments: a 40-cluster fleet with
/// 200 workloads, a region outage and its recovery.
pub const DEFAULT_SCENARIO: &str = include_str!("../../../examples/scenarios/default/scenario.yaml");

/// A scenario file: the initial fleet and workloads, and optionally what happens to them over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// A title for outputs and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The clusters at the start.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// The workloads at the start.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Decisions in force at the start, in the output's shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Placement>,
    /// The clock at the start of the run, in seconds (default 0). Timeline times are offsets from
    /// it; taints' `addedAt` and `notReadySince` are on this clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<i64>,
    /// How the controller behaves (heartbeat threshold, default not-ready toleration, eviction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerConfig>,
    /// Length of the run; without it the run ends once the last event and every eviction it
    /// causes have happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<SimTime>,
    /// Events over time, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
}

impl Scenario {
    /// The initial state as one solver input, as `tmc-sim place` solves it.
    pub fn input(&self) -> PlacementInput {
        PlacementInput {
            clusters: self.clusters.clone(),
            workloads: self.workloads.clone(),
            previous: self.previous.clone(),
            now: self.now,
        }
    }

    /// The controller configuration (the defaults when the scenario has no `controller` block).
    pub fn controller_config(&self) -> ControllerConfig {
        self.controller.clone().unwrap_or_default()
    }

    /// Checks everything: the initial input ([`tmc_core::validate()`]), the controller block and the
    /// timeline against the fleet of its time. Returns the compiled timeline or every problem.
    pub fn check(&self) -> Result<Timeline, ValidationErrors> {
        let input = self.input();
        let mut errors = validate(&input).err().map(|e| e.0).unwrap_or_default();
        let cfg = self.controller_config();
        if cfg.heartbeat_threshold_seconds <= 0 {
            errors.push(ValidationError {
                path: "controller.heartbeatThresholdSeconds".into(),
                message: format!("must be > 0, got {}", cfg.heartbeat_threshold_seconds),
            });
        }
        if let Some(s) = cfg.default_not_ready_toleration_seconds
            && s < 0
        {
            errors.push(ValidationError {
                path: "controller.defaultNotReadyTolerationSeconds".into(),
                message: format!("must be >= 0, got {s}"),
            });
        }
        let timeline = match Timeline::compile(&self.timeline, &input, self.duration.map(SimTime::seconds)) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.extend(e.0);
                None
            }
        };
        match timeline {
            Some(t) if errors.is_empty() => Ok(t),
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The text is not valid YAML or does not fit the schema.
    #[error("{}", .0)]
    Parse(ParseError),
    /// The scenario parsed but breaks semantic rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// A syntax or schema error with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Field path such as `workloads[1].replicas`, when known.
    pub path: Option<String>,
    /// 1-based line and column, when known.
    pub line_column: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid scenario")?;
        match (&self.path, self.line_column) {
            (Some(p), Some((l, c))) => write!(f, " at {p} (line {l}, column {c})")?,
            (Some(p), None) => write!(f, " at {p}")?,
            (None, Some((l, c))) => write!(f, " at line {l}, column {c}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses a scenario without semantic validation and returns its initial state (any timeline is
/// parsed, and must fit the schema, but is not checked).
pub fn parse_scenario(text: &str) -> Result<PlacementInput, ParseError> {
    parse_sim_scenario(text).map(|s| s.input())
}

/// serde-saphyr's options with its size limits (parser events, nodes, scalar bytes) raised to a
/// small multiple of the length of `text`, so that large fleets load (`tmc-sim generate` writes
/// scenarios of any size; the default 250,000 nodes stop below 3,000 generated workloads on 100
/// clusters). These limits stay linear in the input, so nothing is amplified; what can amplify a
/// document, aliases and anchors, keeps the default limits, as do nesting depth and the number of
/// documents.
fn yaml_options(text: &str) -> serde_saphyr::Options {
    // Every node and event takes at least one byte of input, except a tag's display form, which
    // may be a few times longer than its shorthand (`!!str`).
    let scaled = text.len().saturating_mul(4);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = budget.max_events.max(scaled);
    budget.max_nodes = budget.max_nodes.max(scaled);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(scaled);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses a whole scenario, timeline included, without semantic validation.
pub fn parse_sim_scenario(text: &str) -> Result<Scenario, ParseError> {
    match serde_saphyr::from_str_with_options::<Scenario>(text, yaml_options(text)) {
        Ok(scenario) => Ok(scenario),
        Err(yaml_err) => {
            let line_column = yaml_err.location().map(|l| (l.line(), l.column()));
            // Re-read through a generic tree to learn the field path; its message is usually
            // clearer too ("invalid value: integer `-1`, expected u32").
            let (path, message) =
                match serde_saphyr::from_str_with_options::<serde_json::Value>(text, yaml_options(text)) {
                    Ok(tree) => match serde_path_to_error::deserialize::<_, Scenario>(tree) {
                        Err(e) => {
                            let path = e.path().to_string();
                            let path = (path != ".").then_some(path);
                            (path, e.into_inner().to_string())
                        }
                        Ok(_) => (None, first_line(&yaml_err.to_string())),
                    },
                    Err(_) => (None, first_line(&yaml_err.to_string())),
                };
            Err(ParseError { path, line_column, message })
        }
    }
}

/// Strips serde-saphyr's "error: line L column C: " prefix and source snippet.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
        _ => line.to_string(),
    }
}

/// Parses a scenario and validates its initial state (not its timeline: see
/// [`load_sim_scenario`]).
pub fn load_scenario(text: &str) -> Result<PlacementInput, ScenarioError> {
    let input = parse_scenario(text).map_err(ScenarioError::Parse)?;
    validate(&input)?;
    Ok(input)
}

/// Parses a scenario and validates all of it, timeline included ([`Scenario::check`]).
pub fn load_sim_scenario(text: &str) -> Result<Scenario, ScenarioError> {
    let scenario = parse_sim_scenario(text).map_err(ScenarioError::Parse)?;
    scenario.check()?;
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> ParseError {
        match parse_scenario(text) {
            Err(e) => e,
            Ok(v) => panic!("expected an error, parsed {v:?}"),
        }
    }

    #[test]
    fn schema_errors_name_the_field_and_line() {
        let e = parse_err("workloads:\n- name: a\n- name: b\n  replicas: -1\n");
        assert_eq!(e.path.as_deref(), Some("workloads[1].replicas"));
        assert_eq!(e.line_column, Some((4, 13)));
        assert!(e.message.contains("-1"), "{e}");

        let e = parse_err("workloads:\n- name: a\n  replicas: 1.5\n");
        assert_eq!(e.path.as_deref(), Some("workloads[0].replicas"));

        let e = parse_err("clusters:\n- name: a\n  capcity: {cpu: 1}\n");
        assert_eq!(e.path.as_deref(), Some("clusters[0].capcity"));
        assert!(e.message.contains("unknown field `capcity`"), "{e}");

        let e = parse_err("clusters:\n- name: a\n  capacity: {cpu: 12x}\n");
        assert_eq!(e.path.as_deref(), Some("clusters[0].capacity.cpu"));
        assert!(e.message.contains("12x"), "{e}");

        let e = parse_err(
            "workloads:\n- name: a\n  clusterAffinity:\n    labelSelector:\n      matchExpressions:\n      - {key: a, operator: Near}\n",
        );
        assert!(e.path.as_deref().is_some_and(|p| p.ends_with("matchExpressions[0].operator")), "{e}");
        assert!(e.message.contains("Near"), "{e}");

        let e = parse_err("clusters: [unclosed\n");
        assert!(e.line_column.is_some(), "{e}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = "clusters:\n- name: a\n- name: a\nworkloads:\n- name: w\n  spreadConstraints:\n  - {topologyKey: region, minGroups: 2, maxGroups: 1}\n";
        let Err(ScenarioError::Invalid(errors)) = load_scenario(text) else { panic!("expected validation errors") };
        let shown: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        assert!(
            shown.contains(&"clusters[1].name: duplicate cluster name \"a\" (first at clusters[0])".to_string()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"workloads[0].spreadConstraints[0]: maxGroups 1 < minGroups 2".to_string()),
            "{shown:?}"
        );
    }

    #[test]
    fn large_scenarios_load_and_aliases_keep_their_limits() {
        // 300,004 nodes: over serde-saphyr's default budget of 250,000.
        let text = format!("clusters:\n- name: a\n  capabilities: [{}x]\n", "x, ".repeat(300_000));
        let input = parse_scenario(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(input.clusters[0].capabilities.len(), 300_001);

        // What could amplify a small document keeps serde-saphyr's limits.
        let (defaults, budget) = (serde_saphyr::Budget::default(), yaml_options(&text).budget.expect("a budget"));
        assert!(budget.max_nodes >= 300_004 && budget.max_nodes <= 4 * text.len(), "linear in the input");
        assert_eq!(budget.max_aliases, defaults.max_aliases);
        assert_eq!(budget.max_anchors, defaults.max_anchors);
        assert_eq!(budget.max_recorded_anchor_events, defaults.max_recorded_anchor_events);
        assert_eq!(budget.max_recorded_anchor_bytes, defaults.max_recorded_anchor_bytes);
        assert_eq!(budget.max_depth, defaults.max_depth);
        assert_eq!(budget.max_documents, defaults.max_documents);
        assert_eq!(budget.max_merge_keys, defaults.max_merge_keys);
        assert!(budget.enforce_alias_anchor_ratio);
        let small = yaml_options("clusters: []\n").budget.expect("a budget");
        assert_eq!((small.max_nodes, small.max_events), (defaults.max_nodes, defaults.max_events), "never lower");
    }

    #[test]
    fn the_default_scenario_loads() {
        let input = load_scenario(DEFAULT_SCENARIO).unwrap_or_else(|e| panic!("{e}"));
        assert!(!input.clusters.is_empty() && !input.workloads.is_empty());
    }

    /// The problems `load_sim_scenario` reports for `timeline` on a two-cluster fleet, as text.
    fn timeline_problems(extra: &str, timeline: &str) -> String {
        let text = format!(
            "clusters:\n- name: a\n- name: b\n  taints: [{{key: k, effect: NoSchedule}}]\nworkloads:\n- {{name: w, namespace: shop}}\n{extra}timeline:\n{timeline}"
        );
        match load_sim_scenario(&text) {
            Ok(s) => panic!("expected problems, got {:?}", s.timeline),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn timeline_problems_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "- {at: -5, cordon: a}\n", "at timeline[0].at (line 8, column 8): negative time -5"),
            ("", "- {at: -5s, cordon: a}\n", "at timeline[0].at (line 8, column 8): negative time \"-5s\""),
            ("", "- {at: 1.5, cordon: a}\n", "timeline[0].at"),
            (
                "",
                "- {at: 5m, cordon: a}\n- {at: 10m, uncordon: a}\n- {at: 6m, cordon: b}\n",
                "timeline[2].at: 6m is before 10m (timeline[1].at)",
            ),
            (
                "",
                "- {at: 1m, taint: {cluster: c, key: x, effect: NoExecute}}\n",
                "timeline[0].taint.cluster: unknown cluster \"c\"",
            ),
            (
                "",
                "- {at: 1m, removeCluster: a}\n- {at: 2m, clusterDown: a}\n",
                "timeline[1].clusterDown: cluster \"a\" was removed at timeline[0]",
            ),
            ("", "- {at: 1m, removeWorkload: shop/x}\n", "timeline[0].removeWorkload: unknown workload shop/x"),
            (
                "",
                "- {at: 1m, removeWorkload: shop/w}\n- {at: 2m, scale: {workload: shop/w, replicas: 3}}\n",
                "timeline[1].scale.workload: workload shop/w was removed at timeline[0]",
            ),
            (
                "",
                "- {at: 1m, scale: {workload: w, replicas: 3}}\n",
                "timeline[0].scale.workload: unknown workload default/w",
            ),
            (
                "",
                "- {at: 1m}\n",
                "timeline[0]: needs exactly one event (clusterDown, clusterUp, taint, untaint, cordon, uncordon, drain, capacityChange, addCluster, removeCluster, addWorkload, removeWorkload, scale); found none",
            ),
            ("", "- {at: 1m, addCluster: {name: a}}\n", "timeline[0].addCluster.name: cluster \"a\" already exists"),
            (
                "",
                "- {at: 1m, addCluster: {name: c, taints: [{key: \"\", effect: NoSchedule}]}}\n",
                "timeline[0].addCluster.taints[0].key: taint key must not be empty",
            ),
            (
                "",
                "- {at: 1m, addWorkload: {name: v, numberOfClusters: 0}}\n",
                "timeline[0].addWorkload.numberOfClusters: must be >= 1",
            ),
            (
                "",
                "- {at: 1m, addWorkload: {name: w, namespace: shop}}\n",
                "timeline[0].addWorkload.name: workload shop/w already exists",
            ),
            (
                "duration: 10m\n",
                "- {at: 11m, cordon: a}\n",
                "timeline[0].at: 11m is after the end of the run (duration 10m)",
            ),
            ("", "- {at: 1m, clusterUp: a}\n", "timeline[0].clusterUp: cluster \"a\" is not down"),
            (
                "",
                "- {at: 1m, clusterDown: a}\n- {at: 2m, clusterDown: a}\n",
                "timeline[1].clusterDown: cluster \"a\" is already down",
            ),
            (
                "",
                "- {at: 1m, untaint: {cluster: b, key: k, effect: NoExecute}}\n",
                "timeline[0].untaint: cluster \"b\" has no taint k:NoExecute at this time",
            ),
            (
                "",
                "- {at: 1m, taint: {cluster: b, key: k, effect: NoSchedule}}\n",
                "timeline[0].taint: cluster \"b\" already has a taint k:NoSchedule",
            ),
            (
                "",
                "- {at: 1m, capacityChange: {cluster: a}}\n",
                "timeline[0].capacityChange: needs capacity or allocated",
            ),
            ("", "- {at: 1m, uncordon: a}\n", "timeline[0].uncordon: cluster \"a\" is not cordoned"),
            (
                "controller: {heartbeatThresholdSeconds: 0}\n",
                "- {at: 1m, cordon: a}\n",
                "controller.heartbeatThresholdSeconds: must be > 0, got 0",
            ),
            ("controller: {heartbeatSeconds: 5}\n", "- {at: 1m, cordon: a}\n", "at controller.heartbeatSeconds"),
            (
                "",
                "- {at: 1m, clusterDwn: a}\n",
                "at timeline[0].clusterDwn (line 8, column 12): unknown field `clusterDwn`",
            ),
            ("", "- {at: 1m, scale: {workload: shop/w, replicas: -1}}\n", "at timeline[0].scale.replicas"),
            ("", "- {at: 1m, drain: {cluster: a, gracePeriod: 2x}}\n", "at timeline[0].drain.gracePeriod"),
        ];
        for (extra, timeline, needle) in cases {
            let shown = timeline_problems(extra, timeline);
            assert!(shown.contains(needle), "{timeline:?}:\n  want {needle:?}\n  got  {shown:?}");
        }
    }

    #[test]
    fn every_timeline_problem_is_reported_at_once() {
        let shown = timeline_problems(
            "",
            "- {at: 5m, clusterDown: x}\n- {at: 1m, cordon: a}\n- {at: 6m, scale: {workload: shop/nope, replicas: 1}}\n",
        );
        assert!(shown.starts_with("3 problem(s) in the input:"), "{shown}");
        for needle in ["timeline[0].clusterDown", "timeline[1].at", "timeline[2].scale.workload"] {
            assert!(shown.contains(needle), "{needle}: {shown}");
        }
    }

    #[test]
    fn a_timeline_with_every_event_loads_and_place_ignores_it() {
        let text = "clusters:\n- name: a\n- name: b\n  ready: false\nworkloads:\n- {name: w}\nduration: 2h\ntimeline:\n\
            - {at: 0, clusterDown: a, label: start dark}\n- {at: 90s, clusterUp: a}\n- {at: 90s, clusterUp: b}\n\
            - {at: 2m, taint: {cluster: a, key: k, value: v, effect: NoExecute}}\n- {at: 3m, untaint: {cluster: a, key: k}}\n\
            - {at: 4m, cordon: a}\n- {at: 5m, uncordon: a}\n- {at: 6m, drain: {cluster: b, gracePeriod: 1m}}\n\
            - {at: 7m, uncordon: b}\n- {at: 8m, capacityChange: {cluster: a, capacity: {cpu: \"4\"}, allocated: {cpu: \"1\"}}}\n\
            - {at: 9m, addCluster: {name: c}}\n- {at: 10m, removeCluster: c}\n- {at: 11m, addCluster: {name: c}}\n\
            - {at: 12m, addWorkload: {name: v, namespace: x}}\n- {at: 13m, scale: {workload: x/v, replicas: 4}}\n\
            - {at: 1h, removeWorkload: x/v}\n";
        let scenario = load_sim_scenario(text).unwrap_or_else(|e| panic!("{e}"));
        let timeline = scenario.check().unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = timeline.events.iter().map(|e| e.event.kind()).collect();
        assert_eq!(kinds.len(), 16);
        assert_eq!(timeline.events[0].label.as_deref(), Some("start dark"));
        assert_eq!(timeline.events[7].event.describe(), "drain b (evict after 1m)");
        assert_eq!(timeline.events.last().map(|e| e.at), Some(3600));
        let input = load_scenario(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(input.workloads.len(), 1, "place sees the start only");
    }
}
