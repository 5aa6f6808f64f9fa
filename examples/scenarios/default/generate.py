#!/usr/bin/env python3
"""Generates examples/scenarios/default/scenario.yaml, the scenario `tmc-sim` runs with no arguments.

A fleet of 40 clusters on three providers in six regions, 200 workloads of mixed placement
policies, and an hour of events: an autoscaler scaling up, the whole of aws us-east-1 going dark
for half an hour, a planned drain, a capacity upgrade, the region's recovery, and a scale-down.

Deterministic (fixed seed, standard library only): running it again gives the same bytes, so the
committed scenario.yaml and its golden outputs stay in step. Usage:

    python3 examples/scenarios/default/generate.py            # rewrites scenario.yaml
    python3 examples/scenarios/default/generate.py --check    # exit 1 if scenario.yaml is stale
"""

import random
import sys
from pathlib import Path

SEED = 20261127
WORKLOADS = 200

# provider -> (regions with their zone suffixes, relative cost)
PROVIDERS = {
    "aws": ({"us-east-1": "abc", "eu-west-1": "abc"}, 1.0),
    "gcp": ({"us-central1": "abc", "europe-west4": "abc"}, 0.9),
    "azure": ({"eastus": "123", "westeurope": "123"}, 0.95),
}
# Clusters per region (40 in all).
PER_REGION = {"us-east-1": 7, "eu-west-1": 7, "us-central1": 7, "europe-west4": 7, "eastus": 6, "westeurope": 6}
OUTAGE_REGION = "us-east-1"
US = ["us-east-1", "us-central1", "eastus"]
EU = ["eu-west-1", "europe-west4", "westeurope"]

API_ALL = ["deployments.apps/v1", "statefulsets.apps/v1", "ingresses.networking.k8s.io/v1", "cronjobs.batch/v1"]

NAMESPACES = {
    "web": ["shop", "accounts", "content", "search"],
    "split": ["payments-edge", "media"],
    "batch": ["analytics", "etl"],
    "agent": ["platform", "observability"],
    "ha": ["core", "identity"],
    "regulated": ["payments", "ledger"],
    "fallback": ["api", "notifications"],
    "gpu": ["ml"],
    "stateful": ["data"],
}
WORDS = [
    "cart", "catalog", "checkout", "profile", "reviews", "pricing", "inventory", "orders", "search",
    "recommend", "auth", "session", "gateway", "media", "thumbnails", "mailer", "events", "audit",
    "ledger", "billing", "invoice", "tax", "fraud", "risk", "loyalty", "coupons", "wishlist",
    "feeds", "ranker", "indexer", "crawler", "metrics", "logs", "traces", "alerts", "backup",
]


def cpu(millis):
    return f'"{millis // 1000}"' if millis % 1000 == 0 else f"{millis}m"


def fleet(rng):
    clusters = []
    for provider, (regions, cost) in PROVIDERS.items():
        for region, suffixes in regions.items():
            for i in range(PER_REGION[region]):
                zone_suffix = suffixes[i % 3]
                zone = f"{region}{zone_suffix}" if provider != "azure" else f"{region}-{zone_suffix}"
                name = f"{provider}-{region}-{zone_suffix}{i // 3 + 1}"
                size = rng.choice([32, 48, 64, 64, 96, 128])
                env = "staging" if i == PER_REGION[region] - 1 else "prod"
                c = {
                    "name": name,
                    "provider": provider,
                    "region": region,
                    "zone": zone,
                    "env": env,
                    "tier": "general",
                    "cpu": size,
                    "memory": size * 4,
                    "pods": 500 if size <= 64 else 1000,
                    "alloc": rng.uniform(0.10, 0.30),
                    "cost": round(cost * rng.uniform(0.9, 1.1), 2),
                    "caps": [],
                    "apis": list(API_ALL) if rng.random() > 0.15 else API_ALL[:2],
                    "taints": [],
                    "gpu": 0,
                }
                if i == 1:
                    c["caps"].append("pci-dss")
                    c["tier"] = "regulated"
                if i == 2:
                    c["caps"].append("gpu")
                    c["gpu"] = rng.choice([8, 16])
                    c["tier"] = "gpu"
                    c["taints"].append('{key: nvidia.com/gpu, value: present, effect: NoSchedule}')
                if rng.random() < 0.4:
                    c["caps"].append("istio")
                clusters.append(c)
    # A few imperfections: spot capacity that is best avoided, one cluster under maintenance.
    for c in rng.sample(clusters, 4):
        c["taints"].append('{key: spot, value: "true", effect: PreferNoSchedule}')
    rng.choice([c for c in clusters if c["region"] != OUTAGE_REGION and not c["taints"]])["taints"].append(
        '{key: maintenance, value: "true", effect: NoSchedule}'
    )
    return clusters


