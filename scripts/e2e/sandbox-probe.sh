#!/usr/bin/env bash
# The sandbox probes of tests/sandbox_escape.rs against the real golden image, as the ordinary
# build user and as root: a recipe copy whose provision runs, after the golden provision.sh,
# the static probe (compiled from tests/support/sandbox_probe.c, carried inside the script
# since nothing on the host is reachable from the image) plus a TCP connection to the archive
# by address. Then checks on the host: the secret file neither read nor written, no connection
# to the loopback listener.
#
# Usage: sandbox-probe.sh INGOT RECIPE_DIR WORK BUILD_USER MIRROR ROOT_CACHE
# (-v: the probe's lines are script output, which only the build log and -v show)
set -euo pipefail
INGOT=$1 RECIPE=$2 WORK=$3 BUILD_USER=$4 MIRROR=$5 CACHE=$6
# The binary as the build user runs it (run.sh installs it there).
USER_INGOT=${USER_INGOT:-ingot-e2e}
SRC=$(cd "$(dirname "$0")/../.." && pwd)

S=$WORK/sandbox
rm -rf "$S"; mkdir -p "$S/host-files"
chmod 0755 "$S"; chmod 0777 "$S/host-files"
printf 'host-secret: the build host'"'"'s own file\n' > "$S/host-files/secret"
chmod 0644 "$S/host-files/secret"
cc -static -O1 -o "$S/sandbox-probe" "$SRC/tests/support/sandbox_probe.c"

# A loopback listener on the host that records any connection.
PORT_FILE=$S/port; HITS=$S/hits; : > "$HITS"
python3 - "$PORT_FILE" "$HITS" <<'PY' &
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, a = s.accept(); open(sys.argv[2], "a").write(f"connection from {a}\n"); c.close()
PY
LISTENER=$!
trap 'kill $LISTENER 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
PORT=$(cat "$PORT_FILE")
ARCHIVE_HOST=$(printf '%s\n' "$MIRROR" | sed -E 's#^[a-z]+://([^/:]+).*#\1#')
ARCHIVE_IP=$(getent ahostsv4 "$ARCHIVE_HOST" | awk 'NR==1{print $1}')
[ -n "$ARCHIVE_IP" ] || { echo "cannot resolve $ARCHIVE_HOST on the host"; exit 1; }

# The recipe: the golden one (with the policy it extends), the probe as its own provision
# script, run after the golden policy's.
R=$S/recipes/sandbox-probe
mkdir -p "$S/recipes" && cp -a "$RECIPE" "$R"
cp -a "$(dirname "$RECIPE")/golden" "$S/recipes/" 2>/dev/null || true
cp -a "$(dirname "$RECIPE")/../keyrings" "$S/" 2>/dev/null || true
grep -q '^\[provision\]' "$R/recipe.toml" && { echo "the recipe has a [provision] of its own: extend the probe's set-up"; exit 1; }
printf '\n[provision]\nscripts = ["probe.sh"]\n' >> "$R/recipe.toml"
probe_script() { # probe_script CHECKS...: the script's head, the probe carried inside it
  echo '#!/bin/sh'
  echo 'set -u'
  echo 'base64 -d > /tmp/sandbox-probe <<"B64"'
  base64 "$S/sandbox-probe"
  echo 'B64'
  echo 'chmod 0755 /tmp/sandbox-probe'
  echo "/tmp/sandbox-probe '$S/host-files' $PORT $* >&2; rc=\$?"
  echo 'rm -f /tmp/sandbox-probe'
}
{
  probe_script all
  # The archive by address: no network namespace route, no resolv.conf.
  echo "if python3 -c 'import socket; socket.create_connection((\"$ARCHIVE_IP\", 80), timeout=5)' 2>/dev/null; then echo 'ESCAPED tcp to the archive $ARCHIVE_IP' >&2; rc=1; else echo 'refused tcp to the archive $ARCHIVE_IP' >&2; fi"
  echo "if getent hosts $ARCHIVE_HOST >/dev/null 2>&1; then echo 'ESCAPED name resolution of $ARCHIVE_HOST' >&2; rc=1; else echo 'refused name resolution' >&2; fi"
  echo 'exit $rc'
} > "$R/probe.sh"
chmod -R a+rX "$S"

check_host() { # check_host WHO LOG
  local names; names=$(ls -A "$S/host-files")
  [ "$names" = secret ] || { echo "$1: something was written next to the host's secret: $names"; return 1; }
  grep -q "^host-secret" "$S/host-files/secret" || { echo "$1: the host's secret changed"; return 1; }
  [ ! -s "$HITS" ] || { echo "$1: the loopback listener got: $(cat "$HITS")"; return 1; }
  grep -q 'refused /proc/1/root' "$2" || { echo "$1: the probe did not run"; return 1; }
  if grep -q 'ESCAPED' "$2"; then grep ESCAPED "$2"; return 1; fi
  echo "$1: $(grep -c 'refused ' "$2") ways out tried, each refused"
}

