#!/usr/bin/env bash
# Create/refresh the project venv (.venv) from requirements-dev.txt.
# Installs Debian's python3-venv when venv support is missing and we may.
set -euo pipefail
venv="${1:?usage: venv.sh DIR REQUIREMENTS}"
requirements="${2:?requirements file}"

log() { printf 'dshub: %s\n' "$*" >&2; }

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { log "Python >= 3.11 is needed (found $(python3 --version 2>&1)); install it and run this again"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing Debian's python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      log "Python venv support is missing: install it ('sudo apt-get install python3-venv') and run this again"
      exit 1
    fi
  fi
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
