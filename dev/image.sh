#!/usr/bin/env bash
# dev/image.sh: build the Kanal image with whatever builder the machine has, and keep a
# docker-archive of it for `kind load image-archive` and `ctr -n k8s.io images import`.
#
#   dev/image.sh [build]   build kanal:<version> unless the sources are unchanged since the
#                          last build (`make image` runs this)
#   dev/image.sh ref       print the image reference pods use (kanal:<version>)
#   dev/image.sh archive   print the path of the docker-archive, building it if needed
#   dev/image.sh builder   print the builder command (docker or podman), installing
#                          podman if the machine has neither
#   dev/image.sh run ARGS  `docker run --rm ARGS` / `podman run --rm ARGS` with the options
#                          this machine needs, e.g. dev/image.sh run kanal:0.1.0 --help
#
# Builder: docker when a Docker engine answers, else podman. On a Debian machine with
# neither, podman, runc and the CNI plugins are installed with apt-get (as root). podman
# runs with runc (crun fails on hybrid cgroup layouts) and with the build's ulimits set
# explicitly (raising them needs CAP_SYS_RESOURCE, which VMs and containers often lack).
#
# Base image: the Dockerfile's default (the public python image) when it is present or
# can be pulled. When no image registry is reachable, a Debian base with the same Python
# minor version is built once with debootstrap from the host's own apt mirror, trusts the
# host's extra CA certificates (/usr/local/share/ca-certificates, for HTTPS-intercepting
# proxies) and is passed as PYTHON_IMAGE; it is cached under $KANAL_CACHE/image, keyed by
# what it contains.
#
# Environment:
#   KANAL_BUILDER   docker or podman (default: the first that works, see above)
#   PYTHON_IMAGE    base image for the Dockerfile (default: its own, else the local base)
#   KANAL_CACHE     cache directory (default ~/.cache/kanal)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${KANAL_CACHE:=$HOME/.cache/kanal}"
IMAGE_CACHE="$KANAL_CACHE/image"
NAME=kanal
# Debian release and Python of the local base: the public base's, bookworm and 3.11.
BASE_SUITE=bookworm
BASE_PYTHON=python3.11
# python3-distutils: python3.11-venv needs it through a virtual package, which
# debootstrap does not resolve.
BASE_PACKAGES="$BASE_PYTHON,$BASE_PYTHON-venv,python3-distutils,ca-certificates"
# Bump when the recipe of the local base changes, so cached bases are rebuilt.
BASE_RECIPE=1
LOG_LINES=30

say() { printf '[image] %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}
# fail_with_log LOG WHAT FIX: name what failed, show the end of its log, say the fix.
fail_with_log() {
  local log=$1 what=$2 fix=$3
  say "ERROR: $what failed"
  if [[ -s $log ]]; then
    say "---- last $LOG_LINES lines of $log ----"
    tail -n "$LOG_LINES" "$log" | sed 's/^/    /' >&2
    say "----"
  fi
  say "fix: $fix"
  exit 1
}

version() {
  local v
  v=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/worker/kanal_worker/__init__.py")
  [[ -n $v ]] || die "no __version__ in worker/kanal_worker/__init__.py"
  printf '%s\n' "$v"
}

ref() { printf '%s:%s\n' "$NAME" "$(version)"; }

# ------------------------------------------------------------------ builder
apt_install() {
  [[ $(id -u) == 0 ]] || die "installing $* needs root (or install them yourself: apt-get install $*)"
  command -v apt-get >/dev/null || die "no apt-get to install $*: install $* yourself"
  local log="$IMAGE_CACHE/apt.log"
  mkdir -p "$IMAGE_CACHE"
  say "installing $* with apt-get"
  {
    apt-get -o DPkg::Lock::Timeout=600 update &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends "$@"
  } >"$log" 2>&1 || fail_with_log "$log" "apt-get install $*" \
    "check the apt sources and network, then run: apt-get install $*"
}

docker_works() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

builder() {
  case ${KANAL_BUILDER:-} in
    docker)
      docker_works || die "KANAL_BUILDER=docker but 'docker info' fails; start the Docker engine"
      echo docker
      return
      ;;
    podman | "") ;;
    *) die "KANAL_BUILDER=$KANAL_BUILDER: use docker or podman" ;;
  esac
  if [[ -z ${KANAL_BUILDER:-} ]] && docker_works; then
    echo docker
    return
  fi
  if ! command -v podman >/dev/null || [[ ! -x /usr/sbin/runc ]]; then
    command -v apt-get >/dev/null ||
      die "neither Docker nor podman on this machine, and no apt-get to install podman: install Docker or podman"
    # RUN steps get their network from the CNI bridge plugin, which needs iptables
    apt_install podman runc containernetworking-plugins iptables
  fi
  echo podman
}

