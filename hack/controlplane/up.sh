#!/usr/bin/env bash
# Start a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)
# on free 127.0.0.1 ports. No kubelet and no scheduler: Pods stay Pending, and tests play
# kubelet by writing EndpointSlices themselves.
#
# Usage: hack/controlplane/up.sh            # builds binaries first if needed (build.sh)
#        eval "$(hack/controlplane/up.sh)"  # also exports KUBECONFIG into your shell
#
# State (certs, data, logs, PIDs, kubeconfig) lives in ${AGIMO_CP_DIR:-/tmp/agimo-cp}.
# Stop with hack/controlplane/down.sh. Set AGIMO_CP_NO_KCM=1 to skip kube-controller-manager.
# AGIMO_CP_NODE=1: for a real node (hack/node/up.sh): kube-apiserver binds and advertises the
# node's address $AGIMO_NODE_IP instead of 127.0.0.1, so pods reach it through the
# "kubernetes" Service, and certificates + kubeconfigs are issued for kubelet, kube-proxy and
# kube-scheduler (and for kube-apiserver's own calls to the kubelet: logs, exec).
# The only thing printed on stdout is `export KUBECONFIG=...`; progress goes to stderr.
set -euo pipefail
# shellcheck source=hack/controlplane/common.sh
source "$(dirname "$0")/common.sh"

# Service IPs are never routed anywhere (no kube-proxy); the range is private and used by
# nothing on this machine. 10.213.N.0/24 (N>=1) is left for hack/netns.sh's pods.
SERVICE_CIDR=${AGIMO_SERVICE_CIDR:-10.213.0.0/24}
SERVICE_IP=${SERVICE_CIDR%.*}.1 # the "kubernetes" Service's ClusterIP, in the serving cert
NODE=${AGIMO_CP_NODE:-}
API_HOST=127.0.0.1
if [[ $NODE == 1 ]]; then
  API_HOST=${AGIMO_NODE_IP:?AGIMO_CP_NODE=1 needs AGIMO_NODE_IP}
  NODE_NAME=${AGIMO_NODE_NAME:?AGIMO_CP_NODE=1 needs AGIMO_NODE_NAME}
fi

if [[ -f $CP_DIR/pids/kube-apiserver.pid ]] && pid_alive kube-apiserver; then
  cp_log "already running in $CP_DIR (run down.sh first to restart)"
  echo "export KUBECONFIG=$CP_DIR/kubeconfig"
  exit 0
fi

# A half-started previous run (e.g. killed during startup) is cleaned up first.
"$HERE/down.sh" >/dev/null 2>&1 || true

# Binaries: build or reuse the cached ones. build.sh prints "name=path" lines.
targets=(etcd kube-apiserver)
[[ ${AGIMO_CP_NO_KCM:-} == 1 ]] || targets+=(kube-controller-manager)
built=$("$HERE/build.sh" "${targets[@]}")
while IFS='=' read -r name path; do
  case $name in
    etcd) ETCD_BIN=$path ;;
    kube-apiserver) KUBE_APISERVER_BIN=$path ;;
    kube-controller-manager) KCM_BIN=$path ;;
  esac
done <<<"$built"

# From here on, a failure stops whatever already started and removes the state dir.
started=0
trap '[[ $started == 1 ]] || { cp_log "start failed, cleaning up"; "$HERE/down.sh" >&2 || true; }' EXIT

mkdir -p "$CP_DIR"/{pki,etcd,logs,pids}
chmod 700 "$CP_DIR"
PKI=$CP_DIR/pki

ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port "$ETCD_PORT")
APISERVER_PORT=$(free_port "$ETCD_PORT" "$ETCD_PEER_PORT")
cat >"$CP_DIR/env" <<EOF
ETCD_PORT=$ETCD_PORT
APISERVER_PORT=$APISERVER_PORT
KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN
SERVICE_CIDR=$SERVICE_CIDR
APISERVER_HOST=$API_HOST
EOF

# --- certificates -------------------------------------------------------------------
# EC keys: fast to generate, accepted by every component. All valid for 10 days.
cp_log "generating certificates in $PKI"
openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
openssl req -x509 -new -key "$PKI/ca.key" -days 10 -subj "/CN=agimo-local-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$PKI/ca.crt" 2>/dev/null

# issue NAME SUBJECT EXTENSIONS: key + certificate signed by the CA.
issue() {
  local name=$1 subj=$2 ext=$3
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 10 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}
issue apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
  'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
  "subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,IP:$API_HOST,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"
# system:masters: the admin used by tests and kubectl (bypasses RBAC, as in kubeadm).
issue admin "/O=system:masters/CN=agimo-admin" \
  "$(printf '%s\n' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth')"
# The user name RBAC's bootstrap policy grants kube-controller-manager's permissions to.
issue kcm "/CN=system:kube-controller-manager" \
  "$(printf '%s\n' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth')"
