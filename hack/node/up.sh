#!/usr/bin/env bash
# Start a real one-node Kubernetes: the local control plane (hack/controlplane, its API server
# on the node's address), containerd (Debian's) with runc, the CNI bridge, kubelet,
# kube-scheduler, kube-proxy (iptables) and CoreDNS; the images of hack/node/images.sh are
# imported into containerd (no registry: pods use imagePullPolicy Never/IfNotPresent).
#
# Usage: eval "$(hack/node/up.sh)"   (root) prints only `export KUBECONFIG=...` on stdout
# Stop:  hack/node/down.sh           (always; it also cleans up after a failed or killed up.sh)
# State: ${AGIMO_NODE_DIR:-/tmp/agimo-node} (logs in logs/, the control plane's in cp/logs/).
# One node per machine (fixed host paths): a second up.sh fails while the first node runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
source hack/node/common.sh

[[ $EUID == 0 ]] || { node_log "must run as root"; exit 1; }
# The node's packages, installed from Debian's archive when missing, so that `make demo` works
# on a fresh machine as README promises (the postinst scripts start no service without init).
node_pkgs=(containerd runc iptables conntrack nftables iproute2 openssl curl util-linux ca-certificates)
missing=()
for tool in containerd runc ctr iptables ip6tables nft conntrack ip ss openssl curl flock setsid; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=("the CA bundle") # for the images (hack/image.sh)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { node_log "missing ${missing[*]} (packages: ${node_pkgs[*]})"; exit 1; }
  node_log "missing ${missing[*]}: installing Debian's ${node_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${node_pkgs[@]}" >/dev/null
fi

exec {lock}>"$NODE_LOCK"
flock -n "$lock" || { node_log "another node is up on this machine (lock $NODE_LOCK held); hack/node/down.sh stops it"; exit 1; }
# Until the node's own teardown is armed below, a refusal leaves nothing behind.
trap 'rm -f "$NODE_LOCK"' EXIT
# Leftovers of a node that was killed without down.sh: clean first (we hold the lock, so no
# other node runs).
if [[ -e $NODE_DIR ]]; then
  node_log "state of an earlier node in $NODE_DIR: cleaning up first"
  hack/node/down.sh
fi
for p in "${HOST_PATHS[@]}"; do
  [[ ! -e $p ]] || { node_log "$p exists: another container runtime or kubelet uses this machine; refusing"; exit 1; }
done

start=$SECONDS
started=0
trap '[[ $started == 1 ]] || { node_log "start failed, tearing down"; hack/node/down.sh >&2 || true; }' EXIT
mkdir -p "$NODE_DIR"/{logs,pids,cni/net.d,cni/ipam,containerd,kubelet/root,kubelet/pki,kubelet/podlogs}
# The lock lives as long as this holder process: down.sh stops it last.
CP_DIR=$NODE_DIR start_bg lock-holder "$(command -v sleep)" infinity
exec {lock}>&-

# --- binaries ---------------------------------------------------------------------------
built=$(hack/node/build.sh; hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager)
while IFS='=' read -r name path; do declare "BIN_${name//-/_}=$path"; done <<<"$built"
find_kubectl
echo "KUBECTL=$KUBECTL" >"$NODE_DIR/env"
[[ -f $NODE_DIR/images/agimo.tar && -f $NODE_DIR/images/grpcapp.tar ]] || hack/node/images.sh "$BIN_coredns"
[[ -f $NODE_DIR/images/coredns.tar ]] || hack/node/images.sh "$BIN_coredns"
node_log "binaries and images ready (+$((SECONDS - start))s)"

# --- host network -------------------------------------------------------------------------
for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k" 2>/dev/null || true)"; done >"$NODE_DIR/sysctl.orig"
nft list tables >"$NODE_DIR/nft-tables.orig"
ip link add "$NODE_BRIDGE" type bridge # no dummy interfaces in every kernel; a port-less bridge does
ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
ip route add "$SERVICE_CIDR" dev "$NODE_BRIDGE"
# Nothing else in the range leaves the machine (a deleted pod's IP, an unused ClusterIP).
ip route add blackhole "$NODE_NET"
# The CNI bridge plugin turns ip_forward on: forward nothing but the node's own traffic.
iptables -t mangle -N "$FWD_CHAIN"
iptables -t mangle -A "$FWD_CHAIN" -s "$NODE_NET" -d "$NODE_NET" -j RETURN
iptables -t mangle -A "$FWD_CHAIN" -j DROP
iptables -t mangle -I FORWARD 1 -j "$FWD_CHAIN"
sysctl -qw net.bridge.bridge-nf-call-iptables=1
node_log "host network up: node $NODE_IP on $NODE_BRIDGE"

