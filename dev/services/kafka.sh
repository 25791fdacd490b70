# shellcheck shell=bash
# dev/stack service "kafka": Apache Kafka (version pinned in dev/maven/kafka/pom.xml),
# single node, KRaft combined mode (broker+controller, node.id=1).
#
#   PLAINTEXT       127.0.0.1:9092   (clients)
#   CONTROLLER      127.0.0.1:9093
#   SASL_PLAINTEXT  127.0.0.1:9094   SCRAM-SHA-512 (and -256), user $KAFKA_SCRAM_USER
#   SSL             127.0.0.1:9095   server cert from a dev CA (SAN 127.0.0.1, localhost);
#                                    client certificates requested, not required
#   PODS            <node address>:9096  plaintext, advertised on the machine's own
#                                    address (node_address) so pods of the local node
#                                    (dev/stack up node) reach it; absent without one
#
# The security listeners exist so Kanal's TLS and SASL support is tested against the
# real broker (tests/reliability/test_kafka_security.py). Their material is generated
# once into $KANAL_RUN/kafka/tls/ (CA, broker PKCS12 keystore, client PKCS12 keystore,
# Java-style PKCS12 and JKS truststores) and exported by `dev/stack env kafka`. The
# SCRAM user is created at format time (--add-scram) or, for a data dir formatted
# before these listeners existed, once with ConfigCommand. A running broker without
# the listeners is restarted once by `up` to gain them (data persists).
#
# Jars come from Maven (no release tarball): $KANAL_CACHE/kafka/<version>-<pom hash>/lib.
# Runtime: $KANAL_RUN/kafka/{server.properties,log4j2.xml,data/,kafka.log,kafka.pid}.
# Data survives `down`/`up`; `dev/stack reset kafka` wipes it (new cluster id).
# Tuned for tests: every replication factor / min ISR is 1, auto topic creation
# on, 1 partition per new topic, no initial rebalance delay.
#
# `dev/stack run kafka <main class> args...` runs a Kafka CLI class against the
# same jars, e.g. org.apache.kafka.tools.TopicCommand, ConsoleProducer, ConsoleConsumer.

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_BOOTSTRAP="$KANAL_HOST:$KAFKA_PORT"
KAFKA_SASL_PORT=9094
KAFKA_SSL_PORT=9095
KAFKA_PODS_PORT=9096
# Development-only credentials (like Azurite's published key): they protect nothing.
KAFKA_SCRAM_USER=kanal
KAFKA_SCRAM_PASSWORD=kanal-dev-scram-password
KAFKA_TLS_PASSWORD=kanal-dev-tls-password
: "${KANAL_KAFKA_HEAP:=-Xms256m -Xmx512m}"
: "${KANAL_KAFKA_UP_TIMEOUT:=120}"

_KAFKA_POM="$KANAL_DEV_DIR/maven/kafka/pom.xml"

# Install dir for this pom: <version>-<first 8 hex of the pom's sha256>.
_kafka_home() {
  local v h
  v=$(pom_property "$_KAFKA_POM" kafka.version)
  h=$(sha256sum <"$_KAFKA_POM" | cut -c1-8)
  printf '%s\n' "$KANAL_CACHE/kafka/$v-$h"
}

kafka_ports() { echo "$KAFKA_PORT,$KAFKA_CONTROLLER_PORT,$KAFKA_SASL_PORT,$KAFKA_SSL_PORT,$KAFKA_PODS_PORT"; }

kafka_install() {
  maven_jars kafka "$_KAFKA_POM" "$(_kafka_home)/lib"
}

