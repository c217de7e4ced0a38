#!/usr/bin/env bash
# The /stallz page in a real browser: starts the fixture (a program with an Agent and a contended
# lock named "checkout-ledger"), waits until its stall scores have history and its tasks run, then
# has headless Chromium load /stallz, run the page's script (virtual time, so its 2 s refresh fires
# at once), and dump the DOM and a screenshot. Fails unless the top row names "checkout-ledger", the
# script refreshed the page (it fetches /stallz again and swaps in the new tables), and the
# screenshot is a non-empty PNG. Then the same for the fixture's tasks and channels: /stallz links
# to /stallz/tasks and /stallz/map; /stallz/tasks?state=waiting lists only waiting tasks, each with
# its wait (kind/resource/op), group, token and cancellation; /stallz/map shows the bounded channels
# with their capacities; each page gets a screenshot.
#
#   stallz_browser_test.sh FIXTURE CHROMIUM OUT_DIR
#
# CHROMIUM may be empty: the script then looks for chromium on PATH. Writes OUT_DIR/stallz.png,
# OUT_DIR/stallz-dom.html, OUT_DIR/stallz.json, OUT_DIR/stallz-tasks.png,
# OUT_DIR/stallz-tasks-dom.html, OUT_DIR/stallz-map.png and OUT_DIR/stallz-map-dom.html. Needs
# only bash (its /dev/tcp for HTTP).
set -uo pipefail

fixture=${1:?usage: stallz_browser_test.sh FIXTURE CHROMIUM OUT_DIR}
chromium=${2:-}
out=${3:?usage: stallz_browser_test.sh FIXTURE CHROMIUM OUT_DIR}
top_resource=checkout-ledger

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [[ -z "$chromium" || ! -x "$chromium" ]]; then
  chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
fi
[[ -n "$chromium" ]] ||
  fail "Chromium is not installed, so the /stallz page cannot be checked in a browser." \
    "Install it (Debian: apt-get install -y chromium) and run the test again."
[[ -x "$fixture" ]] || fail "fixture $fixture is not an executable (build stallscope-stallz-fixture)"

mkdir -p "$out" || fail "cannot create $out"
png="$out/stallz.png"
dom="$out/stallz-dom.html"
json="$out/stallz.json"
tasks_dom="$out/stallz-tasks-dom.html"
tasks_png="$out/stallz-tasks.png"
map_dom="$out/stallz-map-dom.html"
map_png="$out/stallz-map.png"
rm -f "$png" "$dom" "$json" "$tasks_dom" "$tasks_png" "$map_dom" "$map_png"
work=$(mktemp -d) || fail "mktemp"
fixture_log="$work/fixture.log"

