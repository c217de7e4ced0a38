# Sourced by scripts that start the demo with its output in a log file.
#
# demo_url LOG: prints the demo's endpoint (http://HOST:PORT) once LOG shows its start-up line,
# waiting up to 30 s (a loaded machine can start it slowly); prints nothing if it never does.
demo_url() {
  local log=$1 url=
  for _ in $(seq 300); do
    url=$(sed -n 's|.*metrics at \(http://[^ ]*\)/metrics,.*|\1|p' "$log" 2>/dev/null)
    [[ -n $url ]] && break
    sleep 0.1
  done
  printf '%s' "$url"
}
