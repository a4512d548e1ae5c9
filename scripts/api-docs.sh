#!/usr/bin/env bash
# Builds the API reference from the public headers with Doxygen
# (docs/Doxyfile) and checks it: exits non-zero on any Doxygen warning (an
# undocumented public symbol, a malformed command, a \ref that resolves to
# nothing) and on any uvmqtt_* / UVMQTT_* name in a header comment that
# names no documented symbol (a comment left behind by a rename).
#
#   scripts/api-docs.sh [OUTDIR]   HTML in OUTDIR/html (default build/docs)
#   scripts/api-docs.sh --check    the same into a temporary directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

command -v doxygen >/dev/null 2>&1 ||
  { echo "api-docs: doxygen not found (apt-get install doxygen)" >&2; exit 1; }

tmp=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
if [ "${1:-}" = --check ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/uvmqtt-api-docs.XXXXXX")
  out=$tmp
else
  out=${1:-build/docs}
fi
mkdir -p "$out"

# Overrides appended to the configuration: the output directory, and the
# XML index the name check below reads.
rc=0
{ cat docs/Doxyfile; printf 'OUTPUT_DIRECTORY = "%s"\nGENERATE_XML = YES\n' "$out"; } |
  doxygen - 2>"$out/warnings.txt" || rc=$?
if [ -s "$out/warnings.txt" ]; then
  sed "s|^$ROOT/||" "$out/warnings.txt" >&2
fi
nwarn=$(grep -c . "$out/warnings.txt" || true)
echo "api-docs: doxygen: $nwarn warning line(s), exit $rc" >&2
[ "$rc" -eq 0 ] && [ "$nwarn" -eq 0 ] || exit 1

python3 - "$out/xml/index.xml" include <<'PYEOF'
import os, re, sys
import xml.etree.ElementTree as ET

names = set()
for el in ET.parse(sys.argv[1]).getroot().iter():
    if el.tag == "name" and el.text:
        names.add(el.text.strip())
# Struct tags (uvmqtt_client_s) hidden behind their typedefs, and names
# that are not symbols: the libraries (meson targets, pkg-config names).
names |= {n[:-2] + "_s" for n in names if n.endswith("_t")}
names |= {"uvmqtt_proto"}

comment = re.compile(r"/\*.*?\*/", re.S)
word = re.compile(r"\b((?:uvmqtt|UVMQTT)_[A-Za-z0-9_]*)(\*?)")
bad = 0
for d, _, files in os.walk(sys.argv[2]):
    for f in sorted(files):
        if not f.endswith(".h"):
            continue
        path = os.path.join(d, f)
        text = open(path, encoding="utf-8").read()
        for m in comment.finditer(text):
            for w in word.finditer(m.group(0)):
                name, star = w.group(1), w.group(2)
                if star or name.endswith("_"):
                    ok = any(n.startswith(name) for n in names)
                else:
                    ok = name in names
                if not ok:
                    line = text.count("\n", 0, m.start() + w.start()) + 1
                    print(f"{path}:{line}: '{name}{star}' names no "
                          "documented symbol", file=sys.stderr)
                    bad += 1
print(f"api-docs: {bad} comment reference(s) to unknown names", file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF
