//! `tmc-controller`: the tmc placement and cluster-registration controllers for Kubernetes and
//! kcp, and `tmc-controller crdgen` to write the CRDs.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use tmc_kube_adapter::{
    controller::{LeaderElection, Options, default_workload_kinds, parse_workload_kind},
    crdgen,
    features::FeatureGates,
    http::{Health, serve},
    kcp::{Clients, endpoint_slice_urls},
    mapping::parse_duration_seconds,
    metrics::Metrics,
};

#[derive(Parser)]
#[command(name = "tmc-controller", version, about = "tmc placement controllers for Kubernetes and kcp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (uses KUBECONFIG or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Write the CRD YAML (default: into deploy/crds/ of the crate's repository).
    Crdgen {
        /// Output directory; `-` prints to stdout.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds"))]
        out: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Feature gates, e.g. `NoExecuteEviction=false`.
    #[arg(long, default_value = "")]
    feature_gates: String,
    /// Default heartbeat threshold of clusters (Go duration).
    #[arg(long, default_value = "60s")]
    heartbeat_threshold: String,
    /// How long workloads without their own not-ready toleration stay on a cluster that is not
    /// ready (Go duration; `0` evicts at once).
    #[arg(long, default_value = "300s")]
    default_not_ready_toleration: String,
    /// Kinds whose objects placements select, as group/version/Kind (core: version/Kind).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "apps/v1/Deployment,apps/v1/StatefulSet,apps/v1/ReplicaSet,batch/v1/Job"
    )]
    workload_kinds: Vec<String>,
    /// How often clusters with a kubeconfig Secret are probed (Go duration).
    #[arg(long, default_value = "20s")]
    probe_interval: String,
    /// kcp: address one workspace by path (root:org:ws).
    #[arg(long, conflicts_with_all = ["kcp_apiexport_endpoint_slice", "kcp_virtual_workspace_url"])]
    kcp_workspace: Option<String>,
    /// kcp: serve every workspace bound to an APIExport, with the endpoint URLs of this
    /// APIExportEndpointSlice (read from the kubeconfig's workspace).
    #[arg(long)]
    kcp_apiexport_endpoint_slice: Option<String>,
    /// kcp: serve every workspace bound to an APIExport through this virtual workspace URL.
    #[arg(long, conflicts_with = "kcp_apiexport_endpoint_slice")]
    kcp_virtual_workspace_url: Option<String>,
    /// Disable leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "tmc-controller")]
    lease_name: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
}

fn seconds(flag: &str, value: &str) -> anyhow::Result<i64> {
    parse_duration_seconds(value).with_context(|| format!("--{flag}"))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let gates: FeatureGates = args.feature_gates.parse()?;
    let mut options = Options::default();
    options.config.heartbeat_threshold_seconds = seconds("heartbeat-threshold", &args.heartbeat_threshold)?;
    let toleration = seconds("default-not-ready-toleration", &args.default_not_ready_toleration)?;
    options.config.default_not_ready_toleration_seconds = Some(toleration);
    options.config.no_execute_eviction = gates.enabled("NoExecuteEviction");
    options.workload_kinds = if args.workload_kinds.is_empty() {
        default_workload_kinds()
    } else {
        let mut kinds = Vec::new();
        for k in &args.workload_kinds {
            match parse_workload_kind(k) {
                Some(ar) => kinds.push(ar),
                None => bail!("--workload-kinds: {k:?} is not group/version/Kind"),
            }
        }
        kinds
    };
    let probe = seconds("probe-interval", &args.probe_interval)?;
    options.probe_interval = Duration::from_secs(u64::try_from(probe.max(1)).unwrap_or(20));
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("tmc-controller-{}", std::process::id()));
    options.instance = identity.clone();
    if !args.no_leader_election {
        options.leader_election = Some(LeaderElection {
            lease_name: args.lease_name.clone(),
            namespace: args
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into()),
            identity,
            duration_seconds: args.lease_duration.max(2),
            grace_seconds: (args.lease_duration / 3).max(1),
        });
    }

    let config = kube::Config::infer().await.context("loading a kubeconfig or the in-cluster config")?;
    let home = kube::Client::try_from(config.clone()).context("building the client")?;
    let mut slice_urls: Option<(String, Vec<String>)> = None;
    let endpoints = if let Some(ws) = &args.kcp_workspace {
        vec![Clients::workspace(&config, ws)?]
    } else if let Some(url) = &args.kcp_virtual_workspace_url {
        let mut c = config.clone();
        c.cluster_url = url.parse().with_context(|| format!("--kcp-virtual-workspace-url {url}"))?;
        vec![Clients::wildcard(&c)?]
    } else if let Some(slice) = &args.kcp_apiexport_endpoint_slice {
        let urls = endpoint_slice_urls(&home, slice).await?;
        if urls.is_empty() {
            bail!("APIExportEndpointSlice {slice} lists no endpoints yet");
        }
        slice_urls = Some((slice.clone(), urls.clone()));
        let mut out = Vec::new();
        for url in urls {
            let mut c = config.clone();
            c.cluster_url = url.parse().with_context(|| format!("endpoint {url}"))?;
            out.push(Clients::wildcard(&c)?);
        }
        out
    } else {
        vec![Clients::single(home.clone())]
    };

    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let (addr, server) = serve(args.metrics_addr, metrics.clone(), health.clone(), signal(shutdown_rx.clone())).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(server);
    let on_signal = shutdown_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = on_signal.send(true);
    });
    // The shards serving an APIExport can change: re-read the slice and restart when they do.
    let slice_changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some((slice, initial)) = slice_urls {
        let (home, changed, stop) = (home.clone(), slice_changed.clone(), shutdown_tx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                match endpoint_slice_urls(&home, &slice).await {
                    Ok(now) if !now.is_empty() && now != initial => {
                        tracing::warn!(?initial, ?now, "APIExportEndpointSlice endpoints changed");
                        changed.store(true, std::sync::atomic::Ordering::SeqCst);
                        let _ = stop.send(true);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "re-reading the APIExportEndpointSlice"),
                }
            }
        });
    }
    tracing::info!(feature_gates = %gates, endpoints = endpoints.len(), "starting controllers");
    let result = tmc_kube_adapter::run(endpoints, home, options, metrics, health, signal(shutdown_rx)).await;
    server.abort();
    result?;
    if slice_changed.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("the APIExportEndpointSlice endpoints changed; exiting so a restart serves the new set");
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn crdgen(out: PathBuf) -> anyhow::Result<()> {
    let files = crdgen::render()?;
    if out.as_os_str() == "-" {
        for (_, yaml) in files {
            print!("{yaml}");
        }
        return Ok(());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, yaml) in files {
        let path = out.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Crdgen { out } => crdgen(out),
    }
}
