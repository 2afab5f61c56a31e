#!/usr/bin/env bash
# Fuzz ingot's parsers of hostile input for a bounded time: every target of tests/fuzz_props.rs
# (Release/InRelease, Packages, Debian versions, .deb reader and extraction, tar paths, sshd
# configuration), each for SECONDS (default 60), one after the other, mutating the seed corpus
# in tests/fuzz-corpus/. Exits 1 on the first crash, which the output shows with its input and
# RNG seed. No fuzzing engine needed (stable Rust, proptest).
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 300        # 5 min per target
set -euo pipefail
seconds="${1:-${INGOT_FUZZ_SECONDS:-60}}"
case "$seconds" in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
cargo test --quiet --test fuzz_props --no-run
targets=(fuzz_release_parser fuzz_packages_parser fuzz_version_comparator_is_a_total_order
  fuzz_deb_reader_and_extraction_stay_inside_the_root fuzz_tar_path_normaliser
  fuzz_sshd_config_evaluator)
for t in "${targets[@]}"; do
  # A hang is a finding too: the budget is checked between cases, so one case that never ends
  # would otherwise hold CI until its own limit.
  if ! INGOT_FUZZ_SECONDS="$seconds" timeout --kill-after=10 $((seconds * 2 + 120)) \
      cargo test --quiet --test fuzz_props -- --exact "$t" \
      --nocapture >"${TMPDIR:-/tmp}/ingot-fuzz-$t.log" 2>&1; then
    grep -E '^fuzz |panicked|input:' "${TMPDIR:-/tmp}/ingot-fuzz-$t.log" >&2 || true
    echo "fuzz.sh: $t crashed or hung (full log: ${TMPDIR:-/tmp}/ingot-fuzz-$t.log)" >&2
    exit 1
  fi
  grep -E '^fuzz ' "${TMPDIR:-/tmp}/ingot-fuzz-$t.log"
done
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no crash"
