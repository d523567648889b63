#!/usr/bin/env bash
# README's first Quick-start command: installs what it needs, then `kappa dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system-deps.sh
bash scripts/ensure-deps.sh
exec node dist/cli/main.js dev "$@"
