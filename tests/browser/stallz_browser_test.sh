#!/usr/bin/env bash
# The /stallz page in a real browser: starts the fixture (a program with an Agent and a contended
# lock named "checkout-ledger"), waits until its stall scores have history, then has headless
# Chromium load /stallz, run the page's script (virtual time, so its 2 s refresh fires at once),
# and dump the DOM and a screenshot. Fails unless the top row names "checkout-ledger", the script
# refreshed the page (it fetches /stallz again and swaps in the new tables), and the screenshot is
# a non-empty PNG.
#
#   stallz_browser_test.sh FIXTURE CHROMIUM OUT_DIR
#
# CHROMIUM may be empty: the script then looks for chromium on PATH. Writes OUT_DIR/stallz.png,
# OUT_DIR/stallz-dom.html and OUT_DIR/stallz.json. Needs only bash (its /dev/tcp for HTTP).
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
rm -f "$png" "$dom" "$json"
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

# Wait (30 s at most) until the ranking has rates and the contended lock leads it. The first
# "resource" in stallz.json is the top row.
body=
for _ in $(seq 150); do
  body=$(http_get /stallz.json) || body=
  top=$(grep -o '"resource":"[^"]*"' <<<"$body" | head -n 1)
  if [[ "$top" == "\"resource\":\"$top_resource\"" ]] &&
    grep -q '"covered_seconds":[0-9]' <<<"$body"; then
    break
  fi
  sleep 0.2
done
printf '%s\n' "$body" >"$json"
grep -o '"resource":"[^"]*"' <<<"$body" | head -n 1 | grep -q "\"$top_resource\"" ||
  fail "stallz.json never ranked $top_resource first within 30 s: $body"

browser=("$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$work/profile"
  --window-size=1280,900 --virtual-time-budget=5000)

timeout 120 "${browser[@]}" --dump-dom "$url" >"$dom" 2>"$work/chromium-dom.log" ||
  fail "chromium --dump-dom failed: $(tail -n 20 "$work/chromium-dom.log")"
[[ -s "$dom" ]] || fail "chromium dumped an empty DOM: $(tail -n 20 "$work/chromium-dom.log")"

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

timeout 120 "${browser[@]}" --screenshot="$png" "$url" >"$work/chromium-shot.log" 2>&1 ||
  fail "chromium --screenshot failed: $(tail -n 20 "$work/chromium-shot.log")"
[[ -s "$png" ]] || fail "the screenshot $png is missing or empty: $(tail -n 20 "$work/chromium-shot.log")"
[[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] ||
  fail "the screenshot $png is not a PNG"

# The fixture stops cleanly on SIGTERM; a sanitizer report or a crash makes it exit non-zero.
kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[[ $status -eq 0 ]] || fail "the fixture exited with status $status: $(tail -n 60 "$fixture_log")"

echo "PASS: /stallz ranks $top_resource first in Chromium; screenshot: $png"
