#!/usr/bin/env bash
# CPU speed of each KV-cache scheme on a stored model, from `run --json`'s
# done event. Usage: tests/bench/cpu_schemes.sh MODEL [LLMCTL_BINARY]
# Prompts: the 1,485-token reference text and a short one; 64 tokens each, greedy.
set -euo pipefail
model=$1
bin=${2:-target/release/llmctl}
here=$(cd "$(dirname "$0")" && pwd)
long=$(cat "$here/../data/long_prompt.txt")
printf '%-10s %-7s %8s %12s %12s %12s\n' scheme prompt p_tokens prefill_t/s decode_t/s kv_bytes
for scheme in "" ":kv_int8" ":kv_fp8"; do
    for name in short long; do
        if [ "$name" = long ]; then prompt=$long; else prompt="The capital of France is"; fi
        "$bin" run "$model$scheme" --raw --json --max-tokens 64 --ctx-size 2048 --device cpu "$prompt" \
            | tail -n 1 \
            | python3 -c "import json,sys; d=json.load(sys.stdin); print('%-10s %-7s %8d %12.1f %12.1f %12d' % (d['kv_cache']['scheme'], '$name', d['prompt_tokens'], d['prefill_tokens_per_second'], d['decode_tokens_per_second'], d['kv_cache']['allocated_bytes']))"
    done
done
