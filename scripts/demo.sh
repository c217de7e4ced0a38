#!/usr/bin/env bash
# The README's first command: installs the packages, builds the demo in Release and runs it.
#
#   bash scripts/demo.sh [--duration SECONDS] [--listen HOST:PORT] [--threads N]
#
# The arguments go to the demo (build/release/examples/stallscope-example-locks), which prints
# the URL of its /metrics and runs until Ctrl-C (or for --duration seconds). It serves on
# 127.0.0.1:9464 unless --listen (or STALLSCOPE_LISTEN) says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=stallscope-example-locks
binary=build/release/examples/$target

case "${1:-}" in
  -h | --help)
    sed -n '2,8s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
esac

bash scripts/setup.sh
echo "demo: building $target (release preset)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)" --target "$target"
echo "demo: running $binary $*"
exec "$binary" "$@"
