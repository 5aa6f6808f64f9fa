//! Test support: the API double, clients, a controller runner, fixtures and polling.

#[allow(clippy::result_large_err)] // the double's errors are whole HTTP responses
pub mod apiserver;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub use apiserver::{ApiServer, Fault, Recorded};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tmc_kube_adapter::{
    Options,
    controller::{LeaderElection, parse_workload_kind},
    crd::{ClusterRegistration, WorkloadPlacement},
    http::Health,
    kcp::Clients,
    mapping::time_at,
    metrics::Metrics,
};

/// Generous: the machine running the tests may be loaded.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A client for `url` (the double, optionally with a `/clusters/<ws>` path).
pub fn client(url: &str) -> Client {
    let mut config = Config::new(url.parse().expect("valid URL"));
    config.default_namespace = "default".into();
    config.read_timeout = Some(Duration::from_secs(330));
    Client::try_from(config).expect("client")
}

/// Polls `f` until it returns `Some`, failing after [`TIMEOUT`] with `what` and the last value
/// seen by `describe`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Options for tests: fast requeues, the Deployment kind only.
pub fn options() -> Options {
    let mut o = Options {
        workload_kinds: vec![parse_workload_kind("apps/v1/Deployment").expect("kind")],
        error_requeue: Duration::from_millis(200),
        resync: Duration::from_secs(30),
        probe_interval: Duration::from_secs(1),
        watch_backoff_initial: Duration::from_millis(50),
        watch_backoff_max: Duration::from_millis(500),
        ..Options::default()
    };
    o.config.heartbeat_threshold_seconds = 3;
    o.config.default_not_ready_toleration_seconds = Some(3);
    o
}

/// A controller process running in the test.
pub struct Running {
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), tmc_kube_adapter::Error>>,
}

impl Running {
    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), tmc_kube_adapter::Error> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(TIMEOUT, &mut self.handle).await.expect("controller stops").expect("task")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts the controllers against `endpoints`. Set `TMC_TEST_LOG` (an `EnvFilter`, e.g.
/// `tmc_kube_adapter=debug`) to see their logs.
pub fn start(endpoints: Vec<Clients>, lease_client: Client, options: Options) -> Running {
    if let Ok(filter) = std::env::var("TMC_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let m = metrics.clone();
    let handle = tokio::spawn(async move {
        tmc_kube_adapter::run(endpoints, lease_client, options, m, Health::default(), async move {
            let _ = rx.await;
        })
        .await
    });
    Running { metrics, stop: Some(tx), handle }
}

/// Starts the controllers against the plain (non-kcp) API of `server`.
pub fn start_plain(server: &ApiServer, options: Options) -> Running {
    let c = client(&server.url());
    start(vec![Clients::single(c.clone())], c, options)
}

/// Leader election settings for tests: a 2 s lease.
pub fn leader_election(identity: &str) -> LeaderElection {
    LeaderElection {
        lease_name: "tmc-controller".into(),
        namespace: "default".into(),
        identity: identity.into(),
        duration_seconds: 2,
        grace_seconds: 1,
    }
}

/// A ClusterRegistration with the given labels and cpu capacity.
pub fn registration(name: &str, labels: Value, cpu: u32, extra_spec: Value) -> ClusterRegistration {
    let mut spec = json!({"capacity": {"cpu": cpu.to_string(), "pods": 110}});
    if let (Value::Object(s), Value::Object(e)) = (&mut spec, extra_spec) {
        s.extend(e);
    }
    serde_json::from_value(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("valid registration")
}

/// A WorkloadPlacement in `namespace` with the given spec.
pub fn placement(namespace: &str, name: &str, spec: Value) -> WorkloadPlacement {
    serde_json::from_value(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("valid placement")
}

/// Creates the objects through `client`.
pub async fn create_all(client: &Client, regs: &[ClusterRegistration], placements: &[WorkloadPlacement]) {
    let pp = PostParams::default();
    for r in regs {
        Api::<ClusterRegistration>::all(client.clone()).create(&pp, r).await.expect("create registration");
    }
    for p in placements {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        Api::<WorkloadPlacement>::namespaced(client.clone(), &ns).create(&pp, p).await.expect("create placement");
    }
}

/// What a syncer does: patches `status.lastHeartbeatTime` to now.
pub async fn heartbeat(client: &Client, cluster: &str) -> Result<(), kube::Error> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let patch = json!({"status": {"lastHeartbeatTime": time_at(i64::try_from(now).unwrap_or(0))}});
    Api::<ClusterRegistration>::all(client.clone())
        .patch_status(cluster, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// A syncer heartbeating `clusters` every 250 ms while its switch is on.
pub struct Heartbeats {
    on: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeats {
    /// Starts heartbeating (on).
    pub fn start(client: Client, clusters: &[&str]) -> Heartbeats {
        let on = Arc::new(AtomicBool::new(true));
        let flag = on.clone();
        let clusters: Vec<String> = clusters.iter().map(|s| s.to_string()).collect();
        let task = tokio::spawn(async move {
            loop {
                if flag.load(Ordering::SeqCst) {
                    for c in &clusters {
                        let _ = heartbeat(&client, c).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Heartbeats { on, task }
    }

    /// Stops or resumes heartbeating.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The placement's status, if any.
pub async fn placement_status(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<tmc_kube_adapter::crd::WorkloadPlacementStatus, String> {
    let p =
        Api::<WorkloadPlacement>::namespaced(client.clone(), namespace).get(name).await.map_err(|e| e.to_string())?;
    p.status.ok_or_else(|| format!("{namespace}/{name} has no status"))
}

/// `cluster=replicas` pairs of a status, for readable assertions.
pub fn decisions(status: &tmc_kube_adapter::crd::WorkloadPlacementStatus) -> Vec<(String, u32)> {
    status.decisions.iter().map(|d| (d.cluster.clone(), d.replicas)).collect()
}
