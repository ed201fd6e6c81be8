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

{{/* Labels of every object: the chart's, then commonLabels. */}}
{{- define "ccs-exporter.labels" -}}
helm.sh/chart: {{ include "ccs-exporter.chart" . }}
{{ include "ccs-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ccs-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
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

{{/* The image reference: global.imageRegistry, else image.registry, before the repository (as Bitnami's
charts do), then the digest or the tag. */}}
{{- define "ccs-exporter.image" -}}
{{- $registry := default .Values.image.registry (.Values.global).imageRegistry | trimSuffix "/" }}
{{- $repository := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the password file is mounted; password_file points into it. */}}
{{- define "ccs-exporter.credentialsDir" -}}
/etc/ccs-exporter/credentials
{{- end }}

{{- define "ccs-exporter.caDir" -}}
/etc/ccs-exporter/ca
{{- end }}

{{/* Where the ConfigMap is mounted (a directory, not a subPath: the kubelet then updates the file). */}}
{{- define "ccs-exporter.configDir" -}}
/etc/ccs-exporter/config
{{- end }}

{{- define "ccs-exporter.configFile" -}}
{{- printf "%s/config.yaml" (include "ccs-exporter.configDir" .) }}
{{- end }}

{{- define "ccs-exporter.auditClaimName" -}}
{{- default (printf "%s-audit" (include "ccs-exporter.fullname" .)) .Values.auditLog.persistence.existingClaim }}
{{- end }}

{{/* Where the web-config Secret is mounted; web_config_file points into it. */}}
{{- define "ccs-exporter.webConfigDir" -}}
/etc/ccs-exporter/web
{{- end }}

{{/*
The exporter's configuration file (YAML keys are the setting names in lower case). Keys of settings that
are unset here are left out, so the exporter's own defaults apply.
*/}}
{{- define "ccs-exporter.config" -}}
{{- $config := dict
  "url" .Values.ccs.url
  "username" .Values.ccs.username
  "password_file" (printf "%s/password" (include "ccs-exporter.credentialsDir" .))
  "password_encoding" .Values.ccs.passwordEncoding
  "verify_tls" .Values.ccs.verifyTls
  "request_timeout_seconds" .Values.ccs.requestTimeoutSeconds
  "job_ids" .Values.jobIds
  "listen_address" (printf "0.0.0.0:%v" .Values.exporter.port)
  "poll_interval_seconds" .Values.exporter.pollIntervalSeconds
  "concurrency" .Values.exporter.concurrency
  "history_window" .Values.exporter.historyWindow
  "log_format" .Values.exporter.logFormat
  "log_level" .Values.exporter.logLevel
}}
{{- if or .Values.ccs.caBundle.configMap .Values.ccs.caBundle.secret }}
{{- $_ := set $config "ca_bundle" (printf "%s/%s" (include "ccs-exporter.caDir" .) .Values.ccs.caBundle.key) }}
{{- end }}
{{- with .Values.jobSearch }}
{{- $_ := set $config "job_search" . }}
{{- $_ := set $config "search_page_size" $.Values.searchPageSize }}
{{- end }}
{{- with .Values.exporter.statusMetric }}
{{- $_ := set $config "status_metric" . }}
{{- end }}
{{- if .Values.auditLog.enabled }}
{{- $_ := set $config "audit_log" (printf "%s/%s" .Values.auditLog.mountPath .Values.auditLog.fileName) }}
{{- if .Values.auditShipping.enabled }}
{{- $_ := set $config "audit_export_cursors" (list (include "ccs-exporter.shippingCursor" .)) }}
{{- end }}
{{- end }}
{{- if .Values.webConfig.existingSecret }}
{{- $_ := set $config "web_config_file" (printf "%s/%s" (include "ccs-exporter.webConfigDir" .) .Values.webConfig.configKey) }}
{{- end }}
{{- range $key, $value := .Values.exporter.extraConfig }}
{{- if eq (lower $key) "password" }}
{{- fail "exporter.extraConfig.password: the password must not be in the ConfigMap; put it in a Secret named by ccs.existingSecret" }}
{{- end }}
{{- if hasKey $config $key }}
{{- fail (printf "exporter.extraConfig.%s: the chart sets this key itself; use the chart's value for it (see the chart README)" $key) }}
{{- end }}
{{- $_ := set $config $key $value }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The shipping sidecar's cursor file, on the audit volume. */}}
{{- define "ccs-exporter.shippingCursor" -}}
{{- printf "%s/%s" .Values.auditLog.mountPath .Values.auditShipping.cursorFileName }}
{{- end }}

{{/* The shipping sidecar: the same image running `audit export --follow` on the audit log. */}}
{{- define "ccs-exporter.shippingContainer" -}}
{{- $shipping := .Values.auditShipping -}}
- name: audit-shipping
  image: {{ include "ccs-exporter.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - audit
    - export
    - {{ printf "%s/%s" .Values.auditLog.mountPath .Values.auditLog.fileName }}
    - --format
    - {{ $shipping.format }}
    - --follow
    - --cursor
    - {{ include "ccs-exporter.shippingCursor" . }}
    - --destination
    - {{ ternary "$(CCS_AUDIT_DESTINATION)" $shipping.destination (ne $shipping.destinationKey "") | quote }}
    {{- if $shipping.hecTokenKey }}
    - --hec-token-file
    - /etc/ccs-exporter/shipping/{{ $shipping.hecTokenKey }}
    {{- end }}
    {{- if $shipping.caBundleKey }}
    - --destination-ca-bundle
    - /etc/ccs-exporter/shipping/{{ $shipping.caBundleKey }}
    {{- end }}
    {{- if $shipping.clientCertKey }}
    - --destination-cert
    - /etc/ccs-exporter/shipping/{{ $shipping.clientCertKey }}
    - --destination-key
    - /etc/ccs-exporter/shipping/{{ $shipping.clientKeyKey }}
    {{- end }}
    - --log-format
    - json
  {{- if $shipping.destinationKey }}
  env:
    - name: CCS_AUDIT_DESTINATION
      valueFrom:
        secretKeyRef:
          name: {{ $shipping.existingSecret }}
          key: {{ $shipping.destinationKey }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml $shipping.resources | nindent 4 }}
  volumeMounts:
    - name: audit-log
      mountPath: {{ .Values.auditLog.mountPath }}
    {{- if $shipping.existingSecret }}
    - name: audit-shipping
      mountPath: /etc/ccs-exporter/shipping
      readOnly: true
    {{- end }}
{{- end }}

{{/* CCS's TCP port for the NetworkPolicy: networkPolicy.ccsPort, else the URL's, else the scheme's. */}}
{{- define "ccs-exporter.ccsPort" -}}
{{- if .Values.networkPolicy.ccsPort }}
{{- .Values.networkPolicy.ccsPort }}
{{- else }}
{{- $url := urlParse .Values.ccs.url }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- default (ternary "443" "80" (eq $url.scheme "https")) $port }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work together, with a message naming the value to change. */}}
{{- define "ccs-exporter.checkValues" -}}
{{- /* The values with no usable default, all named in one message so one render shows them all. */}}
{{- $missing := list }}
{{- if not .Values.ccs.url }}
{{- $missing = append $missing "ccs.url: the CCS base URL, e.g. https://ccs.corp.example:12431" }}
{{- end }}
{{- if not .Values.ccs.username }}
{{- $missing = append $missing "ccs.username: the CCS account, DOMAIN\\user (in a values file; with --set-string write the backslash twice)" }}
{{- end }}
{{- if and (not .Values.ccs.existingSecret) (not .Values.ccs.password) }}
{{- $missing = append $missing "ccs.existingSecret: no CCS password. Create a Secret holding it (kubectl create secret generic ccs-exporter-credentials --from-file=password=./ccs-password) and set ccs.existingSecret to its name (or set ccs.password)" }}
{{- end }}
{{- if $missing }}
{{- fail (printf "required values not set: %s" (join "; " $missing)) }}
{{- end }}
{{- if and .Values.ccs.caBundle.configMap .Values.ccs.caBundle.secret }}
{{- fail "ccs.caBundle: set configMap or secret, not both" }}
{{- end }}
{{- if and (or .Values.webConfig.tls .Values.webConfig.tlsSecret) (not .Values.webConfig.existingSecret) }}
{{- fail "webConfig.tls and webConfig.tlsSecret need webConfig.existingSecret (the Secret holding web-config.yml)" }}
{{- end }}
{{- if and .Values.serviceMonitor.tlsConfig.ca.secret .Values.serviceMonitor.tlsConfig.ca.configMap }}
{{- fail "serviceMonitor.tlsConfig.ca: set secret or configMap, not both" }}
{{- end }}
{{- if and .Values.auditShipping.enabled (not .Values.auditLog.enabled) }}
{{- fail "auditShipping.enabled: the sidecar ships the audit log; set auditLog.enabled too" }}
{{- end }}
{{- if and .Values.auditShipping.enabled (not .Values.auditShipping.existingSecret) (or .Values.auditShipping.destinationKey .Values.auditShipping.hecTokenKey .Values.auditShipping.caBundleKey .Values.auditShipping.clientCertKey) }}
{{- fail "auditShipping.existingSecret: destinationKey, hecTokenKey, caBundleKey and clientCertKey name keys of this Secret; set it" }}
{{- end }}
{{- if and .Values.auditShipping.enabled (ne (empty .Values.auditShipping.clientCertKey) (empty .Values.auditShipping.clientKeyKey)) }}
{{- fail "auditShipping.clientKeyKey: set clientCertKey and clientKeyKey together" }}
{{- end }}
{{- if and .Values.auditShipping.enabled (not (has .Values.auditShipping.format (list "ocsf" "ecs" "jsonl"))) }}
{{- fail "auditShipping.format: choose ocsf, ecs or jsonl" }}
{{- end }}
{{- if .Values.sharding.enabled }}
{{- if and .Values.auditLog.enabled .Values.auditLog.persistence.enabled .Values.auditLog.persistence.existingClaim }}
{{- fail "auditLog.persistence.existingClaim: with sharding.enabled every shard gets its own claim from a volumeClaimTemplate; leave existingClaim empty" }}
{{- end }}
{{- if ne .Values.service.type "ClusterIP" }}
{{- fail "service.type: with sharding.enabled the Service is headless and must be ClusterIP" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the sharded StatefulSet. */}}
{{- define "ccs-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "ccs-exporter.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "ccs-exporter.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.hostAliases }}
  hostAliases:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- tpl (toYaml .) $ | nindent 4 }}
  {{- end }}
  containers:
    - name: ccs-exporter
      image: {{ include "ccs-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - {{ include "ccs-exporter.configFile" . }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- if or .Values.sharding.enabled .Values.extraEnv }}
      env:
        {{- if .Values.sharding.enabled }}
        # The shard index is the StatefulSet pod's ordinal, read from its host name (<name>-<ordinal>).
        - name: CCS_EXPORTER_SHARD_FROM_HOSTNAME
          value: "true"
        - name: CCS_EXPORTER_TOTAL_SHARDS
          value: {{ .Values.sharding.replicas | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.exporter.port }}
          protocol: TCP
      # The health endpoints need no basic auth; with TLS the kubelet connects without checking the certificate.
      livenessProbe:
        httpGet:
          path: /healthz
          port: http-metrics
          scheme: {{ ternary "HTTPS" "HTTP" .Values.webConfig.tls }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http-metrics
          scheme: {{ ternary "HTTPS" "HTTP" .Values.webConfig.tls }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "ccs-exporter.configDir" . }}
          readOnly: true
        - name: credentials
          mountPath: {{ include "ccs-exporter.credentialsDir" . }}
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if or .Values.ccs.caBundle.configMap .Values.ccs.caBundle.secret }}
        - name: ca-bundle
          mountPath: {{ include "ccs-exporter.caDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.auditLog.enabled }}
        - name: audit-log
          mountPath: {{ .Values.auditLog.mountPath }}
        {{- end }}
        {{- if .Values.webConfig.existingSecret }}
        - name: web-config
          mountPath: {{ include "ccs-exporter.webConfigDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- if .Values.auditShipping.enabled }}
    {{- include "ccs-exporter.shippingContainer" . | nindent 4 }}
    {{- end }}
    {{- with .Values.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "ccs-exporter.fullname" . }}
    - name: credentials
      secret:
        secretName: {{ include "ccs-exporter.secretName" . }}
        # Readable by the exporter's group (fsGroup) only.
        defaultMode: 0440
        items:
          - key: {{ .Values.ccs.passwordKey }}
            path: password
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- if .Values.ccs.caBundle.configMap }}
    - name: ca-bundle
      configMap:
        name: {{ .Values.ccs.caBundle.configMap }}
        items:
          - key: {{ .Values.ccs.caBundle.key }}
            path: {{ .Values.ccs.caBundle.key }}
    {{- else if .Values.ccs.caBundle.secret }}
    - name: ca-bundle
      secret:
        secretName: {{ .Values.ccs.caBundle.secret }}
        defaultMode: 0444
        items:
          - key: {{ .Values.ccs.caBundle.key }}
            path: {{ .Values.ccs.caBundle.key }}
    {{- end }}
    {{- if .Values.auditLog.enabled }}
    {{- if not .Values.auditLog.persistence.enabled }}
    - name: audit-log
      emptyDir: {}
    {{- else if not .Values.sharding.enabled }}
    - name: audit-log
      persistentVolumeClaim:
        claimName: {{ include "ccs-exporter.auditClaimName" . }}
    {{- end }}
    {{- end }}
    {{- if .Values.webConfig.existingSecret }}
    - name: web-config
      {{- if .Values.webConfig.tlsSecret }}
      # One directory for both, so web-config.yml names the certificate files the same way either way.
      projected:
        defaultMode: 0440
        sources:
          - secret:
              name: {{ .Values.webConfig.existingSecret }}
          - secret:
              name: {{ .Values.webConfig.tlsSecret }}
      {{- else }}
      secret:
        secretName: {{ .Values.webConfig.existingSecret }}
        # Readable by the exporter's group (fsGroup) only: it holds the TLS key.
        defaultMode: 0440
      {{- end }}
    {{- end }}
    {{- if and .Values.auditShipping.enabled .Values.auditShipping.existingSecret }}
    - name: audit-shipping
      secret:
        secretName: {{ .Values.auditShipping.existingSecret }}
        # Readable by the pod's group (fsGroup) only: it holds the HEC token.
        defaultMode: 0440
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  {{- $constraints := list }}
  {{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "ccs-exporter.selectorLabels" $ | fromYaml)) }}
  {{- end }}
  {{- $constraints = append $constraints $constraint }}
  {{- end }}
  topologySpreadConstraints:
    {{- toYaml $constraints | nindent 4 }}
  {{- end }}
{{- end }}

{{/* What Prometheus needs to scrape the exporter (a ServiceMonitor endpoint or a PodMonitor one): path,
interval, relabelings, TLS and basic auth, from serviceMonitor's settings. */}}
{{- define "ccs-exporter.scrapeEndpoint" -}}
path: /metrics
interval: {{ .Values.serviceMonitor.interval }}
scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
{{- with .Values.serviceMonitor.relabelings }}
relabelings:
  {{- toYaml . | nindent 8 }}
{{- end }}
{{- with .Values.serviceMonitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 8 }}
{{- end }}
{{- if .Values.webConfig.tls }}
{{- with .Values.serviceMonitor.tlsConfig }}
scheme: https
tlsConfig:
  serverName: {{ default (printf "%s.%s.svc" (include "ccs-exporter.fullname" $) $.Release.Namespace) .serverName | quote }}
  insecureSkipVerify: {{ .insecureSkipVerify }}
  {{- if .ca.secret }}
  ca:
    secret:
      name: {{ .ca.secret }}
      key: {{ .ca.key }}
  {{- else if .ca.configMap }}
  ca:
    configMap:
      name: {{ .ca.configMap }}
      key: {{ .ca.key }}
  {{- end }}
  {{- with .clientCertSecret }}
  cert:
    secret:
      name: {{ . }}
      key: tls.crt
  keySecret:
    name: {{ . }}
    key: tls.key
  {{- end }}
{{- end }}
{{- else }}
scheme: http
{{- end }}
{{- with .Values.serviceMonitor.basicAuth }}
{{- if .secretName }}
basicAuth:
  username:
    name: {{ .secretName }}
    key: {{ .usernameKey }}
  password:
    name: {{ .secretName }}
    key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- end }}
