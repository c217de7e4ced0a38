#!/usr/bin/env bash
# Builds the benchmarks with the release preset (-O2) in their own build folder, runs them and
# prints the results as markdown tables (medians of repetitions, ratios against the baseline
# measured in the same run).
#
#   scripts/bench.sh                  build, run, print the tables (also saved in $BUILD/results.md)
#   scripts/bench.sh --write-readme   also replace the results section of bench/README.md
#
# Environment: STALLSCOPE_BENCH_BUILD_DIR (default build/bench), STALLSCOPE_BENCH_REPS (default 9).
# Takes about 1-2 minutes on a 2-core machine once built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STALLSCOPE_BENCH_BUILD_DIR:-$root/build/bench}
reps=${STALLSCOPE_BENCH_REPS:-9}
write_readme=0
for arg in "$@"; do
  case $arg in
    --write-readme) write_readme=1 ;;
    *) echo "usage: $0 [--write-readme]" >&2; exit 2 ;;
  esac
done

echo "bench: configuring and building in $build" >&2
cmake --preset release -S "$root" -B "$build" -DSTALLSCOPE_BUILD_TESTS=OFF \
  -DSTALLSCOPE_BUILD_EXAMPLES=OFF -DSTALLSCOPE_BUILD_BENCH=ON >/dev/null
# Only the targets this script runs (the stallscope-bench umbrella also builds the Asio ones).
cmake --build "$build" -j2 --target stallscope-bench-locks stallscope-bench-histogram \
  stallscope-bench-scrape stallscope-bench-memory >/dev/null

bin=$build/bench
out=$build/results
mkdir -p "$out"
common=(--benchmark_repetitions="$reps" --benchmark_display_aggregates_only=true
        --benchmark_out_format=json)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_before%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "bench: warning: load average $load_before on $(nproc) cores; the 2-thread results need" \
    "two idle cores and will be disturbed (see 'cores busy' in the tables)" >&2
fi

# Interleaving the repetitions of the benchmarks in random order spreads any disturbance from
# other processes over all of them instead of hitting one variant.
echo "bench: locks" >&2
"$bin/stallscope-bench-locks" "${common[@]}" --benchmark_min_time=0.1 \
  --benchmark_enable_random_interleaving=true --benchmark_out="$out/locks.json" >&2
echo "bench: locks, single-threaded process" >&2
STALLSCOPE_BENCH_SINGLE_THREADED=1 "$bin/stallscope-bench-locks" "${common[@]}" \
  --benchmark_min_time=0.1 --benchmark_filter=uncontended \
  --benchmark_enable_random_interleaving=true --benchmark_out="$out/locks_st.json" >&2
echo "bench: histogram" >&2
"$bin/stallscope-bench-histogram" "${common[@]}" --benchmark_min_time=0.1 \
  --benchmark_enable_random_interleaving=true --benchmark_out="$out/histogram.json" >&2
echo "bench: scrape" >&2
# No interleaving here: the last benchmark adds recording threads for good.
"$bin/stallscope-bench-scrape" "${common[@]}" --benchmark_min_time=0.2 \
  --benchmark_out="$out/scrape.json" >&2
echo "bench: memory" >&2
"$bin/stallscope-bench-memory" >"$out/memory.md"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

machine="$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
compiler=$(c++ --version | head -1)
tree=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  tree+=" + uncommitted changes"
fi

python3 - "$out" "$reps" "$machine" "$compiler" "$load_before" "$load_after" "$tree" \
  >"$out/results.md" <<'EOF'
import json
import statistics
import sys

out, reps, machine, compiler, load_before, load_after, tree = sys.argv[1:8]


def runs(path):
    """{(benchmark, threads): [per-repetition dicts]} for the iteration runs of one JSON file."""
    with open(path) as f:
        data = json.load(f)
    by = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        by.setdefault((b["run_name"].split("/")[0], b.get("threads", 1)), []).append(b)
    return by


def ns(b):
    """Real time of one iteration in ns (as Google Benchmark reports it: with N threads, wall
    time / the iterations of all threads together)."""
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
    return b["real_time"] * scale


