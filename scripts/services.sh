#!/usr/bin/env bash
# Loopback services of the local stack, started on demand and left running until `stop`:
#   artifact HTTP server (bin/artifact-server.ts) on 127.0.0.1:$ARTIFACT_PORT serving .artifacts/
#   OCI registry (Debian's docker-registry) on 127.0.0.1:$REGISTRY_PORT
#   Proxmox VE API (fakepve through test/fakepve/launch.py, TLS, self-signed) on 127.0.0.1:$PROXMOX_PORT, with the
#   API token from $PROXMOX_VE_API_TOKEN (default root@pam!local=image-factory-local); only with `start proxmox`
# Usage: scripts/services.sh start [proxmox]|stop|status
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/.run"
mkdir -p "$run"
ARTIFACT_PORT=${ARTIFACT_PORT:-8089}
REGISTRY_PORT=${REGISTRY_PORT:-5000}
PROXMOX_PORT=${PROXMOX_PORT:-8006}
ARTIFACT_ROOT=${ARTIFACT_ROOT:-$root/.artifacts}

alive() { [[ -f "$run/$1.pid" ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

wait_http() { # url, name
  for _ in $(seq 1 50); do
    if node -e "require('http').get(process.argv[1], r => process.exit(r.statusCode < 500 ? 0 : 1)).on('error', () => process.exit(1))" "$1"; then return 0; fi
    sleep 0.2
  done
  echo "services: $2 did not answer at $1; see $run/$2.log" >&2
  return 1
}

start_artifacts() {
  if alive artifact-server; then echo "services: artifact server already running (pid $(cat "$run/artifact-server.pid"))"; return; fi
  mkdir -p "$ARTIFACT_ROOT"
  nohup node "$root/node_modules/.bin/ts-node" --transpile-only "$root/bin/artifact-server.ts" \
    --root "$ARTIFACT_ROOT" --host 127.0.0.1 --port "$ARTIFACT_PORT" >"$run/artifact-server.log" 2>&1 &
  echo $! > "$run/artifact-server.pid"
  wait_http "http://127.0.0.1:$ARTIFACT_PORT/healthz" artifact-server
  echo "services: artifact server on http://127.0.0.1:$ARTIFACT_PORT/ serving $ARTIFACT_ROOT"
}

start_registry() {
  if alive registry; then echo "services: registry already running (pid $(cat "$run/registry.pid"))"; return; fi
  local bin; bin=$(command -v docker-registry || echo /usr/bin/docker-registry)
  [[ -x "$bin" ]] || { echo "services: docker-registry is not installed; bash scripts/setup.sh sets it up" >&2; return 1; }
  mkdir -p "$root/.cache/registry"
  cat > "$run/registry.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $root/.cache/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YAML
  nohup "$bin" serve "$run/registry.yml" >"$run/registry.log" 2>&1 &
  echo $! > "$run/registry.pid"
  wait_http "http://127.0.0.1:$REGISTRY_PORT/v2/" registry
  echo "services: OCI registry on 127.0.0.1:$REGISTRY_PORT (storage $root/.cache/registry)"
}

start_proxmox() {
  if alive proxmox; then echo "services: Proxmox VE API already running (pid $(cat "$run/proxmox.pid"))"; return; fi
  [[ -x "$root/.tools/fakepve/bin/python" ]] || { echo "services: fakepve is not installed; bash scripts/setup.sh sets it up" >&2; return 1; }
  rm -f "$run/proxmox.json"
  FAKEPVE_TOKEN="${PROXMOX_VE_API_TOKEN:-root@pam!local=image-factory-local}" nohup "$root/.tools/fakepve/bin/python" \
    "$root/test/fakepve/launch.py" --host 127.0.0.1 --port "$PROXMOX_PORT" --ready-file "$run/proxmox.json" \
    --data-dir "$run/proxmox-data" >"$run/proxmox.log" 2>&1 &
  echo $! > "$run/proxmox.pid"
  for _ in $(seq 1 50); do [[ -f "$run/proxmox.json" ]] && break; sleep 0.2; done
  [[ -f "$run/proxmox.json" ]] || { echo "services: the Proxmox VE API did not start; see $run/proxmox.log" >&2; return 1; }
  echo "services: Proxmox VE API on https://127.0.0.1:$PROXMOX_PORT/ (self-signed: insecure: true)"
}

stop_one() {
  if alive "$1"; then kill "$(cat "$run/$1.pid")" && echo "services: stopped $1"; fi
  rm -f "$run/$1.pid"
}

case "${1:-status}" in
  start)
    start_artifacts
    start_registry
    if [[ "${2:-}" == proxmox ]]; then start_proxmox; fi
    ;;
  stop)
    stop_one artifact-server
    stop_one registry
    stop_one proxmox
    ;;
  status)
    for s in artifact-server registry proxmox; do
      if alive "$s"; then echo "$s: running (pid $(cat "$run/$s.pid"))"; else echo "$s: stopped"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
