#!/usr/bin/env bash
# Runs the demo service's two variants under the same load, one after the other, prints a
# markdown table of what each did (the table in examples/demo/README.md comes from here), and
# runs the release check (stallscope-check) against each while it runs.
#
#   bash scripts/demo-compare.sh [--duration SECONDS] [ARGS passed to both runs, e.g. --rate 100]
#   bash scripts/demo-compare.sh --demo PATH --check PATH [--check-config FILE] [--duration S] [ARGS]
#
# Installs packages (scripts/setup.sh), builds the release preset's stallscope-demo and
# stallscope-check, runs `--variant slow` then `--variant fixed` for --duration seconds each
# (default 20) on a free loopback port each, and keeps their output in
# build/release/demo-compare-VARIANT.log (and the check's in demo-compare-VARIANT-check.log).
# The check watches the middle half of each run. The slow variant must fail the checks
# lock-across-suspension (async_lock `cache`) and executor-cpu (the parse on executor threads),
# and retry-amplification once the demo exports retry budgets; the fixed variant must pass
# every check: otherwise the script says which verdict differs and exits 1. With --demo and
# --check it uses those binaries (a test runs it so, shortened) and installs and builds nothing;
# --check-config passes a thresholds file to the check.
set -euo pipefail
# shellcheck source=lib/demo-url.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/demo-url.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=stallscope-demo
binary=build/release/examples/demo/$target
checker=build/release/exporters/check/stallscope-check
logs=build/release
build=yes
check_args=()
duration=20
args=()
while (($# > 0)); do
  case "$1" in
    -h | --help)
      sed -n '2,20s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    --demo)
      binary=${2:?--demo needs a path}
      build=no
      shift 2
      ;;
    --check)
      checker=${2:?--check needs a path}
      build=no
      shift 2
      ;;
    --check-config)
      check_args=(--config "${2:?--check-config needs a path}")
      shift 2
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

if [[ $build == yes ]]; then
  bash scripts/setup.sh
  echo "demo-compare: building $target and stallscope-check (release preset)"
  cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)" --target "$target" \
    stallscope-check
else
  logs=$(mktemp -d "${TMPDIR:-/tmp}/demo-compare.XXXXXX")
fi
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 4)); then
  echo "demo-compare: --duration \"$duration\" must be a whole number of seconds, at least 4" >&2
  exit 2
fi
# The check watches the middle half of the run: the queue on the slow variant's lock has built
# up by then, and shutdown has not started.
check_delay=$((duration / 4))
check_window=$((duration / 2))

# Runs stallscope-check against the demo whose output goes to $1, once it prints its URL; the
# verdicts (PASS/FAIL/WARN id) go to $2.
run_check() {
  local log=$1 out=$2 url
  url=$(demo_url "$log")
  if [[ -z $url ]]; then
    echo "demo-compare: the demo printed no endpoint URL (see $log)" >"$out"
    return
  fi
  sleep "$check_delay"
  local rc=0
  "$checker" --url "$url" --window "${check_window}s" "${check_args[@]}" >"$out" 2>&1 || rc=$?
  echo "exit $rc" >>"$out"
}

# The value of NAME=VALUE in the result line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $result"; }

# "a b " -> "a, b"
sep() { sed 's/ *$//; s/ /, /g' <<<"$1"; }

rows=()
checks=()
verdicts_ok=yes
result=
for variant in slow fixed; do
  log=$logs/demo-compare-$variant.log
  check_log=$logs/demo-compare-$variant-check.log
  : >"$log"
  echo "demo-compare: $variant for ${duration}s: $binary --variant $variant --duration $duration" \
    "--listen 127.0.0.1:0 ${args[*]}; stallscope-check after ${check_delay}s, over ${check_window}s"
  run_check "$log" "$check_log" &
  checker_pid=$!
  status=0
  "$binary" --variant "$variant" --duration "$duration" --listen 127.0.0.1:0 "${args[@]}" 2>&1 |
    tee "$log" || status=${PIPESTATUS[0]}
  wait "$checker_pid"
  if ((status != 0)); then
    echo "demo-compare: the $variant run exited with status $status (see $log)" >&2
    exit 1
  fi
  result=$(grep '^result ' "$log" | tail -n 1)
  if [[ -z $result ]]; then
    echo "demo-compare: the $variant run printed no result line (see $log)" >&2
    exit 1
  fi
  rows+=("| $(field variant) | $(field throughput) | $(field p50_ms) | $(field p99_ms) |\
 $(field requests) | $(field failed) | $(field rejected) |\
 \`$(field top_stall)\` ($(field top_stall_waiters)) |")

  cat "$check_log"
  failed=$(sed -n 's/^FAIL  \([a-z-]*\):.*/\1/p' "$check_log" | sort | tr '\n' ' ')
  warned=$(sed -n 's/^WARN  \([a-z-]*\):.*/\1/p' "$check_log" | sort | tr '\n' ' ')
  if [[ $variant == slow ]]; then
    expected="executor-cpu lock-across-suspension "
    # Once the demo exports retry budgets, its unbudgeted retries must fail the retry check too.
    if grep -q 'retry budget `' "$check_log"; then
      expected="executor-cpu lock-across-suspension retry-amplification "
    fi
  else
    expected=""
  fi
  verdict="as expected"
  if ! grep -q '^exit [01]$' "$check_log" || [[ $failed != "$expected" ]] ||
    { [[ $variant == slow ]] && ! grep -q 'async_lock `cache`' "$check_log"; }; then
    verdict="NOT as expected: failed [${failed% }], expected [${expected% }]"
    verdicts_ok=no
  fi
  checks+=("| $variant | $(sed -n 's/^result: \([A-Z]*\).*/\1/p' "$check_log") \
| $(sep "${failed:-none}") | $(sep "${warned:-none}") | $verdict |")
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
echo
echo "Release check (stallscope-check --window ${check_window}s, from ${check_delay}s into each run):"
echo
echo "| variant | verdict | failed checks | warnings | |"
echo "|---|---|---|---|---|"
printf '%s\n' "${checks[@]}"
echo
if [[ $verdicts_ok == yes ]]; then
  [[ $build == no ]] && rm -rf "$logs"
  echo "demo-compare: release check as expected: the slow variant fails lock-across-suspension" \
    "(async_lock \`cache\`) and executor-cpu (the parse on executor threads), the fixed" \
    "variant passes every check"
else
  echo "demo-compare: the release check's verdicts are not as expected (see the table and" \
    "$logs/demo-compare-*-check.log)" >&2
  exit 1
fi
