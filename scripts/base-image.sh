#!/usr/bin/env bash
# Provide the Debian base image every dshub image builds FROM.
# Order: already present -> pull it -> make it locally with debootstrap and
# `docker import` (for machines with no container registry). Never rebuilt when present.
set -euo pipefail

image="${1:?usage: base-image.sh IMAGE SUITE MIRROR}"
suite="${2:?suite}"
mirror="${3:?mirror}"

log() { printf 'dshub: %s\n' "$*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi

if timeout 120 docker pull "$image" >/dev/null 2>&1; then
  log "pulled base image $image"
  exit 0
fi

log "cannot pull $image; building it with debootstrap ($suite from $mirror)"
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
