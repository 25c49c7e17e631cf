#!/usr/bin/env bash
# The end-to-end suite on a real node: build (or reuse) the node's binaries and the images
# from the tree, bring a one-node Kubernetes up (hack/node/up.sh), run test/node (`helm
# install charts/agimo`, real pods woken from zero), tear the node down, also on failure or
# Ctrl-C, and check that the machine is as it was before (hack/node/check-clean.sh).
#
# Usage: hack/node-e2e.sh [extra go test args]     e.g. hack/node-e2e.sh -run TestHelmDefaultValues
# Needs: root; Debian packages containerd runc iptables conntrack nftables (.ci/run installs
# them) besides the control plane's. A first run builds kubelet, kube-scheduler, kube-proxy,
# the CNI plugins, crictl and CoreDNS (hack/node/build.sh; see README for timings).
# Env: AGIMO_NODE_KEEP=1 keeps the node's logs in ${AGIMO_NODE_DIR:-/tmp/agimo-node}.last.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/node/common.sh
log() { printf '[node-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ $EUID == 0 ]] || { log "must run as root"; exit 1; }
start=$SECONDS
log "building the node's binaries (cached after the first run)"
hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager helm >/dev/null
hack/node/build.sh >/dev/null
find_kubectl
HELM=$(hack/controlplane/build.sh helm | sed -n 's/^helm=//p')
log "binaries ready after $((SECONDS - start))s"

snap=$(mktemp)
hack/node/check-clean.sh snapshot "$snap"
status=0
teardown() {
  local s=$SECONDS
  # A failed run keeps the node's logs for the post-mortem.
  [[ $status == 0 ]] || export AGIMO_NODE_KEEP=1
  hack/node/down.sh || status=1
  log "node down in $((SECONDS - s))s"
  hack/node/check-clean.sh compare "$snap" || status=1
  rm -f "$snap"
  log "total $((SECONDS - start))s, exit $status"
  exit "$status"
}
trap 'status=$?; teardown' EXIT
trap 'exit 130' INT TERM

up_start=$SECONDS
eval "$(hack/node/up.sh)"
log "node up in $((SECONDS - up_start))s"

# The suite must fail, not report ok, where it cannot run (no node given).
if AGIMO_NODE_KUBECONFIG= go test -tags node -count=1 -run '^$' ./test/node/ >/dev/null 2>&1; then
  log "FAIL: the node suite reported success without a node"
  exit 1
fi
log "checked: without a node, the suite fails as it should"

out=$(mktemp)
suite_start=$SECONDS
AGIMO_NODE_KUBECONFIG=$KUBECONFIG AGIMO_NODE_KUBECTL=$KUBECTL AGIMO_NODE_HELM=$HELM \
  go test -tags node -count=1 -v -timeout 20m ./test/node/... "$@" 2>&1 | tee "$out" || status=$?
log "suite finished in $((SECONDS - suite_start))s"
echo "--- cold-start phases on the real node (agimo_cold_start_seconds) ---"
grep -h 'cold-start phases\|answered' "$out" | sed 's/^ *//' || true
rm -f "$out"
exit "$status"
