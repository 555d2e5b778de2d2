#!/usr/bin/env bash
# Install the system programs genqueue's demo and tests run: redis-server (and, for the tests, docker-compose for
# the compose check, promtool, from Debian's prometheus package, for the monitoring files, openssl for the TLS
# test's certificates, ip, from iproute2, for the partition test's network namespaces, and chromium, which the /ui
# browser tests drive through Playwright, since Playwright cannot download its own browser here). Uses apt where a
# program is missing and we are root; otherwise says how to get it.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${1:-}" = "--test" ]; then
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a redis-server service on install; genqueue starts its own, so stop that one.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    (service redis-server stop || systemctl stop redis-server || true) >/dev/null 2>&1
  fi
  # Likewise a prometheus service: the tests need only its promtool.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    (service prometheus stop || systemctl stop prometheus || true) >/dev/null 2>&1
  fi
else
  echo "genqueue needs ${missing[*]}: install it (e.g. 'sudo apt-get install ${missing[*]}' or 'brew install redis')" >&2
  exit 1
fi
