#!/usr/bin/env bash
# Compare ingot's resolved package set with what mmdebstrap (through apt) installs for the same
# recipe. Exits 0 only if both `name=version` lists are identical.
#
# usage: scripts/compare-resolve.sh INGOT RECIPE [MMDEBSTRAP_LIST]
#   INGOT            the ingot binary (runs `INGOT resolve RECIPE --json`)
#   RECIPE           recipes/<name>/ or its recipe.toml
#   MMDEBSTRAP_LIST  optional: an existing `name=version` list from an earlier mmdebstrap run
#                    (skips the mmdebstrap run, which takes a minute or more)
#
# mmdebstrap runs with the recipe's suites (the first is mmdebstrap's SUITE), components,
# architecture, keyring and variant; for `minbase` it is given `--include=apt,…` because
# mmdebstrap before 1.4 does not add apt on Ubuntu, where apt is Priority: important.
# Needs: python3 (tomllib, json), mmdebstrap, dpkg-query; root (mode root) or a subuid range
# (mode unshare). Set KEEP=1 to keep the work directory.
set -euo pipefail

die() { echo "compare-resolve: $*" >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 INGOT RECIPE [MMDEBSTRAP_LIST]"
ingot=$1
recipe=$2
given_list=${3:-}
[ -x "$ingot" ] || die "$ingot: not an executable ingot binary"
if [ -d "$recipe" ]; then recipe_toml=$recipe/recipe.toml; else recipe_toml=$recipe; fi
[ -f "$recipe_toml" ] || die "$recipe_toml: no such recipe"
recipe_dir=$(cd "$(dirname "$recipe_toml")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/compare-resolve.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "compare-resolve: work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# 1. ingot's plan.
echo "compare-resolve: $ingot resolve $recipe --json" >&2
start=$(date +%s.%N)
"$ingot" resolve "$recipe" --json > "$work/ingot.json"
end=$(date +%s.%N)
python3 - "$work/ingot.json" > "$work/ingot.list" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    plan = json.load(f)
for p in plan["packages"]:
    print(f'{p["name"]}={p["version"]}')
EOF
echo "compare-resolve: ingot resolved $(wc -l < "$work/ingot.list") packages in $(python3 -c "print(f'{$end - $start:.2f}')") s" >&2

# 2. mmdebstrap's set.
if [ -n "$given_list" ]; then
    cp "$given_list" "$work/mmdebstrap.list"
else
    # Read the recipe once, emit shell-quoted settings.
    python3 - "$recipe_toml" "$recipe_dir" > "$work/settings.sh" <<'EOF'
import shlex, sys, tomllib, os
path, base = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    r = tomllib.load(f)
src, pkgs = r["source"], r["packages"]
mirrors = src.get("suite-mirrors", {})
comps = src.get("components", ["main"])
lines = []
for suite in src["suites"]:
    mirror = mirrors.get(suite, src["mirror"]).rstrip("/")
    lines.append(f"deb {mirror} {suite} {' '.join(comps)}")
include = list(pkgs.get("include", []))
variant = pkgs["variant"]
if variant == "minbase" and "apt" not in include:
    include.insert(0, "apt")
keyring = os.path.normpath(os.path.join(base, src["keyring"]))
print("suite=" + shlex.quote(src["suites"][0]))
print("arch=" + shlex.quote(src["architecture"]))
print("components=" + shlex.quote(",".join(comps)))
print("variant=" + shlex.quote(variant))
print("keyring=" + shlex.quote(keyring))
print("include=" + shlex.quote(",".join(include)))
print("sources=(" + " ".join(shlex.quote(l) for l in lines) + ")")
EOF
    # shellcheck disable=SC1091
    . "$work/settings.sh"
    if [ "$(id -u)" = 0 ]; then mode=root; else mode=unshare; fi
    args=(--mode="$mode" --variant="$variant" --components="$components"
          --architectures="$arch" --keyring="$keyring")
    [ -n "$include" ] && args+=(--include="$include")
    echo "compare-resolve: mmdebstrap ${args[*]} $suite $work/root ${sources[*]}" >&2
    start=$(date +%s)
    mmdebstrap "${args[@]}" "$suite" "$work/root" "${sources[@]}" > "$work/mmdebstrap.log" 2>&1 || {
        tail -n 20 "$work/mmdebstrap.log" >&2
        die "mmdebstrap failed (log above)"
    }
    echo "compare-resolve: mmdebstrap took $(( $(date +%s) - start )) s" >&2
    dpkg-query --admindir="$work/root/var/lib/dpkg" -W -f '${Package}=${Version}\n' \
        > "$work/mmdebstrap.list"
fi

# 3. The verdict.
LC_ALL=C sort -u "$work/ingot.list" -o "$work/ingot.list"
LC_ALL=C sort -u "$work/mmdebstrap.list" -o "$work/mmdebstrap.list"
if diff -u --label mmdebstrap --label ingot "$work/mmdebstrap.list" "$work/ingot.list"; then
    echo "compare-resolve: identical: $(wc -l < "$work/ingot.list") packages, names and versions" >&2
    exit 0
fi
echo "compare-resolve: DIFFERENT (lines with - only mmdebstrap installs, + only ingot plans)" >&2
exit 1
