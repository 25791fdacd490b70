# shellcheck shell=bash
# dev/stack service "hdfs": a single-node HDFS (one namenode, one datanode) from Hadoop's
# MiniDFSCluster (version pinned in dev/maven/hdfs/pom.xml), namenode RPC on
# hdfs://127.0.0.1:18020, WebHDFS on http://127.0.0.1:19870/webhdfs/v1, heap
# KANAL_HDFS_HEAP. Permissions are enforced; the root directory is world-writable.
#
# Run from Maven jars (hadoop-client-minicluster, -api, -runtime) by the small launcher
# dev/services/hdfs/KanalHdfs.java, compiled here with javac.
#
# Jars and launcher: $KANAL_CACHE/hdfs/<version>-<pom hash>/{lib,classes}.
# Runtime: $KANAL_RUN/hdfs/{base,hdfs.log,hdfs.pid}; the data survives restarts
# (`dev/stack reset hdfs` forgets every file).

HDFS_RPC_PORT=18020
HDFS_HTTP_PORT=19870
HDFS_WEBHDFS_URL="http://$KANAL_HOST:$HDFS_HTTP_PORT"
: "${KANAL_HDFS_HEAP:=-Xms128m -Xmx512m}"
: "${KANAL_HDFS_UP_TIMEOUT:=180}"

_HDFS_POM="$KANAL_DEV_DIR/maven/hdfs/pom.xml"
_HDFS_LAUNCHER="$KANAL_DEV_DIR/services/hdfs/KanalHdfs.java"

_hdfs_home() {
  local v h
  v=$(pom_property "$_HDFS_POM" hadoop.version)
  h=$(cat "$_HDFS_POM" "$_HDFS_LAUNCHER" | sha256sum | cut -c1-8)
  printf '%s\n' "$KANAL_CACHE/hdfs/$v-$h"
}

hdfs_ports() { echo "$HDFS_RPC_PORT,$HDFS_HTTP_PORT"; }

hdfs_install() {
  local home javac tmp
  home=$(_hdfs_home)
  maven_jars hdfs "$_HDFS_POM" "$home/lib" || return 1
  [[ -f $home/classes/KanalHdfs.class ]] && return 0
  javac=$(kanal_javac) || return 1
  tmp="$home/classes.tmp.$$"
  rm -rf "$tmp"
  if ! "$javac" -d "$tmp" -cp "$home/lib/*" "$_HDFS_LAUNCHER" >"$home/javac.log" 2>&1; then
    rm -rf "$tmp"
    fail "hdfs: compiling $_HDFS_LAUNCHER failed; see $home/javac.log"
    tail_log "$home/javac.log"
    return 1
  fi
  rm -rf "$home/classes"
  mv "$tmp" "$home/classes"
}

# Healthy: WebHDFS lists the root and the namenode has left safe mode (a write works).
_hdfs_healthy() {
  curl -fsS -m 5 "$HDFS_WEBHDFS_URL/webhdfs/v1/?op=GETFILESTATUS" 2>/dev/null | grep -q '"FileStatus"' &&
    curl -fsS -m 5 -X PUT "$HDFS_WEBHDFS_URL/webhdfs/v1/.kanal-health?op=MKDIRS&user.name=kanal" 2>/dev/null |
    grep -q '"boolean":true'
}

hdfs_status() {
  daemon_pid hdfs hdfs "$HDFS_HTTP_PORT" >/dev/null && _hdfs_healthy
}

hdfs_up() {
  local dir java home pid log
  java=$(kanal_java) || return 1
  hdfs_install || return 1
  dir=$(run_dir hdfs) || return 1
  log="$dir/hdfs.log"
  if pid=$(daemon_pid hdfs hdfs "$HDFS_HTTP_PORT"); then
    if wait_healthy hdfs hdfs 60 "$log" _hdfs_healthy; then
      say "hdfs: already running (pid $pid)"
      return 0
    fi
    say "hdfs: restarting unhealthy cluster (pid $pid)"
    daemon_stop hdfs hdfs "$HDFS_HTTP_PORT" >/dev/null
  fi
  ensure_port_free "$HDFS_RPC_PORT" hdfs || return 1
  ensure_port_free "$HDFS_HTTP_PORT" hdfs || return 1
  home=$(_hdfs_home)
  mkdir -p "$dir/base" || return 1
  say "hdfs: starting on hdfs://$KANAL_HOST:$HDFS_RPC_PORT, WebHDFS $HDFS_WEBHDFS_URL"
  # shellcheck disable=SC2086 # KANAL_HDFS_HEAP holds several options
  daemon_start hdfs hdfs "$log" "$java" $KANAL_HDFS_HEAP \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
    -Djava.net.preferIPv4Stack=true -Dkanal.service=hdfs \
    -cp "$home/lib/*:$home/classes" KanalHdfs \
    "$dir/base" "$KANAL_HOST" "$HDFS_RPC_PORT" "$HDFS_HTTP_PORT" || return 1
  wait_healthy hdfs hdfs "$KANAL_HDFS_UP_TIMEOUT" "$log" _hdfs_healthy || return 1
  say "hdfs: ready, WebHDFS on $HDFS_WEBHDFS_URL (pid $(daemon_pid hdfs hdfs))"
}

hdfs_down() {
  local pid
  pid=$(daemon_stop hdfs hdfs "$HDFS_HTTP_PORT") || return 1
  [[ -z $pid ]] || say "hdfs: stopped (pid $pid)"
}

hdfs_env() {
  env_line KANAL_HDFS_URL "$HDFS_WEBHDFS_URL"
  env_line KANAL_HDFS_RPC_URL "hdfs://$KANAL_HOST:$HDFS_RPC_PORT"
}
