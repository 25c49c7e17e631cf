#!/usr/bin/env bash
# Build (once) everything a real one-node cluster needs besides the control plane and
# containerd/runc (Debian packages): kubelet, kube-scheduler, kube-proxy (through
# hack/controlplane/build.sh, same scratch module and cache), the CNI plugins, crictl and
# CoreDNS, all from the Go module proxy, static (CGO off).
#
# Usage: hack/node/build.sh [k8s cni crictl coredns]   (default: all) prints "name=path"
#        lines on stdout; progress on stderr
# Cache: ${AGIMO_CACHE:-$HOME/.cache/agimo}/bin/<name>-<version>; a cached binary is reused.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

CNI_VERSION=${CNI_VERSION:-v1.10.0}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.1}
CACHE=${AGIMO_CACHE:-$HOME/.cache/agimo}
BIN=$CACHE/bin
mkdir -p "$BIN"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0

log() { printf '[node-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }


# cached NAME VERSION CMD...: run CMD with a temporary GOBIN once, under a lock (concurrent
# callers wait and then find the result), and print NAME=path.
cached() {
  local name=$1 version=$2 out=$BIN/$1-$2; shift 2
  exec {lock}>"$BIN/.$name-$version.lock"
  flock "$lock"
  if [[ ! -e $out ]]; then
    log "$name $version: building (first time only)..."
    local start=$SECONDS tmp
    tmp=$(mktemp -d)
    GOBIN=$tmp "$@" >&2
    # A directory of binaries (CNI plugins) or the single binary built.
    if [[ $(find "$tmp" -type f | wc -l) == 1 ]]; then mv "$tmp"/* "$out"; rmdir "$tmp"; else mv "$tmp" "$out"; fi
    log "$name $version: built in $((SECONDS - start))s"
  fi
  echo "$name=$out"
  exec {lock}>&-
}

P=github.com/containernetworking/plugins/plugins
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(k8s cni crictl coredns)
for t in "${targets[@]}"; do
  case $t in
    k8s) "$HERE/../controlplane/build.sh" kubelet kube-scheduler kube-proxy ;;
    cni) cached cni "$CNI_VERSION" go install -trimpath -ldflags "-s -w" \
      "$P/main/bridge@$CNI_VERSION" "$P/main/loopback@$CNI_VERSION" \
      "$P/ipam/host-local@$CNI_VERSION" "$P/meta/portmap@$CNI_VERSION" ;;
    crictl) cached crictl "$CRICTL_VERSION" go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" ;;
    coredns) cached coredns "$COREDNS_VERSION" go install -trimpath -ldflags "-s -w" \
      "github.com/coredns/coredns@$COREDNS_VERSION" ;;
    *) log "unknown target $t"; exit 2 ;;
  esac
done
