# shellcheck shell=bash
# dev/stack service "mariadb": MariaDB 10.11 (Debian mariadb-server-core, unpacked into
# $KANAL_CACHE/mariadb/10.11 by deb_install) on 127.0.0.1:13306, as an unprivileged
# user (deb_command). Row-based binary log on, for change data capture. User,
# password and database are "kanal" (all privileges); tests create their own
# databases and tables with unique names.
#
# Runtime in $KANAL_RUN/mariadb: data/, mariadb.sock, mariadb.log, mariadb.pid.

MARIADB_PORT=13306
MARIADB_USER=kanal
MARIADB_PASSWORD=kanal
MARIADB_DB=kanal
_MARIADB_PKGS=(mariadb-server-core)
: "${KANAL_MARIADB_UP_TIMEOUT:=90}"

_mariadb_home() { printf '%s\n' "$KANAL_CACHE/mariadb/10.11"; }
_mariadb_root() { printf '%s\n' "$(_mariadb_home)/root/usr"; }
_mariadb_data() { printf '%s\n' "$KANAL_RUN/mariadb/data"; }

mariadb_ports() { echo "$MARIADB_PORT"; }

mariadb_install() {
  deb_install mariadb "$(_mariadb_home)" "${_MARIADB_PKGS[@]}"
}

# _mariadb_cmd: sets _MARIADB_CMD, mariadbd with the options of this service.
_mariadb_cmd() {
  local usr dir
  usr=$(_mariadb_root)
  dir="$KANAL_RUN/mariadb"
  deb_command "$(_mariadb_home)" "$usr/sbin/mariadbd" --no-defaults --basedir="$usr" --datadir="$(_mariadb_data)" \
    --lc-messages-dir="$usr/share/mysql" --character-sets-dir="$usr/share/mysql/charsets" \
    --plugin-dir="$usr/lib/mysql/plugin" --tmpdir="$dir" --socket="$dir/mariadb.sock" \
    --pid-file="$(_mariadb_data)/mariadbd.pid" --bind-address="$KANAL_HOST" --port="$MARIADB_PORT" \
    --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-connections=300 --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 \
    --server-id=1 --log-bin=mariadb-bin --binlog-format=ROW --expire-logs-days=1
  _MARIADB_CMD=("${DEB_COMMAND[@]}")
}

# _mariadb_init: the system tables and the kanal user and database, unless data/ has them.
_mariadb_init() {
  local data usr log
  data=$(_mariadb_data)
  usr=$(_mariadb_root)
  log="$KANAL_RUN/mariadb/init.log"
  [[ -d $data/mysql ]] && return 0
  rm -rf "$data"
  mkdir -p "$data" || return 1
  _mariadb_cmd
  if ! {
    printf '%s\n' "CREATE DATABASE IF NOT EXISTS mysql;" "USE mysql;" "SET @auth_root_socket=NULL;"
    cat "$usr/share/mysql/mysql_system_tables.sql" "$usr/share/mysql/mysql_performance_tables.sql" \
      "$usr/share/mysql/mysql_system_tables_data.sql"
    # Bootstrap runs without grant tables, so no CREATE USER: the account's row is
    # written as the system tables' own script writes root's.
    echo "DELETE FROM global_priv WHERE User='root' AND Host<>'localhost';"
    echo "INSERT INTO global_priv VALUES ('%', '$MARIADB_USER', JSON_SET(@all_privileges, '\$.plugin', 'mysql_native_password', '\$.authentication_string', PASSWORD('$MARIADB_PASSWORD')));"
    echo "CREATE DATABASE $MARIADB_DB;"
  } | "${_MARIADB_CMD[@]}" --bootstrap --log-warnings=0 >"$log" 2>&1; then
    rm -rf "$data"
    fail "mariadb: creating the system tables failed; see $log"
    tail_log "$log"
    return 1
  fi
}

# Healthy: the log says so, and the port accepts.
_mariadb_ready() {
  port_open "$KANAL_HOST" "$MARIADB_PORT" &&
    grep -q 'ready for connections' "$KANAL_RUN/mariadb/mariadb.log"
}

mariadb_status() {
  daemon_pid mariadb mariadb "$MARIADB_PORT" >/dev/null && port_open "$KANAL_HOST" "$MARIADB_PORT"
}

mariadb_up() {
  local dir log pid
  mariadb_install || return 1
  dir=$(run_dir mariadb) || return 1
  log="$dir/mariadb.log"
  if pid=$(daemon_pid mariadb mariadb "$MARIADB_PORT"); then
    if wait_healthy mariadb mariadb 15 "$log" port_open "$KANAL_HOST" "$MARIADB_PORT"; then
      say "mariadb: already running (pid $pid)"
      return 0
    fi
    say "mariadb: restarting (pid $pid does not listen on $MARIADB_PORT)"
    mariadb_down
  fi
  ensure_port_free "$MARIADB_PORT" mariadb || return 1
  _mariadb_init || return 1
  say "mariadb: starting on $KANAL_HOST:$MARIADB_PORT"
  _mariadb_cmd
  # The log line that wait_healthy looks for must be from this start.
  rm -f "$log"
  daemon_start mariadb mariadb "$log" "${_MARIADB_CMD[@]}" || return 1
  wait_healthy mariadb mariadb "$KANAL_MARIADB_UP_TIMEOUT" "$log" _mariadb_ready || return 1
  say "mariadb: ready on $KANAL_HOST:$MARIADB_PORT (pid $(daemon_pid mariadb mariadb))"
}

mariadb_down() {
  local pid
  pid=$(daemon_stop mariadb mariadb "$MARIADB_PORT") || return 1
  [[ -z $pid ]] || say "mariadb: stopped (pid $pid)"
}

mariadb_env() {
  env_line KANAL_MARIADB_URL "mysql://$MARIADB_USER:$MARIADB_PASSWORD@$KANAL_HOST:$MARIADB_PORT/$MARIADB_DB"
}
