# shellcheck shell=bash
# Shared helpers for dev/stack and the service modules in dev/services/*.sh.
# Sourced first by dev/stack; see the contract in the header of dev/stack.
#
# Everything a service downloads or builds lives under $KANAL_CACHE (outside the
# clone, so a fresh clone reuses it); everything it runs with (config, data,
# logs, pid files) lives under $KANAL_RUN/<svc>/, so every clone on the machine
# sees the same running services.

: "${KANAL_CACHE:=$HOME/.cache/kanal}"
: "${KANAL_RUN:=$KANAL_CACHE/run}"
export KANAL_CACHE KANAL_RUN

# Directory holding dev/stack, dev/services/, dev/maven/ ... (used by the modules)
# shellcheck disable=SC2034
KANAL_DEV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KANAL_HOST=127.0.0.1
: "${KANAL_STOP_TIMEOUT:=30}"   # seconds between SIGTERM and SIGKILL on down
: "${KANAL_LOCK_TIMEOUT:=1800}" # seconds to wait for another dev/stack on the same service

# ---------------------------------------------------------------- messages
# say: progress and errors, always to stderr (stdout is for `env`/`status` lines).
say() { printf '[stack] %s\n' "$*" >&2; }
# fail MSG: say it and return 1, for `... || { fail "..."; return 1; }` or `fail ...; return`.
fail() {
  say "ERROR: $*"
  return 1
}
# tail_log FILE [N]: show the end of a log after a failure.
tail_log() {
  local f=$1 n=${2:-25}
  [[ -s $f ]] || return 0
  say "---- last $n lines of $f ----"
  tail -n "$n" "$f" | sed 's/^/    /' >&2
  say "----"
}

# ---------------------------------------------------------------- files, dirs
# run_dir SVC: create and print $KANAL_RUN/SVC.
run_dir() {
  mkdir -p "$KANAL_RUN/$1" && printf '%s\n' "$KANAL_RUN/$1"
}

# write_file PATH < content: replace PATH atomically, only when the content changed.
write_file() {
  local path=$1 tmp
  tmp="$path.tmp.$$"
  cat >"$tmp" || {
    rm -f "$tmp"
    return 1
  }
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$path"
  fi
}

