#!/usr/bin/env python3
"""Read an image tarball with Python's tarfile and check the export format contract.

Fails (exit 1) on: a warning or error from tarfile, a `./` or `/` prefix, owner names, owners
outside 0..65535, device nodes, anything inside dev/, entries out of the per-directory
bytewise order, an mtime after the manifest's build epoch (when a manifest is beside it).
"""
import json, os, sys, tarfile, warnings

warnings.simplefilter("error")
path = sys.argv[1]
epoch = None
manifest = path + ".manifest.json"
if os.path.exists(manifest):
    with open(manifest) as f:
        epoch = json.load(f)["build_epoch"]
problems = []
count = 0
prev = None
with tarfile.open(path, "r:*") as tf:
    for m in tf:
        count += 1
        name = m.name
        if m.name.startswith("./") or m.name.startswith("/"):
            problems.append(f"{name}: leading ./ or /")
        if m.uname or m.gname:
            problems.append(f"{name}: owner names {m.uname!r}/{m.gname!r}")
        if not (0 <= m.uid <= 65535 and 0 <= m.gid <= 65535):
            problems.append(f"{name}: owner {m.uid}:{m.gid} outside 0..65535")
        if m.ischr() or m.isblk():
            problems.append(f"{name}: device node")
        if name.startswith("dev/") and name.rstrip("/") != "dev":
            problems.append(f"{name}: dev/ must be empty")
        if epoch is not None and m.mtime > epoch:
            problems.append(f"{name}: mtime {m.mtime} after the build epoch {epoch}")
        # Directories before contents, names sorted bytewise inside each directory.
        cur = name.rstrip("/").encode().split(b"/")
        if prev is not None:
            common = 0
            while common < min(len(prev), len(cur)) and prev[common] == cur[common]:
                common += 1
            if common == len(cur):
                problems.append(f"{name}: repeated or after its own contents")
            elif common < len(prev) and common < len(cur) and cur[common] < prev[common]:
                problems.append(f"{name}: out of order after {b'/'.join(prev).decode()}")
        prev = cur
for p in problems[:50]:
    print("check-tarball:", p, file=sys.stderr)
print(f"check-tarball: {count} entries, {len(problems)} problems")
sys.exit(1 if problems or count == 0 else 0)
