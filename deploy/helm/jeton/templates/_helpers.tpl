{{/* Names, labels and the rendered jetond configuration. */}}

{{- define "jeton.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jeton.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "jeton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jeton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jeton.labels" -}}
{{ include "jeton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "jeton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jeton.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "jeton.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "jeton.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "jeton.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "jeton.secretIDSecret" -}}
{{- if .Values.vault.approle.secretIDSecret.name -}}
{{- .Values.vault.approle.secretIDSecret.name -}}
{{- else -}}
{{- printf "%s-approle" (include "jeton.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the pod. */}}
{{- define "jeton.paths" -}}
config: /etc/jeton/jetond.yaml
policy: /etc/jeton/policy.yaml
tls: /etc/jeton/tls
redisTLS: /etc/jeton/redis-tls
tracingTLS: /etc/jeton/otel-tls
vaultCA: /etc/jeton/vault-ca
secretID: /run/secrets/jeton
state: /var/lib/jeton
{{- end -}}

{{/* checkRequired fails the render, naming every REQUIRED value unset. */}}
{{- define "jeton.checkRequired" -}}
{{- $missing := list -}}
{{- if not .Values.listeners.trusted.allowedCIDRs }}{{ $missing = append $missing "listeners.trusted.allowedCIDRs" }}{{ end -}}
{{- if not .Values.redis.addrs }}{{ $missing = append $missing "redis.addrs" }}{{ end -}}
{{- if not .Values.vault.addr }}{{ $missing = append $missing "vault.addr" }}{{ end -}}
{{- if not .Values.vault.approle.roleID }}{{ $missing = append $missing "vault.approle.roleID" }}{{ end -}}
{{- if and (not .Values.vault.approle.secretIDSecret.name) (not .Values.vault.approle.secretID) }}{{ $missing = append $missing "vault.approle.secretIDSecret.name or vault.approle.secretID" }}{{ end -}}
{{- if not .Values.policy }}{{ $missing = append $missing "policy" }}{{ end -}}
{{- if not .Values.tls.existingSecret -}}
{{- range $k := list "serverCert" "serverKey" "sponsorCA" "ttpCA" -}}
{{- if not (index $.Values.tls $k) }}{{ $missing = append $missing (printf "tls.%s (or tls.existingSecret)" $k) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "jeton: set %s" (join ", " $missing)) -}}
{{- end -}}
{{- if and (not .Values.tls.existingSecret) (eq .Values.tls.sponsorCA .Values.tls.ttpCA) -}}
{{- fail "jeton: tls.ttpCA must differ from tls.sponsorCA: sponsor certificates must not pass the trusted handshake" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $sel := .Values.networkPolicy.trusted.namespaceSelector | default dict -}}
{{- if not (or $sel.matchLabels $sel.matchExpressions) -}}
{{- fail "jeton: networkPolicy.trusted.namespaceSelector must select the TTP namespace; an empty selector admits every namespace" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.vault.approle.secretIDSecret.name .Values.vault.approle.secretID -}}
{{- fail "jeton: give vault.approle.secretIDSecret.name or vault.approle.secretID, not both" -}}
{{- end -}}
{{- end -}}

{{/* The jetond configuration, as jetond reads it (cmd/jetond/config.go). */}}
{{- define "jeton.config" -}}
{{- $p := include "jeton.paths" . | fromYaml -}}
{{- $v := .Values -}}
{{- $cfg := dict
  "public" (dict
    "addr" (printf "0.0.0.0:%d" (int $v.listeners.public.port))
    "tls" (dict "cert" (printf "%s/server.pem" $p.tls) "key" (printf "%s/server-key.pem" $p.tls) "client_ca" (printf "%s/sponsor-ca.pem" $p.tls))
    "allowed_cidrs" ($v.listeners.public.allowedCIDRs | default list))
  "trusted" (dict
    "addr" (printf "0.0.0.0:%d" (int $v.listeners.trusted.port))
    "tls" (dict "cert" (printf "%s/server.pem" $p.tls) "key" (printf "%s/server-key.pem" $p.tls) "client_ca" (printf "%s/ttp-ca.pem" $p.tls))
    "allowed_cidrs" $v.listeners.trusted.allowedCIDRs)
  "max_batch" (int $v.maxBatch)
  "vault" (dict
    "mount" $v.vault.mount
    "key" $v.vault.key
    "approle" (dict "mount" $v.vault.approle.mount "role_id" $v.vault.approle.roleID "secret_id_file" (printf "%s/%s" $p.secretID $v.vault.approle.secretIDSecret.key)))
  "policy_file" $p.policy
  "audit" (dict "dir" (printf "%s/audit" $p.state) "max_file_bytes" (int64 $v.audit.maxFileBytes))
  "log" (dict "level" $v.log.level "format" $v.log.format)
  "metrics" (dict "addr" (printf "0.0.0.0:%d" (int $v.metrics.port)))
  "health" (dict "interval" $v.health.interval)
  "rotation" (dict "every" $v.rotation.every "check" $v.rotation.check)
  "key_refresh" $v.keyRefresh
-}}
{{- $redis := dict "addrs" $v.redis.addrs "timeout" $v.redis.timeout -}}
{{- if $v.redis.cluster }}{{ $_ := set $redis "cluster" true }}{{ end -}}
{{- if $v.redis.masterName }}{{ $_ := set $redis "master_name" $v.redis.masterName }}{{ end -}}
{{- if $v.redis.username }}{{ $_ := set $redis "username" $v.redis.username }}{{ end -}}
{{- if $v.redis.db }}{{ $_ := set $redis "db" (int $v.redis.db) }}{{ end -}}
{{- if $v.redis.tls.existingSecret -}}
{{- $rt := dict "ca" (printf "%s/ca.pem" $p.redisTLS) -}}
{{- if $v.redis.tls.clientCert -}}
{{- $_ := set $rt "cert" (printf "%s/client.pem" $p.redisTLS) -}}
{{- $_ := set $rt "key" (printf "%s/client-key.pem" $p.redisTLS) -}}
{{- end -}}
{{- if $v.redis.tls.serverName }}{{ $_ := set $rt "server_name" $v.redis.tls.serverName }}{{ end -}}
{{- $_ := set $redis "tls" $rt -}}
{{- end -}}
{{- $_ := set $cfg "redis" $redis -}}
{{- if $v.classes }}{{ $_ := set $cfg "classes" $v.classes }}{{ end -}}
{{- if $v.tracing.endpoint -}}
{{- $tr := dict "endpoint" $v.tracing.endpoint "protocol" $v.tracing.protocol "sample_ratio" $v.tracing.sampleRatio -}}
{{- if $v.tracing.insecure }}{{ $_ := set $tr "insecure" true }}{{ end -}}
{{- if $v.tracing.caSecret.name }}{{ $_ := set $tr "tls" (dict "ca" (printf "%s/%s" $p.tracingTLS $v.tracing.caSecret.key)) }}{{ end -}}
{{- $_ := set $cfg "tracing" $tr -}}
{{- end -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy $v.extraConfig) -}}
{{- toYaml $cfg -}}
{{- end -}}
