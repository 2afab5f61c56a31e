#!/usr/bin/env bash
# Benchmarks (never timed tests). Run as root; the builds run as an ordinary user.
#
# 1. The resolver on all of noble main+universe.
# 2. The recipe built by mmdebstrap --mode=unshare (same suites, variant, packages, and the
#    golden policy's provision.sh as --customize-hook, .tar.gz out; not cleanup.sh, which empties the
#    /tmp and apt lists mmdebstrap's own cleanup still needs) and by ingot
#    (.tar.gz), both as the same ordinary user, alternating, ROUNDS rounds, in three ingot
#    scenarios: cold (empty cache), warm-debs (the .debs cached, the base cache cleared),
#    warm-base (everything cached). Medians of wall time, user+sys CPU and peak RSS (GNU time),
#    ratios to mmdebstrap, and ingot's per-stage medians from its manifests.
#
# 3. (LEVERS=1) Each of ingot's levers turned off on its own, warm .debs without the base
#    cache, alternating with the build that has them all: the staging tmpfs (--staging
#    disk), --force-unsafe-io (safe-io), deferred triggers (triggers-each-run), skipping
#    the SSH host keys the contract deletes (host-keys) and registering the extracted
#    Essential set instead of having dpkg unpack it again (double-unpack).
#
# 4. (BASELINE=PATH) Another ingot binary (an earlier commit's, say) built in the same rounds,
#    alternating with this one: warm .debs and warm base, its own base cache entries (the key
#    holds the binary's hash), and its ratio to this binary's same scenario.
#
# mmdebstrap runs twice a round: as it comes (its temporary tree in $TMPDIR, /tmp, here on
# disk) and with TMPDIR on a tmpfs (/dev/shm), the like-for-like row for ingot's tmpfs staging.
#
# Usage: scripts/bench.sh [RECIPE] [MIRROR]
# Environment: BENCH_USER (default benchuser; created with a subordinate id range if missing,
# BENCH_SUBIDS default 600000-665535), ROUNDS (default 3), INGOT (default target/release/ingot),
# LEVERS (default 0).
# Needs: mmdebstrap, GNU time (package `time`), python3, uidmap.
set -euo pipefail
cd "$(dirname "$0")/.."
INGOT=${INGOT:-target/release/ingot}
RECIPE=${1:-recipes/ubuntu-24.04}
MIRROR=${2:-${INGOT_MIRROR:-http://archive.ubuntu.com/ubuntu}}
BENCH_USER=${BENCH_USER:-benchuser}
BENCH_SUBIDS=${BENCH_SUBIDS:-600000-665535}
ROUNDS=${ROUNDS:-3}
LEVERS=${LEVERS:-0}
BASELINE=${BASELINE:-}

die() { echo "bench: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (the builds themselves run as $BENCH_USER)"
for tool in mmdebstrap /usr/bin/time python3 newuidmap; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$INGOT" ] || cargo build --release --locked
if ! id "$BENCH_USER" >/dev/null 2>&1; then
  useradd -m "$BENCH_USER"
  usermod --add-subuids "$BENCH_SUBIDS" --add-subgids "$BENCH_SUBIDS" "$BENCH_USER"
fi
HOME_DIR=$(getent passwd "$BENCH_USER" | cut -d: -f6)
WORK=$(mktemp -d "$HOME_DIR/ingot-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The user cannot read the source tree: give it copies.
cp "$INGOT" "$WORK/ingot"
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
  cp "$BASELINE" "$WORK/ingot-baseline"
fi
cp -a keyrings "$WORK/"
mkdir -p "$WORK/recipes" && cp -a "$RECIPE" "$WORK/recipes/r"
# The golden policy the recipe extends (recipes/golden), beside it as in the repository.
cp -a "$(dirname "$RECIPE")/golden" "$WORK/recipes/"
chown -R "$BENCH_USER:" "$WORK"
chmod 755 "$WORK"
as_user() { su -s /bin/sh "$BENCH_USER" -c "cd '$WORK' && PATH=/usr/local/bin:/usr/bin:/bin && $*"; }

# 1. Resolver on main + universe.
cp -a "$WORK/recipes/r" "$WORK/recipes/universe"
sed -i 's/^components = .*/components = ["main", "universe"]/' "$WORK/recipes/universe/recipe.toml"
chown -R "$BENCH_USER:" "$WORK/recipes/universe"
as_user "./ingot -q resolve recipes/universe --mirror '$MIRROR' --cache-dir cache-resolve --json" > "$WORK/resolve.json"
python3 - "$WORK/resolve.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"resolver: {d['stanzas']} stanzas (noble main+universe) -> {len(d['packages'])} packages in {d['resolve_ms']} ms")
PY

# 2. mmdebstrap's command line, read from the recipe like scripts/e2e/make-reference-image.sh.
toml=$WORK/recipes/r/recipe.toml
field() { # KEY under [source] or [packages], lists joined with commas
  python3 - "$toml" "$1" <<'PY'
import sys, tomllib
d = tomllib.load(open(sys.argv[1], 'rb'))
v = {**d.get('packages', {}), **d.get('source', {})}.get(sys.argv[2], '')
print(','.join(v) if isinstance(v, list) else v)
PY
}
suites=$(field suites | tr , ' ')
components=$(field components); components=${components:-main}
arch=$(field architecture)
variant=$(field variant)
includes=$(field include)
# apt verifies signatures as its sandbox user (a subordinate id in unshare mode): the keyring
# must be readable by anyone, outside the user's private work directory.
KEYS=$(mktemp -d /tmp/ingot-bench-keys.XXXXXX)
trap 'rm -rf "$WORK" "$KEYS"' EXIT
cp keyrings/ubuntu-archive-keyring.gpg "$KEYS/"
chmod 755 "$KEYS" && chmod 644 "$KEYS/ubuntu-archive-keyring.gpg"
first_suite=${suites%% *}
sources=()
for s in $suites; do sources+=("deb $MIRROR $s ${components//,/ }"); done
mm_args=(--mode=unshare "--variant=$variant" "--components=$components" "--architectures=$arch"
  "--keyring=$KEYS/ubuntu-archive-keyring.gpg" "--include=apt,$includes"
  "--customize-hook=chroot \"\$1\" env INGOT_SUITE_MIRRORS= /bin/sh -s < '$WORK/recipes/golden/provision.sh'"
  "$first_suite" "$WORK/mm.tar.gz" "${sources[@]}")
printf '%q ' mmdebstrap "${mm_args[@]}" > "$WORK/mm.sh"
chown "$BENCH_USER:" "$WORK/mm.sh"

timed() { # NAME ROUND COMMAND…: one run as the user, GNU time's figures to results.tsv
  local name=$1 round=$2; shift 2
  # %x is the command's exit status.
  rm -f "$WORK/time.out"
  as_user "/usr/bin/time -o time.out -f '%e %U %S %M %x' $* 2>&1 | tail -n 40 > run.log" || true
  read -r wall user sys rss status < "$WORK/time.out" || status=missing
  if [ "$status" != 0 ]; then
    cat "$WORK/run.log" >&2
    die "$name (round $round) failed (status: $status)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$wall" "$user" "$sys" "$rss" >> "$WORK/results.tsv"
}
ingot_build() { # NAME ROUND [ENV/OPTIONS…]: a build into a fresh out dir, its manifest kept
  local name=$1 round=$2; shift 2
  local envs=() opts=()
  for a in "$@"; do case $a in *=*) envs+=("$a");; *) opts+=("$a");; esac; done
  rm -rf "$WORK/out"
  timed "$name" "$round" "env ${envs[*]} ${BIN:-./ingot} -q build recipes/r --mirror '$MIRROR' --cache-dir cache --out out --next ${opts[*]}"
  cp "$WORK"/out/*.manifest.json "$WORK/manifest-$name-$round.json"
}
baseline_pair() { # ROUND: the BASELINE binary's warm .debs and warm base builds
  rm -rf "$WORK/cache/base"
  BIN=./ingot-baseline ingot_build baseline-warm-debs "$1"
  BIN=./ingot-baseline ingot_build baseline-warm-base "$1"
}
mkdir -p /dev/shm/ingot-bench-mm && chown "$BENCH_USER:" /dev/shm/ingot-bench-mm
trap 'rm -rf "$WORK" "$KEYS" /dev/shm/ingot-bench-mm' EXIT

: > "$WORK/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
  rm -f "$WORK/mm.tar.gz"
  timed mmdebstrap "$round" "bash mm.sh"
  rm -f "$WORK/mm.tar.gz"
  timed mmdebstrap-tmpfs "$round" "env TMPDIR=/dev/shm/ingot-bench-mm bash mm.sh"
  rm -rf "$WORK/cache"
  ingot_build cold "$round"
  # With a BASELINE the two binaries take turns going first (odd rounds: this one).
  if [ -n "$BASELINE" ] && [ $((round % 2)) = 0 ]; then baseline_pair "$round"; fi
  rm -rf "$WORK/cache/base"
  ingot_build warm-debs "$round"
  ingot_build warm-base "$round"
  if [ -n "$BASELINE" ] && [ $((round % 2)) = 1 ]; then baseline_pair "$round"; fi
  if [ "$LEVERS" = 1 ]; then
    ingot_build all-levers "$round" --no-base-cache
    ingot_build no-tmpfs "$round" --no-base-cache --staging disk
    ingot_build no-unsafe-io "$round" --no-base-cache INGOT_BENCH_DPKG=safe-io
    ingot_build no-deferred-triggers "$round" --no-base-cache INGOT_BENCH_DPKG=triggers-each-run
    ingot_build no-host-key-skip "$round" --no-base-cache INGOT_BENCH_DPKG=host-keys
    ingot_build no-single-unpack "$round" --no-base-cache INGOT_BENCH_DPKG=double-unpack
  fi
  echo "bench: round $round of $ROUNDS done" >&2
done

python3 - "$WORK" <<'PY'
import json, glob, os, statistics as st, sys
work = sys.argv[1]
rows = [l.split('\t') for l in open(os.path.join(work, 'results.tsv')).read().splitlines()]
names = ['mmdebstrap', 'mmdebstrap-tmpfs', 'cold', 'warm-debs', 'warm-base',
         'baseline-warm-debs', 'baseline-warm-base',
         'all-levers', 'no-tmpfs', 'no-unsafe-io', 'no-deferred-triggers', 'no-host-key-skip',
         'no-single-unpack']
names = [n for n in names if any(x[0] == n for x in rows)]
med = {}
for n in names:
    r = [x for x in rows if x[0] == n]
    med[n] = (st.median(float(x[2]) for x in r),
              st.median(float(x[3]) + float(x[4]) for x in r),
              st.median(int(x[5]) for x in r) / 1024, len(r))
mm = med['mmdebstrap']
mt = med.get('mmdebstrap-tmpfs', mm)
print(f"{'build':<22} {'wall s':>7} {'cpu s':>7} {'peak MB':>8} {'wall/mm':>8} {'cpu/mm':>7} {'wall/mm-tmpfs':>14}  (medians of {mm[3]} rounds)")
for n in names:
    w, c, m, _ = med[n]
    print(f"{n:<22} {w:7.1f} {c:7.1f} {m:8.1f} {w/mm[0]:8.2f} {c/mm[1]:7.2f} {w/mt[0]:14.2f}")
if 'all-levers' in med:
    base = med['all-levers'][0]
    print("levers (warm .debs, no base cache): what turning each one off costs")
    for n in names[names.index('all-levers') + 1:]:
        print(f"  {n:<22} {med[n][0]:6.1f} s  (+{med[n][0] - base:.1f} s over all levers on, {base:.1f} s)")
for n in ('warm-debs', 'warm-base'):
    if f'baseline-{n}' in med:
        b = med[f'baseline-{n}']
        print(f"this binary / BASELINE, {n}: wall {med[n][0] / b[0]:.3f}, cpu {med[n][1] / b[1]:.3f}, "
              f"peak RSS {med[n][2] / b[2]:.3f}")
print("ingot per-stage medians (s), from the manifests:")
for n in [n for n in names if not n.startswith('mmdebstrap')]:
    per = {}
    order = []
    for f in sorted(glob.glob(os.path.join(work, f'manifest-{n}-*.json'))):
        for s in json.load(open(f)).get('stages', []):
            if s['name'] not in per:
                order.append(s['name'])
            per.setdefault(s['name'], []).append(s['seconds'])
    print(f"  {n:<10} " + "  ".join(f"{k} {st.median(per[k]):.2f}" for k in order))
PY
