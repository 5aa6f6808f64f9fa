#!/usr/bin/env bash
# End-to-end test of tmc-controller on a real Kubernetes cluster (kind or k3d).
#
# The same flow as the in-process tests (crates/tmc-kube-adapter/tests/integration), against a
# real kube-apiserver:
#   1. create a cluster (kind, or k3d with E2E_TOOL=k3d), build and load the controller image;
#   2. install the CRDs, RBAC and the Deployment from deploy/ (two replicas, one leader);
#   3. register two clusters: "local" (the cluster itself, through a kubeconfig Secret: the
#      controller probes it, which is its heartbeat, and discovers its nodes' allocatable) and
#      "remote" (heartbeated by this script, as a syncer would);
#   4. place a Deployment: decisions appear in the WorkloadPlacement's status, with Events;
#   5. stop heartbeating "remote": it turns Ready=False with the not-ready taint, and its replicas
#      move to "local" once their tolerationSeconds run out;
#   6. check metrics and the leader Lease.
#
# Requirements: docker, kubectl, and kind (default) or k3d. When one is missing the script says
# so and exits 1 (or 0 with E2E_SKIP_MISSING=1, for CI machines without them).
# Environment: E2E_TOOL=kind|k3d, E2E_CLUSTER=tmc-e2e, KEEP_CLUSTER=1 to keep it afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOL="${E2E_TOOL:-kind}"
CLUSTER="${E2E_CLUSTER:-tmc-e2e}"
IMAGE="tmc-controller:dev"
NS=tmc-system

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; dump; exit 1; }

missing=()
for cmd in docker kubectl "$TOOL"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "e2e-kind: missing ${missing[*]}; install them (or set E2E_TOOL=k3d) to run the end-to-end test." >&2
  [ "${E2E_SKIP_MISSING:-0}" = "1" ] && exit 0
  exit 1
fi
case "$TOOL" in kind|k3d) ;; *) echo "e2e-kind: E2E_TOOL must be kind or k3d" >&2; exit 1 ;; esac

dump() {
  kubectl -n "$NS" logs -l app.kubernetes.io/name=tmc-controller --tail=100 --prefix 2>/dev/null || true
  kubectl get clusterregistrations,workloadplacements -A -o wide 2>/dev/null || true
}

cleanup() {
  if [ -n "${HEARTBEAT_PID:-}" ]; then kill "$HEARTBEAT_PID" 2>/dev/null || true; fi
  if [ "${KEEP_CLUSTER:-0}" != "1" ]; then
    log "deleting cluster $CLUSTER"
    if [ "$TOOL" = kind ]; then kind delete cluster --name "$CLUSTER" || true; else k3d cluster delete "$CLUSTER" || true; fi
  fi
}
trap cleanup EXIT

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && fail "timed out after ${timeout}s waiting for $what"
    sleep 2
  done
  echo "ok: $what"
}

jsonpath_is() { # jsonpath_is RESOURCE JSONPATH EXPECTED [kubectl args...]
  local res=$1 path=$2 want=$3; shift 3
  [ "$(kubectl get "$res" "$@" -o "jsonpath=$path")" = "$want" ]
}

log "creating $TOOL cluster $CLUSTER"
if [ "$TOOL" = kind ]; then
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
  kubectl config use-context "kind-$CLUSTER"
else
  k3d cluster list "$CLUSTER" >/dev/null 2>&1 || k3d cluster create "$CLUSTER" --wait
  kubectl config use-context "k3d-$CLUSTER"
fi

log "building and loading $IMAGE"
docker build -f deploy/Dockerfile -t "$IMAGE" .
if [ "$TOOL" = kind ]; then kind load docker-image "$IMAGE" --name "$CLUSTER"; else k3d image import "$IMAGE" -c "$CLUSTER"; fi

log "installing CRDs, RBAC and the controller"
kubectl apply -f deploy/namespace.yaml
kubectl apply -f deploy/crds/
kubectl wait --for=condition=Established --timeout=60s crd/clusterregistrations.tmc.kcp.io crd/workloadplacements.tmc.kcp.io
kubectl apply -f deploy/rbac.yaml -f deploy/controller.yaml
kubectl -n "$NS" rollout status deploy/tmc-controller --timeout=180s

log "registering clusters"
if [ "$TOOL" = kind ]; then
  kind get kubeconfig --internal --name "$CLUSTER" >/tmp/tmc-e2e-kubeconfig