pid=
cleanup() {
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$fixture" --listen 127.0.0.1:0 >"$fixture_log" 2>&1 &
pid=$!

# The fixture prints "stallz: http://127.0.0.1:PORT/stallz" once it listens.
url=
for _ in $(seq 300); do
  url=$(sed -n 's/^stallz: //p' "$fixture_log")
  [[ -n "$url" ]] && break
  kill -0 "$pid" 2>/dev/null || fail "the fixture exited early: $(cat "$fixture_log")"
  sleep 0.1
done
[[ "$url" =~ ^http://([0-9.]+):([0-9]+)/stallz$ ]] ||
  fail "the fixture did not print its /stallz URL within 30 s: $(cat "$fixture_log")"
host=${BASH_REMATCH[1]}
port=${BASH_REMATCH[2]}

# GET PATH over bash's /dev/tcp; prints the body.
http_get() {
  local response
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$1" "$host" "$port" >&3
  response=$(cat <&3)
  exec 3<&-
  printf '%s' "${response#*$'\r\n\r\n'}"
}

# Wait (30 s at most) until everything the pages are checked for below is there: the ranking
# has rates and the contended lock leads it (the first "resource" in stallz.json is the top
# row), "report-export" has outlived its cancellation by the 1 s grace (lingering), "restock"
# has suspended holding its lock (a detector event), and the io_context thread has run the four
# tasks that wait (/stallz/tasks.json?state=waiting matches 4). The fixture starts the
# io_context thread last, and a loaded machine can run it seconds after the endpoint listens;
# each condition stays true once met, so the pages loaded next show it.
body=
tasks=
ready() {
  local top
  top=$(grep -o '"resource":"[^"]*"' <<<"$body" | head -n 1)
  [[ "$top" == "\"resource\":\"$top_resource\"" ]] &&
    grep -q '"covered_seconds":[0-9]' <<<"$body" &&
    grep -q '"lingering_tasks":\[[^]]*"task":"report-export"' <<<"$body" &&
    grep -q '"detector_events":\[[^]]*"task":"restock"' <<<"$body" &&
    grep -q '"matched":4,' <<<"$tasks"
}
for _ in $(seq 150); do
  body=$(http_get /stallz.json) || body=
  tasks=$(http_get '/stallz/tasks.json?state=waiting') || tasks=
  ready && break
  sleep 0.2
done
printf '%s\n' "$body" >"$json"
grep -o '"resource":"[^"]*"' <<<"$body" | head -n 1 | grep -q "\"$top_resource\"" ||
  fail "stallz.json never ranked $top_resource first within 30 s: $body"
ready ||
  fail "within 30 s the fixture did not show a lingering report-export, a detector event of" \
    "restock and 4 waiting tasks: $body $tasks"

browser=("$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$work/profile"
  --window-size=1280,900 --virtual-time-budget=5000)

# load URL DOM PNG: one Chromium run (each costs seconds of CI time) that dumps the page's DOM
# after its script ran, and a screenshot.
load() {
  local log
  log="$work/chromium-$(basename "$2" .html).log"
  timeout 120 "${browser[@]}" --dump-dom --screenshot="$3" "$1" >"$2" 2>"$log" ||
    fail "chromium failed on $1: $(tail -n 20 "$log")"
  [[ -s "$2" ]] || fail "chromium dumped an empty DOM of $1: $(tail -n 20 "$log")"
  [[ "$(head -c 8 "$3" 2>/dev/null | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] ||
    fail "the screenshot $3 of $1 is missing or not a PNG: $(tail -n 20 "$log")"
}

load "$url" "$dom" "$png"

# The top row of the ranking names the contended lock, linked to its holder and waiter sites.
first_row=$(grep -o '<tr data-rank="1">.*' "$dom" | sed 's#</tr>.*##')
grep -qF "<td class=\"name\"><a href=\"stallz/sites?kind=lock&amp;resource=$top_resource\">$top_resource</a></td>" <<<"$first_row" ||
  fail "the first row of the page does not name $top_resource: ${first_row:-<no ranked row>} (DOM in $dom)"
# The script ran, fetched the page again and swapped in its new tables.
grep -q 'data-refreshes="[1-9]' "$dom" ||
  fail "the page's script did not refresh it (DOM in $dom)"
grep -q 'id="status" data-state="live"' "$dom" ||
  fail "the page does not say it is live after refreshing (DOM in $dom)"
for expected in 'Waiting now' 'audit-log' 'report-export' 'restock'; do
  grep -q "$expected" "$dom" || fail "the page does not show \"$expected\" (DOM in $dom)"
done

# /stallz links to the task dump and the map.
for link in 'href="stallz/tasks"' 'href="stallz/map"'; do
  grep -q "$link" "$dom" || fail "/stallz has no link $link (DOM in $dom)"
done

tasks_url="http://$host:$port/stallz/tasks"
map_url="http://$host:$port/stallz/map"

# /stallz/tasks?state=waiting: only waiting tasks, each with what it waits on; the page's script
# refreshed it with the same filter.
load "$tasks_url?state=waiting" "$tasks_dom" "$tasks_png"
# expect_row NAME WHAT PATTERN...: the (first) row of the task NAME, from its <tr> to its </tr>,
# matches every PATTERN; else fails saying it should show WHAT.
expect_row() {
  local name=$1 what=$2 row pattern
  shift 2
  row=$(grep -o "<tr><td class=\"name\"><a href=\"tasks?name=$name\">$name</a>.*" "$tasks_dom" |
    sed 's#</tr>.*##' | head -n 1)
  for pattern in "$@"; do
    grep -q "$pattern" <<<"$row" ||
      fail "/stallz/tasks does not show $name $what: ${row:-<no row>} (DOM in $tasks_dom)"
  done
}
expect_row order-matcher "waiting on async_lock/order-book/exclusive" \
  '<span data-state="waiting">waiting</span>' '<td class="name">async_lock/order-book/exclusive</td>'
expect_row invoice-sender "waiting on channel/invoices/send with its cancel requested" \
  '<td class="name">channel/invoices/send</td>' '<td class="n cancel">'
expect_row ingest-worker "in group ingest, token intake/ingest, waiting on channel/ingest-queue/receive" \
  '<td class="name">channel/ingest-queue/receive</td>' '<td class="name">ingest (#[0-9]*)</td>' \
  '<td class="name">intake/ingest</td>'
[[ $(grep -o '<a href="tasks?name=ingest-worker">' "$tasks_dom" | wc -l) -eq 2 ]] ||
  fail "/stallz/tasks?state=waiting does not list both ingest-worker tasks (DOM in $tasks_dom)"
states=$(grep -o '<td class="state"><span data-state="[a-z]*"' "$tasks_dom" | sort | uniq -c)
[[ -n "$states" && $(grep -vc 'data-state="waiting"' <<<"$states") -eq 0 ]] ||
  fail "/stallz/tasks?state=waiting lists tasks in other states: $states (DOM in $tasks_dom)"
for name in restock report-export order-book-keeper; do
  ! grep -q "tasks?name=$name\"" "$tasks_dom" ||
    fail "/stallz/tasks?state=waiting lists $name, which is not waiting (DOM in $tasks_dom)"
done
grep -q '<a href="tasks?state=waiting" aria-current="true">waiting [0-9]' "$tasks_dom" ||
  fail "the tasks page's filter does not mark \"waiting\" as the current one (DOM in $tasks_dom)"
grep -q 'data-refreshes="[1-9]' "$tasks_dom" ||
  fail "the tasks page's script did not refresh it (DOM in $tasks_dom)"

# /stallz/map: the bounded channel with its capacity, the group, and the lock.
load "$map_url" "$map_dom" "$map_png"
grep -q 'channel invoices</text><text [^>]*>capacity 4 (wait)' "$map_dom" ||
  fail "/stallz/map does not show the channel invoices with capacity 4 (DOM in $map_dom)"
grep -q 'channel ingest-queue</text><text [^>]*>capacity 16 (wait)' "$map_dom" ||
  fail "/stallz/map does not show the channel ingest-queue with capacity 16 (DOM in $map_dom)"
grep -q 'group ingest ' "$map_dom" || fail "/stallz/map does not show the group ingest (DOM in $map_dom)"
grep -q 'async_lock order-book</text>' "$map_dom" ||
  fail "/stallz/map does not show the AsyncMutex order-book (DOM in $map_dom)"

# The fixture stops cleanly on SIGTERM; a sanitizer report or a crash makes it exit non-zero.
kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[[ $status -eq 0 ]] || fail "the fixture exited with status $status: $(tail -n 60 "$fixture_log")"

echo "PASS: /stallz ranks $top_resource first in Chromium; /stallz/tasks shows each waiting task's" \
  "wait and filters by state; /stallz/map shows the bounded channels; screenshots: $png," \
  "$tasks_png, $map_png"
