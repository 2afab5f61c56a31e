#!/usr/bin/env bash
# The Debian package, end to end (as root, after scripts/e2e/run.sh, whose build user's cache
# it reuses): `make deb`; lintian (no errors); `apt-get install ./…deb`; as the ordinary build
# user, from a folder outside the checkout, `ingot build ubuntu-24.04` with the installed
# /usr/bin/ingot (same bytes as the suite's own build when the archive has not moved), then
# `ingot new` + `ingot build` of the new recipe; `man ingot-build` renders; the AppArmor profile
# parses with apparmor_parser -Q of AppArmor 4 (Ubuntu 24.04's, fetched and verified by the
# installed ingot: Debian 12's AppArmor 3.0 does not know the `userns` rule); purge leaves
# nothing behind. Fails loudly, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT_DIR=$PWD
MIRROR=${E2E_MIRROR:-http://archive.ubuntu.com/ubuntu}
BUILD_USER=${E2E_USER:-ingot-e2e}
WORK=${E2E_WORK:-/var/tmp/ingot-e2e}
PKG=$WORK/package

passed=0
fail() { echo "package: FAIL: $*" >&2; echo "package: $passed passed, 1 failed"; exit 1; }
ok() { passed=$((passed + 1)); echo "package: ok: $*"; }
as_user() { su "$BUILD_USER" -s /bin/sh -c "$*"; }

[ "$(id -u)" = 0 ] || fail "run as root (installs the package)"
id "$BUILD_USER" >/dev/null 2>&1 || fail "no build user $BUILD_USER: run scripts/e2e/run.sh first"
USER_HOME=$(getent passwd "$BUILD_USER" | cut -d: -f6)
CACHE=$USER_HOME/.cache/ingot
rm -rf "$PKG"; install -d -m 0755 -o "$BUILD_USER" -g "$BUILD_USER" "$PKG"

t0=$SECONDS
make -s deb >/dev/null || fail "make deb"
DEB=$(ls target/debian/ingot_*.deb) || fail "make deb wrote no target/debian/ingot_*.deb"
[ "$(echo "$DEB" | wc -l)" = 1 ] || fail "more than one package in target/debian: $DEB"
ok "make deb: $DEB ($(du -k "$DEB" | cut -f1) KiB, $((SECONDS - t0)) s)"

# lintian: no errors; warnings are listed (and justified in the README).
t0=$SECONDS
chmod a+r "$DEB"
as_user "cd /tmp && lintian --fail-on error --tag-display-limit 0 '$ROOT_DIR/$DEB'" > "$PKG/lintian.txt" 2>&1 \
  || { cat "$PKG/lintian.txt"; fail "lintian reports errors"; }
sed 's/^/  lintian: /' "$PKG/lintian.txt"
ok "lintian: no errors, $(grep -c '^W: ' "$PKG/lintian.txt" || true) warnings ($((SECONDS - t0)) s)"

DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --reinstall "./$DEB" >/dev/null \
  || fail "apt-get install ./$DEB"
for f in /usr/bin/ingot /etc/apparmor.d/ingot /usr/share/ingot/recipes/ubuntu-24.04/recipe.toml \
         /usr/share/ingot/keyrings/ubuntu-archive-keyring.gpg /usr/share/man/man1/ingot.1.gz \
         /usr/share/man/man1/ingot-build.1.gz /usr/share/bash-completion/completions/ingot \
         /usr/share/zsh/vendor-completions/_ingot /usr/share/fish/vendor_completions.d/ingot.fish; do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the installed package"
done
# Every recipe of the checkout is shipped, none named one by one.
for r in recipes/*/recipe.toml; do
  [ -f "/usr/share/ingot/$r" ] || fail "/usr/share/ingot/$r not installed"
done
ok "apt-get install: $(dpkg-query -W -f '${Package} ${Version}, Depends: ${Depends}' ingot)"

# The installed ingot, as the ordinary user, from a folder outside the checkout, by name.
[ "$(as_user 'command -v ingot')" = /usr/bin/ingot ] || fail "ingot on the user's PATH is not /usr/bin/ingot"
as_user "ingot doctor" || fail "ingot doctor (installed, as $BUILD_USER)"
as_user "cd '$PKG' && ingot recipes" | tee "$PKG/recipes.txt"
grep -q "^ubuntu-24.04 .*system .*/usr/share/ingot/recipes/ubuntu-24.04" "$PKG/recipes.txt" \
  || fail "ingot recipes does not list the system's ubuntu-24.04"
t0=$SECONDS
as_user "cd '$PKG' && ingot build ubuntu-24.04 --out out --mirror '$MIRROR'" > "$PKG/build.out" \
  || fail "ingot build ubuntu-24.04 (installed, as $BUILD_USER, in $PKG)"
IMAGE=$PKG/$(tail -n 1 "$PKG/build.out")
[ -f "$IMAGE" ] || fail "no image at $IMAGE"
/usr/bin/ingot verify "$IMAGE" >/dev/null || fail "ingot verify $IMAGE"
ok "ingot build ubuntu-24.04 with /usr/bin/ingot as $BUILD_USER: $IMAGE ($((SECONDS - t0)) s)"
# Same archive state (the manifests' InRelease hashes) as the suite's build: same bytes.
SUITE_IMAGE=$(ls "$WORK"/user-out/*-v1.tar.gz 2>/dev/null | head -n 1 || true)
if [ -n "$SUITE_IMAGE" ]; then
  releases() { python3 -c 'import json,sys; print(sorted(s["inrelease_sha256"] for s in json.load(open(sys.argv[1]))["suites"]))' "$1"; }
  if [ "$(releases "$SUITE_IMAGE.manifest.json")" = "$(releases "$IMAGE.manifest.json")" ]; then
    [ "$(sha256sum < "$SUITE_IMAGE")" = "$(sha256sum < "$IMAGE")" ] \
      || fail "the packaged recipe built other bytes than recipes/ubuntu-24.04 from the same archive state"
    ok "same SHA-256 as the suite's build of recipes/ubuntu-24.04: $(sha256sum < "$IMAGE" | cut -c1-16)…"
  else
    echo "package: note: the archive moved since the suite's build; bytes not compared"
  fi
fi

# ingot new + ingot build of the new recipe, as the ordinary user.
t0=$SECONDS
as_user "cd '$PKG' && ingot new my-image --from ubuntu-24.04" | tee "$PKG/new.txt" \
  || fail "ingot new my-image --from ubuntu-24.04"
[ "$(stat -c %U "$PKG/recipes/my-image/recipe.toml")" = "$BUILD_USER" ] || fail "the new recipe is not the user's"
if as_user "cd '$PKG' && ingot new my-image --from ubuntu-24.04" 2> "$PKG/new-again.err"; then
  fail "ingot new over an existing folder was accepted"
fi
grep -q "already exists" "$PKG/new-again.err" || fail "ingot new over an existing folder: $(cat "$PKG/new-again.err")"
as_user "cd '$PKG' && sed -i 's/^include = \\[/include = [\\n  \"less\",/' recipes/my-image/recipe.toml && grep -q '\"less\"' recipes/my-image/recipe.toml && ingot build my-image --out out --mirror '$MIRROR'" > "$PKG/build-new.out" \
  || fail "ingot build my-image (the new recipe)"
NEW_IMAGE=$PKG/$(tail -n 1 "$PKG/build-new.out")
case "$NEW_IMAGE" in */out/my-image-v1.tar.gz) ;; *) fail "unexpected artifact $NEW_IMAGE";; esac
tar tzf "$NEW_IMAGE" > "$PKG/new-image.list" || fail "tar tzf $NEW_IMAGE"
grep -qx 'usr/bin/less' "$PKG/new-image.list" || fail "the package added to the new recipe is not in $NEW_IMAGE"
ok "ingot new my-image + ingot build my-image (with less added) as $BUILD_USER ($((SECONDS - t0)) s)"

