#!/usr/bin/env bash
# Smoke test of the dev/stack k8s service: run after `dev/stack up k8s`.
# Checks /readyz, a Namespace + Deployment (ReplicaSet and Pending Pods appear when
# kube-controller-manager runs), a CRD with status+scale subresources whose CEL
# rule the server enforces, TokenRequest, and real RBAC denials. Cleans up after
# itself. Prints "N passed, N failed"; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$here/../stack" env k8s)"
k() { "$KUBECTL" "$@"; }
ns=kanal-k8s-smoke
pass=0 fail=0
check() { # NAME CMD...
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    pass=$((pass + 1))
    echo "ok   $name"
  else
    fail=$((fail + 1))
    echo "FAIL $name"
  fi
}
not() { ! "$@"; }
kcm_pid=${KANAL_RUN:-${KANAL_CACHE:-$HOME/.cache/kanal}/run}/k8s/kube-controller-manager.pid
kcm() { [[ -f $kcm_pid ]] && kill -0 "$(<"$kcm_pid")" 2>/dev/null; }
cleanup() {
  # Namespaces only finish deleting when the namespace controller (in
  # kube-controller-manager) runs.
  if kcm; then
    k delete namespace "$ns" --ignore-not-found --timeout=90s >/dev/null 2>&1
  else
    k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  fi
  k delete crd smokeconnectors.kanal.dev --ignore-not-found >/dev/null 2>&1
}
trap cleanup EXIT

cleanup  # leftovers of an interrupted run
readyz() { [[ "$(k get --raw /readyz)" == ok ]]; }
check "readyz" readyz

k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $ns}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: example.invalid/web:1}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: smokeconnectors.kanal.dev}
spec:
  group: kanal.dev
  names: {kind: SmokeConnector, plural: smokeconnectors, singular: smokeconnector}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.tasksMax, statusReplicasPath: .status.tasks}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [connectorClass]
            properties:
              connectorClass: {type: string}
              tasksMax: {type: integer, minimum: 1}
            x-kubernetes-validations:
            - rule: "!has(self.tasksMax) || self.tasksMax <= 10"
              message: "tasksMax must be at most 10"
          status:
            type: object
            properties:
              tasks: {type: integer}
EOF
check "namespace + deployment + CRD applied" k get -n "$ns" deployment web
check "CRD established" k wait --for=condition=Established crd/smokeconnectors.kanal.dev --timeout=30s

if kcm; then
  pods() { [[ $(k get pods -n "$ns" -l app=web --no-headers 2>/dev/null | grep -c Pending) == 2 ]]; }
  for _ in $(seq 60); do pods && break; sleep 0.5; done
  check "deployment -> replicaset" k get rs -n "$ns" -l app=web -o name
  check "replicaset -> 2 Pending pods" pods
else
  echo "skip deployment -> pods (no kube-controller-manager running)"
fi

cr() { # NAME TASKSMAX
  k apply -f - <<EOF
apiVersion: kanal.dev/v1alpha1
kind: SmokeConnector
metadata: {name: $1, namespace: $ns}
spec: {connectorClass: FileSource, tasksMax: $2}
EOF
}
check "valid CR accepted" cr ok 3
check "CEL rule rejects tasksMax=11" not cr bad 11
check "scale subresource sets spec" k scale -n "$ns" smokeconnector ok --replicas=5
tasks() { [[ $(k get -n "$ns" smokeconnector ok -o jsonpath='{.spec.tasksMax}') == 5 ]]; }
check "spec.tasksMax == 5 after scale" tasks
check "CEL rule applies through scale" not k scale -n "$ns" smokeconnector ok --replicas=12
check "status subresource patch" k patch -n "$ns" smokeconnector ok --subresource=status --type=merge -p '{"status":{"tasks":5}}'
k patch -n "$ns" smokeconnector ok --type=merge -p '{"status":{"tasks":9}}' >/dev/null 2>&1
status5() { [[ $(k get -n "$ns" smokeconnector ok -o jsonpath='{.status.tasks}') == 5 ]]; }
check "main resource ignores status" status5

check "RBAC: nobody cannot list pods" not k auth can-i list pods --as=system:serviceaccount:default:nobody
check "RBAC: admin can do anything" k auth can-i '*' '*'
k create serviceaccount -n "$ns" smoke >/dev/null 2>&1
check "TokenRequest for a serviceaccount" k create token -n "$ns" smoke --duration=10m

echo "$pass passed, $fail failed"
((fail == 0))
