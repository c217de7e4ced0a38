#!/usr/bin/env bash
# Two builds of bench/tasks.cpp side by side (a tree before a change, and after): runs them
# alternately, ROUNDS times each, the single-thread post round trip and spawn benchmarks, and
# prints per benchmark the median over every repetition of each binary and the stallscope/plain
# ratio within each binary. Interleaving puts both binaries under the same load.
#
#   bash bench/tasks-compare.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]   (default 6)
#
# A binary is build/bench/bench/stallscope-bench-tasks of each tree (scripts/bench-async.sh
# builds it, -O2).
set -euo pipefail
before=${1:?usage: bench/tasks-compare.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
after=${2:?usage: bench/tasks-compare.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
rounds=${3:-6}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
filter='^(post_round_trip_plain|post_round_trip_stallscope|spawn_plain|spawn_stallscope)$'
echo "tasks-compare: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= rounds; ++r)); do
  for which in before after; do
    bin=$before
    [[ $which == after ]] && bin=$after
    "$bin" --benchmark_filter="$filter" --benchmark_repetitions=3 --benchmark_min_time=0.2 \
      --benchmark_enable_random_interleaving=true --benchmark_format=json \
      --benchmark_out="$out/$which-$r.json" --benchmark_out_format=json >/dev/null
  done
done
echo "tasks-compare: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$rounds" <<'PY'
import glob, json, statistics, sys
out, rounds = sys.argv[1], sys.argv[2]
med = {}
for which in ("before", "after"):
    times = {}
    for f in glob.glob(f"{out}/{which}-*.json"):
        for b in json.load(open(f))["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            times.setdefault(b["run_name"], []).append(b["real_time"])
    med[which] = {k: statistics.median(v) for k, v in times.items()}
print(f"| tree | post: plain | post: stallscope | post ratio | spawn: co_spawn | spawn: stallscope | spawn difference |")
print("|---|---:|---:|---:|---:|---:|---:|")
for which in ("before", "after"):
    m = med[which]
    pp, ps = m["post_round_trip_plain"], m["post_round_trip_stallscope"]
    sp, ss = m["spawn_plain"], m["spawn_stallscope"]
    print(f"| {which} | {pp:.0f} | {ps:.0f} | {ps / pp:.2f}x | {sp:.0f} | {ss:.0f} | +{ss - sp:.0f} |")
print(f"\n(ns, medians of {rounds} interleaved runs x 3 repetitions per binary)")
PY