def med(values):
    return statistics.median(values)


def fmt(v, digits=1):
    return f"{v:.{digits}f}"


locks = runs(f"{out}/locks.json")
locks_st = runs(f"{out}/locks_st.json")
hist = runs(f"{out}/histogram.json")
scrape = runs(f"{out}/scrape.json")

print(f"Tree: {tree}. Machine: {machine}; {compiler}; release preset (-O2). "
      f"Load average before/after: "
      f"{load_before} / {load_after}. Each figure is the median of {reps} repetitions (min in "
      "parentheses), repetitions interleaved in random order.\n")

# --- 1. uncontended ---
names = [("uncontended_std_mutex", "`std::mutex` (baseline)"),
         ("uncontended_stallscope", "`stallscope::Mutex` (hold timing off, default)"),
         ("uncontended_stallscope_hold", "`stallscope::Mutex` with `.hold_time = true`"),
         ("uncontended_naive", "naive: `steady_clock` x2 + prometheus-cpp `Observe`")]
summary = {}
print("### 1. Uncontended lock + unlock (1 thread)\n")
print("| Lock | multi-threaded process: ns/op | ratio | single-threaded process: ns/op | ratio |")
print("|---|---:|---:|---:|---:|")
base_mt = med([ns(b) for b in locks[("uncontended_std_mutex", 1)]])
base_st = med([ns(b) for b in locks_st[("uncontended_std_mutex", 1)]])
for key, label in names:
    mt = [ns(b) for b in locks[(key, 1)]]
    st = [ns(b) for b in locks_st[(key, 1)]]
    summary[key] = (med(mt), min(mt))
    print(f"| {label} | {fmt(med(mt))} ({fmt(min(mt))}) | {med(mt) / base_mt:.2f}x "
          f"| {fmt(med(st))} ({fmt(min(st))}) | {med(st) / base_st:.2f}x |")
hold_cost = summary["uncontended_stallscope_hold"][0] - summary["uncontended_stallscope"][0]
print(f"\nHold timing costs {fmt(hold_cost)} ns per lock + unlock here (two `stallscope::now_ns()` "
      "clock reads and a histogram record).\n")

# --- 1b. lifecycle ---
print("### 1b. A per-object lock's life: new + delete, and with one lock + unlock (1 thread)\n")
print("| Lock | new + delete: ns | vs `std::mutex` | new + lock + unlock + delete: ns "
      "| vs `std::mutex` |")
print("|---|---:|---:|---:|---:|")
base_new = med([ns(b) for b in locks[("lifecycle_new_std_mutex", 1)]])
base_used = med([ns(b) for b in locks[("lifecycle_used_std_mutex", 1)]])
for key, label in [("std_mutex", "`std::mutex` (baseline)"),
                   ("stallscope", "`stallscope::Mutex{\"literal\"}` (registers at first use)"),
                   ("stallscope_runtime_name",
                    "`stallscope::Mutex{std::string}` (registers at construction)")]:
    new = [ns(b) for b in locks[(f"lifecycle_new_{key}", 1)]]
    used = [ns(b) for b in locks[(f"lifecycle_used_{key}", 1)]]
    summary[f"lifecycle_new_{key}"] = (med(new), min(new))
    summary[f"lifecycle_used_{key}"] = (med(used), min(used))
    print(f"| {label} | {fmt(med(new))} ({fmt(min(new))}) | {med(new) / base_new:.2f}x "
          f"| {fmt(med(used))} ({fmt(min(used))}) | {med(used) / base_used:.2f}x |")
print("\nThe name exists already (as for every object after the first one of a name); the "
      "heap allocation is included.\n")

# --- 2. contended ---
names = [("contended_std_mutex", "`std::mutex` (baseline)"),
         ("contended_stallscope", "`stallscope::Mutex` (hold timing off, default)"),
         ("contended_stallscope_hold", "`stallscope::Mutex` with `.hold_time = true`"),
         ("contended_naive", "naive: `steady_clock` x2 + prometheus-cpp `Observe`")]
