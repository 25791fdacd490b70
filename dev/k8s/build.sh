#!/usr/bin/env bash
# Build Kubernetes for dev/stack from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kubectl  (module dev/k8s/kube)
#   etcd 3.6                                         (module dev/k8s/etcd)
# and, when asked for (the node service does), kubelet, kube-scheduler, kube-proxy
# from the same pinned k8s.io/kubernetes module.
#
# usage: dev/k8s/build.sh OUTDIR [COMMAND...]
#   COMMAND: commands of k8s.io/kubernetes/cmd to build (default: the control plane:
#   kube-apiserver kubectl kube-controller-manager, and etcd).
#
# Writes the binaries and OUTDIR/STAMP. When OUTDIR/STAMP already matches what
# this checkout would build (versions + go.mod/go.sum hashes) and every binary asked
# for is present, it does nothing and prints nothing; progress goes to stderr. Module
# and build caches live under $KANAL_CACHE/go (mod/, build/) so later builds, and fresh
# clones, reuse them.
#
# KANAL_K8S_NO_KCM=1 skips kube-controller-manager in the default set (saves a few
# build minutes; Deployments then never get ReplicaSets/Pods).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUTDIR [COMMAND...]}
shift
: "${KANAL_CACHE:=$HOME/.cache/kanal}"

# The versions are the ones pinned by the two go.mod files.
kube_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")
etcd_version=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
[[ -n $kube_version && -n $etcd_version ]] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }

if (($#)); then
  cmds=("$@")
  with_etcd=0
else
  cmds=(kube-apiserver kubectl)
  [[ ${KANAL_K8S_NO_KCM:-0} == 1 ]] || cmds+=(kube-controller-manager)
  with_etcd=1
fi
every_binary=(kube-apiserver kubectl kube-controller-manager kubelet kube-scheduler kube-proxy etcd)

stamp() {
  echo "kubernetes $kube_version"
  echo "etcd $etcd_version"
  cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/etcd/main.go" \
    | sha256sum | awk '{print "modules " $1}'
}

up_to_date() {
  [[ -f $out/STAMP ]] || return 1
  [[ "$(cat "$out/STAMP")" == "$(stamp)" ]] || return 1
  local c
  for c in "${cmds[@]}"; do [[ -x $out/$c ]] || return 1; done
  ((!with_etcd)) || [[ -x $out/etcd ]]
}

up_to_date && exit 0   # quiet when cached
exec 1>&2               # progress goes to stderr; stdout stays empty

command -v go >/dev/null || { echo "build.sh: needs Go >= 1.26 on PATH" >&2; exit 1; }
gov=$(go env GOVERSION)             # go1.26.8
gomin=${gov#go1.}; gomin=${gomin%%[!0-9]*}
if [[ $gov != go1.* || -z $gomin || $gomin -lt 26 ]]; then
  echo "build.sh: Kubernetes ${kube_version} needs Go >= 1.26, found $gov" >&2
  exit 1
fi

export GOMODCACHE="$KANAL_CACHE/go/mod"
export GOCACHE="$KANAL_CACHE/go/build"
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOWORK=off
mkdir -p "$GOMODCACHE" "$GOCACHE" "$out"

# What hack/lib/version.sh would stamp, so `kubectl version` and the apiserver's
# /version report the real release instead of v0.0.0-master.
v=${kube_version#v}
major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done

tmp="$out/.build.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

t0=$SECONDS
if ((with_etcd)); then
  echo "building etcd $etcd_version ..."
  (cd "$here/etcd" && go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" .)
  echo "  etcd done in $((SECONDS - t0))s"
  cmds+=(etcd)
fi

t1=$SECONDS
pkgs=()
for c in "${cmds[@]}"; do [[ $c == etcd ]] || pkgs+=("k8s.io/kubernetes/cmd/$c"); done
echo "building ${pkgs[*]##*/} $kube_version (slow on 2 cores the first time) ..."
# One invocation so the shared packages compile once.
(cd "$here/kube" && go build -trimpath -ldflags="$ld" -o "$tmp/" "${pkgs[@]}")
echo "  kubernetes done in $((SECONDS - t1))s"

# A binary from an older build must not outlive a version change.
if [[ "$(cat "$out/STAMP" 2>/dev/null)" != "$(stamp)" ]]; then
  rm -f "$out/STAMP"
  for c in "${every_binary[@]}"; do rm -f "${out:?}/$c"; done
fi
for c in "${cmds[@]}"; do mv -f "$tmp/$c" "$out/$c"; done
stamp > "$out/STAMP"
echo "k8s binaries built in $out in $((SECONDS - t0))s"
