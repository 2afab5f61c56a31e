#!/usr/bin/env python3
"""An independent check of ingot's provenance, without ingot's code: DSSE (PAE + Ed25519 with
Python's `cryptography`), the in-toto Statement, the subject against the tarball's SHA-256,
and every package of the image's var/lib/dpkg/status among the resolved dependencies.

usage: dsse-verify.py TARBALL PUBLIC_KEY.pem [--mirror-dir DIR]

With --mirror-dir, each .deb the statement lists under a file:// or http(s):// URI is also
hashed from DIR (the archive root the URI's path is under: the part after /pool/ is looked up
in DIR/pool/) and must have the recorded SHA-256. Exit 0 and one line "ok: ..." when
everything holds; exit 1 naming the first thing that does not.
"""
import base64
import hashlib
import io
import json
import lzma
import gzip
import sys
import tarfile

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(msg):
    print(f"dsse-verify: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def b64(text):
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def pae(payload_type, body):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def open_tar(path):
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif data[:6] == b"\xfd7zXZ\x00":
        data = lzma.decompress(data)
    elif data[:4] == b"\x28\xb5\x2f\xfd":
        import subprocess
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def main():
    args = sys.argv[1:]
    mirror = None
    if "--mirror-dir" in args:
        i = args.index("--mirror-dir")
        mirror = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    tarball, public_pem = args
    envelope_path = tarball + ".provenance.json"
    envelope = json.load(open(envelope_path))
    if envelope.get("payloadType") != "application/vnd.in-toto+json":
        fail(f"{envelope_path}: payloadType {envelope.get('payloadType')!r}")
    key = serialization.load_pem_public_key(open(public_pem, "rb").read())
    if not isinstance(key, Ed25519PublicKey):
        fail(f"{public_pem}: not an Ed25519 public key")
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(spki).hexdigest()
    payload = b64(envelope["payload"])
    signed = pae(envelope["payloadType"], payload)
    verified = False
    for s in envelope.get("signatures", []):
        try:
            key.verify(b64(s["sig"]), signed)
        except InvalidSignature:
            continue
        if s.get("keyid") not in ("", None, keyid):
            fail(f"{envelope_path}: signature verifies but names keyid {s.get('keyid')}, not {keyid}")
        verified = True
        break
    if not verified:
        fail(f"{envelope_path}: no signature verifies under {public_pem} (keyid {keyid})")

    st = json.loads(payload)
    if st.get("_type") != "https://in-toto.io/Statement/v1":
        fail(f"_type {st.get('_type')!r}")
    if st.get("predicateType") != "https://slsa.dev/provenance/v1":
        fail(f"predicateType {st.get('predicateType')!r}")
    actual = hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    subjects = [s["digest"].get("sha256") for s in st["subject"]]
    if subjects != [actual]:
        fail(f"subject digests {subjects}, the tarball's sha256 is {actual}")

    deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
    debs = {}
    inreleases = 0
    for d in deps:
        if d["uri"].endswith("/InRelease"):
            inreleases += 1
        elif d["uri"].endswith(".deb"):
            debs[(d["name"], d["annotations"]["version"])] = d
    if inreleases == 0:
        fail("no InRelease among the resolved dependencies")

    with open_tar(tarball) as tar:
        status = tar.extractfile("var/lib/dpkg/status").read().decode()
    installed = []
    for stanza in status.split("\n\n"):
        fields = dict(l.split(": ", 1) for l in stanza.splitlines() if ": " in l and not l.startswith(" "))
        if "Package" in fields:
            installed.append((fields["Package"], fields["Version"]))
    missing = [p for p in installed if p not in debs]
    if missing:
        fail(f"installed but not among the resolved dependencies: {missing[:5]}")
    if mirror:
        for (name, _), d in debs.items():
            path = mirror.rstrip("/") + "/pool/" + d["uri"].split("/pool/", 1)[1]
            have = hashlib.sha256(open(path, "rb").read()).hexdigest()
            if have != d["digest"]["sha256"]:
                fail(f"{path}: sha256 {have}, the statement records {d['digest']['sha256']}")
    print(f"ok: {tarball}: signature by {keyid}, subject sha256 {actual}, "
          f"{len(installed)} installed packages all among {len(debs)} .debs, {inreleases} InRelease")


if __name__ == "__main__":
    main()
