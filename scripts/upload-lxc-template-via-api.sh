#!/usr/bin/env bash
# The seed's entry point: upload an image to Proxmox storage as a container template through
# the API with a token. A thin wrapper over `ingot upload`; every setting comes from the
# environment (PM_API_URL, PM_API_TOKEN_ID, PM_API_TOKEN_SECRET, PM_NODE, PM_STORAGE, and
# optionally PM_TLS_CA or PM_TLS_FINGERPRINT) or from the flags after TARBALL.
# Usage: scripts/upload-lxc-template-via-api.sh TARBALL [ingot upload flags…]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 TARBALL [--json] [--ca-file PEM | --fingerprint AB:CD:…] [--node pve1,pve2] …" >&2
  exit 2
fi
INGOT=${INGOT:-$(dirname "$0")/../target/release/ingot}
if [ ! -x "$INGOT" ]; then
  (cd "$(dirname "$0")/.." && cargo build --release --locked >&2)
fi
exec "$INGOT" upload "$@"
