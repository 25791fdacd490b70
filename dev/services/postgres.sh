# shellcheck shell=bash
# dev/stack service "postgres": PostgreSQL 15 (Debian postgresql-15, unpacked into
# $KANAL_CACHE/postgres/15 by deb_install) on 127.0.0.1:15432, TCP only, as an
# unprivileged user (deb_command). wal_level=logical with replication slots and
# WAL senders for change data capture. User, password and database are "kanal";
# tests create their own databases and tables with unique names.
#
# Runtime in $KANAL_RUN/postgres: data/ (the cluster), postgres.log, postgres.pid.
# `dev/stack run postgres server DIR PORT [-c NAME=VALUE ...]` runs another, throw-away
# cluster in DIR in the foreground (same binaries and settings, the given ones overriding
# them; initialised when DIR is empty), for tests that stop and restart a database under
# a running connector or need other server settings.

POSTGRES_PORT=15432
POSTGRES_USER=kanal
POSTGRES_PASSWORD=kanal
POSTGRES_DB=kanal
_POSTGRES_PKGS=(postgresql-15)
: "${KANAL_POSTGRES_UP_TIMEOUT:=90}"

_postgres_home() { printf '%s\n' "$KANAL_CACHE/postgres/15"; }
_postgres_bin() { printf '%s\n' "$(_postgres_home)/root/usr/lib/postgresql/15/bin"; }
_postgres_data() { printf '%s\n' "$KANAL_RUN/postgres/data"; }

postgres_ports() { echo "$POSTGRES_PORT"; }

postgres_install() {
  deb_install postgres "$(_postgres_home)" "${_POSTGRES_PKGS[@]}"
}

# _postgres_tool NAME ARGS...: a PostgreSQL program as the service user.
_postgres_tool() {
  local name=$1
  shift
  deb_command "$(_postgres_home)" "$(_postgres_bin)/$name" "$@"
  "${DEB_COMMAND[@]}"
}

# _postgres_init DIR: a new cluster in DIR (superuser kanal/kanal, database kanal),
# unless DIR holds one.
_postgres_init() {
  local data=$1 pwfile
  [[ -f $data/PG_VERSION ]] && return 0
  rm -rf "$data"
  mkdir -p "$data" && chmod 700 "$data" || return 1
  pwfile="$data.pw"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  _postgres_tool initdb -D "$data" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
    --locale=C --auth-host=scram-sha-256 --auth-local=trust >"$data.init.log" 2>&1 || {
    rm -f "$pwfile"
    fail "postgres: initdb $data failed; see $data.init.log"
    tail_log "$data.init.log"
    return 1
  }
  rm -f "$pwfile"
  echo "CREATE DATABASE $POSTGRES_DB" | _postgres_tool postgres --single -D "$data" postgres \
    >>"$data.init.log" 2>&1 || {
    fail "postgres: creating database $POSTGRES_DB failed; see $data.init.log"
    return 1
  }
}

# _postgres_server_cmd DIR PORT: sets _POSTGRES_CMD, the server command line.
_postgres_server_cmd() {
  deb_command "$(_postgres_home)" "$(_postgres_bin)/postgres" -D "$1" -p "$2" \
    -c listen_addresses="$KANAL_HOST" -c unix_socket_directories= \
    -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 \
    -c max_connections=300 -c fsync=off -c jit=off -c log_min_messages=warning
  _POSTGRES_CMD=("${DEB_COMMAND[@]}")
}

# Healthy: the log says so, and the port accepts.
_postgres_ready() {
  port_open "$KANAL_HOST" "$POSTGRES_PORT" &&
    grep -q 'database system is ready to accept connections' "$KANAL_RUN/postgres/postgres.log"
}

postgres_status() {
  daemon_pid postgres postgres "$POSTGRES_PORT" >/dev/null && port_open "$KANAL_HOST" "$POSTGRES_PORT"
}

postgres_up() {
  local dir log pid
  postgres_install || return 1
  dir=$(run_dir postgres) || return 1
  log="$dir/postgres.log"
  if pid=$(daemon_pid postgres postgres "$POSTGRES_PORT"); then
    if wait_healthy postgres postgres 15 "$log" port_open "$KANAL_HOST" "$POSTGRES_PORT"; then
      say "postgres: already running (pid $pid)"
      return 0
    fi
    say "postgres: restarting (pid $pid does not listen on $POSTGRES_PORT)"
    postgres_down
  fi
  ensure_port_free "$POSTGRES_PORT" postgres || return 1
  _postgres_init "$(_postgres_data)" || return 1
  say "postgres: starting on $KANAL_HOST:$POSTGRES_PORT"
  _postgres_server_cmd "$(_postgres_data)" "$POSTGRES_PORT"
  # The log line that wait_healthy looks for must be from this start.
  rm -f "$log"
  daemon_start postgres postgres "$log" "${_POSTGRES_CMD[@]}" -c log_min_messages=log || return 1
  wait_healthy postgres postgres "$KANAL_POSTGRES_UP_TIMEOUT" "$log" _postgres_ready || return 1
  say "postgres: ready on $KANAL_HOST:$POSTGRES_PORT (pid $(daemon_pid postgres postgres))"
}

postgres_down() {
  local pid end
  # SIGINT is PostgreSQL's fast shutdown; SIGTERM (daemon_stop) would wait for
  # every client to disconnect.
  if pid=$(daemon_pid postgres postgres "$POSTGRES_PORT"); then
    kill -INT "$pid" 2>/dev/null
    end=$((SECONDS + KANAL_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
  fi
  pid=$(daemon_stop postgres postgres "$POSTGRES_PORT") || return 1
  [[ -z $pid ]] || say "postgres: stopped (pid $pid)"
}

postgres_env() {
  env_line KANAL_POSTGRES_URL "postgresql://$POSTGRES_USER:$POSTGRES_PASSWORD@$KANAL_HOST:$POSTGRES_PORT/$POSTGRES_DB"
  env_line KANAL_POSTGRES_PASSWORD "$POSTGRES_PASSWORD"
}

postgres_run() {
  if [[ ${1:-} != server || $# -lt 3 ]]; then
    fail "usage: dev/stack run postgres server DIR PORT [-c NAME=VALUE ...]  (a throw-away" \
      "cluster in the foreground; the settings override the service's)"
    return 1
  fi
  if [[ ! -f $(_postgres_home)/STAMP ]]; then
    stack_locked postgres postgres_install || return 1
  fi
  _postgres_init "$2" || return 1
  _postgres_server_cmd "$2" "$3"
  # exec: the caller's pid is the server's, so it can signal it directly.
  exec "${_POSTGRES_CMD[@]}" "${@:4}"
}
