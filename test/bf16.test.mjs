// bfloat16 on the CPU (issue 18 item 2): precision 'bf16' runs where the CPU has AVX512-BF16 or
// AMX (detected at run time) and is refused with the reason everywhere else. Where it runs:
// - all 15 fixture networks give bf16-sized differences from float32 (not zero: it really is
//   bf16; not more than bf16 rounding through a deep network: it is not broken), fused and not;
// - a model fitted to the real ADE20K fixture image predicts the same class as float32 on at
//   least 99 % of its pixels at the reference's 5 scales (through the Segmenter too);
// - a bf16 training step keeps weights and optimizer state in float32 and follows float32's loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentationModel, Segmenter, Tensor, cpuStatus, createEvalLoader, defaultConfig, loadModel, manualSeed, predictMultiScale, saveReferenceWeights } from '../dist/index.js';
import { readSafetensors } from './helpers/safetensors.mjs';
import { relativeMaxError } from './helpers/compare.mjs';
import { withoutCpuBf16 } from './helpers/bf16.mjs';

const cpu = cpuStatus();
const noBf16 = cpu.bf16 ? false : `this CPU cannot run bf16 (${cpu.bf16Unsupported}); the refusal is tested instead`;
const index = JSON.parse(readFileSync('test/fixtures/models/index.json', 'utf8'));
const fixtureDir = 'test/fixtures/data/';
const STEP = { lrEncoder: 0.02, lrDecoder: 0.02, momentum: 0.9, weightDecay: 1e-4 };

const isRefusal = (e) => e.code === 'ERR_DEVICE' && /precision 'bf16'/.test(e.message) && /AVX512-BF16 or AMX/.test(e.message) && /fp32/.test(e.message);

test('cpuStatus: what CPUID says, and bf16 exactly when AVX512-BF16 or AMX-BF16 is there', () => {
  assert.equal(typeof cpu.avx512, 'boolean');
  assert.equal(cpu.bf16, (cpu.avx512 && cpu.avx512Bf16) || cpu.amxBf16);
  assert.equal(cpu.bf16Unsupported === '', cpu.bf16);
  const hidden = withoutCpuBf16(() => cpuStatus());
  assert.equal(hidden.bf16, false);
  assert.match(hidden.bf16Unsupported, /SEGTOOL_CPU_BF16=0/);
});

