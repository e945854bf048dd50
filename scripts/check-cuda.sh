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
exit $status
