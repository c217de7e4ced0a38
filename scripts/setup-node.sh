#!/usr/bin/env bash
# Installs the npm packages of the dashboard checks (tests/dashboards) and of the pprof profile
# tests (tests/pprof: pprof-format, an independent decoder), idempotently: `npm ci` from each
# folder's package-lock.json, skipped when node_modules was installed from the same lock file.
# Runs without a terminal. Needs Node.js 20+ and npm (on the project's machines; elsewhere
# install them first) and the npm registry, once.
#
#   bash scripts/setup-node.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "setup-node: $tool not found; install Node.js 20 or later with npm" >&2
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if ((major < 20)); then
  echo "setup-node: Node.js $(node --version) is too old for the dashboard checks; need 20+" >&2
  exit 1
fi

for dir in tests/dashboards tests/pprof; do
  stamp=$dir/node_modules/.stallscope-package-lock.json
  if [[ -f $stamp ]] && cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "setup-node: $dir/node_modules already matches package-lock.json"
    continue
  fi
  echo "setup-node: npm ci in $dir"
  # No install scripts are needed by these packages; none run. No audit or funding requests.
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$stamp"
done
echo "setup-node: done"
