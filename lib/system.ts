/** What this process's segtool runs on: LibTorch build, threads, and a quick speed probe. */
import { availableParallelism } from 'node:os';
import { loadNative, type BuildInfo } from './native.js';

export interface SystemInfo extends BuildInfo {
  threads: number;
  cores: number;
  /** float32 matrix-multiply speed measured now (1024 x 1024), when `measure` was asked. */
  matmulGflops?: number;
}

export async function systemInfo(options: { measure?: boolean } = {}): Promise<SystemInfo> {
  const addon = await loadNative();
  const info: SystemInfo = { ...addon.buildInfo(), threads: addon.getNumThreads(), cores: availableParallelism() };
  if (options.measure) info.matmulGflops = (await addon.matmulBenchmark(1024, 4)).gflops;
  return info;
}
