# shellcheck shell=bash
# dev/stack service "k8s": a local Kubernetes control plane without Docker or kubelet.
#
#   etcd 3.6 (http://127.0.0.1:$KANAL_ETCD_PORT, default 12379; peer port +1)
#   kube-apiserver (https://127.0.0.1:$KANAL_K8S_PORT, default 6443), Node,RBAC
#   kube-controller-manager (when built): Deployments get ReplicaSets and Pods
#   (Pods stay Pending: there is no kubelet), namespaces get their default
#   ServiceAccount, and so on.
#
# Binaries are built once from the Go module proxy by dev/k8s/build.sh into
# $KANAL_CACHE/k8s/bin (first build takes a while on 2 cores; see that script).
# Everything runtime lives in $KANAL_RUN/k8s: pki/, etcd-data/, *.pid, *.log and
# the admin kubeconfig (user "kanal-admin", group system:masters).
# k8s_down wipes etcd data and certificates, so every k8s_up is a fresh cluster.
#
# Sourced by dev/stack after dev/services/_lib.sh; only relies on KANAL_CACHE,
# KANAL_RUN, wait_for_port and say from there (with fallbacks below).

: "${KANAL_CACHE:=$HOME/.cache/kanal}"
: "${KANAL_RUN:=$KANAL_CACHE/run}"
: "${KANAL_K8S_PORT:=6443}"
: "${KANAL_ETCD_PORT:=12379}"

_K8S_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../k8s" && pwd)

if ! declare -F say >/dev/null; then
  say() { printf '[stack] %s\n' "$*" >&2; }
