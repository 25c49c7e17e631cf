#!/usr/bin/env bash
# Restart kube-apiserver of a running up.sh control plane, on the same port with the same
# certificates, and wait until it is ready again. The e2e suite uses this to check that
# Agimo's watches survive an API server restart. kube-controller-manager is restarted too.
#
# Usage: hack/controlplane/restart-apiserver.sh [DOWNTIME-SECONDS]   (default 2)
set -euo pipefail
# shellcheck source=hack/controlplane/common.sh
source "$(dirname "$0")/common.sh"

[[ -f $CP_DIR/apiserver.args ]] || { cp_log "no control plane in $CP_DIR"; exit 1; }
# 5s grace, then SIGKILL: with watches open a graceful stop can take a minute (see down.sh).
stop_pid kube-apiserver 5
# Stay down for a while so clients really see connection errors and have to re-watch.
sleep "${1:-2}"
cp_log "starting kube-apiserver again"
start_apiserver
cp_log "kube-apiserver restarted"

# kube-controller-manager's informers back off while the API server is down (client-go's
# reflector: 0.8 s doubling up to 30 s, with jitter), so after a long outage it can take a
# minute to see the next test's Deployment and create its Pods. Restart it with the same
# command line, so whatever runs next meets a controller manager that watches again.
if pid_alive kube-controller-manager; then
  mapfile -d '' -t kcm <"/proc/$(cat "$CP_DIR/pids/kube-controller-manager.pid")/cmdline"
  stop_pid kube-controller-manager 5
  start_bg kube-controller-manager "${kcm[@]}"
  cp_log "kube-controller-manager restarted"
fi
