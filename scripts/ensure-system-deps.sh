#!/usr/bin/env bash
# Makes sure the system packages Kappa needs are on this machine: nats-server (tests and
# `kappa dev` spawn their own), libatomic1 (the RocksDB binding links it) and prometheus (the
# observability test scrapes a cluster with a real one) and kubectl (the deployment tests render
# deploy/k8s with its kustomize; Debian's kubernetes-client 1.20 suffices, deploy/README.md), and
# moto_server from pip (the S3 archive test's S3-compatible server).
# Installs Debian's packages when they are missing and we may install packages, otherwise says how.
set -euo pipefail

# The serving-table tests use this machine's PostgreSQL (5432) and Redis (6379) unless
# KAPPA_POSTGRES_URL / KAPPA_REDIS_URL point elsewhere: start an installed one that is stopped.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${KAPPA_POSTGRES_URL:-}" ] && ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || echo "PostgreSQL $version is stopped and could not be started; the PostgreSQL serving-table tests will fail" >&2
  done
fi
if [ -z "${KAPPA_REDIS_URL:-}" ] && ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
    echo "Redis is stopped and could not be started; the Redis serving-table tests will fail" >&2
fi

# The S3 segment-store test runs a real S3-compatible server, moto_server (PyPI's moto).
if ! command -v moto_server >/dev/null 2>&1; then
  if command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1; then
    echo "installing moto[server] (the S3-compatible server of the archive test)" >&2
    "$(command -v pip3 || command -v pip)" install -q 'moto[server]' ||
      echo "moto[server] could not be installed; the S3 archive test will fail (pip install 'moto[server]')" >&2
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  else
    echo "moto_server is missing and there is no pip: the S3 archive test will fail (pip install 'moto[server]')" >&2
  fi
fi

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
