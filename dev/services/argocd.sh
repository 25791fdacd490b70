# shellcheck shell=bash
# dev/stack service "argocd": Argo CD's GitOps core on the local cluster of `k8s`,
# run as local processes the way argo-cd's own Procfile runs them:
#
#   redis-server                     127.0.0.1:$KANAL_ARGOCD_REDIS_PORT (default 18300)
#   argocd-repo-server               127.0.0.1:$KANAL_ARGOCD_REPO_PORT  (default 18301,
#                                    metrics +1), plain gRPC
#   argocd-application-controller    metrics and /healthz on $KANAL_ARGOCD_CONTROLLER_PORT
#                                    (default 18303); acts with the admin kubeconfig of
#                                    `k8s`; the in-cluster destination
#                                    https://kubernetes.default.svc is that cluster
#                                    (ARGOCD_FAKE_IN_CLUSTER); each resource's
#                                    health is kept in the Application's status
#                                    (--persist-resource-health) for kubectl users
#   git daemon                       git://127.0.0.1:$KANAL_ARGOCD_GIT_PORT/<repo> (default
#                                    18304), read-only, serving the bare repositories
#                                    under $KANAL_RUN/argocd/git/
#
# In the cluster, namespace argocd gets what Argo CD's install manifests put there:
# its CRDs (from the argo-cd module's manifests/crds), argocd-cm, argocd-secret and
# argocd-rbac-cm (manifests/base/config, applied server-side so keys users add stay),
# and the `default` AppProject that argocd-server would create. No API server, UI or
# Dex: Applications are driven with kubectl, as with `argocd --core`.
#
# argo-cd (one multi-call binary) is built once from the Go module proxy by
# dev/argocd/build.sh into $KANAL_CACHE/argocd/bin (the first build takes a long time
# on 2 cores); redis-server comes from Debian (apt-get) when missing.
# `dev/stack run argocd ARGS` runs the `argocd` CLI, e.g.
#   dev/stack run argocd admin settings resource-overrides health obj.yaml \
#     --argocd-cm-path argocd-cm.yaml
# Runtime: $KANAL_RUN/argocd/{*.log,*.pid,git/,kubeconfig.sha256}. A restarted `k8s` is
# a new cluster (new CA): `up` then restarts the controllers and re-applies the objects.

# shellcheck disable=SC2034 # read by dev/stack through ${svc}_DEPS
argocd_DEPS="k8s"
: "${KANAL_ARGOCD_REDIS_PORT:=18300}"
: "${KANAL_ARGOCD_REPO_PORT:=18301}"
: "${KANAL_ARGOCD_CONTROLLER_PORT:=18303}"
: "${KANAL_ARGOCD_GIT_PORT:=18304}"
: "${KANAL_ARGOCD_UP_TIMEOUT:=120}"
ARGOCD_NAMESPACE=argocd

_ARGOCD_SRC="$KANAL_DEV_DIR/argocd"
_argocd_bin() { printf '%s\n' "$KANAL_CACHE/argocd/bin"; }
_argocd_kubeconfig() { printf '%s\n' "$KANAL_RUN/k8s/kubeconfig"; }
_argocd_kubectl() {
  "$KANAL_CACHE/k8s/bin/kubectl" --kubeconfig "$(_argocd_kubeconfig)" "$@"
}

argocd_ports() {
  echo "$KANAL_ARGOCD_REDIS_PORT,$KANAL_ARGOCD_REPO_PORT,$((KANAL_ARGOCD_REPO_PORT + 1)),$KANAL_ARGOCD_CONTROLLER_PORT,$KANAL_ARGOCD_GIT_PORT"
}

argocd_install() {
  if ! command -v redis-server >/dev/null; then
    if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
      fail "argocd: needs redis-server; install it (Debian/Ubuntu: apt-get install redis-server)"
      return 1
    fi
    say "argocd: apt-get install redis-server (first time only)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o DPkg::Lock::Timeout=600 redis-server >&2 ||
      { fail "argocd: apt-get install redis-server failed"; return 1; }
  fi
  KANAL_CACHE=$KANAL_CACHE bash "$_ARGOCD_SRC/build.sh" "$(_argocd_bin)"
}

