#!/usr/bin/env bash
# Install a CUDA 13.0 build toolchain from PyPI wheels, so that CUDA-enabled Rust crates
# (candle-core "cuda", cudarc with dynamic-linking, candle-kernels via cudaforge) can be
# compiled on a machine with no GPU and no system CUDA toolkit.
#
# What it does (idempotent; re-running only repairs what is missing):
#   1. pip-installs NVIDIA's wheels (nvcc, nvvm, crt, cudart, cccl, nvrtc, cublas, curand)
#      into  $PREFIX/pkgs  (pip --target); CUDA 13 wheels all land in pkgs/nvidia/cu13.
#   2. makes that directory look like a CUDA toolkit root ($PREFIX/cuda -> pkgs/nvidia/cu13):
#      lib64 -> lib, targets/x86_64-linux/{include,lib}, unversioned libFOO.so symlinks.
#   3. generates a link-time stub lib/stubs/libcuda.so (soname libcuda.so.1) from cuda.h.
#      No wheel ships the driver library; the stub only satisfies the linker. At run time
#      the GPU machine's real driver libcuda.so.1 is loaded. Never put lib/stubs on
#      LD_LIBRARY_PATH.
#   4. prints the environment the build needs.
#
# Usage:
#   scripts/cuda-toolchain.sh [--prefix DIR]  install, then print the export lines
#   eval "$(scripts/cuda-toolchain.sh --env)" install if needed (progress on stderr),
#                                              then set the variables in this shell
#   scripts/cuda-toolchain.sh --print-env     print the export lines only (no install)
#
# Environment knobs:
#   CUDA_PIP_PREFIX   install prefix (default /opt/cuda-pip; --prefix wins)
#   CUDA_COMPUTE_CAP  GPU arch for candle-kernels' nvcc builds (default 90 = H100/H200;
#                     cudaforge turns 90 into sm_90a, arch-specific code for sm_90 GPUs:
#                     build once per GPU family)
#   PYTHON            python interpreter with pip (default python3)
#
# Requirements on the build machine: x86_64 Linux, python3 with pip, gcc/g++ (nvcc's host
# compiler; CUDA 13.0's headers reject gcc newer than 15), network access to PyPI.
set -euo pipefail

PREFIX="${CUDA_PIP_PREFIX:-/opt/cuda-pip}"
MODE=install
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
    --env) MODE=env; shift ;;
    --print-env) MODE=print; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
PYTHON="${PYTHON:-python3}"
COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

# CUDA 13.0.x wheels. 13.0 matches a CUDA 13.0 (R580) driver: PTX written by a newer nvcc
# uses a newer PTX ISA that an older driver refuses to JIT.
PACKAGES=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)
CUDARC_VERSION=13000   # what cudarc's build.rs expects in CUDARC_CUDA_VERSION for CUDA 13.0

PKGS="$PREFIX/pkgs"
ROOT="$PKGS/nvidia/cu13"
HOME_LINK="$PREFIX/cuda"

print_env() {
  cat <<ENV
export CUDA_HOME="$HOME_LINK"
export CUDA_PATH="$HOME_LINK"
export PATH="$HOME_LINK/bin:\$PATH"
export LIBRARY_PATH="$HOME_LINK/lib:$HOME_LINK/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDARC_CUDA_VERSION=$CUDARC_VERSION
export CUDA_COMPUTE_CAP=$COMPUTE_CAP
ENV
}

if [ "$MODE" = print ]; then print_env; exit 0; fi

log() { echo "[cuda-toolchain] $*" >&2; }

install() {
  command -v "$PYTHON" >/dev/null || { log "need $PYTHON with pip"; exit 1; }
  command -v gcc >/dev/null && command -v g++ >/dev/null || { log "need gcc and g++ (nvcc host compiler)"; exit 1; }
  [ "$(uname -m)" = x86_64 ] || { log "only x86_64 Linux is handled"; exit 1; }
  mkdir -p "$PREFIX"

  # 1. wheels (skipped when the same package set is already installed)
  local want stamp="$PREFIX/.packages"
  want="$(printf '%s\n' "${PACKAGES[@]}")"
  if [ -x "$ROOT/bin/nvcc" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "wheels already installed in $PKGS"
  else
    log "installing wheels into $PKGS (about 700 MB of downloads)"
    rm -rf "$PKGS" "$stamp"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --target "$PKGS" "${PACKAGES[@]}" >&2
    printf '%s\n' "$want" >"$stamp"
  fi

  # 2. toolkit-like layout
  ln -sfn "pkgs/nvidia/cu13" "$HOME_LINK"
  ln -sfn lib "$ROOT/lib64"
  mkdir -p "$ROOT/targets/x86_64-linux"
  ln -sfn ../../include "$ROOT/targets/x86_64-linux/include"
  ln -sfn ../../lib "$ROOT/targets/x86_64-linux/lib"
  local so base
  for so in "$ROOT"/lib/lib*.so.[0-9]*; do
    base="${so##*/}"; base="${base%%.so.*}.so"
    case "$base" in *.alt.so|libnvrtc-builtins*) continue ;; esac
    [ -e "$ROOT/lib/$base" ] || ln -s "${so##*/}" "$ROOT/lib/$base"
  done

  # 3. libcuda.so link stub, generated from this toolkit's cuda.h
  local stub="$ROOT/lib/stubs/libcuda.so"
  if [ ! -f "$stub" ] || [ "$ROOT/include/cuda.h" -nt "$stub" ]; then
    log "generating $stub"
    mkdir -p "$ROOT/lib/stubs"
    local tmp; tmp="$(mktemp -d)"
    # exported names: declarations after macro expansion (cuFoo -> cuFoo_v2 ...) plus the
    # plain declared names, so both spellings that libcuda.so.1 exports are covered.
    { gcc -E -P -x c "$ROOT/include/cuda.h" | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' || true
      grep -oE 'CUDAAPI[[:space:]]+cu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' "$ROOT/include/cuda.h" | sed 's/^CUDAAPI[[:space:]]*//' || true
    } | tr -d '( \t' | sort -u >"$tmp/names"
    {
      echo '/* link-time stub for libcuda.so.1; every entry returns CUDA_ERROR_STUB_LIBRARY (34) */'
      sed 's/.*/int &(void) { return 34; }/' "$tmp/names"
    } >"$tmp/stub.c"
    gcc -shared -fPIC -O0 -fno-builtin -w -Wl,-soname,libcuda.so.1 -o "$stub" "$tmp/stub.c"
    log "stub exports $(wc -l <"$tmp/names") cu* symbols"
    rm -rf "$tmp"
  fi

  "$ROOT/bin/nvcc" --version | tail -2 >&2
}

install
if [ "$MODE" = env ]; then
  print_env
else
  echo "# CUDA build toolchain ready under $PREFIX. Set the build environment with:"
  print_env
fi
