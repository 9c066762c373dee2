#!/usr/bin/env bash
# The full test suite: installs the tools the tests need, then format, lint
# and every test. This is what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
# Tests that need an external tool fail, never skip, when it is missing.
export CI="${CI:-true}"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# Advisories are not checked here: the RustSec database is fetched from
# GitHub, which this CI cannot reach (docs/security.md).
cargo deny --config scripts/deny.toml check bans licenses sources
cargo test --locked --no-fail-fast
# A short bounded pass over every fuzz target (docs/fuzzing.md): about 10 s
# each after a build of tests/fuzz (some 10 minutes cold on 2 cores).
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash scripts/fuzz.sh
