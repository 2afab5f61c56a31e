#!/bin/sh
# Build the reference golden image with mmdebstrap instead of ingot: same archive, suites,
# variant and include list as recipes/ubuntu-24.04/recipe.toml, same golden provision.sh
# and cleanup.sh (recipes/golden) (through --customize-hook), packed like ingot's exporter (no ./dev device nodes,
# numeric owners, xattrs). It proves the recipe scripts and feeds lxc-boot-test.sh until
# `ingot build` is ready.
#
# usage (as root): scripts/e2e/make-reference-image.sh OUT.tar.gz
set -eu

out=${1:?usage: $0 OUT.tar.gz}
here=$(cd "$(dirname "$0")/../.." && pwd)
recipe=$here/recipes/ubuntu-24.04
mirror=http://archive.ubuntu.com/ubuntu

# The include list, read from recipe.toml (one quoted name per line inside `include = [...]`).
includes=$(sed -n '/^include = \[/,/^\]/p' "$recipe/recipe.toml" | grep -o '"[^"]*"' | tr -d '"' |
    tr '\n' ',' | sed 's/,$//')
[ -n "$includes" ] || { echo "no include list in $recipe/recipe.toml" >&2; exit 2; }

work=$(mktemp -d /var/tmp/ingot-ref.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# apt is Priority: important on Ubuntu, so minbase does not bring it (see DESIGN.md).
mmdebstrap --variant=minbase --components=main --architectures=amd64 \
    --keyring="$here/keyrings/ubuntu-archive-keyring.gpg" \
    --include="apt,$includes" \
    --customize-hook="chroot \"\$1\" env INGOT_SUITE_MIRRORS= /bin/sh -s < '$here/recipes/golden/provision.sh'" \
    --customize-hook="chroot \"\$1\" /bin/sh -s < '$here/recipes/golden/cleanup.sh'" \
    noble "$work/rootfs" \
    "deb $mirror noble main" "deb $mirror noble-updates main" "deb $mirror noble-security main"

# ingot's exporter ships dev/ empty (LXC and Proxmox provide devices) and names at the root.
find "$work/rootfs/dev" -mindepth 1 -delete
cd "$work/rootfs"
# shellcheck disable=SC2035
tar --numeric-owner --sort=name --xattrs --xattrs-include='*' \
    -czf "$work/image.tar.gz" $(ls -A)
mv "$work/image.tar.gz" "$out"
echo "$out"
