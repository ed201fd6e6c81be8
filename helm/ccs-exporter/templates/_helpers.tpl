{{/* The chart's name, overridable. */}}
{{- define "ccs-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-ccs-exporter, or the release name when it already holds the chart's. */}}
{{- define "ccs-exporter.fullname" -}}
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

{{- define "ccs-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ccs-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ccs-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ccs-exporter.labels" -}}
helm.sh/chart: {{ include "ccs-exporter.chart" . }}
{{ include "ccs-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ccs-exporter
{{- end }}

{{- define "ccs-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ccs-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the CCS password: the existing one, or the one this chart creates. */}}
{{- define "ccs-exporter.secretName" -}}
{{- default (include "ccs-exporter.fullname" .) .Values.ccs.existingSecret }}
{{- end }}

{{- define "ccs-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the password file is mounted; CCS_EXPORTER_PASSWORD_FILE points into it. */}}
{{- define "ccs-exporter.credentialsDir" -}}
/etc/ccs-exporter/credentials
{{- end }}

{{- define "ccs-exporter.caDir" -}}
/etc/ccs-exporter/ca
{{- end }}

{{- define "ccs-exporter.auditClaimName" -}}
{{- default (printf "%s-audit" (include "ccs-exporter.fullname" .)) .Values.auditLog.persistence.existingClaim }}
{{- end }}

{{/* Where the web-config Secret is mounted; CCS_EXPORTER_WEB_CONFIG_FILE points into it. */}}
{{- define "ccs-exporter.webConfigDir" -}}
/etc/ccs-exporter/web
{{- end }}

{{/* Refuses web-config and ServiceMonitor TLS settings that cannot work together. */}}
{{- define "ccs-exporter.checkWebConfig" -}}
{{- if and (or .Values.webConfig.tls .Values.webConfig.tlsSecret) (not .Values.webConfig.existingSecret) }}
{{- fail "webConfig.tls and webConfig.tlsSecret need webConfig.existingSecret (the Secret holding web-config.yml)" }}
{{- end }}
{{- if and .Values.serviceMonitor.tlsConfig.ca.secret .Values.serviceMonitor.tlsConfig.ca.configMap }}
{{- fail "serviceMonitor.tlsConfig.ca: set secret or configMap, not both" }}
{{- end }}
{{- end }}