# b ARGS...: run the builder with the options this machine needs.
b() {
  if [[ $BUILDER == podman ]]; then
    podman --runtime /usr/sbin/runc "$@"
  else
    docker "$@"
  fi
}

ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

image_exists() {
  if [[ $BUILDER == podman ]]; then
    podman image exists "$1"
  else
    docker image inspect "$1" >/dev/null 2>&1
  fi
}

# ------------------------------------------------------------------ base image
dockerfile_base() { sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/Dockerfile"; }

# The first mirror of the host's Debian apt sources (deb822 or one-line format).
debian_mirror() {
  local mirror
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ {print $2}' | grep -v -e security -e '^$' | head -n1 || true)
  if [[ -z $mirror ]]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' |
      grep -v security | head -n1 || true)
  fi
  [[ -n $mirror ]] || die "no Debian mirror in /etc/apt/sources.list*; set PYTHON_IMAGE to a reachable python:3.11 image"
  printf '%s\n' "$mirror"
}

extra_ca_certs() { find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort; }

# The local base's key: everything that goes into it.
base_key() {
  {
    printf '%s\n' "$BASE_RECIPE" "$BASE_SUITE" "$BASE_PACKAGES" "$(debian_mirror)"
    extra_ca_certs | xargs -r cat
  } | sha256sum | cut -c1-16
}

build_local_base() {
  local tag=$1 tarball=$2 rootfs log
  command -v debootstrap >/dev/null || apt_install debootstrap
  rootfs=$(mktemp -d "$IMAGE_CACHE/rootfs.XXXXXX")
  log="$IMAGE_CACHE/base.log"
  say "building the local base $tag with debootstrap ($BASE_SUITE, $BASE_PACKAGES; about a minute)"
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" EXIT
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" \
    "$(debian_mirror)" >"$log" 2>&1 || {
    # dpkg's own messages (which package failed to configure, and why) are in here
    cat "$rootfs/debootstrap/debootstrap.log" >>"$log" 2>/dev/null
    fail_with_log "$log" "debootstrap of the local base" \
      "check the Debian mirror in /etc/apt/sources.list*, or set PYTHON_IMAGE to a reachable python:3.11 image"
  }
  # What the public python image offers and the Dockerfile uses: `python` on PATH.
  ln -sf "/usr/bin/$BASE_PYTHON" "$rootfs/usr/local/bin/python"
  # Trust the host's extra CAs, so pip in RUN steps gets through an intercepting proxy.
  extra_ca_certs | xargs -r cp -t "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >>"$log" 2>&1 ||
    fail_with_log "$log" "update-ca-certificates in the local base" "see the log above"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv -f "$tarball.tmp" "$tarball"
  find "$IMAGE_CACHE" -maxdepth 1 -name 'debian-base-*.tar' ! -path "$tarball" -delete
  rm -rf "$rootfs"
  trap - EXIT
}

# base: print the PYTHON_IMAGE to build from.
base() {
  if [[ -n ${PYTHON_IMAGE:-} ]]; then
    printf '%s\n' "$PYTHON_IMAGE"
    return
  fi
  local public key tag tarball
  public=$(dockerfile_base)
  key=$(base_key)
  tag="localhost/kanal-base:$BASE_SUITE-$key"
  if image_exists "$public" || image_exists "$tag"; then
    image_exists "$public" && echo "$public" || echo "$tag"
    return
  fi
  if timeout 120 "$BUILDER" pull -q "$public" >"$IMAGE_CACHE/pull.log" 2>&1; then
    echo "$public"
    return
  fi
  say "cannot pull $public (no image registry reachable): using a local Debian base"
  tarball="$IMAGE_CACHE/debian-base-$BASE_SUITE-$key.tar"
  [[ -s $tarball ]] || build_local_base "$tag" "$tarball"
  b import --change 'CMD ["python3"]' "$tarball" "$tag" >"$IMAGE_CACHE/import.log" 2>&1 ||
    fail_with_log "$IMAGE_CACHE/import.log" "$BUILDER import of the local base" \
      "remove $tarball and run 'make image' again"
  echo "$tag"
}

