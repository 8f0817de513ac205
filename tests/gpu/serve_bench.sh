#!/usr/bin/env bash
# `llmctl serve` under concurrent load, and llama.cpp's `llama-server` under
# the same load generator (tests/bench/serve_load.py: streamed greedy
# /v1/completions, each request its own prompt), on a GPU machine over a
# built binary (nothing of llmctl's is compiled there; llama.cpp is):
#   tests/gpu/serve_bench.sh PART LLMCTL_BINARY [LLAMA_CPP_SRC.tar.gz VOCAB.gguf]
# PART (each meant to fit one device call of 10 minutes; results gather in
# $WORK/serve-bench.tsv while the machine stays warm, and every part prints
# the table of all of them last):
#   llmctl        llmctl serve on the Llama-3.1-8B shape (make_model.py llama-8b,
#                 random bf16 weights, kept in $WORK), one server per KV scheme of
#                 SCHEMES, the load generator at each of CONCURRENCY.
#   llama-build   build llama-server (CUDA, sm_90) from the llama.cpp source while
#                 make_gguf.py writes the 8B-shape f16 GGUF around VOCAB's tokenizer.
#   llama         llama-server --parallel C on that GGUF (f16 cache, flash
#                 attention) at each of CONCURRENCY; builds first if needed.
#   llmctl-gguf   llmctl serve on the same GGUF (its f16 cache), the same file as
#                 llama-server's (needs another 16 GB of disk for the store's copy).
#   table         the table alone.
# Environment (defaults): CONCURRENCY ("1 8 32"; 128 fits the H200 too),
# SCHEMES ("none kv_int8 kv_fp8"), PROMPT_TOKENS (1024) and GEN_TOKENS (256)
# per request, REQUESTS per run (2 x C, at least 4), LOAD_TIMEOUT seconds per
# run (240), SERVE_CTX tokens of context per sequence (PROMPT_TOKENS +
# GEN_TOKENS + 256). Each run first sends an untimed round of C short
# requests (caches allocated, kernels loaded).
# Off the GPU machine (a smoke test of this script): DEVICE=cpu, MODEL_DIR (a
# model directory to serve instead of llama-8b), WORDS=english (prompts of
# English words, for a real tokenizer), LLAMA_SERVER (a built llama-server),
# GGUF (a GGUF file for it and for llmctl-gguf), NGL (llama-server's -ngl, 99).
set -euo pipefail
part=$1; bin=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
load=$here/../bench/serve_load.py
device=${DEVICE:-cuda}
if [ "$device" = cuda ]; then
    . "$here/env.sh"
    ldd "$bin" | grep -E 'not found' && exit 1
else
    export LLMCTL_HOME=${LLMCTL_HOME:-$HOME/llmctl-store}
    work=${WORK:-$HOME/llmctl-gpu}
    mkdir -p "$work"
fi
concurrency=${CONCURRENCY:-1 8 32}
prompt_tokens=${PROMPT_TOKENS:-1024}
gen_tokens=${GEN_TOKENS:-256}
ctx=${SERVE_CTX:-$((prompt_tokens + gen_tokens + 256))}
max_c=$(printf '%s\n' $concurrency | sort -n | tail -n 1)
port=${PORT:-18435}
table=$work/serve-bench.tsv
gguf=${GGUF:-$work/f16.gguf}
lc=$work/llama.cpp
llama_server=${LLAMA_SERVER:-$lc/build-server/bin/llama-server}

requests_for() { local n=$((2 * $1)); echo $((n < 4 ? 4 : n)); }

# wait_ready PATH PID LOG: until GET PATH on the port answers 200 (no proxy asked), or the server exits.
wait_ready() {
    local t0=$SECONDS
    until python3 -c "import http.client as h, sys; c = h.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)
c.request('GET', sys.argv[2]); sys.exit(c.getresponse().status != 200)" "$port" "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { echo "the server exited before it was ready:" >&2; tail -20 "$3" >&2; return 1; }
        [ $((SECONDS - t0)) -lt 600 ] || { echo "the server was not ready in 600 s" >&2; tail -20 "$3" >&2; return 1; }
        sleep 1
    done
    echo "ready in $((SECONDS - t0)) s"
}

stop_server() {  # SIGINT: llmctl finishes what is in flight, then exits
    kill -INT "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    server_pid=
}
server_pid=
# The table even when a part fails midway, and no server left behind.
trap '[ -z "$server_pid" ] || stop_server "$server_pid"; print_table' EXIT

# run_loads SERVER LABEL MODEL WORDS: the load generator at each concurrency, a row per run.
run_loads() {
    local server=$1 label=$2 model=$3 words=$4 c n out rc
    for c in $concurrency; do
        n=${REQUESTS:-$(requests_for "$c")}
        out=$work/load-$server-$label-c$c
        echo "== $server $label: $n requests, concurrency $c, $prompt_tokens-word prompts, $gen_tokens tokens"
        rc=0
        python3 "$load" --url "http://127.0.0.1:$port" --model "$model" --requests "$n" --concurrency "$c" \
            --max-tokens "$gen_tokens" --prompt-tokens "$prompt_tokens" --words "$words" --ignore-eos --warmup \
            --timeout "${LOAD_TIMEOUT:-240}" --dump "$out.dump.json" > "$out.json" || rc=$?
        cat "$out.json"
        python3 - "$out.json" "$server" "$label" "$rc" >> "$table" <<'PY'
import json, sys
path, server, label, rc = sys.argv[1:]
try:
    d = json.load(open(path))
except ValueError:
    d = {}
t = d.get("ttft_s") or {}
ms = lambda s: "-" if s is None else "%.0f" % (s * 1000)
print("\t".join("-" if x is None else str(x) for x in [server, label, d.get("concurrency", "-"), d.get("requests", "-"), d.get("done", 0),
      d.get("prompt_tokens_mean", "-"), d.get("tokens_per_s", "-"), ms(t.get("median")), ms(t.get("p99")),
      d.get("decode_tokens_per_s_per_request_median", "-"), "ok" if rc == "0" else "exit " + rc]))
PY
    done
}

