#!/usr/bin/env bash
# Build Argo CD for dev/stack from the Go module proxy: argo-cd's multi-call binary
# (module dev/argocd), which runs as the application controller, the repo server or
# the `argocd` CLI depending on its name (argv[0] or ARGOCD_BINARY_NAME).
#
# usage: dev/argocd/build.sh OUTDIR
#
# Writes OUTDIR/argocd, the links argocd-application-controller and
# argocd-repo-server, argo-cd's CRDs (its manifests/crds) in OUTDIR/crds/, the
# ConfigMaps and Secret its install starts with (manifests/base/config) in
# OUTDIR/config/, the helper scripts its image puts on PATH (hack/gpg-wrapper.sh,
# hack/git-verify-wrapper.sh: the repo server runs them for every Git revision), and
# OUTDIR/STAMP. When OUTDIR/STAMP already matches what this
# checkout would build (go.mod/go.sum hashes) it does nothing and prints nothing;
# progress goes to stderr. Module and build caches live under $KANAL_CACHE/go (mod/,
# build/), shared with the other Go builds, so later builds and fresh clones reuse them.
#
# argo-cd 3.6 needs Go 1.27 (its gitops-engine module declares it). The toolchain named
# in go.mod is fetched through the module proxy by the local Go (>= 1.21) once and kept
# in the module cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUTDIR}
: "${KANAL_CACHE:=$HOME/.cache/kanal}"

argocd_version=$(awk '$1=="require" && $2=="github.com/argoproj/argo-cd/v3" {print $3}' "$here/go.mod")
toolchain=$(awk '$1=="toolchain" {print $2}' "$here/go.mod")
[[ -n $argocd_version && -n $toolchain ]] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }
links=(argocd-application-controller argocd-repo-server)

stamp() {
  echo "argo-cd $argocd_version $toolchain"
  cat "$here/go.mod" "$here/go.sum" | sha256sum | awk '{print "modules " $1}'
}

up_to_date() {
  [[ -f $out/STAMP && "$(cat "$out/STAMP")" == "$(stamp)" && -x $out/argocd ]] || return 1
  [[ -f $out/crds/application-crd.yaml && -f $out/config/argocd-cm.yaml ]] || return 1
  [[ -x $out/git-verify-wrapper.sh && -x $out/gpg-wrapper.sh ]] || return 1
  local l
  for l in "${links[@]}"; do [[ -L $out/$l ]] || return 1; done
}

up_to_date && exit 0   # quiet when cached
exec 1>&2               # progress goes to stderr; stdout stays empty

command -v go >/dev/null || { echo "build.sh: needs Go >= 1.21 on PATH (it fetches $toolchain itself)" >&2; exit 1; }

export GOMODCACHE="$KANAL_CACHE/go/mod"
export GOCACHE="$KANAL_CACHE/go/build"
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOTOOLCHAIN=$toolchain
export CGO_ENABLED=0
export GOWORK=off
mkdir -p "$GOMODCACHE" "$GOCACHE" "$out"

# What argo-cd's Makefile stamps, so `argocd version` reports the release.
pkg=github.com/argoproj/argo-cd/v3/common
ld="-s -w -X $pkg.version=${argocd_version#v} -X $pkg.gitTag=$argocd_version"
ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

tmp="$out/.build.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

t0=$SECONDS
echo "building argo-cd $argocd_version with $toolchain (20-40 minutes on 2 cores the first time) ..."
(cd "$here" && nice go build -trimpath -ldflags="$ld" -o "$tmp/argocd" github.com/argoproj/argo-cd/v3/cmd)

mkdir -p "$tmp/crds" "$tmp/config"
src=$(cd "$here" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
cp "$src"/manifests/crds/*-crd.yaml "$tmp/crds/"
cp "$src"/manifests/base/config/{argocd-cm,argocd-secret,argocd-rbac-cm}.yaml "$tmp/config/"
install -m 0755 "$src"/hack/gpg-wrapper.sh "$src"/hack/git-verify-wrapper.sh "$tmp/"

# A binary from an older build must not outlive a version change.
rm -rf "$out/STAMP" "$out/argocd" "$out/crds" "$out/config" "$out"/*-wrapper.sh
mv -f "$tmp/argocd" "$tmp/crds" "$tmp/config" "$tmp"/*-wrapper.sh "$out/"
for l in "${links[@]}"; do ln -sfn argocd "$out/$l"; done
stamp > "$out/STAMP"
echo "argo-cd built in $out in $((SECONDS - t0))s"
