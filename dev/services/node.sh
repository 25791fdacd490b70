# shellcheck shell=bash
# dev/stack service "node": one real Kubernetes node on top of `dev/stack up k8s`, so
# pods really run: containerd + runc, kubelet, kube-scheduler, kube-proxy (iptables),
# the CNI bridge, CoreDNS and the pause image.
#
#   node name       the hostname (the API server reaches the kubelet by it, for
#                   `kubectl logs` and `exec`); InternalIP = node_address
#   pods            10.244.0.0/24 on the bridge kanal0 (CNI bridge + portmap +
#                   host-local from Debian's containernetworking-plugins, /usr/lib/cni)
#   services        10.0.0.0/24 (as the control plane); cluster DNS 10.0.0.10
#   kubelet         127.0.0.1:18250 (healthz 18248); kube-scheduler 127.0.0.1:18259;
#                   kube-proxy healthz 127.0.0.1:18256, metrics 18249
#   CoreDNS         <node address>:18253, the endpoint of Service kube-system/kube-dns
#   forwards        <node address>:18243 -> the API server (the endpoint of Service
#                   default/kubernetes, whose serving certificate covers 10.0.0.1);
#                   <node address>:18210 -> Azurite (pods' blob endpoint)
#   Kafka           pods use Kafka's PODS listener, <node address>:9096
#
# Installs: containerd, runc, containernetworking-plugins, socat and conntrack with
# apt-get when missing; kubelet, kube-scheduler and kube-proxy with dev/k8s/build.sh
# (same pinned module as the control plane) into $KANAL_CACHE/k8s/node-bin; CoreDNS
# with dev/tools.sh; the pause binary from the module's build/pause/linux/pause.c
# (static gcc) into $KANAL_CACHE/node/, imported as registry.k8s.io/pause:<its TAG>.
#
# Runtime in $KANAL_RUN/node: containerd's root and state, kubelet's root dir, the
# CNI config and IPAM state, kubeconfigs, *.log, *.pid. Images imported into
# containerd (namespace k8s.io) survive `down`; everything else `up` made is undone
# by `down`: processes, pod sandboxes, mounts, the iptables rules of kube-proxy and
# CNI, the bridge and veths, the Node object.
#
# `dev/stack run node import ARCHIVE...` imports docker-archives (for example the
# Kanal image of `make image`) into the node's containerd; pods use them with
# `imagePullPolicy: Never`. `dev/stack run node ctr ARGS...` runs ctr on the node.

# shellcheck disable=SC2034 # read by dev/stack
node_DEPS="k8s kafka azurite"

NODE_POD_CIDR=10.244.0.0/24
NODE_DNS_IP=10.0.0.10
NODE_BRIDGE=kanal0
NODE_KUBELET_PORT=18250
NODE_KUBELET_HEALTHZ_PORT=18248
NODE_SCHEDULER_PORT=18259
NODE_PROXY_HEALTHZ_PORT=18256
NODE_PROXY_METRICS_PORT=18249
NODE_DNS_PORT=18253
NODE_APISERVER_PORT=18243
NODE_AZURITE_PORT=18210
: "${KANAL_NODE_UP_TIMEOUT:=90}"

_NODE_PKGS=(containerd runc containernetworking-plugins socat conntrack)
_NODE_CMDS=(containerd runc socat conntrack)
_NODE_CNI_DIR=/usr/lib/cni

_node_dir() { printf '%s\n' "$KANAL_RUN/node"; }
_node_bin() { printf '%s\n' "$KANAL_CACHE/k8s/node-bin"; }
_node_sock() { printf '%s\n' "$(_node_dir)/containerd/containerd.sock"; }
_node_name() { hostname | tr '[:upper:]' '[:lower:]'; }
_node_kubectl() { "$(_k8s_bin)/kubectl" --kubeconfig "$(_k8s_dir)/kubeconfig" "$@"; }
_node_ctr() { ctr --address "$(_node_sock)" --namespace k8s.io "$@"; }

