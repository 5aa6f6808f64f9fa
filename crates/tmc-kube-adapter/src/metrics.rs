//! Prometheus metrics (OpenMetrics text at `/metrics`).

use std::sync::{
    Mutex,
    atomic::{AtomicI64, AtomicU64},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels naming a controller (`placement` or `registration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller.
    pub controller: String,
}

/// Labels of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: String,
    /// The error kind ([`crate::Error::metric_label`]).
    pub error: String,
}

/// Labels of a workspace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkspaceLabels {
    /// The workspace (kcp logical cluster; empty on plain Kubernetes).
    pub workspace: String,
}

/// The metrics of one controller process.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Reconciles started.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that failed.
    pub errors: Family<ErrorLabels, Counter>,
    /// Time of one joint solve of a workspace, in seconds.
    pub solve_seconds: Histogram,
    /// Status writes.
    pub status_writes: Family<ControllerLabels, Counter<u64, AtomicU64>>,
    /// Decisions (placement, cluster) per workspace.
    pub decisions: Family<WorkspaceLabels, Gauge<i64, AtomicI64>>,
    /// Placements not fully placed per workspace.
    pub unschedulable: Family<WorkspaceLabels, Gauge<i64, AtomicI64>>,
    /// Events recorded.
    pub events: Counter,
    /// 1 while this process holds the leader lease (or runs without leader election).
    pub leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `tmc` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tmc");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            reconciles: Family::default(),
            errors: Family::default(),
            solve_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            status_writes: Family::default(),
            decisions: Family::default(),
            unschedulable: Family::default(),
            events: Counter::default(),
            leader: Gauge::default(),
        };
        registry.register("reconciles", "Reconciles started", m.reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by error kind", m.errors.clone());
        registry.register("solve_duration_seconds", "Joint solve of one workspace", m.solve_seconds.clone());
        registry.register("status_writes", "Status subresource writes (server-side apply)", m.status_writes.clone());
        registry.register("decisions", "Decisions (placement, cluster) per workspace", m.decisions.clone());
        registry.register(
            "unschedulable_placements",
            "Placements not fully placed (PartiallyScheduled, Unschedulable, invalid) per workspace",
            m.unschedulable.clone(),
        );
        registry.register("events", "Kubernetes Events recorded", m.events.clone());
        registry.register("leader", "1 while this process is the leader", m.leader.clone());
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// Status writes by `controller` so far.
    pub fn status_writes_of(&self, controller: &str) -> u64 {
        self.status_writes.get_or_create(&ControllerLabels { controller: controller.into() }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_openmetrics_text() {
        let m = Metrics::new();
        m.reconciles.get_or_create(&ControllerLabels { controller: "placement".into() }).inc();
        m.solve_seconds.observe(0.002);
        m.unschedulable.get_or_create(&WorkspaceLabels { workspace: "root:a".into() }).set(2);
        let text = m.render();
        assert!(text.contains("tmc_reconciles_total{controller=\"placement\"} 1"), "{text}");
        assert!(text.contains("tmc_solve_duration_seconds_count 1"), "{text}");
        assert!(text.contains("tmc_unschedulable_placements{workspace=\"root:a\"} 2"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
