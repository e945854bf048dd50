#!/usr/bin/env node
// Runs the test suite with node's built-in runner: test/*.test.mjs (CPU tiers), or with --gpu
// test/gpu/*.test.mjs. Extra arguments select files by substring: `npm test -- tensor`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const gpu = args.includes('--gpu');
const filters = args.filter((a) => a !== '--gpu');
const dir = gpu ? 'test/gpu' : 'test';
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort()
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no test files in ${dir} match ${filters.join(' ') || '*'}`);
  process.exit(1);
}
// The GPU suite says loudly when it cannot run: every test in it skips with the reason.
if (gpu) {
  const probe = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', "import('./dist/index.js').then((m) => console.log(JSON.stringify(m.cudaStatus())))"],
    { encoding: 'utf8' },
  );
  let cuda = null;
  try {
    cuda = JSON.parse(probe.stdout.trim().split('\n').pop());
  } catch {
    cuda = null;
  }
  if (!cuda?.available) {
    const why = cuda
      ? `LibTorch ${cuda.torchVersion} here has no usable CUDA device (CUDA devices: ${cuda.deviceCount}, segtool CUDA kernels built: ${cuda.kernels})`
      : `the addon could not be loaded to ask (${(probe.stderr || '').trim().split('\n').pop()})`;
    const bar = '='.repeat(100);
    console.log(`${bar}\nGPU SUITE SKIPPED: ${why}.\nEvery test in ${dir}/ is reported as skipped below. To run it: a machine with an NVIDIA GPU and a build\nagainst a CUDA LibTorch (docs/gpu.md). The GPU run is still owed.\n${bar}`);
  }
}
const reporter = process.stdout.isTTY ? 'spec' : 'tap';
// One file at a time on every machine: node's default (cores - 1 files at once) would run the
// timing-sensitive files (event loop, services, distributed ranks) beside others on a large
// machine, and each file's native work already uses every core.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-reporter=${reporter}`, ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
