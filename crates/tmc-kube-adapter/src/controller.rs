//! The controllers: placement and cluster registration, leader election and the run loop.
//!
//! **Placement.** A kube-runtime [`Controller`] over WorkloadPlacements that also watches
//! ClusterRegistrations and the workload kinds placements select (Deployments, ...). Any change
//! re-plans the workspace it belongs to: one reconcile plans *every* placement of the workspace
//! with one [`tmc_core::solve`] ([`crate::planner`]) under a per-workspace lock, and writes the
//! statuses that changed with server-side apply. Reconciles of other placements of the same
//! workspace then find nothing to write. Each reconcile requeues itself for the next time the
//! plan can change by itself (a heartbeat goes stale, a toleration runs out:
//! [`tmc_core::controller::ControllerConfig::next_wakeup`]).
//!
//! **Cluster registration.** A controller over ClusterRegistrations that also watches placements
//! (to report what is placed where). It probes clusters that have a kubeconfig Secret, and writes
//! conditions (`Ready`, `HeartbeatHealthy`, `Schedulable`), the automatic taints and the placed
//! workloads.
//!
//! The stores lag behind this controller's own writes; statuses written but not yet seen in the
//! store are kept in memory (keyed by uid and resourceVersion) and take precedence, so a stale
//! cache never makes the planner re-decide from old decisions.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::{FutureExt, StreamExt, TryStreamExt, future::Shared};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    core::ApiResource,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerRunConfig},
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store, store::Writer},
        utils::ResetTimerBackoff,
        watcher::{self, ExponentialBackoff},
    },
};
use serde::de::DeserializeOwned;
use tmc_core::{Taint, WorkloadKey, controller::ControllerConfig};

use crate::{
    crd::{
        ClusterRegistration, ClusterRegistrationStatus, Condition, PlacedWorkload, PlacementPhase, WorkloadPlacement,
        WorkloadPlacementStatus,
    },
    discovery,
    http::Health,
    kcp::{self, Clients},
    mapping::{self, set_condition, time_at, unix_seconds, workspace_of},
    metrics::{ControllerLabels, ErrorLabels, Metrics, WorkspaceLabels},
    planner::{WorkspaceSnapshot, plan_workspace},
};

/// Name of the placement controller (metrics label, events).
pub const PLACEMENT: &str = "placement";
/// Name of the cluster registration controller (metrics label, events).
pub const REGISTRATION: &str = "registration";

/// At most this many workloads are listed in a ClusterRegistration's `status.placements`.
pub const MAX_LISTED_PLACEMENTS: usize = 200;

/// How soon a reconcile that found the caches not yet synced tries again.
const CACHE_WAIT: Duration = Duration::from_millis(100);

/// Errors of a reconcile or of the run loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kube API: {0}")]
    Kube(#[from] kube::Error),
    /// A workspace client could not be built.
    #[error(transparent)]
    Kcp(#[from] kcp::KcpError),
    /// A status could not be serialized.
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// This process lost the leader lease; it stopped writing.
    #[error("lost the leader lease")]
    LostLeadership,
}

impl Error {
    /// A short label for the `reconcile_errors` metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict".into(),
            Error::Kube(kube::Error::Api(e)) if e.code >= 500 => "server".into(),
            Error::Kube(kube::Error::Api(_)) => "api".into(),
            Error::Kube(_) => "transport".into(),
            Error::Kcp(_) => "kcp".into(),
            Error::Serialize(_) => "serialize".into(),
            Error::LeaderElection(_) => "leader_election".into(),
            Error::LostLeadership => "lost_leadership".into(),
        }
    }
}