fi
if ! declare -F wait_for_port >/dev/null; then
  wait_for_port() { # host port timeout-seconds
    local host=$1 port=$2 end=$((SECONDS + ${3:-30}))
    while ((SECONDS < end)); do
      (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
      sleep 0.2
    done
    return 1
  }
fi

_k8s_bin() { echo "$KANAL_CACHE/k8s/bin"; }
_k8s_dir() { echo "$KANAL_RUN/k8s"; }
_k8s_kubectl() { "$(_k8s_bin)/kubectl" --kubeconfig "$(_k8s_dir)/kubeconfig" "$@"; }

k8s_install() {
  KANAL_CACHE=$KANAL_CACHE bash "$_K8S_SRC/build.sh" "$(_k8s_bin)"
}

# _k8s_pid NAME: print the pid of our NAME process if it is alive and really ours.
_k8s_pid() {
  local f pid
  f="$(_k8s_dir)/$1.pid"
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # Guard against pid reuse: the process must run our binary.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(_k8s_bin)/$1" || return 1
  echo "$pid"
}

# _k8s_start NAME ARGS...: start $bin/NAME in its own session (survives our exit);
# the process writes its own pid (== its process group id) to NAME.pid.
_k8s_start() {
  local name=$1 dir bin
  shift
  dir=$(_k8s_dir) bin=$(_k8s_bin)
  [[ -s $dir/$name.log ]] && mv -f "$dir/$name.log" "$dir/$name.log.1"
  # KANAL_SERVICE is the marker _lib.sh's daemon helpers use to recognise ours.
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
  (cd "$dir" && KANAL_SERVICE="k8s/$name" exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' \
    _ "$dir/$name.pid" "$bin/$name" "$@" </dev/null >"$dir/$name.log" 2>&1) &
  for _ in $(seq 50); do
    _k8s_pid "$name" >/dev/null && return 0
    sleep 0.1
  done
  say "k8s: $name did not start; see $dir/$name.log"
  tail -n 20 "$dir/$name.log" >&2
  return 1
}

# _k8s_stop NAME: TERM the whole process group, KILL after $KANAL_STOP_TIMEOUT s.
_k8s_stop() {
  local name=$1 pid
  if pid=$(_k8s_pid "$name"); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((${KANAL_STOP_TIMEOUT:-30} * 10))); do
      [[ -d /proc/$pid ]] || break
      sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
      sleep 0.2
    fi
  fi
  rm -f "$(_k8s_dir)/$name.pid"
}

_k8s_readyz() {
  [[ -x "$(_k8s_bin)/kubectl" && -f "$(_k8s_dir)/kubeconfig" ]] || return 1
  [[ "$(_k8s_kubectl --request-timeout=5s get --raw /readyz 2>/dev/null)" == ok ]]
}

k8s_status() {
  _k8s_pid etcd >/dev/null && _k8s_pid kube-apiserver >/dev/null && _k8s_readyz
}

k8s_env() {
  printf "export KUBECONFIG='%s'\n" "$(_k8s_dir)/kubeconfig"
  printf "export KUBECTL='%s'\n" "$(_k8s_bin)/kubectl"
}

k8s_ports() {
  echo "$KANAL_K8S_PORT $KANAL_ETCD_PORT"
}

k8s_down() {
  local dir
  dir=$(_k8s_dir)
  _k8s_stop kube-controller-manager
  _k8s_stop kube-apiserver
  _k8s_stop etcd
  # Fresh cluster next time: no etcd data, new certificates and kubeconfig.
  rm -rf "$dir/etcd-data" "$dir/pki" "$dir/kubeconfig" "$dir/controller-manager.kubeconfig"
  return 0
}

# _k8s_cert NAME SUBJECT [SAN]: key + certificate signed by pki/ca.
_k8s_cert() {
  local pki name=$2 subj=$3 san=${4:-} ext
  pki=$1
  ext="$pki/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subj" \
    -out "$pki/$name.csr" 2>/dev/null &&
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
      -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
}

_k8s_pki() {
  local pki=$1
  mkdir -p "$pki" && chmod 700 "$pki" || return 1
  openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=kanal-dev-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null || return 1
  _k8s_cert "$pki" apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" || return 1
  _k8s_cert "$pki" admin "/O=system:masters/CN=kanal-admin" || return 1
  # What the API server shows a kubelet (dev/stack up node) for logs, exec, port-forward.
  _k8s_cert "$pki" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" || return 1
  # --use-service-account-credentials is off, so the controller-manager acts as
  # itself for every controller and needs more than its bootstrap role grants.
  _k8s_cert "$pki" controller-manager "/O=system:masters/CN=system:kube-controller-manager" || return 1
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null &&
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# _k8s_kubeconfig FILE USER: kubeconfig with the user's client cert embedded.
_k8s_kubeconfig() {
  local file=$1 user=$2 pki
  pki="$(_k8s_dir)/pki"
  (umask 077 && cat >"$file") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kanal
  cluster:
    server: https://127.0.0.1:$KANAL_K8S_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: kanal
  context:
    cluster: kanal
    user: $user
current-context: kanal
EOF
}

_k8s_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

k8s_up() {
  if k8s_status; then
    say "k8s: already running at https://127.0.0.1:$KANAL_K8S_PORT"
    return 0
  fi
  k8s_install || return 1
  local dir bin pki peer port
  dir=$(_k8s_dir) bin=$(_k8s_bin)
  pki="$dir/pki"
  peer=$((KANAL_ETCD_PORT + 1))
  # Leftovers of a half-started or crashed cluster go first.
  k8s_down
  for port in "$KANAL_ETCD_PORT" "$peer" "$KANAL_K8S_PORT"; do
    if _k8s_port_busy "$port"; then
      say "k8s: port $port on 127.0.0.1 is taken by something else (see KANAL_K8S_PORT / KANAL_ETCD_PORT)"
      return 1
    fi
  done
  mkdir -p "$dir" || return 1
  _k8s_pki "$pki" || { say "k8s: certificate generation failed"; return 1; }
  _k8s_kubeconfig "$dir/kubeconfig" admin
  _k8s_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager

  say "k8s: starting etcd on 127.0.0.1:$KANAL_ETCD_PORT"
  _k8s_start etcd \
    --name kanal --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$KANAL_ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$KANAL_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "kanal=http://127.0.0.1:$peer" \
    --quota-backend-bytes 2147483648 \
    --unsafe-no-fsync \
    --log-level warn || return 1
  if ! wait_for_port 127.0.0.1 "$KANAL_ETCD_PORT" 30; then
    say "k8s: etcd did not open its port; see $dir/etcd.log"
    return 1
  fi
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$KANAL_ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' && break
    sleep 0.2
  done

  say "k8s: starting kube-apiserver on https://127.0.0.1:$KANAL_K8S_PORT"
  _k8s_start kube-apiserver \
    --etcd-servers "http://127.0.0.1:$KANAL_ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "$KANAL_K8S_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC \
    --service-cluster-ip-range 10.0.0.0/24 \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false \
    --v=1 || return 1
  for _ in $(seq 240); do
    _k8s_readyz && break
    if ! _k8s_pid kube-apiserver >/dev/null; then
      say "k8s: kube-apiserver exited; see $dir/kube-apiserver.log"
      tail -n 20 "$dir/kube-apiserver.log" >&2
      return 1
    fi
    sleep 0.5
  done
  if ! _k8s_readyz; then
    say "k8s: kube-apiserver not ready after 120 s; see $dir/kube-apiserver.log"
    return 1
  fi
  for _ in $(seq 60); do
    _k8s_kubectl get namespace default >/dev/null 2>&1 && break
    sleep 0.5
  done

  if [[ -x $bin/kube-controller-manager ]]; then
    say "k8s: starting kube-controller-manager"
    _k8s_start kube-controller-manager \
      --kubeconfig "$dir/controller-manager.kubeconfig" \
      --leader-elect=false \
      --use-service-account-credentials=false \
      --controllers '*,-service-lb-controller,-node-route-controller,-cloud-node-lifecycle-controller' \
      --service-account-private-key-file "$pki/sa.key" \
      --root-ca-file "$pki/ca.crt" \
      --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
      --service-cluster-ip-range 10.0.0.0/24 \
      --bind-address 127.0.0.1 --secure-port 0 \
      --flex-volume-plugin-dir "$dir/flexvolume" \
      --profiling=false \
      --v=1 || return 1
    for _ in $(seq 120); do
      _k8s_kubectl -n default get serviceaccount default >/dev/null 2>&1 && break
      if ! _k8s_pid kube-controller-manager >/dev/null; then
        say "k8s: kube-controller-manager exited; see $dir/kube-controller-manager.log"
        tail -n 20 "$dir/kube-controller-manager.log" >&2
        return 1
      fi
      sleep 0.5
    done
    if ! _k8s_kubectl -n default get serviceaccount default >/dev/null 2>&1; then
      say "k8s: no default ServiceAccount after 60 s; see $dir/kube-controller-manager.log"
      return 1
    fi
  fi
  say "k8s: ready; KUBECONFIG=$dir/kubeconfig"
}