print_table() {
    [ -f "$table" ] || return 0
    echo "== serve under load: $prompt_tokens-word prompts, $gen_tokens tokens each, greedy, streamed (server log lines in $work)"
    python3 - "$table" <<'PY'
import sys
head = ["server", "kv", "conc", "reqs", "done", "prompt tok", "agg tok/s", "TTFT p50 ms", "TTFT p99 ms", "tok/s/req", "run"]
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
for r in [head] + rows:
    print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
PY
}

model_dir() {  # the safetensors model llmctl serves: MODEL_DIR, or llama-8b made once
    if [ -n "${MODEL_DIR:-}" ]; then realpath "$MODEL_DIR"; return; fi
    [ -f "$work/llama-8b/model.safetensors" ] || python3 "$here/make_model.py" llama-8b "$work/llama-8b" >&2
    echo "$work/llama-8b"
}

# serve_llmctl NAME[:TAG] LABEL WORDS: one llmctl server with that model loaded, its loads, then stop.
serve_llmctl() {
    local log=$work/serve-llmctl-$2.log
    "$bin" serve --port "$port" --device "$device" --model "$1" --ctx-size "$ctx" --max-sequences "$max_c" \
        --max-queue "$((2 * max_c + 4))" 2> "$log" &
    server_pid=$!
    wait_ready /api/version "$server_pid" "$log"
    grep -m1 "^loaded" "$log" || true
    run_loads llmctl "$2" "$1" "$3"
    stop_server "$server_pid"
}

# The llama.cpp source has no web UI (the tarball is trimmed): llama-server links an empty one.
ui_stub() {
    [ -f "$lc/tools/ui/CMakeLists.txt" ] && return
    mkdir -p "$lc/tools/ui"
    cat > "$lc/tools/ui/CMakeLists.txt" <<'EOF'
add_library(llama-ui STATIC ui.cpp)
set_target_properties(llama-ui PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(llama-ui PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
add_custom_target(llama-ui-assets)
EOF
    cat > "$lc/tools/ui/ui.h" <<'EOF'
#pragma once
#include <cstddef>
#include <string>
#include <vector>
struct llama_ui_asset { std::string name; const unsigned char * data; size_t size; std::string type; std::string etag; };
const std::vector<llama_ui_asset> & llama_ui_get_assets();
const llama_ui_asset * llama_ui_find_asset(const std::string & name);
bool llama_ui_use_gzip();
EOF
    cat > "$lc/tools/ui/ui.cpp" <<'EOF'
#include "ui.h"
const std::vector<llama_ui_asset> & llama_ui_get_assets() { static const std::vector<llama_ui_asset> none; return none; }
const llama_ui_asset * llama_ui_find_asset(const std::string &) { return nullptr; }
bool llama_ui_use_gzip() { return false; }
EOF
}

llama_build() {  # llama-server built (in the background) while the f16 GGUF is written
    local src vocab builder t0=$SECONDS
    src=$(realpath "${1:?the llama.cpp source tarball}"); vocab=$(realpath "${2:?the vocabulary GGUF}")
    [ -d "$lc" ] || tar xzf "$src" -C "$work"
    ui_stub
    if [ ! -x "$llama_server" ]; then
        (cmake -S "$lc" -B "$lc/build-server" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
            -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
            -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF > "$work/build-server.log" 2>&1 \
            && cmake --build "$lc/build-server" --target llama-server -j "$(nproc)" >> "$work/build-server.log" 2>&1) &
        builder=$!
    fi
    [ -f "$gguf" ] || python3 "$here/make_gguf.py" "$lc/gguf-py" "$vocab" "$gguf"
    echo "f16 GGUF ready after $((SECONDS - t0)) s: $(du -h "$gguf" | cut -f1)"
    if [ -n "${builder:-}" ]; then
        wait "$builder" || { tail -30 "$work/build-server.log"; exit 1; }
        echo "llama-server built in $((SECONDS - t0)) s"
    fi
}

case $part in
llmctl)
    dir=$(model_dir)
    name=serve-$(basename "$dir")
    "$bin" -q pull "$dir" --name "$name"
    for scheme in ${SCHEMES:-none kv_int8 kv_fp8}; do
        tag=":$scheme"; [ "$scheme" = none ] && tag=
        serve_llmctl "$name$tag" "$scheme" "${WORDS:-numbered}"
    done
    ;;
llama-build)
    llama_build "${3:-}" "${4:-}"
    ;;
llama)
    { [ -x "$llama_server" ] && [ -f "$gguf" ]; } || llama_build "${3:-}" "${4:-}"
    for c in $concurrency; do
        log=$work/serve-llama-c$c.log
        "$llama_server" -m "$gguf" -ngl "${NGL:-99}" -fa on --parallel "$c" -c "$((c * ctx))" \
            --host 127.0.0.1 --port "$port" --no-webui > "$log" 2>&1 &
        server_pid=$!
        wait_ready /health "$server_pid" "$log"
        concurrency=$c run_loads llama.cpp f16 llama-8b "${WORDS:-english}"
        stop_server "$server_pid"
    done
    ;;
llmctl-gguf)
    "$bin" -q pull "$gguf" --name serve-gguf
    serve_llmctl serve-gguf gguf-f16 "${WORDS:-english}"
    ;;
table) ;;
*) echo "unknown part $part (llmctl, llama-build, llama, llmctl-gguf, table)" >&2; exit 2 ;;
esac
