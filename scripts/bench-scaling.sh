#!/usr/bin/env bash
# How locks, histogram recording, channels and the executor scale from 1 to N threads, stallscope
# beside its peer in the same run (std::mutex, prometheus-cpp, concurrent_channel, plain Asio).
# Needs a machine with at least as many idle cores as the largest count; on 2 cores use bench.sh.
#
#   scripts/bench-scaling.sh                 build, run, print the table (this machine)
#   scripts/bench-scaling.sh package DIR     build, copy the four benchmarks and the shared
#                                            libraries `ldd` lists into DIR (for a machine
#                                            without the Debian packages; set LD_LIBRARY_PATH=DIR)
#   scripts/bench-scaling.sh run DIR OUT     run the packaged benchmarks in DIR, JSON into OUT
#   scripts/bench-scaling.sh report OUT      print the markdown table from OUT's JSON
#
# Environment: STALLSCOPE_BENCH_THREADS (default 1,2,4,8,16), STALLSCOPE_BENCH_REPS (default 3),
# STALLSCOPE_BENCH_BUILD_DIR (default build/bench).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STALLSCOPE_BENCH_BUILD_DIR:-$root/build/bench}
threads=${STALLSCOPE_BENCH_THREADS:-1,2,4,8,16}
reps=${STALLSCOPE_BENCH_REPS:-3}
benches=(stallscope-bench-locks stallscope-bench-histogram stallscope-bench-channel
         stallscope-bench-tasks)

usage() {
  echo "usage: $0 [package DIR | run DIR OUT | report OUT]" >&2
  exit 2
}

build_benches() {
  echo "bench-scaling: configuring and building in $build" >&2
  cmake --preset release -S "$root" -B "$build" -DSTALLSCOPE_BUILD_TESTS=OFF \
    -DSTALLSCOPE_BUILD_EXAMPLES=OFF -DSTALLSCOPE_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${benches[@]}" >/dev/null
}

package() {
  local dir=$1
  build_benches
  mkdir -p "$dir"
  for b in "${benches[@]}"; do cp "$build/bench/$b" "$dir/"; done
  # Every library the benchmarks load, except the C library's own (the loader must match them).
  for b in "${benches[@]}"; do ldd "$build/bench/$b"; done |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$dir/"; done
  echo "bench-scaling: packaged into $dir ($(du -sh "$dir" | cut -f1))" >&2
}

run() {
  local dir=$1 out=$2
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export STALLSCOPE_BENCH_THREADS="$threads"
  local common=(--benchmark_repetitions="$reps" --benchmark_display_aggregates_only=true
                --benchmark_min_time=0.2 --benchmark_out_format=json)
  nproc >"$out/nproc"
  # Which clock the kernel gives steady_clock, and whether the CPU says its TSC is invariant
  # (stallscope's clock is the TSC only then): the cost of every timed path depends on both.
  { cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown
    grep -m1 -o -w 'constant_tsc\|nonstop_tsc' /proc/cpuinfo | tr '\n' ' '; echo; } >"$out/clock"
  cut -d' ' -f1-3 /proc/loadavg >"$out/load_before"
  "$dir/stallscope-bench-locks" "${common[@]}" --benchmark_out="$out/locks.json" \
    --benchmark_filter='^(contended_std_mutex|contended_stallscope|private_std_mutex|private_stallscope)/'
  "$dir/stallscope-bench-histogram" "${common[@]}" --benchmark_out="$out/histogram.json"
  "$dir/stallscope-bench-channel" "${common[@]}" --benchmark_out="$out/channel.json" \
    --benchmark_filter='^mpmc_n_'
  "$dir/stallscope-bench-tasks" "${common[@]}" --benchmark_out="$out/tasks.json" \
    --benchmark_filter='^(post_n_|spawn_plain/real_time|spawn_stallscope/real_time)'
  cut -d' ' -f1-3 /proc/loadavg >"$out/load_after"
}

