#!/usr/bin/env bash
# Agimo in two minutes (after a one-time build): a real kube-apiserver on loopback, a
# Deployment at zero replicas, a request that parks, the Deployment scaled up, the request
# released, a WebSocket through Agimo, and the metrics KEDA would scale on. Cleans up
# everything it started, also on failure or Ctrl-C.
#
# Usage: hack/demo.sh   (or `make demo`; root: the "pod" runs in a network namespace)
# The first run builds etcd, kube-apiserver, kube-controller-manager from the Go module
# proxy (~10-15 min on 2 cores), cached in ${AGIMO_CACHE:-~/.cache/agimo} afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export AGIMO_CP_DIR=${AGIMO_CP_DIR:-/tmp/agimo-demo-cp}
source hack/controlplane/common.sh

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

[[ $EUID == 0 ]] || { echo "hack/demo.sh needs root (it creates a network namespace)" >&2; exit 1; }

POD_N=200 # netns number of the demo's one pod (the e2e suite counts up from 1)
HOST=hello.demo.local
TMP=$(mktemp -d)
AGIMO_PID=
cleanup() {
  say "cleaning up"
  if [[ -n $AGIMO_PID ]] && kill -0 "$AGIMO_PID" 2>/dev/null; then
    kill -TERM "$AGIMO_PID"
    wait "$AGIMO_PID" 2>/dev/null || true
  fi
  hack/netns.sh del "$POD_N" || true
  hack/controlplane/down.sh || true
  rm -rf "$TMP"
}
trap cleanup EXIT

say "building the control plane (first run only: ~10-15 min, then cached; progress below)"
hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager >/dev/null
find_kubectl
k() { "$KUBECTL" "$@"; }

say "building agimo and the demo upstream"
go build -o "$TMP/agimo" .
go build -tags e2e -o "$TMP/upstream" ./test/e2e/upstream

say "starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1"
eval "$(hack/controlplane/up.sh)"
k get --raw /version | grep gitVersion

say "creating Deployment demo/hello at 0 replicas, and its Service (port 80 -> 8080)"
k create namespace demo
k -n demo create deployment hello --image=demo/hello:never-pulled --replicas=0 --port=8080
k -n demo apply -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF

say "starting the pod's process in network namespace agimo-pod-$POD_N (no kubelet here)"
POD_IP=$(hack/netns.sh add "$POD_N")
hack/netns.sh exec "$POD_N" "$TMP/upstream" -listen "$POD_IP:8080" -name hello-pod >"$TMP/upstream.log" 2>&1 &
echo "pod IP $POD_IP (a veth pair; the range exists only on this machine)"

PORT=$(free_port)
METRICS=$(free_port "$PORT")
cat >"$TMP/config.toml" <<EOF
timeout = '60s'
[[services]]
host = '$HOST'
type = 'deployment'
namespace = 'demo'
name = 'hello'
service_name = 'hello'
service_port = 80
EOF
say "running agimo: proxy 127.0.0.1:$PORT, metrics 127.0.0.1:$METRICS"
cat "$TMP/config.toml"
"$TMP/agimo" --conf "$TMP/config.toml" --kubeconfig "$KUBECONFIG" --address 127.0.0.1 \
  --port "$PORT" --prometheus-exporter-port "$METRICS" --log-format console \
  --drain-delay 0s >"$TMP/agimo.log" 2>&1 &
AGIMO_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$METRICS/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
metric() { curl -fsS "http://127.0.0.1:$METRICS/metrics" | awk -v s="$1{host=\"$HOST\"}" '$1 == s {print $2}'; }

say "curl -H 'Host: $HOST' http://127.0.0.1:$PORT/  (hello has 0 replicas: the request parks)"
(
  curl -sS -m 60 -H "Host: $HOST" "http://127.0.0.1:$PORT/" >"$TMP/response" 2>&1 || true
  now_ms >"$TMP/done"
) &
CURL_PID=$!
for _ in $(seq 100); do [[ $(metric agimo_parked_requests) == 1 ]] && break; sleep 0.1; done
echo "agimo_parked_requests{host=\"$HOST\"} $(metric agimo_parked_requests)"
sleep 1

say "scaling hello to 1 replica (what KEDA would do)"
k -n demo scale deployment hello --replicas=1
for _ in $(seq 100); do
  POD=$(k -n demo get pods -l app=hello -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
  [[ -n $POD ]] && break
  sleep 0.2
done
echo "kube-controller-manager created Pod $POD (Pending: no scheduler or kubelet here)"

say "playing kubelet: the pod is ready, publish its EndpointSlice"
start=$(now_ms)
k apply -f - <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-demo
  namespace: demo
  labels:
    kubernetes.io/service-name: hello
    endpointslice.kubernetes.io/managed-by: demo.agimo.local
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["$POD_IP"]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, namespace: demo, name: $POD}
EOF
wait "$CURL_PID"
say "the parked request was released"
cat "$TMP/response"
grep -q '^pod=hello-pod ' "$TMP/response" || { echo "unexpected response" >&2; exit 1; }
echo "released $(($(cat "$TMP/done") - start)) ms after the EndpointSlice was written (kubectl apply included)"

say "a WebSocket through agimo to the woken service"
status=0
"$TMP/upstream" -dial "127.0.0.1:$PORT" -host "$HOST" -send "hello over websocket" -send "and again" ||
  { echo "WebSocket FAILED: see agimo's log below"; status=1; }

say "the metrics KEDA scales on (http://127.0.0.1:$METRICS/metrics)"
curl -fsS "http://127.0.0.1:$METRICS/metrics" |
  grep -E "^agimo_(requests_total|active_requests|parked_requests|park_duration_seconds_(sum|count))\{host=\"$HOST\"" || true
cat <<EOF

KEDA's ScaledObject (charts/agimo, keda.enabled=true) queries Prometheus with:
  sum by (host) ((rate(agimo_requests_total{host="$HOST"}[1m])) + (agimo_active_requests{host="$HOST"}))
so one parked request is enough to wake a workload at zero.
EOF

say "agimo's log"
cat "$TMP/agimo.log"
exit "$status"
