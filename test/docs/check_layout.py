#!/usr/bin/env python3
"""docs/architecture.md lists every file under src/, include/ and tools/
with what it owns, and every such file opens with a paragraph saying so:
check_layout.py SOURCE_ROOT. Fails on a file the map does not list, a file
it lists that does not exist, and a C file that does not open with a
comment."""
import os
import re
import sys

root = sys.argv[1]
doc = open(os.path.join(root, "docs", "architecture.md"), encoding="utf-8").read()

# "### src/client/" headings, then "- `file.c` — ..." lines under them.
listed = set()
folder = None
for line in doc.splitlines():
    m = re.match(r"### (\S+)/\s*$", line)
    if m:
        folder = m.group(1)
        continue
    if line.startswith("## "):
        folder = None
    if folder and line.startswith("- `"):
        head = line.split(" — ", 1)[0]
        for name in re.findall(r"`([^`]+)`", head):
            listed.add(f"{folder}/{name}")

present = set()
for top in ("src", "include", "tools"):
    for d, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            if f.endswith((".c", ".h")):
                present.add(os.path.relpath(os.path.join(d, f), root))

bad = 0
for p in sorted(present - listed):
    print(f"docs/architecture.md does not list {p}")
    bad += 1
for p in sorted(listed - present):
    print(f"docs/architecture.md lists {p}, which does not exist")
    bad += 1
for p in sorted(present):
    with open(os.path.join(root, p), encoding="utf-8") as f:
        first = f.readline()
    if not first.startswith("/*"):
        print(f"{p} does not open with a paragraph saying what it owns")
        bad += 1
print(f"{len(present)} files, {bad} problem(s)")
sys.exit(1 if bad else 0)
