//! The manifests in `deploy/`: examples are valid against the generated CRDs and plan as their
//! comments say; the RBAC allows every request the controller makes and nothing is needed beyond.

use std::{collections::BTreeSet, path::PathBuf};

use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use tmc_kube_adapter::{
    crd::{ClusterRegistration, PlacementPhase, WorkloadPlacement},
    crdgen,
    mapping::{self, time_at},
    planner::{WorkspaceSnapshot, plan_workspace},
};

use crate::support::*;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn docs(file: &str) -> Vec<Value> {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples() -> Vec<Value> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(deploy_dir().join("examples"))
        .expect("deploy/examples")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    for f in files {
        out.extend(docs(&format!("examples/{f}")));
    }
    out
}

fn of_kind<T: serde::de::DeserializeOwned>(objs: &[Value], kind: &str) -> Vec<T> {
    objs.iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{kind} {}: {e}", o["metadata"]["name"])))
        .collect()
}

#[test]
fn examples_are_valid_against_the_crds_and_plan_as_documented() {
    let objs = examples();
    // `kubectl apply -f deploy/examples/` goes file by file in name order: namespaces first.
    let mut namespaces = std::collections::BTreeSet::new();
    for o in &objs {
        if o["kind"] == "Namespace" {
            namespaces.insert(o["metadata"]["name"].as_str().unwrap_or_default().to_string());
        } else if let Some(ns) = o["metadata"]["namespace"].as_str() {
            assert!(namespaces.contains(ns), "{} {} precedes its namespace", o["kind"], o["metadata"]["name"]);
        }
    }
    for o in &objs {
        let kind = o["kind"].as_str().unwrap_or_default();
        if let Some(schema) = crdgen::schema_of(kind) {
            let problems = crdgen::validate(o, &schema);
            assert!(problems.is_empty(), "{kind} {}: {problems:#?}", o["metadata"]["name"]);
        }
    }
    let mut regs: Vec<ClusterRegistration> = of_kind(&objs, "ClusterRegistration");
    let placements: Vec<WorkloadPlacement> = of_kind(&objs, "WorkloadPlacement");
    assert_eq!((regs.len(), placements.len()), (2, 2));
    // Both clusters heartbeat; us-east-1's capacity is what discovery would find.
    let now = 1_800_000_000;
    for r in &mut regs {
        let mut status = r.status.clone().unwrap_or_default();
        status.last_heartbeat_time = Some(time_at(now));
        if r.spec.capacity.is_empty() {
            status.allocatable =
                serde_json::from_value(json!({"cpu": "32", "memory": "128Gi", "pods": 110})).expect("allocatable");
        }
        r.status = Some(status);
    }
    let objects: Vec<mapping::WorkloadObject> = objs
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|o| mapping::workload_object(&serde_json::from_value(o.clone()).expect("dynamic")).expect("pod template"))
        .collect();
    let written = Default::default();
    let snapshot = WorkspaceSnapshot {
        registrations: regs.iter().collect(),
        placements: placements.iter().collect(),
        objects: &objects,
        written: &written,
    };
    let plan = plan_workspace(&snapshot, &Default::default(), now);
    let web = plan.statuses.iter().find(|s| s.name == "web").expect("web");
    assert_eq!(web.status.phase, PlacementPhase::Scheduled, "{web:#?}");
    assert_eq!(web.status.replicas, 6, "replicas from the Deployment");
    assert_eq!(web.status.decisions.len(), 2, "spread over two regions: {:?}", web.status.decisions);
    let batch = plan.statuses.iter().find(|s| s.name == "nightly-report").expect("batch");
    assert_eq!(batch.status.phase, PlacementPhase::Scheduled, "{batch:#?}");
    assert_eq!(batch.status.affinity_group.as_deref(), Some("primary"));
    assert_eq!(batch.status.decisions.len(), 1, "Aggregated");
}

/// `(verb, group, resource, namespace)` of a request to the API.
fn access(r: &Recorded) -> Option<(String, String, String, Option<String>)> {
    let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => ((*g).to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..] => (Some((*ns).to_string()), [&[*r][..], rest].concat()),
        rest => (None, rest.to_vec()),
    };
    let resource = match rest.as_slice() {
        [res, _name, sub] => format!("{res}/{sub}"),
        [res, ..] => (*res).to_string(),
        [] => return None,
    };
    let named = rest.len() >= 2;
    let verb = match (r.method.as_str(), named) {
        ("GET", false) if r.query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((verb.to_string(), group, resource, namespace))
}

