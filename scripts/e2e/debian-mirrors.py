#!/usr/bin/env python3
"""Print this machine's Debian mirrors, read from its own apt sources (the repository names
none): `MIRROR SECURITY_MIRROR`, the archive roots of Debian's main archive and of its
security archive. Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}
(one-line and deb822). Exits 2, naming what is missing, when either is not configured."""
import glob, sys

def entries():
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for f in files:
        try:
            lines = open(f).read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                words = [w for w in words[1:] if not w.startswith("[")]
                if len(words) >= 2:
                    yield words[0], [words[1]], ""
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in open(f).read().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split(), fields.get("signed-by", "")

main = security = None
for uri, suites, signed_by in entries():
    debian = "debian-archive-keyring" in signed_by or uri.rstrip("/").endswith(("/debian", "/debian-security"))
    if not debian:
        continue
    if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
        security = security or uri.rstrip("/")
    else:
        main = main or uri.rstrip("/")
if not main or not security:
    print(f"debian-mirrors: this machine's apt sources name no Debian {'archive' if not main else 'security archive'}"
          " (set E2E_DEBIAN_MIRROR and E2E_DEBIAN_SECURITY_MIRROR)", file=sys.stderr)
    sys.exit(2)
print(main, security)
