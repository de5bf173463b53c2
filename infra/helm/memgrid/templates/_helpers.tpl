{{/*
Names, labels, images, and the settings each service gets.
Every environment variable set here must be a field of shared/settings.py
(tests/helm/test_chart_render.py checks it against the Settings class).
*/}}

{{- define "memgrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "memgrid.fullname" -}}
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

{{/* Labels of every object; "component" is the service (or server) it belongs to. */}}
{{- define "memgrid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: memgrid
{{ include "memgrid.selectorLabels" . }}
{{- end -}}

{{- define "memgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memgrid.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* "<repository>-<target>:<tag>"; a service's imageTag pins it during a staged upgrade. */}}
{{- define "memgrid.image" -}}
{{- $tag := .tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .target $tag -}}
{{- end -}}

{{- define "memgrid.secretName" -}}
{{- default (printf "%s-secrets" (include "memgrid.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "memgrid.serviceUrl" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "http://%s-%s:%v" (include "memgrid.fullname" .root) .name $svc.port -}}
{{- end -}}

{{/* Where the servers are: bundled in the release, or external by values. */}}
{{- define "memgrid.kafkaUrl" -}}
{{- if .Values.bundled.kafka.enabled -}}
{{- printf "kafka://%s-kafka:9092" (include "memgrid.fullname" .) -}}
{{- else -}}
{{- required "kafka.url is required when bundled.kafka.enabled is false" .Values.kafka.url -}}
{{- end -}}
{{- end -}}

{{- define "memgrid.neo4jUrl" -}}
{{- if .Values.bundled.neo4j.enabled -}}
{{- printf "bolt://%s-neo4j:7687" (include "memgrid.fullname" .) -}}
{{- else -}}
{{- required "neo4j.url is required when bundled.neo4j.enabled is false" .Values.neo4j.url -}}
{{- end -}}
{{- end -}}

{{- define "memgrid.s3Endpoint" -}}
{{- if .Values.bundled.minio.enabled -}}
{{- printf "%s-minio:9000" (include "memgrid.fullname" .) -}}
{{- else -}}
{{- required "s3.endpoint is required when bundled.minio.enabled is false" .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/*
Non-secret settings of one service (its ConfigMap), as "NAME: value" lines.
Order: chart-computed values, then settings.extra, then services.<name>.env
(later wins).
*/}}
{{- define "memgrid.config" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $v := $root.Values -}}
{{- $s := $v.settings -}}
{{- $cfg := dict
  "MEMGRID_MODE" "distributed"
  "MEMGRID_HOST" "0.0.0.0"
  "MEMGRID_DATA_DIR" "/var/lib/memgrid"
  "MEMGRID_CACHE_DIR" "/var/cache/memgrid"
  "MEMGRID_LOG_LEVEL" $s.logLevel
  "MEMGRID_TELEMETRY__LOG_FORMAT" $s.logFormat
  "MEMGRID_TELEMETRY__EXPORTER" $s.telemetry.exporter
  "MEMGRID_TELEMETRY__SAMPLE_RATIO" (toString $s.telemetry.sampleRatio)
  "MEMGRID_TELEMETRY__SERVICE_NAME" (printf "memgrid-%s" $name)
  "MEMGRID_BUS__URL" (include "memgrid.kafkaUrl" $root)
  "MEMGRID_BUS__REPLICATION_FACTOR" $v.kafka.replicationFactor
-}}
{{- if $s.telemetry.otlpEndpoint -}}
{{- $_ := set $cfg "MEMGRID_TELEMETRY__OTLP_ENDPOINT" $s.telemetry.otlpEndpoint -}}
{{- end -}}
{{- $graph := dict
  "MEMGRID_GRAPH__URL" (include "memgrid.neo4jUrl" $root)
  "MEMGRID_GRAPH__USER" $v.neo4j.user
  "MEMGRID_GRAPH__DATABASE" $v.neo4j.database
-}}
{{- $blob := dict
  "MEMGRID_BLOB__URL" (printf "s3://%s" $v.s3.bucket)
  "MEMGRID_BLOB__ENDPOINT" (include "memgrid.s3Endpoint" $root)
  "MEMGRID_BLOB__SECURE" $v.s3.secure
-}}
{{- if $v.s3.region -}}
{{- $_ := set $blob "MEMGRID_BLOB__REGION" $v.s3.region -}}
{{- end -}}
{{- $model := dict
  "MEMGRID_INFERENCE__BACKEND" $s.inference.backend
  "MEMGRID_INFERENCE__MODEL" $s.inference.model
  "MEMGRID_INFERENCE__DTYPE" $s.inference.dtype
-}}
{{- if $s.inference.openaiBaseUrl -}}
{{- $_ := set $model "MEMGRID_INFERENCE__OPENAI_BASE_URL" $s.inference.openaiBaseUrl -}}
{{- end -}}
{{- if $s.inference.openaiModel -}}
{{- $_ := set $model "MEMGRID_INFERENCE__OPENAI_MODEL" $s.inference.openaiModel -}}
{{- end -}}
{{- $vaultUrl := include "memgrid.serviceUrl" (dict "root" $root "name" "vault") -}}
{{- $rayClient := printf "ray://%s-inference:10001" (include "memgrid.fullname" $root) -}}
{{- if eq $name "vault" -}}
{{- $cfg = merge $cfg $graph (dict "MEMGRID_PORT" $v.services.vault.port "MEMGRID_EMBEDDER__BACKEND" $s.embedderBackend) -}}
{{- else if eq $name "interface" -}}
{{- $_ := set $cfg "MEMGRID_PORT" $v.services.interface.port -}}
{{- $_ := set $cfg "MEMGRID_VAULT__URL" $vaultUrl -}}
{{- $_ := set $cfg "MEMGRID_SCHEDULER__URL" (include "memgrid.serviceUrl" (dict "root" $root "name" "scheduler")) -}}
{{- $_ := set $cfg "MEMGRID_GOVERNANCE__URL" (include "memgrid.serviceUrl" (dict "root" $root "name" "governance")) -}}
{{- $_ := set $cfg "MEMGRID_INFERENCE__SERVE__URL" (include "memgrid.serviceUrl" (dict "root" $root "name" "inference")) -}}
{{- else if eq $name "scheduler" -}}
{{- $_ := set $cfg "MEMGRID_SCHEDULER__WEB_PORT" $v.services.scheduler.port -}}
{{- $_ := set $cfg "MEMGRID_VAULT__URL" $vaultUrl -}}
{{- else if eq $name "governance" -}}
{{- $_ := set $cfg "MEMGRID_GOVERNANCE__WEB_PORT" $v.services.governance.port -}}
{{- else if eq $name "trainer" -}}
{{- $cfg = merge $cfg $blob $model -}}
{{- $_ := set $cfg "MEMGRID_TRAINER__WEB_PORT" $v.services.trainer.port -}}
{{- $_ := set $cfg "MEMGRID_VAULT__URL" $vaultUrl -}}
{{- /* One handler call trains (minutes to hours); Kafka must not reassign meanwhile. */ -}}
{{- $_ := set $cfg "MEMGRID_BUS__MAX_POLL_INTERVAL_S" 7200 -}}
{{- if $v.ray.enabled -}}
{{- $_ := set $cfg "MEMGRID_TRAINER__RAY_ADDRESS" $rayClient -}}
{{- end -}}
{{- else if eq $name "inference" -}}
{{- $cfg = merge $cfg $blob $model -}}
{{- $_ := set $cfg "MEMGRID_INFERENCE__SERVE__PORT" $v.services.inference.port -}}
{{- $_ := set $cfg "MEMGRID_VAULT__URL" $vaultUrl -}}
{{- if $v.ray.enabled -}}
{{- /* The pod is the Ray head: the Serve app joins the cluster started there. */ -}}
{{- $_ := set $cfg "MEMGRID_INFERENCE__SERVE__RAY_ADDRESS" "auto" -}}
{{- end -}}
{{- else if eq $name "setup" -}}
{{- $cfg = merge $cfg $graph $blob -}}
{{- end -}}
{{- $cfg = mergeOverwrite $cfg $s.extra -}}
{{- $own := index $v.services $name | default dict -}}
{{- $cfg = mergeOverwrite $cfg ($own.env | default dict) -}}
{{- range $key := keys $cfg | sortAlpha }}
{{ $key }}: {{ index $cfg $key | toString | quote }}
{{- end -}}
{{- end -}}

{{/*
Secret settings of one service: env entries reading the Secret. Each service
gets only the secrets it uses.
*/}}
{{- define "memgrid.secretEnv" -}}
{{- $secret := include "memgrid.secretName" .root -}}
{{- $refs := dict
  "interface" (list
    (list "MEMGRID_ADMIN_KEY" "admin-key" false)
    (list "MEMGRID_VAULT__SERVICE_TOKEN" "vault-service-token" false)
    (list "MEMGRID_GOVERNANCE__SERVICE_TOKEN" "governance-service-token" false)
    (list "MEMGRID_INFERENCE__SERVE__SERVICE_TOKEN" "inference-service-token" false)
    (list "MEMGRID_EXTRACTOR__API_KEY" "openai-api-key" true))
  "vault" (list
    (list "MEMGRID_VAULT__SERVICE_TOKEN" "vault-service-token" false)
    (list "MEMGRID_GRAPH__PASSWORD" "neo4j-password" false))
  "scheduler" (list
    (list "MEMGRID_VAULT__SERVICE_TOKEN" "vault-service-token" false))
  "governance" (list
    (list "MEMGRID_GOVERNANCE__SERVICE_TOKEN" "governance-service-token" false))
  "trainer" (list
    (list "MEMGRID_VAULT__SERVICE_TOKEN" "vault-service-token" false)
    (list "MEMGRID_BLOB__ACCESS_KEY" "s3-access-key" false)
    (list "MEMGRID_BLOB__SECRET_KEY" "s3-secret-key" false)
    (list "MEMGRID_TRAINER__OPENAI_API_KEY" "openai-api-key" true))
  "inference" (list
    (list "MEMGRID_VAULT__SERVICE_TOKEN" "vault-service-token" false)
    (list "MEMGRID_INFERENCE__SERVE__SERVICE_TOKEN" "inference-service-token" false)
    (list "MEMGRID_BLOB__ACCESS_KEY" "s3-access-key" false)
    (list "MEMGRID_BLOB__SECRET_KEY" "s3-secret-key" false)
    (list "MEMGRID_INFERENCE__OPENAI_API_KEY" "openai-api-key" true))
  "setup" (list
    (list "MEMGRID_GRAPH__PASSWORD" "neo4j-password" false)
    (list "MEMGRID_BLOB__ACCESS_KEY" "s3-access-key" false)
    (list "MEMGRID_BLOB__SECRET_KEY" "s3-secret-key" false))
-}}
{{- range $ref := index $refs .name }}
- name: {{ index $ref 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ index $ref 1 }}
      {{- if index $ref 2 }}
      optional: true
      {{- end }}
{{- end -}}
{{- end -}}

{{/* Volumes every memgrid container writes to (the root filesystem is read-only). */}}
{{- define "memgrid.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- end -}}

{{- define "memgrid.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/memgrid
- name: cache
  mountPath: /var/cache/memgrid
- name: data
  mountPath: /var/lib/memgrid
{{- end -}}

{{- define "memgrid.metricsAnnotations" -}}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}
