//! The controllers end to end against the API double.

use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use tmc_kube_adapter::crd::{ClusterRegistration, PlacementPhase};

use crate::support::*;

fn deployment(name: &str, replicas: u32, cpu: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]}
        }}
    })
}

async fn create_deployment(client: &kube::Client, d: serde_json::Value) {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(d).expect("dynamic object");
    api.create(&PostParams::default(), &obj).await.expect("create deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_appear_in_status_and_follow_scaling_and_label_changes() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    let regs = [
        registration("eu-1", json!({"env": "prod", "region": "eu"}), 8, json!({})),
        registration("us-1", json!({"env": "staging", "region": "us"}), 8, json!({})),
    ];
    let web = placement(
        "shop",
        "web",
        json!({
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "clusterAffinity": {"labelSelector": {"matchLabels": {"env": "prod"}}}
        }),
    );
    let batch = placement("shop", "batch", json!({"replicas": 2, "resources": {"cpu": "1"}}));
    create_all(&c, &regs, &[web, batch]).await;
    create_deployment(&c, deployment("web", 3, "500m")).await;
    let _beats = Heartbeats::start(c.clone(), &["eu-1", "us-1"]);
    let running = start_plain(&server, options());

    let status = eventually("web scheduled on eu-1", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (s.phase == PlacementPhase::Scheduled && decisions(&s) == [("eu-1".to_string(), 3)])
            .then_some(s.clone())
            .ok_or(format!("{s:?}"))
    })
    .await;
    let cond = status.condition("Scheduled").expect("Scheduled condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "Scheduled"));
    assert_eq!(status.observed_generation, Some(1));
    let batch = eventually("batch scheduled", || async {
        let s = placement_status(&c, "shop", "batch").await?;
        (s.phase == PlacementPhase::Scheduled).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(batch.placed_replicas, 2);

    // The registration reports readiness and what is placed on it.
    eventually("eu-1 Ready with web and batch placements", || async {
        let r = Api::<ClusterRegistration>::all(c.clone()).get("eu-1").await.map_err(|e| e.to_string())?;
        let s = r.status.clone().unwrap_or_default();
        let ready = s.condition("Ready").is_some_and(|c| c.status == "True");
        let web = s.placements.iter().any(|p| p.workload == "shop/web" && p.replicas == 3);
        (ready && web).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;

    // An autoscaler scales the Deployment: the placement re-divides.
    let deployments: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.clone(),
        "shop",
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .expect("scale");
    eventually("web re-divided to 5", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == [("eu-1".to_string(), 5)]).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;

    // Labels change (karmada#4028): eu-1 leaves prod, us-1 joins; the placement follows.
    let regs_api = Api::<ClusterRegistration>::all(c.clone());
    regs_api
        .patch("us-1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"env": "prod"}}})))
        .await
        .expect("relabel");
    // us-1 now matches too, but placed replicas stay where they are (no rebalance).
    eventually("a plan with both prod clusters", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == [("eu-1".to_string(), 5)]).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    regs_api
        .patch("eu-1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"env": "staging"}}})))
        .await
        .expect("relabel");
    eventually("web moved to us-1", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == [("us-1".to_string(), 5)]).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;

    // Events: one Scheduled, then one Rescheduled per move, and nothing else, for web.
    let events = server.objects("", "events.k8s.io", "events");
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e.pointer("/regarding/name").and_then(|v| v.as_str()) == Some("web"))
        .filter_map(|e| e.get("reason").and_then(|v| v.as_str()))
        .collect();
    assert_eq!(reasons, ["Scheduled", "Rescheduled", "Rescheduled"]);

    // Status writes are server-side apply by tmc-controller, on the status subresource.
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::PATCH && r.path.contains("/workloadplacements/"))
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(w.path.ends_with("/status"), "{w:?}");
        assert!(w.content_type.starts_with("application/apply-patch"), "{w:?}");
        assert!(w.query.contains("fieldManager=tmc-controller") && w.query.contains("force=true"), "{w:?}");
    }
    assert!(running.metrics.render().contains("tmc_solve_duration_seconds_count"));
    running.stop().await.expect("clean shutdown");
}

fn registration_status(r: &ClusterRegistration) -> tmc_kube_adapter::crd::ClusterRegistrationStatus {
    r.status.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_loses_replicas_after_the_toleration_and_gets_them_back_per_rebalance_policy() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    let regs = [
        registration("primary", json!({"tier": "primary"}), 8, json!({})),
        registration("backup", json!({"tier": "backup"}), 8, json!({})),
    ];
    let policy = |rebalance: &str| {
        json!({
            "replicas": 2, "resources": {"cpu": "1"},
            "replicaScheduling": {"division": "Aggregated"},
            "preferences": [{"weight": 100, "labelSelector": {"matchLabels": {"tier": "primary"}}}],
            "rebalance": {"policy": rebalance},
        })
    };
    create_all(
        &c,
        &regs,
        &[placement("shop", "web", policy("OnRecovery")), placement("shop", "pinned", policy("Never"))],
    )
    .await;
    for r in ["primary", "backup"] {
        heartbeat(&c, r).await.expect("heartbeat");
    }
    let primary_beats = Heartbeats::start(c.clone(), &["primary"]);
    let _backup_beats = Heartbeats::start(c.clone(), &["backup"]);
    let mut o = options();
    o.config.default_not_ready_toleration_seconds = Some(5);
    let running = start_plain(&server, o);
    let on = |cluster: &str| vec![(cluster.to_string(), 2)];
    for name in ["web", "pinned"] {
        eventually("placed on primary", || async {
            let s = placement_status(&c, "shop", name).await?;
            (decisions(&s) == on("primary")).then_some(()).ok_or(format!("{s:?}"))
        })
        .await;
    }

    // The syncer of primary stops heartbeating: not ready after 3 s, with the automatic taint.
    primary_beats.set(false);
    let regs_api = Api::<ClusterRegistration>::all(c.clone());
    eventually("primary not ready", || async {
        let s = registration_status(&regs_api.get("primary").await.map_err(|e| e.to_string())?);
        let not_ready = s.condition("Ready").is_some_and(|c| c.status == "False" && c.reason == "HeartbeatStale");
        let tainted = s.automatic_taints.iter().any(|t| t.key == "tmc.kcp.io/not-ready" && t.added_at.is_some());
        (not_ready && tainted).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    // Tolerated for 5 s: the replicas have not moved yet.
    let s = placement_status(&c, "shop", "web").await.expect("status");
    assert_eq!(decisions(&s), on("primary"), "evicted before the toleration ran out");
    for name in ["web", "pinned"] {
        eventually("evicted to backup", || async {
            let s = placement_status(&c, "shop", name).await?;
            (decisions(&s) == on("backup")).then_some(()).ok_or(format!("{s:?}"))
        })
        .await;
    }

    // primary recovers: web (OnRecovery) moves back, pinned (Never) stays.
    primary_beats.set(true);
    eventually("primary ready again without the taint", || async {
        let s = registration_status(&regs_api.get("primary").await.map_err(|e| e.to_string())?);
        let ready = s.condition("Ready").is_some_and(|c| c.status == "True");
        (ready && s.automatic_taints.is_empty()).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    eventually("web back on primary", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == on("primary")).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let pinned = placement_status(&c, "shop", "pinned").await.expect("status");
    assert_eq!(decisions(&pinned), on("backup"), "rebalance Never keeps replicas where they are");
    // The registration's readiness changes are Events too.
    let reasons: Vec<String> = server
        .objects("", "events.k8s.io", "events")
        .iter()
        .filter(|e| e.pointer("/regarding/kind").and_then(|v| v.as_str()) == Some("ClusterRegistration"))
        .filter(|e| e.pointer("/regarding/name").and_then(|v| v.as_str()) == Some("primary"))
        .filter_map(|e| e.get("reason").and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    assert_eq!(reasons, ["Ready", "NotReady", "Ready"]);
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_server_errors_and_dropped_watches_still_converge_with_nothing_lost_or_duplicated() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    use http::Method;
    let fault = |method: Method, path: &str, watch: Option<bool>, status: u16, remaining: usize| Fault {
        method: Some(method),
        path_contains: path.into(),
        watch,
        status,
        remaining,
    };
    let regs: Vec<_> = ["a", "b", "c"].iter().map(|n| registration(n, json!({}), 4, json!({}))).collect();
    let spec = json!({"replicas": 2, "resources": {"cpu": "1"}});
    let early: Vec<_> = (0..3).map(|i| placement("shop", &format!("p{i}"), spec.clone())).collect();
    create_all(&c, &regs, &early).await;
    // Heartbeat health is not under test here: a generous threshold keeps stale caches during
    // the chaos from making clusters look dead.
    for r in ["a", "b", "c"] {
        heartbeat(&c, r).await.expect("heartbeat");
    }
    let _beats = Heartbeats::start(c.clone(), &["a", "b", "c"]);
    let mut o = options();
    o.config.heartbeat_threshold_seconds = 60;
    server.inject(fault(Method::PATCH, "/workloadplacements/", None, 409, 3));
    server.inject(fault(Method::PATCH, "/workloadplacements/", None, 500, 2));
    server.inject(fault(Method::PATCH, "/clusterregistrations/", None, 409, 2));
    server.inject(fault(Method::GET, "/workloadplacements", Some(true), 500, 2));
    server.inject(fault(Method::GET, "/clusterregistrations", Some(false), 500, 1));
    let running = start_plain(&server, o);

    // Chaos while more placements arrive: watches dropped, and once the history compacted (410).
    let chaos = {
        let url = server.url();
        let _ = url;
        let drops: Vec<_> = (0..8).collect();
        async {
            for i in drops {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                server.drop_watches();
                if i == 3 {
                    server.compact();
                }
            }
        }
    };
    let late: Vec<_> = (3..6).map(|i| placement("shop", &format!("p{i}"), spec.clone())).collect();
    let create_late = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        create_all(&c, &[], &late).await;
    };
    tokio::join!(chaos, create_late);

    // Converged: one consistent list shows every placement fully placed, and no cluster is
    // overcommitted.
    let placements = Api::<tmc_kube_adapter::crd::WorkloadPlacement>::namespaced(c.clone(), "shop");
    let per_cluster = eventually("all six placements scheduled", || async {
        let list = placements.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let statuses: Vec<_> = list.items.iter().map(|p| p.status.clone().unwrap_or_default()).collect();
        let done = statuses.len() == 6
            && statuses.iter().all(|s| s.phase == PlacementPhase::Scheduled && s.placed_replicas == 2);
        let mut per_cluster = std::collections::BTreeMap::<String, u32>::new();
        for d in statuses.iter().flat_map(|s| &s.decisions) {
            *per_cluster.entry(d.cluster.clone()).or_default() += d.replicas;
        }
        assert!(per_cluster.values().all(|r| *r <= 4), "overcommitted: {per_cluster:?} {statuses:?}");
        done.then_some(per_cluster).ok_or(format!("{statuses:?}"))
    })
    .await;
    assert_eq!(per_cluster.values().sum::<u32>(), 12);

    // Every placement got exactly one Scheduled event and never moved.
    let events = server.objects("", "events.k8s.io", "events");
    for i in 0..6 {
        let name = format!("p{i}");
        let reasons: Vec<&str> = events
            .iter()
            .filter(|e| e.pointer("/regarding/name").and_then(|v| v.as_str()) == Some(name.as_str()))
            .filter_map(|e| e.get("reason").and_then(|v| v.as_str()))
            .collect();
        assert_eq!(reasons, ["Scheduled"], "{name}");
    }
    // The faults were hit and counted.
    let answered = server.requests();
    assert!(answered.iter().any(|r| r.status == 409 && r.path.contains("/workloadplacements/")));
    assert!(answered.iter().any(|r| r.status == 500));
    let metrics = running.metrics.render();
    assert!(metrics.contains("error=\"conflict\""), "{metrics}");
    assert!(metrics.contains("error=\"server\""), "{metrics}");
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_writer_and_fail_over() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    let regs = [registration("a", json!({}), 8, json!({}))];
    create_all(&c, &regs, &[placement("shop", "first", json!({"replicas": 1, "resources": {"cpu": "1"}}))]).await;
    let _beats = Heartbeats::start(c.clone(), &["a"]);
    let replica = |id: &str| {
        let mut o = options();
        o.leader_election = Some(leader_election(id));
        o.instance = id.into();
        o
    };
    let one = start_plain(&server, replica("one"));
    let two = start_plain(&server, replica("two"));
    eventually("first scheduled", || async {
        let s = placement_status(&c, "shop", "first").await?;
        (s.phase == PlacementPhase::Scheduled).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let writes = |r: &Running| r.metrics.status_writes_of("placement") + r.metrics.status_writes_of("registration");
    let (leader, follower, follower_id) =
        if one.metrics.leader.get() == 1 { (one, two, "two") } else { (two, one, "one") };
    assert_eq!(leader.metrics.leader.get(), 1);
    assert_eq!(follower.metrics.leader.get(), 0);
    assert!(writes(&leader) > 0);
    assert_eq!(writes(&follower), 0, "the follower wrote");

    // The leader shuts down and releases the lease; the follower takes over.
    leader.stop().await.expect("clean shutdown");
    eventually("the follower leads", || async {
        (follower.metrics.leader.get() == 1).then_some(()).ok_or("still following".to_string())
    })
    .await;
    create_all(&c, &[], &[placement("shop", "second", json!({"replicas": 1, "resources": {"cpu": "1"}}))]).await;
    eventually("second scheduled by the new leader", || async {
        let s = placement_status(&c, "shop", "second").await?;
        (s.phase == PlacementPhase::Scheduled).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    assert!(writes(&follower) > 0);
    let lease = server.objects("", "coordination.k8s.io", "leases");
    assert_eq!(lease.len(), 1);
    assert_eq!(lease[0].pointer("/spec/holderIdentity").and_then(|v| v.as_str()), Some(follower_id));
    follower.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcp_wildcard_watch_keeps_workspaces_apart() {
    let server = ApiServer::start().await;
    let ca = client(&format!("{}/clusters/root:a", server.url()));
    let cb = client(&format!("{}/clusters/root:b", server.url()));
    // The same names in both workspaces.
    let spec = json!({"replicas": 4, "resources": {"cpu": "1"}});
    create_all(&ca, &[registration("east", json!({}), 8, json!({}))], &[placement("shop", "web", spec.clone())]).await;
    create_all(
        &cb,
        &[registration("east", json!({}), 1, json!({})), registration("west", json!({}), 2, json!({}))],
        &[placement("shop", "web", spec)],
    )
    .await;
    let _beats_a = Heartbeats::start(ca.clone(), &["east"]);
    let _beats_b = Heartbeats::start(cb.clone(), &["east", "west"]);
    let config = kube::Config::new(server.url().parse().expect("url"));
    let endpoint = tmc_kube_adapter::kcp::Clients::wildcard(&config).expect("wildcard clients");
    let running = start(vec![endpoint], ca.clone(), options());

    eventually("root:a places 4 on its east", || async {
        let s = placement_status(&ca, "shop", "web").await?;
        (decisions(&s) == [("east".to_string(), 4)]).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let b = eventually("root:b places what fits on its own clusters", || async {
        let s = placement_status(&cb, "shop", "web").await?;
        (s.phase == PlacementPhase::PartiallyScheduled).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(decisions(&b), [("east".to_string(), 1), ("west".to_string(), 2)]);
    let message = &b.condition("Scheduled").expect("condition").message;
    assert!(message.contains("2 clusters"), "{message}");
    eventually("root:b's east reports its own placement", || async {
        let r = Api::<ClusterRegistration>::all(cb.clone()).get("east").await.map_err(|e| e.to_string())?;
        let s = registration_status(&r);
        (s.placed_replicas == 1).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    // Reads went through /clusters/*, writes to each object's own workspace.
    for r in server.requests() {
        if r.method != http::Method::GET {
            assert!(
                r.path.starts_with("/clusters/root:a/") || r.path.starts_with("/clusters/root:b/"),
                "write outside a workspace: {r:?}"
            );
        }
    }
    assert!(server.requests().iter().any(|r| r.path.starts_with("/clusters/*/") && r.query.contains("watch=true")));
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_secret_makes_the_controller_probe_the_physical_cluster() {
    use k8s_openapi::{
        ByteString,
        api::core::v1::{Node, Secret},
    };
    let control = ApiServer::start().await;
    let physical = ApiServer::start().await;
    let pc = client(&physical.url());
    let node = |name: &str, unschedulable: bool| -> Node {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3500m", "memory": "15Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .expect("node")
    };
    for (name, cordoned) in [("n1", false), ("n2", false), ("n3", true)] {
        Api::<Node>::all(pc.clone()).create(&PostParams::default(), &node(name, cordoned)).await.expect("node");
    }
    let c = client(&control.url());
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: phys\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: ctx\n  context:\n    cluster: phys\n    user: u\ncurrent-context: ctx\n",
        physical.url()
    );
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some("phys".into()), ..Default::default() },
        data: Some([("kubeconfig".to_string(), ByteString(kubeconfig.into_bytes()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(c.clone(), "tmc-system").create(&PostParams::default(), &secret).await.expect("secret");
    let reg: ClusterRegistration = serde_json::from_value(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration", "metadata": {"name": "phys"},
        "spec": {"kubeconfigSecretRef": {"namespace": "tmc-system", "name": "phys"}}
    }))
    .expect("registration");
    let wp = placement(
        "shop",
        "web",
        json!({"replicas": 6, "resources": {"cpu": "1"}, "requiredApis": ["deployments.apps/v1"]}),
    );
    create_all(&c, &[reg], &[wp]).await;
    let running = start_plain(&control, options());

    let s = eventually("phys probed and ready", || async {
        let r = Api::<ClusterRegistration>::all(c.clone()).get("phys").await.map_err(|e| e.to_string())?;
        let s = registration_status(&r);
        let ready = s.condition("Ready").is_some_and(|c| c.status == "True");
        (ready && s.last_heartbeat_time.is_some()).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    assert!(s.api_resources.contains(&"deployments.apps/v1".to_string()), "{:?}", s.api_resources);
    assert!(s.api_resources.contains(&"pods/v1".to_string()), "{:?}", s.api_resources);
    assert_eq!(s.capacity["cpu"], tmc_core::Quantity::from_units(12), "all nodes");
    assert_eq!(s.allocatable["cpu"], tmc_core::Quantity::from_units(7), "ready, schedulable nodes");
    let placed = eventually("web placed within the discovered allocatable", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (s.phase == PlacementPhase::Scheduled).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(decisions(&placed), [("phys".to_string(), 6)]);
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_stops_new_replicas_and_drain_moves_placed_ones() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    let regs = [
        registration("old", json!({"tier": "primary"}), 8, json!({})),
        registration("new", json!({"tier": "backup"}), 8, json!({})),
    ];
    let spec = json!({
        "replicas": 2, "resources": {"cpu": "1"}, "replicaScheduling": {"division": "Aggregated"},
        "preferences": [{"weight": 100, "labelSelector": {"matchLabels": {"tier": "primary"}}}],
    });
    create_all(&c, &regs, &[placement("shop", "web", spec.clone())]).await;
    let _beats = Heartbeats::start(c.clone(), &["old", "new"]);
    let running = start_plain(&server, options());
    let on = |cluster: &str| vec![(cluster.to_string(), 2)];
    eventually("web on old", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == on("old")).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;

    // Cordon: placed replicas stay, a new placement goes elsewhere.
    let regs_api = Api::<ClusterRegistration>::all(c.clone());
    regs_api
        .patch("old", &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": true}})))
        .await
        .expect("cordon");
    eventually("old not schedulable (cordoned)", || async {
        let s = registration_status(&regs_api.get("old").await.map_err(|e| e.to_string())?);
        s.condition("Schedulable")
            .is_some_and(|c| c.status == "False" && c.reason == "Cordoned")
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .await;
    create_all(&c, &[], &[placement("shop", "api", spec)]).await;
    eventually("api placed on new", || async {
        let s = placement_status(&c, "shop", "api").await?;
        (decisions(&s) == on("new")).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(decisions(&placement_status(&c, "shop", "web").await.expect("web")), on("old"), "cordon evicted");

    // Drain (kcp's evictAfter, here: now): the draining taint evicts web.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let evict_after = tmc_kube_adapter::mapping::time_at(i64::try_from(now).expect("now"));
    regs_api
        .patch("old", &PatchParams::default(), &Patch::Merge(json!({"spec": {"evictAfter": evict_after}})))
        .await
        .expect("drain");
    eventually("web drained to new", || async {
        let s = placement_status(&c, "shop", "web").await?;
        (decisions(&s) == on("new")).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let s = registration_status(&regs_api.get("old").await.expect("old"));
    assert!(s.automatic_taints.iter().any(|t| t.key == "tmc.kcp.io/draining"), "{s:?}");
    assert_eq!(s.condition("Schedulable").map(|c| c.reason.as_str()), Some("Draining"));
    eventually("old reports nothing placed", || async {
        let s = registration_status(&regs_api.get("old").await.map_err(|e| e.to_string())?);
        (s.placed_replicas == 0 && s.placements.is_empty()).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_urls_come_from_the_apiexport_endpoint_slice() {
    let server = ApiServer::start().await;
    let c = client(&format!("{}/clusters/root:tmc", server.url()));
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("apis.kcp.io", "v1alpha1", "APIExportEndpointSlice"),
        "apiexportendpointslices",
    );
    let slice: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apis.kcp.io/v1alpha1", "kind": "APIExportEndpointSlice", "metadata": {"name": "tmc"},
        "spec": {"export": {"path": "root:tmc", "name": "tmc.kcp.io"}},
        "status": {"endpoints": [
            {"url": "https://shard-2/services/apiexport/root:tmc/tmc.kcp.io"},
            {"url": "https://shard-1/services/apiexport/root:tmc/tmc.kcp.io"},
            {"url": "https://shard-1/services/apiexport/root:tmc/tmc.kcp.io"}
        ]}
    }))
    .expect("slice");
    Api::<kube::api::DynamicObject>::all_with(c.clone(), &ar)
        .create(&PostParams::default(), &slice)
        .await
        .expect("create");
    let urls = tmc_kube_adapter::kcp::endpoint_slice_urls(&c, "tmc").await.expect("urls");
    assert_eq!(
        urls,
        [
            "https://shard-1/services/apiexport/root:tmc/tmc.kcp.io",
            "https://shard-2/services/apiexport/root:tmc/tmc.kcp.io"
        ]
    );
    assert!(tmc_kube_adapter::kcp::endpoint_slice_urls(&c, "missing").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_api_server_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let c = client(&format!("http://127.0.0.1:{port}"));
    let mut o = options();
    o.shutdown_grace = std::time::Duration::from_millis(500);
    let running = start(vec![tmc_kube_adapter::kcp::Clients::single(c.clone())], c, o);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    running.stop().await.expect("clean shutdown");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_or_a_deleted_placement_lets_pending_replicas_in() {
    let server = ApiServer::start().await;
    let c = client(&server.url());
    let spec = json!({"replicas": 4, "resources": {"cpu": "1"}});
    create_all(
        &c,
        &[registration("small", json!({}), 4, json!({}))],
        &[placement("shop", "first", spec.clone()), placement("shop", "second", spec)],
    )
    .await;
    heartbeat(&c, "small").await.expect("heartbeat");
    let beats = Heartbeats::start(c.clone(), &["small"]);
    let running = start_plain(&server, options());
    let phase_of = |name: &'static str| {
        let c = c.clone();
        async move { placement_status(&c, "shop", name).await.map(|s| s.phase) }
    };
    eventually("one placed, one unschedulable", || async {
        let (a, b) = (phase_of("first").await?, phase_of("second").await?);
        let mut phases = [a, b];
        phases.sort_by_key(|p| format!("{p:?}"));
        (phases == [PlacementPhase::Scheduled, PlacementPhase::Unschedulable])
            .then_some(())
            .ok_or(format!("{phases:?}"))
    })
    .await;
    let waiting =
        if phase_of("first").await.expect("first") == PlacementPhase::Unschedulable { "first" } else { "second" };
    let placed = if waiting == "first" { "second" } else { "first" };
    let s = placement_status(&c, "shop", waiting).await.expect("status");
    let message = &s.condition("Scheduled").expect("condition").message;
    assert!(message.starts_with("0/1 clusters are available"), "{message}");

    // The placed one is deleted: its capacity goes to the waiting one.
    Api::<tmc_kube_adapter::crd::WorkloadPlacement>::namespaced(c.clone(), "shop")
        .delete(placed, &Default::default())
        .await
        .expect("delete");
    eventually("the waiting placement gets the freed capacity", || async {
        (phase_of(waiting).await? == PlacementPhase::Scheduled).then_some(()).ok_or("still waiting".to_string())
    })
    .await;

    // A new cluster registers: a new placement that did not fit now does.
    create_all(&c, &[], &[placement("shop", "third", json!({"replicas": 3, "resources": {"cpu": "1"}}))]).await;
    eventually("third waits", || async {
        (phase_of("third").await? == PlacementPhase::Unschedulable).then_some(()).ok_or("not yet".to_string())
    })
    .await;
    create_all(&c, &[registration("big", json!({}), 8, json!({}))], &[]).await;
    drop(beats);
    let _beats = Heartbeats::start(c.clone(), &["small", "big"]);
    let third = eventually("third placed on the new cluster", || async {
        let s = placement_status(&c, "shop", "third").await?;
        (s.phase == PlacementPhase::Scheduled).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(decisions(&third), [("big".to_string(), 3)]);
    running.stop().await.expect("clean shutdown");
}
