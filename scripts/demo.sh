#!/usr/bin/env bash
# The README's first command: installs the packages, builds the demo service in Release, runs it.
#
#   bash scripts/demo.sh [--variant slow|fixed] [--duration SECONDS] [--listen HOST:PORT] ...
#
# The arguments go to stallscope-demo (build/release/examples/demo/; `--help` lists them all),
# which prints the URLs of its /metrics and /stallz, a summary every 5 s, and runs until Ctrl-C
# (or for --duration seconds). It serves on 127.0.0.1:9464 unless --listen (or STALLSCOPE_LISTEN).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=stallscope-demo
binary=build/release/examples/demo/$target

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
