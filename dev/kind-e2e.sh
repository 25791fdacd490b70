#!/usr/bin/env bash
# dev/kind-e2e.sh: Kanal end to end on kind, for machines with a Docker engine.
#
#   dev/kind-e2e.sh [up]   build the image (`make image`), create (or reuse) the kind
#                          cluster, load the image's archive, install the chart, start
#                          Kafka and Azurite in the cluster, apply examples/kubernetes/,
#                          wait until every ConnectCluster and Connector is Ready
#   dev/kind-e2e.sh down   delete the kind cluster
#
# Environment:
#   KANAL_KIND_CLUSTER   kind cluster name (default kanal)
#   KANAL_NAMESPACE      namespace of the example pipeline (default telemetry)
#   KANAL_WAIT           how long to wait for readiness (default 300s)
#   KIND, HELM, KUBECTL  tools to use; by default kind and helm from dev/tools.sh
#                        (built into $KANAL_CACHE/bin from the Go module proxy) and
#                        kubectl from PATH, else the one dev/stack builds.
#
# The example pipeline (examples/kubernetes/) expects Kafka at kafka:9092, Azurite at
# http://azurite:10000/devstoreaccount1 and the Secret azure-credentials (key
# account-key) in its namespace; this script provides all three.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${KANAL_CACHE:=$HOME/.cache/kanal}"
CLUSTER=${KANAL_KIND_CLUSTER:-kanal}
NAMESPACE=${KANAL_NAMESPACE:-telemetry}
WAIT=${KANAL_WAIT:-300s}
# Azurite's public, well-known development account key
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

say() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

tools() {
  command -v docker >/dev/null || die "needs the docker client and a Docker engine"
  docker info >/dev/null 2>&1 || die "needs a Docker engine; 'docker info' failed"
  KIND=${KIND:-$(command -v kind || "$ROOT/dev/tools.sh" path kind)}
  HELM=${HELM:-$("$ROOT/dev/tools.sh" path helm)}
  if [[ -z ${KUBECTL:-} ]]; then
    KUBECTL=$(command -v kubectl || true)
    [[ -n $KUBECTL ]] || KUBECTL="$KANAL_CACHE/k8s/bin/kubectl"
  fi
  [[ -x $KUBECTL ]] || die "needs kubectl (on PATH, or run 'dev/stack install k8s')"
}

kctl() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }

services() {
  # Kafka (KRaft, one node) and Azurite for the example pipeline
  kctl apply -n "$NAMESPACE" -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: kafka, labels: {app: kafka}}
spec:
  replicas: 1
  selector: {matchLabels: {app: kafka}}
  template:
    metadata: {labels: {app: kafka}}
    spec:
      containers:
        - name: kafka
          image: apache/kafka:4.3.1
          ports: [{containerPort: 9092}]
          env:
            - {name: KAFKA_NODE_ID, value: "1"}
            - {name: KAFKA_PROCESS_ROLES, value: "broker,controller"}
            - {name: KAFKA_LISTENERS, value: "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093"}
            - {name: KAFKA_ADVERTISED_LISTENERS, value: "PLAINTEXT://kafka:9092"}
            - {name: KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, value: "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"}
            - {name: KAFKA_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}
            - {name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@localhost:9093"}
            - {name: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, value: "1"}
            - {name: KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, value: "1"}
            - {name: KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, value: "1"}
            - {name: KAFKA_NUM_PARTITIONS, value: "3"}
          readinessProbe:
            tcpSocket: {port: 9092}
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata: {name: kafka}
spec:
  selector: {app: kafka}
  ports: [{name: kafka, port: 9092}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: azurite, labels: {app: azurite}}
spec:
  replicas: 1
  selector: {matchLabels: {app: azurite}}
  template:
    metadata: {labels: {app: azurite}}
    spec:
      containers:
        - name: azurite
          image: mcr.microsoft.com/azure-storage/azurite:3.35.0
          command: [azurite-blob, --blobHost, 0.0.0.0, --inMemoryPersistence, --skipApiVersionCheck, --loose]
          ports: [{containerPort: 10000}]
          readinessProbe:
            tcpSocket: {port: 10000}
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata: {name: azurite}
spec:
  selector: {app: azurite}
  ports: [{name: blob, port: 10000}]
EOF
  kctl create secret generic azure-credentials -n "$NAMESPACE" \
    --from-literal=account-name=devstoreaccount1 --from-literal=account-key="$AZURITE_KEY" \
    --dry-run=client -o yaml | kctl apply -f -
  kctl rollout status -n "$NAMESPACE" deployment/kafka deployment/azurite --timeout="$WAIT"
}

up() {
  tools
  [[ -d $ROOT/examples/kubernetes ]] || die "examples/kubernetes/ is missing"
  local image archive
  image=$("$ROOT/dev/image.sh" ref)
  archive=$(KANAL_BUILDER=docker "$ROOT/dev/image.sh" archive)
  if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "creating kind cluster $CLUSTER"
    "$KIND" create cluster --name "$CLUSTER" --wait 180s
  fi
  say "loading $image into $CLUSTER"
  "$KIND" load image-archive "$archive" --name "$CLUSTER"

  say "installing the chart"
  "$HELM" upgrade --install kanal "$ROOT/helm/kanal" --kube-context "kind-$CLUSTER" \
    --namespace kanal-system --create-namespace \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
    --set image.pullPolicy=Never --wait --timeout "$WAIT"

  kctl create namespace "$NAMESPACE" --dry-run=client -o yaml | kctl apply -f -
  say "starting Kafka and Azurite in namespace $NAMESPACE"
  services

  say "applying examples/kubernetes/"
  kctl apply -n "$NAMESPACE" -f "$ROOT/examples/kubernetes/"
  say "waiting for every ConnectCluster and Connector to be Ready"
  kctl wait -n "$NAMESPACE" --for=condition=Ready connectclusters --all --timeout="$WAIT"
  kctl wait -n "$NAMESPACE" --for=condition=Ready connectors --all --timeout="$WAIT"
  kctl get -n "$NAMESPACE" connectclusters,connectors
  say "ready; 'dev/kind-e2e.sh down' deletes the cluster"
}

down() {
  KIND=${KIND:-$(command -v kind || "$ROOT/dev/tools.sh" path kind)}
  "$KIND" delete cluster --name "$CLUSTER"
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "usage: dev/kind-e2e.sh [up|down]" ;;
esac
