//! # tmc-sim
//!
//! The offline side of tmc: load a scenario (a fleet, workloads and optionally previous
//! decisions), solve it with `tmc-core`, and render the plan as a table, JSON or YAML.
//! The binary `tmc-sim` is a thin CLI over this library.

pub mod render;
pub mod scenario;

pub use scenario::{DEFAULT_SCENARIO, ScenarioError, load_scenario, parse_scenario};
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