def emit_cluster(c):
    out = [f"  - name: {c['name']}\n"]
    out.append(f"    labels: {{env: {c['env']}, tier: {c['tier']}, cloud: {c['provider']}}}\n")
    out.append(f"    location: {{provider: {c['provider']}, region: {c['region']}, zone: {c['zone']}}}\n")
    if c["caps"]:
        out.append(f"    capabilities: [{', '.join(c['caps'])}]\n")
    out.append(f"    apiResources: [{', '.join(c['apis'])}]\n")
    gpu = f", nvidia.com/gpu: {c['gpu']}" if c["gpu"] else ""
    out.append(f"    capacity: {{cpu: \"{c['cpu']}\", memory: {c['memory']}Gi, pods: {c['pods']}{gpu}}}\n")
    alloc_cpu = int(c["cpu"] * 1000 * c["alloc"]) // 500 * 500
    alloc_mem = int(c["memory"] * c["alloc"])
    out.append(f"    allocated: {{cpu: {cpu(alloc_cpu)}, memory: {alloc_mem}Gi}}\n")
    if c["taints"]:
        out.append(f"    taints: [{', '.join(c['taints'])}]\n")
    out.append(f"    cost: {c['cost']}\n")
    return "".join(out)


def workload(i, rng, names):
    kinds = ["web"] * 40 + ["split"] * 8 + ["batch"] * 14 + ["agent"] * 3 + ["ha"] * 8 + ["regulated"] * 8 \
        + ["fallback"] * 8 + ["gpu"] * 5 + ["stateful"] * 6
    kind = rng.choice(kinds)
    ns = rng.choice(NAMESPACES[kind])
    while True:
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}" if rng.random() < 0.5 else f"{rng.choice(WORDS)}-{i}"
        if (ns, name) not in names:
            names.add((ns, name))
            break
    lines = [f"  - name: {name}\n", f"    namespace: {ns}\n"]

    def add(text):
        lines.append(f"    {text}\n")

    if kind == "web":
        replicas = rng.choice([3, 4, 6, 8, 10, 12])
        add(f"replicas: {replicas}")
        add(f"priority: {rng.choice([50, 100, 100, 200])}")
        add(f"resources: {{cpu: {cpu(rng.choice([250, 500, 500, 1000]))}, memory: {rng.choice([512, 1024, 2048])}Mi}}")
        add("requiredApis: [deployments.apps/v1, ingresses.networking.k8s.io/v1]")
        add("clusterAffinity: {labelSelector: {matchLabels: {env: prod}}}")
        skew = rng.choice(["", ", maxSkew: 2", ", maxSkew: 4"])
        add(f"spreadConstraints: [{{topologyKey: region, minGroups: 2{skew}}}]")
        add("replicaScheduling: {type: Divided, division: Dynamic}")
        geo = rng.choice([US, EU])
        add(f"preferences: [{{weight: 40, locationSelector: {{regions: [{', '.join(geo)}]}}}}]")
    elif kind == "split":
        add(f"replicas: {rng.choice([6, 9, 12])}")
        add("priority: 80")
        add(f"resources: {{cpu: {cpu(rng.choice([500, 1000]))}, memory: 1Gi}}")
        add("clusterAffinity: {labelSelector: {matchLabels: {env: prod}}}")
        first, second = rng.sample(["aws", "gcp", "azure"], 2)
        add("replicaScheduling:")
        add("  type: Divided")
        add("  division: Weighted")
        add("  weights:")
        add(f"    - {{labelSelector: {{matchLabels: {{cloud: {first}}}}}, weight: 2}}")
        add(f"    - {{labelSelector: {{matchLabels: {{cloud: {second}}}}}, weight: 1}}")
    elif kind == "batch":
        add(f"replicas: {rng.choice([4, 6, 8, 12])}")
        add("priority: 0")
        add(f"resources: {{cpu: {cpu(rng.choice([500, 1000, 2000]))}, memory: {rng.choice([2, 4, 8])}Gi}}")
        add(f"clusterAffinity: {{locationSelector: {{regions: [{', '.join(rng.sample(US + EU, 3))}]}}}}")
        add("tolerations: [{key: spot, operator: Exists, effect: PreferNoSchedule}]")
        add("replicaScheduling: {type: Divided, division: Aggregated, maxReplicasPerCluster: 12}")
        add("prioritizers: [{name: Cost, weight: 2}, {name: MostAllocated, weight: 1}]")
    elif kind == "agent":
        add("replicas: 1")
        add("priority: 1000")
        add(f"resources: {{cpu: {cpu(rng.choice([100, 200]))}, memory: 128Mi}}")
        add("tolerations: [{operator: Exists}]")
        add("replicaScheduling: {type: Duplicated}")
    elif kind == "ha":
        add(f"replicas: {rng.choice([2, 3])}")
        add("priority: 300")
        add(f"resources: {{cpu: {cpu(rng.choice([500, 1000]))}, memory: 1Gi}}")
        add("clusterAffinity: {labelSelector: {matchLabels: {env: prod}}}")
        add("replicaScheduling: {type: Duplicated}")
        add(f"numberOfClusters: {rng.choice([2, 3])}")
        add(f"spreadConstraints: [{{topologyKey: {rng.choice(['provider', 'region'])}, minGroups: 2}}]")
        add("prioritizers: [{name: Balance, weight: 1}, {name: Steady, weight: 2}]")
    elif kind == "regulated":
        add(f"replicas: {rng.choice([2, 3, 4, 6])}")
        add("priority: 500")
        add(f"resources: {{cpu: {cpu(rng.choice([500, 1000, 2000]))}, memory: 2Gi}}")
        add("requiredCapabilities: [pci-dss]")
        add("requiredApis: [statefulsets.apps/v1]")
        # Card data must fail over fast: one minute on a dead cluster at most.
        add("tolerations: [{key: tmc.kcp.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 60}]")
        add("replicaScheduling: {type: Divided, division: Dynamic, maxReplicasPerCluster: 3}")
    elif kind == "fallback":
        add(f"replicas: {rng.choice([4, 6, 8])}")
        add("priority: 150")
        add(f"resources: {{cpu: {cpu(rng.choice([500, 1000]))}, memory: 1Gi}}")
        # A home region, and the rest of its continent as the fallback; back home once it recovers.
        geo = rng.choice([US, EU])
        add("clusterAffinities:")
        add(f"  - {{name: home, locationSelector: {{regions: [{geo[0]}]}}, labelSelector: {{matchLabels: {{env: prod}}}}}}")
        add(f"  - {{name: fallback, locationSelector: {{regions: [{', '.join(geo[1:])}]}}}}")
        add("replicaScheduling: {type: Divided, division: Dynamic}")
        add("rebalance: {policy: OnRecovery}")
    elif kind == "gpu":
        add(f"replicas: {rng.choice([2, 4, 6])}")
        add("priority: 250")
        add(f"resources: {{cpu: \"4\", memory: 32Gi, nvidia.com/gpu: {rng.choice([1, 2])}}}")
        add("requiredCapabilities: [gpu]")
        add("tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]")
        add("replicaScheduling: {type: Divided, division: Aggregated}")
    else:  # stateful
        add(f"replicas: {rng.choice([3, 5])}")
        add("priority: 400")
        add(f"resources: {{cpu: {cpu(rng.choice([1000, 2000]))}, memory: 8Gi}}")
        add("requiredApis: [statefulsets.apps/v1]")
        # Databases ride out short outages rather than resync: 15 minutes on a dead cluster.
        add("tolerations: [{key: tmc.kcp.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 900}]")
        add("replicaScheduling: {type: Divided, division: Dynamic, maxReplicasPerCluster: 2}")
        add("spreadConstraints: [{topologyKey: zone, minGroups: 2}]")
    return kind, f"{ns}/{name}", "".join(lines)


