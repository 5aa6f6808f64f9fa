//! Scenario files: YAML (or JSON, a subset of YAML) with `clusters`, `workloads` and optionally
//! `previous`, in the schema of [`tmc_core::PlacementInput`].
//!
//! Errors name the field path (`workloads[3].replicas`) and the line and column; a file that
//! parses is then validated, and every semantic problem is reported at once.

use std::fmt;

use tmc_core::{PlacementInput, ValidationErrors, validate};

/// The embedded default scenario that `tmc-sim` runs with no arguments.
pub const DEFAULT_SCENARIO: &str = include_str!("../../../examples/scenarios/multi-region-webshop/scenario.yaml");

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

/// Parses a scenario without semantic validation.
pub fn parse_scenario(text: &str) -> Result<PlacementInput, ParseError> {
    match serde_saphyr::from_str::<PlacementInput>(text) {
        Ok(input) => Ok(input),
        Err(yaml_err) => {
            let line_column = yaml_err.location().map(|l| (l.line(), l.column()));
            // Re-read through a generic tree to learn the field path; its message is usually
            // clearer too ("invalid value: integer `-1`, expected u32").
            let (path, message) = match serde_saphyr::from_str::<serde_json::Value>(text) {
                Ok(tree) => match serde_path_to_error::deserialize::<_, PlacementInput>(tree) {
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

/// Parses and validates a scenario.
pub fn load_scenario(text: &str) -> Result<PlacementInput, ScenarioError> {
    let input = parse_scenario(text).map_err(ScenarioError::Parse)?;
    validate(&input)?;
    Ok(input)
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
    fn the_default_scenario_loads() {
        let input = load_scenario(DEFAULT_SCENARIO).unwrap_or_else(|e| panic!("{e}"));
        assert!(!input.clusters.is_empty() && !input.workloads.is_empty());
    }
}
