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

{{/* The RBAC rules Agimo needs: read Services and EndpointSlices, nothing else. */}}
{{- define "agimo.rbacRules" -}}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}
