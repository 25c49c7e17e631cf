#!/usr/bin/env bash
# Agimo in a few minutes (after a one-time build), on a real one-node Kubernetes (hack/node):
# `helm install charts/agimo` with the image built from this tree, a Deployment at zero
# replicas, a request that parks in Agimo, Agimo waking the Deployment (`wake = true`), a real
# pod starting, the real endpoint controller publishing it and the request released; then a
# WebSocket through Agimo and the metrics KEDA would scale on. Tears the node down and leaves
# the machine as it was, also on failure or Ctrl-C.
#
# Usage: hack/demo.sh   (or `make demo`; root: it runs a kubelet and containerd)
# The first run builds the control plane and the node from the Go module proxy (see README:
# ~20-25 min on 2 cores), cached in ${AGIMO_CACHE:-~/.cache/agimo} afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/node/common.sh

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

[[ $EUID == 0 ]] || { echo "hack/demo.sh needs root (it runs a kubelet and containerd)" >&2; exit 1; }

HOST=hello.demo.local
TMP=$(mktemp -d)
cleanup() {
  say "tearing the node down"
  hack/node/down.sh || true
  rm -rf "$TMP"
}
trap cleanup EXIT

say "building the control plane and the node (first run only, then cached; progress below)"
hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager helm >/dev/null
hack/node/build.sh >/dev/null
HELM=$(hack/controlplane/build.sh helm | sed -n 's/^helm=//p')
find_kubectl
k() { "$KUBECTL" "$@"; }
go build -tags e2e -o "$TMP/upstream" ./test/e2e/upstream # its WebSocket client, below

say "starting a one-node Kubernetes: control plane, containerd, kubelet, kube-proxy, CoreDNS"
eval "$(hack/node/up.sh)"
k get nodes -o wide

say "creating Deployment demo/hello at 0 replicas (image agimo.local/upstream:dev), and its Service"
k create namespace demo
k -n demo apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 0
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: agimo.local/upstream:dev
        imagePullPolicy: Never
        args: ["-listen", ":8080", "-name", "\$(POD_NAME)"]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: http}]
EOF

cat >"$TMP/values.yaml" <<EOF
image: {repository: agimo.local/agimo, tag: dev, pullPolicy: Never}
replicaCount: 1
config: |
  timeout = '60s'
  [[services]]
  host = '$HOST'
  type = 'deployment'
  namespace = 'demo'
  name = 'hello'
  service_name = 'hello'
  service_port = 80
  wake = true
EOF
say "helm install agimo charts/agimo (image built from this tree, imported into containerd)"
cat "$TMP/values.yaml"
"$HELM" install agimo charts/agimo -n agimo --create-namespace -f "$TMP/values.yaml" --wait --timeout 120s >/dev/null
k -n agimo get pods -o wide
IP=$(k -n agimo get svc agimo -o jsonpath='{.spec.clusterIP}')
POD_IP=$(k -n agimo get pods -l app.kubernetes.io/instance=agimo -o jsonpath='{.items[0].status.podIP}')
# kube-proxy programs the new Service a moment after the pod is Ready.
for _ in $(seq 100); do curl -fsS -m 1 "http://$IP:9090/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
metrics() { curl -fsS "http://$POD_IP:9090/metrics"; }

say "curl -H 'Host: $HOST' http://$IP/  (agimo's ClusterIP; hello has 0 replicas: the request parks and wakes it)"
start=$(now_ms)
curl -sS -m 60 -H "Host: $HOST" "http://$IP/" >"$TMP/response" 2>&1 || true
end=$(now_ms)
cat "$TMP/response"
grep -q '^pod=hello-' "$TMP/response" || { echo "unexpected response" >&2; exit 1; }
echo "answered $((end - start)) ms after it was sent: scale-up by agimo, pod started by the kubelet, published by the endpoint controller"

say "what happened in the cluster"
k -n demo get deployment hello
k -n demo get pods -o wide
k -n demo get endpointslices -o wide
k -n demo get events --sort-by=.lastTimestamp -o custom-columns=TIME:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message | tail -n 12

say "a WebSocket through agimo to the woken service"
status=0
"$TMP/upstream" -dial "$IP:80" -host "$HOST" -send "hello over websocket" -send "and again" ||
  { echo "WebSocket FAILED: see agimo's log below"; status=1; }

say "the metrics KEDA scales on, and the cold start's phases (http://$POD_IP:9090/metrics)"
metrics | grep -E "^agimo_(requests_total|active_requests|wakeups_total|park_duration_seconds_(sum|count))\{host=\"$HOST\"" || true
metrics | grep -E "^agimo_cold_start_seconds_(sum|count)\{host=\"$HOST\"" || true
cat <<EOF

KEDA's ScaledObject (charts/agimo, keda.enabled=true) queries Prometheus with:
  sum by (host) ((rate(agimo_requests_total{host="$HOST"}[1m])) + (agimo_active_requests{host="$HOST"}))
so one parked request is enough to wake a workload at zero; with wake = true, as here, Agimo
does it itself (and idle_after would scale it back to zero).
EOF

say "agimo's log"
k -n agimo logs deploy/agimo
exit "$status"
