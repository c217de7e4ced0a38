#!/usr/bin/env bash
# Channel and task benchmarks (bench/channel.cpp, bench/tasks.cpp), side by side in one run:
# builds the release preset's bench targets, runs each binary with repetitions interleaved in
# random order, and prints markdown tables of medians with ratios against the baseline of the
# same run. The channel source is built twice (recording on, and STALLSCOPE_ENABLED=0); the two
# binaries run alternately, twice each, and the medians pool both rounds.
#
#   bash scripts/bench-async.sh [--reps N]      (default 5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

reps=5
if [[ "${1:-}" == "--reps" ]]; then reps=${2:?--reps needs a number}; fi
build=${STALLSCOPE_BENCH_BUILD_DIR:-build/bench}
out=$build/results
mkdir -p "$out"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DSTALLSCOPE_BUILD_TESTS=OFF -DSTALLSCOPE_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" \
  --target stallscope-bench-channel stallscope-bench-channel-off stallscope-bench-tasks >/dev/null

run() {  # binary, output json
  "$build/bench/$1" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
    --benchmark_min_time=0.2 --benchmark_format=json --benchmark_out="$2" \
    --benchmark_out_format=json >/dev/null
}
echo "bench-async: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in 1 2; do
  run stallscope-bench-channel "$out/channel-on-$round.json"
  run stallscope-bench-channel-off "$out/channel-off-$round.json"
done
run stallscope-bench-tasks "$out/tasks.json"
echo "bench-async: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$out" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
def load(pattern):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        for b in json.load(open(path))["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            name = b["run_name"].replace("/real_time", "")
            value = b["items_per_second"] / 1e6 if "items_per_second" in b else b["real_time"]
            runs.setdefault(name, []).append(value)
    return {k: statistics.median(v) for k, v in runs.items()}
ch = {**load("channel-on-*.json"), **load("channel-off-*.json")}
print("### Channels: ping-pong latency (ns per round trip, lower is better)\n")
print("| channel | ns | vs compiled off | vs concurrent_channel |\n|---|---:|---:|---:|")
base_off, base_asio = ch["ping_pong_stallscope_off"], ch["ping_pong_asio_concurrent_channel"]
for name, label in [("ping_pong_stallscope", "stallscope::Channel, recording on"),
                    ("ping_pong_stallscope_off", "stallscope::Channel, compiled off"),
                    ("ping_pong_asio_concurrent_channel", "asio concurrent_channel")]:
    v = ch[name]
    print(f"| {label} | {v:.0f} | {v / base_off:.2f}x | {v / base_asio:.2f}x |")
for shape, title in [("spsc", "1 producer, 1 consumer"), ("mpmc", "2 producers, 2 consumers")]:
    print(f"\n### Channels: {title}, capacity 64 (M items/s, higher is better)\n")
    print("| channel | M items/s | vs compiled off | vs concurrent_channel |\n|---|---:|---:|---:|")
    off, asio = ch[f"{shape}_stallscope_off"], ch[f"{shape}_asio_concurrent_channel"]
    for suffix, label in [("stallscope", "stallscope::Channel, recording on"),
                          ("stallscope_off", "stallscope::Channel, compiled off"),
                          ("asio_concurrent_channel", "asio concurrent_channel")]:
        v = ch[f"{shape}_{suffix}"]
        print(f"| {label} | {v:.2f} | {v / off:.2f}x | {v / asio:.2f}x |")
tk = load("tasks.json")
print("\n### Tasks (ns, lower is better)\n")
print("| operation | plain Asio | stallscope | ratio | difference |\n|---|---:|---:|---:|---:|")
rows = [("co_await post round trip", "post_round_trip_plain", "post_round_trip_stallscope"),
        ("the same, with a Watchdog polling every 1 ms", "post_round_trip_plain",
         "post_round_trip_stallscope_watchdog"),
        ("spawn + run a coroutine that returns at once", "spawn_plain", "spawn_stallscope"),
        ("the same, two threads spawning at once (per spawn, both together)",
         "spawn_plain/threads:2", "spawn_stallscope/threads:2")]
for label, a, b in rows:
    print(f"| {label} | {tk[a]:.0f} | {tk[b]:.0f} | {tk[b] / tk[a]:.2f}x | +{tk[b] - tk[a]:.0f} |")
PY