HEADER = """\
# GENERATED by generate.py (seed {seed}); do not edit by hand, re-run the script instead.
#
# The embedded default of `tmc-sim` (run with no arguments): {clusters} clusters on three providers in
# six regions, {workloads} workloads of mixed policies ({kinds}), and one hour of events: an
# autoscaler scales web services up, all of aws us-east-1 stops heartbeating for 30 minutes
# (replicas move after the 1 m heartbeat threshold plus each workload's not-ready toleration: 5 m by
# default, 1 m for payments, 15 m for databases), a cluster is drained for maintenance, another
# grows, the region comes back (workloads with `rebalance: OnRecovery` move back home; the others
# stay where they are), and traffic drops.
name: default fleet, us-east-1 outage and recovery
controller: {{heartbeatThresholdSeconds: 60, defaultNotReadyTolerationSeconds: 300}}
duration: 1h

"""


def generate():
    rng = random.Random(SEED)
    clusters = fleet(rng)
    names = set()
    workloads = [workload(i, rng, names) for i in range(WORKLOADS)]
    kinds = {}
    for kind, _, _ in workloads:
        kinds[kind] = kinds.get(kind, 0) + 1
    out = [
        HEADER.format(
            seed=SEED,
            clusters=len(clusters),
            workloads=len(workloads),
            kinds=", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
        ),
        "clusters:\n",
    ]
    out.extend(emit_cluster(c) for c in clusters)
    out.append("\nworkloads:\n")
    out.extend(text for _, _, text in workloads)

    outage = [c["name"] for c in clusters if c["region"] == OUTAGE_REGION]
    web = [key for kind, key, _ in workloads if kind == "web"]
    scaled = rng.sample(web, 6)
    drained = next(c["name"] for c in clusters if c["region"] == "europe-west4" and not c["taints"] and c["env"] == "prod")
    grown = next(c["name"] for c in clusters if c["region"] == "westeurope" and c["env"] == "prod" and c["cpu"] <= 64)
    out.append("\ntimeline:\n")
    for key in scaled:
        out.append(f"  - {{at: 3m, scale: {{workload: {key}, replicas: 16}}, label: \"autoscaler: morning peak\"}}\n")
    for name in outage:
        out.append(f"  - {{at: 10m, clusterDown: {name}, label: {OUTAGE_REGION} outage}}\n")
    out.append(f"  - {{at: 20m, drain: {{cluster: {drained}, gracePeriod: 5m}}, label: kernel upgrade}}\n")
    out.append(f"  - {{at: 28m, capacityChange: {{cluster: {grown}, capacity: {{cpu: \"128\", memory: 512Gi}}}}, label: node pool grows}}\n")
    for name in outage:
        out.append(f"  - {{at: 40m, clusterUp: {name}, label: {OUTAGE_REGION} recovers}}\n")
    out.append(f"  - {{at: 45m, uncordon: {drained}, label: upgrade done}}\n")
    for key in scaled:
        out.append(f"  - {{at: 50m, scale: {{workload: {key}, replicas: 8}}, label: \"autoscaler: traffic drops\"}}\n")
    return "".join(out)


def main():
    target = Path(__file__).resolve().parent / "scenario.yaml"
    text = generate()
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: re-run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