fn allowed(rules: &Value, verb: &str, group: &str, resource: &str) -> bool {
    let has = |v: &Value, want: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == want || x == "*"));
    rules
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| has(&r["apiGroups"], group) && has(&r["resources"], resource) && has(&r["verbs"], verb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_allows_every_request_the_controller_makes() {
    let rbac = docs("rbac.yaml");
    let cluster_role = rbac.iter().find(|d| d["kind"] == "ClusterRole").expect("ClusterRole")["rules"].clone();
    let role = rbac.iter().find(|d| d["kind"] == "Role").expect("Role");
    assert_eq!(role["metadata"]["namespace"], "tmc-system");
    let role_rules = role["rules"].clone();
    let ws = rbac.iter().filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding");
    for b in ws {
        assert_eq!(b["subjects"][0]["name"], "tmc-controller");
    }

    // The examples, applied, with the kubeconfig Secret us-east-1 refers to.
    let server = ApiServer::start().await;
    let physical = ApiServer::start().await;
    let c = client(&server.url());
    let pp = PostParams::default();
    for o in examples() {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let ns = o["metadata"]["namespace"].as_str().map(str::to_string);
        let (group, version) = match o["apiVersion"].as_str().unwrap_or_default().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), o["apiVersion"].as_str().unwrap_or_default().to_string()),
        };
        let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(&group, &version, &kind));
        let api: Api<kube::api::DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(c.clone(), ns, &ar),
            None => Api::all_with(c.clone(), &ar),
        };
        api.create(&pp, &serde_json::from_value(o.clone()).expect("object")).await.expect("create example");
    }
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: p\n    user: u\ncurrent-context: c\n",
        physical.url()
    );
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "us-east-1-kubeconfig"},
        "stringData": {"kubeconfig": kubeconfig},
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.clone(), "tmc-system")
        .create(&pp, &secret)
        .await
        .expect("secret");
    heartbeat(&c, "eu-west-1").await.expect("heartbeat");

    let before = server.requests().len();
    let mut o = options();
    o.config.heartbeat_threshold_seconds = 600;
    o.workload_kinds = tmc_kube_adapter::controller::default_workload_kinds();
    let mut le = leader_election("rbac");
    le.namespace = "tmc-system".into();
    o.leader_election = Some(le);
    let running = start_plain(&server, o);
    // Poll the double directly, so that every request after `before` is the controller's.
    eventually("statuses written and us-east-1 probed", || async {
        let placed =
            server.objects("", "tmc.kcp.io", "workloadplacements").iter().all(|p| p.pointer("/status/phase").is_some());
        let probed = server
            .objects("", "tmc.kcp.io", "clusterregistrations")
            .iter()
            .any(|r| r["metadata"]["name"] == "us-east-1" && r.pointer("/status/lastHeartbeatTime").is_some());
        (placed && probed).then_some(()).ok_or("not yet".to_string())
    })
    .await;
    running.stop().await.expect("clean shutdown");

    let mut used = BTreeSet::new();
    for r in &server.requests()[before..] {
        let Some((verb, group, resource, namespace)) = access(r) else { continue };
        let ok = allowed(&cluster_role, &verb, &group, &resource)
            || (namespace.as_deref() == Some("tmc-system") && allowed(&role_rules, &verb, &group, &resource));
        assert!(ok, "RBAC does not allow {verb} {group}/{resource} in {namespace:?} ({} {})", r.method, r.path);
        used.insert(format!("{verb} {group}/{resource}"));
    }
    // The controller exercised its main permissions.
    for needed in [
        "watch tmc.kcp.io/workloadplacements",
        "patch tmc.kcp.io/workloadplacements/status",
        "patch tmc.kcp.io/clusterregistrations/status",
        "watch apps/deployments",
        "create events.k8s.io/events",
        "get /secrets",
        "patch coordination.k8s.io/leases",
    ] {
        assert!(used.contains(needed), "{needed} not used: {used:#?}");
    }
}