/// Leader election on a `coordination.k8s.io/v1` Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This process's identity (pod name).
    pub identity: String,
    /// Seconds a lease is valid after its last renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The controller rules shared with the simulator.
    pub config: ControllerConfig,
    /// Kinds whose objects placements select and derive replicas from (watched).
    pub workload_kinds: Vec<ApiResource>,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Instance name reported on Events.
    pub instance: String,
    /// Leader election; `None` runs without (a single replica).
    pub leader_election: Option<LeaderElection>,
    /// How often clusters with a kubeconfig Secret are probed.
    pub probe_interval: Duration,
    /// Requeue delay after a failed reconcile.
    pub error_requeue: Duration,
    /// Longest time between two reconciles of an object.
    pub resync: Duration,
    /// Reconciles running at once per controller.
    pub concurrency: u16,
    /// First delay before a failed list or watch is retried; doubles up to
    /// [`Self::watch_backoff_max`] (client-go's reflector uses 800 ms and 30 s).
    pub watch_backoff_initial: Duration,
    /// Longest delay between list or watch retries.
    pub watch_backoff_max: Duration,
    /// After shutdown is requested, how long running reconciles may take to finish before the
    /// controllers are dropped (also bounds shutdown while the caches never synced).
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: ControllerConfig::default(),
            workload_kinds: default_workload_kinds(),
            field_manager: "tmc-controller".into(),
            instance: "tmc-controller".into(),
            leader_election: None,
            probe_interval: Duration::from_secs(20),
            error_requeue: Duration::from_secs(5),
            resync: Duration::from_secs(300),
            concurrency: 4,
            watch_backoff_initial: Duration::from_millis(800),
            watch_backoff_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Deployments, StatefulSets, ReplicaSets (`apps/v1`) and Jobs (`batch/v1`).
pub fn default_workload_kinds() -> Vec<ApiResource> {
    use kube::core::GroupVersionKind as Gvk;
    [("apps", "v1", "Deployment"), ("apps", "v1", "StatefulSet"), ("apps", "v1", "ReplicaSet"), ("batch", "v1", "Job")]
        .iter()
        .map(|(g, v, k)| ApiResource::from_gvk(&Gvk::gvk(g, v, k)))
        .collect()
}

/// Parses `group/version/Kind` (`apps/v1/Deployment`; core kinds as `v1/Kind`).
pub fn parse_workload_kind(s: &str) -> Option<ApiResource> {
    use kube::core::GroupVersionKind as Gvk;
    let parts: Vec<&str> = s.trim().split('/').collect();
    let gvk = match parts.as_slice() {
        [v, k] if !v.is_empty() && !k.is_empty() => Gvk::gvk("", v, k),
        [g, v, k] if !g.is_empty() && !v.is_empty() && !k.is_empty() => Gvk::gvk(g, v, k),
        _ => return None,
    };
    Some(ApiResource::from_gvk(&gvk))
}

/// A status this process wrote, with the object's uid and the resourceVersion the write returned.
#[derive(Clone, Debug)]
struct Written<S> {
    uid: Option<String>,
    resource_version: Option<String>,
    status: S,
}

impl<S: PartialEq> Written<S> {
    /// Whether the cached object (`uid`, `resource_version`, `status`) does not show this write
    /// yet, so the write is the newer truth. resourceVersions are opaque, but Kubernetes and kcp
    /// use increasing integers: when both parse, a newer cached object (another writer, such as a
    /// heartbeating agent) wins; otherwise any difference counts as not caught up.
    fn newer_than(&self, uid: Option<String>, resource_version: Option<String>, status: Option<&S>) -> bool {
        if uid != self.uid || status == Some(&self.status) || resource_version == self.resource_version {
            return false;
        }
        let parse = |rv: &Option<String>| rv.as_deref().and_then(|v| v.parse::<u64>().ok());
        match (parse(&resource_version), parse(&self.resource_version)) {
            (Some(cached), Some(written)) => cached < written,
            _ => true,
        }
    }
}

