//! # tmc-kube-adapter
//!
//! Kubernetes and kcp controllers for tmc, as a thin kube-rs adapter around `tmc-core`.
//!
//! - [`crd`]: the `tmc.kcp.io/v1alpha1` APIs, `ClusterRegistration` (cluster-scoped) and
//!   `WorkloadPlacement` (namespaced), generated from Rust types that embed the core's model.
//! - [`mapping`] and [`planner`]: pure translation between objects and the core. All placements of
//!   a workspace are planned jointly by one [`tmc_core::solve`] call with their previous decisions
//!   (read from status), so concurrent placements never overcommit a cluster. The controller rules
//!   (heartbeat readiness, drain, default not-ready toleration, the next wakeup) are those of
//!   [`tmc_core::controller::ControllerConfig`], the same the simulator uses.
//! - [`controller`]: the kube-runtime controllers (placement and cluster registration), their
//!   shared [`controller::Context`], leader election and the run loop.
//! - [`kcp`]: addressing plain Kubernetes, one kcp workspace, or all workspaces bound to an
//!   APIExport through its virtual workspace (`/clusters/*`).
//! - [`discovery`]: probing a physical cluster through a kubeconfig Secret.
//! - [`metrics`] and [`http`]: Prometheus metrics, `/healthz` and `/readyz`.
//! - [`crdgen`]: the CRD YAML in `deploy/crds/`, checked for staleness and structural schemas.
//!
//! The adapter holds no placement logic of its own; see `ARCHITECTURE.md`.

pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod discovery;
pub mod features;
pub mod http;
pub mod kcp;
pub mod mapping;
pub mod metrics;
pub mod planner;

pub use controller::{Context, Error, Options, run};
