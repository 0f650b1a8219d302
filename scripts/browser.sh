#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the browser tests (Playwright drives it;
# no browser download), with NSS's certutil, which puts a test CA in the trust store
# of a test's own browser profile. Installs them as root with apt, otherwise says how.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && command -v certutil >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  printf 'dshub: installing Debian'"'"'s chromium and libnss3-tools for the browser tests\n' >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium libnss3-tools >/dev/null
else
  printf 'dshub: the browser tests need Chromium and certutil: sudo apt-get install chromium libnss3-tools\n' >&2
  exit 1
fi
