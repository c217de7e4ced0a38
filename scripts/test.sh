#!/usr/bin/env bash
# The README's second command: installs what the tests need, then builds and tests every preset.
#
#   bash scripts/test.sh              presets dev, asan, tsan, off, then the instruction-count
#                                     gate (scripts/icount.sh --check) and the clang-format check
#   bash scripts/test.sh dev tsan     only these presets (and the icount and format checks)
#
# Compilers: dev and tsan build with GCC 12, asan with clang 16 and off with clang 14
# (CMakePresets.json), so both compilers are covered without extra builds.
# Each preset is configured, built (-j$(nproc)) and run through ctest in build/<preset>. The
# last line is "N passed, N failed": ctest tests summed over presets; a preset that fails to
# configure or build, and a failed format check, each count as one failure. Exit status 0 only
# when nothing failed. CI (.ci/run) runs exactly this on a 2-core machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

presets=(dev asan tsan off)
if (($# > 0)); then
  presets=("$@")
fi
jobs=$(nproc 2>/dev/null || echo 2)

bash scripts/setup.sh --test
bash scripts/setup-node.sh

passed=0
failed=0
report=()

elapsed() {
  local s=$((SECONDS - $1))
  printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# junit_attr NAME TEXT: the numeric value of attribute NAME="N" in TEXT.
junit_attr() {
  sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$2"
}

# Prints "PASSED FAILED" from ctest's JUnit file (its <testsuite> element), nothing if unreadable.
junit_counts() {
  local suite tests failures skipped disabled
  [[ -r $1 ]] || return 0
  suite=$(tr '\n\t' '  ' <"$1" | grep -o '<testsuite [^>]*>' | head -n1) || return 0
  tests=$(junit_attr tests "$suite")
  failures=$(junit_attr failures "$suite")
  skipped=$(junit_attr skipped "$suite")
  disabled=$(junit_attr disabled "$suite")
  [[ -n $tests && -n $failures ]] || return 0
  echo "$((tests - failures - ${skipped:-0} - ${disabled:-0})) $failures"
}

for preset in "${presets[@]}"; do
  start=$SECONDS
  # Line tables only (-g1: file:line in sanitizer reports and profiles, no variables) and the
  # lld linker: what the suite needs, at about 17% less compile time (a test unit: 8.7 s ->
  # 7.3 s) and a fifth of the link CPU time (the exporter tests: 6.0 s -> 1.2 s) of -g and GNU
  # ld (README, "Two commands"). clang's -g1 (-gline-tables-only) names functions without their
  # namespaces, so the asan preset's profile tests check that the profiles trim stallscope's own
  # frames by file as well. The presets used directly keep -g for debugging.
  configure_args=(-DCMAKE_EXE_LINKER_FLAGS_DEBUG=-fuse-ld=lld
                  -DCMAKE_SHARED_LINKER_FLAGS_DEBUG=-fuse-ld=lld
                  -DCMAKE_CXX_FLAGS_DEBUG=-g1)
  env_args=()
  # Tests that do not depend on the preset's flags run once: the dashboard checks (node and
  # promtool, no C++) in dev only, the installed-package tests (a consumer project built against
  # `cmake --install`) in dev and off (recording on and compiled out), not under the sanitizers.
  ctest_args=()
  case "$preset" in
    asan)
      # The sanitizer presets test the library; the examples are built by dev and off.
      configure_args+=(-DSTALLSCOPE_BUILD_EXAMPLES=OFF)
      env_args+=(UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
      ctest_args+=(-LE '^(install|dashboards)$')
      ;;
    tsan)
      configure_args+=(-DSTALLSCOPE_BUILD_EXAMPLES=OFF)
      # One suppression: a report ThreadSanitizer makes inside Boost.Asio 1.81's executor
      # reference counting, which it cannot model (the file says why).
      env_args+=("TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan-suppressions.txt")
      ctest_args+=(-LE '^(install|dashboards)$')
      ;;
    off)
      ctest_args+=(-LE '^dashboards$')
      ;;
  esac

  echo "=== $preset: configure"
  if ! cmake --preset "$preset" "${configure_args[@]}"; then
    failed=$((failed + 1))
    report+=("$preset: configure failed")
    continue
  fi
  echo "=== $preset: build (-j$jobs)"
  if ! cmake --build --preset "$preset" -j"$jobs"; then
    failed=$((failed + 1))
    report+=("$preset: build failed ($(elapsed "$start"))")
    continue
  fi
  build_time=$(elapsed "$start")

  echo "=== $preset: test"
  junit="$PWD/build/$preset/ctest-junit.xml"
  rm -f "$junit"
  test_start=$SECONDS
  ctest_rc=0
  # --timeout: a default for tests without their own, so a hang costs minutes, not ctest's 25.
  # --parallel: most tests wait (for a timer, a poll, a child process) more than they compute;
  # the end-to-end ones are RUN_SERIAL.
  env "${env_args[@]}" ctest --preset "$preset" --output-on-failure --no-tests=error \
    --timeout 300 --parallel "$jobs" --output-junit "$junit" "${ctest_args[@]}" || ctest_rc=$?
  counts=$(junit_counts "$junit")
  if [[ -z $counts ]]; then
    failed=$((failed + 1))
    report+=("$preset: ctest exited $ctest_rc without results")
    continue
  fi
  read -r p f <<<"$counts"
  if ((ctest_rc != 0 && f == 0)); then
    f=1  # ctest failed without a failing test (e.g. no tests found)
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  report+=("$preset: $p passed, $f failed (build $build_time, tests $(elapsed "$test_start"))")
done

# Instruction counts of stallscope's hot paths against bench/icount-baseline.txt: deterministic,
# so a regression of a few percent fails here instead of hiding in timing noise.
echo "=== icount (release build, callgrind)"
icount_out=$(bash scripts/icount.sh --check 2>&1) || true
echo "$icount_out"
if [[ $icount_out =~ icount:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  report+=("icount: ${BASH_REMATCH[1]} passed, ${BASH_REMATCH[2]} failed")
else
  failed=$((failed + 1))
  report+=("icount: did not run (see its output above)")
fi

echo "=== clang-format"
if bash scripts/check-format.sh; then
  report+=("format: clean")
else
  failed=$((failed + 1))
  report+=("format: unformatted files (scripts/check-format.sh --fix)")
fi

echo
printf '%s\n' "${report[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
