#!/usr/bin/env bash
# The test command (README, .ci/run): installs what it needs, then build, typecheck, lint, format, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system-deps.sh
bash scripts/ensure-deps.sh
npm run --silent typecheck
npm run --silent lint
npx prettier --check --log-level warn .
npx vitest run "$@"