else
  # Inside the cluster the API server is reachable as the kubernetes Service.
  kubectl config view --raw --minify | sed -E 's#server: .*#server: https://kubernetes.default.svc#' >/tmp/tmc-e2e-kubeconfig
fi
kubectl -n "$NS" create secret generic local-kubeconfig --from-file=kubeconfig=/tmp/tmc-e2e-kubeconfig \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f - <<EOF
apiVersion: tmc.kcp.io/v1alpha1
kind: ClusterRegistration
metadata:
  name: local
  labels: {env: e2e, tier: backup}
spec:
  kubeconfigSecretRef: {namespace: $NS, name: local-kubeconfig}
  heartbeatThreshold: 60s
---
apiVersion: tmc.kcp.io/v1alpha1
kind: ClusterRegistration
metadata:
  name: remote
  labels: {env: e2e, tier: primary}
spec:
  capacity: {cpu: "8", memory: 32Gi, pods: 110}
  heartbeatThreshold: 10s
EOF

heartbeat() {
  while true; do
    kubectl patch clusterregistration remote --subresource=status --type=merge \
      -p "{\"status\":{\"lastHeartbeatTime\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}}" >/dev/null 2>&1 || true
    sleep 3
  done
}
heartbeat &
HEARTBEAT_PID=$!

wait_for "local probed and Ready" 120 jsonpath_is clusterregistration/local '{.status.conditions[?(@.type=="Ready")].status}' True
wait_for "remote Ready" 60 jsonpath_is clusterregistration/remote '{.status.conditions[?(@.type=="Ready")].status}' True
kubectl get clusterregistration local -o jsonpath='{.status.allocatable}'; echo

log "placing a Deployment"
kubectl apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.k8s.io/pause:3.10
          resources: {requests: {cpu: 10m, memory: 16Mi}}
---
apiVersion: tmc.kcp.io/v1alpha1
kind: WorkloadPlacement
metadata: {name: web, namespace: shop}
spec:
  resourceSelectors:
    - {apiVersion: apps/v1, kind: Deployment, name: web}
  clusterAffinity: {labelSelector: {matchLabels: {env: e2e}}}
  replicaScheduling: {division: Aggregated}
  preferences:
    - {weight: 100, labelSelector: {matchLabels: {tier: primary}}}
  tolerations:
    - {key: tmc.kcp.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 15}
EOF
wait_for "web Scheduled on remote" 60 jsonpath_is workloadplacement/web '{.status.decisions[*].cluster}' remote -n shop
jsonpath_is workloadplacement/web '{.status.conditions[?(@.type=="Scheduled")].status}' True -n shop \
  || fail "Scheduled condition is not True"
kubectl get workloadplacement web -n shop
wait_for "a Scheduled event" 30 sh -c \
  "kubectl get events -n shop --field-selector reason=Scheduled -o name | grep -q ."

log "scaling the Deployment (an autoscaler would): the placement re-divides"
kubectl scale deployment web -n shop --replicas=5
wait_for "5 replicas placed" 60 jsonpath_is workloadplacement/web '{.status.placedReplicas}' 5 -n shop

log "stopping remote's heartbeat: not ready, then evicted after tolerationSeconds"
kill "$HEARTBEAT_PID"; HEARTBEAT_PID=
wait_for "remote Ready=False" 60 jsonpath_is clusterregistration/remote '{.status.conditions[?(@.type=="Ready")].status}' False
kubectl get clusterregistration remote -o jsonpath='{.status.automaticTaints}'; echo
jsonpath_is workloadplacement/web '{.status.decisions[*].cluster}' remote -n shop \
  || fail "replicas left remote before their tolerationSeconds ran out"
wait_for "web moved to local" 90 jsonpath_is workloadplacement/web '{.status.decisions[*].cluster}' local -n shop
wait_for "a Rescheduled event" 30 sh -c \
  "kubectl get events -n shop --field-selector reason=Rescheduled -o name | grep -q ."

log "metrics and leader election"
metrics=$(kubectl get --raw "/api/v1/namespaces/$NS/services/tmc-controller-metrics:http/proxy/metrics")
echo "$metrics" | grep -E '^tmc_(reconciles_total|status_writes_total|decisions)' | head
echo "$metrics" | grep -q '^tmc_solve_duration_seconds_count' || fail "no solve latency metric"
holder=$(kubectl -n "$NS" get lease tmc-controller -o jsonpath='{.spec.holderIdentity}')
[ -n "$holder" ] || fail "no leader holds the lease"
echo "leader: $holder"

log "PASS"
