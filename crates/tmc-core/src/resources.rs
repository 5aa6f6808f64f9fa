//! Resource lists: Kubernetes-style maps from resource name to [`Quantity`].

use std::collections::BTreeMap;

use crate::Quantity;

/// The resource every replica consumes one of where the cluster lists it.
pub const PODS: &str = "pods";

/// A resource list such as `{cpu: 500m, memory: 2Gi, nvidia.com/gpu: 1}`.
///
/// A `BTreeMap` keeps iteration order (and so every result derived from it) independent of
/// insertion order.
pub type ResourceList = BTreeMap<String, Quantity>;
