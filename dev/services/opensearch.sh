# shellcheck shell=bash
# dev/stack service "opensearch": one OpenSearch node (version pinned in
# dev/maven/opensearch/pom.xml; 2.19 is the last line running on Java 17), REST on
# http://127.0.0.1:19200, transport on 127.0.0.1:19300, single node, security off
# (plain HTTP, no credentials), heap KANAL_OPENSEARCH_HEAP (512m).
#
# Run from Maven jars (org.opensearch:opensearch + the netty4 transport module) by the
# small launcher dev/services/opensearch/KanalOpenSearch.java, compiled here with javac.
# Elasticsearch itself is not used: it is not published in a form that runs this way.
#
# Jars and launcher: $KANAL_CACHE/opensearch/<version>-<pom hash>/{lib,classes}.
# Runtime: $KANAL_RUN/opensearch/{home/data,opensearch.log,opensearch.pid}; the data
# survives restarts (`dev/stack reset opensearch` forgets every index).

OPENSEARCH_PORT=19200
OPENSEARCH_TRANSPORT_PORT=19300
OPENSEARCH_URL="http://$KANAL_HOST:$OPENSEARCH_PORT"
: "${KANAL_OPENSEARCH_HEAP:=-Xms512m -Xmx512m}"
: "${KANAL_OPENSEARCH_UP_TIMEOUT:=180}"

_OPENSEARCH_POM="$KANAL_DEV_DIR/maven/opensearch/pom.xml"
_OPENSEARCH_LAUNCHER="$KANAL_DEV_DIR/services/opensearch/KanalOpenSearch.java"

_opensearch_home() {
  local v h
  v=$(pom_property "$_OPENSEARCH_POM" opensearch.version)
  h=$(cat "$_OPENSEARCH_POM" "$_OPENSEARCH_LAUNCHER" | sha256sum | cut -c1-8)
  printf '%s\n' "$KANAL_CACHE/opensearch/$v-$h"
}

opensearch_ports() { echo "$OPENSEARCH_PORT,$OPENSEARCH_TRANSPORT_PORT"; }

opensearch_install() {
  local home javac tmp
  home=$(_opensearch_home)
  maven_jars opensearch "$_OPENSEARCH_POM" "$home/lib" || return 1
  [[ -f $home/classes/KanalOpenSearch.class ]] && return 0
  javac=$(kanal_javac) || return 1
  tmp="$home/classes.tmp.$$"
  rm -rf "$tmp"
  if ! "$javac" -d "$tmp" -cp "$home/lib/*" "$_OPENSEARCH_LAUNCHER" >"$home/javac.log" 2>&1; then
    rm -rf "$tmp"
    fail "opensearch: compiling $_OPENSEARCH_LAUNCHER failed; see $home/javac.log"
    tail_log "$home/javac.log"
    return 1
  fi
  rm -rf "$home/classes"
  mv "$tmp" "$home/classes"
}

_opensearch_healthy() {
  curl -fsS -m 5 "$OPENSEARCH_URL/_cluster/health?wait_for_status=yellow&timeout=4s" 2>/dev/null |
    grep -qE '"status":"(green|yellow)"'
}

opensearch_status() {
  daemon_pid opensearch opensearch "$OPENSEARCH_PORT" >/dev/null && _opensearch_healthy
}

opensearch_up() {
  local dir java home pid log
  java=$(kanal_java) || return 1
  opensearch_install || return 1
  dir=$(run_dir opensearch) || return 1
  log="$dir/opensearch.log"
  if pid=$(daemon_pid opensearch opensearch "$OPENSEARCH_PORT"); then
    if _opensearch_healthy; then
      say "opensearch: already running (pid $pid)"
      return 0
    fi
    say "opensearch: pid $pid is running but not ready yet; waiting"
    if wait_healthy opensearch opensearch 60 "$log" _opensearch_healthy; then
      return 0
    fi
    say "opensearch: restarting unhealthy node (pid $pid)"
    daemon_stop opensearch opensearch "$OPENSEARCH_PORT" >/dev/null
  fi
  ensure_port_free "$OPENSEARCH_PORT" opensearch || return 1
  ensure_port_free "$OPENSEARCH_TRANSPORT_PORT" opensearch || return 1
  home=$(_opensearch_home)
  mkdir -p "$dir/home" || return 1
  say "opensearch: starting on $OPENSEARCH_URL"
  # shellcheck disable=SC2086 # KANAL_OPENSEARCH_HEAP holds several options
  daemon_start opensearch opensearch "$log" "$java" $KANAL_OPENSEARCH_HEAP \
    -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
    -Dio.netty.noUnsafe=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j2.formatMsgNoLookups=true -Dkanal.service=opensearch \
    -cp "$home/lib/*:$home/classes" KanalOpenSearch \
    "$dir/home" "$KANAL_HOST" "$OPENSEARCH_PORT" "$OPENSEARCH_TRANSPORT_PORT" || return 1
  wait_healthy opensearch opensearch "$KANAL_OPENSEARCH_UP_TIMEOUT" "$log" _opensearch_healthy || return 1
  say "opensearch: ready on $OPENSEARCH_URL (pid $(daemon_pid opensearch opensearch))"
}

opensearch_down() {
  local pid
  pid=$(daemon_stop opensearch opensearch "$OPENSEARCH_PORT") || return 1
  [[ -z $pid ]] || say "opensearch: stopped (pid $pid)"
}

opensearch_env() {
  env_line KANAL_OPENSEARCH_URL "$OPENSEARCH_URL"
}
