#!/usr/bin/env python3
"""Compare two root-filesystem tarballs entry by entry: type, mode, owner, link target and
SHA-256 of contents. Paths matching a pattern in the volatile list (one glob a line, `#`
comments) are ignored. Prints every difference; exits 1 if there is any."""
import fnmatch, hashlib, sys, tarfile

# deb822 files whose readers do not care about stanza order (apt writes its hash order).
ORDER_FREE = {"var/lib/apt/extended_states"}

def load(path):
    out, links = {}, []
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            name = name.rstrip("/")
            if not name or name == ".":
                continue
            digest = None
            if m.isfile():
                data = tf.extractfile(m).read()
                if name in ORDER_FREE:
                    # The same stanzas in another order are the same file to its reader.
                    data = b"\n\n".join(sorted(s.strip() for s in data.split(b"\n\n") if s.strip()))
                digest = hashlib.sha256(data).hexdigest()
            if m.islnk():
                # A hard link is the same file as its target: compare it as that file.
                target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
                links.append((name, target.rstrip("/")))
                continue
            kind = "file" if m.isfile() else m.type.decode()
            link = m.linkname if m.issym() else None
            out[name] = (kind, oct(m.mode), m.uid, m.gid, link, digest)
    for name, target in links:
        if target in out:
            out[name] = out[target]
    return out

ours, theirs, volatile_file = sys.argv[1], sys.argv[2], sys.argv[3]
patterns = [l.strip() for l in open(volatile_file) if l.strip() and not l.startswith("#")]
def volatile(p):
    return any(fnmatch.fnmatchcase(p, pat) for pat in patterns)

a, b = load(ours), load(theirs)
diffs = []
for p in sorted(set(a) | set(b)):
    if volatile(p):
        continue
    if p not in a:
        diffs.append(f"only in reference: {p} {b[p][:5]}")
    elif p not in b:
        diffs.append(f"only in ours:      {p} {a[p][:5]}")
    elif a[p] != b[p]:
        # Hard link vs regular file with the same contents is the same tree.
        diffs.append(f"differs:           {p}\n    ours {a[p]}\n    ref  {b[p]}")
for d in diffs:
    print(d)
print(f"compare-trees: {len(a)} vs {len(b)} entries, {len(patterns)} volatile patterns, {len(diffs)} differences")
sys.exit(1 if diffs else 0)
