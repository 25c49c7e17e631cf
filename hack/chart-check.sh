#!/usr/bin/env bash
# Check the Helm chart: lint, render with default / original / full values, assert a few
# properties of the rendering, and apply each rendering to a real API server with a
# server-side dry run (kinds whose CRDs are absent are skipped, and said so).
#
# Usage: hack/chart-check.sh
#   With KUBECONFIG set: uses that API server. Without: starts the local control plane
#   (hack/controlplane/up.sh, in its own state dir) and stops it at the end.
# helm comes from hack/controlplane/build.sh (built once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[chart-check] %s\n' "$*" >&2; }

HELM=$(hack/controlplane/build.sh helm | sed -n 's/^helm=//p')
# The machine's kubectl, else one built once by build.sh.
KUBECTL=${KUBECTL:-$(command -v kubectl || hack/controlplane/build.sh kubectl | sed -n 's/^kubectl=//p')}
CHART=charts/agimo
RELEASE_NS=agimo-chart-check
OUT=$(mktemp -d)
own_cp=0
cleanup() {
  rm -rf "$OUT"
  if [[ $own_cp == 1 ]]; then hack/controlplane/down.sh || true; fi
}
trap cleanup EXIT

if [[ -z ${KUBECONFIG:-} ]]; then
  log "KUBECONFIG not set: starting a local control plane"
  export AGIMO_CP_DIR=${AGIMO_CP_DIR:-/tmp/agimo-cp-chart-check}
  own_cp=1
  eval "$(AGIMO_CP_NO_KCM=1 hack/controlplane/up.sh)"
  # Our own API server gets the Gateway API CRDs (those of the module in go.mod), so the dry
  # run below checks the GatewayClass too; a cluster of yours is left as it is.
  gwapi=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard
  "$KUBECTL" apply --server-side --field-manager=agimo-chart-check -f "$gwapi" >/dev/null
  "$KUBECTL" wait --for condition=Established --timeout=60s crd/gatewayclasses.gateway.networking.k8s.io >/dev/null
fi

