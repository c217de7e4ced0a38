#!/usr/bin/env bash
# The demo's fixed variant at saturation (closed loop), stallscope on vs compiled off: the same
# source built twice with -O2 (build/bench and build/bench-off, the second with
# -DSTALLSCOPE_ENABLED=OFF), run alternately ROUNDS times each for SECONDS, and a table of
# median throughput and p99 with the on/off ratios.
#
#   bash scripts/bench-saturation.sh [--rounds N (3)] [--seconds S (10)] [--clients N (16)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=3
seconds=10
clients=16
while (($# > 0)); do
  case "$1" in
    --rounds) rounds=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    *) echo "bench-saturation: unknown argument $1" >&2; exit 2 ;;
  esac
done

flags=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
       -DSTALLSCOPE_BUILD_TESTS=OFF -DSTALLSCOPE_BUILD_EXAMPLES=ON)
cmake -S . -B build/bench "${flags[@]}" >/dev/null
cmake -S . -B build/bench-off "${flags[@]}" -DSTALLSCOPE_ENABLED=OFF >/dev/null
for dir in build/bench build/bench-off; do
  cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)" --target stallscope-demo >/dev/null
done

out=build/bench/results
mkdir -p "$out"
rm -f "$out"/saturation-*.log
echo "bench-saturation: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= rounds; ++r)); do
  for variant in on off; do
    dir=build/bench
    [[ $variant == off ]] && dir=build/bench-off
    "$dir/examples/demo/stallscope-demo" --variant fixed --clients "$clients" \
      --duration "$seconds" --listen 127.0.0.1:0 --summary-interval 0 \
      | grep '^result' >"$out/saturation-$variant-$r.log"
  done
done
echo "bench-saturation: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$out" "$clients" "$seconds" "$rounds" <<'PY'
import glob, os, re, statistics, sys
out, clients, seconds, rounds = sys.argv[1:]
def runs(variant):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, f"saturation-{variant}-*.log"))):
        line = open(path).read()
        rows.append({k: float(v) for k, v in re.findall(r"(throughput|p99_ms|p50_ms)=([0-9.]+)", line)})
    return rows
on, off = runs("on"), runs("off")
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"### The demo's fixed variant at saturation ({clients} clients, closed loop, "
      f"{seconds} s x {rounds} rounds each, alternating; medians)\n")
print("| build | throughput (req/s) | p50 (ms) | p99 (ms) |\n|---|---:|---:|---:|")
for label, rows in [("stallscope on", on), ("compiled off (-DSTALLSCOPE_ENABLED=OFF)", off)]:
    print(f"| {label} | {med(rows, 'throughput'):.1f} | {med(rows, 'p50_ms'):.1f} | {med(rows, 'p99_ms'):.1f} |")
print(f"\nthroughput on/off: {med(on, 'throughput') / med(off, 'throughput'):.3f}x; "
      f"p99 on/off: {med(on, 'p99_ms') / med(off, 'p99_ms'):.3f}x")
print("per round (on, off): " + "; ".join(
    f"{a['throughput']:.1f}/{b['throughput']:.1f} req/s" for a, b in zip(on, off)))
PY