# env_line NAME VALUE: one `export NAME='VALUE'` line (safe for eval and shlex).
env_line() {
  local v=${2//\'/\'\\\'\'}
  printf "export %s='%s'\n" "$1" "$v"
}

# ---------------------------------------------------------------- ports
# node_address: this machine's IPv4 address on its default-route interface: the
# address pods of the local node (dev/stack up node) reach the host's services at.
# KANAL_NODE_ADDRESS overrides it; empty when the machine has no such address.
node_address() {
  local dev
  if [[ -n ${KANAL_NODE_ADDRESS:-} ]]; then
    printf '%s\n' "$KANAL_NODE_ADDRESS"
    return 0
  fi
  dev=$(ip -4 -o route show default 2>/dev/null | awk '{print $5; exit}')
  [[ -n $dev ]] || return 0
  ip -4 -o addr show dev "$dev" scope global 2>/dev/null | awk '{sub("/.*", "", $4); print $4; exit}'
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_for_port HOST PORT TIMEOUT: poll until the port accepts (0) or TIMEOUT seconds pass (1).
wait_for_port() {
  local host=$1 port=$2 end=$((SECONDS + ${3:-30}))
  while ((SECONDS < end)); do
    port_open "$host" "$port" && return 0
    sleep 0.2
  done
  port_open "$host" "$port"
}

# port_pid PORT: pid of the process listening on TCP PORT (if visible to us).
port_pid() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# pid_ports PID: the TCP ports PID listens on, comma separated.
pid_ports() {
  ss -Hltnp 2>/dev/null | grep -E "pid=$1," | awk '{print $4}' | sed 's/.*://' | sort -un | paste -sd, -
}

# pid_cmd PID: its command line, shortened, for messages.
pid_cmd() {
  { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | cut -c1-160
}

# ensure_port_free PORT WHAT: fail with a clear message when PORT is taken.
ensure_port_free() {
  local port=$1 what=$2 pid
  port_open "$KANAL_HOST" "$port" || return 0
  pid=$(port_pid "$port")
  if [[ -n $pid ]]; then
    fail "$what: port $KANAL_HOST:$port is already in use by pid $pid: $(pid_cmd "$pid")"
  else
    fail "$what: port $KANAL_HOST:$port is already in use (by a process we cannot see)"
  fi
}

# ---------------------------------------------------------------- daemons
# A daemon is one process started by daemon_start in its own session (so it
# survives dev/stack exiting, and its pid is also its process-group id). It gets
# KANAL_SERVICE=<svc>/<name> in its environment; that marker is how we tell our
# processes from pid reuse or strangers. Pid file: $KANAL_RUN/<svc>/<name>.pid.

# _is_ours PID TAG: PID is alive and carries KANAL_SERVICE=TAG.
_is_ours() {
  [[ $1 =~ ^[0-9]+$ && -r /proc/$1/environ ]] || return 1
  { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | grep -qxF "KANAL_SERVICE=$2"
}

# daemon_pid SVC NAME [PORT]: print the pid of our running daemon, else return 1.
# A stale pid file is removed. With PORT, a daemon of ours that listens there but
# lost its pid file (e.g. the run dir was wiped) is adopted again.
daemon_pid() {
  local svc=$1 name=$2 port=${3:-} pidfile pid
  pidfile="$KANAL_RUN/$svc/$name.pid"
  if [[ -f $pidfile ]]; then
    pid=$(<"$pidfile")
    if _is_ours "$pid" "$svc/$name"; then
      printf '%s\n' "$pid"
      return 0
    fi
    rm -f "$pidfile"
  fi
  if [[ -n $port ]]; then
    pid=$(port_pid "$port")
    if [[ -n $pid ]] && _is_ours "$pid" "$svc/$name"; then
      mkdir -p "$KANAL_RUN/$svc" && printf '%s\n' "$pid" >"$pidfile"
      say "$svc: adopted running $name (pid $pid) listening on $port"
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  return 1
}

# daemon_start SVC NAME LOGFILE CMD...: start CMD detached (setsid, stdin from
# /dev/null, stdout+stderr appended to LOGFILE, previous LOGFILE kept as .1).
# Runs in $KANAL_RUN/SVC. Waits until the pid file names a live process.
daemon_start() {
  local svc=$1 name=$2 log=$3 dir pidfile
  shift 3
  dir=$(run_dir "$svc") || return 1
  pidfile="$dir/$name.pid"
  rm -f "$pidfile"
  [[ -s $log ]] && mv -f "$log" "$log.1"
  # The child writes its own pid (setsid may fork when we are a group leader), by a
  # rename: a half-written file read by daemon_pid would look stale and be removed.
  (
    cd "$dir" || exit 1
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
    KANAL_SERVICE="$svc/$name" exec setsid bash -c 'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1"; shift; exec "$@"' \
      _ "$pidfile" "$@" </dev/null >>"$log" 2>&1
  ) &
  for _ in $(seq 100); do
    daemon_pid "$svc" "$name" >/dev/null && return 0
    sleep 0.1
  done
  fail "$svc: $name did not start; see $log"
  tail_log "$log"
  return 1
}

# daemon_stop SVC NAME [PORT]: SIGTERM the daemon's whole process group, SIGKILL
# after $KANAL_STOP_TIMEOUT seconds. Prints the stopped pid; no-op when not running.
daemon_stop() {
  local svc=$1 name=$2 port=${3:-} pid end
  if pid=$(daemon_pid "$svc" "$name" "$port"); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    end=$((SECONDS + KANAL_STOP_TIMEOUT))
    while kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= end)); then
        say "$svc: $name (pid $pid) ignored SIGTERM for ${KANAL_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    printf '%s\n' "$pid"
  fi
  rm -f "$KANAL_RUN/$svc/$name.pid"
}

# wait_healthy SVC NAME TIMEOUT LOGFILE CHECK...: poll CHECK (a command) until it
# succeeds. Fails early, with the log tail, when the daemon dies; fails after
# TIMEOUT seconds pointing at LOGFILE.
wait_healthy() {
  local svc=$1 name=$2 timeout=$3 log=$4 end
  shift 4
  end=$((SECONDS + timeout))
  while :; do
    "$@" && return 0
    if ! daemon_pid "$svc" "$name" >/dev/null; then
      fail "$svc: $name exited during startup; see $log"
      tail_log "$log"
      return 1
    fi
    if ((SECONDS >= end)); then
      fail "$svc: not healthy after ${timeout}s; see $log"
      tail_log "$log"
      return 1
    fi
    sleep 1
  done
}

# live_pids SVC: pids from $KANAL_RUN/SVC/*.pid that are alive (comma separated).
live_pids() {
  local f pid out=()
  for f in "$KANAL_RUN/$1"/*.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && out+=("$pid")
  done
  ((${#out[@]})) || return 1
  local IFS=,
  printf '%s\n' "${out[*]}"
}

# ---------------------------------------------------------------- locking
# One lock per service (a directory, so daemons cannot inherit it the way they
# would inherit a flock fd). Re-entrant within one dev/stack process; a lock
# whose owner died is broken. Released by stack_unlock_all (dev/stack's EXIT trap).
declare -gA _KANAL_LOCKS=()

stack_lock() {
  local svc=$1 dir owner end said=
  [[ -n ${_KANAL_LOCKS[$svc]:-} ]] && return 0
  mkdir -p "$KANAL_RUN/.locks" || return 1
  dir="$KANAL_RUN/.locks/$svc"
  end=$((SECONDS + KANAL_LOCK_TIMEOUT))
  until mkdir "$dir" 2>/dev/null; do
    owner=$(cat "$dir/pid" 2>/dev/null)
    # Owner gone, or died between mkdir and writing its pid: break the lock.
    if { [[ -n $owner ]] && ! kill -0 "$owner" 2>/dev/null; } ||
      { [[ -z $owner ]] && (($(date +%s) - $(stat -c %Y "$dir" 2>/dev/null || date +%s) > 10)); }; then
      rm -rf "$dir"
      continue
    fi
    if ((SECONDS >= end)); then
      fail "$svc: another dev/stack (pid ${owner:-?}) holds $dir; gave up after ${KANAL_LOCK_TIMEOUT}s"
      return 1
    fi
    if [[ -z $said ]]; then
      say "$svc: waiting for another dev/stack (pid ${owner:-?}) working on it"
      said=1
    fi
    sleep 0.5
  done
  printf '%s\n' "$$" >"$dir/pid"
  _KANAL_LOCKS[$svc]=$dir
}

stack_unlock() {
  local dir=${_KANAL_LOCKS[$1]:-}
  [[ -n $dir ]] || return 0
  rm -rf "$dir"
  unset '_KANAL_LOCKS[$1]'
}

stack_unlock_all() {
  local svc
  for svc in "${!_KANAL_LOCKS[@]}"; do stack_unlock "$svc"; done
}

# stack_locked SVC CMD...: run CMD holding SVC's lock (kept if already held).
stack_locked() {
  local svc=$1 rc held=${_KANAL_LOCKS[$1]:-}
  shift
  stack_lock "$svc" || return 1
  "$@"
  rc=$?
  [[ -n $held ]] || stack_unlock "$svc"
  return "$rc"
}

# stack_up SVC: run SVC's <svc>_up under its lock, once per dev/stack run.
declare -gA _KANAL_UP=()
stack_up() {
  [[ -n ${_KANAL_UP[$1]:-} ]] && return 0
  stack_locked "$1" "${1}_up" || return 1
  _KANAL_UP[$1]=1
}

# stack_require SVC...: bring dependencies up (for use inside <svc>_up).
stack_require() {
  local dep
  for dep in "$@"; do
    stack_up "$dep" || {
      fail "could not bring up $dep"
      return 1
    }
  done
}

# ---------------------------------------------------------------- java / maven
# The java launcher: $JAVA_HOME/bin/java when set, else java on PATH; needs 17+.
kanal_java() {
  local java=java
  [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]] && java=$JAVA_HOME/bin/java
  command -v "$java" >/dev/null || {
    fail "java (17 or newer) not found; install a JDK or set JAVA_HOME"
    return 1
  }
  printf '%s\n' "$java"
}

# kanal_javac: the javac beside the java launcher kanal_java picks (for launcher classes).
kanal_javac() {
  local java javac
  java=$(kanal_java) || return 1
  javac="$(dirname "$(readlink -f "$(command -v "$java")")")/javac"
  [[ -x $javac ]] || {
    fail "javac not found beside $java; install a JDK (not only a JRE) or set JAVA_HOME"
    return 1
  }
  printf '%s\n' "$javac"
}

# pom_property POM NAME: the <NAME> value from POM's <properties>.
pom_property() {
  sed -n "s:.*<$2>\([^<]*\)</$2>.*:\1:p" "$1" | head -n 1
}

# maven_jars_ready POM LIBDIR: LIBDIR holds POM's jars already.
maven_jars_ready() {
  [[ -f $2/STAMP && "$(<"$2/STAMP")" == "$(sha256sum <"$1" | cut -c1-64)" ]]
}

# maven_jars WHAT POM LIBDIR: put POM's runtime dependency jars into LIBDIR
# (via mvn dependency:copy-dependencies; Maven's own ~/.m2 cache is reused).
# Skipped when LIBDIR/STAMP matches POM. Built beside LIBDIR, then renamed in.
maven_jars() {
  local what=$1 pom=$2 lib=$3 tmp log t0=$SECONDS
  maven_jars_ready "$pom" "$lib" && return 0
  command -v mvn >/dev/null || {
    fail "$what: mvn (Maven 3) not found on PATH"
    return 1
  }
  mkdir -p "$(dirname "$lib")" || return 1
  tmp="$lib.tmp.$$"
  log="$lib.install.log"
  rm -rf "$tmp"
  say "$what: resolving jars with Maven (first time only; log: $log)"
  # A throw-away cwd so Maven never writes next to the pom in the clone.
  if ! (cd "$(dirname "$tmp")" && mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"$log" 2>&1); then
    rm -rf "$tmp"
    fail "$what: Maven could not resolve $pom; see $log"
    tail_log "$log"
    return 1
  fi
  sha256sum <"$pom" | cut -c1-64 >"$tmp/STAMP"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  say "$what: $(find "$lib" -name '*.jar' | wc -l) jars in $lib ($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------- debian packages
# deb_install WHAT HOME PKG...: unpack the Debian packages PKG, and those of their
# library dependencies this machine lacks, into HOME/root (apt-get download +
# dpkg -x: nothing is installed system-wide, nothing runs as a package script).
# Skipped when HOME/STAMP names the same packages. Built beside HOME, then renamed in.
deb_install() {
  local what=$1 home=$2 tmp log dep deb t0=$SECONDS
  shift 2
  [[ -f $home/STAMP && "$(<"$home/STAMP")" == "$*" ]] && return 0
  if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    fail "$what: apt-get and dpkg are needed to fetch the Debian packages $*"
    return 1
  fi
  local pkgs=("$@")
  for dep in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null | awk '$1 ~ /Depends:$/ && $2 ~ /^lib/ {print $2}' | sort -u); do
    dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'ok installed' || pkgs+=("$dep")
  done
  mkdir -p "$(dirname "$home")" || return 1
  tmp="$home.tmp.$$"
  log="$home.install.log"
  rm -rf "$tmp"
  mkdir -p "$tmp/debs" || return 1
  say "$what: apt-get download ${pkgs[*]} (first time only; log: $log)"
  if ! (cd "$tmp/debs" && { apt-get download "${pkgs[@]}" || { apt-get update && apt-get download "${pkgs[@]}"; }; }) >"$log" 2>&1; then
    rm -rf "$tmp"
    fail "$what: apt-get download failed; see $log"
    tail_log "$log"
    return 1
  fi
  for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$tmp/root" >>"$log" 2>&1 || {
      rm -rf "$tmp"
      fail "$what: dpkg -x $deb failed; see $log"
      return 1
    }
  done
  rm -rf "$tmp/debs"
  printf '%s\n' "$*" >"$tmp/STAMP"
  rm -rf "$home"
  mv "$tmp" "$home" || return 1
  say "$what: unpacked into $home ($((SECONDS - t0))s)"
}

# deb_command HOME CMD...: sets DEB_COMMAND to CMD as the service runs it: with the
# libraries deb_install unpacked into HOME, and as an unprivileged user when we are root
# (servers such as PostgreSQL refuse root): in a user namespace of its own, as its uid
# 65534, with no capabilities on this machine. Its files stay ours, so it reaches its
# data under a root-only home ($KANAL_RUN) without any permission changed there. Every
# step execs the next, so the command's pid is the server's.
deb_command() {
  local home=$1 dir libs=()
  shift
  for dir in "$home"/root/usr/lib/*-linux-gnu "$home"/root/lib/*-linux-gnu; do
    [[ -d $dir ]] && libs+=("$dir")
  done
  DEB_COMMAND=()
  ((EUID == 0)) && DEB_COMMAND=(unshare --user --map-user=65534 --map-group=65534 --)
  if ((${#libs[@]})); then
    local IFS=:
    DEB_COMMAND+=(env "LD_LIBRARY_PATH=${libs[*]}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  fi
  DEB_COMMAND+=("$@")
}