# The pause image version the pinned module builds (build/pause/Makefile's TAG).
_node_module_dir() {
  printf '%s\n' "$KANAL_CACHE/go/mod/k8s.io/kubernetes@$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$KANAL_DEV_DIR/k8s/kube/go.mod")"
}
_node_pause_tag() { sed -n 's/^TAG ?= *//p' "$(_node_module_dir)/build/pause/Makefile"; }
_node_pause_image() { printf 'registry.k8s.io/pause:%s\n' "$(_node_pause_tag)"; }

node_ports() {
  echo "$NODE_KUBELET_PORT,$NODE_SCHEDULER_PORT,$NODE_DNS_PORT,$NODE_APISERVER_PORT,$NODE_AZURITE_PORT"
}

_node_packages() {
  local missing=() c
  for c in "${_NODE_CMDS[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
  [[ -x $_NODE_CNI_DIR/bridge ]] || missing+=(cni)
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || {
    fail "node: missing ${missing[*]}; install the Debian packages ${_NODE_PKGS[*]} (or their equivalents)"
    return 1
  }
  say "node: apt-get install ${_NODE_PKGS[*]} (missing: ${missing[*]})"
  local log="$KANAL_CACHE/node/apt.log"
  mkdir -p "$KANAL_CACHE/node" || return 1
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${_NODE_PKGS[@]}" ||
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${_NODE_PKGS[@]}"; }; } >"$log" 2>&1; then
    fail "node: apt-get install failed; see $log"
    tail_log "$log"
    return 1
  fi
}

# The pause binary, built once per TAG from the module's pause.c.
_node_pause() {
  local tag src out
  tag=$(_node_pause_tag)
  src="$(_node_module_dir)/build/pause/linux/pause.c"
  out="$KANAL_CACHE/node/pause-$tag"
  [[ -x $out/pause && -f $out/pause.tar ]] && return 0
  [[ -f $src ]] || {
    fail "node: $src is missing (the k8s.io/kubernetes module is downloaded by dev/k8s/build.sh)"
    return 1
  }
  command -v gcc >/dev/null || {
    fail "node: gcc is needed to build the pause binary (apt-get install gcc libc6-dev)"
    return 1
  }
  mkdir -p "$out.tmp" || return 1
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-kanal" -o "$out.tmp/pause" "$src" || {
    fail "node: building $src failed (a static build needs libc6-dev)"
    return 1
  }
  python3 "$KANAL_DEV_DIR/node/archive.py" "$(_node_pause_image)" "$out.tmp/pause" "$out.tmp/pause.tar" || return 1
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

node_install() {
  _node_packages || return 1
  KANAL_CACHE=$KANAL_CACHE bash "$KANAL_DEV_DIR/k8s/build.sh" "$(_node_bin)" kubelet kube-scheduler kube-proxy || {
    fail "node: building kubelet, kube-scheduler, kube-proxy failed"
    return 1
  }
  KANAL_CACHE=$KANAL_CACHE bash "$KANAL_DEV_DIR/tools.sh" coredns || return 1
  _node_pause
}

# ---------------------------------------------------------------- configuration
_node_certs() {
  local pki host
  pki="$(_k8s_dir)/pki"
  host=$(_node_name)
  [[ -f $pki/ca.key ]] || {
    fail "node: no control-plane CA in $pki (is k8s up?)"
    return 1
  }
  # Client certificates signed by the control plane's CA (made anew with it).
  [[ -f $pki/node-kubelet.crt ]] || _k8s_cert "$pki" node-kubelet "/O=system:nodes/CN=system:node:$host" || return 1
  [[ -f $pki/node-proxy.crt ]] || _k8s_cert "$pki" node-proxy "/CN=system:kube-proxy" || return 1
  [[ -f $pki/node-scheduler.crt ]] || _k8s_cert "$pki" node-scheduler "/CN=system:kube-scheduler" || return 1
  [[ -f $pki/node-coredns.crt ]] || _k8s_cert "$pki" node-coredns "/CN=kanal:coredns" || return 1
  local who
  for who in kubelet proxy scheduler coredns; do
    _k8s_kubeconfig "$(_node_dir)/$who.kubeconfig" "node-$who" || return 1
  done
}