# Client-side files for CLI tools: quiet log4j2 (WARN to stderr) and short timeouts.
_kafka_tool_files() {
  local dir
  dir=$(run_dir kafka)/tools || return 1
  mkdir -p "$dir" || return 1
  write_file "$dir/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
EOF
  write_file "$dir/admin.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# _kafka_tool_cmd: set _KAFKA_TOOL to the java command line for Kafka CLI classes
# (fails when the jars are not installed; installing is up's and run's business).
_kafka_tool_cmd() {
  local java
  java=$(kanal_java) || return 1
  maven_jars_ready "$_KAFKA_POM" "$(_kafka_home)/lib" || return 1
  _kafka_tool_files || return 1
  _KAFKA_TOOL=("$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KANAL_RUN/kafka/tools/log4j2.xml" -cp "$(_kafka_home)/lib/*")
}

# kafka_run CLASS ARGS...: run a Kafka main class (CLI tool) on the Kafka jars.
kafka_run() {
  (($#)) || {
    fail "usage: dev/stack run kafka <main class> [args...]  (e.g. org.apache.kafka.tools.TopicCommand --bootstrap-server $KAFKA_BOOTSTRAP --list)"
    return 1
  }
  if ! maven_jars_ready "$_KAFKA_POM" "$(_kafka_home)/lib"; then
    stack_locked kafka kafka_install || return 1
  fi
  _kafka_tool_cmd || return 1
  "${_KAFKA_TOOL[@]}" "$@"
}

# Healthy: port 9092 accepts and a metadata request (TopicCommand --list) answers.
_kafka_healthy() {
  port_open "$KANAL_HOST" "$KAFKA_PORT" || return 1
  _kafka_tool_cmd || return 1
  timeout 30 "${_KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --command-config "$KANAL_RUN/kafka/tools/admin.properties" --list >/dev/null 2>&1
}

# _kafka_tls DIR: the dev CA, broker and client keystores and the truststores, made
# once into DIR/tls (kept across restarts, so clients' copies stay valid).
_kafka_tls() {
  local tls=$1/tls pw=$KAFKA_TLS_PASSWORD tmp keytool
  [[ -f $tls/STAMP ]] && return 0
  command -v openssl >/dev/null || {
    fail "kafka: openssl is needed to make the TLS listener's certificates"
    return 1
  }
  keytool=keytool
  [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/keytool ]] && keytool=$JAVA_HOME/bin/keytool
  tmp="$tls.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp" || return 1
  say "kafka: making the TLS listener's dev CA and certificates in $tls"
  if ! (
    set -e
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=Kanal dev CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign"
    for who in broker client; do
      openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "/CN=$who.kanal.local"
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$who.ext"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$who.ext" -out "$who.pem"
      openssl pkcs12 -export -in "$who.pem" -inkey "$who.key" -certfile ca.pem -name "$who" \
        -out "$who.p12" -passout "pass:$pw"
    done
    "$keytool" -importcert -noprompt -alias kanal-dev-ca -file ca.pem -keystore truststore.p12 \
      -storetype PKCS12 -storepass "$pw"
    "$keytool" -importcert -noprompt -alias kanal-dev-ca -file ca.pem -keystore truststore.jks \
      -storetype JKS -storepass "$pw"
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key ./*.p12
  ) >"$tmp.log" 2>&1; then
    fail "kafka: could not make certificates; see $tmp.log"
    tail_log "$tmp.log"
    rm -rf "$tmp"
    return 1
  fi
  date -u +%FT%TZ >"$tmp/STAMP"
  rm -rf "$tls" "$tmp.log"
  mv "$tmp" "$tls"
}

# _kafka_scram DIR: the SCRAM user exists in this cluster (once per cluster id; format
# adds it to new clusters, ConfigCommand to clusters formatted without it).
_kafka_scram() {
  local dir=$1 cid done_file mechanism
  cid=$(sed -n 's/^cluster.id=//p' "$dir/data/meta.properties" 2>/dev/null)
  done_file="$dir/scram-${cid:-unknown}.done"
  [[ -f $done_file ]] && return 0
  say "kafka: creating SCRAM user $KAFKA_SCRAM_USER"
  : >"$dir/scram.log"
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do # one mechanism per request
    if ! kafka_run kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
      --command-config "$KANAL_RUN/kafka/tools/admin.properties" --alter --entity-type users \
      --entity-name "$KAFKA_SCRAM_USER" --add-config "$mechanism=[password=$KAFKA_SCRAM_PASSWORD]" \
      >>"$dir/scram.log" 2>&1; then
      fail "kafka: could not create the SCRAM user; see $dir/scram.log"
      tail_log "$dir/scram.log"
      return 1
    fi
  done
  touch "$done_file"
}

# The security and pod listeners answer (a broker started before they existed has none).
_kafka_extra_listeners() {
  local pods_host
  pods_host=$(node_address)
  port_open "$KANAL_HOST" "$KAFKA_SASL_PORT" && port_open "$KANAL_HOST" "$KAFKA_SSL_PORT" &&
    { [[ -z $pods_host ]] || port_open "$pods_host" "$KAFKA_PODS_PORT"; }
}

kafka_status() {
  daemon_pid kafka kafka "$KAFKA_PORT" >/dev/null && _kafka_healthy
}

_kafka_write_config() {
  local dir=$1 listeners pods_host protocols
  listeners="CONTROLLER://$KANAL_HOST:$KAFKA_CONTROLLER_PORT,PLAINTEXT://$KANAL_HOST:$KAFKA_PORT,SASL_PLAINTEXT://$KANAL_HOST:$KAFKA_SASL_PORT,SSL://$KANAL_HOST:$KAFKA_SSL_PORT"
  protocols=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
  pods_host=$(node_address)
  if [[ -n $pods_host ]]; then
    listeners+=",PODS://$pods_host:$KAFKA_PODS_PORT"
    protocols+=",PODS:PLAINTEXT"
  fi
  write_file "$dir/server.properties" <<EOF
# Generated by dev/services/kafka.sh on every \`dev/stack up kafka\`; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$KANAL_HOST:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data

# security listeners for tests (dev credentials; see the header of dev/services/kafka.sh)
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$dir/tls/broker.p12
listener.name.ssl.ssl.keystore.password=$KAFKA_TLS_PASSWORD
listener.name.ssl.ssl.key.password=$KAFKA_TLS_PASSWORD
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.ssl.ssl.client.auth=requested

# single node, tuned for tests
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# small machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=33554432
EOF
  write_file "$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by dev/services/kafka.sh. -->
<Configuration status="WARN">
  <Appenders>
    <File name="FILE" fileName="$dir/kafka.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="FILE"/></Root>
    <!-- the chatty parts: config dumps, per-partition log/state lines, request log -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.log" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals" level="WARN"/>
    <Logger name="kafka.cluster.Partition" level="WARN"/>
    <Logger name="kafka.server.ReplicaFetcherManager" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.metrics" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

kafka_up() {
  local dir java lib pid log cid
  java=$(kanal_java) || return 1
  kafka_install || return 1
  _kafka_tool_files || return 1
  dir=$(run_dir kafka) || return 1
  log="$dir/kafka.log"
  if pid=$(daemon_pid kafka kafka "$KAFKA_PORT"); then
    if ! _kafka_healthy; then
      say "kafka: pid $pid is running but not answering yet; waiting"
      if ! wait_healthy kafka kafka 30 "$log" _kafka_healthy; then
        say "kafka: restarting unhealthy broker (pid $pid)"
        daemon_stop kafka kafka "$KAFKA_PORT" >/dev/null
      fi
    fi
  fi
  if pid=$(daemon_pid kafka kafka "$KAFKA_PORT"); then
    if wait_for_port "$KANAL_HOST" "$KAFKA_SASL_PORT" 5 && _kafka_extra_listeners; then
      _kafka_scram "$dir" || return 1
      say "kafka: already running (pid $pid)"
      return 0
    fi
    say "kafka: restarting pid $pid once to add the SASL ($KAFKA_SASL_PORT), SSL ($KAFKA_SSL_PORT) and pod ($KAFKA_PODS_PORT) listeners (data persists)"
    daemon_stop kafka kafka "$KAFKA_PORT" >/dev/null
  fi
  ensure_port_free "$KAFKA_PORT" kafka || return 1
  ensure_port_free "$KAFKA_CONTROLLER_PORT" kafka || return 1
  ensure_port_free "$KAFKA_SASL_PORT" kafka || return 1
  ensure_port_free "$KAFKA_SSL_PORT" kafka || return 1
  ensure_port_free "$KAFKA_PODS_PORT" kafka || return 1
  _kafka_tls "$dir" || return 1
  _kafka_write_config "$dir" || return 1
  lib="$(_kafka_home)/lib"

  if [[ ! -f $dir/data/meta.properties ]]; then
    rm -rf "$dir/data"
    cid=$(kafka_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    [[ -n $cid ]] || {
      fail "kafka: could not generate a cluster id"
      return 1
    }
    say "kafka: formatting $dir/data (cluster id $cid)"
    if ! kafka_run kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
      --standalone --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" \
      --add-scram "SCRAM-SHA-256=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" \
      >"$dir/format.log" 2>&1; then
      fail "kafka: storage format failed; see $dir/format.log"
      tail_log "$dir/format.log"
      return 1
    fi
    touch "$dir/scram-$cid.done"
  fi

  say "kafka: starting on $KAFKA_BOOTSTRAP"
  # shellcheck disable=SC2086 # KANAL_KAFKA_HEAP holds several options
  daemon_start kafka kafka "$log" "$java" $KANAL_KAFKA_HEAP \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkanal.service=kafka -Dlog4j2.configurationFile="$dir/log4j2.xml" \
    -cp "$lib/*" kafka.Kafka "$dir/server.properties" || return 1
  if ! wait_healthy kafka kafka "$KANAL_KAFKA_UP_TIMEOUT" "$log" _kafka_healthy; then
    say "kafka: if its data dir is broken, 'dev/stack reset kafka' starts a fresh cluster"
    return 1
  fi
  if ! wait_for_port "$KANAL_HOST" "$KAFKA_SASL_PORT" 30 || ! wait_for_port "$KANAL_HOST" "$KAFKA_SSL_PORT" 30; then
    fail "kafka: the SASL/SSL listeners ($KAFKA_SASL_PORT, $KAFKA_SSL_PORT) do not answer; see $log"
    return 1
  fi
  _kafka_scram "$dir" || return 1
  say "kafka: ready on $KAFKA_BOOTSTRAP (pid $(daemon_pid kafka kafka))"
}

kafka_down() {
  local pid
  pid=$(daemon_stop kafka kafka "$KAFKA_PORT") || return 1
  [[ -z $pid ]] || say "kafka: stopped (pid $pid)"
}

kafka_env() {
  local tls="$KANAL_RUN/kafka/tls" pods_host
  env_line KANAL_BOOTSTRAP_SERVERS "$KAFKA_BOOTSTRAP"
  env_line KANAL_KAFKA_CLASSPATH "$(_kafka_home)/lib/*"
  env_line KANAL_KAFKA_SASL_BOOTSTRAP "$KANAL_HOST:$KAFKA_SASL_PORT"
  env_line KANAL_KAFKA_SASL_MECHANISM SCRAM-SHA-512
  env_line KANAL_KAFKA_SASL_USERNAME "$KAFKA_SCRAM_USER"
  env_line KANAL_KAFKA_SASL_PASSWORD "$KAFKA_SCRAM_PASSWORD"
  env_line KANAL_KAFKA_SSL_BOOTSTRAP "$KANAL_HOST:$KAFKA_SSL_PORT"
  env_line KANAL_KAFKA_SSL_CA "$tls/ca.pem"
  env_line KANAL_KAFKA_SSL_TRUSTSTORE_P12 "$tls/truststore.p12"
  env_line KANAL_KAFKA_SSL_TRUSTSTORE_JKS "$tls/truststore.jks"
  env_line KANAL_KAFKA_SSL_KEYSTORE_P12 "$tls/client.p12"
  env_line KANAL_KAFKA_SSL_PASSWORD "$KAFKA_TLS_PASSWORD"
  pods_host=$(node_address)
  [[ -z $pods_host ]] || env_line KANAL_KAFKA_PODS_BOOTSTRAP "$pods_host:$KAFKA_PODS_PORT"
}
