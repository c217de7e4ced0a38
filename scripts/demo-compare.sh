#!/usr/bin/env bash
# Runs the demo service's two variants under the same load, one after the other, and prints a
# markdown table of what each did (the table in examples/demo/README.md comes from here).
#
#   bash scripts/demo-compare.sh [--duration SECONDS] [ARGS passed to both runs, e.g. --rate 100]
#
# Installs packages (scripts/setup.sh), builds the release preset's stallscope-demo, runs
# `--variant slow` then `--variant fixed` for --duration seconds each (default 20) on a free
# loopback port each, and keeps their output in build/release/demo-compare-VARIANT.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=stallscope-demo
binary=build/release/examples/demo/$target
duration=20
args=()
while (($# > 0)); do
  case "$1" in
    -h | --help)
      sed -n '2,9s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    --duration)
      duration=${2:?--duration needs a value}
      shift 2
      ;;
    --variant | --listen)
      echo "demo-compare: $1 is chosen by the script" >&2
      exit 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

bash scripts/setup.sh
echo "demo-compare: building $target (release preset)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)" --target "$target"

# The value of NAME=VALUE in the result line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $result"; }

rows=()
result=
for variant in slow fixed; do
  log=build/release/demo-compare-$variant.log
  echo "demo-compare: $variant for ${duration}s: $binary --variant $variant --duration $duration" \
    "--listen 127.0.0.1:0 ${args[*]}"
  "$binary" --variant "$variant" --duration "$duration" --listen 127.0.0.1:0 "${args[@]}" |
    tee "$log"
  result=$(grep '^result ' "$log" | tail -n 1)
  if [[ -z $result ]]; then
    echo "demo-compare: the $variant run printed no result line (see $log)" >&2
    exit 1
  fi
  rows+=("| $(field variant) | $(field throughput) | $(field p50_ms) | $(field p99_ms) |\
 $(field requests) | $(field failed) | $(field rejected) |\
 \`$(field top_stall)\` ($(field top_stall_waiters)) |")
done

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || true)
echo
echo "${duration} s per variant, $(nproc 2>/dev/null || echo '?') CPUs${cpu:+ ($cpu)}," \
  "arguments: ${args[*]:-(defaults)}"
echo
echo "| variant | throughput (req/s) | p50 (ms) | p99 (ms) | completed | failed | rejected |" \
  "top stalling resource (avg waiters) |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
