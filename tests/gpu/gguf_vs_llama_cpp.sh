#!/usr/bin/env bash
# llmctl against llama.cpp on the same GGUF files, on a GPU machine (nothing
# of llmctl's is compiled there; llama.cpp is, from its source):
#   tests/gpu/gguf_vs_llama_cpp.sh PART LLMCTL_BINARY LLAMA_CPP_SRC.tar.gz VOCAB.gguf
# PART (each fits one device call; files stay in $WORK while the machine is warm):
#   peer    build llama.cpp (CUDA, sm_90) while tests/gpu/make_gguf.py writes a
#           Llama-3.1-8B-shape f16 GGUF around VOCAB's tokenizer; quantize it to
#           Q8_0 and Q4_K_M with llama-quantize; llama-bench pp512 / tg128 at
#           depth 0 and 8192 (its default f16 cache, flash attention on).
#   llmctl  llmctl on the same files: a CUDA run's greedy tokens against a CPU
#           run's on the SmolLM2 GGUF if present, then `llmctl bench` with
#           prompts of 512 and 8192 tokens and 128 generated, VRAM by NVML.
# The llama.cpp source is the `vendor/llama.cpp` of the PyPI sdist
# llama-cpp-python==0.3.36 (llama.cpp b11312), trimmed of docs and models.
set -euo pipefail
part=$1; bin=$(realpath "$2"); src=$(realpath "$3"); vocab=$(realpath "$4")
here=$(cd "$(dirname "$0")" && pwd)
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))')
export LD_LIBRARY_PATH="$site/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=${WORK:-/tmp/gguf-bench}
export LLMCTL_HOME=$work/store
mkdir -p "$work"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
types=${TYPES:-Q8_0 Q4_K_M}

if [ "$part" = peer ]; then
    [ -d "$work/llama.cpp" ] || tar xzf "$src" -C "$work"
    lc=$work/llama.cpp
    (cmake -S "$lc" -B "$lc/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF >"$work/build.log" 2>&1 \
        && cmake --build "$lc/build" --target llama-bench llama-quantize -j "$(nproc)" >>"$work/build.log" 2>&1) &
    builder=$!
    t0=$(date +%s)
    [ -f "$work/f16.gguf" ] || python3 "$here/make_gguf.py" "$lc/gguf-py" "$vocab" "$work/f16.gguf"
    echo "f16 GGUF written in $(( $(date +%s) - t0 )) s: $(du -h "$work/f16.gguf" | cut -f1)"
    wait $builder || { tail -30 "$work/build.log"; exit 1; }
    echo "llama.cpp built in $(( $(date +%s) - t0 )) s"
    for t in $types; do
        [ -f "$work/$t.gguf" ] || "$lc/build/bin/llama-quantize" "$work/f16.gguf" "$work/$t.gguf" "$t" >"$work/quantize-$t.log" 2>&1
        echo "$t: $(du -h "$work/$t.gguf" | cut -f1)"
    done
    for t in $types; do
        "$lc/build/bin/llama-bench" -m "$work/$t.gguf" -ngl 99 -fa 1 -p 512 -n 128 -d 0,8192 -r 3 -o jsonl 2>/dev/null \
            | python3 -c "
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    test = ('pp%d' % d['n_prompt']) if d['n_prompt'] else ('tg%d' % d['n_gen'])
    print('llama.cpp %-7s %-6s depth %5d  %9.1f t/s  (cache %s/%s, %s)' % ('$t', test, d['n_depth'], d['avg_ts'], d['type_k'], d['type_v'], d['build_commit']))
"
    done
    exit 0
fi

if [ "$part" = llmctl ]; then
    if [ -n "${SMOLLM2_GGUF:-}" ]; then
        "$bin" -q pull "$SMOLLM2_GGUF" --name smol
        cpu=$("$bin" -q run smol --raw --max-tokens 24 --device cpu "The capital of France is")
        gpu=$("$bin" -q run smol --raw --max-tokens 24 --device cuda "The capital of France is")
        [ "$cpu" = "$gpu" ] && echo "SmolLM2 GGUF greedy, CUDA = CPU: ok" || printf 'SmolLM2 GGUF differs:\ncpu %q\ngpu %q\n' "$cpu" "$gpu"
    fi
    for t in $types; do
        "$bin" -q pull "$work/$t.gguf" --name "l8b-$t"
        "$bin" -q run "l8b-$t" --raw --json --max-tokens 16 --device cuda "Hello world, this is a test" | tail -n 1 \
            | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('llmctl run %s: load %.1f s, kv %s, VRAM peak %.0f MiB, decode %.1f t/s' % ('$t', d['load_seconds'], d['kv_cache']['scheme'], d['memory']['gpu']['peak']/2**20, d['decode_tokens_per_second']))"
        "$bin" bench "l8b-$t" --device cuda --ctx 640,8320 --gen 128 --json 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
for r in d['speed']:
    print('llmctl    %-7s prompt %5d: pp %9.1f t/s   then tg%d %7.1f t/s (median step %.2f ms, p90 %.2f)  peak %.0f MiB, cache %s' % ('$t', r['prompt_tokens'], r['prefill_tokens_per_s'], r['generated_tokens'], r['decode_tokens_per_s'], r['decode_step_ms']['median'], r['decode_step_ms']['p90'], (r['peak_memory_bytes'] or 0)/2**20, r['kv']))
"
    done
    exit 0
fi
echo "unknown part $part" >&2; exit 2
