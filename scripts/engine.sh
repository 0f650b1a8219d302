#!/usr/bin/env bash
# Make sure a Docker engine answers. Installs Debian's docker.io and starts
# dockerd when this is a Debian/Ubuntu machine and we are root; otherwise
# stops with the exact instruction. Idempotent: a running engine is left alone.
set -euo pipefail

log() { printf 'dshub: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  if engine_answers; then exit 0; fi
  [ "$(id -u)" = 0 ] || die "no Docker engine: install one (Debian: 'sudo apt-get install docker.io') or run this as root."
  command -v apt-get >/dev/null 2>&1 || die "no Docker engine and no apt-get: install Docker Engine for your OS, start it, and run this again."
  log "installing Debian's docker.io (engine) ..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

engine_answers && exit 0

[ "$(id -u)" = 0 ] || die "the Docker engine is not running: start it ('sudo systemctl start docker') or run this as root."

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl start docker || true
fi

if ! engine_answers; then
  pidfile=/var/run/docker.pid
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "removing stale $pidfile (its dockerd is gone)"
    rm -f "$pidfile"
  fi
  log "starting dockerd (log: /var/log/dshub-dockerd.log)"
  nohup dockerd >/var/log/dshub-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
fi

engine_answers || die "dockerd did not come up within 60 s; see /var/log/dshub-dockerd.log"
log "engine ready: $(docker version --format '{{.Server.Version}}')"
