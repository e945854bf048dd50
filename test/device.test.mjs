// Devices and precision on a CPU machine: device names and availability errors (ERR_DEVICE with
// what to do, from TypeScript and from native), bf16 refused on a CPU without bf16 instructions, device 'cpu' and to('cpu'),
// channels-last results equal to contiguous ones (inference and a training step), the runtime
// config keys (defaults, overrides, bad values, bf16 on cpu), --gpu on the CLI, and the GPU
// suite's and GPU benchmark's loud refusals when there is no GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { SegmentationModel, SegtoolError, cudaStatus, loadConfig, defaultConfig, getNumThreads, setNumThreads } from '../dist/index.js';
import { native } from '../dist/native.js';
import { applyOverrides, validateConfig } from '../dist/config/config.js';
import { withoutCpuBf16 } from './helpers/bf16.mjs';

const cuda = cudaStatus();
const noCuda = cuda.available ? 'this machine has CUDA: the unavailable-device errors cannot be provoked' : false;

function input(shape, seed = 1) {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1), shape };
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const isDeviceError = (e) => e instanceof SegtoolError && e.code === 'ERR_DEVICE' && /docs\/gpu\.md/.test(e.message) && /'cpu'/.test(e.message);

test('cudaStatus() describes this build', () => {
  assert.equal(typeof cuda.available, 'boolean');
  assert.equal(typeof cuda.deviceCount, 'number');
  assert.equal(typeof cuda.kernels, 'boolean');
  assert.match(cuda.torchVersion, /^\d+\.\d+/);
  assert.equal(cuda.available, cuda.deviceCount > 0);
});

