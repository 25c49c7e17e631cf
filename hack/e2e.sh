#!/usr/bin/env bash
# Run the end-to-end suite: build (or reuse) the control-plane binaries and helm, start
# etcd + kube-apiserver + kube-controller-manager on loopback, run the real agimo binary
# against them (test/e2e), and tear everything down, also on failure or Ctrl-C.
#
# Usage: hack/e2e.sh [extra go test args]     e.g. hack/e2e.sh -run TestScaleFromZero
# Needs: root (network namespaces), go, iproute2 (ip, ss), openssl, curl, util-linux (flock,
# setsid). A first run builds the control plane (~10-15 min on 2 cores); later runs reuse
# ${AGIMO_CACHE:-$HOME/.cache/agimo}. The suite itself takes ~4 min.
# Env: AGIMO_CP_DIR (state dir, default /tmp/agimo-cp-e2e), AGIMO_E2E_LOGS=1 (print every
# agimo log), AGIMO_CP_KEEP=1 (keep the control plane's logs after the run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ $EUID != 0 ]]; then
  log "must run as root: the tests create network namespaces"
  exit 1
fi
missing=()
for tool in go ip ss openssl curl flock setsid; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "missing tools: ${missing[*]} (Debian: apt-get install iproute2 openssl curl util-linux)"
  exit 1
fi

start=$SECONDS
log "building control plane binaries and helm (cached after the first run)"
hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager helm >/dev/null
KUBECTL=${KUBECTL:-$(command -v kubectl || hack/controlplane/build.sh kubectl | sed -n 's/^kubectl=//p')}
export KUBECTL
log "binaries ready after $((SECONDS - start))s"

export AGIMO_CP_DIR=${AGIMO_CP_DIR:-/tmp/agimo-cp-e2e}
cleanup() {
  hack/controlplane/down.sh || true
  hack/netns.sh clean || true
}
trap cleanup EXIT
eval "$(hack/controlplane/up.sh)"

# The suite must fail, not report ok, where it cannot run: compiled once, run as nobody.
nonroot=$(mktemp -d)
chmod 755 "$nonroot"
go test -c -tags e2e -o "$nonroot/e2e.test" ./test/e2e
if (cd "$nonroot" && setpriv --reuid=65534 --regid=65534 --clear-groups ./e2e.test -test.run '^$' >/dev/null 2>&1); then
  log "FAIL: the e2e suite reported success when run as a non-root user"
  rm -rf "$nonroot"
  exit 1
fi
rm -rf "$nonroot"
log "checked: run as non-root, the suite fails as it should"

out=$(mktemp)
log "running the suite (agimo and the suite with -race)"
suite_start=$SECONDS
status=0
AGIMO_E2E_KUBECONFIG=$KUBECONFIG go test -tags e2e -race -count=1 -v -timeout 30m ./test/e2e/... "$@" \
  2>&1 | tee "$out" || status=$?
log "suite finished in $((SECONDS - suite_start))s (total $((SECONDS - start))s), exit $status"
echo "--- release latency (EndpointSlice write -> parked response) ---"
grep -h 'release latency' "$out" | sed 's/^ *//' || true
echo "--- cold-start time (wake = true vs simulated Prometheus + KEDA) ---"
grep -h 'cold-start time' "$out" | sed 's/^ *//' || true
rm -f "$out"
exit "$status"
