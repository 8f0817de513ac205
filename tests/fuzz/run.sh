#!/usr/bin/env bash
# Bounded fuzzing and fault injection, beyond what `cargo test` runs:
#   tests/fuzz/run.sh [CASES_PER_TARGET] [FAULT_RUNS]
# Runs every property target of tests/it/fuzz.rs with CASES_PER_TARGET random
# inputs (default 200000) and tests/it/faults.rs with FAULT_RUNS faulty pulls
# (default 400), each under a time limit, and prints what ran. A failure
# prints proptest's minimal failing input and exits non-zero.
set -euo pipefail
cases=${1:-200000}; runs=${2:-400}
cd "$(dirname "$0")/../.."
cargo build --release --locked --tests >/dev/null 2>&1 || cargo build --release --locked --tests
start=$(date +%s)
PROPTEST_CASES=$cases timeout 1200 cargo test --release --locked --test it -- fuzz:: --test-threads 2 2>&1 | grep -E '^test |test result'
echo "fuzz: $cases cases per property target in $(( $(date +%s) - start )) s"
start=$(date +%s)
LLMCTL_FAULT_RUNS=$runs timeout 1200 cargo test --release --locked --test it -- faults:: --nocapture 2>&1 | grep -E 'faulty pulls|test result'
echo "faults: $runs runs in $(( $(date +%s) - start )) s"