argocd_run() {
  "$(_argocd_bin)/argocd" "$@"
}

_argocd_kubeconfig_sum() { sha256sum <"$(_argocd_kubeconfig)" 2>/dev/null | cut -c1-64; }

# The controllers still talk to the cluster they started with.
_argocd_same_cluster() {
  [[ -f $KANAL_RUN/argocd/kubeconfig.sha256 &&
    "$(<"$KANAL_RUN/argocd/kubeconfig.sha256")" == "$(_argocd_kubeconfig_sum)" ]]
}

_argocd_controller_healthy() {
  curl -fsS -o /dev/null --max-time 5 "http://$KANAL_HOST:$KANAL_ARGOCD_CONTROLLER_PORT/healthz"
}

argocd_status() {
  daemon_pid argocd redis "$KANAL_ARGOCD_REDIS_PORT" >/dev/null &&
    daemon_pid argocd repo-server "$KANAL_ARGOCD_REPO_PORT" >/dev/null &&
    daemon_pid argocd application-controller >/dev/null &&
    daemon_pid argocd git "$KANAL_ARGOCD_GIT_PORT" >/dev/null &&
    _argocd_same_cluster && _argocd_controller_healthy &&
    _argocd_kubectl get --request-timeout=5s -n "$ARGOCD_NAMESPACE" appproject default >/dev/null 2>&1
}

argocd_env() {
  env_line ARGOCD_BIN "$(_argocd_bin)/argocd"
  env_line KANAL_ARGOCD_NAMESPACE "$ARGOCD_NAMESPACE"
  env_line KANAL_ARGOCD_GIT_ROOT "$KANAL_RUN/argocd/git"
  env_line KANAL_ARGOCD_GIT_URL "git://$KANAL_HOST:$KANAL_ARGOCD_GIT_PORT"
}

argocd_down() {
  local name
  for name in application-controller repo-server redis git; do
    daemon_stop argocd "$name" >/dev/null
  done
  rm -f "$KANAL_RUN/argocd/kubeconfig.sha256"
  return 0
}

# What Argo CD's install puts in its namespace, minus the workloads.
_argocd_objects() {
  local bin
  bin=$(_argocd_bin)
  _argocd_kubectl apply --server-side --force-conflicts --field-manager=dev-stack \
    -f "$bin/crds" >/dev/null || return 1
  # `kubectl wait` fails outright while a new CRD has no conditions yet.
  local _
  for _ in $(seq 60); do
    _argocd_kubectl wait --for condition=established --timeout 30s \
      crd/applications.argoproj.io crd/appprojects.argoproj.io >/dev/null 2>&1 && break
    sleep 0.5
  done
  _argocd_kubectl create namespace "$ARGOCD_NAMESPACE" --dry-run=client -o yaml |
    _argocd_kubectl apply --server-side --field-manager=dev-stack -f - >/dev/null || return 1
  _argocd_kubectl apply --server-side --force-conflicts --field-manager=dev-stack \
    -n "$ARGOCD_NAMESPACE" -f "$bin/config" >/dev/null || return 1
  # argocd-server writes server.secretkey at its first start. Without it the controller
  # cannot parse a settings update ("server.secretkey is missing") and keeps judging
  # health with the resource customizations it started with: a health check added to
  # argocd-cm later would then change an Application only at its periodic resync.
  if ! _argocd_kubectl -n "$ARGOCD_NAMESPACE" get secret argocd-secret \
      -o 'jsonpath={.data.server\.secretkey}' | grep -q .; then
    local key
    key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
    _argocd_kubectl -n "$ARGOCD_NAMESPACE" patch secret argocd-secret --type merge \
      -p "{\"stringData\":{\"server.secretkey\":\"$key\"}}" >/dev/null || return 1
  fi
  _argocd_kubectl apply --server-side --field-manager=dev-stack -f - >/dev/null <<EOF || return 1
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: $ARGOCD_NAMESPACE
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
}

