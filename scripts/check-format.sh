#!/usr/bin/env bash
# Checks that every C++ source (*.cpp, *.hpp) in the repository is clang-formatted (.clang-format).
#   scripts/check-format.sh         list unformatted files; exit 1 if there are any
#   scripts/check-format.sh --fix   reformat them in place
# Files are those git tracks plus untracked ones it does not ignore (so build/ is skipped);
# outside a git checkout, every *.cpp/*.hpp not under build/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  *)
    echo "usage: scripts/check-format.sh [--fix]" >&2
    exit 2
    ;;
esac

clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null; then
  echo "check-format: $clang_format not found (scripts/setup.sh --test installs it)" >&2
  exit 2
fi

files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [[ -f $f ]] && files+=("$f")
  done < <(git ls-files -z --cached --others --exclude-standard -- '*.cpp' '*.hpp' | sort -zu)
else
  while IFS= read -r -d '' f; do
    files+=("${f#./}")
  done < <(find . -path ./build -prune -o -path './build-*' -prune -o -path ./.git -prune \
                -o -type f \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z)
fi

if ((${#files[@]} == 0)); then
  echo "check-format: no C++ files found" >&2
  exit 2
fi

if ((fix)); then
  "$clang_format" -i --style=file "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi

unformatted=()
for f in "${files[@]}"; do
  if ! "$clang_format" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    unformatted+=("$f")
  fi
done

version=$("$clang_format" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true)
if ((${#unformatted[@]} > 0)); then
  echo "check-format: ${#unformatted[@]} of ${#files[@]} files are not clang-formatted" \
    "(clang-format ${version:-?}); fix with scripts/check-format.sh --fix:" >&2
  printf '  %s\n' "${unformatted[@]}" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files clang-formatted (clang-format ${version:-?})"
