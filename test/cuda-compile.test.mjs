// CUDA code must compile on every machine here (nvcc is installed), GPU or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

test('every native/ops/cuda/*.cu compiles with nvcc', (t) => {
  const sources = readdirSync('native/ops/cuda').filter((f) => f.endsWith('.cu'));
  assert.ok(sources.length > 0, 'there are CUDA sources to check');
  const run = spawnSync('bash', ['scripts/check-cuda.sh'], { encoding: 'utf8' });
  if (run.status === 3) {
    t.skip(`SKIPPED LOUDLY: ${run.stderr.trim()}`);
    return;
  }
  assert.equal(run.status, 0, run.stderr);
  for (const source of sources) assert.match(run.stdout, new RegExp(`compiled native/ops/cuda/${source}`));
  // The ATen glue of the kernels (SEGTOOL_WITH_CUDA host code) is syntax-checked when LibTorch's
  // c10/cuda headers are installed (they are with Debian's libtorch-dev).
  if (!/skipped host glue check/.test(run.stdout)) {
    for (const glue of ['native/ops/batch_norm_ops.cc', 'native/ops/ppm_pool.cc']) assert.match(run.stdout, new RegExp(`checked ${glue}`));
  }
});
