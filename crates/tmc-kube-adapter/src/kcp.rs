//! Addressing plain Kubernetes, one kcp workspace, or every workspace bound to an APIExport.
//!
//! - **Plain Kubernetes**, or **one kcp workspace by path**: the kubeconfig's server URL is used as
//!   is (for kcp, `https://kcp.example/clusters/root:org:ws`; kube-rs keeps the path of the base
//!   URL). Every object belongs to one workspace.
//! - **APIExport virtual workspace**: the base URL is an endpoint of the export's
//!   `APIExportEndpointSlice` (`https://shard/services/apiexport/root:org/tmc.kcp.io`). Lists and
//!   watches go to `<base>/clusters/*` and return the objects of every bound workspace, each
//!   carrying its logical cluster in the `kcp.io/cluster` annotation; writes go to
//!   `<base>/clusters/<logical-cluster>`. Placements only ever see the clusters of their own
//!   workspace because the planner groups objects by that annotation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kube::{Client, Config};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KcpError {
    /// The derived URL is invalid.
    #[error("invalid URL {url}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// kube could not build a client.
    #[error("building a client for {url}: {source}")]
    Client {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The APIExportEndpointSlice could not be read.
    #[error("reading APIExportEndpointSlice {name}: {message}")]
    EndpointSlice {
        /// Slice name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

#[derive(Clone)]
enum Mode {
    Single(Client),
    Wildcard { base: Box<Config>, watch: Client, cache: Arc<Mutex<HashMap<String, Client>>> },
}

/// The clients of one API endpoint: one to list and watch, one per workspace to write.
#[derive(Clone)]
pub struct Clients {
    mode: Mode,
    endpoint: String,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

fn with_path(config: &Config, suffix: &str) -> Result<Config, KcpError> {
    let base = config.cluster_url.to_string();
    let url = format!("{}{suffix}", base.trim_end_matches('/'));
    let mut c = config.clone();
    c.cluster_url = url.parse().map_err(|e: http::uri::InvalidUri| KcpError::Url { url, message: e.to_string() })?;
    Ok(c)
}

fn client(config: Config) -> Result<Client, KcpError> {
    let url = config.cluster_url.to_string();
    Client::try_from(config).map_err(|source| KcpError::Client { url, source })
}

impl Clients {
    /// Plain Kubernetes, or one kcp workspace addressed by the client's URL.
    pub fn single(client: Client) -> Self {
        Clients { mode: Mode::Single(client), endpoint: String::new() }
    }

    /// One kcp workspace by path (`root:org:ws`): `<server>/clusters/<path>`.
    pub fn workspace(config: &Config, path: &str) -> Result<Self, KcpError> {
        let c = with_path(config, &format!("/clusters/{path}"))?;
        let endpoint = c.cluster_url.to_string();
        Ok(Clients { mode: Mode::Single(client(c)?), endpoint })
    }

    /// Every workspace of an APIExport virtual workspace endpoint (`config.cluster_url`).
    pub fn wildcard(config: &Config) -> Result<Self, KcpError> {
        let watch = client(with_path(config, "/clusters/*")?)?;
        Ok(Clients {
            endpoint: config.cluster_url.to_string(),
            mode: Mode::Wildcard { base: Box::new(config.clone()), watch, cache: Arc::default() },
        })
    }

    /// The endpoint these clients talk to (empty for a plain client).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether objects of several workspaces are served (`/clusters/*`).
    pub fn is_wildcard(&self) -> bool {
        matches!(self.mode, Mode::Wildcard { .. })
    }

    /// The client for lists and watches.
    pub fn watch_client(&self) -> Client {
        match &self.mode {
            Mode::Single(c) => c.clone(),
            Mode::Wildcard { watch, .. } => watch.clone(),
        }
    }

    /// The client that writes objects of `workspace` (the `kcp.io/cluster` annotation value).
    pub fn for_workspace(&self, workspace: &str) -> Result<Client, KcpError> {
        match &self.mode {
            Mode::Single(c) => Ok(c.clone()),
            Mode::Wildcard { base, cache, .. } => {
                if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(workspace) {
                    return Ok(c.clone());
                }
                if workspace.is_empty() || workspace.contains('/') || workspace == "*" {
                    return Err(KcpError::Url {
                        url: format!("{}/clusters/{workspace}", self.endpoint),
                        message: "objects served through /clusters/* must carry a kcp.io/cluster annotation".into(),
                    });
                }
                let c = client(with_path(base, &format!("/clusters/{workspace}"))?)?;
                cache.lock().unwrap_or_else(|e| e.into_inner()).insert(workspace.to_string(), c.clone());
                Ok(c)
            }
        }
    }
}

/// The endpoint URLs of an `APIExportEndpointSlice` (`apis.kcp.io/v1alpha1`), read with `client`
/// (which addresses the workspace holding the slice).
pub async fn endpoint_slice_urls(client: &Client, name: &str) -> Result<Vec<String>, KcpError> {
    use kube::{
        Api,
        api::DynamicObject,
        core::{ApiResource, GroupVersionKind},
    };
    let gvk = GroupVersionKind::gvk("apis.kcp.io", "v1alpha1", "APIExportEndpointSlice");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "apiexportendpointslices");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let slice =
        api.get(name).await.map_err(|e| KcpError::EndpointSlice { name: name.to_string(), message: e.to_string() })?;
    let mut urls: Vec<String> = slice
        .data
        .pointer("/status/endpoints")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("url").and_then(serde_json::Value::as_str).map(str::to_string))
        .collect();
    urls.sort();
    urls.dedup();
    Ok(urls)
}

/// Separates workspace and namespace in the keys of demultiplexed objects. Neither namespace
/// names nor kcp logical cluster names can contain it.
const SEP: char = '|';

/// Makes an object of a `/clusters/*` watch unique in a kube-runtime store, whose keys are
/// `(namespace, name)`: objects of different workspaces may share both. The workspace is folded
/// into the namespace (`<workspace>|<namespace>`); [`restore`] undoes it. Objects without a
/// `kcp.io/cluster` annotation are left alone.
pub fn demux<K: kube::Resource>(obj: &mut K) {
    let ws = crate::mapping::workspace_of(obj.meta());
    if ws.is_empty() {
        return;
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    if ns.contains(SEP) {
        return;
    }
    obj.meta_mut().namespace = Some(format!("{ws}{SEP}{ns}"));
}

/// The object as the API server has it (undoes [`demux`]).
pub fn restore<K: kube::Resource + Clone>(obj: &K) -> K {
    let mut o = obj.clone();
    if let Some(ns) = o.meta().namespace.clone()
        && let Some((_, real)) = ns.split_once(SEP)
    {
        o.meta_mut().namespace = if real.is_empty() { None } else { Some(real.to_string()) };
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClusterRegistration, ClusterRegistrationSpec};
    use kube::Resource;

    #[tokio::test]
    async fn workspace_urls_are_derived_from_the_base() {
        let config = kube::Config::new("http://kcp.example:6443/".parse().unwrap());
        let one = Clients::workspace(&config, "root:org:ws").unwrap();
        assert_eq!(one.endpoint(), "http://kcp.example:6443/clusters/root:org:ws");
        assert!(!one.is_wildcard());
        let vw = kube::Config::new("https://shard/services/apiexport/root:tmc/tmc.kcp.io".parse().unwrap());
        let all = Clients::wildcard(&vw).unwrap();
        assert!(all.is_wildcard());
        assert!(all.for_workspace("root:a").is_ok());
        assert!(all.for_workspace("").is_err(), "objects without kcp.io/cluster cannot be written");
        assert!(all.for_workspace("*").is_err());
    }

    #[test]
    fn demux_keeps_workspaces_apart_and_restore_undoes_it() {
        let mut a = ClusterRegistration::new("east", ClusterRegistrationSpec::default());
        a.meta_mut().annotations =
            Some([(crate::mapping::KCP_CLUSTER_ANNOTATION.to_string(), "root:a".to_string())].into());
        let mut b = a.clone();
        b.meta_mut().annotations =
            Some([(crate::mapping::KCP_CLUSTER_ANNOTATION.to_string(), "root:b".to_string())].into());
        let original = a.clone();
        demux(&mut a);
        demux(&mut b);
        assert_ne!(
            kube::runtime::reflector::ObjectRef::from_obj(&a),
            kube::runtime::reflector::ObjectRef::from_obj(&b)
        );
        demux(&mut a);
        assert_eq!(restore(&a), original, "idempotent and reversible");
        let mut plain = ClusterRegistration::new("west", ClusterRegistrationSpec::default());
        demux(&mut plain);
        assert_eq!(plain.meta().namespace, None);
    }
}
