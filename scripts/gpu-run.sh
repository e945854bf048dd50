#!/usr/bin/env bash
# The whole GPU check in one command, for a lent GPU machine (PyTorch 2.x with CUDA in python3,
# nvcc, cmake, ninja; no Node, no network): unpack what scripts/gpu-pack.sh put in .device/,
# build the addon against that PyTorch's LibTorch (CUDA path, CMAKE_CUDA_ARCHITECTURES=90), run
# the GPU suite, run the GPU benchmarks, and leave logs and bench JSON under $OUT (at most 8 files:
# the device tool's limit). Every step has its own time budget, so the command ends inside the
# device tool's 10-minute limit even when a step hangs, and a failing step does not stop the ones
# after it. The same script rehearses on a CPU machine (Debian's LibTorch: CPU build, the GPU
# suite skips loudly, the benchmark refuses): `OUT=/tmp/gpu-out bash scripts/gpu-run.sh`.
#
#   device tool:  carry [".device"], command "bash scripts/gpu-run.sh", timeout_s 590
# Environment: OUT (default ./gpu-out), SEGTOOL_GPU_BUILD_DIR (default build-gpu),
# SEGTOOL_GPU_BUDGET_S (total seconds, default 560), CUDA_ARCH (default 90).
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
build=${SEGTOOL_GPU_BUILD_DIR:-build-gpu}
budget=${SEGTOOL_GPU_BUDGET_S:-560}
summary="$out/summary.txt"
: > "$summary"

say() { echo "[gpu-run $(( $(date +%s) - started ))s] $*" | tee -a "$summary"; }
left() { echo $(( budget - ($(date +%s) - started) )); }
# step NAME SECONDS LOG COMMAND...: runs with a timeout of at most SECONDS (and what is left).
step() {
  local name=$1 seconds=$2 log=$3
  shift 3
  local remaining
  remaining=$(left)
  [ "$seconds" -gt "$remaining" ] && seconds=$remaining
  if [ "$seconds" -le 5 ]; then
    say "$name: SKIPPED (time budget spent)"
    return 124
  fi
  say "$name: start (limit ${seconds}s)"
  timeout --kill-after=10 "$seconds" "$@" >> "$log" 2>&1
  local rc=$?
  say "$name: rc=$rc"
  return $rc
}

# 1. Node and the run-time packages.
if ! command -v node >/dev/null; then
  [ -f .device/node.xz ] || { say "no node and no .device/node.xz: run scripts/gpu-pack.sh here first"; exit 1; }
  xz -dc .device/node.xz > /usr/local/bin/node && chmod +x /usr/local/bin/node
fi
if [ -f .device/runtime.tar.xz ]; then
  tar -xJf .device/runtime.tar.xz
fi
[ -f dist/index.js ] || { say "dist/ missing: run scripts/gpu-pack.sh (after npm run setup) and carry .device"; exit 1; }

# 2. Facts about the machine, for the results.
{
  echo "date: $(date -u +%FT%TZ)"
  echo "node: $(node --version)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: none"
  nvcc --version 2>&1 | tail -1 || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "available", torch.cuda.is_available())' 2>&1 || echo "python3 torch: none"
  echo "cpus: $(nproc)"
} > "$out/env.txt"
cat "$out/env.txt" >> "$summary"

# 3. The addon against python3's LibTorch when it has one (the GPU machine), else the system's.
cmake_args=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}"
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/$build/Release")
if [ -f napi-include/node_api.h ]; then
  cmake_args+=(-DCMAKE_JS_INC="$PWD/napi-include")
else
  cmake_args+=(-DCMAKE_JS_INC="$(node -p "require('path').resolve(process.execPath, '../../include/node')")")
fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
if [ -n "$torch_prefix" ] && [ -f "$torch_prefix/Torch/TorchConfig.cmake" ]; then
  cmake_args+=(-DTorch_DIR="$torch_prefix/Torch")
  torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
command -v ninja >/dev/null || cmake_args=("${cmake_args[@]/Ninja/Unix Makefiles}")
step configure 120 "$out/build.log" cmake "${cmake_args[@]}" || { say "configure failed: see build.log"; exit 1; }
step build 300 "$out/build.log" cmake --build "$build" --parallel "$(nproc)" || { say "build failed: see build.log"; exit 1; }
export SEGTOOL_ADDON="$PWD/$build/Release/segtool.node"
node -e "import('./dist/index.js').then((m) => console.log('cudaStatus', JSON.stringify(m.cudaStatus())))" 2>&1 | tee -a "$summary"

# 4. The GPU suite (npm run test:gpu without npm and without setup.sh's apt step).
step test-gpu 180 "$out/test-gpu.log" node scripts/run-tests.mjs --gpu
grep -E '^# (pass|fail|skipped)|^not ok|GPU SUITE SKIPPED' "$out/test-gpu.log" | tee -a "$summary"

# 5. The benchmarks: the reference's batch (2 per GPU), fp32 and bf16, against PyTorch eager;
# then resnet50dilated + ppm_deepsup training at a batch that fills the GPU, channels-last.
day=$(date -u +%F)
step bench-batch2 150 "$out/bench.log" node bench/gpu/run.mjs --warmup 3 --iters 10 --out "$out/gpu-$day.json"
step bench-large-batch 90 "$out/bench.log" node bench/gpu/run.mjs --models resnet50dilated-ppm_deepsup --tasks train \
  --batch 16 --channels-last --warmup 2 --iters 6 --out "$out/gpu-$day-batch16-cl.json"
tail -40 "$out/bench.log" >> "$summary" 2>/dev/null
say "done in $(( $(date +%s) - started ))s; files in $out: $(ls "$out" | tr '\n' ' ')"
