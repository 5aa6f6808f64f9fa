//! Deterministic synthetic scenarios: realistic fleets and workloads of any size, for benchmarks,
//! load tests and demos.
//!
//! [`generate`] builds a [`PlacementInput`] from a [`GenerateConfig`]. The same config always gives
//! the same input, bit for bit: randomness comes from an inline SplitMix64 generator seeded by
//! [`GenerateConfig::seed`], and no hash-ordered collection is iterated.
//!
//! **Fleet.** Clusters belong to three cloud providers (`aws`, `gcp`, `azure`) and a small on-prem
//! share, each with real-looking regions and three zones per region. They carry labels (`env`,
//! `tier`, `team`, `gen`, `datacenter`), capabilities (`gpu`, `pci-dss`, `istio`, `arm64`, ...),
//! served API resources, capacities in `cpu`, `memory` and `pods` (and `nvidia.com/gpu` on GPU
//! clusters), an already-allocated fraction of 10-70 %, a cost, and occasionally taints of every
//! effect, a not-ready state or a cordon.
//!
//! **Workloads.** Ten archetypes (web services, weighted splits, aggregated jobs, duplicated
//! agents, pinned duplicates, ordered fallbacks, regulated services, GPU training, batch, zonal HA)
//! together use every constraint the model has: label selectors with every operator and
//! `matchLabels`, location selectors over providers, regions and zones, `clusterNames` and
//! `exclude`, `clusterAffinities` fallback groups, tolerations (`Equal`, `Exists`, empty key,
//! `tolerationSeconds`), required APIs and capabilities, spread constraints over `cluster`,
//! `provider`, `region`, `zone` and label keys with `minGroups`, `maxGroups` and `maxSkew`,
//! `Duplicated` and `Divided` scheduling (`Weighted` with weights by name and by label, `Dynamic`,
//! `Aggregated`), per-cluster replica bounds, `numberOfClusters`, preferences, every prioritizer
//! with positive and negative weights, and priorities.
//!
//! **Contention.** Replica counts are scaled so that total requested cpu (and, separately,
//! `nvidia.com/gpu`) is a target fraction of the free capacity of the schedulable clusters (ready
//! and not cordoned): 30-50 % for [`Contention::Low`], 90-120 % for [`Contention::High`]. See
//! [`demand_ratio`].

use std::collections::BTreeMap;

use tmc_core::{
    Cluster, ClusterAffinity, ClusterWeight, Division, LabelSelector, LabelSelectorRequirement, Location,
    LocationSelector, PlacementInput, Preference, Prioritizer, PrioritizerName, Quantity, ReplicaSchedulingType,
    ResourceList, SelectorOperator, SpreadConstraint, Taint, TaintEffect, Toleration, TolerationOperator, Workload,
};

use crate::Scenario;

/// The GPU resource name used by generated clusters and workloads.
pub const GPU: &str = "nvidia.com/gpu";

const CPU: &str = "cpu";
const MEMORY: &str = "memory";
const PODS: &str = "pods";
const GIB: u64 = 1 << 30;

/// How much the generated workloads ask for, relative to the fleet's free capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Contention {
    /// Total demand is about 30-50 % of the free capacity: nearly everything fits.
    #[default]
    Low,
    /// Total demand is about 90-120 % of the free capacity: the batch competes for room, and
    /// priorities and fallbacks matter.
    High,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Number of clusters in the fleet.
    pub clusters: usize,
    /// Number of workloads to place.
    pub workloads: usize,
    /// Seed of the pseudo-random generator; the same config always gives the same input.
    pub seed: u64,
    /// Demand relative to free capacity.
    pub contention: Contention,
}

impl Contention {
    /// The lowercase name used on the command line (`low`, `high`).
    pub fn name(self) -> &'static str {
        match self {
            Contention::Low => "low",
            Contention::High => "high",
        }
    }
}

