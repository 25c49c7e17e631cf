#!/usr/bin/env bash
# Tear the node down and leave the machine as it was: every pod sandbox (CNI DEL through the
# CRI), kubelet, kube-scheduler, kube-proxy and its iptables rules, containerd and its shims,
# mounts, pod network namespaces, kubelet's cgroups, the host network (bridges, routes, the
# FORWARD guard), the sysctls up.sh recorded, the control plane, the host paths kubelet and
# containerd hard-code, the state dir (AGIMO_NODE_KEEP=1 keeps its logs) and the lock.
# Safe to repeat, after a failed up.sh, or with nothing running. Root.
set -uo pipefail
cd "$(dirname "$0")/../.."
source hack/node/common.sh
[[ -d $NODE_DIR ]] || { node_log "nothing to stop ($NODE_DIR does not exist)"; exit 0; }
start=$SECONDS
export CP_DIR=$NODE_DIR # for stop_pid/pid_alive: the node's components' PIDs
stop_pid kube-scheduler
# kubelet first, so it does not restart what is removed below.
stop_pid kubelet
sock=$NODE_DIR/containerd/containerd.sock
if pid_alive containerd; then
  crictl=$(ls "${AGIMO_CACHE:-$HOME/.cache/agimo}"/bin/crictl-* 2>/dev/null | head -1)
  # Stop and remove every pod sandbox: containers stopped, CNI DEL run (veth, IP, portmap
  # rules), network namespace removed.
  if [[ -n $crictl ]]; then
    "$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 30s rmp -fa >/dev/null 2>&1 ||
      node_log "crictl rmp failed; removing what is left by hand"
  fi
  # Anything started outside the CRI.
  for ns in $(ctr --address "$sock" namespaces ls -q 2>/dev/null); do
    for t in $(ctr --address "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
      ctr --address "$sock" -n "$ns" tasks delete -f "$t" >/dev/null 2>&1
    done
  done
fi
stop_pid kube-proxy
# kube-proxy removes its own rules (both families).
proxy_bin=$(ls "${AGIMO_CACHE:-$HOME/.cache/agimo}"/bin/kube-proxy-* 2>/dev/null | head -1)
[[ -n $proxy_bin ]] && "$proxy_bin" --cleanup --v=0 >>"$NODE_DIR/logs/kube-proxy-cleanup.log" 2>&1
stop_pid containerd
# Shims whose containerd is gone (only those of our containerd: its state dir is in their args).
for p in $(ps -eo pid=,comm= | awk '$2 ~ /^containerd-shim/ {print $1}'); do
  grep -qaF "$NODE_DIR/containerd" "/proc/$p/cmdline" 2>/dev/null && { node_log "killing shim $p"; kill -KILL "$p"; }
done
# What the containers ran (a shim killed above leaves its container's processes behind).
for cg in /sys/fs/cgroup/pids/kubepods; do
  [[ -d $cg ]] && find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
done
# Mounts: container rootfs and shm, kubelet volumes, pod network namespaces.
findmnt -rn -o TARGET | grep -E "^$NODE_DIR/|^/run/containerd/|^/run/netns/cni-|^/var/lib/kubelet" | sort -r |
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
rm -f /run/netns/cni-*
# kubelet's QoS and pod cgroups in each v1 hierarchy and the unified one.
for h in /sys/fs/cgroup/*/kubepods; do
  [[ -d $h ]] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# --- host network -------------------------------------------------------------------------
ip link del "$CNI_BRIDGE" 2>/dev/null
ip link del "$NODE_BRIDGE" 2>/dev/null # also removes the Service CIDR's route
ip route del blackhole "$NODE_NET" 2>/dev/null
iptables -t mangle -D FORWARD -j "$FWD_CHAIN" 2>/dev/null
iptables -t mangle -F "$FWD_CHAIN" 2>/dev/null
iptables -t mangle -X "$FWD_CHAIN" 2>/dev/null
# Whatever kubelet, kube-proxy or the CNI plugins left, named KUBE-* / CNI-*, in both families
# and both iptables back ends: jumps to them first, then the chains.
# (Only tables that exist: listing one with iptables -t creates it.)
table_exists() { # iptables-command table
  case $1 in
    iptables-nft) nft list table ip "$2" >/dev/null 2>&1 ;;
    ip6tables-nft) nft list table ip6 "$2" >/dev/null 2>&1 ;;
    iptables-legacy) grep -qx "$2" /proc/net/ip_tables_names 2>/dev/null ;;
    ip6tables-legacy) grep -qx "$2" /proc/net/ip6_tables_names 2>/dev/null ;;
  esac
}
for ipt in iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
  command -v "$ipt" >/dev/null || continue
  for t in filter nat mangle; do
    table_exists "$ipt" "$t" || continue
    $ipt -t $t -S 2>/dev/null | awk '/^-A [A-Z]+ .*-j (KUBE-|CNI-)/ && $2 !~ /^(KUBE-|CNI-)/' | sed 's/^-A /-D /' |
      while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null; done
    for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{print $2}'); do $ipt -t $t -F "$ch" 2>/dev/null; done
    for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{print $2}'); do $ipt -t $t -X "$ch" 2>/dev/null; done
  done
done
# nftables tables that iptables-nft or kube-proxy created and that hold no rules now.
if [[ -f $NODE_DIR/nft-tables.orig ]]; then
  nft list tables | while read -r _ fam name; do
    grep -qx "table $fam $name" "$NODE_DIR/nft-tables.orig" && continue
    nft list table "$fam" "$name" | grep -qvE '^\s*(table|chain|type|policy|\}|$)' || nft delete table "$fam" "$name"
  done
fi
# Conntrack entries of the node's addresses (NAT state would outlive the rules).
conntrack -D -s "$NODE_NET" >/dev/null 2>&1
conntrack -D -d "$NODE_NET" >/dev/null 2>&1
if [[ -f $NODE_DIR/sysctl.orig ]]; then
  while IFS='=' read -r k v; do [[ -n $v ]] && sysctl -qw "$k=$v"; done <"$NODE_DIR/sysctl.orig"
fi
# --- control plane, host paths, state -------------------------------------------------------
AGIMO_CP_KEEP=${AGIMO_NODE_KEEP:-} hack/controlplane/down.sh 2>&1 | sed 's/^/  /' >&2
for p in "${HOST_PATHS[@]}"; do rm -rf "$p"; done
if [[ ${AGIMO_NODE_KEEP:-} == 1 ]]; then
  rm -rf "$NODE_DIR/containerd/root" "$NODE_DIR/containerd/state" "$NODE_DIR/kubelet/root" "$NODE_DIR/cni/ipam"
  stop_pid lock-holder 1
  rm -rf "$NODE_DIR.last" # the previous failure's (mv would nest into it)
  mv "$NODE_DIR" "$NODE_DIR.last"
  node_log "logs kept in $NODE_DIR.last/logs"
else
  stop_pid lock-holder 1
  rm -rf "$NODE_DIR"
fi
rm -f "$NODE_LOCK"
node_log "node down in $((SECONDS - start))s"
