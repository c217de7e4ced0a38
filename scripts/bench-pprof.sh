#!/usr/bin/env bash
# Contention-profile figures (bench/README.md, "Contention profiles"), measured in one run:
#   1. the cost of one captured sample (bench/pprof.cpp), against the same call unsampled;
#   2. a planted slow holder among ten fast sites on one lock, profiled at the default rate:
#      its rank and share of the mutex profile's delay, and the block profile's total delay
#      against stallscope_wait_seconds_sum (decoded by bench/pprof-report.mjs with the npm
#      pprof-format package: bash scripts/setup-node.sh installs it);
#   3. the demo's throughput (release preset, --variant fixed, closed loop) with profiling at the
#      default rate and off (STALLSCOPE_PROFILE_RATE=off), alternating, ROUNDS rounds each.
#
#   bash scripts/bench-pprof.sh [--seconds S (default 3)] [--demo-seconds S (default 10)]
#                               [--rounds N (default 3)] [--demo-only] [--demo PATH]
#
# --demo-only measures figure 3 alone; --demo PATH uses that demo binary instead of building the
# release preset's (the figure depends on the agent, not on the endpoint's code).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=3
demo_seconds=10
rounds=3
demo_only=no
demo=
while (($# > 0)); do
  case "$1" in
    --seconds) seconds=${2:?}; shift 2 ;;
    --demo-seconds) demo_seconds=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --demo-only) demo_only=yes; shift ;;
    --demo) demo=${2:?}; shift 2 ;;
    *) sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
done
build=${STALLSCOPE_BENCH_BUILD_DIR:-build/bench}
out=$build/results/pprof
mkdir -p "$out"
if [[ $demo_only == no ]]; then
  bash scripts/setup-node.sh >/dev/null
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DSTALLSCOPE_BUILD_TESTS=OFF -DSTALLSCOPE_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target stallscope-bench-pprof >/dev/null
fi
if [[ -z $demo ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)" --target stallscope-demo >/dev/null
  demo=build/release/examples/demo/stallscope-demo
fi

echo "bench-pprof: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ $demo_only == no ]]; then
  "$build/bench/stallscope-bench-pprof" "$out" "$seconds" | tee "$out/bench.txt"
  node bench/pprof-report.mjs "$out"
fi

throughput() {  # STALLSCOPE_PROFILE_RATE value ("" for the default)
  local rate_env=()
  [[ -n $1 ]] && rate_env=(STALLSCOPE_PROFILE_RATE="$1")
  env "${rate_env[@]}" "$demo" --variant fixed --clients 16 --duration "$demo_seconds" \
    --listen 127.0.0.1:0 --summary-interval 0 | sed -n 's/.*throughput=\([0-9.]*\).*/\1/p'
}
# Side by side: each round runs both, the order swapped every round, so a drift of the machine's
# load hits both alike; the per-round ratios show the noise.
on=() off=()
for ((r = 0; r < rounds; r++)); do
  if ((r % 2 == 0)); then
    on+=("$(throughput "")")
    off+=("$(throughput off)")
  else
    off+=("$(throughput off)")
    on+=("$(throughput "")")
  fi
done
echo "bench-pprof: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
ratios = [a / b for a, b in zip(on, off)]
print(f"demo throughput (requests/s, median of {len(on)}): profiling default {statistics.median(on):.1f}"
      f" {on}, off {statistics.median(off):.1f} {off}, ratio {statistics.median(on) / statistics.median(off):.3f}x")
print(f"per-round ratios (default/off): {[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}x,"
      f" range {min(ratios):.3f}-{max(ratios):.3f}; run-to-run spread with profiling off:"
      f" {(max(off) / min(off) - 1) * 100:.1f} %")
PY