_node_write_config() {
  local dir=$1 addr=$2 pki
  pki="$(_k8s_dir)/pki"
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet" || return 1
  write_file "$dir/containerd/config.toml" <<EOF
# Generated by dev/services/node.sh; edits are lost.
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$(_node_sock)"
[ttrpc]
  address = "$(_node_sock).ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(_node_pause_image)"
  # runc may not lower oom_score_adj here: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$_NODE_CNI_DIR"
    conf_dir = "$dir/cni/net.d"
EOF
  write_file "$dir/cni/net.d/10-kanal.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kanal",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  write_file "$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $NODE_KUBELET_HEALTHZ_PORT
containerRuntimeEndpoint: unix://$(_node_sock)
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$NODE_DNS_IP]
resolvConf: /etc/resolv.conf
# Imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
rotateCertificates: false
EOF
  write_file "$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/proxy.kubeconfig}
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $(_node_name)
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$NODE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$NODE_PROXY_METRICS_PORT
conntrack: {maxPerCore: 0}
EOF
  write_file "$dir/Corefile" <<EOF
.:$NODE_DNS_PORT {
    bind $addr
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
EOF
}

# Cluster objects the node needs: CoreDNS's read access, the kube-dns Service and
# the endpoints of kube-dns and kubernetes (the API server binds 127.0.0.1 only).
_node_cluster_objects() {
  local addr=$1
  _node_kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "kanal:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "kanal:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "kanal:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "kanal:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $NODE_DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $NODE_DNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $NODE_DNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: dev-stack}
addressType: IPv4
endpoints: [{addresses: ["$addr"], conditions: {ready: true}}]
ports:
- {name: dns, port: $NODE_DNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $NODE_DNS_PORT, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: dev-stack}
addressType: IPv4
endpoints: [{addresses: ["$addr"], conditions: {ready: true}}]
ports:
- {name: https, port: $NODE_APISERVER_PORT, protocol: TCP}
EOF
}

# ---------------------------------------------------------------- processes
_NODE_DAEMONS=(containerd kubelet kube-proxy kube-scheduler coredns forward-apiserver forward-azurite)

_node_running() {
  local d
  for d in "${_NODE_DAEMONS[@]}"; do daemon_pid node "$d" >/dev/null || return 1; done
}