/// What the reconcilers of one endpoint share.
pub struct Context {
    clients: Clients,
    options: Options,
    metrics: Arc<Metrics>,
    placements: Store<WorkloadPlacement>,
    registrations: Store<ClusterRegistration>,
    objects: Vec<Store<DynamicObject>>,
    written: Mutex<HashMap<(String, WorkloadKey), Written<WorkloadPlacementStatus>>>,
    written_registrations: Mutex<HashMap<(String, String), Written<ClusterRegistrationStatus>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("clients", &self.clients).finish_non_exhaustive()
    }
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl Context {
    fn lock_for(&self, workspace: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(workspace.to_string()).or_default().clone()
    }

    /// Whether every cache this controller reads has synced. Never waits: the caches are fed by
    /// the same controller's trigger streams, so a reconcile blocked on them could starve them.
    fn synced(&self) -> bool {
        fn ready<K>(s: &Store<K>) -> bool
        where
            K: kube::runtime::reflector::Lookup + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            s.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
        }
        ready(&self.placements) && ready(&self.registrations) && self.objects.iter().all(ready)
    }

    fn placements_of(&self, workspace: &str) -> Vec<WorkloadPlacement> {
        self.placements
            .state()
            .iter()
            .filter(|p| workspace_of(&p.metadata) == workspace)
            .map(|p| kcp::restore(p.as_ref()))
            .collect()
    }

    fn registrations_of(&self, workspace: &str) -> Vec<ClusterRegistration> {
        self.registrations
            .state()
            .iter()
            .filter(|r| workspace_of(&r.metadata) == workspace)
            .map(|r| kcp::restore(r.as_ref()))
            .collect()
    }

    /// Statuses written by this process that the placement store does not show yet.
    fn written_of(
        &self,
        workspace: &str,
        placements: &[WorkloadPlacement],
    ) -> BTreeMap<WorkloadKey, WorkloadPlacementStatus> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        let live: HashMap<WorkloadKey, &WorkloadPlacement> = placements
            .iter()
            .map(|p| (WorkloadKey::new(&p.namespace().unwrap_or_default(), &p.name_any()), p))
            .collect();
        written.retain(|(ws, key), w| {
            if ws != workspace {
                return true;
            }
            match live.get(key) {
                // Deleted, or replaced by a new object of the same name.
                None => false,
                Some(p) if w.newer_than(p.uid(), p.resource_version(), p.status.as_ref()) => {
                    out.insert(key.clone(), w.status.clone());
                    true
                }
                // The store caught up with this write (or moved past it).
                Some(_) => false,
            }
        });
        out
    }
}

fn labels(controller: &str) -> ControllerLabels {
    ControllerLabels { controller: controller.into() }
}

async fn publish(ctx: &Context, client: Client, reference: &k8s_openapi::api::core::v1::ObjectReference, ev: Event) {
    let recorder = Recorder::new(
        client,
        Reporter { controller: "tmc-controller".into(), instance: Some(ctx.options.instance.clone()) },
    );
    match recorder.publish(&ev, reference).await {
        Ok(()) => {
            ctx.metrics.events.inc();
        }
        Err(e) => tracing::warn!(error = %e, reason = %ev.reason, "recording an event"),
    }
}

fn requeue_after(ctx: &Context, now: i64, next: Option<i64>) -> Action {
    let resync = ctx.options.resync;
    let wait = next.map_or(resync, |t| Duration::from_secs(u64::try_from((t - now).max(1)).unwrap_or(1)).min(resync));
    Action::requeue(wait)
}

