#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the browser tests (Playwright drives it;
# no browser download). Installs it as root with apt, otherwise says how.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  printf 'dshub: installing Debian'"'"'s chromium for the browser tests\n' >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
  printf 'dshub: the browser tests need Chromium: sudo apt-get install chromium\n' >&2
  exit 1
fi
