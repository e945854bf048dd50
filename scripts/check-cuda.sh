#!/usr/bin/env bash
# Compiles every native/ops/cuda/*.cu with nvcc (compile only), so CUDA code cannot rot on
# machines without a GPU. Exit 0 when all compile; prints one line per file.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$nvcc" ] || { echo "check-cuda: nvcc not found (set NVCC or install the CUDA toolkit)" >&2; exit 3; }
arch=${SEGTOOL_CUDA_ARCH:-90}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for cu in native/ops/cuda/*.cu; do
  if "$nvcc" -std=c++17 -c "$cu" -o "$out/$(basename "$cu").o" -I native \
      -gencode "arch=compute_${arch},code=sm_${arch}" -Xcompiler -fPIC 2>"$out/log"; then
    echo "compiled $cu (sm_${arch})"
  else
    echo "FAILED $cu" >&2
    cat "$out/log" >&2
    status=1
  fi
done

# The ATen glue that launches these kernels (host C++ guarded by SEGTOOL_WITH_CUDA) is compiled
# only by a CUDA build; check its syntax here against LibTorch's c10/cuda headers and the CUDA
# toolkit's, so it cannot rot either. SEGTOOL_CUDA_HOST_CHECK=0 skips this part.
if [ "${SEGTOOL_CUDA_HOST_CHECK:-1}" != 0 ]; then
  cxx=${CXX:-g++}
  includes=$(node scripts/torch-paths.mjs include 2>/dev/null || true)
  header=""
  for dir in $includes; do [ -f "$dir/c10/cuda/CUDAStream.h" ] && header="$dir"; done
  if [ -z "$header" ] || ! command -v "$cxx" >/dev/null; then
    echo "skipped host glue check: no LibTorch headers with c10/cuda or no $cxx"
  else
    flags=(-std=c++17 -fsyntax-only -Wall -Wno-unused-parameter -DSEGTOOL_WITH_CUDA=1 -I native)
    for dir in $includes; do
      case "$dir" in /usr/include | /usr/local/include) ;; *) flags+=(-isystem "$dir") ;; esac  # default dirs stay last
    done
    # The CUDA toolkit's headers (cuda_runtime_api.h), wherever this nvcc comes from.
    for dir in "${CUDA_HOME:-/nonexistent}/include" "$(dirname "$(readlink -f "$nvcc")")/../include" /usr/local/cuda/include; do
      if [ -f "$dir/cuda_runtime_api.h" ]; then flags+=(-isystem "$dir"); break; fi
    done
    # A CPU LibTorch ships c10/cuda headers without their generated macros header.
    if [ ! -f "$header/c10/cuda/impl/cuda_cmake_macros.h" ]; then
      mkdir -p "$out/stub/c10/cuda/impl"
      echo '#pragma once' >"$out/stub/c10/cuda/impl/cuda_cmake_macros.h"
      flags+=(-isystem "$out/stub")
    fi
    for defined in $(node scripts/torch-paths.mjs defines 2>/dev/null || true); do flags+=("-D$defined"); done
    for cc in $(grep -l 'SEGTOOL_WITH_CUDA' native/ops/*.cc native/nn/*.cc 2>/dev/null); do
      if "$cxx" "${flags[@]}" "$cc" 2>"$out/log"; then
        echo "checked $cc (host glue, SEGTOOL_WITH_CUDA)"
      else
        echo "FAILED $cc (host glue, SEGTOOL_WITH_CUDA)" >&2
        cat "$out/log" >&2
        status=1
      fi
    done
  fi
fi
exit $status
