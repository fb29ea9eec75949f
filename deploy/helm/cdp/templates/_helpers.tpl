{{/*
Shared helpers. Per-service helpers take a context dict built by each template:
  (dict "root" $ "name" <service name> "svc" <services.<name> values>)
*/}}

{{- define "cdp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix; kept short so "<fullname>-channel-gateway" fits 63 chars. */}}
{{- define "cdp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cdp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object of the release (no component). */}}
{{- define "cdp.commonLabels" -}}
helm.sh/chart: {{ include "cdp.chart" . }}
app.kubernetes.io/name: {{ include "cdp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: cdp
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cdp.componentName" -}}
{{- printf "%s-%s" (include "cdp.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "cdp.labels" -}}
{{ include "cdp.commonLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* SERVICE part of CDP_<SERVICE>_...: "channel-gateway" -> "CHANNEL_GATEWAY". */}}
{{- define "cdp.envKey" -}}
{{- .name | upper | replace "-" "_" -}}
{{- end -}}

{{- define "cdp.imageTag" -}}
{{- $img := .svc.image | default dict -}}
{{- $img.tag | default .root.Values.default.image.tag | default .root.Chart.AppVersion -}}
{{- end -}}

{{- define "cdp.image" -}}
{{- $img := .svc.image | default dict -}}
{{- $repo := $img.repository | default (printf "%s/%s" .root.Values.default.image.repository .name) -}}
{{- printf "%s:%s" $repo (include "cdp.imageTag" .) -}}
{{- end -}}

{{- define "cdp.imagePullPolicy" -}}
{{- $img := .svc.image | default dict -}}
{{- $img.pullPolicy | default .root.Values.default.image.pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{/* ---- secrets and backing services ---------------------------------------- */}}

{{- define "cdp.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "cdp.fullname" .)) -}}
{{- end -}}

{{- define "cdp.databaseSecretName" -}}
{{- .Values.externalDatabase.existingSecret | default (printf "%s-database" (include "cdp.fullname" .)) -}}
{{- end -}}

{{/* Names the dev subcharts give their objects (same rule as their own helpers). */}}
{{- define "cdp.natsFullname" -}}
{{- $nats := .Values.nats | default dict -}}
{{- $nats.fullnameOverride | default (printf "%s-nats" .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdp.postgresqlFullname" -}}
{{- $pg := .Values.postgresql | default dict -}}
{{- $pg.fullnameOverride | default (printf "%s-postgresql" .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fails the render on values the schema cannot express. Argument: root. */}}
{{- define "cdp.validate" -}}
{{- if not .Values.nats.enabled -}}
{{- if not (or .Values.externalNats.url .Values.externalNats.existingSecret) -}}
{{- fail "nats.enabled is false: set externalNats.url or externalNats.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if not .Values.postgresql.enabled -}}
{{- if not (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "postgresql.enabled is false: set externalDatabase.url or externalDatabase.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- range concat ($.Values.default.env | default list) ($svc.env | default list) -}}
{{- if eq .name "CDP_AUTH_SECRET" -}}
{{- fail (printf "services.%s: CDP_AUTH_SECRET may not be set in env; it always comes from a Secret (auth.existingSecret or the chart-created one)" $name) -}}
{{- end -}}
{{- end -}}
{{- $as := $svc.autoscaling | default dict -}}
{{- if and $as.enabled (gt (int ($as.minReplicas | default 1)) (int ($as.maxReplicas | default 1))) -}}
{{- fail (printf "services.%s.autoscaling: minReplicas is greater than maxReplicas" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment the chart computes for a service (YAML list). */}}
{{- define "cdp.computedEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: OTEL_SERVICE_NAME
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: "metadata.labels['app.kubernetes.io/component']"
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=cdp,service.version=%s,k8s.namespace.name=%s" (include "cdp.imageTag" .) $root.Release.Namespace | quote }}
{{- if $v.default.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.default.otlpEndpoint | quote }}
{{- end }}
- name: CDP_LOG_LEVEL
  value: {{ $v.default.logLevel | default "info" | quote }}
- name: {{ printf "CDP_%s_GRPC_PORT" (include "cdp.envKey" .) }}
  value: {{ .svc.port | quote }}
{{- if .svc.httpPort }}
- name: CDP_HTTP_PORT
  value: {{ .svc.httpPort | quote }}
{{- end }}
{{- if $v.nats.enabled }}
- name: CDP_NATS_URL
  value: {{ printf "nats://%s:%v" (include "cdp.natsFullname" $root) (($v.nats.service | default dict).port | default 4222) | quote }}
{{- else if $v.externalNats.existingSecret }}
- name: CDP_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalNats.existingSecret }}
      key: {{ $v.externalNats.existingSecretKey | default "nats-url" }}
{{- else }}
- name: CDP_NATS_URL
  value: {{ $v.externalNats.url | quote }}
{{- end }}
{{- if $v.postgresql.enabled }}
{{- $pg := $v.postgresql }}
{{- $pgAuth := $pg.auth | default dict }}
- name: CDP_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pgAuth.existingSecret | default (include "cdp.postgresqlFullname" $root) }}
      key: {{ $pgAuth.secretKey | default "password" }}
- name: CDP_DATABASE_URL
  value: {{ printf "postgresql://%s:$(CDP_DATABASE_PASSWORD)@%s:%v/postgres" ($pgAuth.username | default "cdp") (include "cdp.postgresqlFullname" $root) (($pg.service | default dict).port | default 5432) | quote }}
{{- else }}
- name: CDP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cdp.databaseSecretName" $root }}
      key: {{ $v.externalDatabase.existingSecretKey | default "database-url" }}
{{- end }}
- name: CDP_AUTH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "cdp.authSecretName" $root }}
      key: {{ $v.auth.secretKey | default "auth-secret" }}
{{- end -}}

{{/*
The container env: computed, then default.env, then the service's env. A later entry
with the same name replaces an earlier one in place (so $(VAR) references keep their order).
*/}}
{{- define "cdp.env" -}}
{{- $all := concat (include "cdp.computedEnv" . | fromYamlArray) (.root.Values.default.env | default list) (.svc.env | default list) -}}
{{- $byName := dict -}}
{{- $order := list -}}
{{- range $all -}}
{{- if not (hasKey $byName .name) -}}
{{- $order = append $order .name -}}
{{- end -}}
{{- $_ := set $byName .name . -}}
{{- end -}}
{{- range $order }}
- {{ toYaml (get $byName .) | nindent 2 | trim }}
{{- end -}}
{{- end -}}

{{/* Scheduling key: the service's value when set, else default.schedulingRules. */}}
{{- define "cdp.scheduling" -}}
{{- $d := .root.Values.default.schedulingRules | default dict -}}
{{- $s := .svc.schedulingRules | default dict -}}
{{- $out := dict -}}
{{- range $k := list "nodeSelector" "affinity" "tolerations" "topologySpreadConstraints" -}}
{{- $val := hasKey $s $k | ternary (get $s $k) (get $d $k) -}}
{{- if $val -}}
{{- $_ := set $out $k $val -}}
{{- end -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}
