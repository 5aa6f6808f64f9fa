//! The `tmc-controller` binary: flags, crdgen, the operations endpoint and graceful shutdown.

use std::{process::Stdio, time::Duration};

use serde_json::json;
use tmc_kube_adapter::crd::PlacementPhase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tmc-controller");

#[test]
fn crdgen_prints_the_checked_in_crds_and_bad_flags_are_rejected() {
    let out = std::process::Command::new(BIN).args(["crdgen", "--out", "-"]).output().expect("run crdgen");
    assert!(out.status.success());
    let expected: String = tmc_kube_adapter::crdgen::render().expect("render").into_iter().map(|(_, y)| y).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    for (args, needle) in [
        (vec!["run", "--feature-gates", "Bogus=true"], "unknown gate"),
        (vec!["run", "--heartbeat-threshold", "soon"], "invalid duration"),
        (vec!["run", "--workload-kinds", "Deployment"], "is not group/version/Kind"),
    ] {
        let out = std::process::Command::new(BIN).args(&args).env("KUBECONFIG", "/nonexistent").output().expect("run");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.map_err(|e| e.to_string())?;
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("bad response {buf:?}"))?;
    Ok((code, buf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_places_serves_metrics_and_shuts_down_on_sigterm() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    create_all(
        &c,
        &[registration("a", json!({}), 4, json!({}))],
        &[placement("shop", "web", json!({"replicas": 2, "resources": {"cpu": "1"}}))],
    )
    .await;
    heartbeat(&c, "a").await.expect("heartbeat");
    let dir = std::env::temp_dir().join(format!("tmc-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: d\n    user: u\n    namespace: default\ncurrent-context: c\n",
            server.url()
        ),
    )
    .expect("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--metrics-addr", &addr, "--no-leader-election", "--heartbeat-threshold", "10m"])
        .args(["--workload-kinds", "apps/v1/Deployment"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", std::env::var("TMC_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(if std::env::var("TMC_TEST_LOG").is_ok() { Stdio::inherit() } else { Stdio::piped() })
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tmc-controller");

    // Drain stderr as it comes (an unread pipe would block the child once full).
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(mut e) = child.stderr.take() {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let logs = || stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("tmc-controller exited early ({status:?}): {}", logs());
        }
        let s = placement_status(&c, "shop", "web").await;
        if s.as_ref().is_ok_and(|s| s.phase == PlacementPhase::Scheduled) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "web not scheduled by the binary: {s:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = eventually("/healthz", || http_get(&addr, "/healthz")).await;
    assert_eq!(code, 200);
    eventually("/readyz ok", || async {
        let (code, body) = http_get(&addr, "/readyz").await?;
        (code == 200).then_some(()).ok_or(body)
    })
    .await;
    let (code, metrics) = http_get(&addr, "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    for needle in ["tmc_reconciles_total{controller=\"placement\"}", "tmc_status_writes_total", "tmc_leader 1"] {
        assert!(metrics.contains(needle), "{needle} not in {metrics}");
    }

    let pid = child.id().expect("pid").to_string();
    // The shell's builtin kill: no procps needed on the CI machine.
    let killed = std::process::Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status().expect("kill");
    assert!(killed.success());
    let status =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits after SIGTERM").expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "exit {status:?}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