impl Default for GenerateConfig {
    /// 100 clusters, 1,000 workloads, seed 0, low contention.
    fn default() -> Self {
        GenerateConfig { clusters: 100, workloads: 1_000, seed: 0, contention: Contention::Low }
    }
}

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD605_BBB5_8C8A_BBF5));
        r.next_u64();
        r
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Between `lo` and `hi` (inclusive) distinct items.
    fn sample_between<T: Clone>(&mut self, items: &[T], lo: u64, hi: u64) -> Vec<T> {
        let k = self.range(lo, hi) as usize;
        self.sample(items, k)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index chosen with the given weights (not all zero).
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// `k` distinct items (fewer when there are fewer), in the order drawn.
    fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..items.len()).collect();
        let k = k.min(items.len());
        for i in 0..k {
            let j = i + self.below((idx.len() - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx[..k].iter().map(|&i| items[i].clone()).collect()
    }
}

struct ProviderSpec {
    name: &'static str,
    share: u64,
    regions: &'static [&'static str],
    zone_suffixes: [&'static str; 3],
    cost_cents: u64,
}

const PROVIDERS: [ProviderSpec; 4] = [
    ProviderSpec {
        name: "aws",
        share: 35,
        regions: &["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"],
        zone_suffixes: ["a", "b", "c"],
        cost_cents: 100,
    },
    ProviderSpec {
        name: "gcp",
        share: 30,
        regions: &["us-central1", "us-east4", "europe-west4", "europe-west1", "asia-east1", "asia-southeast1"],
        zone_suffixes: ["-a", "-b", "-c"],
        cost_cents: 90,
    },
    ProviderSpec {
        name: "azure",
        share: 25,
        regions: &["eastus", "westus2", "westeurope", "northeurope", "southeastasia", "japaneast"],
        zone_suffixes: ["-1", "-2", "-3"],
        cost_cents: 95,
    },
    ProviderSpec {
        name: "onprem",
        share: 10,
        regions: &["dc-fra", "dc-ams"],
        zone_suffixes: ["-1", "-2", "-3"],
        cost_cents: 60,
    },
];

const TEAMS: [&str; 6] = ["payments", "search", "ml", "platform", "web", "data"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

const API_DEPLOYMENTS: &str = "deployments.apps/v1";
const API_STATEFULSETS: &str = "statefulsets.apps/v1";
const API_INGRESS: &str = "ingresses.networking.k8s.io/v1";
const API_CRONJOBS: &str = "cronjobs.batch/v1";
const API_ISTIO: &str = "virtualservices.networking.istio.io/v1";
const API_KAFKA: &str = "kafkas.kafka.strimzi.io/v1beta2";

/// Generates a scenario; see the module docs. The same `config` always gives the same input,
/// and the input always passes [`tmc_core::validate()`].
pub fn generate(config: &GenerateConfig) -> PlacementInput {
    let clusters = generate_fleet(config.clusters, &mut Rng::new(config.seed, 1));
    let facts = FleetFacts::of(&clusters);
    let mut rng = Rng::new(config.seed, 2);
    let mut workloads: Vec<Workload> = (0..config.workloads).map(|i| generate_workload(i, &facts, &mut rng)).collect();
    let target_per_mille = match config.contention {
        Contention::Low => rng.range(350, 450),
        Contention::High => rng.range(1_000, 1_100),
    };
    scale_to_capacity(&mut workloads, &clusters, target_per_mille);
    for w in &mut workloads {
        finish_replica_bounds(w, &mut rng);
    }
    PlacementInput { clusters, workloads, ..PlacementInput::default() }
}

/// The scenario file `tmc-sim generate` writes for `config`: a comment line with the command that
/// reproduces it, then a [`Scenario`] with a `name`, the clusters and the workloads of
/// [`generate`], as YAML through serde-saphyr.
///
/// The same `config` always gives the same bytes, and the text loads back with
/// [`crate::load_scenario`] into exactly the input [`generate`] returns.
pub fn scenario_yaml(config: &GenerateConfig) -> Result<String, serde_saphyr::SerializeError> {
    let GenerateConfig { clusters, workloads, seed, contention } = config;
    let input = generate(config);
    let scenario = Scenario {
        name: Some(format!(
            "synthetic: {clusters} clusters, {workloads} workloads, seed {seed}, {} contention",
            contention.name()
        )),
        clusters: input.clusters,
        workloads: input.workloads,
        ..Scenario::default()
    };
    let body = serde_saphyr::to_string(&scenario)?;
    Ok(format!(
        "# tmc-sim generate --clusters {clusters} --workloads {workloads} --seed {seed} --contention {}\n{body}",
        contention.name()
    ))
}

/// Total demand for `resource` over the free amount of it (capacity minus allocated) on the
/// schedulable clusters (ready and not cordoned); `None` when there is none free.
///
/// A `Divided` workload asks for `replicas` times its request; a `Duplicated` one for that times
/// its `numberOfClusters`, or else the number of `clusterNames` of its affinity, or else 1.
pub fn demand_ratio(input: &PlacementInput, resource: &str) -> Option<f64> {
    let free = schedulable_free(&input.clusters, resource);
    if free == 0 {
        return None;
    }
    let demand: u128 = input
        .workloads
        .iter()
        .map(|w| {
            let per = w.resources.get(resource).map_or(0, |q| q.nanos());
            per * u128::from(w.replicas) * u128::from(fan_out(w))
        })
        .sum();
    Some(demand as f64 / free as f64)
}

/// Free `resource` (capacity minus allocated) on ready, uncordoned clusters, in nano-units.
fn schedulable_free(clusters: &[Cluster], resource: &str) -> u128 {
    clusters
        .iter()
        .filter(|c| c.ready && !c.unschedulable)
        .filter_map(|c| {
            let cap = c.capacity.get(resource)?;
            Some(cap.saturating_sub(c.allocated.get(resource).copied().unwrap_or_default()).nanos())
        })
        .sum()
}

/// How many clusters each replica count is multiplied by (see [`demand_ratio`]).
fn fan_out(w: &Workload) -> u64 {
    match w.replica_scheduling.kind {
        ReplicaSchedulingType::Divided => 1,
        ReplicaSchedulingType::Duplicated => match (w.number_of_clusters, &w.cluster_affinity) {
            (Some(n), _) => u64::from(n),
            (None, Some(a)) if !a.cluster_names.is_empty() => a.cluster_names.len() as u64,
            _ => 1,
        },
    }
}

fn quantity_gib(gib: u64) -> Quantity {
    Quantity::from_units(gib * GIB)
}

fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn generate_fleet(n: usize, rng: &mut Rng) -> Vec<Cluster> {
    let shares: Vec<u64> = PROVIDERS.iter().map(|p| p.share).collect();
    (0..n)
        .map(|i| {
            let p = &PROVIDERS[rng.weighted(&shares)];
            let region = *rng.pick(p.regions);
            let zone = format!("{region}{}", rng.pick(&p.zone_suffixes));
            let name = format!("{}-{zone}-{i:05}", p.name);
            let onprem = p.name == "onprem";
            let gpu = rng.chance(10);
            let tier = if gpu {
                "gpu"
            } else if onprem && rng.chance(60) || rng.chance(3) {
                "regulated"
            } else {
                ["general", "general", "general", "general", "compute", "memory"][rng.below(6) as usize]
            };
            let env = ENVS[rng.weighted(&[60, 25, 15])];
            let mut labels = labels_of(&[("env", env), ("tier", tier)]);
            if rng.chance(80) {
                labels.insert("team".into(), rng.pick(&TEAMS).to_string());
            }
            if rng.chance(90) {
                labels.insert("gen".into(), rng.range(3, 7).to_string());
            }
            if onprem {
                labels.insert("datacenter".into(), region.trim_start_matches("dc-").to_string());
            }

            let mut capabilities = Vec::new();
            if gpu {
                capabilities.push("gpu");
            }
            if tier == "regulated" {
                capabilities.push("pci-dss");
            }
            let istio = rng.chance(50);
            if istio {
                capabilities.push("istio");
            }
            if rng.chance(20) {
                capabilities.push("arm64");
            }
            if rng.chance(30) {
                capabilities.push("local-ssd");
            }
            if rng.chance(5) {
                capabilities.push("confidential-computing");
            }

            let mut apis = vec![API_DEPLOYMENTS, "services/v1", "configmaps/v1"];
            for (api, percent) in [(API_STATEFULSETS, 90), (API_INGRESS, 70), (API_CRONJOBS, 60), (API_KAFKA, 10)] {
                if rng.chance(percent) {
                    apis.push(api);
                }
            }
            if istio {
                apis.push(API_ISTIO);
            }

            let cores = [32, 48, 64, 96, 128, 192, 256, 384, 512][rng.weighted(&[5, 10, 20, 20, 20, 10, 8, 5, 2])];
            let gib_per_core = if tier == "memory" || gpu { 8 } else { 4 };
            let mut capacity = ResourceList::new();
            let mut allocated = ResourceList::new();
            let used = rng.range(10, 70);
            let jitter = |rng: &mut Rng| (used + rng.range(0, 20)).saturating_sub(10).clamp(5, 90);
            capacity.insert(CPU.into(), Quantity::from_units(cores));
            allocated.insert(CPU.into(), Quantity::from_millis(cores * 10 * used));
            capacity.insert(MEMORY.into(), quantity_gib(cores * gib_per_core));
            allocated.insert(MEMORY.into(), Quantity::from_units(cores * gib_per_core * GIB / 100 * jitter(rng)));
            let pods = (cores * 16).max(110);
            capacity.insert(PODS.into(), Quantity::from_units(pods));
            allocated.insert(PODS.into(), Quantity::from_units(pods * jitter(rng) / 100));
            if gpu {
                let gpus = [8, 16, 32, 64][rng.weighted(&[2, 4, 3, 1])];
                capacity.insert(GPU.into(), Quantity::from_units(gpus));
                allocated.insert(GPU.into(), Quantity::from_units(gpus * jitter(rng) / 100));
            }

            let mut taints = Vec::new();
            let taint =
                |key: &str, value: &str, effect| Taint { key: key.into(), value: value.into(), effect, added_at: None };
            if rng.chance(5) {
                taints.push(taint("maintenance", "true", TaintEffect::NoSchedule));
            }
            if gpu && rng.chance(50) {
                taints.push(taint("dedicated", "gpu", TaintEffect::NoSchedule));
            }
            if tier == "regulated" && rng.chance(50) {
                taints.push(taint("dedicated", "regulated", TaintEffect::NoExecute));
            }
            if rng.chance(10) {
                taints.push(taint("spot", "true", TaintEffect::PreferNoSchedule));
            }
            if rng.chance(2) {
                taints.push(taint("decommissioning", "", TaintEffect::NoExecute));
            }

            let mut cost_cents = p.cost_cents + rng.range(0, 30);
            if gpu {
                cost_cents *= 3;
            }
            if taints.iter().any(|t| t.key == "spot") {
                cost_cents /= 3;
            }
            Cluster {
                name,
                labels,
                location: Location { provider: Some(p.name.into()), region: Some(region.into()), zone: Some(zone) },
                capabilities: strings(&capabilities),
                api_resources: strings(&apis),
                capacity,
                allocated,
                taints,
                unschedulable: rng.chance(3),
                ready: !rng.chance(3),
                cost: Some(cost_cents as f64 / 100.0),
                ..Cluster::default()
            }
        })
        .collect()
}

/// What the workload generator draws names and locations from, so selectors mean something.
struct FleetFacts {
    names: Vec<String>,
    providers: Vec<String>,
    regions: Vec<String>,
    zones: Vec<String>,
}

impl FleetFacts {
    fn of(clusters: &[Cluster]) -> Self {
        let mut providers: Vec<String> = clusters.iter().filter_map(|c| c.location.provider.clone()).collect();
        let mut regions: Vec<String> = clusters.iter().filter_map(|c| c.location.region.clone()).collect();
        let mut zones: Vec<String> = clusters.iter().filter_map(|c| c.location.zone.clone()).collect();
        for v in [&mut providers, &mut regions, &mut zones] {
            v.sort();
            v.dedup();
        }
        let fallback = |v: &mut Vec<String>, x: &str| {
            if v.is_empty() {
                v.push(x.to_string());
            }
        };
        fallback(&mut providers, "aws");
        fallback(&mut regions, "us-east-1");
        fallback(&mut zones, "us-east-1a");
        let mut names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
        if names.is_empty() {
            names.push("absent-cluster".into());
        }
        FleetFacts { names, providers, regions, zones }
    }
}

fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement { key: key.into(), operator, values: strings(values) }
}

/// Adds one term to a selector.
type AddTerm = fn(&mut Rng, &mut LabelSelector);

/// A label selector of one or two terms drawn from a menu that uses every operator.
fn label_selector(rng: &mut Rng) -> LabelSelector {
    use SelectorOperator::*;
    let mut s = LabelSelector::default();
    // Terms on distinct keys, so a selector is never self-contradictory.
    let menus: [&[AddTerm]; 3] = [
        &[
            |_, s| {
                s.match_labels.insert("env".into(), "prod".into());
            },
            |_, s| s.match_expressions.push(req("env", In, &["prod", "staging"])),
            |_, s| s.match_expressions.push(req("env", NotIn, &["dev"])),
        ],
        &[
            |_, s| s.match_expressions.push(req("tier", NotIn, &["gpu", "regulated"])),
            |_, s| s.match_expressions.push(req("tier", In, &["general", "compute", "memory"])),
            |rng, s| {
                let team = *rng.pick(&TEAMS);
                s.match_expressions.push(req("team", In, &[team, "platform"]));
            },
            |_, s| s.match_expressions.push(req("team", Exists, &[])),
            |_, s| s.match_expressions.push(req("team", DoesNotExist, &[])),
        ],
        &[
            |rng, s| {
                let bound = rng.range(2, 4).to_string();
                s.match_expressions.push(req("gen", Gt, &[&bound]));
            },
            |rng, s| {
                let bound = rng.range(6, 8).to_string();
                s.match_expressions.push(req("gen", Lt, &[&bound]));
            },
            |_, s| s.match_expressions.push(req("gen", Exists, &[])),
        ],
    ];
    let first = rng.below(3) as usize;
    let f = *rng.pick(menus[first]);
    f(rng, &mut s);
    if rng.chance(50) {
        let second = (first + 1 + rng.below(2) as usize) % 3;
        let f = *rng.pick(menus[second]);
        f(rng, &mut s);
    }
    s
}

/// A location selector over providers, regions or zones present in the fleet.
fn location_selector(rng: &mut Rng, facts: &FleetFacts) -> LocationSelector {
    let mut s = LocationSelector::default();
    match rng.below(4) {
        0 => s.providers = rng.sample(&facts.providers, 2),
        1 => s.regions = rng.sample_between(&facts.regions, 3, 6),
        2 => s.zones = rng.sample_between(&facts.zones, 6, 12),
        _ => {
            s.providers = rng.sample(&facts.providers, 3);
            s.regions = rng.sample_between(&facts.regions, 6, 10);
        }
    }
    s
}

fn toleration(key: &str, operator: TolerationOperator, value: &str, effect: Option<TaintEffect>) -> Toleration {
    Toleration { key: key.into(), operator, value: value.into(), effect, toleration_seconds: None }
}

fn spot_toleration() -> Toleration {
    toleration("spot", TolerationOperator::Equal, "true", Some(TaintEffect::PreferNoSchedule))
}

fn spread(key: &str, min_groups: Option<u32>, max_groups: Option<u32>, max_skew: Option<u32>) -> SpreadConstraint {
    SpreadConstraint { topology_key: key.into(), min_groups, max_groups, max_skew }
}

fn prioritizers(rng: &mut Rng) -> Vec<Prioritizer> {
    use PrioritizerName::*;
    let names = [Balance, Steady, LeastAllocated, MostAllocated, Cost];
    let k = rng.range(1, 3) as usize;
    rng.sample(&names, k)
        .into_iter()
        .map(|name| {
            let weight = match rng.below(10) {
                0 => -(rng.range(1, 5) as i32),
                1..=6 => 1,
                _ => rng.range(2, 10) as i32,
            };
            Prioritizer { name, weight }
        })
        .collect()
}

fn preferences(rng: &mut Rng, facts: &FleetFacts) -> Vec<Preference> {
    let k = rng.range(1, 2);
    (0..k)
        .map(|_| {
            let weight = rng.range(1, 100) as u32;
            match rng.below(3) {
                0 => Preference { weight, label_selector: Some(label_selector(rng)), location_selector: None },
                1 => {
                    Preference { weight, label_selector: None, location_selector: Some(location_selector(rng, facts)) }
                }
                _ => Preference {
                    weight,
                    label_selector: Some(label_selector(rng)),
                    location_selector: Some(location_selector(rng, facts)),
                },
            }
        })
        .collect()
}

/// The archetypes, with their shares in per mille.
#[derive(Clone, Copy)]
enum Archetype {
    Web,
    Weighted,
    Aggregated,
    Agent,
    Pinned,
    Fallback,
    Regulated,
    Gpu,
    Batch,
    ZonalHa,
}

const ARCHETYPES: [(Archetype, u64, &str); 10] = [
    (Archetype::Web, 300, "web"),
    (Archetype::Weighted, 120, "weighted"),
    (Archetype::Aggregated, 100, "aggregated"),
    (Archetype::Agent, 100, "agent"),
    (Archetype::Pinned, 40, "pinned"),
    (Archetype::Fallback, 100, "fallback"),
    (Archetype::Regulated, 50, "regulated"),
    (Archetype::Gpu, 30, "gpu"),
    (Archetype::Batch, 90, "batch"),
    (Archetype::ZonalHa, 70, "zonal-ha"),
];

fn generate_workload(i: usize, facts: &FleetFacts, rng: &mut Rng) -> Workload {
    use SelectorOperator::{Gt, In, NotIn};
    use TolerationOperator::{Equal, Exists};
    let shares: Vec<u64> = ARCHETYPES.iter().map(|a| a.1).collect();
    let (arch, _, prefix) = ARCHETYPES[rng.weighted(&shares)];
    let mut w = Workload::named(&format!("{prefix}-{i:05}"));
    w.namespace = rng.pick(&TEAMS).to_string();
    let cpu_millis = [100, 250, 500, 500, 1_000, 1_000, 2_000, 4_000][rng.below(8) as usize];
    let gib_per_core = [2, 4, 4, 4, 8][rng.below(5) as usize];
    w.resources.insert(CPU.into(), Quantity::from_millis(cpu_millis));
    w.resources.insert(MEMORY.into(), Quantity::from_units(cpu_millis * gib_per_core * GIB / 1_000));
    w.replicas = rng.range(2, 30) as u32;
    w.required_apis.push(API_DEPLOYMENTS.into());
    if rng.chance(15) {
        w.required_apis.push(API_INGRESS.into());
    }
    w.priority = [0, 0, 0, 10, 100, 1_000][rng.below(6) as usize];
    let rs = &mut w.replica_scheduling;

    match arch {
        Archetype::Web => {
            rs.division = Division::Dynamic;
            w.cluster_affinity =
                Some(ClusterAffinity { label_selector: Some(label_selector(rng)), ..Default::default() });
            w.spread_constraints.push(spread("region", Some(2), None, None));
            if rng.chance(50) {
                w.spread_constraints.push(spread("cluster", Some(2), Some(rng.range(4, 8) as u32), None));
            }
            if rng.chance(40) {
                w.tolerations.push(spot_toleration());
            }
            if rng.chance(30) {
                w.required_capabilities.push("istio".into());
                w.required_apis.push(API_ISTIO.into());
            }
        }
        Archetype::Weighted => {
            rs.division = Division::Weighted;
            rs.weights = vec![
                ClusterWeight { cluster_names: rng.sample(&facts.names, 3), label_selector: None, weight: 5 },
                ClusterWeight {
                    cluster_names: Vec::new(),
                    label_selector: Some(LabelSelector {
                        match_labels: labels_of(&[("env", "prod")]),
                        ..Default::default()
                    }),
                    weight: rng.range(2, 4) as u32,
                },
                ClusterWeight { cluster_names: Vec::new(), label_selector: Some(label_selector(rng)), weight: 1 },
            ];
            w.cluster_affinity = Some(ClusterAffinity {
                location_selector: Some(location_selector(rng, facts)),
                exclude: rng.sample(&facts.names, 2),
                ..Default::default()
            });
            w.number_of_clusters = Some(rng.range(3, 10) as u32);
        }
        Archetype::Aggregated => {
            rs.division = Division::Aggregated;
            w.cluster_affinity = Some(ClusterAffinity {
                label_selector: Some(label_selector(rng)),
                location_selector: rng.chance(50).then(|| location_selector(rng, facts)),
                ..Default::default()
            });
            if rng.chance(30) {
                w.required_apis.push(API_STATEFULSETS.into());
            }
            if rng.chance(20) {
                w.required_capabilities.push("local-ssd".into());
            }
            if rng.chance(30) {
                w.spread_constraints.push(spread("provider", None, Some(1), None));
            }
        }
        Archetype::Agent => {
            rs.kind = ReplicaSchedulingType::Duplicated;
            w.replicas = rng.range(1, 3) as u32;
            w.number_of_clusters = Some(rng.range(2, 6) as u32);
            w.spread_constraints.push(spread("provider", Some(2), Some(3), Some(1)));
            if rng.chance(50) {
                w.spread_constraints.push(spread("region", Some(2), None, None));
            }
            w.tolerations.push(toleration("maintenance", Exists, "", Some(TaintEffect::NoSchedule)));
            w.tolerations.push(toleration("", Exists, "", Some(TaintEffect::PreferNoSchedule)));
            if rng.chance(50) {
                w.cluster_affinity = Some(ClusterAffinity {
                    label_selector: Some(LabelSelector {
                        match_expressions: vec![req("env", In, &["prod", "staging"])],
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        Archetype::Pinned => {
            rs.kind = ReplicaSchedulingType::Duplicated;
            w.replicas = rng.range(1, 4) as u32;
            w.cluster_affinity =
                Some(ClusterAffinity { cluster_names: rng.sample_between(&facts.names, 2, 4), ..Default::default() });
            w.tolerations.push(spot_toleration());
        }
        Archetype::Fallback => {
            rs.division = Division::Dynamic;
            let regions = rng.sample(&facts.regions, 2);
            let providers = rng.sample(&facts.providers, 1);
            w.cluster_affinities = vec![
                ClusterAffinity {
                    name: Some("primary".into()),
                    location_selector: Some(LocationSelector { regions, ..Default::default() }),
                    label_selector: Some(LabelSelector {
                        match_labels: labels_of(&[("env", "prod")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ClusterAffinity {
                    name: Some("same-provider".into()),
                    location_selector: Some(LocationSelector { providers, ..Default::default() }),
                    ..Default::default()
                },
                ClusterAffinity {
                    name: Some("anywhere".into()),
                    label_selector: Some(LabelSelector {
                        match_expressions: vec![req("env", NotIn, &["dev"])],
                        ..Default::default()
                    }),
                    exclude: rng.sample(&facts.names, 3),
                    ..Default::default()
                },
            ];
            if rng.chance(50) {
                w.spread_constraints.push(spread("zone", Some(2), None, Some(rng.range(2, 6) as u32)));
            }
        }
        Archetype::Regulated => {
            rs.division = Division::Dynamic;
            w.required_capabilities.push("pci-dss".into());
            w.required_apis.push(API_STATEFULSETS.into());
            w.tolerations.push(toleration("dedicated", Equal, "regulated", Some(TaintEffect::NoExecute)));
            w.cluster_affinity = Some(ClusterAffinity {
                label_selector: Some(LabelSelector {
                    match_labels: labels_of(&[("tier", "regulated")]),
                    match_expressions: vec![req("env", In, &["prod", "staging"])],
                }),
                ..Default::default()
            });
            w.replicas = w.replicas.clamp(2, 8);
            if rng.chance(50) {
                w.spread_constraints.push(spread("datacenter", Some(1), Some(2), None));
            } else {
                w.spread_constraints.push(spread("zone", Some(2), None, None));
            }
            w.number_of_clusters = Some(rng.range(2, 4) as u32);
            w.priority = 1_000;
        }
        Archetype::Gpu => {
            rs.division = Division::Aggregated;
            w.resources.insert(GPU.into(), Quantity::from_units(if rng.chance(80) { 1 } else { 2 }));
            w.replicas = rng.range(1, 8) as u32;
            w.required_capabilities.push("gpu".into());
            w.tolerations.push(toleration("dedicated", Equal, "gpu", Some(TaintEffect::NoSchedule)));
            w.tolerations.push(spot_toleration());
            w.spread_constraints.push(spread("region", None, Some(1), None));
            w.cluster_affinity = Some(ClusterAffinity {
                label_selector: Some(LabelSelector {
                    match_expressions: vec![req("tier", In, &["gpu"]), req("gen", Gt, &["3"])],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        Archetype::Batch => {
            rs.division = Division::Dynamic;
            w.priority = -(rng.range(1, 100) as i32);
            let mut tolerate_all = toleration("", Exists, "", None);
            if rng.chance(50) {
                // Only for a while on NoExecute: keeps replicas, admits none there.
                tolerate_all.effect = Some(TaintEffect::NoExecute);
                tolerate_all.toleration_seconds = Some(rng.range(60, 3_600) as i64);
            }
            w.tolerations.push(tolerate_all);
            w.tolerations.push(toleration("spot", Exists, "", None));
            w.prioritizers = vec![
                Prioritizer { name: PrioritizerName::Cost, weight: 5 },
                Prioritizer { name: PrioritizerName::MostAllocated, weight: 1 },
            ];
            if rng.chance(50) {
                w.required_apis.push(API_CRONJOBS.into());
            }
            if rng.chance(20) {
                w.required_capabilities.push("arm64".into());
            }
            w.number_of_clusters = Some(rng.range(2, 12) as u32);
        }
        Archetype::ZonalHa => {
            rs.division = Division::Dynamic;
            w.replicas = w.replicas.max(3);
            w.spread_constraints.push(spread("zone", Some(3), None, Some(1)));
            w.spread_constraints.push(spread("cluster", Some(3), Some(6), None));
            if rng.chance(50) {
                w.spread_constraints.push(spread("team", None, Some(2), None));
            }
            w.cluster_affinity = Some(ClusterAffinity {
                location_selector: Some(location_selector(rng, facts)),
                label_selector: rng.chance(50).then(|| label_selector(rng)),
                ..Default::default()
            });
            // Rides out short outages where it already runs; never lands on a not-ready cluster.
            w.tolerations.push(Toleration {
                toleration_seconds: Some(300),
                ..toleration(tmc_core::taint::NOT_READY_TAINT_KEY, Exists, "", Some(TaintEffect::NoExecute))
            });
            if rng.chance(30) {
                w.required_apis.push(API_KAFKA.into());
            }
        }
    }
    if rng.chance(50) {
        w.preferences = preferences(rng, facts);
    }
    if w.prioritizers.is_empty() && rng.chance(40) {
        w.prioritizers = prioritizers(rng);
    }
    w
}

/// Scales demand so total cpu (and GPU) demand is `per_mille` / 1000 of the free amount on
/// schedulable clusters. GPU workloads get more or fewer replicas (GPUs are whole); every other
/// workload keeps its replica count, which its policy was drawn for, and gets a larger or smaller
/// per-replica cpu request (in steps of 10m, memory in proportion). Rounding error is carried from
/// workload to workload, so the total lands close to the target.
fn scale_to_capacity(workloads: &mut [Workload], clusters: &[Cluster], per_mille: u64) {
    let budget = |resource: &str| schedulable_free(clusters, resource) * u128::from(per_mille) / 1_000;
    let per = |w: &Workload, resource: &str| w.resources.get(resource).map_or(0, |q| q.nanos());
    let total = |w: &Workload, resource: &str| per(w, resource) * u128::from(w.replicas) * u128::from(fan_out(w));
    let is_gpu = |w: &Workload| w.resources.contains_key(GPU);

    // GPU workloads first, on the GPU budget, by replica count.
    let base: u128 = workloads.iter().filter(|w| is_gpu(w)).map(|w| total(w, GPU)).sum();
    let gpu_budget = budget(GPU);
    let mut carry: i128 = 0;
    for w in workloads.iter_mut().filter(|w| is_gpu(w) && base > 0) {
        let unit = (per(w, GPU) * u128::from(fan_out(w))) as i128;
        let wanted = (total(w, GPU) * gpu_budget / base) as i128 + carry;
        let replicas = ((wanted + unit / 2) / unit).clamp(1, i128::from(tmc_core::validate::MAX_REPLICAS));
        carry = wanted - replicas * unit;
        w.replicas = replicas as u32;
    }

    // Everything else shares what the GPU workloads leave of the cpu budget, by request size.
    let gpu_cpu: u128 = workloads.iter().filter(|w| is_gpu(w)).map(|w| total(w, CPU)).sum();
    let cpu_budget = budget(CPU).saturating_sub(gpu_cpu);
    let base: u128 = workloads.iter().filter(|w| !is_gpu(w)).map(|w| total(w, CPU)).sum();
    let step = Quantity::from_millis(10).nanos();
    let mut carry: i128 = 0;
    for w in workloads.iter_mut().filter(|w| !is_gpu(w) && base > 0) {
        let count = u128::from(w.replicas) * u128::from(fan_out(w));
        if count == 0 {
            continue;
        }
        let wanted = (total(w, CPU) * cpu_budget / base) as i128 + carry;
        let unit = (count * step) as i128;
        let steps = ((wanted + unit / 2) / unit).max(1);
        carry = wanted - steps * unit;
        let old_cpu = per(w, CPU);
        let new_cpu = steps as u128 * step;
        let mib = Quantity::from_units(1 << 20).nanos();
        let new_memory = (per(w, MEMORY) * new_cpu / old_cpu.max(1)).div_ceil(mib).max(1) * mib;
        w.resources.insert(CPU.into(), Quantity::from_nanos(new_cpu));
        w.resources.insert(MEMORY.into(), Quantity::from_nanos(new_memory));
    }
}

/// Per-cluster replica bounds, set once replica counts are final so they stay satisfiable.
fn finish_replica_bounds(w: &mut Workload, rng: &mut Rng) {
    let rs = &mut w.replica_scheduling;
    if rs.kind != ReplicaSchedulingType::Divided {
        return;
    }
    let r = w.replicas;
    if rs.division == Division::Weighted || rng.chance(15) {
        let min = (r / 8).clamp(1, 4);
        rs.min_replicas_per_cluster = Some(min);
        if rng.chance(50) {
            rs.max_replicas_per_cluster = Some((r / 2).max(min).max(1));
        }
    } else if rng.chance(10) {
        rs.max_replicas_per_cluster = Some((r / 3).max(1));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn config(clusters: usize, workloads: usize, seed: u64, contention: Contention) -> GenerateConfig {
        GenerateConfig { clusters, workloads, seed, contention }
    }

    #[test]
    fn generated_inputs_are_valid_for_several_seeds_and_sizes() {
        for (clusters, workloads) in [(0, 0), (1, 5), (3, 20), (12, 60), (100, 1_000)] {
            for seed in [0, 1, 42, u64::MAX] {
                for contention in [Contention::Low, Contention::High] {
                    let input = generate(&config(clusters, workloads, seed, contention));
                    assert_eq!((input.clusters.len(), input.workloads.len()), (clusters, workloads));
                    if let Err(e) = tmc_core::validate(&input) {
                        panic!("{clusters}x{workloads} seed {seed} {contention:?}: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_config_same_input_different_seed_different_input() {
        let a = generate(&config(50, 300, 7, Contention::High));
        let b = generate(&config(50, 300, 7, Contention::High));
        assert_eq!(a, b);
        let ja = serde_json::to_string(&a).expect("serializes");
        let jb = serde_json::to_string(&b).expect("serializes");
        assert_eq!(ja, jb, "bit for bit");
        assert_ne!(a, generate(&config(50, 300, 8, Contention::High)));
        // The fleet does not depend on the number of workloads.
        assert_eq!(a.clusters, generate(&config(50, 10, 7, Contention::Low)).clusters);
    }

    #[test]
    fn contention_sets_the_demand_ratio() {
        for seed in 0..4 {
            let low = generate(&config(100, 1_000, seed, Contention::Low));
            let high = generate(&config(100, 1_000, seed, Contention::High));
            let r = |input: &PlacementInput, res| demand_ratio(input, res).expect("free capacity");
            eprintln!(
                "seed {seed}: low cpu {:.3} mem {:.3} gpu {:.3}; high cpu {:.3} mem {:.3} gpu {:.3}",
                r(&low, CPU),
                r(&low, MEMORY),
                r(&low, GPU),
                r(&high, CPU),
                r(&high, MEMORY),
                r(&high, GPU)
            );
            assert!((0.30..=0.50).contains(&r(&low, CPU)), "low cpu {}", r(&low, CPU));
            assert!((0.90..=1.20).contains(&r(&high, CPU)), "high cpu {}", r(&high, CPU));
            assert!((0.90..=1.25).contains(&r(&high, GPU)), "high gpu {}", r(&high, GPU));
            assert!(r(&high, MEMORY) > 0.6, "high memory {}", r(&high, MEMORY));
        }
    }

    #[test]
    fn every_constraint_kind_appears() {
        let input = generate(&config(200, 2_000, 3, Contention::High));
        let ws = &input.workloads;
        let selectors = ws.iter().flat_map(|w| {
            let mut s: Vec<&LabelSelector> = Vec::new();
            for a in w.cluster_affinity.iter().chain(&w.cluster_affinities) {
                s.extend(&a.label_selector);
            }
            s.extend(w.preferences.iter().filter_map(|p| p.label_selector.as_ref()));
            s.extend(w.replica_scheduling.weights.iter().filter_map(|x| x.label_selector.as_ref()));
            s
        });
        let mut ops = BTreeSet::new();
        let mut match_labels = false;
        for s in selectors {
            ops.extend(s.match_expressions.iter().map(|e| e.operator));
            match_labels |= !s.match_labels.is_empty();
        }
        assert_eq!(ops.len(), 6, "{ops:?}");
        assert!(match_labels);
        let affinities = || ws.iter().flat_map(|w| w.cluster_affinity.iter().chain(&w.cluster_affinities));
        let loc = || affinities().filter_map(|a| a.location_selector.as_ref());
        assert!(loc().any(|l| !l.providers.is_empty()));
        assert!(loc().any(|l| !l.regions.is_empty()));
        assert!(loc().any(|l| !l.zones.is_empty()));
        assert!(affinities().any(|a| !a.cluster_names.is_empty()));
        assert!(affinities().any(|a| !a.exclude.is_empty()));
        assert!(ws.iter().any(|w| w.cluster_affinities.len() > 1));
        let tols = || ws.iter().flat_map(|w| &w.tolerations);
        assert!(tols().any(|t| t.key.is_empty()));
        assert!(tols().any(|t| t.toleration_seconds.is_some()));
        assert!(tols().any(|t| t.operator == TolerationOperator::Equal));
        assert!(ws.iter().any(|w| w.required_apis.len() > 1));
        assert!(ws.iter().any(|w| !w.required_capabilities.is_empty()));
        let spreads = || ws.iter().flat_map(|w| &w.spread_constraints);
        for key in ["cluster", "provider", "region", "zone", "team", "datacenter"] {
            assert!(spreads().any(|s| s.topology_key == key), "spread on {key}");
        }
        assert!(spreads().any(|s| s.min_groups.is_some()));
        assert!(spreads().any(|s| s.max_groups.is_some()));
        assert!(spreads().any(|s| s.max_skew.is_some()));
        let rs = || ws.iter().map(|w| &w.replica_scheduling);
        assert!(rs().any(|r| r.kind == ReplicaSchedulingType::Duplicated));
        for d in [Division::Weighted, Division::Dynamic, Division::Aggregated] {
            assert!(rs().any(|r| r.kind == ReplicaSchedulingType::Divided && r.division == d), "{d:?}");
        }
        assert!(rs().any(|r| !r.weights.is_empty()));
        assert!(rs().any(|r| r.min_replicas_per_cluster.is_some()));
        assert!(rs().any(|r| r.max_replicas_per_cluster.is_some()));
        assert!(ws.iter().any(|w| w.number_of_clusters.is_some()));
        assert!(ws.iter().any(|w| !w.preferences.is_empty()));
        let prios: BTreeSet<_> = ws.iter().flat_map(|w| w.prioritizers.iter().map(|p| p.name)).collect();
        assert_eq!(prios.len(), 5);
        assert!(ws.iter().flat_map(|w| &w.prioritizers).any(|p| p.weight < 0));
        let priorities: BTreeSet<i32> = ws.iter().map(|w| w.priority).collect();
        assert!(priorities.len() > 3);
        let cs = &input.clusters;
        let effects: BTreeSet<_> = cs.iter().flat_map(|c| c.taints.iter().map(|t| t.effect)).collect();
        assert_eq!(effects.len(), 3);
        assert!(cs.iter().any(|c| !c.ready) && cs.iter().any(|c| c.unschedulable));
        assert!(cs.iter().any(|c| c.capacity.contains_key(GPU)));
        let providers: BTreeSet<_> = cs.iter().filter_map(|c| c.location.provider.as_deref()).collect();
        assert!(providers.len() >= 3);
    }

    #[test]
    fn scenario_yaml_loads_back_into_the_generated_input() {
        for (clusters, workloads, seed, contention) in
            [(1, 0, 0, Contention::Low), (12, 60, 3, Contention::High), (40, 300, u64::MAX, Contention::Low)]
        {
            let cfg = config(clusters, workloads, seed, contention);
            let yaml = scenario_yaml(&cfg).expect("serializes");
            assert!(yaml.starts_with(&format!("# tmc-sim generate --clusters {clusters} ")), "{yaml}");
            assert_eq!(yaml, scenario_yaml(&cfg).expect("serializes"), "same bytes");
            let loaded = crate::load_sim_scenario(&yaml).unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
            assert!(loaded.name.as_deref().is_some_and(|n| n.contains(&format!("seed {seed}"))));
            assert_eq!(loaded.input(), generate(&cfg), "{cfg:?}: the YAML is the generated input");
        }
    }

    #[test]
    fn generated_inputs_solve() {
        let input = generate(&config(30, 200, 5, Contention::High));
        let plan = tmc_core::solve(&input).expect("valid");
        assert_eq!(plan.placements.len(), 200);
        assert!(plan.placements.iter().any(|p| p.phase == tmc_core::Phase::Scheduled));
    }
}
