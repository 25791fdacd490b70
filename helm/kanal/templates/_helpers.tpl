{{/* Name of the chart, or nameOverride. */}}
{{- define "kanal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects (at most 52 characters, leaving room for suffixes). */}}
{{- define "kanal.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kanal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods. */}}
{{- define "kanal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kanal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "kanal.labels" -}}
helm.sh/chart: {{ include "kanal.chart" . }}
app.kubernetes.io/name: {{ include "kanal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kanal
{{- end -}}

{{- define "kanal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kanal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "kanal.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* true when the operator watches every namespace. */}}
{{- define "kanal.clusterWide" -}}
{{- if empty .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Rules the operator needs in every namespace it reconciles, from what kanal_operator does:
kopf watches Connectors, ConnectClusters, worker Leases and worker Deployments
(handlers.py) and patches their metadata (finalizer, progress annotations); the
controllers server-side apply the children of each ConnectCluster (builders.children:
create + patch), merge-patch the status subresource, delete stale worker Leases
(kube.py) and post Events.
The workers' Role (builders.role) grants connectors, leases and named Secrets; the API
server lets the operator create that Role only because the operator holds the same
permissions itself (no `escalate` or `bind` verb is granted): that, and nothing the
operator calls, is why it may create/delete Connectors and read Secrets.
*/}}
{{- define "kanal.operatorRules" -}}
- apiGroups: ["kanal.dev"]
  resources: ["connectclusters"]
  verbs: ["get", "list", "watch", "patch"]
# create/update/delete: only because the workers' Role grants them (REST API writes)
- apiGroups: ["kanal.dev"]
  resources: ["connectors"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["kanal.dev"]
  resources: ["connectclusters/status", "connectors/status"]
  verbs: ["get", "patch"]
# children carry ownerReferences with blockOwnerDeletion (needs this where the
# OwnerReferencesPermissionEnforcement admission plugin is on)
- apiGroups: ["kanal.dev"]
  resources: ["connectclusters/finalizers"]
  verbs: ["update"]
# the children of a ConnectCluster, server-side applied
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# read only: a worker pod whose image cannot be pulled, or that crash-loops, is the
# reason shown in the ConnectCluster's Ready condition
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# worker heartbeats: watched, stale ones deleted; create/update/patch because the
# workers' Role grants them
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# read only, and only because the workers' Role names the Secrets their
# configurations reference (${secret:name:key}); the operator never reads one
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
