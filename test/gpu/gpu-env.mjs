// What the GPU suite can use here. Every GPU test is declared through gpuTest(): without a GPU
// (or with a CPU-only LibTorch) it is skipped with the reason, never silently passed.
import { test } from 'node:test';
import { cudaStatus } from '../../dist/index.js';

function status() {
  try {
    return cudaStatus();
  } catch (error) {
    return { available: false, deviceCount: 0, kernels: false, torchVersion: '?', error: String(error?.message ?? error) };
  }
}

export const cuda = status();
export const skipReason = cuda.available
  ? false
  : `SKIPPED (no GPU): ${cuda.error ?? `LibTorch ${cuda.torchVersion} ${cuda.deviceCount === 0 ? 'sees no CUDA device' : ''}`}; build against a CUDA LibTorch on a GPU machine (docs/gpu.md)`;

/** A test that needs CUDA; `needs.kernels`: segtool's own CUDA kernels compiled in. */
export function gpuTest(name, options, fn) {
  let skip = skipReason;
  if (!skip && options.kernels && !cuda.kernels) skip = 'SKIPPED: this addon was built without segtool CUDA kernels (CMake build against a CUDA LibTorch needed)';
  if (!skip && options.gpus && cuda.deviceCount < options.gpus) skip = `SKIPPED: needs ${options.gpus} GPUs, ${cuda.deviceCount} here`;
  test(name, { timeout: options.timeout ?? 10 * 60 * 1000, skip }, fn);
}
