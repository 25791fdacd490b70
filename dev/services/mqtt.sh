# shellcheck shell=bash
# dev/stack service "mqtt": the Eclipse Mosquitto 2 broker from Debian (MQTT 3.1.1 and 5,
# shared subscriptions), for the MQTT source and sink connectors.
#
#   tcp://127.0.0.1:11883   anonymous clients                     KANAL_MQTT_URL
#   tcp://127.0.0.1:11884   user $MQTT_USER / $MQTT_PASSWORD only  KANAL_MQTT_AUTH_URL
#   ssl://127.0.0.1:11885   TLS, client certificate required      KANAL_MQTT_TLS_URL
#     KANAL_MQTT_TLS_CA (PEM trust store), KANAL_MQTT_TLS_CLIENT_P12 (PKCS12 key store with
#     the password KANAL_MQTT_TLS_PASSWORD), made once by a dev CA into $KANAL_RUN/mqtt/tls
#   KANAL_MQTT_PLUGINS: the directory of the broker's plugins (dynamic security), and
#   `dev/stack run mqtt mosquitto -c FILE` runs a broker of one's own (tests that restart it)
#
# The packages are fetched with `apt-get download` and unpacked with `dpkg -x` into
# $KANAL_CACHE/mqtt/<version> (no root and no system install needed); the broker runs with
# that tree's libraries first on LD_LIBRARY_PATH. Runtime: $KANAL_RUN/mqtt/{mosquitto.conf,
# passwd,data/,mqtt.log,mosquitto.pid}. Persistence is on (written every few seconds and at
# shutdown to data/), so persistent sessions and their queued messages survive a restart of
# the broker; `dev/stack reset mqtt` forgets them.
#
# Tuned so that a consumer holding thousands of unacknowledged messages loses none: no
# limit on queued messages per session (Mosquitto's default of 1000 drops the rest), and
# in-flight windows as the client asks (MQTT 5 Receive Maximum).

MQTT_PORT=11883
MQTT_AUTH_PORT=11884
MQTT_TLS_PORT=11885
# Development-only credentials (like Azurite's published key): they protect nothing.
MQTT_USER=kanal
MQTT_PASSWORD=kanal-dev-mqtt-password
MQTT_TLS_PASSWORD=kanal-dev-mqtt-tls-password
MQTT_PACKAGES=(mosquitto libcjson1 libdlt2 libwrap0)
: "${KANAL_MQTT_UP_TIMEOUT:=30}"