report() {
  python3 - "$1" <<'PY'
import json, os, re, sys
out = sys.argv[1]
clock_reads = {}  # read_clock_* -> ns per read
rows = {}  # (bench, variant) -> {threads: items/s median}
machine = ""
for f in ("locks", "histogram", "channel", "tasks"):
    path = os.path.join(out, f + ".json")
    if not os.path.exists(path):
        continue
    data = json.load(open(path))
    ctx = data["context"]
    machine = f'{ctx.get("num_cpus")} CPUs at {ctx.get("mhz_per_cpu")} MHz'
    medians = any(b.get("aggregate_name") == "median" for b in data["benchmarks"])
    for b in data["benchmarks"]:
        if b.get("aggregate_name" if medians else "run_type") != ("median" if medians else "iteration"):
            continue
        name = b["run_name"]
        if name.startswith("read_clock"):
            tsc = f" (TSC: {'yes' if b['tsc'] else 'no'})" if "tsc" in b else ""
            clock_reads[name + tsc] = b["cpu_time"]
            continue
        m = re.match(r"^([a-z_]+)/(\d+)/real_time$", name)  # post_n_*/N, mpmc_n_*/N
        if m:
            key, n = m.group(1), int(m.group(2))
        else:
            m = re.match(r"^([a-z_]+)/real_time/threads:(\d+)$", name)
            if not m:
                continue
            key, n = m.group(1), int(m.group(2))
        rows.setdefault(key, {})[n] = b["items_per_second"]

pairs = [
    ("one lock, every thread takes it", "contended_stallscope", "contended_std_mutex", "std::mutex"),
    ("one lock per thread, one name", "private_stallscope", "private_std_mutex", "std::mutex"),
    ("histogram record, one histogram", "record_stallscope", "record_prometheus", "prometheus-cpp Observe"),
    ("channel: N producers + N consumers, N-thread io_context", "mpmc_n_stallscope", "mpmc_n_asio_concurrent_channel", "concurrent_channel"),
    ("`co_await post`, 4N coroutines on an N-thread io_context", "post_n_stallscope", "post_n_plain", "plain co_spawn"),
    ("spawn + run, one io_context per thread", "spawn_stallscope", "spawn_plain", "co_spawn"),
]
counts = sorted({n for r in rows.values() for n in r})
def fmt(v):
    return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"
head = "| operation (items/s, all threads) | | " + " | ".join(f"{n} thr" for n in counts) + " |"
clock_path = os.path.join(out, "clock")
clock = open(clock_path).read().split("\n") if os.path.exists(clock_path) else ["unknown", ""]
print(f"Clock: kernel clocksource {clock[0].strip()}; cpu flags: {clock[1].strip() or 'none'}; "
      + "; ".join(f"{k} {v:.1f} ns" for k, v in sorted(clock_reads.items())) + ".")
print(f"Machine: {machine}; load before {open(os.path.join(out, 'load_before')).read().strip()}, "
      f"after {open(os.path.join(out, 'load_after')).read().strip()}; medians of repetitions.")
print()
print(head)
print("|---|---|" + "---:|" * len(counts))
for title, ours, peer, peer_name in pairs:
    if ours not in rows or peer not in rows:
        continue
    a, b = rows[ours], rows[peer]
    print(f"| {title} | stallscope | " + " | ".join(fmt(a[n]) if n in a else "" for n in counts) + " |")
    print(f"| | {peer_name} | " + " | ".join(fmt(b[n]) if n in b else "" for n in counts) + " |")
    print(f"| | ratio | " + " | ".join(f"{a[n] / b[n]:.2f}x" if n in a and n in b else "" for n in counts) + " |")
PY
}

case ${1:-} in
  "")
    tmp=$build/scaling
    rm -rf "$tmp"
    package "$tmp/bin"
    run "$tmp/bin" "$tmp/results"
    report "$tmp/results"
    ;;
  package) [[ $# -eq 2 ]] || usage; package "$2" ;;
  run) [[ $# -eq 3 ]] || usage; run "$2" "$3" ;;
  report) [[ $# -eq 2 ]] || usage; report "$2" ;;
  *) usage ;;
esac
