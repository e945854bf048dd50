// Models on CUDA against the same models on the CPU: inference parity (log-probabilities and
// labels) with the fixtures' procedural weights, a few training steps (first loss equal to the
// CPU's, losses finite), bf16 autocast (float32 outputs close to fp32), channels-last equal to
// contiguous, and outputs always returned on the CPU. Tolerances allow cuDNN's TF32 convolutions.
import assert from 'node:assert/strict';
import { SegmentationModel } from '../../dist/index.js';
import { gpuTest } from './gpu-env.mjs';

function input(shape, seed = 1) {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1), shape };
}

function compare(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return { worst };
}

function labelsOf(logprob, shape) {
  const [n, c, h, w] = shape;
  const out = new Int32Array(n * h * w);
  for (let b = 0; b < n; b++)
    for (let p = 0; p < h * w; p++) {
      let best = 0;
      for (let k = 1; k < c; k++) if (logprob[(b * c + k) * h * w + p] > logprob[(b * c + best) * h * w + p]) best = k;
      out[b * h * w + p] = best;
    }
  return out;
}

async function features(model, x) {
  const { logprob, logprobDeepsup } = await model.forward(x);
  const out = { logprob: logprob.data().slice(), shape: logprob.shape, deepsup: logprobDeepsup?.data().slice() };
  logprob.dispose();
  logprobDeepsup?.dispose();
  return out;
}

const CASES = [
  ['mobilenetv2dilated', 'c1_deepsup'],
  ['resnet50dilated', 'ppm_deepsup'],
  ['resnet50', 'upernet'],
];

for (const [encoder, decoder] of CASES) {
  gpuTest(`inference parity CPU vs cuda: ${encoder} + ${decoder}`, {}, async () => {
    const x = input([2, 3, 97, 131]);
    const cpu = await SegmentationModel.create({ encoder, decoder, numClass: 21, init: 'procedural' });
    const a = await features(cpu, x);
    await cpu.to('cuda');
    assert.equal(cpu.device, 'cuda:0');
    const b = await features(cpu, x);
    cpu.dispose();
    const { worst } = compare(a.logprob, b.logprob);
    assert.ok(worst < 2e-2, `log-probabilities differ by ${worst}`);
    const la = labelsOf(a.logprob, a.shape), lb = labelsOf(b.logprob, b.shape);
    const agree = la.filter((v, i) => v === lb[i]).length / la.length;
    assert.ok(agree > 0.99, `labels agree on ${(agree * 100).toFixed(2)}% of pixels`);
  });
}

gpuTest('training on cuda: first loss equals the CPU one, a few steps stay finite and decrease', {}, async () => {
  const x = input([2, 3, 65, 97], 5);
  const losses = {};
  for (const device of ['cpu', 'cuda']) {
    const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'ppm_deepsup', numClass: 8, init: 'procedural', bnMomentum: 0.1, device });
    const h = Math.ceil(65 / 8), w = Math.ceil(97 / 8);
    const label = { data: BigInt64Array.from({ length: 2 * h * w }, (_, i) => BigInt(Math.floor(i / 13) % 8)), shape: [2, h, w] };
    model.train();
    losses[device] = [];
    for (let i = 0; i < 4; i++) losses[device].push((await model.trainStep(x, label, { lrEncoder: 0.01, lrDecoder: 0.01 })).loss);
    model.dispose();
  }
  assert.ok(Math.abs(losses.cpu[0] - losses.cuda[0]) <= 5e-3 * losses.cpu[0], `first loss cpu ${losses.cpu[0]} cuda ${losses.cuda[0]}`);
  assert.ok(losses.cuda.every(Number.isFinite), `losses ${losses.cuda}`);
  assert.ok(losses.cuda[3] < losses.cuda[0], `losses ${losses.cuda} decrease`);
});

gpuTest('bf16 autocast on cuda: float32 outputs close to fp32, training steps finite', {}, async () => {
  const x = input([2, 3, 97, 129], 9);
  const fp32 = await SegmentationModel.create({ encoder: 'resnet50dilated', decoder: 'ppm_deepsup', numClass: 21, init: 'procedural', device: 'cuda' });
  const bf16 = await SegmentationModel.create({ encoder: 'resnet50dilated', decoder: 'ppm_deepsup', numClass: 21, init: 'procedural', device: 'cuda', precision: 'bf16' });
  assert.equal(bf16.info.precision, 'bf16');
  const a = await features(fp32, x), b = await features(bf16, x);
  const { logprob } = await bf16.forward(x);
  assert.equal(logprob.dtype, 'float32');
  logprob.dispose();
  const la = labelsOf(a.logprob, a.shape), lb = labelsOf(b.logprob, b.shape);
  const agree = la.filter((v, i) => v === lb[i]).length / la.length;
  assert.ok(agree > 0.9, `bf16 labels agree with fp32 on ${(agree * 100).toFixed(1)}%`);
  const h = Math.ceil(97 / 8), w = Math.ceil(129 / 8);
  const label = { data: BigInt64Array.from({ length: 2 * h * w }, (_, i) => BigInt(i % 21)), shape: [2, h, w] };
  bf16.train();
  for (let i = 0; i < 3; i++) {
    const r = await bf16.trainStep(x, label, { lrEncoder: 0.01, lrDecoder: 0.01 });
    assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.gradNormEncoder), `step ${i}: ${JSON.stringify(r)}`);
  }
  const state = await bf16.stateDict(); // weights stay float32 under autocast

  assert.equal(state.get('encoder.conv1.weight').dtype, 'float32');
  for (const t of state.values()) t.dispose();
  await assert.rejects(bf16.to('cpu'), (e) => e.code === 'ERR_INVALID_ARG' && /bf16/.test(e.message), 'bf16 cannot move to the CPU');
  fp32.dispose();
  bf16.dispose();
});

gpuTest('channels_last on cuda equals contiguous (cudnn benchmark on)', {}, async () => {
  const x = input([2, 3, 64, 96], 11);
  const outs = [];
  for (const channelsLast of [false, true]) {
    const model = await SegmentationModel.create({ encoder: 'resnet50', decoder: 'upernet', numClass: 21, init: 'procedural', device: 'cuda', channelsLast, cudnnBenchmark: true });
    outs.push(await features(model, x));
    model.dispose();
  }
  const { worst } = compare(outs[0].logprob, outs[1].logprob);
  assert.ok(worst < 2e-2, `channels_last differs by ${worst}`);
});

gpuTest('fused inference graph on cuda equals the unfused one, and follows to(cuda)', {}, async () => {
  // BatchNorm folded into the convs (native/nn/fuse.h) on CUDA; tolerance allows TF32 convolutions.
  const x = input([1, 3, 97, 131], 13);
  const model = await SegmentationModel.create({ encoder: 'resnet50dilated', decoder: 'ppm_deepsup', numClass: 21, init: 'procedural' });
  const cpuFused = await features(model, x); // folds built on the CPU ...
  await model.to('cuda'); // ... must not be used on cuda
  const fused = await features(model, x);
  model.setRuntime({ fuse: false });
  const unfused = await features(model, x);
  model.dispose();
  for (const [what, a, b] of [['fused vs unfused', fused, unfused], ['cuda fused vs cpu fused', fused, cpuFused]]) {
    const { worst } = compare(a.logprob, b.logprob);
    assert.ok(worst < 2e-2, `${what}: log-probabilities differ by ${worst}`);
  }
});