# ------------------------------------------------------------------ image
# Everything the build context holds (see .dockerignore), plus the Dockerfile: the image
# is rebuilt only when this changes.
sources_hash() {
  (
    cd "$ROOT"
    find Dockerfile .dockerignore pyproject.toml README.md requirements.lock worker operator \
      -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -path '*.egg-info/*' \
      -print0 2>/dev/null | sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-16
}

# The build's key: the sources, and the base when it is chosen by hand.
build_key() {
  if [[ -n ${PYTHON_IMAGE:-} ]]; then
    printf '%s %s\n' "$(sources_hash)" "$PYTHON_IMAGE" | sha256sum | cut -c1-16
  else
    sources_hash
  fi
}

archive_path() { printf '%s/%s-%s-%s.tar\n' "$IMAGE_CACHE" "$NAME" "$(version)" "$1"; }

# tag_current BUILD_TAG: point kanal:<version> (both spellings) at BUILD_TAG.
tag_current() {
  local image
  image=$(ref)
  b tag "$1" "$image" && b tag "$1" "docker.io/library/$image"
}

build() {
  local image key archive log base_image started
  image=$(ref)
  key=$(build_key)
  archive=$(archive_path "$key")
  # Every build keeps its own tag: clones of the repository sharing the machine (and so
  # kanal:<version>) switch between their builds by retagging, not rebuilding.
  local build_tag="$image-$key"
  if [[ -s $archive ]] && ! image_exists "$build_tag"; then
    # the builder's storage was emptied, the archive of these sources is still here
    b load -i "$archive" >/dev/null 2>&1 && b tag "docker.io/library/$image" "$build_tag" || true
  fi
  if [[ -s $archive ]] && image_exists "$build_tag"; then
    tag_current "$build_tag"
    say "$image is up to date (build $key)"
    return
  fi
  base_image=$(base)
  log="$IMAGE_CACHE/build.log"
  say "building $image with $BUILDER from $base_image"
  started=$SECONDS
  b build "${ULIMITS[@]}" --build-arg "PYTHON_IMAGE=$base_image" -t "$build_tag" "$ROOT" \
    >"$log" 2>&1 ||
    fail_with_log "$log" "$BUILDER build of $image" \
      "fix the step that failed above, then run 'make image' again"
  tag_current "$build_tag"
  say "built $image in $((SECONDS - started)) s; writing $archive"
  # Named as containerd and kind resolve `kanal:<version>` (podman's own short name
  # would be localhost/kanal:<version>).
  b save -o "$archive.tmp" "docker.io/library/$image" >"$log" 2>&1 ||
    fail_with_log "$log" "$BUILDER save of $image" "see the log above"
  mv -f "$archive.tmp" "$archive"
  prune
}

# prune: keep the three newest builds (other clones' scripts may be importing theirs).
prune() {
  local old
  find "$IMAGE_CACHE" -maxdepth 1 -name "$NAME-[0-9]*.tar" -printf '%T@ %p\n' | sort -rn |
    tail -n +4 | cut -d' ' -f2- | while read -r old; do
    rm -f "$old"
    old=${old##*/}
    old=${old%.tar}
    b rmi "$NAME:${old#"$NAME"-}" >/dev/null 2>&1 || true
  done
}

print_builder() { printf '%s\n' "$BUILDER"; }

run() { b run --rm "${ULIMITS[@]}" "$@"; }

locked() {
  mkdir -p "$IMAGE_CACHE"
  exec 9>"$IMAGE_CACHE/.lock"
  flock 9
  BUILDER=$(builder)
  "$@"
}

case ${1:-build} in
  build) locked build ;;
  ref) ref ;;
  archive)
    locked build
    archive_path "$(build_key)"
    ;;
  builder) locked print_builder ;;
  run)
    shift
    BUILDER=$(builder)
    run "$@"
    ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "usage: dev/image.sh [build|ref|archive|builder|run ARGS...]" ;;
esac
