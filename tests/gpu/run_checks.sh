#!/usr/bin/env bash
# GPU checks and measurements for llmctl's CUDA build, run on a GPU machine
# over built binaries (nothing is compiled there):
#   tests/gpu/run_checks.sh PART BINARY [GPU_TESTS SMOLLM2_GGUF]
# PART is one of (each fits one device call):
#   checks  tests/gpu.rs (fused kernels vs the reference paths; SmolLM2 CUDA vs
#           CPU logits and greedy tokens per scheme), the no-GPU error, and
#           SC-001: every cache on the Llama-3.1-8B shape at 4k/16k/32k, VRAM by NVML.
#   bench   `llmctl bench` on the Llama-3.1-8B and Llama-3.2-1B shapes, and the
#           transformers peer on the 8B shape at 8k.
# SKIP_SC001=1 / SKIP_PEER=1 leave out those (slow) sections; BENCH_MODELS
# picks the shapes to bench, BENCH_CTX / BENCH_KV / BENCH_GEN the cases;
# REF_OUT=FILE also runs tests/reference/kv_quant_reference.py (checks).
# Models with random bf16 weights are made there by make_model.py (kept in $WORK).
set -euo pipefail
part=$1; bin=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
ldd "$bin" | grep -E 'not found' && exit 1

model() {  # model NAME: make (once) and import the random-weight model
    [ -f "$work/$1/model.safetensors" ] || python3 "$here/make_model.py" "$1" "$work/$1"
    "$bin" -q pull "$work/$1" --name "$1"
}
field() { python3 -c "import json,sys; d=[json.loads(l) for l in sys.stdin][-1]; print($1)"; }

if [ "$part" = checks ]; then
    tests=$(realpath "$3"); gguf=$(realpath "$4")
    echo "== tests/gpu.rs"
    for m in gemma3-small qwen3-moe-small; do
        [ -f "$work/$m/model.safetensors" ] || python3 "$here/make_model.py" "$m" "$work/$m"
    done
    export LLMCTL_GPU_FAMILIES="$work/gemma3-small:$work/qwen3-moe-small"
    LLMCTL_TEST_MODELS=$(dirname "$gguf") "$tests" --test-threads 1 --nocapture 2>&1 | grep -vE '^\s*$|^running|Running|backtrace' || true

    if [ -n "${REF_OUT:-}" ]; then
        echo "== quantized-cache reference (transformers, CPU): $REF_OUT"
        python3 "$here/../reference/kv_quant_reference.py" "$gguf" "$REF_OUT" 2>&1 | grep -v Warning || true
    fi

    echo "== no usable GPU (CUDA_VISIBLE_DEVICES empty)"
    smollm2=$(LLMCTL_TEST_MODELS=$(dirname "$gguf") ls -d "$(dirname "$gguf")"/smollm2-bf16-v*)
    "$bin" -q pull "$smollm2" --name smollm2
    set +e
    CUDA_VISIBLE_DEVICES= "$bin" run smollm2 --device cuda --max-tokens 2 "Hi"; echo "exit $?"
    CUDA_VISIBLE_DEVICES= "$bin" run smollm2 --max-tokens 2 --raw "The capital of France is" 2>&1 >/dev/null | head -1; echo "exit ${PIPESTATUS[0]}"
    set -e

    [ -n "${SKIP_SC001:-}" ] && exit 0
    echo "== SC-001: Llama-3.1-8B shape, random bf16 weights"
    model llama-8b
    printf '%-8s %-8s %10s %12s %12s %12s %10s\n' ctx scheme prompt kv_bytes after_cache_MiB peak_MiB decode_t/s
    for ctx in 4096 16384 32768; do
        # Through stdin: a 32k-word argument is longer than the kernel allows.
        python3 -c "print(' '.join('w%d' % (3 + i % 1000) for i in range($ctx - 64)))" > "$work/prompt-$ctx.txt"
        for tag in "" ":kv_int8" ":kv_fp8"; do
            "$bin" -q run "llama-8b$tag" --raw --json --max-tokens 32 --ctx-size "$ctx" --device cuda < "$work/prompt-$ctx.txt" | tail -n 1 \
                | field "'%-8d %-8s %10d %12d %12.0f %12.0f %10.1f' % ($ctx, d['kv_cache']['scheme'], d['prompt_tokens'], d['kv_cache']['allocated_bytes'], d['memory']['gpu']['after_cache']/2**20, d['memory']['gpu']['peak']/2**20, d['decode_tokens_per_second'])"
        done
    done
fi

if [ "$part" = bench ]; then
    for name in ${BENCH_MODELS:-llama-8b llama-1b}; do
        model "$name"
        echo "== llmctl bench $name"
        "$bin" -q bench "$name" --ctx ${BENCH_CTX:-1024,8192,32768} --kv ${BENCH_KV:-none,kv_int8,kv_fp8} --gen ${BENCH_GEN:-64} --device cuda --json > "$work/bench-$name.json"
        python3 - "$work/bench-$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(d["gpu"])
print("%-8s %7s %12s %12s %16s %10s %12s %12s" % ("kv", "ctx", "prefill t/s", "decode t/s", "step ms p50/max", "peak MiB", "kv MiB", "fits tokens"))
for r in d["speed"]:
    step = r["decode_step_ms"]
    print("%-8s %7d %12.0f %12.1f %16s %10.0f %12.1f %12d" % (r["kv"], r["context"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"],
          "%.2f/%.2f" % (step["median"], step["max"]), r["peak_memory_bytes"] / 2**20, r["kv_cache_bytes"] / 2**20, r["max_context_fits"]))
PY
    done
    [ -n "${SKIP_PEER:-}" ] && exit 0
    echo "== peer: transformers on llama-8b at 8k"
    python3 "$here/peer_transformers.py" "$work/llama-8b" 8192 64 2>/dev/null | tail -n 1
fi
