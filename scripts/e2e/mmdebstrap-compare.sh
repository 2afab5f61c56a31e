#!/usr/bin/env bash
# Build the reference image with mmdebstrap (same suites, variant, includes, provision and
# cleanup scripts -- the golden policy's first when the recipe extends one) and compare it
# entry by entry with ingot's image. Differences outside scripts/e2e/volatile-paths.txt fail
# the suite.
# Usage: mmdebstrap-compare.sh RECIPE_DIR MIRROR OUR_IMAGE WORKDIR
#   MIRROR: every suite's archive root; SUITE_MIRRORS=suite=URL,... (as ingot's
#   INGOT_SUITE_MIRRORS) overrides it for single suites (Debian's security archive).
set -euo pipefail
recipe=$1 mirror=$2 ours=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
# One line per setting: suites (suite=url,...), includes, keyring, then the scripts.
mapfile -t settings < <(python3 - "$recipe/recipe.toml" "$mirror" "${SUITE_MIRRORS:-}" <<'PY'
import sys, tomllib, os
path, mirror, overrides = sys.argv[1], sys.argv[2], sys.argv[3]
base = os.path.dirname(sys.argv[1])
r = tomllib.load(open(path, "rb"))
given = dict(p.split("=", 1) for p in overrides.split(",") if p)
suites = [f"{s}={given.get(s, mirror)}" for s in r["source"]["suites"]]
print(",".join(suites))
print(",".join(["apt"] + r["packages"].get("include", [])))
print(os.path.normpath(os.path.join(base, r["source"]["keyring"])))
scripts = []
if "extends" in r:
    pdir = os.path.normpath(os.path.join(base, r["extends"]))
    p = tomllib.load(open(os.path.join(pdir, "policy.toml"), "rb"))
    for kind in ("provision", "cleanup"):
        scripts += [(kind, os.path.join(pdir, s)) for s in p.get(kind, {}).get("scripts", [])]
order = {"provision": 0, "cleanup": 1}
own = [(k, os.path.join(base, s)) for k in ("provision", "cleanup") for s in r.get(k, {}).get("scripts", [])]
for kind, s in sorted(scripts + own, key=lambda ks: order[ks[0]]):
    print(s)
PY
)
suite_mirrors=${settings[0]} includes=${settings[1]} keyring=${settings[2]}
sources=()
for pair in ${suite_mirrors//,/ }; do sources+=("deb ${pair#*=} ${pair%%=*} main"); done
first=${suite_mirrors%%=*}
hooks=()
for script in "${settings[@]:3}"; do
  # ingot gives the scripts the build's suites and mirrors; so does this hook.
  hooks+=(--customize-hook="cp '$script' \"\$1/tmp/ingot-script.sh\" && chroot \"\$1\" env INGOT_SUITE_MIRRORS='$suite_mirrors' /bin/sh /tmp/ingot-script.sh && rm -f \"\$1/tmp/ingot-script.sh\"")
done
t0=$SECONDS
mmdebstrap --mode=root --variant=minbase --architectures=amd64 --components=main \
  --keyring="$keyring" --include="$includes" "${hooks[@]}" \
  "$first" "$work/mmdebstrap.tar" "${sources[@]}" > "$work/mmdebstrap.log" 2>&1 \
  || { tail -30 "$work/mmdebstrap.log"; exit 1; }
echo "mmdebstrap: $((SECONDS - t0)) s"
python3 "$here/compare-trees.py" "$ours" "$work/mmdebstrap.tar" "$here/volatile-paths.txt"