# helm built with `go install` assumes Kubernetes v1.20 when not talking to a cluster,
# which the chart's kubeVersion constraint rejects: render for the real server's version.
KUBE_VERSION=$("$KUBECTL" get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
log "API server version: $KUBE_VERSION"
HELM_T=(template agimo "$CHART" --namespace "$RELEASE_NS" --kube-version "$KUBE_VERSION")

# name:values-file ("" = chart defaults)
variants=("default:" "original:$CHART/ci/original-values.yaml" "full:$CHART/ci/full-values.yaml"
  "wake:$CHART/ci/wake-values.yaml" "tls:$CHART/ci/tls-values.yaml" "ingress:$CHART/ci/ingress-values.yaml"
  "gateway:$CHART/ci/gateway-values.yaml")

for v in "${variants[@]}"; do
  name=${v%%:*} file=${v#*:}
  args=()
  [[ -n $file ]] && args=(-f "$file")
  log "helm lint ($name values)"
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${args[@]}" >&2
  log "helm template ($name values)"
  "$HELM" "${HELM_T[@]}" "${args[@]}" >"$OUT/$name.yaml"
done

# --- properties of the rendering ---------------------------------------------------
fail() { log "FAIL: $*"; exit 1; }
grep -q -- '--conf=/etc/agimo/config.toml' "$OUT/default.yaml" || fail "missing --conf"
grep -q -- '--prometheus-address' "$OUT/default.yaml" && fail "--prometheus-address without prometheus.address"
grep -q -- '--prometheus-address=http://prometheus-server' "$OUT/original.yaml" || fail "original values: no --prometheus-address"
grep -q 'prometheus.io/scrape: "true"' "$OUT/original.yaml" || fail "original values: podAnnotations lost"
grep -q 'terminationGracePeriodSeconds: 40$' "$OUT/default.yaml" || fail "grace period != 5+25+10"
grep -q -- '--otlp-endpoint' "$OUT/default.yaml" && fail "--otlp-endpoint without tracing.otlpEndpoint"
grep -q -- '--otlp-endpoint=http://otel-collector.observability:4318' "$OUT/full.yaml" || fail "full values: no --otlp-endpoint"
grep -q -- '--otlp-sample=0.25' "$OUT/full.yaml" || fail "full values: no --otlp-sample"
grep -q 'kind: ClusterRole$' "$OUT/default.yaml" || fail "default RBAC is not a ClusterRole"
grep -q 'kind: ClusterRole$' "$OUT/full.yaml" && fail "rbac.namespaces still renders a ClusterRole"
[[ $(grep -c '^kind: ScaledObject$' "$OUT/full.yaml") == 2 ]] || fail "want one ScaledObject per service"
grep -q 'kind: StatefulSet' "$OUT/full.yaml" || fail "sts service did not target a StatefulSet"
grep -qF 'sum by (host) ((rate(agimo_requests_total{host=\"example.com\"}[1m])) + (agimo_active_requests{host=\"example.com\"}))' "$OUT/full.yaml" ||
  fail "ScaledObject query differs from the original's"
# A config change must change the pod template (checksum annotation), so pods roll.
sum() { grep 'checksum/config' "$1"; }
"$HELM" "${HELM_T[@]}" --set-string config="timeout = '31s'" >"$OUT/changed.yaml"
[[ $(sum "$OUT/default.yaml") != "$(sum "$OUT/changed.yaml")" ]] || fail "config change did not change checksum/config"
"$HELM" "${HELM_T[@]}" --set-string config="timeout = " >/dev/null 2>&1 && fail "invalid TOML accepted"
# Scaling RBAC (wake / idle_after): only for the workloads that use it, by name, in their
# namespace; nothing cluster-wide unless scaling.enabled=true.
grep -q '/scale"' "$OUT/default.yaml" && fail "scaling RBAC without any service using wake/idle_after"
awk '/^kind: ClusterRole$/,/^---$/' "$OUT/wake.yaml" | grep -q '/scale"' && fail "scaling RBAC in the ClusterRole with scaling.enabled=auto"
grep -A1 'resources: \["deployments/scale"\]' "$OUT/wake.yaml" | grep -qF 'resourceNames: ["example"]' ||
  fail "wake: no deployments/scale rule for exactly the woken Deployment"
grep -A1 'resources: \["statefulsets/scale"\]' "$OUT/wake.yaml" | grep -qF 'resourceNames: ["db-admin"]' ||
  fail "idle_after: no statefulsets/scale rule for exactly the idled StatefulSet"
grep -A1 'resources: \["leases"\]' "$OUT/wake.yaml" | grep -qF 'resourceNames: ["agimo-deployment-example","agimo-statefulset-db-admin"]' ||
  fail "wake/idle_after: no get/update rule for exactly the workloads' activity Leases"
grep -A1 'resources: \["leases"\]' "$OUT/wake.yaml" | grep -qF 'verbs: ["create"]' ||
  fail "wake/idle_after: no rule to create the activity Leases"
grep -q 'resources: \["deployments"\]' "$OUT/wake.yaml" && fail "wake/idle_after: a rule on the Deployment itself (activity is in a Lease)"
grep -qF '"static"' "$OUT/wake.yaml" && fail "scaling RBAC for a workload without wake/idle_after"
grep -q '^  name: agimo-scale$' "$OUT/wake.yaml" || fail "no agimo-scale Role in the workloads' namespace"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/wake-values.yaml" --set-json 'rbac.namespaces=["example"]' >"$OUT/wake-ns.yaml"
grep -q '^kind: ClusterRole' "$OUT/wake-ns.yaml" && fail "rbac.namespaces with wake: something cluster-wide"
grep -A1 'resources: \["deployments/scale"\]' "$OUT/wake-ns.yaml" | grep -qF 'resourceNames: ["example"]' ||
  fail "rbac.namespaces with wake: no deployments/scale rule in the namespace's Role"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/wake-values.yaml" --set-json 'rbac.namespaces=["other"]' >/dev/null 2>&1 &&
  fail "a woken workload outside rbac.namespaces accepted"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/wake-values.yaml" --set scaling.enabled=false >"$OUT/wake-off.yaml"
grep -q '/scale"' "$OUT/wake-off.yaml" && fail "scaling.enabled=false still grants scaling"
"$HELM" "${HELM_T[@]}" --set scaling.enabled=true >"$OUT/scale-all.yaml"
awk '/^kind: ClusterRole$/,/^---$/' "$OUT/scale-all.yaml" | grep -A1 'resources: \["deployments/scale"\]' | grep -q 'verbs:' ||
  fail "scaling.enabled=true: no unrestricted deployments/scale rule in the ClusterRole"
"$HELM" "${HELM_T[@]}" --set scaling.enabled=maybe >/dev/null 2>&1 && fail "scaling.enabled=maybe accepted"
# Paths (issue 12): entries sharing a host or a workload give one ScaledObject per workload, named
# apart, whose query covers each host the workload serves.
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/paths-values.yaml" >"$OUT/paths.yaml"
[[ $(grep -c '^kind: ScaledObject$' "$OUT/paths.yaml") == 3 ]] || fail "paths: want one ScaledObject per workload (api, web, c)"
[[ $(grep '^  name: agimo-' "$OUT/paths.yaml" | grep -c -e 'agimo-a-example-com-api$' -e 'agimo-a-example-com-web$' -e 'agimo-c-example-com$') == 3 ]] ||
  fail "paths: ScaledObjects not named by host, and by workload where a host is shared"
grep -qF 'host=~\"a\\\\.example\\\\.com|b\\\\.example\\\\.com\"' "$OUT/paths.yaml" ||
  fail "paths: the query of a workload served under two hosts does not cover both"
# TLS (issue 11): Secrets readable by name only, in their namespaces, never cluster-wide; the
# https port only when a certificate is configured; tls.secrets reaches the config.
grep -q 'resources: \["secrets"\]' "$OUT/default.yaml" && fail "a Secret rule without any TLS Secret configured"
grep -q 'name: https$' "$OUT/default.yaml" && fail "an https port without any certificate configured"
awk '/^kind: ClusterRole$/,/^---$/' "$OUT/tls.yaml" | grep -q 'secrets' && fail "tls: Secrets readable cluster-wide"
[[ $(grep -c 'resources: \["secrets"\]' "$OUT/tls.yaml") == 2 ]] || fail "tls: want one Secret rule per namespace (example, certs)"
grep -A1 'resources: \["secrets"\]' "$OUT/tls.yaml" | grep -qF 'resourceNames: ["api-tls","example-tls"]' ||
  fail "tls: no rule for exactly the services' tls_secret Secrets"
grep -A1 'resources: \["secrets"\]' "$OUT/tls.yaml" | grep -qF 'resourceNames: ["wildcard"]' ||
  fail "tls: no rule for exactly the tls.secrets Secret"
grep -A2 'resources: \["secrets"\]' "$OUT/tls.yaml" | grep -qF 'verbs: ["get", "list", "watch"]' || fail "tls: Secret rule verbs"
for kind in Role RoleBinding; do
  [[ $(grep -A2 "^kind: $kind\$" "$OUT/tls.yaml" | grep -c '^  name: agimo-tls$') == 2 ]] ||
    fail "tls: want a $kind agimo-tls in each of example and certs"
done
grep -A1 -- '- name: https$' "$OUT/tls.yaml" | grep -q 'port: 443$' || fail "tls: no Service port 443 named https"
grep -A1 -- '- name: https$' "$OUT/tls.yaml" | grep -q 'containerPort: 8443$' || fail "tls: no container port 8443 named https"
grep -qF 'tls_secrets = ["certs/wildcard"]' "$OUT/tls.yaml" || fail "tls: tls.secrets not added to the config"
awk '/config.toml: \|/{f=1;next} f&&/^[^ ]/{f=0} f' "$OUT/tls.yaml" | sed 's/^    //' >"$OUT/tls.toml"
go run . --check --conf "$OUT/tls.toml" >&2 || fail "tls: the rendered config fails agimo --check"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/tls-values.yaml" --set-json 'rbac.namespaces=["example","certs"]' >"$OUT/tls-ns.yaml"
grep -q '^kind: ClusterRole' "$OUT/tls-ns.yaml" && fail "rbac.namespaces with TLS: something cluster-wide"
grep -q '^  name: agimo-tls$' "$OUT/tls-ns.yaml" && fail "rbac.namespaces with TLS: a separate -tls Role"
[[ $(grep -c 'resources: \["secrets"\]' "$OUT/tls-ns.yaml") == 2 ]] || fail "rbac.namespaces with TLS: want the Secret rule in each namespace's Role"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/tls-values.yaml" --set-json 'rbac.namespaces=["example"]' >/dev/null 2>&1 &&
  fail "a TLS Secret outside rbac.namespaces accepted"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/tls-values.yaml" --set-string config="tls_secrets = ['a/b']" >/dev/null 2>&1 &&
  fail "tls_secrets in config and tls.secrets both accepted"
"$HELM" "${HELM_T[@]}" --set-json 'tls.secrets=["nonamespace"]' >/dev/null 2>&1 && fail "tls.secrets entry without a namespace accepted"
# Ingress (issue 12): the rules only with ingress.class, in the ClusterRole; the class reaches
# the config and --publish-service the args; the IngressClass only when asked.
grep -qE 'ingresses|ingressclasses|"events"' "$OUT/default.yaml" && fail "Ingress RBAC without ingress.class"
grep -q 'kind: IngressClass' "$OUT/default.yaml" && fail "an IngressClass without ingress.createClass"
ing_role=$(awk '/^kind: ClusterRole$/,/^---$/' "$OUT/ingress.yaml")
grep -qF 'resources: ["ingresses", "ingressclasses"]' <<<"$ing_role" || fail "ingress: no read rule for Ingresses and IngressClasses"
grep -A1 -F 'resources: ["ingresses/status"]' <<<"$ing_role" | grep -qF 'verbs: ["update"]' || fail "ingress: no update rule for ingresses/status"
grep -A1 -F 'resources: ["events"]' <<<"$ing_role" | grep -qF 'verbs: ["create", "patch"]' || fail "ingress: no rule to create Events"
grep -qF 'ingress_class = "agimo"' "$OUT/ingress.yaml" || fail "ingress: ingress.class not added to the config"
grep -qF -- '--publish-service=agimo-chart-check/agimo' "$OUT/ingress.yaml" || fail "ingress: no --publish-service"
awk '/^kind: IngressClass$/,/^---$/' "$OUT/ingress.yaml" | grep -qF 'ingressclass.kubernetes.io/is-default-class: "true"' ||
  fail "ingress: the created IngressClass is not the default"
grep -qF 'controller: agimo.dev/ingress-controller' "$OUT/ingress.yaml" || fail "ingress: IngressClass controller"
awk '/config.toml: \|/{f=1;next} f&&/^[^ ]/{f=0} f' "$OUT/ingress.yaml" | sed 's/^    //' >"$OUT/ingress.toml"
go run . --check --conf "$OUT/ingress.toml" >&2 || fail "ingress: the rendered config fails agimo --check"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/ingress-values.yaml" --set-json 'rbac.namespaces=["example"]' >/dev/null 2>&1 &&
  fail "ingress.class with rbac.namespaces accepted"
# Gateway API (issue 12): the rules only with gateway.class, in the ClusterRole; the status
# Lease only in the release namespace, by name; the class reaches the config; the
# GatewayClass only when asked; POD_NAMESPACE always (the Lease's namespace).
grep -qE 'gateway.networking.k8s.io|agimo-status|kind: GatewayClass|gateway_class' "$OUT/default.yaml" &&
  fail "Gateway API RBAC, Lease, GatewayClass or config without gateway.class"
grep -A3 -- '- name: POD_NAMESPACE$' "$OUT/default.yaml" | grep -q 'fieldPath: metadata.namespace$' ||
  fail "no POD_NAMESPACE from the downward API"
gw_role=$(awk '/^kind: ClusterRole$/,/^---$/' "$OUT/gateway.yaml")
grep -A1 -F 'resources: ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"]' <<<"$gw_role" |
  grep -qF 'verbs: ["get", "list", "watch"]' || fail "gateway: no read rule for the Gateway API objects"
grep -A1 -F 'resources: ["gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status"]' <<<"$gw_role" |
  grep -qF 'verbs: ["update", "patch"]' || fail "gateway: no update/patch rule for the Gateway API status"
grep -qF 'resources: ["ingresses' <<<"$gw_role" && fail "gateway: Ingress rules without ingress.class"
grep -A1 -F 'resources: ["secrets"]' <<<"$gw_role" | grep -qF 'verbs: ["get", "list", "watch"]' || fail "gateway: no rule to read listeners' Secrets"
grep -A1 -F 'resources: ["events"]' <<<"$gw_role" | grep -qF 'verbs: ["create", "patch"]' || fail "gateway: no rule to create Events"
grep -q 'leases' <<<"$gw_role" && fail "gateway: Leases in the ClusterRole"
lease_role=$(awk '/^kind: Role$/,/^---$/' "$OUT/gateway.yaml")
grep -qF 'name: agimo-status' <<<"$lease_role" && grep -qF 'namespace: agimo-chart-check' <<<"$lease_role" ||
  fail "gateway: no Role agimo-status in the release namespace"
grep -A1 -F 'resourceNames: ["agimo-status"]' <<<"$lease_role" | grep -qF 'verbs: ["get", "update"]' ||
  fail "gateway: no get/update rule for exactly the Lease agimo-status"
grep -B2 -F 'verbs: ["create"]' <<<"$lease_role" | grep -qF 'resources: ["leases"]' || fail "gateway: no rule to create the Lease"
grep -q '^kind: RoleBinding$' "$OUT/gateway.yaml" || fail "gateway: the status Role is not bound"
grep -qF 'gateway_class = "agimo"' "$OUT/gateway.yaml" || fail "gateway: gateway.class not added to the config"
grep -qF -- '--publish-service=agimo-chart-check/agimo' "$OUT/gateway.yaml" || fail "gateway: no --publish-service"
awk '/^kind: GatewayClass$/,/^---$/' "$OUT/gateway.yaml" | grep -qF 'controllerName: agimo.dev/gateway-controller' ||
  fail "gateway: no GatewayClass with controllerName agimo.dev/gateway-controller"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/gateway-values.yaml" --set gateway.createClass=false >"$OUT/gateway-noclass.yaml"
grep -q 'kind: GatewayClass' "$OUT/gateway-noclass.yaml" && fail "a GatewayClass without gateway.createClass"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/gateway-values.yaml" -f "$CHART/ci/ingress-values.yaml" >"$OUT/both.yaml"
[[ $(awk '/^kind: ClusterRole$/,/^---$/' "$OUT/both.yaml" | grep -cF 'resources: ["secrets"]') == 1 ]] ||
  fail "ingress and gateway: want the Secret rule once"
grep -qF 'gateway_class = "agimo"' "$OUT/both.yaml" && grep -qF 'ingress_class = "agimo"' "$OUT/both.yaml" ||
  fail "ingress and gateway: both classes not in the config"
grep -qF 'resources: ["namespaces"]' <<<"$gw_role" || fail "gateway: no read rule for Namespaces (allowedRoutes selectors)"
awk '/^kind: Role$/,/^---$/' "$OUT/ingress.yaml" | grep -qF 'resourceNames: ["agimo-status"]' ||
  fail "ingress: no Role for the status Lease (Ingress status is written by the leader too)"
awk '/config.toml: \|/{f=1;next} f&&/^[^ ]/{f=0} f' "$OUT/gateway.yaml" | sed 's/^    //' >"$OUT/gateway.toml"
go run . --check --conf "$OUT/gateway.toml" >&2 || fail "gateway: the rendered config fails agimo --check"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/gateway-values.yaml" --set-json 'rbac.namespaces=["example"]' >/dev/null 2>&1 &&
  fail "gateway.class with rbac.namespaces accepted"
"$HELM" "${HELM_T[@]}" --set tls.enabled=true >"$OUT/tls-on.yaml"
grep -q 'name: https$' "$OUT/tls-on.yaml" || fail "tls.enabled=true: no https port"
"$HELM" "${HELM_T[@]}" -f "$CHART/ci/tls-values.yaml" --set tls.enabled=false >"$OUT/tls-off.yaml"
grep -q 'name: https$' "$OUT/tls-off.yaml" && fail "tls.enabled=false: an https port"
log "rendering properties: ok"

# --- server-side dry run ---------------------------------------------------------------
# Namespaces must exist for a dry run of namespaced objects; create ours for real.
created_ns=()
for ns in "$RELEASE_NS" example certs; do
  if ! "$KUBECTL" get namespace "$ns" >/dev/null 2>&1; then
    "$KUBECTL" create namespace "$ns" >/dev/null
    created_ns+=("$ns")
  fi
done
skip_kinds=()
for kind in ScaledObject:keda.sh ServiceMonitor:monitoring.coreos.com GatewayClass:gateway.networking.k8s.io; do
  if ! "$KUBECTL" api-resources --api-group "${kind#*:}" -o name 2>/dev/null | grep -q .; then
    log "skipping ${kind%%:*}: CRD ${kind#*:} not installed on this API server"
    skip_kinds+=("${kind%%:*}")
  fi
done
for v in "${variants[@]}"; do
  name=${v%%:*}
  # Drop the documents of skipped kinds (helm separates documents with ---).
  awk -v skip="$(IFS='|'; echo "${skip_kinds[*]:-}")" '
    function flush() { if (doc != "" && !(skip != "" && doc ~ ("\nkind: (" skip ")\n"))) printf "%s", doc; doc = "" }
    /^---$/ { flush(); doc = "---\n"; next }
    { doc = doc $0 "\n" }
    END { flush() }' "$OUT/$name.yaml" >"$OUT/$name.apply.yaml"
  log "kubectl apply --server-side --dry-run=server ($name values)"
  "$KUBECTL" apply --server-side --dry-run=server --field-manager=agimo-chart-check \
    -f "$OUT/$name.apply.yaml" >&2
done
# Remove only the namespaces this script created.
if [[ ${#created_ns[@]} -gt 0 ]]; then
  "$KUBECTL" delete namespace "${created_ns[@]}" --wait=false >/dev/null 2>&1 || true
fi
log "chart checks passed"
