#!/usr/bin/env python3
"""Every option a tool's --help names appears in its man page, so the two
cannot drift: check_man.py TOOL MANPAGE. Exits 1 and lists the options
missing from the page (troff source, with \\- read as -)."""
import re
import subprocess
import sys

tool, page = sys.argv[1], sys.argv[2]
help_text = subprocess.run([tool, "--help"], capture_output=True, text=True,
                           timeout=30, check=True).stdout
opt = re.compile(r"(?<![\w\-])(--?[A-Za-z][\w\-]*)")
options = sorted(set(opt.findall(help_text)))
if len(options) < 10:
    sys.exit(f"{tool} --help lists only {options}: is this its usage text?")

man = open(page, encoding="utf-8").read()
man = re.sub(r"\\f[BIRP]", "", man).replace("\\-", "-").replace("\\e", "\\")
missing = [o for o in options
           if not re.search(r"(?<![\w\-])" + re.escape(o) + r"(?![\w\-])", man)]
for o in missing:
    print(f"{page}: option {o} of `{tool} --help` is not documented")
print(f"{len(options)} options in --help, {len(missing)} missing from the page")
sys.exit(1 if missing else 0)
