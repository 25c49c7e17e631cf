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
