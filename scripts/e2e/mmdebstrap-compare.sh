#!/usr/bin/env bash
# Build the reference image with mmdebstrap (same suites, variant, includes, provision and
# cleanup scripts) and compare it entry by entry with ingot's image. Differences outside
# scripts/e2e/volatile-paths.txt fail the suite.
# Usage: mmdebstrap-compare.sh RECIPE_DIR MIRROR OUR_IMAGE WORKDIR
set -euo pipefail
recipe=$1 mirror=$2 ours=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
read -r suites includes keyring < <(python3 - "$recipe/recipe.toml" <<'PY'
import sys, tomllib, os
r = tomllib.load(open(sys.argv[1], "rb"))
print(",".join(r["source"]["suites"]), ",".join(["apt"] + r["packages"].get("include", [])),
      os.path.normpath(os.path.join(os.path.dirname(sys.argv[1]), r["source"]["keyring"])))
PY
)
sources=()
for s in ${suites//,/ }; do sources+=("deb $mirror $s main"); done
hooks=()
for kind in provision cleanup; do
  [ -f "$recipe/$kind.sh" ] || continue
  hooks+=(--customize-hook="cp '$recipe/$kind.sh' \"\$1/tmp/ingot-$kind.sh\" && chroot \"\$1\" /bin/sh /tmp/ingot-$kind.sh && rm -f \"\$1/tmp/ingot-$kind.sh\"")
done
t0=$SECONDS
mmdebstrap --mode=root --variant=minbase --architectures=amd64 --components=main \
  --keyring="$keyring" --include="$includes" "${hooks[@]}" \
  "${suites%%,*}" "$work/mmdebstrap.tar" "${sources[@]}" > "$work/mmdebstrap.log" 2>&1 \
  || { tail -30 "$work/mmdebstrap.log"; exit 1; }
echo "mmdebstrap: $((SECONDS - t0)) s"
python3 "$here/compare-trees.py" "$ours" "$work/mmdebstrap.tar" "$here/volatile-paths.txt"
