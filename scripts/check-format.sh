#!/usr/bin/env bash
# Checks that every tracked C source and header (outside subprojects/ and
# build directories) is formatted as .clang-format says. Prints the
# offending places and exits non-zero when one is not.
#
#   scripts/check-format.sh          check
#   scripts/check-format.sh --fix    reformat the files in place
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
command -v "$CLANG_FORMAT" >/dev/null 2>&1 ||
  { echo "check-format: $CLANG_FORMAT not found (scripts/dev deps)" >&2; exit 1; }

files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [ -f "$f" ] && files+=("$f")
  done < <(git ls-files -z -- '*.c' '*.h' ':!:subprojects/**' ':!:build*/**')
else
  while IFS= read -r -d '' f; do
    files+=("$f")
  done < <(find . \( -path ./subprojects -o -path './build*' -o -path ./.git \) \
    -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print0)
fi

if [ "${#files[@]}" -eq 0 ]; then
  echo "check-format: no C files to check"
  exit 0
fi

if [ "${1:-}" = --fix ]; then
  "$CLANG_FORMAT" -i --style=file "${files[@]}"
  exit 0
fi

if "$CLANG_FORMAT" --dry-run -Werror --style=file "${files[@]}"; then
  echo "check-format: ${#files[@]} files formatted"
else
  echo "check-format: files above are not formatted; fix with scripts/check-format.sh --fix" >&2
  exit 1
fi
