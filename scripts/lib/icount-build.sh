# Sourced by the callgrind instruction-count scripts (icount.sh, icount-asio-tracking.sh).
#
# icount_build ROOT NAME TARGET...: fails (naming NAME) unless valgrind is installed, then builds
# TARGET... in the benchmarks' folder and flags (scripts/bench.sh: release preset, no tests or
# examples, so the demo's build/release keeps its examples) and sets `build` to that folder.
icount_build() {
  local root=$1 name=$2
  shift 2
  if ! command -v valgrind >/dev/null; then
    echo "$name: valgrind is not installed (bash scripts/setup.sh --test)" >&2
    exit 1
  fi
  build=${STALLSCOPE_BENCH_BUILD_DIR:-$root/build/bench}
  cmake --preset release -S "$root" -B "$build" -DSTALLSCOPE_BUILD_TESTS=OFF \
    -DSTALLSCOPE_BUILD_EXAMPLES=OFF -DSTALLSCOPE_BUILD_BENCH=ON >/dev/null
  local t targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" "${targets[@]}" >/dev/null
}
