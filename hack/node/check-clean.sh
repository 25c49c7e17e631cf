#!/usr/bin/env bash
# Did a node leave anything behind? Compares the machine with a snapshot taken before.
#
# Usage: hack/node/check-clean.sh snapshot FILE   before hack/node/up.sh
#        hack/node/check-clean.sh compare FILE    after hack/node/down.sh: prints what differs
#                                                 (exit 1) or nothing (exit 0)
# What is compared: processes of the node's binaries, mounts, network namespaces, links,
# routes, iptables rules (both back ends, both families), nftables tables, kubelet's cgroups,
# the host paths kubelet/containerd hard-code, the sysctls the node may change, conntrack
# entries of 10.214/16. The simulated pods of hack/netns.sh (agimo-pod-*, agimo-h*/agimo-p*,
# 10.213/16), which the other e2e suite may create meanwhile, are left out.
set -uo pipefail
source "$(dirname "$0")/common.sh"
state() {
  echo "## processes"
  ps -eo args= | grep -E "$NODE_DIR|^(/usr/bin/)?containerd|containerd-shim|kubelet|kube-proxy|kube-scheduler|coredns|/pause$" | grep -v grep | sort
  echo "## mounts"
  findmnt -rn -o TARGET | grep -Ev '^/run/netns(/agimo-pod-.*)?$' | sort
  echo "## netns"
  ip netns list 2>/dev/null | grep -v '^agimo-pod-' | sort
  echo "## links"
  ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -Ev '^agimo-[hp][0-9]+$' | sort
  echo "## routes"
  ip route | grep -v '^10\.213\.' | grep -v '^blackhole 10.213.0.0/16' | sort
  for ipt in iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
    command -v "$ipt" >/dev/null || continue
    echo "## $ipt"
    # Rules and non-built-in chains only: listing a table creates it empty (built-in chains,
    # policy ACCEPT), which other tools on the machine may do at any time.
    "$ipt-save" 2>/dev/null | grep -E '^(-A |:)' | grep -Ev '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | sed 's/ \[[0-9]*:[0-9]*\]$//'
  done
  echo "## nft tables"
  nft list tables 2>/dev/null | sort
  echo "## cgroups"
  ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null
  echo "## host paths"
  ls -d "${HOST_PATHS[@]}" "$NODE_DIR" "$NODE_LOCK" 2>/dev/null
  echo "## sysctls"
  for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k" 2>/dev/null)"; done
  echo "## conntrack 10.214/16"
  conntrack -L -s "$NODE_NET" 2>/dev/null | wc -l
  conntrack -L -d "$NODE_NET" 2>/dev/null | wc -l
}
case ${1:-} in
  snapshot) state >"$2" ;;
  compare)
    if out=$(diff <(cat "$2") <(state)); then
      node_log "clean: the machine is as it was before the node"
    else
      node_log "LEFT BEHIND by the node (< before, > now):"
      echo "$out" >&2
      exit 1
    fi ;;
  *) echo "usage: $0 snapshot|compare FILE" >&2; exit 2 ;;
esac
