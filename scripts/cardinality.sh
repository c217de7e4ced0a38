#!/usr/bin/env bash
# The cardinality budget, measured: runs the demo (each variant on a free loopback port, at its
# default load), scrapes its /metrics after a few seconds, and counts the series one instance
# exports, per kind and per resource name, at the configured (default) buckets. Then what the
# README's ways to cut it would leave: fewer bucket bounds, and dropping `op` by relabelling.
#
#   bash scripts/cardinality.sh [--demo BIN] [--seconds N] [--variant slow|fixed|both]
#
# BIN defaults to the release build of the demo, else the dev build's; with neither, it builds
# the release one as scripts/demo.sh does (packages: bash scripts/setup.sh). Prints markdown
# tables (the README's "Cardinality budget" quotes them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo=""
seconds=8
variants="slow fixed"
while (($#)); do
  case "$1" in
    --demo) demo=${2:?--demo needs a path}; shift 2 ;;
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --variant)
      case "${2:-}" in
        slow | fixed) variants=$2 ;;
        both) variants="slow fixed" ;;
        *) echo "cardinality: --variant \"${2:-}\" is not slow, fixed or both" >&2; exit 2 ;;
      esac
      shift 2 ;;
    -h | --help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "cardinality: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 2)); then
  echo "cardinality: --seconds \"$seconds\" is not a whole number of at least 2" >&2
  exit 2
fi
if [[ -z $demo ]]; then
  for b in build/release/examples/demo/stallscope-demo build/dev/examples/demo/stallscope-demo; do
    if [[ -x $b ]]; then demo=$b; break; fi
  done
fi
if [[ -z $demo ]]; then
  echo "cardinality: building stallscope-demo (release preset)" >&2
  cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)" --target stallscope-demo >&2
  demo=build/release/examples/demo/stallscope-demo
fi
if [[ ! -x $demo ]]; then
  echo "cardinality: no demo binary at $demo" >&2
  exit 1
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts one variant on port 0; sets pid and url (the /metrics URL it announces).
start() {
  "$demo" --variant "$1" --listen 127.0.0.1:0 --duration 0 --summary-interval 0 >"$work/$1.log" 2>&1 &
  pid=$!
  url=""
  for _ in $(seq 100); do
    url=$(grep -o 'http://[0-9.:]*/metrics' "$work/$1.log" | head -1 || true)
    [[ -n $url ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$1.log" >&2; echo "cardinality: the demo exited" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $url ]] || { echo "cardinality: the demo did not announce its endpoint" >&2; exit 1; }
}

for variant in $variants; do
  start "$variant"
  sleep "$seconds"
  curl -fsS "$url" >"$work/metrics.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  awk -v variant="$variant" -v seconds="$seconds" '
    function label(s, name,   m) {
      if (match(s, "[{,]" name "=\"[^\"]*\"")) {
        m = substr(s, RSTART + 1, RLENGTH - 1); sub("^" name "=\"", "", m); sub("\"$", "", m); return m
      }
      return ""
    }
    /^#/ || !/^stallscope_/ { next }
    {
      series = $1; total++
      name = series; sub("{.*", "", name)
      kind = label(series, "kind"); res = label(series, "resource")
      if (kind == "") { agent++; next }
      if (res == "") { perkind[kind]++; kinds[kind] = 1; next }  # stallscope_resources and the like
      kinds[kind] = 1
      if (!((kind, res) in per)) names[kind]++
      per[kind, res]++; n[kind]++
      if (name ~ /_bucket$/) {
        buckets[kind]++; fam = name; sub(/_bucket$/, "", fam); famb[fam]++
        if (label(series, "le") != "+Inf") bounds[label(series, "le")] = 1
      }
      if (name ~ /_count$/) hist[kind]++
      # The same series without its op label: two that collide would be merged by a labeldrop.
      noop = series; gsub(/,?op="[^"]*"/, "", noop); sub(/\{,/, "{", noop)
      if ((noop in dropped)) collide[kind]++
      dropped[noop] = 1
    }
    END {
      nb = 0; for (x in bounds) nb++
      for (key in per) {
        split(key, kr, SUBSEP)
        if (!(kr[1] in lo) || per[key] < lo[kr[1]]) lo[kr[1]] = per[key]
        if (!(kr[1] in hi) || per[key] > hi[kr[1]]) hi[kr[1]] = per[key]
      }
      printf "### variant %s (after %d s): %d stallscope series, %d bucket bounds\n\n", variant, seconds, total, nb
      printf "| kind | names | series per name | series | of which `_bucket` | per kind | merged by dropping `op` |\n"
      printf "|---|---:|---:|---:|---:|---:|---:|\n"
      k = 0; for (kind in kinds) order[++k] = kind
      for (i = 2; i <= k; i++) for (j = i; j > 1 && order[j] < order[j-1]; j--) { t = order[j]; order[j] = order[j-1]; order[j-1] = t }
      for (i = 1; i <= k; i++) {
        kind = order[i]
        range = lo[kind] == hi[kind] ? lo[kind] : lo[kind] "-" hi[kind]
        printf "| %s | %d | %s | %d | %d | %d | %d |\n", kind, names[kind], range, n[kind], buckets[kind], perkind[kind], collide[kind]
        h += hist[kind]; b += buckets[kind]; c += collide[kind]; pk += perkind[kind]
      }
      printf "| (agent, no kind) | | | | | %d | |\n\n", agent
      printf "%d histograms cost %d `_bucket` series of the %d (%.0f%%). ", h, b, total, 100 * b / total
      for (m = 12; m >= 6; m -= 6) printf "With %d bounds: %d series. ", m, total - b + h * (m + 1)
      printf "Dropping `op` merges %d series.\n\n`_bucket` series by family:", c
      for (f in famb) printf " %s %d;", f, famb[f]
      printf "\n\n"
    }' "$work/metrics.txt"
done
