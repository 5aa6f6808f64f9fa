//! # tmc-sim
//!
//! The offline side of tmc: load a scenario (a fleet, workloads and optionally previous
//! decisions and a timeline of events), then
//! - place it once with `tmc-core` and render the plan as a table, JSON or YAML ([`render`]);
//! - replay its timeline on a virtual clock exactly as the controller would ([`sim`]), measure
//!   every step ([`metrics`]) and show the run as a summary ([`summary`]), JSON or an HTML report
//!   ([`report`]);
//! - explain one workload cluster by cluster, with the smallest verified changes that would place
//!   it fully ([`explain`]);
//! - compare the decisions of two scenarios and the moves between them ([`diff`]).
//!
//! The binary `tmc-sim` is a thin CLI over this library.

pub mod diff;
pub mod explain;
pub mod json;
pub mod metrics;
pub mod render;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod summary;
pub mod timeline;

pub use scenario::{
    DEFAULT_SCENARIO, Scenario, ScenarioError, load_scenario, load_sim_scenario, parse_scenario, parse_sim_scenario,
};
pub use sim::{Run, SimError, simulate};
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