_mqtt_version() {
  apt-cache policy mosquitto 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

_mqtt_home() {
  local stamp
  # the installed tree, found without asking apt (fast, works offline once installed)
  for stamp in "$KANAL_CACHE"/mqtt/*/STAMP; do
    [[ -f $stamp ]] && {
      dirname "$stamp"
      return 0
    }
  done
  return 1
}

_mqtt_run() {
  local home
  home=$(_mqtt_home) || return 1
  LD_LIBRARY_PATH="$home/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

# `dev/stack run mqtt mosquitto_passwd -b FILE USER PASSWORD`: the package's tools, and
# the broker itself (`dev/stack run mqtt mosquitto -c FILE`, a broker of one's own, e.g.
# one a test restarts). The tool replaces this process, so its caller holds its pid.
mqtt_run() {
  local tool=${1:?"usage: dev/stack run mqtt mosquitto|mosquitto_passwd|mosquitto_ctrl ARGS..."}
  local home path
  shift
  mqtt_install || return 1
  home=$(_mqtt_home) || return 1
  path=$home/root/usr/bin/$tool
  [[ -x $path ]] || path=$home/root/usr/sbin/$tool
  LD_LIBRARY_PATH="$home/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    exec "$path" "$@"
}

mqtt_ports() { echo "$MQTT_PORT,$MQTT_AUTH_PORT,$MQTT_TLS_PORT"; }

mqtt_install() {
  local version home tmp log deb
  _mqtt_home >/dev/null && return 0
  command -v apt-get >/dev/null || {
    fail "mqtt: apt-get is needed to fetch Debian's mosquitto package"
    return 1
  }
  version=$(_mqtt_version)
  if [[ -z $version || $version == "(none)" ]] && ((EUID == 0)); then
    say "mqtt: apt-get update (apt knows no mosquitto package yet)"
    apt-get update -q >/dev/null 2>&1
    version=$(_mqtt_version)
  fi
  [[ -n $version && $version != "(none)" ]] || {
    fail "mqtt: no mosquitto package known to apt; run apt-get update (as root)"
    return 1
  }
  home="$KANAL_CACHE/mqtt/$version"
  tmp="$home.tmp.$$"
  log="$KANAL_CACHE/mqtt/install.log"
  mkdir -p "$tmp" || return 1
  say "mqtt: apt-get download ${MQTT_PACKAGES[*]} (first time only; log: $log)"
  if ! (cd "$tmp" && apt-get download "${MQTT_PACKAGES[@]}") >"$log" 2>&1; then
    rm -rf "$tmp"
    fail "mqtt: apt-get download failed; see $log"
    tail_log "$log"
    return 1
  fi
  for deb in "$tmp"/*.deb; do
    dpkg -x "$deb" "$tmp/root" || {
      rm -rf "$tmp"
      fail "mqtt: cannot unpack $deb"
      return 1
    }
  done
  rm -f "$tmp"/*.deb
  echo "mosquitto $version" >"$tmp/STAMP"
  rm -rf "$home"
  mv "$tmp" "$home" || return 1
  say "mqtt: mosquitto $version installed in $home"
}

# _mqtt_tls DIR: a dev CA, the broker's certificate (127.0.0.1) and a client key store,
# made once into DIR/tls.
_mqtt_tls() {
  local tls=$1/tls
  [[ -f $tls/client.p12 ]] && return 0
  command -v openssl >/dev/null || {
    fail "mqtt: openssl is needed to make the TLS listener's certificates"
    return 1
  }
  mkdir -p "$tls" && (
    set -e
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Kanal MQTT dev CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE"
    for name in broker client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr"
      openssl x509 -req -days 3650 -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile <(echo "subjectAltName=IP:$KANAL_HOST,DNS:localhost") -out "$name.pem"
    done
    openssl pkcs12 -export -in client.pem -inkey client.key -passout "pass:$MQTT_TLS_PASSWORD" \
      -out client.p12
    rm -f ./*.csr ca.srl
    chmod 600 ./*.key client.p12
  ) >"$1/tls.log" 2>&1 || {
    fail "mqtt: could not make certificates; see $1/tls.log"
    return 1
  }
}

_mqtt_config() {
  local dir=$1 user
  user=$(id -un)
  _mqtt_tls "$dir" || return 1
  [[ -f $dir/passwd ]] || {
    : >"$dir/passwd"
    _mqtt_run "$(_mqtt_home)/root/usr/bin/mosquitto_passwd" -b "$dir/passwd" "$MQTT_USER" "$MQTT_PASSWORD" ||
      return 1
  }
  chmod 600 "$dir/passwd"
  mkdir -p "$dir/data"
  write_file "$dir/mosquitto.conf" <<EOF
# written by dev/stack up mqtt
user $user
per_listener_settings true
persistence true
persistence_location $dir/data/
autosave_interval 2
max_queued_messages 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages false

listener $MQTT_PORT $KANAL_HOST
allow_anonymous true

listener $MQTT_AUTH_PORT $KANAL_HOST
allow_anonymous false
password_file $dir/passwd

listener $MQTT_TLS_PORT $KANAL_HOST
allow_anonymous true
cafile $dir/tls/ca.pem
certfile $dir/tls/broker.pem
keyfile $dir/tls/broker.key
require_certificate true
EOF
}

_mqtt_healthy() {
  port_open "$KANAL_HOST" "$MQTT_PORT" && port_open "$KANAL_HOST" "$MQTT_AUTH_PORT" &&
    port_open "$KANAL_HOST" "$MQTT_TLS_PORT"
}

mqtt_status() {
  daemon_pid mqtt mosquitto "$MQTT_PORT" >/dev/null && _mqtt_healthy
}

mqtt_logfile() { echo "$KANAL_RUN/mqtt/mqtt.log"; }

mqtt_up() {
  local dir log pid
  mqtt_install || return 1
  dir=$(run_dir mqtt) || return 1
  log="$dir/mqtt.log"
  _mqtt_config "$dir" || return 1
  if pid=$(daemon_pid mqtt mosquitto "$MQTT_PORT"); then
    if ! cmp -s "$dir/mosquitto.conf" "$dir/running.conf"; then
      # sessions persist across the restart
      say "mqtt: restarting (pid $pid) to apply a changed configuration"
      daemon_stop mqtt mosquitto >/dev/null
    elif wait_healthy mqtt mosquitto 15 "$log" _mqtt_healthy; then
      say "mqtt: already running (pid $pid)"
      return 0
    else
      say "mqtt: restarting (pid $pid does not listen on $MQTT_PORT, $MQTT_AUTH_PORT and $MQTT_TLS_PORT)"
      daemon_stop mqtt mosquitto >/dev/null
    fi
  fi
  ensure_port_free "$MQTT_PORT" mqtt || return 1
  ensure_port_free "$MQTT_AUTH_PORT" mqtt || return 1
  ensure_port_free "$MQTT_TLS_PORT" mqtt || return 1
  cp "$dir/mosquitto.conf" "$dir/running.conf"
  say "mqtt: starting mosquitto on $KANAL_HOST:$MQTT_PORT, :$MQTT_AUTH_PORT and :$MQTT_TLS_PORT"
  daemon_start mqtt mosquitto "$log" env \
    LD_LIBRARY_PATH="$(_mqtt_home)/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$(_mqtt_home)/root/usr/sbin/mosquitto" -c "$dir/mosquitto.conf" || return 1
  wait_healthy mqtt mosquitto "$KANAL_MQTT_UP_TIMEOUT" "$log" _mqtt_healthy || return 1
  say "mqtt: ready on tcp://$KANAL_HOST:$MQTT_PORT (pid $(daemon_pid mqtt mosquitto))"
}

mqtt_down() {
  local pid
  pid=$(daemon_stop mqtt mosquitto "$MQTT_PORT") || return 1
  [[ -z $pid ]] || say "mqtt: stopped (pid $pid)"
}

mqtt_env() {
  env_line KANAL_MQTT_URL "tcp://$KANAL_HOST:$MQTT_PORT"
  env_line KANAL_MQTT_AUTH_URL "tcp://$KANAL_HOST:$MQTT_AUTH_PORT"
  env_line KANAL_MQTT_USERNAME "$MQTT_USER"
  env_line KANAL_MQTT_PASSWORD "$MQTT_PASSWORD"
  env_line KANAL_MQTT_PASSWORD_FILE "$KANAL_RUN/mqtt/passwd"
  env_line KANAL_MQTT_TLS_URL "ssl://$KANAL_HOST:$MQTT_TLS_PORT"
  env_line KANAL_MQTT_TLS_CA "$KANAL_RUN/mqtt/tls/ca.pem"
  env_line KANAL_MQTT_TLS_CLIENT_P12 "$KANAL_RUN/mqtt/tls/client.p12"
  env_line KANAL_MQTT_TLS_PASSWORD "$MQTT_TLS_PASSWORD"
  # the broker's plugins (mosquitto_dynamic_security.so), for brokers of one's own
  env_line KANAL_MQTT_PLUGINS "$(_mqtt_home)/root/usr/lib/x86_64-linux-gnu"
}