_node_ready() {
  [[ "$(_node_kubectl --request-timeout=5s get node "$(_node_name)" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

node_status() {
  k8s_status && _node_running && _node_ready
}

# _node_explain WHAT: what failed, the ends of the logs that tell why, and the fix.
_node_explain() {
  local dir f
  dir=$(_node_dir)
  fail "node: $1"
  for f in containerd kubelet; do tail_log "$dir/$f.log" 15; done
  say "node: the fix is usually in those lines; 'dev/stack logs node' shows more."
  say "node: 'dev/stack down node && dev/stack up node' starts the node afresh."
}

# _node_sysctl NAME VALUE: set a kernel setting pods need (left set on down: other
# container tools on the machine rely on the same ones).
_node_sysctl() {
  local f="/proc/sys/${1//.//}"
  [[ -w $f ]] && echo "$2" >"$f"
}

node_up() {
  local dir addr bin pki host
  stack_require k8s kafka azurite || return 1
  if node_status; then
    say "node: already running ($(_node_name) Ready)"
    return 0
  fi
  node_install || return 1
  addr=$(node_address)
  [[ -n $addr ]] || {
    fail "node: this machine has no IPv4 address on its default route for pods to reach; set KANAL_NODE_ADDRESS"
    return 1
  }
  # Leftovers of a half-started node, or one whose control plane was restarted.
  node_down
  dir=$(run_dir node) || return 1
  bin=$(_node_bin)
  pki="$(_k8s_dir)/pki"
  host=$(_node_name)
  _node_certs || return 1
  _node_write_config "$dir" "$addr" || return 1
  modprobe br_netfilter 2>/dev/null
  _node_sysctl net.ipv4.ip_forward 1
  _node_sysctl net.bridge.bridge-nf-call-iptables 1

  say "node: starting containerd"
  daemon_start node containerd "$dir/containerd.log" containerd --config "$dir/containerd/config.toml" || return 1
  for _ in $(seq 100); do
    _node_ctr version >/dev/null 2>&1 && break
    sleep 0.2
  done
  _node_ctr version >/dev/null 2>&1 || {
    _node_explain "containerd does not answer on $(_node_sock)"
    return 1
  }
  _node_ctr images import "$KANAL_CACHE/node/pause-$(_node_pause_tag)/pause.tar" >"$dir/import.log" 2>&1 || {
    fail "node: importing the pause image failed; see $dir/import.log"
    tail_log "$dir/import.log"
    return 1
  }

  _node_cluster_objects "$addr" || {
    fail "node: could not create the kube-dns Service and the kubernetes endpoints"
    return 1
  }
  say "node: starting the API server and Azurite forwards on $addr"
  daemon_start node forward-apiserver "$dir/forward-apiserver.log" socat \
    "TCP-LISTEN:$NODE_APISERVER_PORT,bind=$addr,fork,reuseaddr" "TCP:127.0.0.1:$KANAL_K8S_PORT" || return 1
  daemon_start node forward-azurite "$dir/forward-azurite.log" socat \
    "TCP-LISTEN:$NODE_AZURITE_PORT,bind=$addr,fork,reuseaddr" "TCP:127.0.0.1:$AZURITE_PORT" || return 1
  say "node: starting CoreDNS on $addr:$NODE_DNS_PORT"
  daemon_start node coredns "$dir/coredns.log" "$KANAL_CACHE/bin/coredns" -conf "$dir/Corefile" || return 1

  say "node: starting kube-scheduler, kube-proxy and kubelet ($host)"
  daemon_start node kube-scheduler "$dir/kube-scheduler.log" "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$NODE_SCHEDULER_PORT" \
    --leader-elect=false --v=1 || return 1
  daemon_start node kube-proxy "$dir/kube-proxy.log" "$bin/kube-proxy" \
    --config "$dir/kube-proxy.yaml" --v=1 || return 1
  daemon_start node kubelet "$dir/kubelet.log" "$bin/kubelet" \
    --config "$dir/kubelet/config.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
    --node-ip "$addr" --v=1 || return 1

  local end=$((SECONDS + KANAL_NODE_UP_TIMEOUT))
  until _node_ready; do
    for d in "${_NODE_DAEMONS[@]}"; do
      daemon_pid node "$d" >/dev/null || {
        tail_log "$dir/$d.log"
        _node_explain "$d exited during startup"
        return 1
      }
    done
    ((SECONDS < end)) || {
      _node_explain "node $host not Ready after ${KANAL_NODE_UP_TIMEOUT}s ($(_node_kubectl get node "$host" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' 2>&1))"
      return 1
    }
    sleep 0.5
  done
  say "node: $host Ready; pods reach Kafka at $addr:$KAFKA_PODS_PORT, Azurite at http://$addr:$NODE_AZURITE_PORT"
}

# ---------------------------------------------------------------- teardown
# _node_remove_pods: stop every pod sandbox through the CRI so CNI removes each pod's
# veth, address, netns and iptables rules; then containerd's tasks and containers.
_node_remove_pods() {
  local id
  [[ -S $(_node_sock) ]] && daemon_pid node containerd >/dev/null || return 0
  for id in $(_node_ctr containers list -q 2>/dev/null); do
    _node_ctr tasks kill --signal SIGKILL "$id" >/dev/null 2>&1
  done
  sleep 0.5
  for id in $(_node_ctr containers list -q 2>/dev/null); do
    _node_ctr tasks delete --force "$id" >/dev/null 2>&1
    _node_ctr containers delete "$id" >/dev/null 2>&1
  done
}

# _node_iptables_cleanup: the chains kubelet, kube-proxy and the CNI plugins made (KUBE-*,
# CNI-*) and every rule jumping to them.
_node_iptables_cleanup() {
  local cmd table rule chain chains
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in nat filter mangle; do
      chains=$("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}')
      [[ -n $chains ]] || continue
      "$cmd" -t "$table" -S 2>/dev/null | grep -E -- '-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' |
        while read -r rule; do
          # iptables -S quotes comments the way a shell does
          eval "$cmd -t $table ${rule/-A /-D }" 2>/dev/null
        done
      for chain in $chains; do "$cmd" -t "$table" -F "$chain" 2>/dev/null; done
      for chain in $chains; do "$cmd" -t "$table" -X "$chain" 2>/dev/null; done
    done
  done
}

node_down() {
  local dir d m ns
  dir=$(_node_dir)
  [[ -d $dir ]] || return 0
  if k8s_status 2>/dev/null; then
    _node_kubectl delete node "$(_node_name)" --ignore-not-found --wait=false >/dev/null 2>&1
  fi
  for d in kubelet kube-scheduler kube-proxy coredns forward-apiserver forward-azurite; do
    daemon_stop node "$d" >/dev/null
  done
  # Sandboxes' network namespaces, as containerd named them.
  local netns=()
  if daemon_pid node containerd >/dev/null; then
    mapfile -t netns < <(_node_ctr containers list -q 2>/dev/null | while read -r d; do
      _node_ctr containers info "$d" 2>/dev/null | grep -o '"/var/run/netns/cni-[^"]*"' | tr -d '"'
    done | sort -u)
  fi
  _node_remove_pods
  daemon_stop node containerd >/dev/null
  # Shims left behind by a containerd that died.
  for d in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $(_node_sock)"); do kill -KILL "$d" 2>/dev/null; done
  for ns in "${netns[@]}"; do
    umount "$ns" 2>/dev/null
    rm -f "$ns"
  done
  # Mounts under the node's dirs (rootfs overlays, shm, volumes), deepest first.
  while read -r m; do
    umount -l "$m" 2>/dev/null
  done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  for d in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$d" 2>/dev/null
  done
  ip link delete "$NODE_BRIDGE" 2>/dev/null
  [[ -x $(_node_bin)/kube-proxy ]] && "$(_node_bin)/kube-proxy" --cleanup >/dev/null 2>&1
  _node_iptables_cleanup
  rm -rf "$dir/cni/ipam" "$dir/kubelet" "$dir/containerd/state"
  return 0
}

node_env() {
  local addr
  addr=$(node_address)
  env_line KANAL_NODE_NAME "$(_node_name)"
  if node_status 2>/dev/null; then env_line KANAL_NODE_READY 1; else env_line KANAL_NODE_READY 0; fi
  env_line KANAL_NODE_ADDRESS "$addr"
  env_line KANAL_NODE_KAFKA_BOOTSTRAP "$addr:$KAFKA_PODS_PORT"
  env_line KANAL_NODE_AZURITE_BLOB_ENDPOINT "http://$addr:$NODE_AZURITE_PORT/devstoreaccount1"
  env_line KANAL_NODE_CONTAINERD_ADDRESS "$(_node_sock)"
}

# _node_image_config NAME: the config digest of image NAME in containerd (its image id).
_node_image_config() {
  local manifest
  manifest=$(_node_ctr images ls "name==$1" 2>/dev/null | awk 'NR == 2 {print $3}')
  [[ -n $manifest ]] || return 1
  _node_ctr content get "$manifest" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["digest"])' 2>/dev/null
}

# _node_imported ARCHIVE: every tag of this docker-archive names its image in containerd
# already (importing 600 MB again takes a minute).
_node_imported() {
  local lines config tag
  lines=$(tar -xOf "$1" manifest.json 2>/dev/null | python3 -c 'import json, sys
manifest = json.load(sys.stdin)[0]
print("sha256:" + manifest["Config"].split("/")[-1].removesuffix(".json").removeprefix("sha256:"))
print("\n".join(manifest.get("RepoTags") or []))' 2>/dev/null) || return 1
  config=$(head -n 1 <<<"$lines")
  while read -r tag; do
    [[ -n $tag ]] || return 1
    [[ $tag == */* ]] || tag="docker.io/library/$tag"
    [[ "$(_node_image_config "$tag")" == "$config" ]] || return 1
  done < <(sed 1d <<<"$lines")
}

node_run() {
  local cmd=${1:-} archive
  shift
  case $cmd in
  import)
    (($#)) || {
      fail "usage: dev/stack run node import ARCHIVE.tar..."
      return 1
    }
    for archive in "$@"; do
      _node_imported "$archive" && continue
      _node_ctr images import "$archive" || {
        fail "node: importing $archive failed (is the node up, and is it a docker-archive or OCI tar?)"
        return 1
      }
    done
    ;;
  ctr) _node_ctr "$@" ;;
  *)
    fail "usage: dev/stack run node import ARCHIVE... | ctr ARGS..."
    return 1
    ;;
  esac
}