test('device cuda / cuda:N without CUDA: ERR_DEVICE saying what to do (create and to)', { skip: noCuda }, async () => {
  for (const device of ['cuda', 'cuda:0', 'cuda:3']) {
    await assert.rejects(SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', device }), isDeviceError, device);
  }
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1' });
  assert.throws(() => model.to('cuda'), isDeviceError);
  assert.equal(model.device, 'cpu');
  model.dispose();
});

test('native refuses an unavailable device too (ERR_DEVICE, no crash)', { skip: noCuda }, async () => {
  const options = { encoder: 'mobilenetv2dilated', decoder: 'c1', fcDim: 320, numClass: 10, bnEps: 1e-5, dropout: 0.1, init: 'reference' };
  assert.throws(() => native().createModel({ ...options, device: 'cuda:0' }), (e) => e.code === 'ERR_DEVICE' && /docs\/gpu\.md/.test(e.message));
  assert.throws(() => native().createModel({ ...options, device: 'tpu' }), (e) => e.code === 'ERR_INVALID_ARG' && /'cpu', 'cuda' or 'cuda:N'/.test(e.message));
  const model = await native().createModel(options);
  assert.throws(() => model.to('cuda'), (e) => e.code === 'ERR_DEVICE'); // checked before queueing
  withoutCpuBf16(() => {
    assert.throws(() => native().createModel({ ...options, precision: 'bf16' }), (e) => e.code === 'ERR_INVALID_ARG' && /AVX512-BF16 or AMX/.test(e.message));
    assert.throws(() => model.setRuntime({ precision: 'bf16' }), (e) => e.code === 'ERR_INVALID_ARG' && /bf16/.test(e.message) && /fp32/.test(e.message));
  });
  model.dispose();
});

test('bad device names and runtime options are ERR_INVALID_ARG naming the option', async () => {
  for (const device of ['gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:01', 3]) {
    await assert.rejects(
      SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', device }),
      (e) => e.code === 'ERR_INVALID_ARG' && /device/.test(e.message) && /'cpu', 'cuda' or 'cuda:N'/.test(e.message),
      String(device),
    );
  }
  await assert.rejects(SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', precision: 'fp16' }), (e) => e.code === 'ERR_INVALID_ARG' && /fp32, bf16/.test(e.message));
  await assert.rejects(SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', channelsLast: 'yes' }), (e) => e.code === 'ERR_INVALID_ARG' && /channelsLast/.test(e.message));
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1' });
  assert.throws(() => model.setRuntime({ channelLast: true }), (e) => e.code === 'ERR_INVALID_ARG' && /Unknown runtime option "channelLast"/.test(e.message));
  assert.throws(() => model.to('gpu'), (e) => e.code === 'ERR_INVALID_ARG');
  model.dispose();
});

test("device 'cpu': create, info, to('cpu'), runtime options round-trip", async () => {
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', numClass: 5, device: 'cpu', channelsLast: true, cudnnBenchmark: true });
  assert.equal(model.device, 'cpu');
  assert.deepEqual(
    (({ device, precision, channelsLast, cudnnBenchmark }) => ({ device, precision, channelsLast, cudnnBenchmark }))(model.info),
    { device: 'cpu', precision: 'fp32', channelsLast: true, cudnnBenchmark: true },
  );
  await model.to('cpu');
  model.setRuntime({ channelsLast: false });
  assert.equal(model.info.channelsLast, false);
  assert.equal(model.info.cudnnBenchmark, true);
  const out = await model.forward(input([1, 3, 32, 48]));
  assert.deepEqual(out.logprob.shape, [1, 5, 4, 6]);
  out.logprob.dispose();
  model.dispose();
});

// channels_last on CPU: the same network in NHWC gives the contiguous results within float
// rounding (oneDNN picks other convolution algorithms; the PPM pooling and BN kernels read NHWC).
// Training: dropout 0 (the masks would differ), one step. How far one step may move in float32
// depends on the CPU, the BLAS and the thread count (BN over a few pixels, ReLUs at rounding
// distance from 0), so the layouts are judged against the spread measured in this run: the
// contiguous model again at another thread count (other summation orders, and for 1 x 1
// convolutions another ATen path) and on the input nudged by one ulp (how far rounding-level
// changes carry through one step of this network). Bound: the larger of the fixed floor (far
// below what a wrong layout gives) and 3 x the larger spread.
// UPerNet's first gradients are chaotic in float32 (test/fixtures/README.md: BN over a few pixels
// per channel), so for it only the forward and the loss are compared.
async function runLayout(encoder, decoder, channelsLast, x) {
  const model = await SegmentationModel.create({ encoder, decoder, numClass: 7, init: 'procedural', channelsLast, dropout: 0 });
  const { logprob, logprobDeepsup } = await model.forward(x);
  const h = logprob.shape[2], w = logprob.shape[3];
  const label = { data: BigInt64Array.from({ length: 2 * h * w }, (_, i) => BigInt((i * 7919) % 8) - 1n), shape: [2, h, w] };
  model.train();
  const step = await model.trainStep(x, label, { lrEncoder: 0.01, lrDecoder: 0.01 });
  const state = await model.stateDict();
  const weights = new Map([...state].map(([k, t]) => [k, Float64Array.from(t.data(), Number)]));
  for (const t of state.values()) t.dispose();
  const result = { logprob: logprob.data().slice(), deepsup: logprobDeepsup?.data().slice(), step, weights };
  logprob.dispose();
  logprobDeepsup?.dispose();
  model.dispose();
  return result;
}

function compareRuns(a, b) {
  const relativeStep = (key) => Math.abs(a.step[key] - b.step[key]) / Math.max(1e-12, Math.abs(a.step[key]));
  let weights = 0;
  for (const [key, wa] of a.weights) weights = Math.max(weights, maxAbsDiff(wa, b.weights.get(key)));
  return {
    logprob: Math.max(maxAbsDiff(a.logprob, b.logprob), a.deepsup ? maxAbsDiff(a.deepsup, b.deepsup) : 0),
    loss: Math.abs(a.step.loss - b.step.loss) / Math.max(1, Math.abs(a.step.loss)),
    gradNormEncoder: relativeStep('gradNormEncoder'),
    gradNormDecoder: relativeStep('gradNormDecoder'),
    weights,
  };
}

for (const [encoder, decoder, chaotic] of [['mobilenetv2dilated', 'c1_deepsup', false], ['resnet18dilated', 'ppm_deepsup', false], ['resnet50', 'upernet_lite', true]]) {
  test(`channels_last equals contiguous on CPU: ${encoder} + ${decoder} (inference and a training step)`, async () => {
    const x = input([2, 3, 45, 61], 3);
    const contiguous = await runLayout(encoder, decoder, false, x);
    const last = await runLayout(encoder, decoder, true, x);
    const threads = getNumThreads();
    setNumThreads(threads === 1 ? 2 : 1);
    let rerun;
    try {
      rerun = await runLayout(encoder, decoder, false, x);
    } finally {
      setNumThreads(threads);
    }
    const nudged = new Float32Array(x.data);
    const bits = new Int32Array(nudged.buffer);
    for (let i = 0; i < bits.length; i += 2) bits[i] += 1; // every other element one ulp further from 0
    const perturbed = await runLayout(encoder, decoder, false, { data: nudged, shape: x.shape });
    const got = compareRuns(contiguous, last);
    const threadSpread = compareRuns(contiguous, rerun);
    const nudgeSpread = compareRuns(contiguous, perturbed);
    const spread = Object.fromEntries(Object.keys(got).map((key) => [key, Math.max(threadSpread[key], nudgeSpread[key])]));
    const floors = { logprob: 5e-4, loss: 2e-4, gradNormEncoder: 2e-3, gradNormDecoder: 2e-3, weights: 2e-3 };
    const checked = chaotic ? ['logprob', 'loss'] : Object.keys(floors);
    for (const key of checked) {
      const bound = Math.max(floors[key], 3 * spread[key]);
      console.log(`# ${encoder}+${decoder} ${key}: channels_last ${got[key].toExponential(2)}, spread ${threadSpread[key].toExponential(2)} (threads) ${nudgeSpread[key].toExponential(2)} (1-ulp input), bound ${bound.toExponential(2)}`);
      assert.ok(got[key] <= bound, `${key}: channels_last differs by ${got[key]} (bound ${bound}; contiguous at another thread count: ${threadSpread[key]}, on a 1-ulp nudged input: ${nudgeSpread[key]})`);
    }
  });
}

test('config: TRAIN/VAL/TEST runtime keys, defaults, overrides and bad values', async () => {
  const cfg = defaultConfig();
  for (const s of ['TRAIN', 'VAL', 'TEST']) {
    assert.deepEqual([cfg[s].device, cfg[s].precision, cfg[s].channels_last, cfg[s].cudnn_benchmark], ['cpu', 'fp32', false, false]);
  }
  const gpu = applyOverrides(cfg, ['TRAIN.device', 'cuda:1', 'TRAIN.precision', 'bf16', 'TEST.channels_last', 'true', 'VAL.device', 'CUDA']);
  assert.equal(gpu.TRAIN.device, 'cuda:1');
  assert.equal(gpu.TRAIN.precision, 'bf16');
  assert.equal(gpu.TEST.channels_last, true);
  assert.equal(gpu.VAL.device, 'cuda');
  assert.throws(() => applyOverrides(cfg, ['TRAIN.device', 'gpu0']), (e) => e.code === 'ERR_CONFIG' && /'cpu', 'cuda' or 'cuda:N' for TRAIN\.device/.test(e.message));
  // bf16 on the CPU depends on the CPU: the config takes it, the model checks it (test/bf16.test.mjs).
  assert.equal(applyOverrides(cfg, ['TEST.precision', 'bf16']).TEST.precision, 'bf16');
  assert.throws(() => applyOverrides(cfg, ['TRAIN.precision', 'half']), (e) => e.code === 'ERR_CONFIG' && /one of fp32, bf16/.test(e.message));
  assert.throws(() => applyOverrides(cfg, ['TRAIN.devise', 'cpu']), (e) => e.code === 'ERR_CONFIG' && /did you mean TRAIN\.device/.test(e.message));
  // A config saved before these keys existed (a checkpoint's) still validates, with the defaults.
  const old = JSON.parse(JSON.stringify(defaultConfig()));
  for (const s of ['TRAIN', 'VAL', 'TEST']) for (const k of ['device', 'precision', 'channels_last', 'cudnn_benchmark']) delete old[s][k];
  const restored = validateConfig(old, 'an old checkpoint');
  assert.equal(restored.TRAIN.device, 'cpu');
  assert.throws(() => validateConfig({ ...old, DIR: undefined }), (e) => e.code === 'ERR_CONFIG' && /DIR/.test(e.message));
  const bundled = await loadConfig('mobilenetv2dilated-c1_deepsup', ['TEST.device', 'cuda:0']);
  assert.equal(bundled.TEST.device, 'cuda:0');
});

test('train()/segment with a CUDA device in the config: ERR_DEVICE before any work', { skip: noCuda }, async () => {
  const { train, loadModel } = await import('../dist/index.js');
  await assert.rejects(train(defaultConfig(), { overrides: ['TRAIN.device', 'cuda', 'DIR', '/nonexistent/never-written'] }), isDeviceError);
  await assert.rejects(loadModel(defaultConfig(), { overrides: ['TEST.device', 'cuda:0'], checkpoint: 'none' }), isDeviceError);
});

test('segtool test --gpu 0 without CUDA fails with the device message', { skip: noCuda }, () => {
  const run = spawnSync(process.execPath, ['bin/segtool', 'test', '--imgs', 'test/fixtures', '--checkpoint', 'none', '--gpu', '0', '--result', '/tmp/segtool-gpu-flag-test'], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  assert.notEqual(run.status, 0);
  assert.match(run.stdout + run.stderr, /TEST\.device 'cuda:0' is not available/);
});

test('npm run test:gpu says loudly that it skipped (no GPU / CPU-only LibTorch) and exits 0', { skip: noCuda, timeout: 300000 }, () => {
  // Without NODE_TEST_CONTEXT: a nested `node --test` would report to this runner, not print.
  const { NODE_TEST_CONTEXT, ...env } = process.env;
  const run = spawnSync(process.execPath, ['scripts/run-tests.mjs', '--gpu'], { encoding: 'utf8', env: { ...env, OMP_NUM_THREADS: '1' } });
  assert.equal(run.status, 0, run.stdout.slice(-3000) + run.stderr.slice(-2000));
  assert.match(run.stdout, /GPU SUITE SKIPPED/);
  assert.match(run.stdout, /# skipped [1-9]/);
  assert.match(run.stdout, /# fail 0/);
});

test('bench/gpu refuses clearly without a GPU (exit 2)', { skip: noCuda }, () => {
  const run = spawnSync(process.execPath, ['bench/gpu/run.mjs'], { encoding: 'utf8' });
  assert.equal(run.status, 2, run.stdout + run.stderr);
  assert.match(run.stderr, /bench\/gpu needs a CUDA GPU/);
  assert.match(run.stderr, /docs\/gpu\.md/);
});