if [[ $NODE == 1 ]]; then
  # kubelet: the Node authorizer's identity; kube-proxy, kube-scheduler: the users RBAC's
  # bootstrap policy binds; apiserver-kubelet-client: kube-apiserver -> kubelet (logs, exec),
  # which the kubelet's webhook authorizer accepts as system:masters.
  clientext="$(printf '%s\n' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=clientAuth')"
  issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$clientext"
  issue kube-proxy "/CN=system:kube-proxy" "$clientext"
  issue scheduler "/CN=system:kube-scheduler" "$clientext"
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$clientext"
fi
# Service-account tokens are signed with this key (TokenRequest, `kubectl create token`).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# write_kubeconfig FILE USER-CERT-NAME
write_kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: agimo-local
  cluster:
    server: https://$API_HOST:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$2.crt")
    client-key-data: $(base64 -w0 <"$PKI/$2.key")
contexts:
- name: agimo-local
  context: {cluster: agimo-local, user: $2}
current-context: agimo-local
EOF
  chmod 600 "$1"
}
write_kubeconfig "$CP_DIR/kubeconfig" admin
write_kubeconfig "$CP_DIR/kcm.kubeconfig" kcm
if [[ $NODE == 1 ]]; then
  for u in kubelet kube-proxy scheduler; do write_kubeconfig "$CP_DIR/$u.kubeconfig" "$u"; done
fi

# --- etcd ---------------------------------------------------------------------------
# Plain HTTP on loopback: nothing but our kube-apiserver can reach it. --unsafe-no-fsync
# because the data is thrown away anyway and fsync dominates on slow disks.
cp_log "starting etcd on 127.0.0.1:$ETCD_PORT"
start_bg etcd "$ETCD_BIN" --name agimo --data-dir "$CP_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "agimo=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level warn
wait_ready_etcd() {
  for _ in $(seq 300); do
    pid_alive etcd || { tail -n 30 "$CP_DIR/logs/etcd.log" >&2; return 1; }
    curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  cp_log "etcd not healthy after 30s"; return 1
}
wait_ready_etcd

# --- kube-apiserver -----------------------------------------------------------------
# Arguments are saved so restart-apiserver.sh can start an identical server (same port).
# --endpoint-reconciler-type=none: the reconciler would publish 127.0.0.1 as the
# "kubernetes" Service's endpoint, which the API server itself rejects (loopback). With a
# node, the address is the node's and the reconciler publishes it: pods need it.
if [[ $NODE == 1 ]]; then
  node_args="--endpoint-reconciler-type=lease
--kubelet-client-certificate=$PKI/apiserver-kubelet-client.crt
--kubelet-client-key=$PKI/apiserver-kubelet-client.key
--kubelet-preferred-address-types=InternalIP"
else
  node_args="--endpoint-reconciler-type=none"
fi
cat >"$CP_DIR/apiserver.args" <<EOF
--etcd-servers=http://127.0.0.1:$ETCD_PORT
--bind-address=$API_HOST
--advertise-address=$API_HOST
$node_args
--secure-port=$APISERVER_PORT
--cert-dir=$PKI
--tls-cert-file=$PKI/apiserver.crt
--tls-private-key-file=$PKI/apiserver.key
--client-ca-file=$PKI/ca.crt
--service-account-issuer=https://kubernetes.default.svc.cluster.local
--service-account-key-file=$PKI/sa.pub
--service-account-signing-key-file=$PKI/sa.key
--service-cluster-ip-range=$SERVICE_CIDR
--authorization-mode=Node,RBAC
--allow-privileged=true
--profiling=false
--enable-priority-and-fairness=false
--v=1
EOF
cp_log "starting kube-apiserver on $API_HOST:$APISERVER_PORT"
start_apiserver

# --- kube-controller-manager --------------------------------------------------------
# Runs Deployment/ReplicaSet/StatefulSet, namespace, garbage-collector and service-account
# controllers, each with its own service-account credentials (as kubeadm does).
if [[ ${AGIMO_CP_NO_KCM:-} != 1 ]]; then
  find_kubectl
  cp_log "starting kube-controller-manager"
  start_bg kube-controller-manager "$KCM_BIN" \
    --kubeconfig "$CP_DIR/kcm.kubeconfig" \
    --authentication-kubeconfig "$CP_DIR/kcm.kubeconfig" \
    --authorization-kubeconfig "$CP_DIR/kcm.kubeconfig" \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false --profiling=false --v=1
  # Ready once the "default" ServiceAccount exists: Pods cannot be created before that.
  for i in $(seq 600); do
    pid_alive kube-controller-manager || { tail -n 30 "$CP_DIR/logs/kube-controller-manager.log" >&2; false; }
    KUBECONFIG=$CP_DIR/kubeconfig "$KUBECTL" get serviceaccount default -n default >/dev/null 2>&1 && break
    [[ $i == 600 ]] && { cp_log "kube-controller-manager: no default ServiceAccount after 60s"; false; }
    sleep 0.1
  done
fi

started=1
cp_log "control plane up: kubectl --kubeconfig $CP_DIR/kubeconfig get ns"
echo "export KUBECONFIG=$CP_DIR/kubeconfig"
