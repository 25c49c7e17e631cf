#!/usr/bin/env bash
# Simulated pods for tests: each "pod" N is a network namespace agimo-pod-N joined to the
# root namespace by a veth pair, so a server in it has a non-loopback IP that the API
# server accepts in EndpointSlices and that Agimo, in the root namespace, can dial.
#
# Usage (root, needs iproute2):
#   hack/netns.sh add N          create pod N (1..250); prints its IP (10.213.N.2)
#   hack/netns.sh ip N           print pod N's IP
#   hack/netns.sh exec N CMD...  run CMD inside pod N's namespace
#   hack/netns.sh del N          kill what runs inside pod N and delete it
#   hack/netns.sh clean          delete every agimo-pod-* namespace
#
# Addressing: pod N is 10.213.N.2/24, the root-namespace end is 10.213.N.1/24. The subnet
# exists only on that veth pair (a connected route), the namespace has no default route, so
# nothing in it can reach anything beyond the host end. 10.213.0.0/24 is the local control
# plane's Service CIDR. A blackhole route for the whole /16 (added with the first pod,
# removed with the last pod) makes anything else in the range (a deleted pod, a ClusterIP) fail
# locally instead of following the default route off the machine. AGIMO_NETNS_PREFIX
# changes the first two octets (default 10.213) if that range is ever taken on a machine.
set -euo pipefail

PREFIX=${AGIMO_NETNS_PREFIX:-10.213}

ns() { echo "agimo-pod-$1"; }
host_if() { echo "agimo-h$1"; } # veth names must be <= 15 bytes
pod_if() { echo "agimo-p$1"; }
pod_ip() { echo "$PREFIX.$1.2"; }
host_ip() { echo "$PREFIX.$1.1"; }

check_n() {
  [[ $1 =~ ^[0-9]+$ && $1 -ge 1 && $1 -le 250 ]] || { echo "pod number must be 1..250, got '$1'" >&2; exit 2; }
}

add() {
  local n=$1
  check_n "$n"
  if ip netns list | grep -qw "$(ns "$n")"; then
    del "$n"
  fi
  # Refuse a subnet that this machine already routes somewhere (other than the default
  # route): our test traffic must only ever go to our own namespaces.
  if ip -4 route show to match "$(pod_ip "$n")" | grep -v "^default\|^blackhole $PREFIX.0.0/16" | grep -q .; then
    echo "$PREFIX.$n.0/24 is already routed on this machine; set AGIMO_NETNS_PREFIX" >&2
    exit 1
  fi
  # More specific /24s (the pods' veths) win over it; everything else in the /16 is dropped.
  ip route replace blackhole "$PREFIX.0.0/16"
  ip netns add "$(ns "$n")"
  ip link add "$(host_if "$n")" type veth peer name "$(pod_if "$n")"
  ip link set "$(pod_if "$n")" netns "$(ns "$n")"
  ip addr add "$(host_ip "$n")/24" dev "$(host_if "$n")"
  ip link set "$(host_if "$n")" up
  ip netns exec "$(ns "$n")" ip addr add "$(pod_ip "$n")/24" dev "$(pod_if "$n")"
  ip netns exec "$(ns "$n")" ip link set "$(pod_if "$n")" up
  ip netns exec "$(ns "$n")" ip link set lo up
  pod_ip "$n"
}

del() {
  local n=$1 name pid
  name=$(ns "$n")
  if ip netns list | grep -qw "$name"; then
    # Processes inside keep the namespace (and its veth) alive; they are ours by
    # construction, so stop them by PID.
    for pid in $(ip netns pids "$name" 2>/dev/null); do
      kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 20); do
      [[ -z $(ip netns pids "$name" 2>/dev/null) ]] && break
      sleep 0.1
    done
    for pid in $(ip netns pids "$name" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns delete "$name"
  fi
  # Deleting the namespace destroys the pair; this covers a half-made pair.
  ip link delete "$(host_if "$n")" 2>/dev/null || true
  # The last pod gone: drop the blackhole route too, leaving the machine as it was.
  if ! ip netns list | grep -q '^agimo-pod-[0-9]'; then
    ip route delete blackhole "$PREFIX.0.0/16" 2>/dev/null || true
  fi
}

cmd=${1:-}
shift || true
case $cmd in
  add) add "$1" ;;
  ip) check_n "$1"; pod_ip "$1" ;;
  exec) n=$1; shift; check_n "$n"; exec ip netns exec "$(ns "$n")" "$@" ;;
  del) check_n "$1"; del "$1" ;;
  clean)
    for name in $(ip netns list | awk '{print $1}' | grep '^agimo-pod-[0-9]*$' || true); do
      del "${name#agimo-pod-}"
    done
    ip route delete blackhole "$PREFIX.0.0/16" 2>/dev/null || true
    ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