print("### 2. Two threads on one lock (lock; 4 increments; unlock)\n")
print("| Lock | total Mops/s | ns/op (wall) | throughput vs std::mutex | waited (stallscope) "
      "| cores busy |")
print("|---|---:|---:|---:|---:|---:|")
base = med([b["items_per_second"] for b in locks[("contended_std_mutex", 2)]])
for key, label in names:
    rs = locks[(key, 2)]
    ops = [b["items_per_second"] for b in rs]
    pct = [b["contended_pct"] for b in rs if "contended_pct" in b]
    waited = f"{med(pct):.1f}% of acquisitions" if pct else ""
    summary[key] = (med(ops), max(ops))
    print(f"| {label} | {med(ops) / 1e6:.1f} ({min(ops) / 1e6:.1f}) | {fmt(med([ns(b) for b in rs]))} "
          f"| {med(ops) / base:.2f}x | {waited} | {med([b['cpu_time'] / b['real_time'] for b in rs]):.2f} |")
print("\nIn parentheses: the lowest throughput seen. Cores busy: CPU time of both threads / wall "
      "time (2.00: both ran all the time; less: one slept in the kernel waiting for the lock, or "
      "waited for a core).\n")

# --- 3. histogram ---
print("### 3. Histogram record into ONE histogram\n")
print("| Histogram | 1 thread: ns/record | 2 threads: ns/record per thread | 2 threads / 1 thread "
      "| cores busy (2 threads) |")
print("|---|---:|---:|---:|---:|")


def busy(b):
    """CPU time of all threads / wall time: 2.00 when both threads ran all along."""
    return b["cpu_time"] / b["real_time"]


for key, label in [("record_stallscope", "stallscope `HistogramCells::record`"),
                   ("record_prometheus", "prometheus-cpp `Histogram::Observe`")]:
    one = [ns(b) for b in hist[(key, 1)]]
    two = [ns(b) * 2 for b in hist[(key, 2)]]  # per thread: wall time / one thread's iterations
    cores = med([busy(b) for b in hist[(key, 2)]])
    summary[key] = ((med(one), min(one)), (med(two), min(two)), cores)
    print(f"| {label} | {fmt(med(one))} ({fmt(min(one))}) | {fmt(med(two))} ({fmt(min(two))}) "
          f"| {med(two) / med(one):.2f}x | {cores:.2f} |")
print("\nPer thread: wall time / the iterations of one thread, what a recording thread sees. "
      "stallscope's threads never block, so their cores-busy figure says whether the two really "
      "ran at once (2.00) or took turns on one core because other processes held the other "
      "(1.00); prometheus-cpp's also drops when a thread sleeps on its mutex.\n")

# --- 4. scrape ---
print("### 4. Scrape: /metrics text for 1,000 named locks\n")
print("| Step | ms (wall) | ms (CPU) |")
print("|---|---:|---:|")
rows = [("scrape_registry_collect", "`Registry::collect()` (agent snapshot only)"),
        ("scrape_collect", "`Collectable{}.Collect()` (snapshot + prometheus-cpp model)"),
        ("scrape_write_text", "`detail::write_text` of those families (the /metrics writer)"),
        ("scrape_total", "**Collect + write_text: one GET /metrics on the Agent's endpoint**"),
        ("scrape_text_serializer", "prometheus-cpp `TextSerializer` of the same families"),
        ("scrape_total_text_serializer",
         "Collect + `TextSerializer`: the Collectable in an application's own Exposer"),
        ("scrape_registry_collect_16_threads",
         "`Registry::collect()` after 16 threads recorded into every lock"),
        ("scrape_total_16_threads", "Collect + write_text after 16 threads recorded")]
for key, label in rows:
    rs = scrape[(key, 1)]
    ms = [ns(b) / 1e6 for b in rs]
    cpu = [ns({**b, "real_time": b["cpu_time"]}) / 1e6 for b in rs]
    summary[key] = (med(ms), min(ms))
    print(f"| {label} | {fmt(med(ms), 2)} ({fmt(min(ms), 2)}) | {fmt(med(cpu), 2)} |")
