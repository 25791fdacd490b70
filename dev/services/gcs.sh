# shellcheck shell=bash
# dev/stack service "gcs": fake-gcs-server, a Google Cloud Storage emulator speaking
# the JSON API (resumable uploads, generation preconditions), plain HTTP on
# http://127.0.0.1:14443, objects on disk under $KANAL_RUN/gcs/data (kept across
# restarts; `dev/stack reset gcs` forgets every bucket).
#
# Built once with `go install github.com/fsouza/fake-gcs-server@VERSION` (the cached Go
# toolchain, as dev/tools.sh builds its tools) into $KANAL_CACHE/gcs/<version>/.
# Runtime: $KANAL_RUN/gcs/{data,gcs.log,gcs.pid}. KANAL_GCS_SERVER names the binary.

GCS_VERSION=v1.56.1
GCS_PORT=14443
GCS_ENDPOINT="http://$KANAL_HOST:$GCS_PORT"
: "${KANAL_GCS_UP_TIMEOUT:=60}"

_gcs_home() { printf '%s\n' "$KANAL_CACHE/gcs/$GCS_VERSION"; }

gcs_ports() { echo "$GCS_PORT"; }

gcs_install() {
  local home tmp log t0=$SECONDS
  home=$(_gcs_home)
  [[ -x $home/fake-gcs-server ]] && return 0
  command -v go >/dev/null || {
    fail "gcs: needs Go on PATH to build fake-gcs-server $GCS_VERSION"
    return 1
  }
  mkdir -p "$(dirname "$home")" || return 1
  tmp="$home.tmp.$$"
  log="$home.install.log"
  rm -rf "$tmp"
  say "gcs: building fake-gcs-server $GCS_VERSION with go install (first time only; log: $log)"
  if ! (
    export GOMODCACHE="$KANAL_CACHE/go/mod" GOCACHE="$KANAL_CACHE/go/build"
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
    GOBIN="$tmp" go install -trimpath -ldflags="-s -w" "github.com/fsouza/fake-gcs-server@$GCS_VERSION"
  ) >"$log" 2>&1; then
    rm -rf "$tmp"
    fail "gcs: go install github.com/fsouza/fake-gcs-server@$GCS_VERSION failed; see $log"
    tail_log "$log"
    return 1
  fi
  rm -rf "$home"
  mv "$tmp" "$home" || return 1
  say "gcs: built in $home ($((SECONDS - t0))s)"
}

_gcs_healthy() {
  curl -fsS -m 5 -o /dev/null "$GCS_ENDPOINT/storage/v1/b" 2>/dev/null
}

gcs_status() {
  daemon_pid gcs gcs "$GCS_PORT" >/dev/null && _gcs_healthy
}

gcs_up() {
  local dir log pid
  gcs_install || return 1
  dir=$(run_dir gcs) || return 1
  log="$dir/gcs.log"
  if pid=$(daemon_pid gcs gcs "$GCS_PORT"); then
    if wait_healthy gcs gcs 15 "$log" _gcs_healthy; then
      say "gcs: already running (pid $pid)"
      return 0
    fi
    say "gcs: restarting (pid $pid does not answer on $GCS_PORT)"
    daemon_stop gcs gcs >/dev/null
  fi
  ensure_port_free "$GCS_PORT" gcs || return 1
  mkdir -p "$dir/data" || return 1
  say "gcs: starting on $GCS_ENDPOINT"
  # -external-url: the Location of resumable uploads points back here, not at a TLS host.
  daemon_start gcs gcs "$log" "$(_gcs_home)/fake-gcs-server" \
    -scheme http -host "$KANAL_HOST" -port "$GCS_PORT" \
    -external-url "$GCS_ENDPOINT" -public-host "$KANAL_HOST:$GCS_PORT" \
    -backend filesystem -filesystem-root "$dir/data" -log-level warn || return 1
  wait_healthy gcs gcs "$KANAL_GCS_UP_TIMEOUT" "$log" _gcs_healthy || return 1
  say "gcs: ready on $GCS_ENDPOINT (pid $(daemon_pid gcs gcs))"
}

gcs_down() {
  local pid
  pid=$(daemon_stop gcs gcs "$GCS_PORT") || return 1
  [[ -z $pid ]] || say "gcs: stopped (pid $pid)"
}

gcs_env() {
  env_line KANAL_GCS_ENDPOINT "$GCS_ENDPOINT"
  # the binary, for tests that run (and restart) an emulator of their own
  env_line KANAL_GCS_SERVER "$(_gcs_home)/fake-gcs-server"
}
