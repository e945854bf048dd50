// The CPU side of every custom kernel (native/tests/ops_test.cc): SyncBN statistics, gradient
// sums and elementwise passes, the whole SyncBN op with autograd, and the one-pass pyramid
// pooling forward/backward, against plain ATen (at::batch_norm, at::adaptive_avg_pool2d and
// float64 formulas) on uneven sizes, channels-last inputs and float/double/bf16/half.
// test/gpu/kernels.test.mjs runs the same harness with --cuda on a GPU machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { nativeTestBinary } from './helpers/native-binary.mjs';

const harness = nativeTestBinary('ops_test');

test('custom op kernels on CPU equal ATen (ops_test)', { timeout: 10 * 60 * 1000 }, () => {
  assert.ok(existsSync(harness), `${harness} is built by npm run setup (CMake option SEGTOOL_NATIVE_TESTS)`);
  const run = spawnSync(harness, [], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' } });
  const lines = run.stdout.trim().split('\n');
  console.log(`# ${lines[lines.length - 1]}`);
  const failures = lines.filter((l) => l.startsWith('FAIL'));
  assert.equal(run.status, 0, `${failures.join('\n') || run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`);
  assert.match(lines[lines.length - 1], /^\d+ passed, 0 failed/);
  // Coverage the brief asks for: uneven sizes, channels-last, bf16 and half inputs.
  for (const needle of ['channels_last', 'BFloat16', 'Half', 'pyramid_pool bin 6 [2, 5, 60, 80]', 'vs at::adaptive_avg_pool2d', 'sync_batch_norm grad input']) {
    assert.ok(lines.some((l) => l.startsWith('PASS') && l.includes(needle)), `a passing check covers "${needle}"`);
  }
});