install -d -o "$BUILD_USER" -g "$BUILD_USER" "$S/user-out"
su "$BUILD_USER" -s /bin/sh -c "cd /tmp && $USER_INGOT build '$R' --out '$S/user-out' --mirror '$MIRROR' -v" \
  > "$S/user.log" 2>&1 || { tail -30 "$S/user.log"; echo "the build as $BUILD_USER failed"; exit 1; }
check_host "$BUILD_USER" "$S/user.log"
"$INGOT" build "$R" --out "$S/root-out" --mirror "$MIRROR" --cache-dir "$CACHE" -v > "$S/root.log" 2>&1 \
  || { tail -30 "$S/root.log"; echo "the build as root failed"; exit 1; }
check_host root "$S/root.log"

# The same with `[provision] network = true` (issue 17): the provision script downloads the
# real archive's InRelease by name (DNS and HTTP through pasta), while the host's loopback
# listener (directly, and through the stacks' gateway and DNS addresses) and an abstract unix
# socket of the host stay out of reach.
ABSTRACT=ingot-e2e-abstract-$$
ABSTRACT_HITS=$S/abstract-hits; : > "$ABSTRACT_HITS"
python3 - "$ABSTRACT" "$ABSTRACT_HITS" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind("\0" + sys.argv[1]); s.listen(8)
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("connection\n"); c.close()
PY
ABSTRACT_LISTENER=$!
trap 'kill $LISTENER $ABSTRACT_LISTENER 2>/dev/null || true' EXIT
SUITE=$(sed -n 's/^suites *= *\["\([^"]*\)".*/\1/p' "$R/recipe.toml" | head -1)
[ -n "$SUITE" ] || { echo "no suite in $R/recipe.toml"; exit 1; }
N=$S/recipes/network-probe
cp -a "$R" "$N"
sed -i 's/^scripts = \["probe.sh"\]$/scripts = ["probe.sh"]\nnetwork = true/' "$N/recipe.toml"
grep -q '^network = true' "$N/recipe.toml" || { echo "could not set network = true in $N/recipe.toml"; exit 1; }
{
  probe_script tcp "abstract:$ABSTRACT" "noget:10.0.2.2:$PORT" "noget:10.0.2.3:$PORT"
  echo "if python3 -c 'import urllib.request,sys; b=urllib.request.urlopen(\"$MIRROR/dists/$SUITE/InRelease\", timeout=30).read(); sys.exit(0 if b\"BEGIN PGP SIGNED MESSAGE\" in b else 1)' >&2; then echo 'downloaded $MIRROR/dists/$SUITE/InRelease through the provision network' >&2; else echo 'FAILED to download the archive with network = true' >&2; rc=1; fi"
  echo 'exit $rc'
} > "$N/probe.sh"
chmod -R a+rX "$S"
check_network() { # check_network WHO LOG
  [ ! -s "$HITS" ] || { echo "$1 (network = true): the loopback listener got: $(cat "$HITS")"; return 1; }
  [ ! -s "$ABSTRACT_HITS" ] || { echo "$1 (network = true): the host's abstract socket got a connection"; return 1; }
  grep -q 'provision network: ' "$2" || { echo "$1: the build log does not say which network stack served"; return 1; }
  grep -q 'downloaded .* through the provision network' "$2" || { grep -E 'FAILED|ESCAPED' "$2"; echo "$1: no download with network = true"; return 1; }
  grep -q "refused connection to the host's abstract socket" "$2" || { echo "$1: the abstract socket probe did not run"; return 1; }
  if grep -q 'ESCAPED' "$2"; then grep ESCAPED "$2"; return 1; fi
  echo "$1 (network = true): downloaded the archive's InRelease; host loopback and abstract socket out of reach"
}
install -d -o "$BUILD_USER" -g "$BUILD_USER" "$S/user-net-out"
su "$BUILD_USER" -s /bin/sh -c "cd /tmp && $USER_INGOT build '$N' --out '$S/user-net-out' --mirror '$MIRROR' -v" \
  > "$S/user-net.log" 2>&1 || { tail -30 "$S/user-net.log"; echo "the network = true build as $BUILD_USER failed"; exit 1; }
check_network "$BUILD_USER" "$S/user-net.log"
"$INGOT" build "$N" --out "$S/root-net-out" --mirror "$MIRROR" --cache-dir "$CACHE" -v > "$S/root-net.log" 2>&1 \
  || { tail -30 "$S/root-net.log"; echo "the network = true build as root failed"; exit 1; }
check_network root "$S/root-net.log"
