{{/* Names and labels shared by every template. */}}

{{- define "contactsync.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's object names: the chart name, or the release name when it already contains it. */}}
{{- define "contactsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "contactsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "contactsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "contactsync.labels" -}}
{{ include "contactsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: contactsync
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* repository:tag, or a repository given with its digest (NAME@sha256:...) as it is. */}}
{{- define "contactsync.image" -}}
{{- if contains "@" .Values.image.repository -}}
{{- .Values.image.repository -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Where the operator's files from Secrets are mounted (read-only). */}}
{{- define "contactsync.prefectKeyDir" -}}/etc/contactsync/prefect{{- end -}}
{{- define "contactsync.metricsTlsDir" -}}/etc/contactsync/metrics-tls{{- end -}}
{{- define "contactsync.metricsClientCaDir" -}}/etc/contactsync/metrics-client-ca{{- end -}}

{{- define "contactsync.metricsScheme" -}}
{{- if .Values.metrics.tls.secretName -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The NetworkPolicy egress rules every pod of ContactSync needs: DNS and Prefect. */}}
{{- define "contactsync.egressDnsAndPrefect" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
- to:
    {{- toYaml .Values.networkPolicy.prefect.to | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.prefect.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}

{{- define "contactsync.egressApiServer" -}}
- to:
    {{- range .Values.networkPolicy.apiServer.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}