# The man page renders, without warnings.
MANWIDTH=80 man --warnings ingot-build > "$PKG/man.txt" 2> "$PKG/man.err" || fail "man ingot-build"
[ ! -s "$PKG/man.err" ] || { cat "$PKG/man.err"; fail "man ingot-build warns"; }
grep -q -- "--out" "$PKG/man.txt" || fail "man ingot-build does not document --out"
ok "man ingot-build renders ($(wc -l < "$PKG/man.txt") lines)"

# bash loads the completion (zsh and fish are not on this host: their files are checked above).
bash -c '. /usr/share/bash-completion/completions/ingot && complete -p ingot' | grep -q ' ingot$' \
  || fail "bash cannot load /usr/share/bash-completion/completions/ingot"
ok "bash completion loads"

# The AppArmor profile parses with AppArmor 4's parser (Ubuntu 24.04's): its .deb and libc6's,
# resolved and downloaded by the installed ingot from the signed archive, run through their
# own dynamic loader (no chroot, nothing installed).
AA=$PKG/apparmor; install -d -o "$BUILD_USER" "$AA/recipe"
cat > "$AA/recipe/recipe.toml" <<EOF
[image]
name = "apparmor-parser"

[source]
mirror = "$MIRROR"
suites = ["noble", "noble-updates", "noble-security"]
architecture = "amd64"
keyring = "/usr/share/ingot/keyrings/ubuntu-archive-keyring.gpg"

