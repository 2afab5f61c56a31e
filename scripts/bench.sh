#!/usr/bin/env bash
# Benchmarks (never timed tests): the resolver on all of noble main+universe, and a full build
# against mmdebstrap on the same recipe and mirror, reported as ratios. Needs root for the
# mmdebstrap run (mode=root) and GNU time (package `time`) for peak memory.
# Usage: scripts/bench.sh [RECIPE] [MIRROR]
set -euo pipefail
cd "$(dirname "$0")/.."
INGOT=${INGOT:-target/release/ingot}
RECIPE=${1:-recipes/ubuntu-24.04}
MIRROR=${2:-${INGOT_MIRROR:-http://archive.ubuntu.com/ubuntu}}
WORK=$(mktemp -d /var/tmp/ingot-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -x "$INGOT" ] || cargo build --release --locked

# 1. Resolver on main + universe (~80 000 stanzas).
cp -a keyrings "$WORK/" && mkdir -p "$WORK/recipes" && cp -a "$RECIPE" "$WORK/recipes/r"
sed -i 's/^components = .*/components = ["main", "universe"]/' "$WORK/recipes/r/recipe.toml"
"$INGOT" -q resolve "$WORK/recipes/r" --mirror "$MIRROR" --json > "$WORK/resolve.json"
python3 - "$WORK/resolve.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"resolver: {d['stanzas']} stanzas (noble main+universe) -> {len(d['packages'])} packages in {d['resolve_ms']} ms")
PY

# 2. Full build, warm cache, ingot vs mmdebstrap on the same recipe and mirror.
if [ "$(id -u)" = 0 ] && command -v mmdebstrap >/dev/null; then
  TIME=$(command -v /usr/bin/time || true)
  run() { if [ -n "$TIME" ]; then "$TIME" -f '%e s %M KiB' "$@"; else "$@"; fi; }
  # Cold: an empty cache, so ingot downloads as mmdebstrap does (the fair comparison).
  t0=$(date +%s.%N)
  run "$INGOT" -q build "$RECIPE" --mirror "$MIRROR" --cache-dir "$WORK/cold-cache" \
    --out "$WORK/cold" --next 2> "$WORK/cold.time" >/dev/null
  t1=$(date +%s.%N)
  cold_s=$(python3 -c "print(round($t1-$t0,1))")
  # Warm: the cache already holds every .deb.
  "$INGOT" -q fetch "$RECIPE" --mirror "$MIRROR" >/dev/null
  t0=$(date +%s.%N)
  run "$INGOT" -q build "$RECIPE" --mirror "$MIRROR" --out "$WORK/out" --next 2> "$WORK/ingot.time" >/dev/null
  t1=$(date +%s.%N)
  scripts/e2e/mmdebstrap-compare.sh "$RECIPE" "$MIRROR" "$(ls "$WORK"/out/*.tar.gz)" "$WORK/mm" > "$WORK/mm.out" 2>&1 || true
  mm=$(grep -o 'mmdebstrap: [0-9]* s' "$WORK/mm.out" | grep -o '[0-9]*' || echo 0)
  ingot_s=$(python3 -c "print(round($t1-$t0,1))")
  echo "build: ingot cold cache ${cold_s} s ($(tail -1 "$WORK/cold.time")), warm cache ${ingot_s} s ($(tail -1 "$WORK/ingot.time")); mmdebstrap ${mm} s (downloads included)"
  if [ "$mm" != 0 ]; then
    python3 -c "print(f'build ratio ingot/mmdebstrap: cold {$cold_s/$mm:.2f}, warm {$ingot_s/$mm:.2f} (lower is faster)')"
  fi
else
  echo "build: skipped (needs root and mmdebstrap for the reference run)"
fi
