// The CUDA kernels against the CPU math: native/tests/ops_test.cc --cuda runs every kernel check
// of the CPU suite with the tensors on cuda:0 (SyncBN statistics, grad sums, elementwise passes,
// the whole op with autograd; the one-pass pyramid pooling forward/backward), contiguous and
// channels-last, float/bf16/half (float accumulation), against float64 references.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { nativeTestBinary } from '../helpers/native-binary.mjs';
import { gpuTest } from './gpu-env.mjs';

gpuTest('CUDA kernels equal the CPU math (ops_test --cuda)', { kernels: true }, () => {
  const harness = nativeTestBinary('ops_test');
  assert.ok(existsSync(harness), `${harness} is built with the addon (CMake option SEGTOOL_NATIVE_TESTS)`);
  const run = spawnSync(harness, ['--cuda'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const lines = run.stdout.trim().split('\n');
  console.log(`# ${lines[lines.length - 1]}`);
  assert.equal(run.status, 0, `${lines.filter((l) => l.startsWith('FAIL')).join('\n') || run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`);
  assert.match(lines[lines.length - 1], /passed, 0 failed \(CUDA vs CPU math\)/);
});