test('bf16 on a CPU without AVX512-BF16/AMX: every entry point refuses, naming what is missing and what to use', async () => {
  const refuse = async (what, fn) => {
    await assert.rejects(withoutCpuBf16(fn), isRefusal, what);
  };
  await refuse('SegmentationModel.create', () => SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', precision: 'bf16' }));
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', numClass: 5 });
  try {
    await refuse('setRuntime', async () => model.setRuntime({ precision: 'bf16' }));
    assert.equal(model.info.precision, 'fp32', 'a refused setRuntime changes nothing');
  } finally {
    model.dispose();
  }
  const cfg = { ...defaultConfig(), MODEL: { ...defaultConfig().MODEL, arch_encoder: 'mobilenetv2dilated', arch_decoder: 'c1_deepsup', fc_dim: 320, pretrained: false } };
  await refuse('loadModel with TEST.precision bf16', () => loadModel(cfg, { overrides: ['TEST.precision', 'bf16'], checkpoint: 'none' }));
  await refuse('Segmenter precision option', () => Segmenter.load({ config: cfg, weights: [], precision: 'bf16' }));
});

for (const [name, spec] of Object.entries(index)) {
  test(`${name}: bf16 eval is float32 within bfloat16 rounding, fused and unfused`, { skip: noBf16 }, async () => {
    const { tensors: t } = readSafetensors(`test/fixtures/models/${name}.safetensors`);
    const model = await SegmentationModel.create({ encoder: spec.encoder, decoder: spec.decoder, fcDim: spec.fc_dim, numClass: spec.num_class, init: 'procedural' });
    try {
      const run = async (runtime) => {
        model.setRuntime(runtime);
        const out = await model.forward(t['eval.input']);
        assert.equal(out.logprob.dtype, 'float32', 'outputs stay float32');
        const values = out.logprob.data().slice();
        out.logprob.dispose();
        out.logprobDeepsup?.dispose();
        return values;
      };
      const fp32 = await run({ precision: 'fp32' });
      assert.equal(model.info.precision, 'fp32');
      const builds = model.info.fusedBuilds;
      const bf16 = await run({ precision: 'bf16' });
      assert.equal(model.info.precision, 'bf16');
      assert.ok(model.info.fusedBuilds > builds, 'the bf16 graph folded its own (bfloat16) weights');
      const unfused = await run({ precision: 'bf16', fuse: false });
      // bfloat16 keeps 8 significant bits (2^-8 = 0.0039 relative): a few of those through the
      // network, never the 1e-6 of float32 reassociation.
      for (const [what, got] of [['fused', bf16], ['unfused', unfused]]) {
        const e = relativeMaxError(got, fp32);
        assert.ok(e > 1e-4, `${what} bf16 equals float32 (${e.toExponential(2)}): bf16 did not run`);
        assert.ok(e < 0.05, `${what} bf16 vs float32: ${e.toFixed(4)} of the log-probability range (bound 0.05)`);
      }
      // Back to float32: the float32 numbers again, within float32 rounding (the bf16 folds are not reused).
      const again = relativeMaxError(await run({ precision: 'fp32' }), fp32);
      assert.ok(again < 1e-5, `float32 after bf16 differs by ${again}`);
    } finally {
      model.dispose();
    }
  });
}

/** The real fixture image's five reference scales and its annotation (value - 1, -1 unlabelled). */
async function realImage() {
  const loader = await createEvalLoader({ records: [{ image: `${fixtureDir}ADE_val_00001519.jpg`, annotation: `${fixtureDir}ADE_val_00001519.png` }], workers: 0 });
  const { value } = await loader.next();
  await loader.close();
  return value;
}

/** The annotation at 1/8 of an input's size (nearest), as a training label. */
function labelAtFeatures(label, input) {
  const [, , H, W] = input.shape;
  const [, LH, LW] = label.shape;
  const h = H / 8, w = W / 8;
  const out = new BigInt64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[y * w + x] = BigInt(label.data[Math.floor(((y + 0.5) * LH) / h) * LW + Math.floor(((x + 0.5) * LW) / w)]);
  }
  return Tensor.from(out, [1, h, w], 'int64');
}

function agreement(a, b) {
  let same = 0;
  for (let i = 0; i < a.length; i++) same += a[i] === b[i];
  return same / a.length;
}

