#!/usr/bin/env bash
# Provide the Debian base image every dshub image builds FROM.
# Order: already present -> pull it -> make it locally with debootstrap and
# `docker import` (for machines with no container registry). Never rebuilt when present.
#
# debootstrap uses MIRROR, or, when it is empty, the Debian mirror the host's own apt
# uses (spawner/cli/aptmirror.py), so a machine behind a mirror needs no setting. It
# downloads with wget, which honours http_proxy/https_proxy: unless those are set,
# the host apt's proxy (Acquire::http::Proxy, Acquire::https::Proxy) is used.
set -euo pipefail

usage="usage: base-image.sh IMAGE SUITE MIRROR|'' PYTHON"
image="${1:?$usage}"
suite="${2:?$usage}"
mirror="${3?$usage}"
python="${4:?$usage}"
repo="$(cd "$(dirname "$0")/.." && pwd)"

log() { printf 'dshub: %s\n' "$*" >&2; }

# The host apt's proxy for SCHEME (http or https), empty for none. apt's https
# transport takes the http proxy unless it has its own; DIRECT and false mean none.
apt_proxy() {
  command -v apt-config >/dev/null 2>&1 || return 0
  local value
  value="$(apt-config dump --format '%f=%v%n' | sed -n "s/^Acquire::$1::Proxy=//Ip" | head -n 1)"
  if [ -z "$value" ] && [ "$1" = https ]; then value="$(apt_proxy http)"; fi
  case "$value" in DIRECT | false) ;; *) printf '%s' "$value" ;; esac
}

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi

if timeout 120 docker pull "$image" >/dev/null 2>&1; then
  log "pulled base image $image"
  exit 0
fi

log "cannot pull $image; building it with debootstrap"
if [ -z "$mirror" ]; then
  # It prints why and what to set when the host has no Debian mirror.
  mirror="$(PYTHONPATH="$repo" "$python" -m spawner.cli.aptmirror)"
fi
for scheme in http https; do
  var="${scheme}_proxy"
  if [ -z "${!var:-}" ] && proxy="$(apt_proxy "$scheme")" && [ -n "$proxy" ]; then
    export "$var=$proxy"
    log "debootstrap downloads through the host apt's $scheme proxy"
  fi
done

log "debootstrap: $suite from $mirror"
if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 ||
    { log "debootstrap is missing: install it ('sudo apt-get install debootstrap') and run this again"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

root="$(mktemp -d /var/tmp/dshub-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
  { log "debootstrap failed; last lines of $root.log:"; tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# The slim images' conventions: no apt caches, no docs, no recommends.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
cat >"$root/etc/apt/apt.conf.d/90dshub" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  - "$image" >/dev/null
log "base image $image ready"
