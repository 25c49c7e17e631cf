# Shared by up.sh, down.sh and restart-apiserver.sh; sourced, not run.
# shellcheck shell=bash

CP_DIR=${AGIMO_CP_DIR:-/tmp/agimo-cp}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# find_kubectl sets KUBECTL: $KUBECTL, else the machine's kubectl, else one built (once)
# from the same Kubernetes release by build.sh.
find_kubectl() {
  if [[ -z ${KUBECTL:-} ]]; then
    KUBECTL=$(command -v kubectl || "$HERE/build.sh" kubectl | sed -n 's/^kubectl=//p')
  fi
  export KUBECTL
}

cp_log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# free_port prints a TCP port that nothing listens on at 127.0.0.1, below Linux's ephemeral
# range (32768+) so outgoing connections never hold it. Random rather than
# sequential so that two state dirs started side by side rarely race for the same port.
# Ports given as arguments are skipped (picked earlier, not listening yet).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    [[ " $* " == *" $p "* ]] && continue
    if [[ -z $(ss -Htln "sport = :$p") ]]; then
      echo "$p"
      return
    fi
  done
  cp_log "no free port found"
  return 1
}

# start_bg NAME CMD... starts CMD in its own session with output to $CP_DIR/logs/NAME.log
# and records its PID in $CP_DIR/pids/NAME.pid, so down.sh stops exactly what we started.
start_bg() {
  local name=$1; shift
  mkdir -p "$CP_DIR/logs" "$CP_DIR/pids"
  # setsid: a Ctrl-C in the caller's terminal, or the end of the caller's process group
  # (e.g. a test binary), does not kill the control plane behind down.sh's back.
  # The child writes its own PID before exec'ing the binary: setsid may fork, so $! would
  # not always be the server's PID.
  rm -f "$CP_DIR/pids/$name.pid"
  # shellcheck disable=SC2016 # $$ and $@ expand in the child shell, on purpose.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$CP_DIR/pids/$name.pid" "$@" \
    >>"$CP_DIR/logs/$name.log" 2>&1 </dev/null &
  for _ in $(seq 50); do
    [[ -s $CP_DIR/pids/$name.pid ]] && break
    sleep 0.1
  done
  # Remember the binary so down.sh can tell a recycled PID from ours.
  echo "$1" >"$CP_DIR/pids/$name.exe"
}

# pid_alive NAME: true when the recorded process is still ours and running.
pid_alive() {
  local name=$1 pid exe
  [[ -f $CP_DIR/pids/$name.pid ]] || return 1
  pid=$(cat "$CP_DIR/pids/$name.pid")
  exe=$(cat "$CP_DIR/pids/$name.exe" 2>/dev/null || true)
  [[ -e /proc/$pid ]] || return 1
  # /proc/PID/exe points at the binary; compare so a recycled PID is never signalled.
  [[ -z $exe || $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$exe")" ]]
}

# stop_pid NAME [GRACE-SECONDS]: SIGTERM, wait up to GRACE (default 10) seconds, then
# SIGKILL. No-op if not running.
stop_pid() {
  local name=$1 grace=${2:-10} pid
  if pid_alive "$name"; then
    pid=$(cat "$CP_DIR/pids/$name.pid")
    cp_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 10))); do
      [[ -e /proc/$pid ]] || break
      sleep 0.1
    done
    if [[ -e /proc/$pid ]]; then
      cp_log "$name did not stop in ${grace}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$CP_DIR/pids/$name.pid" "$CP_DIR/pids/$name.exe"
}

# wait_ready NAME URL CURL-ARGS...: polls URL until it answers "ok" (60s), failing
# early with the process's log if the process died.
wait_ready() {
  local name=$1 url=$2; shift 2
  for _ in $(seq 600); do
    if ! pid_alive "$name"; then
      cp_log "$name exited; last lines of $CP_DIR/logs/$name.log:"
      tail -n 30 "$CP_DIR/logs/$name.log" >&2 || true
      return 1
    fi
    if [[ $(curl -fsS --max-time 2 "$@" "$url" 2>/dev/null) == ok ]]; then
      return 0
    fi
    sleep 0.1
  done
  cp_log "$name not ready after 60s; last lines of $CP_DIR/logs/$name.log:"
  tail -n 30 "$CP_DIR/logs/$name.log" >&2 || true
  return 1
}

# start_apiserver starts kube-apiserver with the arguments up.sh saved, then waits for
# /readyz. Used by up.sh and by restart-apiserver.sh (same port, same certs).
start_apiserver() {
  local -a args
  mapfile -t args <"$CP_DIR/apiserver.args"
  # shellcheck source=/dev/null
  source "$CP_DIR/env"
  start_bg kube-apiserver "$KUBE_APISERVER_BIN" "${args[@]}"
  # APISERVER_HOST: 127.0.0.1, or the node's address (up.sh with AGIMO_CP_NODE=1).
  cp_log "waiting for kube-apiserver /readyz on ${APISERVER_HOST:-127.0.0.1}:$APISERVER_PORT"
  wait_ready kube-apiserver "https://${APISERVER_HOST:-127.0.0.1}:$APISERVER_PORT/readyz" \
    --cacert "$CP_DIR/pki/ca.crt" --cert "$CP_DIR/pki/admin.crt" --key "$CP_DIR/pki/admin.key"
}