text = scrape[("scrape_write_text", 1)][0]
same = text.get("same_text", 0) == 1
per_line = summary["scrape_text_serializer"][0] * 1e6 / text["lines"]
print(f"\nOutput: {text['lines']:.0f} lines, {text['bytes'] / 1e6:.2f} MB for "
      f"{scrape[('scrape_total', 1)][0]['lock_series']:.0f} lock series; write_text's text is "
      f"{'byte-identical to' if same else '**different from**'} TextSerializer's "
      f"(which costs {per_line:.0f} ns per line).\n")

# --- 5. memory ---
print("### 5. Memory\n")
with open(f"{out}/memory.md") as f:
    print(f.read())

# --- targets ---
# A target is "met" on the medians; "met on best runs only" when only the least disturbed
# repetitions (min time, max throughput) meet it: the machine was busy, rerun when it is quiet.
def verdict(median_ok, best_ok):
    return "met" if median_ok else "met on best runs only" if best_ok else "**missed**"


def pair(median, best, digits=2, unit=""):
    return f"{median:.{digits}f}{unit} (best {best:.{digits}f}{unit})"


u, u0 = summary["uncontended_stallscope"], summary["uncontended_std_mutex"]
r1 = (u[0] / u0[0], u[1] / u0[1])
c, c0 = summary["contended_stallscope"], summary["contended_std_mutex"]
r2 = (c[0] / c0[0], c[1] / c0[1])
(h1, h1b), (h2, h2b), cores = summary["record_stallscope"]
s1 = (h2 / h1, h2b / h1b)
overlapped = cores >= 1.7


def two_thread_verdict(median_ok, best_ok):
    if not overlapped:
        return (f"not measured: the two threads ran at once only part of the time (cores busy "
                f"{cores:.2f}); rerun on a quiet machine")
    return verdict(median_ok, best_ok)


sc = summary["scrape_total"]
print("### Targets\n")
print("Verdicts use the medians; \"best\" is the least disturbed repetition.\n")
print("| Target | Measured | Verdict |")
print("|---|---|---|")
print(f"| uncontended `stallscope::Mutex` <= 1.3x `std::mutex` (multi-threaded process) "
      f"| {pair(*r1, unit='x')} | {verdict(r1[0] <= 1.3, r1[1] <= 1.3)} |")
print(f"| contended throughput >= 0.85x `std::mutex` | {pair(*r2, unit='x')} "
      f"| {verdict(r2[0] >= 0.85, r2[1] >= 0.85)} |")
print(f"| histogram record <= 5 ns, 1 thread | {pair(h1, h1b, 1, ' ns')} "
      f"| {verdict(h1 <= 5, h1b <= 5)} |")
print(f"| histogram record <= 5 ns, 2 threads (per thread) | {pair(h2, h2b, 1, ' ns')} "
      f"| {two_thread_verdict(h2 <= 5, h2b <= 5)} |")
print(f"| no per-thread slowdown from 1 to 2 threads (within 15%) | {pair(*s1, unit='x')} "
      f"| {two_thread_verdict(s1[0] <= 1.15, s1[1] <= 1.15)} |")
print(f"| scrape of 1,000 locks <= 20 ms | {pair(*sc, unit=' ms')} "
      f"| {verdict(sc[0] <= 20, sc[1] <= 20)} |")
EOF

cat "$out/results.md"

if ((write_readme)); then
  readme=$root/bench/README.md
  python3 - "$readme" "$out/results.md" <<'EOF'
import sys

readme, results = sys.argv[1:3]
begin, end = "<!-- results:begin -->", "<!-- results:end -->"
text = open(readme).read()
if begin not in text or end not in text:
    sys.exit(f"bench: {readme} has no {begin} ... {end} section")
head, rest = text.split(begin, 1)
tail = rest.split(end, 1)[1]
open(readme, "w").write(head + begin + "\n" + open(results).read() + end + tail)
EOF
  echo "bench: results written into $readme" >&2
fi
