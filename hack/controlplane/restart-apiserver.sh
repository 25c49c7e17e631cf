#!/usr/bin/env bash
# Restart kube-apiserver of a running up.sh control plane, on the same port with the same
# certificates, and wait until it is ready again. The e2e suite uses this to check that
# Agimo's watches survive an API server restart.
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