test('the real image at 5 scales: bf16 predicts float32\'s class on >= 99 % of the pixels (a model fitted to it)', { skip: noBf16 }, async (t) => {
  const sample = await realImage();
  const inputs = sample.images.map((i) => Tensor.from(i.data, i.shape));
  manualSeed(18);
  // Procedural weights give near-ties everywhere (random logits); a model fitted to the image has
  // the confident predictions a trained one has. It fits at the three smaller scales; then its
  // BatchNorm statistics are the fitted weights' own, averaged over the five scales (momentum
  // 1/n: the running averages of a fast fit lag behind it).
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', init: 'reference', bnMomentum: 0.1 });
  const dir = mkdtempSync(join(tmpdir(), 'segtool-bf16-'));
  try {
    const fitLabels = inputs.slice(0, 3).map((input) => labelAtFeatures(sample.label, input));
    model.train();
    let last;
    for (let i = 0; i < 40; i++) last = await model.trainStep(inputs[i % 3], fitLabels[i % 3], STEP);
    assert.ok(last.accuracy > 0.8, `the fit reached ${last.accuracy} pixel accuracy`);
    for (const [i, input] of inputs.entries()) {
      model.setBnMomentum(1 / (i + 1));
      const calibration = await model.forward(input);
      calibration.logprob.dispose();
      calibration.logprobDeepsup?.dispose();
    }
    model.eval();

    const predictions = {};
    for (const precision of ['fp32', 'bf16']) {
      model.setRuntime({ precision });
      predictions[precision] = (await predictMultiScale(model, inputs, sample.height, sample.width)).labels;
    }
    let labelled = 0, correct = 0;
    for (let i = 0; i < sample.label.data.length; i++) {
      if (sample.label.data[i] < 0) continue;
      labelled++;
      correct += predictions.fp32[i] === sample.label.data[i];
    }
    assert.ok(correct / labelled > 0.7, `float32 is a fitted model here (pixel accuracy ${(correct / labelled).toFixed(3)})`);
    const agree = agreement(predictions.fp32, predictions.bf16);
    assert.ok(agree >= 0.99, `bf16 agrees with float32 on ${(agree * 100).toFixed(2)} % of the pixels (>= 99 %)`);

    // The same through the Segmenter's precision option (the service path), from saved weights.
    const { encoder, decoder } = await saveReferenceWeights(model, dir, 1);
    const jpeg = readFileSync(`${fixtureDir}ADE_val_00001519.jpg`);
    const cfg = {
      MODEL: { arch_encoder: 'mobilenetv2dilated', arch_decoder: 'c1_deepsup', fc_dim: 320, pretrained: false },
      DATASET: { imgSizes: [300, 375, 450, 525, 600], imgMaxSize: 1000 },
    };
    const labels = {};
    for (const precision of ['fp32', 'bf16']) {
      const segmenter = await Segmenter.load({ config: cfg, weights: [encoder, decoder], precision });
      try {
        labels[precision] = (await segmenter.segment(jpeg, { outputs: ['labels'] })).labels.slice();
      } finally {
        await segmenter.close();
      }
    }
    const served = agreement(labels.fp32, labels.bf16);
    t.diagnostic(`agreement bf16 vs fp32 at 5 scales: predictMultiScale ${(agree * 100).toFixed(3)} %, Segmenter ${(served * 100).toFixed(3)} %; fp32 pixel accuracy ${((100 * correct) / labelled).toFixed(1)} %`);
    assert.ok(served >= 0.99, `Segmenter bf16 vs fp32: ${(served * 100).toFixed(2)} % of the pixels agree`);
    assert.ok(agreement(labels.fp32, predictions.fp32) > 0.999, 'the Segmenter ran the fitted model at the same 5 scales');
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bf16 training step: float32 weights and optimizer state, float32\'s loss within bf16 rounding', { skip: noBf16 }, async () => {
  const { tensors: t } = readSafetensors('test/fixtures/models/resnet18dilated-c1_deepsup.safetensors');
  const spec = index['resnet18dilated-c1_deepsup'];
  const options = { encoder: spec.encoder, decoder: spec.decoder, fcDim: spec.fc_dim, numClass: spec.num_class, init: 'procedural' };
  const fp32 = await SegmentationModel.create(options);
  const bf16 = await SegmentationModel.create({ ...options, precision: 'bf16' });
  try {
    const losses = { fp32: [], bf16: [] };
    for (const [key, model] of [['fp32', fp32], ['bf16', bf16]]) {
      model.train().setDropout(0);
      for (let i = 0; i < 3; i++) losses[key].push((await model.trainStep(t['train.input'], t['train.label'], STEP)).loss);
    }
    for (let i = 0; i < 3; i++) {
      const rel = Math.abs(losses.bf16[i] - losses.fp32[i]) / losses.fp32[i];
      assert.ok(rel < 0.02, `step ${i}: bf16 loss ${losses.bf16[i]} vs float32 ${losses.fp32[i]} (${(rel * 100).toFixed(2)} %)`);
    }
    assert.notEqual(losses.bf16[0], losses.fp32[0], 'the bf16 step computed in bfloat16');
    assert.ok(losses.bf16[2] < losses.bf16[0], `bf16 training lowers the loss: ${losses.bf16.join(', ')}`);
    const state = await bf16.stateDict();
    for (const [key, tensor] of state) {
      if (!key.endsWith('num_batches_tracked')) assert.equal(tensor.dtype, 'float32', `${key} stays float32`);
      tensor.dispose();
    }
    const momentum = await bf16.optimizerState();
    assert.ok(momentum.size > 0);
    for (const [key, tensor] of momentum) {
      assert.equal(tensor.dtype, 'float32', `momentum of ${key} stays float32`);
      tensor.dispose();
    }
  } finally {
    fp32.dispose();
    bf16.dispose();
  }
});