# --- control plane ------------------------------------------------------------------------
AGIMO_CP_NODE=1 AGIMO_NODE_IP=$NODE_IP AGIMO_NODE_NAME=$NODE_NAME AGIMO_SERVICE_CIDR=$SERVICE_CIDR \
  hack/controlplane/up.sh >/dev/null 2>>"$NODE_DIR/logs/cp-up.log" ||
  { tail -20 "$NODE_DIR/logs/cp-up.log" >&2; exit 1; }
export KUBECONFIG=$CP_DIR/kubeconfig
node_log "control plane up (+$((SECONDS - start))s)"

# --- containerd ---------------------------------------------------------------------------
cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$NODE_DIR/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "agimo.local/pause:1"
  # Without CAP_SYS_RESOURCE (containers, some VMs) runc cannot lower a sandbox's
  # oom_score_adj and every pod fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Non-root pods may bind ports below 1024 (CoreDNS on 53 as 65532).
  enable_unprivileged_ports = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$BIN_cni"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
TOML
cat >"$NODE_DIR/cni/net.d/10-agimo.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "agimo-node",
  "plugins": [
    {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "${POD_CIDR%.*}.1"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
CP_DIR=$NODE_DIR start_bg containerd "$(command -v containerd)" --config "$NODE_DIR/containerd/config.toml"
for i in $(seq 100); do
  ctr --address "$NODE_DIR/containerd/containerd.sock" version >/dev/null 2>&1 && break
  [[ $i == 100 ]] && { tail -20 "$NODE_DIR/logs/containerd.log" >&2; exit 1; }
  sleep 0.1
done
for t in "$NODE_DIR"/images/*.tar; do nctr images import "$t" >/dev/null; done
node_log "containerd up, images: $(nctr images ls -q | grep '^agimo.local/' | tr '\n' ' ')"

# --- kubelet, kube-scheduler, kube-proxy ----------------------------------------------------
cat >"$NODE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# kubelet >= 1.35 refuses a cgroup v1 host unless told otherwise (a warning then).
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$NODE_DIR/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CP_DIR/pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $NODE_DIR/kubelet/podlogs
clusterDomain: cluster.local
clusterDNS: ["$DNS_IP"]
resolvConf: /etc/resolv.conf
failSwapOn: false
# A small shared machine: never evict for disk; keep the imported images (no registry).
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
cat >"$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CP_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
# NodePorts on the node's address only: no 127.0.0.1 NodePorts (they would set
# route_localnet=1) and nothing on the machine's other addresses.
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  # A new endpoint reaches the rules within ~0.1 s instead of up to 1 s.
  minSyncPeriod: 100ms
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
YAML
CP_DIR=$NODE_DIR start_bg kubelet "$BIN_kubelet" --config="$NODE_DIR/kubelet/config.yaml" \
  --kubeconfig="$CP_DIR/kubelet.kubeconfig" --root-dir="$NODE_DIR/kubelet/root" \
  --cert-dir="$NODE_DIR/kubelet/pki" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
CP_DIR=$NODE_DIR start_bg kube-scheduler "$BIN_kube_scheduler" --kubeconfig="$CP_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$CP_DIR/scheduler.kubeconfig" --authorization-kubeconfig="$CP_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1
CP_DIR=$NODE_DIR start_bg kube-proxy "$BIN_kube_proxy" --config="$NODE_DIR/kube-proxy.yaml" --v=1
for i in $(seq 120); do
  for c in kubelet kube-scheduler kube-proxy; do
    CP_DIR=$NODE_DIR pid_alive "$c" || { node_log "$c exited:"; tail -20 "$NODE_DIR/logs/$c.log" >&2; exit 1; }
  done
  [[ $("$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
  [[ $i == 120 ]] && { node_log "node not Ready after 60s"; tail -20 "$NODE_DIR/logs/kubelet.log" >&2; exit 1; }
  sleep 0.5
done
node_log "node $NODE_NAME Ready (+$((SECONDS - start))s)"

# --- CoreDNS ------------------------------------------------------------------------------
coredns_image=$(nctr images ls -q | grep '^agimo.local/coredns:')
sed "s|@IMAGE@|$coredns_image|; s|@DNS_IP@|$DNS_IP|" hack/node/coredns.yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" -n kube-system rollout status deploy/coredns --timeout=90s >/dev/null ||
  { node_log "CoreDNS did not become ready"; "$KUBECTL" -n kube-system get pods -o wide >&2; exit 1; }
node_log "CoreDNS ready at $DNS_IP; node up in $((SECONDS - start))s"
started=1
echo "export KUBECONFIG=$KUBECONFIG"
