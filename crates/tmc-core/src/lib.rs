//! # tmc-core
//!
//! The placement model and solver of tmc: which clusters get how many replicas of which workload.
//!
//! This crate is pure: no I/O, no clock, no async runtime, no global state. The same
//! [`PlacementInput`] always gives the same [`Plan`], bit for bit, whatever the order of its
//! clusters and workloads. Invalid input is a [`ValidationErrors`] naming every problem and its
//! field path, never a panic.
//!
//! ```
//! use tmc_core::{Cluster, PlacementInput, Quantity, Workload, solve};
//!
//! let mut cluster = Cluster { name: "eu-1".into(), ..Cluster::default() };
//! cluster.capacity.insert("cpu".into(), Quantity::parse("8").unwrap());
//! let mut web = Workload::named("web");
//! web.replicas = 3;
//! web.resources.insert("cpu".into(), Quantity::parse("500m").unwrap());
//! let input = PlacementInput { clusters: vec![cluster], workloads: vec![web], previous: vec![], now: None };
//! let plan = solve(&input).unwrap();
//! assert_eq!(plan.placements[0].decisions[0].replicas, 3);
//! ```
//!
//! Semantics are documented on the model types ([`Workload`], [`Cluster`], [`SpreadConstraint`],
//! [`ReplicaScheduling`], [`taint`], [`selector`]) and on [`solve`].

mod cluster;
pub mod controller;
mod explain;
mod placement;
pub mod quantity;
pub mod resources;
pub mod selector;
mod solver;
pub mod taint;
pub mod validate;
mod workload;

pub use cluster::{Cluster, Location};
pub use placement::{ClusterRejection, Decision, Phase, Placement, PlacementInput, Plan, Reason, ReasonCount};
pub use quantity::{Quantity, QuantityError};
pub use resources::ResourceList;
pub use selector::{
    AffinityMismatch, ClusterAffinity, LabelSelector, LabelSelectorRequirement, LocationSelector, SelectorOperator,
};
#[cfg(feature = "exact")]
pub use solver::exact::{ExactError, ExactOptions, ExactSolver, solve_exact};
pub use solver::{
    cluster_rejections, cluster_scores,
    placer::{Placer, Update},
    solve, solve_validated,
};
pub use taint::{Taint, TaintEffect, Toleration, TolerationOperator};
pub use validate::{ValidationError, ValidationErrors, validate, validate_workload};
pub use workload::{
    ClusterWeight, Division, Preemption, Preference, Prioritizer, PrioritizerName, Rebalance, RebalancePolicy,
    ReplicaScheduling, ReplicaSchedulingType, SpreadConstraint, Workload, WorkloadKey,
};
