# shellcheck shell=bash
# dev/stack service "s3": an S3 server, versitygw with its posix backend (buckets are
# directories under $KANAL_RUN/s3/data, kept across restarts), http://127.0.0.1:17070.
#
# Built once with `go install github.com/versity/versitygw/cmd/versitygw@VERSION` and
# the Go toolchain on PATH, into $KANAL_CACHE/versitygw/<version> (Go caches in
# $KANAL_CACHE/go, shared with dev/tools.sh). Runtime in $KANAL_RUN/s3/{s3.log,s3.pid}.
#
# Two accounts: the root account (KANAL_S3_ACCESS_KEY / KANAL_S3_SECRET_KEY) and a
# plain user (KANAL_S3_USER_ACCESS_KEY / KANAL_S3_USER_SECRET_KEY) that owns no bucket,
# so writing with it into a root-owned bucket is refused, as with a read-only key.
# Accounts live in the internal IAM directory; the admin API listens on 17071.

VERSITYGW_VERSION=v1.8.0
S3_PORT=17070
S3_ADMIN_PORT=17071
S3_REGION=us-east-1
# Fixed development credentials of this local server only.
S3_ACCESS_KEY=kanal-s3-root
S3_SECRET_KEY=kanal-s3-root-secret
S3_USER_ACCESS_KEY=kanal-s3-user
S3_USER_SECRET_KEY=kanal-s3-user-secret
: "${KANAL_S3_UP_TIMEOUT:=60}"

_s3_bin() { printf '%s\n' "$KANAL_CACHE/versitygw/$VERSITYGW_VERSION/versitygw"; }

s3_ports() { echo "$S3_PORT $S3_ADMIN_PORT"; }

s3_install() {
  local bin tmp t0=$SECONDS
  bin=$(_s3_bin)
  [[ -x $bin ]] && return 0
  if ! command -v go >/dev/null; then
    fail "s3: Go is needed on PATH to build versitygw"
    return 1
  fi
  mkdir -p "$KANAL_CACHE/versitygw" || return 1
  tmp=$(mktemp -d "$KANAL_CACHE/versitygw/.build.XXXXXX") || return 1
  say "s3: building versitygw $VERSITYGW_VERSION (first time only; a few minutes)"
  if ! (
    export GOMODCACHE="$KANAL_CACHE/go/mod" GOCACHE="$KANAL_CACHE/go/build"
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
    GOBIN="$tmp" go install -trimpath -ldflags="-s -w" \
      "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  ) >"$tmp.log" 2>&1; then
    fail "s3: go install versitygw failed; see $tmp.log"
    tail_log "$tmp.log"
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$(dirname "$bin")" && mv -f "$tmp/versitygw" "$bin" || return 1
  rm -rf "$tmp" "$tmp.log"
  say "s3: versitygw installed in $(dirname "$bin") ($((SECONDS - t0))s)"
}

s3_status() {
  daemon_pid s3 s3 "$S3_PORT" >/dev/null && port_open "$KANAL_HOST" "$S3_PORT"
}

_s3_admin() {
  "$(_s3_bin)" admin --access "$S3_ACCESS_KEY" --secret "$S3_SECRET_KEY" \
    --endpoint-url "http://$KANAL_HOST:$S3_ADMIN_PORT" "$@"
}

# The plain user; created once (the IAM directory keeps it across restarts). The admin
# API answers "Bad Gateway" now and then while another client writes its IAM directory
# (two clones bringing the stack up at once), so both steps are tried again.
_s3_user() {
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    _s3_admin list-users 2>/dev/null | grep -q "$S3_USER_ACCESS_KEY" && return 0
    _s3_admin create-user --access "$S3_USER_ACCESS_KEY" --secret "$S3_USER_SECRET_KEY" \
      --role user >/dev/null 2>&1 && return 0
    sleep "$attempt"
  done
  return 1
}

s3_up() {
  local dir log pid
  s3_install || return 1
  dir=$(run_dir s3) || return 1
  log="$dir/s3.log"
  if pid=$(daemon_pid s3 s3 "$S3_PORT"); then
    if wait_healthy s3 s3 15 "$log" port_open "$KANAL_HOST" "$S3_PORT"; then
      # a start that could not create the user (its admin port not answering yet) must
      # not leave a server that the tests' second account cannot use
      if ! _s3_user; then
        fail "s3: could not create the user account $S3_USER_ACCESS_KEY; see $log"
        return 1
      fi
      say "s3: already running (pid $pid)"
      return 0
    fi
    say "s3: restarting (pid $pid does not listen on $S3_PORT)"
    daemon_stop s3 s3 >/dev/null
  fi
  ensure_port_free "$S3_PORT" s3 || return 1
  ensure_port_free "$S3_ADMIN_PORT" s3 || return 1
  mkdir -p "$dir/data" "$dir/iam" || return 1
  say "s3: starting versitygw on $KANAL_HOST:$S3_PORT"
  daemon_start s3 s3 "$log" "$(_s3_bin)" --access "$S3_ACCESS_KEY" --secret "$S3_SECRET_KEY" \
    --region "$S3_REGION" --port "$KANAL_HOST:$S3_PORT" --admin-port "$KANAL_HOST:$S3_ADMIN_PORT" \
    --iam-dir "$dir/iam" --quiet posix "$dir/data" || return 1
  wait_healthy s3 s3 "$KANAL_S3_UP_TIMEOUT" "$log" port_open "$KANAL_HOST" "$S3_PORT" || return 1
  wait_healthy s3 s3 "$KANAL_S3_UP_TIMEOUT" "$log" port_open "$KANAL_HOST" "$S3_ADMIN_PORT" ||
    return 1
  if ! _s3_user; then
    fail "s3: could not create the user account $S3_USER_ACCESS_KEY; see $log"
    return 1
  fi
  say "s3: ready on http://$KANAL_HOST:$S3_PORT (pid $(daemon_pid s3 s3))"
}

s3_down() {
  local pid
  pid=$(daemon_stop s3 s3 "$S3_PORT") || return 1
  [[ -z $pid ]] || say "s3: stopped (pid $pid)"
}

s3_env() {
  env_line KANAL_S3_ENDPOINT "http://$KANAL_HOST:$S3_PORT"
  env_line KANAL_S3_ACCESS_KEY "$S3_ACCESS_KEY"
  env_line KANAL_S3_SECRET_KEY "$S3_SECRET_KEY"
  env_line KANAL_S3_REGION "$S3_REGION"
  env_line KANAL_S3_USER_ACCESS_KEY "$S3_USER_ACCESS_KEY"
  env_line KANAL_S3_USER_SECRET_KEY "$S3_USER_SECRET_KEY"
}
