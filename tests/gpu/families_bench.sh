#!/usr/bin/env bash
# `llmctl bench` on real-shaped models of the newer families, run on a GPU
# machine over a built binary (nothing is compiled there):
#   tests/gpu/families_bench.sh BINARY SHAPE...
# SHAPE is one of make_model.py's (gemma3-4b, qwen3-moe, …). Each is made
# with random bf16 weights (kept in $WORK), pulled, and benched with every
# KV-cache scheme at BENCH_CTX (default 4096,32768) with BENCH_GEN tokens
# (default 64); prints one table per shape: tokens/s, decode step, NVML peak
# VRAM, the cache's bytes. Then the peer on the same weights and card:
# transformers (tests/gpu/peer_transformers.py) at each of PEER_CTX (default
# 4096), each given at most PEER_TIMEOUT seconds (default 240).
set -euo pipefail
bin=$(realpath "$1"); shift
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
for name in "$@"; do
    [ -f "$work/$name/model.safetensors" ] || python3 "$here/make_model.py" "$name" "$work/$name"
    "$bin" -q pull "$work/$name" --name "$name"
    # The model's own facts and cache sizes, as a user sees them.
    "$bin" show "$name:kv_int8" --ctx-size 32768 | grep -E "architecture|layers|this run|unquantized" || true
    echo "== llmctl bench $name"
    "$bin" -q bench "$name" --ctx "${BENCH_CTX:-4096,32768}" --kv none,kv_int8,kv_fp8 --gen "${BENCH_GEN:-64}" --device cuda --json > "$work/bench-$name.json"
    python3 - "$work/bench-$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(d["gpu"])
print("%-8s %7s %12s %12s %16s %10s %10s" % ("kv", "ctx", "prefill t/s", "decode t/s", "step ms p50/max", "peak MiB", "kv MiB"))
for r in d["speed"]:
    step = r["decode_step_ms"]
    print("%-8s %7d %12.0f %12.1f %16s %10.0f %10.1f" % (r["kv"], r["context"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"],
          "%.2f/%.2f" % (step["median"], step["max"]), r["peak_memory_bytes"] / 2**20, r["kv_cache_bytes"] / 2**20))
PY
    for ctx in ${PEER_CTX:-4096}; do
        echo "== peer: transformers on $name at $ctx"
        timeout "${PEER_TIMEOUT:-240}" python3 "$here/peer_transformers.py" "$work/$name" "$ctx" "${BENCH_GEN:-64}" 2>/dev/null | tail -n 1 \
            || echo "peer did not finish (exit $?)"
    done
done
