# shellcheck shell=bash
# dev/stack service "azurite": Azure Blob Storage emulator, blob service only,
# in memory (every start is empty), http://127.0.0.1:10000/devstoreaccount1.
# No access log unless KANAL_AZURITE_ACCESS_LOG=1 when it starts.
#
# Pinned to 3.35.0: 3.36+ needs Node 21+. Installed from npm into
# $KANAL_CACHE/azurite/<version>; runtime in $KANAL_RUN/azurite/{azurite.log,azurite.pid}.

AZURITE_VERSION=3.35.0
AZURITE_PORT=10000
# The emulator's fixed, publicly documented development account.
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZURITE_BLOB_ENDPOINT="http://$KANAL_HOST:$AZURITE_PORT/$AZURITE_ACCOUNT"
: "${KANAL_AZURITE_UP_TIMEOUT:=60}"
: "${KANAL_AZURITE_MEMORY_MB:=2048}" # cap for blob contents held in memory
: "${KANAL_AZURITE_ACCESS_LOG:=0}"   # 1: log every request to azurite.log (takes effect on next start)

_azurite_home() { printf '%s\n' "$KANAL_CACHE/azurite/$AZURITE_VERSION"; }
_azurite_bin() { printf '%s\n' "$(_azurite_home)/node_modules/.bin/azurite-blob"; }

azurite_ports() { echo "$AZURITE_PORT"; }

azurite_install() {
  local home tmp log t0=$SECONDS
  home=$(_azurite_home)
  [[ -x $home/node_modules/.bin/azurite-blob && -f $home/STAMP ]] && return 0
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "azurite: node and npm (Node 18-20) are needed"
    return 1
  fi
  mkdir -p "$(dirname "$home")" || return 1
  tmp="$home.tmp.$$"
  log="$home.install.log"
  rm -rf "$tmp"
  mkdir -p "$tmp" || return 1
  say "azurite: npm install azurite@$AZURITE_VERSION (first time only; log: $log)"
  if ! (cd "$tmp" && npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >"$log" 2>&1); then
    rm -rf "$tmp"
    fail "azurite: npm install failed; see $log"
    tail_log "$log"
    return 1
  fi
  echo "azurite@$AZURITE_VERSION" >"$tmp/STAMP"
  rm -rf "$home"
  mv "$tmp" "$home" || return 1
  say "azurite: installed in $home ($((SECONDS - t0))s)"
}

azurite_status() {
  daemon_pid azurite azurite "$AZURITE_PORT" >/dev/null && port_open "$KANAL_HOST" "$AZURITE_PORT"
}

azurite_up() {
  local dir log pid
  azurite_install || return 1
  dir=$(run_dir azurite) || return 1
  log="$dir/azurite.log"
  if pid=$(daemon_pid azurite azurite "$AZURITE_PORT"); then
    if wait_healthy azurite azurite 15 "$log" port_open "$KANAL_HOST" "$AZURITE_PORT"; then
      say "azurite: already running (pid $pid)"
      return 0
    fi
    say "azurite: restarting (pid $pid does not listen on $AZURITE_PORT)"
    daemon_stop azurite azurite >/dev/null
  fi
  ensure_port_free "$AZURITE_PORT" azurite || return 1
  say "azurite: starting on $KANAL_HOST:$AZURITE_PORT"
  local quiet=(--silent)
  [[ $KANAL_AZURITE_ACCESS_LOG == 1 ]] && quiet=()
  # In memory: nothing is written (it runs in $dir, so --location is not needed).
  daemon_start azurite azurite "$log" "$(_azurite_bin)" \
    --blobHost "$KANAL_HOST" --blobPort "$AZURITE_PORT" \
    --inMemoryPersistence --extentMemoryLimit "$KANAL_AZURITE_MEMORY_MB" \
    --skipApiVersionCheck --loose --disableTelemetry "${quiet[@]}" || return 1
  wait_healthy azurite azurite "$KANAL_AZURITE_UP_TIMEOUT" "$log" \
    port_open "$KANAL_HOST" "$AZURITE_PORT" || return 1
  say "azurite: ready on $AZURITE_BLOB_ENDPOINT (pid $(daemon_pid azurite azurite))"
}

azurite_down() {
  local pid
  pid=$(daemon_stop azurite azurite "$AZURITE_PORT") || return 1
  [[ -z $pid ]] || say "azurite: stopped (pid $pid)"
}

azurite_env() {
  env_line AZURITE_CONNECTION_STRING "DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=$AZURITE_BLOB_ENDPOINT;"
  env_line AZURITE_BLOB_ENDPOINT "$AZURITE_BLOB_ENDPOINT"
  env_line AZURITE_ACCOUNT_NAME "$AZURITE_ACCOUNT"
  env_line AZURITE_ACCOUNT_KEY "$AZURITE_KEY"
}