/// Plans the whole workspace of `wp` and writes the statuses that changed.
#[tracing::instrument(skip_all, fields(workspace = %workspace_of(&wp.metadata), placement = %wp.name_any()))]
async fn reconcile_placement(wp: Arc<WorkloadPlacement>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.get_or_create(&labels(PLACEMENT)).inc();
    if !ctx.synced() {
        // Planning from a partial cache could evict; wait for the caches.
        return Ok(Action::requeue(CACHE_WAIT));
    }
    let ws = workspace_of(&wp.metadata);
    let lock = ctx.lock_for(&ws);
    let _guard = lock.lock().await;
    let now = now_seconds();

    let placements = ctx.placements_of(&ws);
    let registrations = ctx.registrations_of(&ws);
    let mut objects = Vec::new();
    for store in &ctx.objects {
        for o in store.state().iter().filter(|o| workspace_of(&o.metadata) == ws) {
            match mapping::workload_object(&kcp::restore(o)) {
                Ok(w) => objects.push(w),
                Err(e) => {
                    tracing::warn!(object = %o.name_any(), error = %e, "ignoring an object with an invalid pod template")
                }
            }
        }
    }
    let written = ctx.written_of(&ws, &placements);
    let snapshot = WorkspaceSnapshot {
        registrations: registrations.iter().collect(),
        placements: placements.iter().collect(),
        objects: &objects,
        written: &written,
    };
    let started = Instant::now();
    let plan = plan_workspace(&snapshot, &ctx.options.config, now);
    ctx.metrics.solve_seconds.observe(started.elapsed().as_secs_f64());
    for (cluster, problem) in &plan.invalid_clusters {
        tracing::warn!(%cluster, %problem, "cluster left out of the plan");
    }

    let client = ctx.clients.for_workspace(&ws)?;
    let params = PatchParams::apply(&ctx.options.field_manager).force();
    let by_key: HashMap<WorkloadKey, &WorkloadPlacement> =
        placements.iter().map(|p| (WorkloadKey::new(&p.namespace().unwrap_or_default(), &p.name_any()), p)).collect();
    for s in plan.statuses.iter().filter(|s| s.changed) {
        let api: Api<WorkloadPlacement> = Api::namespaced(client.clone(), &s.namespace);
        let patch = serde_json::json!({
            "apiVersion": WorkloadPlacement::api_version(&()),
            "kind": WorkloadPlacement::kind(&()),
            "status": s.status,
        });
        let written = match api.patch_status(&s.name, &params, &Patch::Apply(&patch)).await {
            Ok(o) => o,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        ctx.metrics.status_writes.get_or_create(&labels(PLACEMENT)).inc();
        tracing::info!(placement = %s.key, phase = ?s.status.phase, decisions = ?s.status.decisions, "status written");
        ctx.written.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (ws.clone(), s.key.clone()),
            Written { uid: written.uid(), resource_version: written.resource_version(), status: s.status.clone() },
        );
        if let Some(p) = by_key.get(&s.key) {
            let reference = p.object_ref(&());
            for ev in &s.events {
                let event = Event {
                    type_: if ev.warning { EventType::Warning } else { EventType::Normal },
                    reason: ev.reason.clone(),
                    note: Some(ev.note.chars().take(1000).collect()),
                    action: "Place".into(),
                    secondary: None,
                };
                publish(&ctx, client.clone(), &reference, event).await;
            }
        }
    }
    let decisions: usize = plan.statuses.iter().map(|s| s.status.decisions.len()).sum();
    let unschedulable = plan
        .statuses
        .iter()
        .filter(|s| {
            matches!(s.status.phase, PlacementPhase::PartiallyScheduled | PlacementPhase::Unschedulable)
                || s.status.condition(mapping::SCHEDULED).is_some_and(|c| c.reason == "InvalidPolicy")
        })
        .count();
    let wl = WorkspaceLabels { workspace: ws.clone() };
    ctx.metrics.decisions.get_or_create(&wl).set(i64::try_from(decisions).unwrap_or(i64::MAX));
    ctx.metrics.unschedulable.get_or_create(&wl).set(i64::try_from(unschedulable).unwrap_or(i64::MAX));
    Ok(requeue_after(&ctx, now, plan.next_wakeup))
}

