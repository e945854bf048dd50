// Synchronized BatchNorm: with 2 and 3 CPU ranks (Gloo on 127.0.0.1) it equals BatchNorm over
// the ranks' batches concatenated (output, input gradient, summed weight/bias gradients,
// running statistics), with different batch sizes and image sizes per rank and an empty rank;
// 'reference' mode equals a direct implementation of the CSAIL reference's formula. The rank
// programs are in helpers/dist-rank.mjs (role "syncbn"). Tolerances: float64 1e-9, float32 2e-4
// (relative + absolute).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SegtoolError, Tensor } from '../dist/index.js';
import { batchNorm, syncBatchNorm } from '../dist/distributed/index.js';
import { assertAllOk, runRanks } from './helpers/dist.mjs';

// [offset, spread] per channel; channel 2 is nearly constant (variance ~3e-9 < eps), where the
// reference's max(var, eps) differs from var + eps and passes no gradient through var.
const FOUR_CHANNELS = [[0.5, 1], [-2, 3], [5, 1e-4], [1, 0.2]];
const THREE_CHANNELS = [[0.5, 1], [-2, 3], [1, 0.2]];

function values(n, seed) {
  let s = seed;
  return Float64Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 4 - 2);
}

function assertClose(actual, expected, tol, what) {
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(diff <= tol + tol * Math.abs(expected[i]), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

for (const [dtype, tol] of [['float64', 1e-10], ['float32', 1e-5]]) {
  test(`world size 1 (no communicator) equals at::batch_norm (${dtype})`, async () => {
    const Typed = dtype === 'float64' ? Float64Array : Float32Array;
    const shape = [3, 4, 5, 6];
    const n = 3 * 4 * 5 * 6;
    const t = (data, dims) => Tensor.from(Typed.from(data), dims);
    const common = { input: t(values(n, 1), shape), gradOutput: t(values(n, 2), shape), weight: t(values(4, 3), [4]), bias: t(values(4, 4), [4]), momentum: 0.1, eps: 1e-5 };
    const mine = { runningMean: t([0, 0, 0, 0], [4]), runningVar: t([1, 1, 1, 1], [4]) };
    const truth = { runningMean: t([0, 0, 0, 0], [4]), runningVar: t([1, 1, 1, 1], [4]) };
    const a = await syncBatchNorm(null, { ...common, ...mine });
    const b = await batchNorm({ ...common, ...truth });
    for (const key of ['output', 'gradInput', 'gradWeight', 'gradBias']) assertClose(a[key].data(), b[key].data(), tol, key);
    assertClose(mine.runningMean.data(), truth.runningMean.data(), tol, 'running_mean');
    assertClose(mine.runningVar.data(), truth.runningVar.data(), tol, 'running_var');
  });
}

test('SyncBN arguments are checked in TypeScript', async () => {
  const x = Tensor.from(new Float32Array(24), [2, 3, 2, 2]);
  const g = Tensor.from(new Float32Array(24), [2, 3, 2, 2]);
  await assert.rejects(syncBatchNorm(null, { input: x, gradOutput: g, weight: Tensor.from(new Float32Array(2), [2]) }), (e) => e instanceof SegtoolError && e.code === 'ERR_INVALID_ARG' && /args\.weight/.test(e.message));
  await assert.rejects(syncBatchNorm(null, { input: x, gradOutput: g, mode: 'reference' }), (e) => e.code === 'ERR_INVALID_ARG' && /tmpRunningMean/.test(e.message));
  await assert.rejects(syncBatchNorm(null, { input: x, gradOutput: Tensor.from(new Float32Array(12), [1, 3, 2, 2]) }), (e) => e.code === 'ERR_INVALID_ARG' && /gradOutput/.test(e.message));
  await assert.rejects(syncBatchNorm({}, { input: x, gradOutput: g }), (e) => e.code === 'ERR_INVALID_ARG' && /communicator/.test(e.message));
});

test('2 ranks, float64, exact: equals BatchNorm on the concatenated batch (different N, H, W), 2 steps', async () => {
  const results = await runRanks('syncbn', 2, {
    shapes: [[2, 4, 5, 7], [3, 4, 3, 4]],
    dtype: 'float64',
    mode: 'exact',
    momentum: 0.1,
    eps: 1e-5,
    steps: 2,
    channelStats: FOUR_CHANNELS,
  });
  assertAllOk(results);
});

test('3 ranks, float32, exact, one rank with an empty batch', async () => {
  const results = await runRanks('syncbn', 3, {
    shapes: [[2, 3, 6, 5], [0, 3, 4, 4], [3, 3, 3, 7]],
    dtype: 'float32',
    mode: 'exact',
    momentum: 0.3,
    eps: 1e-5,
    steps: 2,
    channelStats: THREE_CHANNELS,
  });
  assertAllOk(results);
});

test("3 ranks, reference mode: the reference's formula and buffers (_tmp_running_*, _running_iter), an empty rank, 3 steps", async () => {
  const results = await runRanks('syncbn', 3, {
    shapes: [[2, 4, 3, 3], [2, 4, 5, 2], [0, 4, 3, 3]],
    dtype: 'float64',
    mode: 'reference',
    momentum: 0.1,
    eps: 1e-5,
    steps: 3,
    channelStats: FOUR_CHANNELS,
  });
  assertAllOk(results);
});
