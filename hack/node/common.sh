# Shared by hack/node/*.sh; sourced, not run.
# shellcheck shell=bash
# The node's addresses, all inside 10.214.0.0/16 (hack/netns.sh's simulated pods use 10.213/16,
# so the simulated-pod e2e suite can run beside a node):
#   10.214.2.1/32  the node's IP, on the port-less bridge agimo-node0: kube-apiserver, kubelet
#   10.214.1.0/24  Service CIDR (ClusterIPs), routed to agimo-node0 so that connect() reaches
#                  kube-proxy's OUTPUT rules; what kube-proxy does not DNAT is dropped there
#   10.214.0.0/24  pods, on the CNI bridge agimo-cni0 (gateway 10.214.0.1)
NODE_DIR=${AGIMO_NODE_DIR:-/tmp/agimo-node}
NODE_NAME=agimo-node
NODE_IP=10.214.2.1
NODE_NET=10.214.0.0/16
POD_CIDR=10.214.0.0/24
SERVICE_CIDR=10.214.1.0/24
DNS_IP=10.214.1.10
NODE_BRIDGE=agimo-node0
CNI_BRIDGE=agimo-cni0
FWD_CHAIN=AGIMO-NODE-FWD
# One node per machine: kubelet, containerd and the CNI plugins use fixed host paths.
NODE_LOCK=/run/agimo-node.lock
NODE_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The control plane's state dir (hack/controlplane), inside the node's.
export AGIMO_CP_DIR=$NODE_DIR/cp
# shellcheck source=hack/controlplane/common.sh
source "$NODE_HERE/../controlplane/common.sh"
# Host paths that kubelet, containerd 1.6 and libcni hard-code; none exists before a node
# runs (up.sh refuses to start otherwise), down.sh removes them.
HOST_PATHS=(/run/containerd /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods)
# Sysctls kubelet, kube-proxy or the CNI bridge plugin may change; up.sh records them, down.sh
# puts them back.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)

node_log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ctr against the node's containerd.
nctr() { ctr --address "$NODE_DIR/containerd/containerd.sock" -n k8s.io "$@"; }
