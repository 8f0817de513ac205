#!/usr/bin/env bash
# GPU checks and measurements for llmctl's CUDA build, run on a GPU machine
# over a built binary (nothing is compiled there):
#   tests/gpu/run_checks.sh BINARY SMOLLM2_GGUF|skip [CONTEXTS]
# 1. SmolLM2 (bf16, converted by transformers): greedy ids on CUDA vs CPU, each cache.
# 2. A Llama-3.1-8B-shaped random model: every cache at each context, with
#    NVML-measured VRAM and decode speed. Prints one table per part.
set -euo pipefail
bin=$(realpath "$1"); gguf=$2; contexts=${3:-"4096 16384 32768"}
[ "$gguf" = skip ] || gguf=$(realpath "$gguf")
here=$(cd "$(dirname "$0")" && pwd)
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))')
export LD_LIBRARY_PATH="$site/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LLMCTL_HOME=${LLMCTL_HOME:-$HOME/llmctl-store}
work=${WORK:-$HOME/llmctl-gpu}
mkdir -p "$work"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ldd "$bin" | grep -E 'not found' && exit 1

field() { python3 -c "import json,sys; d=[json.loads(l) for l in sys.stdin][-1]; print($1)"; }
ids() { python3 -c "import json,sys; print(' '.join(str(json.loads(l)['id']) for l in sys.stdin if '\"token\"' in l))"; }

if [ "$gguf" != skip ]; then
echo "== SmolLM2: CUDA vs CPU greedy, 32 tokens"
[ -d "$work/smollm2" ] || python3 "$here/smollm2_from_gguf.py" "$gguf" "$work/smollm2" 2>&1 | tail -1
"$bin" -q pull "$work/smollm2" --name smollm2
printf '%-10s %-6s %s\n' scheme same first_divergence
for tag in "" ":kv_int8" ":kv_fp8"; do
    cpu=$("$bin" -q run "smollm2$tag" --raw --json --max-tokens 32 --device cpu "The capital of France is" | ids)
    gpu=$("$bin" -q run "smollm2$tag" --raw --json --max-tokens 32 --device cuda "The capital of France is" | ids)
    div=$(python3 -c "a='$cpu'.split(); b='$gpu'.split(); print(next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), 'none' if len(a)==len(b) else min(len(a),len(b))))")
    printf '%-10s %-6s %s\n' "${tag:-none}" "$([ "$cpu" = "$gpu" ] && echo yes || echo no)" "$div"
    echo "  cpu: $cpu"; echo "  gpu: $gpu"
done
fi

echo "== Llama-3.1-8B shape, random bf16 weights"
[ -f "$work/llama-8b/model.safetensors" ] || python3 "$here/make_model.py" llama-8b "$work/llama-8b"
"$bin" -q pull "$work/llama-8b" --name llama-8b
printf '%-8s %-8s %10s %12s %12s %12s %12s %10s\n' ctx scheme prompt kv_bytes after_cache_MiB peak_MiB weights_MiB decode_t/s
for ctx in $contexts; do
    # Through stdin: a 32k-word argument is longer than the kernel allows.
    python3 -c "print(' '.join('w%d' % (3 + i % 1000) for i in range($ctx - 64)))" > "$work/prompt-$ctx.txt"
    for tag in "" ":kv_int8" ":kv_fp8"; do
        line=$("$bin" -q run "llama-8b$tag" --raw --json --max-tokens 32 --ctx-size "$ctx" --device cuda < "$work/prompt-$ctx.txt" | tail -n 1)
        echo "$line" > "$work/done-$ctx${tag#:}.json"
        echo "$line" | field "'%-8d %-8s %10d %12d %12.0f %12.0f %12.0f %10.1f' % ($ctx, d['kv_cache']['scheme'], d['prompt_tokens'], d['kv_cache']['allocated_bytes'], d['memory']['gpu']['after_cache']/2**20, d['memory']['gpu']['peak']/2**20, d['memory']['gpu']['after_weights']/2**20, d['decode_tokens_per_second'])"
    done
done