[packages]
variant = "essential"
include = ["apparmor"]
EOF
chmod -R a+rX "$AA"
as_user "ingot fetch '$AA/recipe' -q" >/dev/null || fail "ingot fetch of Ubuntu's apparmor"
as_user "ingot resolve '$AA/recipe' --json -q" > "$AA/plan.json" || fail "ingot resolve of Ubuntu's apparmor"
for p in apparmor libc6; do
  sha=$(python3 -c 'import json,sys; print([x["sha256"] for x in json.load(open(sys.argv[1]))["packages"] if x["name"] == sys.argv[2]][0])' "$AA/plan.json" "$p")
  dpkg-deb -x "$CACHE/sha256/$sha" "$AA/root" || fail "extracting $p ($sha)"
done
parser=$(find "$AA/root" -name apparmor_parser -type f | head -n 1)
loader=$(find "$AA/root" -name 'ld-linux-x86-64.so.2' \( -type f -o -type l \) | head -n 1)
[ -n "$parser" ] && [ -n "$loader" ] || fail "no apparmor_parser or dynamic loader in Ubuntu's packages"
aa_run() { "$loader" --library-path "$AA/root/usr/lib/x86_64-linux-gnu" "$parser" "$@"; }
# From stdin: a profile named by a path with a disable/ link beside it is skipped and passes.
aa_parse() { aa_run -Q -K --base "$AA/root/etc/apparmor.d" < "$1"; }
version=$(aa_run --version 2>/dev/null | head -n 1 || true)
aa_parse /etc/apparmor.d/ingot || fail "apparmor_parser -Q /etc/apparmor.d/ingot ($version)"
sed 's/userns,/usernz,/' /etc/apparmor.d/ingot > "$AA/broken"
if aa_parse "$AA/broken" 2>/dev/null; then fail "the parser accepted a broken profile: this check could not fail"; fi
ok "apparmor_parser -Q /etc/apparmor.d/ingot: parses ($version; a broken copy does not)"

# Debian 12's AppArmor 3.0 cannot read the profile: the postinst disabled it there.
# (From stdin: the parser skips, and passes, a profile named by a path that is disabled.)
if command -v apparmor_parser >/dev/null && ! apparmor_parser -Q -K < /etc/apparmor.d/ingot >/dev/null 2>&1; then
  [ -L /etc/apparmor.d/disable/ingot ] || fail "the host's parser cannot read the profile and the postinst did not disable it"
  ok "the postinst disabled the profile for this host's older AppArmor ($(apparmor_parser --version | head -n 1))"
fi

DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 purge -y -qq ingot >/dev/null || fail "apt-get purge ingot"
for f in /usr/bin/ingot /etc/apparmor.d/ingot /etc/apparmor.d/disable/ingot /etc/apparmor.d/local/ingot /usr/share/ingot; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f left behind by apt-get purge"
done
ok "apt-get purge ingot: nothing left behind"

echo "package: $passed passed, 0 failed"