fn condition(type_: &str, ok: bool, reason: &str, message: String, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// Health, discovery and what is placed on one cluster.
#[tracing::instrument(skip_all, fields(workspace = %workspace_of(&reg.metadata), cluster = %reg.name_any()))]
async fn reconcile_registration(reg: Arc<ClusterRegistration>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.get_or_create(&labels(REGISTRATION)).inc();
    if !ctx.synced() {
        return Ok(Action::requeue(CACHE_WAIT));
    }
    let reg = kcp::restore(reg.as_ref());
    let ws = workspace_of(&reg.metadata);
    let name = reg.name_any();
    let now = now_seconds();
    let client = ctx.clients.for_workspace(&ws)?;
    // The status this process last wrote, while the cache does not show it yet.
    let old = {
        let mut written = ctx.written_registrations.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ws.clone(), name.clone());
        match written.get(&key) {
            Some(w) if w.newer_than(reg.uid(), reg.resource_version(), reg.status.as_ref()) => w.status.clone(),
            Some(_) => {
                written.remove(&key);
                reg.status.clone().unwrap_or_default()
            }
            None => reg.status.clone().unwrap_or_default(),
        }
    };
    let generation = reg.metadata.generation;

    // Discovery: with a kubeconfig Secret, the controller probes the cluster itself; a successful
    // probe is a heartbeat. Without, an agent (the syncer) writes lastHeartbeatTime.
    let mut status = ClusterRegistrationStatus {
        last_heartbeat_time: old.last_heartbeat_time.clone(),
        api_resources: old.api_resources.clone(),
        capacity: old.capacity.clone(),
        allocatable: old.allocatable.clone(),
        ..ClusterRegistrationStatus::default()
    };
    let probing = reg.spec.kubeconfig_secret_ref.is_some();
    let mut probe_error = None;
    let mut next: Option<i64> = None;
    if let Some(secret) = &reg.spec.kubeconfig_secret_ref {
        let interval = i64::try_from(ctx.options.probe_interval.as_secs()).unwrap_or(i64::MAX).max(1);
        let last = old.last_heartbeat_time.as_ref().map(unix_seconds);
        let due = last.is_none_or(|t| now - t >= interval) || old.api_resources.is_empty();
        if due {
            let probed = match discovery::client_from_secret(&client, secret).await {
                Ok(c) => discovery::probe(&c).await,
                Err(e) => Err(e),
            };
            match probed {
                Ok(d) => {
                    status.last_heartbeat_time = Some(time_at(now));
                    status.api_resources = d.api_resources;
                    status.capacity = d.capacity;
                    status.allocatable = d.allocatable;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "probing the cluster");
                    probe_error = Some(e.to_string());
                }
            }
            next = Some(now + interval);
        } else {
            next = last.map(|t| t + interval);
        }
    }

    let mut view_reg = reg.clone();
    view_reg.status = Some(status.clone());
    let mut conditions = Vec::new();
    match mapping::cluster_view(&view_reg, &ctx.options.config) {
        Ok(view) => {
            let observed = view.observe(now);
            let stale_at = view.config.not_ready_from(&view.health);
            let healthy = stale_at.is_some_and(|t| now < t);
            let threshold = view.config.heartbeat_threshold_seconds;
            let (reason, mut message) = match (healthy, view.health.last_heartbeat) {
                (true, _) => ("HeartbeatReceived", format!("last heartbeat within {threshold}s")),
                (false, None) => ("NoHeartbeat", "no heartbeat received yet".to_string()),
                (false, Some(_)) => ("HeartbeatStale", format!("no heartbeat for more than {threshold}s")),
            };
            if let Some(e) = &probe_error {
                message = format!("{message}; last probe failed: {e}");
            }
            conditions.push(condition("HeartbeatHealthy", healthy, reason, message.clone(), generation));
            conditions.push(condition("Ready", healthy, if healthy { "Ready" } else { reason }, message, generation));
            let (ok, reason, message) = if let Some(t) = &reg.spec.evict_after {
                (false, "Draining", format!("cordoned; replicas are evicted from {}", t.0))
            } else if reg.spec.unschedulable {
                (false, "Cordoned", "spec.unschedulable is set".to_string())
            } else if !healthy {
                (false, "NotReady", "the cluster is not ready".to_string())
            } else {
                (true, "Schedulable", "new replicas can be placed".to_string())
            };
            conditions.push(condition("Schedulable", ok, reason, message, generation));
            status.automatic_taints = observed
                .effective_taints()
                .map(|t| t.into_owned())
                .filter(|t: &Taint| !reg.spec.taints.iter().any(|s| s.key == t.key && s.effect == t.effect))
                .collect();
            if let Some(t) = view.config.next_wakeup(now, [&view.health], &[], &[], &[]) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        Err(e) => {
            conditions.push(condition("Ready", false, "InvalidSpec", e.to_string(), generation));
            conditions.push(condition("Schedulable", false, "InvalidSpec", e.to_string(), generation));
        }
    }
    for c in conditions {
        set_condition(&mut status.conditions, c, &old.conditions, now);
    }

    // What tmc placed here.
    for p in ctx.placements_of(&ws) {
        let key = WorkloadKey::new(&p.namespace().unwrap_or_default(), &p.name_any());
        for d in p.status.iter().flat_map(|s| &s.decisions).filter(|d| d.cluster == name) {
            status.placements.push(PlacedWorkload { workload: key.0.clone(), replicas: d.replicas });
        }
    }
    status.placements.sort_by(|a, b| a.workload.cmp(&b.workload));
    status.placed_replicas = status.placements.iter().map(|p| u64::from(p.replicas)).sum();
    // Keep the object small on clusters that hold very many workloads; the total stays exact.
    status.placements.truncate(MAX_LISTED_PLACEMENTS);
    status.observed_generation = generation;

    if status != old {
        let mut body = serde_json::to_value(&status)?;
        if !probing && let Some(obj) = body.as_object_mut() {
            // Owned by the agent that heartbeats, not by this controller.
            for field in ["lastHeartbeatTime", "apiResources", "capacity", "allocatable"] {
                obj.remove(field);
            }
        }
        let patch = serde_json::json!({
            "apiVersion": ClusterRegistration::api_version(&()),
            "kind": ClusterRegistration::kind(&()),
            "status": body,
        });
        let api: Api<ClusterRegistration> = Api::all(client);
        let params = PatchParams::apply(&ctx.options.field_manager).force();
        match api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
            Ok(written) => {
                ctx.written_registrations.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    (ws.clone(), name.clone()),
                    Written {
                        uid: written.uid(),
                        resource_version: written.resource_version(),
                        status: written.status.clone().unwrap_or_default(),
                    },
                );
                ctx.metrics.status_writes.get_or_create(&labels(REGISTRATION)).inc();
                tracing::info!(ready = ?status.condition("Ready").map(|c| &c.status), "status written");
                let was = old.condition("Ready").map(|c| c.status.as_str());
                if let Some(now_ready) = status.condition("Ready")
                    && was != Some(now_ready.status.as_str())
                {
                    let ready = now_ready.status == "True";
                    let event = Event {
                        type_: if ready { EventType::Normal } else { EventType::Warning },
                        reason: if ready { "Ready".into() } else { "NotReady".into() },
                        note: Some(now_ready.message.chars().take(1000).collect()),
                        action: "Observe".into(),
                        secondary: None,
                    };
                    let client = ctx.clients.for_workspace(&ws)?;
                    publish(&ctx, client, &reg.object_ref(&()), event).await;
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(requeue_after(&ctx, now, next))
}

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_obj, err, ctx| {
        ctx.metrics
            .errors
            .get_or_create(&ErrorLabels { controller: controller.into(), error: err.metric_label() })
            .inc();
        tracing::warn!(%controller, error = %err, "reconcile failed");
        Action::requeue(ctx.options.error_requeue)
    }
}

/// A watch of `api`, demultiplexed by workspace when the endpoint serves several, feeding
/// `writer`.
fn watch_backoff(options: &Options) -> ResetTimerBackoff<ExponentialBackoff> {
    ResetTimerBackoff::new(
        ExponentialBackoff::from(
            backon::ExponentialBuilder::default()
                .with_min_delay(options.watch_backoff_initial)
                .with_max_delay(options.watch_backoff_max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        ),
        Duration::from_secs(120),
    )
}

fn watch_into<K>(
    api: Api<K>,
    writer: Writer<K>,
    wildcard: bool,
    options: &Options,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    let events = watcher::watcher(api, watcher::Config::default())
        .map_ok(move |ev| if wildcard { ev.modify(kcp::demux) } else { ev });
    reflector::reflector(writer, events).backoff(watch_backoff(options)).touched_objects()
}

fn watch_dynamic_into(
    api: Api<DynamicObject>,
    writer: Writer<DynamicObject>,
    wildcard: bool,
    options: &Options,
) -> impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
    let events = watcher::watcher(api, watcher::Config::default())
        .map_ok(move |ev| if wildcard { ev.modify(kcp::demux) } else { ev });
    reflector::reflector(writer, events).backoff(watch_backoff(options)).touched_objects()
}

/// The first placement of a workspace (a reconcile of any placement plans the whole workspace).
fn first_placement(store: &Store<WorkloadPlacement>, workspace: &str) -> Option<ObjectRef<WorkloadPlacement>> {
    store
        .state()
        .iter()
        .filter(|p| workspace_of(&p.metadata) == workspace)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .min_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
}

/// Runs both controllers against one endpoint until `stop` resolves.
async fn run_endpoint(
    clients: Clients,
    options: Options,
    metrics: Arc<Metrics>,
    health: Health,
    stop: Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let client = clients.watch_client();
    let wildcard = clients.is_wildcard();

    // Placement controller: placements, registrations, workload objects.
    let (p_store, p_writer) = reflector::store::<WorkloadPlacement>();
    let (r_store, r_writer) = reflector::store::<ClusterRegistration>();
    let p_stream = watch_into(Api::<WorkloadPlacement>::all(client.clone()), p_writer, wildcard, &options);
    let r_stream = watch_into(Api::<ClusterRegistration>::all(client.clone()), r_writer, wildcard, &options);
    let mapper_store = p_store.clone();
    let mut placement = Controller::for_stream(p_stream, p_store.clone())
        .watches_stream(r_stream, move |reg: ClusterRegistration| {
            first_placement(&mapper_store, &workspace_of(&reg.metadata))
        });
    let mut object_stores = Vec::new();
    for ar in &options.workload_kinds {
        let writer = Writer::<DynamicObject>::new(ar.clone());
        object_stores.push(writer.as_reader());
        let stream = watch_dynamic_into(Api::all_with(client.clone(), ar), writer, wildcard, &options);
        let store = p_store.clone();
        placement = placement.watches_stream_with(
            stream,
            move |obj: DynamicObject| {
                let ws = workspace_of(&obj.metadata);
                let Ok(o) = mapping::workload_object(&kcp::restore(&obj)) else { return None };
                store
                    .state()
                    .iter()
                    .filter(|p| {
                        workspace_of(&p.metadata) == ws && mapping::placement_selects(&kcp::restore(p.as_ref()), &o)
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .min_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
            },
            ar.clone(),
        );
    }
    let placement_ctx = Arc::new(Context {
        clients: clients.clone(),
        options: options.clone(),
        metrics: metrics.clone(),
        placements: p_store.clone(),
        registrations: r_store.clone(),
        objects: object_stores.clone(),
        written: Mutex::default(),
        written_registrations: Mutex::default(),
        locks: Mutex::default(),
    });

    // Registration controller: registrations, placements (for what is placed where).
    let (p2_store, p2_writer) = reflector::store::<WorkloadPlacement>();
    let (r2_store, r2_writer) = reflector::store::<ClusterRegistration>();
    let p2_stream = watch_into(Api::<WorkloadPlacement>::all(client.clone()), p2_writer, wildcard, &options);
    let r2_stream = watch_into(Api::<ClusterRegistration>::all(client.clone()), r2_writer, wildcard, &options);
    let mapper_store = r2_store.clone();
    let registration =
        Controller::for_stream(r2_stream, r2_store.clone()).watches_stream(p2_stream, move |p: WorkloadPlacement| {
            let ws = workspace_of(&p.metadata);
            mapper_store
                .state()
                .iter()
                .filter(|r| workspace_of(&r.metadata) == ws)
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        });
    let registration_ctx = Arc::new(Context {
        clients,
        options: options.clone(),
        metrics,
        placements: p2_store.clone(),
        registrations: r2_store.clone(),
        objects: Vec::new(),
        written: Mutex::default(),
        written_registrations: Mutex::default(),
        locks: Mutex::default(),
    });

    let ready = {
        let stores_ready = async move {
            let _ = p_store.wait_until_ready().await;
            let _ = r_store.wait_until_ready().await;
            for s in object_stores {
                let _ = s.wait_until_ready().await;
            }
            let _ = p2_store.wait_until_ready().await;
            let _ = r2_store.wait_until_ready().await;
            health.set_ready(true);
        };
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = stores_ready => {}
                _ = stop => {}
            }
        }
    };
    let config = ControllerRunConfig::default().concurrency(options.concurrency);
    let forced = {
        let (stop, grace) = (stop.clone(), options.shutdown_grace);
        async move {
            stop.await;
            tokio::time::sleep(grace).await;
        }
    };
    let placement = placement
        .trigger_backoff(watch_backoff(&options))
        .with_config(config.clone())
        .graceful_shutdown_on(stop.clone())
        .run(reconcile_placement, error_policy(PLACEMENT), placement_ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "placement controller");
            }
        });
    let registration = registration
        .trigger_backoff(watch_backoff(&options))
        .with_config(config)
        .graceful_shutdown_on(stop)
        .run(reconcile_registration, error_policy(REGISTRATION), registration_ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "registration controller");
            }
        });
    // kube-runtime's graceful shutdown waits for the caches to sync first; bound it.
    tokio::select! {
        _ = async { tokio::join!(placement, registration, ready) } => {}
        _ = forced => tracing::warn!("controllers did not stop within the shutdown grace period; dropping them"),
    }
}

