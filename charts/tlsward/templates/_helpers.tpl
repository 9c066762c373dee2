{{/*
Chart name, at most 63 characters.
*/}}
{{- define "tlsward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name every resource name starts with: fullnameOverride, else the release
name when it already contains the chart name (release "tlsward" gives
"tlsward", the names in webhooks/*.yaml), else <release>-<chart>. Cut to 40
characters so that "<fullname>-webhook-tls" and the other derived names stay
valid DNS labels.
*/}}
{{- define "tlsward.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tlsward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource: commonLabels, then the chart's own (which win).
Call with (dict "ctx" $ "component" "webhook"); component may be empty.
*/}}
{{- define "tlsward.labels" -}}
{{- $own := include "tlsward.selectorLabels" . | fromYaml }}
{{- $_ := set $own "helm.sh/chart" (include "tlsward.chart" .ctx) }}
{{- $_ := set $own "app.kubernetes.io/version" .ctx.Chart.AppVersion }}
{{- $_ := set $own "app.kubernetes.io/managed-by" .ctx.Release.Service }}
{{- $_ := set $own "app.kubernetes.io/part-of" "tlsward" }}
{{- toYaml (merge $own (deepCopy .ctx.Values.commonLabels)) }}
{{- end }}

{{/*
Labels of a component's pods: the resource labels plus podLabels; the
selector labels always win, so podLabels cannot detach a pod from its
workload. Call with (dict "ctx" $ "component" "webhook" "podLabels" map).
*/}}
{{- define "tlsward.podLabels" -}}
{{- $selector := include "tlsward.selectorLabels" . | fromYaml }}
{{- $labels := include "tlsward.labels" . | fromYaml }}
{{- toYaml (merge $selector (deepCopy (.podLabels | default dict)) $labels) }}
{{- end }}

{{/*
Selector labels of a component. Call with (dict "ctx" $ "component" "webhook").
*/}}
{{- define "tlsward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tlsward.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Names derived from the full name. */}}
{{- define "tlsward.webhook.name" -}}{{ include "tlsward.fullname" . }}-webhook{{- end }}
{{- define "tlsward.webhook.tlsSecret" -}}{{ include "tlsward.fullname" . }}-webhook-tls{{- end }}
{{- define "tlsward.webhook.issuer" -}}{{ include "tlsward.fullname" . }}-webhook-selfsigned{{- end }}
{{- define "tlsward.policy.name" -}}{{ include "tlsward.fullname" . }}-policy{{- end }}
{{- define "tlsward.operator.name" -}}{{ include "tlsward.fullname" . }}-operator{{- end }}
{{- define "tlsward.proxy.name" -}}{{ include "tlsward.fullname" . }}-proxy{{- end }}
{{- define "tlsward.proxy.metricsName" -}}{{ include "tlsward.fullname" . }}-proxy-metrics{{- end }}

{{- define "tlsward.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Namespaces the API server never sends to the webhooks: kube-system, the
release namespace (so a broken webhook can never lock the cluster, or
itself, out) and webhook.excludedNamespaces. A JSON list.
*/}}
{{- define "tlsward.webhook.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/*
The restricted Pod Security Standard, pod level.
*/}}
{{- define "tlsward.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The restricted Pod Security Standard, container level.
*/}}
{{- define "tlsward.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
Liveness and readiness probes on the admin listener (port name "admin").
*/}}
{{- define "tlsward.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/*
Spread a component's replicas over nodes when the scheduler can. Call with
(dict "ctx" $ "component" "webhook").
*/}}
{{- define "tlsward.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tlsward.selectorLabels" . | nindent 8 }}
{{- end }}

{{/*
The scheduling values of a component (nodeSelector, tolerations, affinity,
priorityClassName) and the image pull secrets. Call with the component's
values.
*/}}
{{- define "tlsward.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{- define "tlsward.logArgs" -}}
- --log-format
- {{ .Values.logging.format }}
- --log-level
- {{ .Values.logging.level | quote }}
{{- end }}
