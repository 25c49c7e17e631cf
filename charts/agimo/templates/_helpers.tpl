{{/* Name of the chart, overridable. */}}
{{- define "agimo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name if it already contains the chart name. */}}
{{- define "agimo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agimo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agimo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agimo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agimo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agimo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agimo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The [[services]] of `config`, parsed; fails the render on invalid TOML. */}}
{{- define "agimo.services" -}}
{{- $conf := fromToml .Values.config }}
{{- if hasKey $conf "Error" }}
{{- fail (printf "config is not valid TOML: %s" $conf.Error) }}
{{- end }}
{{- toJson (dict "services" (default list $conf.services)) }}
{{- end }}

{{/* The RBAC rules Agimo always needs: read Services and EndpointSlices. */}}
{{- define "agimo.rbacRules" -}}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
What serving Ingresses (ingress.class) needs, cluster-wide: read Ingresses, IngressClasses
and Services (already in agimo.rbacRules), write the Ingresses' status; and
agimo.routeSourceRules.
*/}}
{{- define "agimo.ingressRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses", "ingressclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["update"]
{{- end }}

{{/*
What serving Gateway API routes (gateway.class) needs, cluster-wide: read the GatewayClass,
Gateways, HTTPRoutes, GRPCRoutes and the ReferenceGrants that allow cross-namespace refs,
and write their status; and agimo.routeSourceRules. The Lease of the leader election for
status writes is granted in the release namespace only (templates/rbac.yaml).
*/}}
{{- define "agimo.gatewayRules" -}}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status"]
  verbs: ["update", "patch"]
# A listener's allowedRoutes.namespaces.from: Selector selects namespaces by their labels.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
Shared by Ingresses and Gateway API routes (either class set): read the TLS Secrets any
Ingress or Gateway listener may name, and report problems (conflicts, bad annotations on a
backend Service) as Events.
*/}}
{{- define "agimo.routeSourceRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The leader election for Ingress and Gateway API status writes: the Lease "agimo-status" in the release
namespace, created by the first replica (create cannot be limited by name), then read and
renewed by name.
*/}}
{{- define "agimo.statusLeaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: ["agimo-status"]
  verbs: ["get", "update"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end }}

{{/*
scaling.enabled, normalised to "auto", "true" or "false".
*/}}
{{- define "agimo.scalingMode" -}}
{{- $m := .Values.scaling.enabled | toString }}
{{- if not (has $m (list "auto" "true" "false")) }}
{{- fail (printf "scaling.enabled must be auto, true or false, not %q" $m) }}
{{- end }}
{{- $m }}
{{- end }}

{{/*
The workloads Agimo scales itself: those of the [[services]] entries of `config` that set
`wake` or `idle_after`. JSON: {"<namespace>": {"deployments": [names], "statefulsets": [names]}}.
*/}}
{{- define "agimo.scaledWorkloads" -}}
{{- $out := dict }}
{{- range $s := (include "agimo.services" . | fromJson).services }}
{{- if or $s.wake $s.idle_after }}
{{- $type := lower (toString $s.type) }}
{{- $res := "" }}
{{- if has $type (list "deployment" "deploy") }}{{ $res = "deployments" }}{{ end }}
{{- if has $type (list "statefulset" "sts") }}{{ $res = "statefulsets" }}{{ end }}
{{- if and $res $s.namespace $s.name }}
{{- $ns := default (dict "deployments" list "statefulsets" list) (get $out $s.namespace) }}
{{- $_ := set $ns $res (append (get $ns $res) $s.name | uniq | sortAlpha) }}
{{- $_ := set $out $s.namespace $ns }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Rules for wake and idle_after: read and change replicas through the scale subresource, and
keep the workload's activity Lease "agimo-<kind>-<name>" (coordination.k8s.io, shared by Agimo
replicas). create cannot be limited by name (RBAC never knows the name of an object yet to be
created), so it is granted for leases in the namespace; get and update only for those Leases.
Argument: {"deployments": [names], "statefulsets": [names]} restricts the rules to those
names (a kind with no names gets no rule); "all" grants them for every workload.
*/}}
{{- define "agimo.scaleRules" -}}
{{- range $res := list "deployments" "statefulsets" }}
{{- $names := list }}
{{- if kindIs "map" $ }}{{ $names = get $ $res }}{{ end }}
{{- if or (eq (toString $) "all") $names }}
- apiGroups: ["apps"]
  resources: [{{ printf "%s/scale" $res | quote }}]
  {{- with $names }}
  resourceNames: {{ toJson . }}
  {{- end }}
  verbs: ["get", "update", "patch"]
{{- end }}
{{- end }}
{{- $leases := list }}
{{- if kindIs "map" $ }}
{{- range $n := default (list) (get $ "deployments") }}{{ $leases = append $leases (printf "agimo-deployment-%s" $n) }}{{ end }}
{{- range $n := default (list) (get $ "statefulsets") }}{{ $leases = append $leases (printf "agimo-statefulset-%s" $n) }}{{ end }}
{{- end }}
{{- if or (eq (toString $) "all") $leases }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  {{- with $leases }}
  resourceNames: {{ toJson . }}
  {{- end }}
  verbs: ["get", "update"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/*
The TLS Secrets Agimo reads, by namespace: each service's `tls_secret` (in the service's
namespace), the top-level `tls_secrets` of `config`, and `tls.secrets`.
JSON: {"<namespace>": [names]}. Fails when both `config` and `tls.secrets` list shared Secrets
(the chart adds `tls.secrets` to the config as its `tls_secrets`, and a TOML key is set once).
*/}}
{{- define "agimo.tlsSecrets" -}}
{{- $conf := fromToml .Values.config }}
{{- $out := dict }}
{{- range $s := default list $conf.services }}
{{- if and $s.tls_secret $s.namespace (not $s.tls_passthrough) }}
{{- $_ := set $out $s.namespace (append (default list (get $out $s.namespace)) $s.tls_secret | uniq | sortAlpha) }}
{{- end }}
{{- end }}
{{- if and $conf.tls_secrets .Values.tls.secrets }}
{{- fail "config sets tls_secrets and tls.secrets is set too: list shared TLS Secrets in one of them" }}
{{- end }}
{{- range $e := concat (default list $conf.tls_secrets) (default list .Values.tls.secrets) }}
{{- $p := splitList "/" (toString $e) }}
{{- if or (ne (len $p) 2) (not (index $p 0)) (not (index $p 1)) }}
{{- fail (printf "TLS Secret %q: want NAMESPACE/NAME" (toString $e)) }}
{{- end }}
{{- $ns := index $p 0 }}
{{- $_ := set $out $ns (append (default list (get $out $ns)) (index $p 1) | uniq | sortAlpha) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
"true" when the TLS port is exposed (container port and Service port): tls.enabled = true, or
auto (the default) and the config names a certificate (tls_secret, tls_cert_file, tls_secrets,
tls.secrets) or a tls_passthrough service; "" otherwise.
*/}}
{{- define "agimo.tlsEnabled" -}}
{{- $m := .Values.tls.enabled | toString }}
{{- if not (has $m (list "auto" "true" "false")) }}
{{- fail (printf "tls.enabled must be auto, true or false, not %q" $m) }}
{{- end }}
{{- if eq $m "auto" }}
{{- $conf := fromToml .Values.config }}
{{- $on := or .Values.tls.secrets $conf.tls_secrets }}
{{- range $s := default list $conf.services }}
{{- if or $s.tls_secret $s.tls_cert_file $s.tls_passthrough }}{{ $on = true }}{{ end }}
{{- end }}
{{- if $on }}true{{ end }}
{{- else if eq $m "true" }}true{{ end }}
{{- end }}

{{/*
Read access to exactly the named Secrets. list and watch can be limited by name too: Agimo
lists and watches each Secret with the field selector metadata.name=<name>, which the API
server authorizes as a request for that name. Argument: the list of names.
*/}}
{{- define "agimo.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get", "list", "watch"]
{{- end }}
