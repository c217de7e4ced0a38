#!/usr/bin/env bash
# The demo's live map equals the checked-in one, and a changed capacity fails the comparison.
#
#   bash tests/check/demo_map.sh --demo DEMO --check STALLSCOPE_CHECK --expected MAP.json [--update]
#
# Runs the fixed demo (--cores 2, so its pool and semaphore sizes do not depend on the machine)
# for 4 s and until its /stallz/map.json equals MAP.json through `stallscope-check map-diff`
# (exit 0 expected, within 60 s), then compares it with a copy of MAP.json whose channel
# `records` has another capacity (exit 1, naming it, expected). --update writes the demo's map
# to MAP.json instead (curl), for a reviewed change of the demo.
set -euo pipefail

demo= check= expected= update=no
while (($# > 0)); do
  case "$1" in
    --demo) demo=${2:?--demo needs a path} && shift 2 ;;
    --check) check=${2:?--check needs a path} && shift 2 ;;
    --expected) expected=${2:?--expected needs a path} && shift 2 ;;
    --update) update=yes && shift ;;
    *) echo "demo_map: unknown argument \"$1\"" >&2 && exit 2 ;;
  esac
done
if [[ -z $demo || -z $check || -z $expected ]]; then
  echo "demo_map: --demo, --check and --expected are required" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/demo-map.XXXXXX")
log=$work/demo.log
"$demo" --variant fixed --cores 2 --duration 120 --rate 20 --summary-interval 0 \
  --listen 127.0.0.1:0 >"$log" 2>&1 &
demo_pid=$!
cleanup() {
  kill "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=../../scripts/lib/demo-url.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/demo-url.sh"
url=$(demo_url "$log")
if [[ -z $url ]]; then
  echo "demo_map: the demo printed no endpoint URL:" >&2
  cat "$log" >&2
  exit 1
fi
# Every path of the fixed variant (requests, parses, the writer) has run after 4 s on an idle
# machine, so a user that one of them adds wrongly shows in the comparison.
sleep 4

if [[ $update == yes ]]; then
  curl -fsS "$url/stallz/map.json" >"$expected"
  echo "demo_map: wrote $expected"
  exit 0
fi

# A loaded machine can run a path for the first time later, and the map gains its users then:
# the comparison is repeated, once a second for 60 s at most, until it matches; a map that never
# does fails with the last differences. A usage or connection error (exit 2) fails at once.
status=1
for _ in $(seq 60); do
  status=0
  out=$("$check" map-diff "$expected" "$url" 2>&1) || status=$?
  ((status == 1)) || break
  sleep 1
done
echo "$out"
if ((status != 0)); then
  echo "demo_map: the demo's map differs from $expected (exit $status); if the change is" \
    "intended, review it and run with --update" >&2
  exit 1
fi

changed=$work/changed.json
sed 's/"name":"records","objects":1,"capacity":\[256\]/"name":"records","objects":1,"capacity":[255]/' \
  "$expected" >"$changed"
if cmp -s "$expected" "$changed"; then
  echo "demo_map: $expected has no channel \`records\` of capacity 256 to change" >&2
  exit 1
fi
status=0
out=$("$check" map-diff "$changed" "$url") || status=$?
echo "$out"
if ((status != 1)) || ! grep -q 'channel `records`: capacity changed from 255 to 256' <<<"$out"; then
  echo "demo_map: a changed capacity did not fail the comparison (exit $status)" >&2
  exit 1
fi
echo "demo_map: the demo's map matches $expected; a changed capacity fails the comparison"
