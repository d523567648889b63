#!/usr/bin/env bash
# Makes sure the system packages Kappa needs are on this machine: nats-server (tests and
# `kappa dev` spawn their own), libatomic1 (the RocksDB binding links it) and prometheus (the
# observability test scrapes a cluster with a real one) and kubectl (the deployment tests render
# deploy/k8s with its kustomize; Debian's kubernetes-client 1.20 suffices, deploy/README.md).
# Installs Debian's packages when they are missing and we may install packages, otherwise says how.
set -euo pipefail

missing=()
have_nats=no
for candidate in "${NATS_SERVER_BIN:-}" /usr/sbin/nats-server /usr/bin/nats-server /usr/local/bin/nats-server; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then have_nats=yes; fi
done
if command -v nats-server >/dev/null 2>&1; then have_nats=yes; fi
[ "$have_nats" = yes ] || missing+=(nats-server)
have_prometheus=no
for candidate in "${PROMETHEUS_BIN:-}" /usr/bin/prometheus /usr/local/bin/prometheus; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then have_prometheus=yes; fi
done
if command -v prometheus >/dev/null 2>&1; then have_prometheus=yes; fi
[ "$have_prometheus" = yes ] || missing+=(prometheus)
command -v "${KUBECTL_BIN:-kubectl}" >/dev/null 2>&1 || missing+=(kubernetes-client)
if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libatomic\.so\.1'; then
  missing+=(libatomic1)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ]; then
    echo "installing missing system packages: ${missing[*]}" >&2
    # --no-install-recommends: prometheus would otherwise pull in node-exporter and friends.
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
  fi
fi
echo "missing system packages: ${missing[*]}. Install them (Debian/Ubuntu: 'sudo apt-get install ${missing[*]}')," >&2
echo "or for nats-server a release from the NATS project, and set NATS_SERVER_BIN to its path" >&2
echo "(for prometheus a release from prometheus.io, and PROMETHEUS_BIN)." >&2
exit 1
