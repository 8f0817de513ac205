#!/usr/bin/env bash
# Bounded fuzzing and fault injection, beyond what `cargo test` runs:
#   tests/fuzz/run.sh [CASES_PER_TARGET] [FAULT_RUNS] [HOSTILE_MODELS]
# Runs every property target of tests/it/fuzz.rs with CASES_PER_TARGET random
# inputs (default 200000), tests/it/faults.rs with FAULT_RUNS faulty pulls and
# rm/pull rounds (default 400), and tests/it/hostile_models.rs with
# HOSTILE_MODELS random tiny models imported and run (default 1000), each
# under a time limit, and prints what ran. A failure prints the failing input
# (proptest's minimal one, or the model's seed and config) and exits non-zero.
set -euo pipefail
cases=${1:-200000}; runs=${2:-400}; models=${3:-1000}
cd "$(dirname "$0")/../.."
cargo build --release --locked --tests >/dev/null 2>&1 || cargo build --release --locked --tests
start=$(date +%s)
PROPTEST_CASES=$cases timeout 1200 cargo test --release --locked --test it -- fuzz:: --test-threads 2 2>&1 | grep -E '^test |test result'
echo "fuzz: $cases cases per property target in $(( $(date +%s) - start )) s"
start=$(date +%s)
LLMCTL_FAULT_RUNS=$runs timeout 1200 cargo test --release --locked --test it -- faults:: --nocapture 2>&1 | grep -E 'faulty pulls|test result'
echo "faults: $runs runs in $(( $(date +%s) - start )) s"
start=$(date +%s)
LLMCTL_FUZZ_MODELS=$models timeout 1800 cargo test --release --locked --test it -- hostile_models:: --nocapture 2>&1 | grep -E 'hostile models|test result|^ +[0-9]+  '
echo "hostile models: $models in $(( $(date +%s) - start )) s"
