# shellcheck shell=bash
# dev/stack service "wiremock": WireMock standalone (version pinned in
# dev/maven/wiremock/pom.xml), http://127.0.0.1:18080, admin API under /__admin.
# The HTTP connectors' tests stub endpoints there to inject faults (503 then 200,
# Retry-After, 400 for some bodies) and read back what was received; every test uses
# its own URL path, so tests share the server. Stubs live in memory: a restart forgets them.
#
# Jars: $KANAL_CACHE/wiremock/<version>-<pom hash>/lib.
# Runtime: $KANAL_RUN/wiremock/{wiremock.log,wiremock.pid}.

WIREMOCK_PORT=18080
WIREMOCK_URL="http://$KANAL_HOST:$WIREMOCK_PORT"
: "${KANAL_WIREMOCK_HEAP:=-Xms64m -Xmx256m}"
: "${KANAL_WIREMOCK_UP_TIMEOUT:=90}"

_WIREMOCK_POM="$KANAL_DEV_DIR/maven/wiremock/pom.xml"

_wiremock_home() {
  local v h
  v=$(pom_property "$_WIREMOCK_POM" wiremock.version)
  h=$(sha256sum <"$_WIREMOCK_POM" | cut -c1-8)
  printf '%s\n' "$KANAL_CACHE/wiremock/$v-$h"
}

wiremock_ports() { echo "$WIREMOCK_PORT"; }

wiremock_install() {
  maven_jars wiremock "$_WIREMOCK_POM" "$(_wiremock_home)/lib"
}

_wiremock_healthy() {
  curl -fsS -m 5 -o /dev/null "$WIREMOCK_URL/__admin/health" 2>/dev/null
}

wiremock_status() {
  daemon_pid wiremock wiremock "$WIREMOCK_PORT" >/dev/null && _wiremock_healthy
}

wiremock_up() {
  local dir java lib pid log
  java=$(kanal_java) || return 1
  wiremock_install || return 1
  dir=$(run_dir wiremock) || return 1
  log="$dir/wiremock.log"
  if pid=$(daemon_pid wiremock wiremock "$WIREMOCK_PORT"); then
    if wait_healthy wiremock wiremock 30 "$log" _wiremock_healthy; then
      say "wiremock: already running (pid $pid)"
      return 0
    fi
    say "wiremock: restarting unhealthy server (pid $pid)"
    daemon_stop wiremock wiremock "$WIREMOCK_PORT" >/dev/null
  fi
  ensure_port_free "$WIREMOCK_PORT" wiremock || return 1
  lib="$(_wiremock_home)/lib"
  mkdir -p "$dir/root" || return 1
  say "wiremock: starting on $WIREMOCK_URL"
  # --no-request-journal stays off: tests read what the server received.
  # shellcheck disable=SC2086 # KANAL_WIREMOCK_HEAP holds several options
  daemon_start wiremock wiremock "$log" "$java" $KANAL_WIREMOCK_HEAP \
    -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -cp "$lib/*" wiremock.Run \
    --bind-address "$KANAL_HOST" --port "$WIREMOCK_PORT" --root-dir "$dir/root" \
    --disable-banner --max-request-journal-entries 100000 || return 1
  wait_healthy wiremock wiremock "$KANAL_WIREMOCK_UP_TIMEOUT" "$log" _wiremock_healthy || return 1
  say "wiremock: ready on $WIREMOCK_URL (pid $(daemon_pid wiremock wiremock))"
}

wiremock_down() {
  local pid
  pid=$(daemon_stop wiremock wiremock "$WIREMOCK_PORT") || return 1
  [[ -z $pid ]] || say "wiremock: stopped (pid $pid)"
}

wiremock_env() {
  env_line KANAL_WIREMOCK_URL "$WIREMOCK_URL"
}
