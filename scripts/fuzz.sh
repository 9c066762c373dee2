#!/usr/bin/env bash
# Builds every cargo-fuzz target (tests/fuzz, libFuzzer) and runs each for a
# bounded time: FUZZ_SECONDS per target (default 30), FUZZ_TARGETS to pick
# some (space-separated; default: all). Prints executions and coverage per
# target and exits non-zero if any target crashed, timed out or ran out of
# memory; the input that did it is in tests/fuzz/artifacts/<target>/ and
# `cargo fuzz run --fuzz-dir tests/fuzz <target> <file>` replays it.
#
# Each target starts from its committed seeds (tests/fuzz/seeds/<target>)
# and its local corpus (tests/fuzz/corpus/<target>, grown by earlier runs,
# not committed). cargo-fuzz needs the nightly-only -Z flags, which this
# stable toolchain accepts with RUSTC_BOOTSTRAP=1. Needs cargo-fuzz in
# .tools/bin (scripts/install-test-tools.sh installs it). docs/fuzzing.md
# says what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
FUZZ_DIR=tests/fuzz
SECONDS_EACH="${FUZZ_SECONDS:-30}"
SANITIZER="${FUZZ_SANITIZER:-address}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "error: cargo-fuzz is missing: run scripts/install-test-tools.sh" >&2
  exit 1
fi

all=$(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
targets="${FUZZ_TARGETS:-$all}"
echo "== building fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for t in $targets; do
  mkdir -p "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/seeds/$t"
  echo "== $t: ${SECONDS_EACH}s"
  set +e
  cargo fuzz run --fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER" "$t" \
    "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$logs/$t" 2>&1
  status=$?
  set -e
  # The last status line: `#N DONE cov: C ft: F corp: K/S ...`.
  last=$(grep -E '^#[0-9]+' "$logs/$t" | tail -1 || true)
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logs/$t" | grep -oE '[0-9]+$' || echo "?")
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$logs/$t" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  note=$(grep -E '^review_reader: the reader read' "$logs/$t" | tail -1 | sed 's/^review_reader: //' || true)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed+=("$t")
    echo "---- $t failed; the end of its log:" >&2
    tail -40 "$logs/$t" >&2
  fi
  summary+=("$(printf '%-14s %6ss %12s execs %8s/s  cov %6s  ft %7s  corpus %6s  %s%s' \
    "$t" "$SECONDS_EACH" "$execs" "$rate" "$cov" "$ft" "$corp" "$result" "${note:+  ($note)}")")
  echo "${summary[-1]}"
done

echo "== fuzzing summary (${SECONDS_EACH}s each, sanitizer $SANITIZER)"
printf '%s\n' "${summary[@]}"
n=$(wc -w <<<"$targets")
echo "fuzz: $((n - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found a problem in: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/)" >&2
  exit 1
fi
