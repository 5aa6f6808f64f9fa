//! Probing a physical cluster through a kubeconfig Secret: a successful probe is a heartbeat, and
//! it reports the cluster's API resources and node capacity and allocatable.

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::{
    Api, Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use tmc_core::{Quantity, ResourceList};

use crate::crd::SecretKeyRef;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The Secret could not be read or lacks the key.
    #[error("kubeconfig Secret {namespace}/{name}: {message}")]
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The kubeconfig is invalid.
    #[error("kubeconfig in Secret {0}: {1}")]
    Kubeconfig(String, String),
    /// The physical cluster did not answer.
    #[error("probing the cluster: {0}")]
    Probe(#[source] kube::Error),
}

/// What a probe found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Discovered {
    /// API resources as `resource.group/version` (`deployments.apps/v1`; core: `pods/v1`), sorted.
    pub api_resources: Vec<String>,
    /// Sum of the capacity of all nodes.
    pub capacity: ResourceList,
    /// Sum of the allocatable of ready, schedulable nodes.
    pub allocatable: ResourceList,
}

/// A client for the physical cluster from the kubeconfig in the referenced Secret, read with
/// `client` (the workspace of the ClusterRegistration).
pub async fn client_from_secret(client: &Client, r: &SecretKeyRef) -> Result<Client, DiscoveryError> {
    let err =
        |message: String| DiscoveryError::Secret { namespace: r.namespace.clone(), name: r.name.clone(), message };
    let secret =
        Api::<Secret>::namespaced(client.clone(), &r.namespace).get(&r.name).await.map_err(|e| err(e.to_string()))?;
    let key = r.key.as_deref().unwrap_or("kubeconfig");
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
        .ok_or_else(|| err(format!("has no key {key:?}")))?;
    let text = String::from_utf8(bytes).map_err(|_| err(format!("key {key:?} is not UTF-8")))?;
    let id = format!("{}/{}", r.namespace, r.name);
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| DiscoveryError::Kubeconfig(id.clone(), e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| DiscoveryError::Kubeconfig(id.clone(), e.to_string()))?;
    Client::try_from(config).map_err(|e| DiscoveryError::Kubeconfig(id, e.to_string()))
}

fn add(
    list: &mut ResourceList,
    resources: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) {
    for (k, v) in resources.into_iter().flatten() {
        // A quantity the core cannot parse (negative, malformed) is left out rather than guessed.
        if let Ok(q) = Quantity::parse(&v.0) {
            let e = list.entry(k.clone()).or_insert(Quantity::ZERO);
            *e = e.saturating_add(q);
        }
    }
}

/// Probes a physical cluster: API discovery and nodes.
pub async fn probe(client: &Client) -> Result<Discovered, DiscoveryError> {
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.map_err(DiscoveryError::Probe)?;
    let mut api_resources = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (ar, _) in group.versioned_resources(version) {
                let name = if ar.group.is_empty() { ar.plural.clone() } else { format!("{}.{}", ar.plural, ar.group) };
                api_resources.push(format!("{name}/{}", ar.version));
            }
        }
    }
    api_resources.sort();
    api_resources.dedup();
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.map_err(DiscoveryError::Probe)?;
    let mut out = Discovered { api_resources, ..Discovered::default() };
    for node in &nodes.items {
        let status = node.status.as_ref();
        add(&mut out.capacity, status.and_then(|s| s.capacity.as_ref()));
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let schedulable = !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if ready && schedulable {
            add(&mut out.allocatable, status.and_then(|s| s.allocatable.as_ref()));
        }
    }
    Ok(out)
}
