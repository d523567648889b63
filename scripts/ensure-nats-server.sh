#!/usr/bin/env bash
# Makes sure a nats-server binary is on this machine: installs Debian's package when it is
# missing and we may install packages, otherwise says how.
set -euo pipefail
for candidate in "${NATS_SERVER_BIN:-}" /usr/sbin/nats-server /usr/bin/nats-server /usr/local/bin/nats-server; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then exit 0; fi
done
if command -v nats-server >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ]; then
    echo "nats-server is missing: installing Debian's nats-server package" >&2
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
    exit 0
  fi
fi
echo "nats-server is missing. Install it (Debian/Ubuntu: 'sudo apt-get install nats-server'," >&2
echo "or a release from the NATS project) or set NATS_SERVER_BIN to its path." >&2
exit 1
