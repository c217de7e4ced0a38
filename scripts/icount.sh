#!/usr/bin/env bash
# Instruction counts per operation, stallscope next to its peer, under Valgrind's callgrind
# (bench/icount.cpp says what each path does and how the count is taken). Counts do not move
# with the machine's load, so a change of a few instructions shows, where timings on a shared VM
# move by half.
#
#   bash scripts/icount.sh            build (release preset), run every path, print the table
#   bash scripts/icount.sh --check    also compare stallscope's paths with
#                                     bench/icount-baseline.txt: a path more than 5% over its
#                                     baseline fails, named with both numbers (the regression
#                                     gate that scripts/test.sh runs)
#   bash scripts/icount.sh --update   write the current counts as the new baseline
#
# A change that lowers a count updates the baseline in the same commit (--check says so).
# Needs valgrind (scripts/setup.sh --test installs it). Takes about 15 s after the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=table
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --update) mode=update ;;
  *)
    echo "usage: scripts/icount.sh [--check|--update]" >&2
    exit 2
    ;;
esac
tolerance=5  # percent
baseline="$root/bench/icount-baseline.txt"

# shellcheck source=lib/icount-build.sh
source "$root/scripts/lib/icount-build.sh"
icount_build "$root" icount stallscope-icount
bin="$build/bench/stallscope-icount"

# Operations per path: enough that the two toggles' own instructions vanish in the rounding.
ops_for() {
  case "$1" in
    scrape_*) echo 4 ;;
    post_* | spawn_*) echo 2000 ;;
    *) echo 20000 ;;
  esac
}

declare -A per_op=()
for path in $("$bin" --list); do
  n=$(ops_for "$path")
  collected=$(valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=/dev/null \
    "$bin" "$path" "$n" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  if [[ -z $collected ]]; then
    echo "icount: callgrind reported no count for $path" >&2
    exit 1
  fi
  per_op[$path]=$(((collected + n / 2) / n))
done

# The table: each stallscope path next to its peer.
rows=(
  "lock_std lock_stallscope uncontended lock + unlock|std::mutex"
  "try_lock_fail_std try_lock_fail_stallscope try_lock on a held lock|std::mutex"
  "contended_naive contended_stallscope a contended lock + unlock: the bookkeeping|hand timing: steady_clock x2 + Observe"
  "histogram_prometheus histogram_stallscope histogram record|prometheus-cpp Observe"
  "channel_asio channel_stallscope channel try_send + try_receive|concurrent_channel"
  "channel_asio channel_sized_stallscope channel try_send + try_receive, with size_of|concurrent_channel"
  "post_plain post_stallscope co_await post resumption|plain io_context"
  "spawn_plain spawn_stallscope spawn + run a coroutine that returns|co_spawn"
  "retry_atomic retry_stallscope retry budget: a request and its retry|two atomic fetch_adds"
  "scrape_prometheus scrape_stallscope /metrics for 1,000 locks|prometheus-cpp serializer"
)
echo "| operation | stallscope (instructions) | the peer | peer (instructions) | ratio |"
echo "|---|---:|---|---:|---:|"
for row in "${rows[@]}"; do
  read -r peer ours what <<<"${row%%|*}"
  peer_name="${row#*|}"
  ratio=$(awk -v a="${per_op[$ours]}" -v b="${per_op[$peer]}" 'BEGIN { printf "%.2fx", a / b }')
  echo "| $what | ${per_op[$ours]} | $peer_name | ${per_op[$peer]} | $ratio |"
done

case "$mode" in
  update)
    {
      echo "# Instructions per operation of stallscope's own paths (bash scripts/icount.sh --update)."
      echo "# scripts/icount.sh --check fails when a path exceeds its count here by more than ${tolerance}%."
      for path in $(printf '%s\n' "${!per_op[@]}" | sort); do
        [[ $path == *_stallscope ]] && echo "$path ${per_op[$path]}"
      done
    } >"$baseline"
    echo "icount: wrote $baseline"
    ;;
  check)
    if [[ ! -r $baseline ]]; then
      echo "icount: no baseline ($baseline); bash scripts/icount.sh --update writes one" >&2
      exit 1
    fi
    ok=0
    bad=0
    while read -r path count; do
      [[ -z $path || $path == \#* ]] && continue
      now=${per_op[$path]:-}
      if [[ -z $now ]]; then
        echo "icount: FAIL $path: in the baseline but not measured" >&2
        bad=$((bad + 1))
        continue
      fi
      limit=$((count + count * tolerance / 100))
      if ((now > limit)); then
        echo "icount: FAIL $path: $now instructions per operation, baseline $count (+${tolerance}% = $limit)"
        bad=$((bad + 1))
      else
        ok=$((ok + 1))
        if ((now * 100 < count * (100 - tolerance))); then
          echo "icount: $path: $now, below the baseline $count by over ${tolerance}%:" \
            "update the baseline (bash scripts/icount.sh --update) in the same commit"
        fi
      fi
    done <"$baseline"
    echo "icount: $ok passed, $bad failed"
    ((bad == 0))
    ;;
esac