argocd_up() {
  if argocd_status; then
    say "argocd: already running (controller metrics on $KANAL_HOST:$KANAL_ARGOCD_CONTROLLER_PORT)"
    return 0
  fi
  stack_require k8s || return 1
  argocd_install || return 1
  local dir bin kubeconfig
  dir=$(run_dir argocd) || return 1
  bin=$(_argocd_bin)
  kubeconfig=$(_argocd_kubeconfig)
  mkdir -p "$dir/git" "$dir/home" || return 1
  argocd_down
  for port in "$KANAL_ARGOCD_REDIS_PORT" "$KANAL_ARGOCD_REPO_PORT" \
    "$((KANAL_ARGOCD_REPO_PORT + 1))" "$KANAL_ARGOCD_CONTROLLER_PORT" "$KANAL_ARGOCD_GIT_PORT"; do
    ensure_port_free "$port" argocd || return 1
  done
  _argocd_objects || { fail "argocd: could not create Argo CD's objects in the cluster"; return 1; }

  say "argocd: starting redis on $KANAL_HOST:$KANAL_ARGOCD_REDIS_PORT"
  # Redis rewriting its process title would overwrite the environment that marks it ours.
  daemon_start argocd redis "$dir/redis.log" redis-server --bind "$KANAL_HOST" \
    --port "$KANAL_ARGOCD_REDIS_PORT" --save "" --appendonly no --dir "$dir" \
    --set-proc-title no || return 1
  say "argocd: starting git daemon on git://$KANAL_HOST:$KANAL_ARGOCD_GIT_PORT"
  daemon_start argocd git "$dir/git.log" git daemon --reuseaddr --export-all \
    --listen="$KANAL_HOST" --port="$KANAL_ARGOCD_GIT_PORT" --base-path="$dir/git" "$dir/git" ||
    return 1

  # HOME keeps git's and helm's per-user files out of the real home directory; PATH
  # has the helper scripts Argo CD's image installs.
  local common=(env HOME="$dir/home" PATH="$bin:$PATH" KUBECONFIG="$kubeconfig"
    ARGOCD_FAKE_IN_CLUSTER=true ARGOCD_GPG_ENABLED=false ARGOCD_TLS_DATA_PATH="$dir/home/tls"
    ARGOCD_SSH_DATA_PATH="$dir/home/ssh" ARGOCD_GNUPGHOME="$dir/home/gnupg")
  mkdir -p "$dir/home/tls" "$dir/home/ssh" "$dir/home/gnupg" || return 1
  say "argocd: starting repo-server on $KANAL_HOST:$KANAL_ARGOCD_REPO_PORT"
  daemon_start argocd repo-server "$dir/repo-server.log" "${common[@]}" \
    "$bin/argocd-repo-server" --address "$KANAL_HOST" --port "$KANAL_ARGOCD_REPO_PORT" \
    --metrics-address "$KANAL_HOST" --metrics-port "$((KANAL_ARGOCD_REPO_PORT + 1))" \
    --redis "$KANAL_HOST:$KANAL_ARGOCD_REDIS_PORT" --disable-tls --client-ca-path "" \
    --logformat text || return 1
  say "argocd: starting application-controller"
  daemon_start argocd application-controller "$dir/application-controller.log" "${common[@]}" \
    "$bin/argocd-application-controller" --namespace "$ARGOCD_NAMESPACE" \
    --redis "$KANAL_HOST:$KANAL_ARGOCD_REDIS_PORT" \
    --repo-server "$KANAL_HOST:$KANAL_ARGOCD_REPO_PORT" --repo-server-plaintext \
    --metrics-port "$KANAL_ARGOCD_CONTROLLER_PORT" --persist-resource-health \
    --logformat text || return 1
  _argocd_kubeconfig_sum >"$dir/kubeconfig.sha256"

  wait_healthy argocd repo-server "$KANAL_ARGOCD_UP_TIMEOUT" "$dir/repo-server.log" \
    port_open "$KANAL_HOST" "$KANAL_ARGOCD_REPO_PORT" || return 1
  wait_healthy argocd application-controller "$KANAL_ARGOCD_UP_TIMEOUT" \
    "$dir/application-controller.log" _argocd_controller_healthy || return 1
  say "argocd: ready; Applications in namespace $ARGOCD_NAMESPACE, Git at git://$KANAL_HOST:$KANAL_ARGOCD_GIT_PORT/"
}
