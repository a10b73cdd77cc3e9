#!/usr/bin/env python3
"""Writes issue 15's benchmark workload: N JSON Lines made by cycling the events of the public
corpus (each file's "event"; skipped when CORPUS is not a directory) followed by those of
tests/cases/**.json, files in sorted order. Run from the repository root.

Usage: scripts/bench-events.py N OUT CORPUS
"""
import json
import pathlib
import sys

n, out, corpus = int(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
events = []
if corpus.is_dir():
    for p in sorted(corpus.glob("*.json")):
        events.append(json.dumps(json.loads(p.read_text())["event"]))
for p in sorted(pathlib.Path("tests/cases").rglob("*.json")):
    events.append(json.dumps(json.loads(p.read_text())["event"]))
with open(out, "w") as f:
    for i in range(n):
        f.write(events[i % len(events)] + "\n")
print(f"workload: {len(events)} distinct events cycled to {n} lines "
      f"({'corpus + ' if corpus.is_dir() else ''}tests/cases)")
