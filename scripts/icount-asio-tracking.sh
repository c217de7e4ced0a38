#!/usr/bin/env bash
# What stallscope's Asio handler tracking (STALLSCOPE_ASIO_TRACKING, stallscope/asio_tracking.hpp)
# adds to a task's resumption, in instructions per operation under callgrind: bench/icount_asio.cpp
# built without and with it (release preset, in scripts/icount.sh's build folder), side by side.
#
#   bash scripts/icount-asio-tracking.sh     prints the table in bench/README.md
#
# Needs valgrind (scripts/setup.sh --test installs it). Not part of the icount gate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/icount-build.sh
source "$root/scripts/lib/icount-build.sh"
icount_build "$root" icount-asio-tracking stallscope-icount-asio stallscope-icount-asio-tracked

n=2000
count() {  # instructions per operation of path $2 in program $1
  local collected
  collected=$(valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=/dev/null \
    "$build/bench/$1" "$2" "$n" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  if [[ -z $collected ]]; then
    echo "icount-asio-tracking: callgrind reported no count for $1 $2" >&2
    exit 1
  fi
  echo $(((collected + n / 2) / n))
}

echo "| task operation | tracking off (instructions) | tracking on (instructions) | ratio |"
echo "|---|---:|---:|---:|"
for path in post timer spawn; do
  off=$(count stallscope-icount-asio "$path")
  on=$(count stallscope-icount-asio-tracked "$path")
  ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3fx", a / b }')
  case $path in
    post) what="co_await post(ex) resumption" ;;
    timer) what="co_await an expired timer's async_wait" ;;
    spawn) what="spawn + run a coroutine that returns" ;;
  esac
  echo "| $what | $off | $on | $ratio |"
done