async fn run_controllers(
    endpoints: Vec<Clients>,
    options: Options,
    metrics: Arc<Metrics>,
    health: Health,
    stop: Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let runs =
        endpoints.into_iter().map(|c| run_endpoint(c, options.clone(), metrics.clone(), health.clone(), stop.clone()));
    futures::future::join_all(runs).await;
}

/// Runs the controllers against `endpoints` (one per API server or kcp shard) until `shutdown`
/// resolves. With leader election, waits for the lease (held through `lease_client`) first, and
/// returns [`Error::LostLeadership`] if it is lost: the process should exit so a fresh one
/// stands for election again.
pub async fn run(
    endpoints: Vec<Clients>,
    lease_client: Client,
    options: Options,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.boxed().shared();
    let Some(le) = options.leader_election.clone() else {
        metrics.leader.set(1);
        run_controllers(endpoints, options, metrics.clone(), health, shutdown).await;
        metrics.leader.set(0);
        return Ok(());
    };
    let manager = kube_lease_manager::LeaseManagerBuilder::new(lease_client, &le.lease_name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.duration_seconds)
        .with_grace(le.grace_seconds)
        .build()
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    let (mut leader, task) = manager.watch().await;
    // A follower is ready: it serves metrics and stands by.
    health.set_ready(true);
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = shutdown.clone() => {
                drop(leader);
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
                return Ok(());
            }
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(Error::LeaderElection("the lease manager stopped".into()));
                }
            }
        }
    }
    tracing::info!(identity = %le.identity, lease = %le.lease_name, "acquired the leader lease");
    metrics.leader.set(1);
    health.set_ready(false);
    let mut watch_lost = leader.clone();
    let lost = async move {
        loop {
            if watch_lost.changed().await.is_err() || !*watch_lost.borrow() {
                break;
            }
        }
    };
    let lost = lost.boxed().shared();
    let stop = futures::future::select(shutdown.clone(), lost.clone()).map(|_| ()).boxed().shared();
    run_controllers(endpoints, options, metrics.clone(), health, stop).await;
    metrics.leader.set(0);
    let lost_leadership = lost.peek().is_some() && shutdown.peek().is_none();
    // Dropping every receiver makes the lease manager release the lease and stop.
    drop(lost);
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease manager task"),
        Err(_) => tracing::warn!("timed out releasing the leader lease"),
    }
    if lost_leadership { Err(Error::LostLeadership) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_stays_the_truth_until_the_cache_shows_it_or_something_newer() {
        let w = Written { uid: Some("u".into()), resource_version: Some("10".into()), status: 2 };
        let s = |v: &str| Some(v.to_string());
        assert!(w.newer_than(s("u"), s("9"), Some(&1)), "cache older than the write");
        assert!(!w.newer_than(s("u"), s("10"), Some(&1)), "cache at the write");
        assert!(!w.newer_than(s("u"), s("11"), Some(&3)), "someone wrote after us");
        assert!(!w.newer_than(s("u"), s("9"), Some(&2)), "cache already shows it");
        assert!(!w.newer_than(s("other"), s("9"), Some(&1)), "a new object of the same name");
        assert!(w.newer_than(s("u"), s("opaque"), Some(&1)), "opaque versions: any difference");
    }

    #[test]
    fn workload_kinds_parse_as_group_version_kind() {
        let d = parse_workload_kind("apps/v1/Deployment").unwrap();
        assert_eq!((d.group.as_str(), d.version.as_str(), d.plural.as_str()), ("apps", "v1", "deployments"));
        assert_eq!(parse_workload_kind("v1/ReplicationController").unwrap().group, "");
        assert!(parse_workload_kind("Deployment").is_none());
        assert!(parse_workload_kind("apps//Deployment").is_none());
    }
}
