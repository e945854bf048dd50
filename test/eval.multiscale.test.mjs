// Multi-scale inference (probabilities of every scale resized to the image and averaged) and
// evaluate()'s dataset metrics, checked against the pieces computed one by one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentationModel, MetricsAccumulator, defaultConfig, mergeConfig, readLabel, readOdgt, valTargetSizes, liveTensorCount } from '../dist/index.js';
import { predictMultiScale } from '../dist/inference/infer.js';
import { evaluate } from '../dist/eval/evaluate.js';
import { createEvalLoader } from '../dist/data/index.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';

const root = mkdtempSync(join(tmpdir(), 'segtool-eval-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'c1', numClass: 150, init: 'procedural' });
test.after(() => model.dispose());

function randomInput(h, w, seed) {
  const data = new Float32Array(3 * h * w);
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = (x / 2 ** 32) * 4 - 2;
  }
  return { data, shape: [1, 3, h, w] };
}

// The full-size path computed piece by piece in JS: every scale's softmax at [h, w] (one
// [150, h, w] buffer each, as the reference), mirrored inputs mirrored back, averaged.
async function expectedProbabilities(inputs, h, w, { flip = false } = {}) {
  const runs = [];
  for (const input of inputs) {
    runs.push({ input, mirrored: false });
    if (flip) runs.push({ input: mirror(input), mirrored: true });
  }
  const expected = new Float32Array(150 * h * w);
  for (const { input, mirrored } of runs) {
    const p = await model.predict(input, { segSize: [h, w] });
    const values = p.data();
    for (let c = 0; c < 150; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = (c * h + y) * w + x;
          const v = values[(c * h + y) * w + (mirrored ? w - 1 - x : x)];
          expected[i] = expected[i] + Math.fround(v / runs.length);
        }
      }
    }
    p.dispose();
  }
  return expected;
}

function mirror({ data, shape }) {
  const [n, ch, h, w] = shape;
  const out = new Float32Array(data.length);
  for (let r = 0; r < n * ch * h; r++) for (let x = 0; x < w; x++) out[r * w + x] = data[r * w + w - 1 - x];
  return { data: out, shape };
}

/** The reference's argmax over classes of [numClass, pixels] probabilities (first on ties), as a check. */
function argmaxClasses(probabilities, numClass) {
  const pixels = probabilities.length / numClass;
  const labels = new Int32Array(pixels);
  const confidence = probabilities.slice(0, pixels);
  for (let c = 1; c < numClass; c++) {
    for (let i = 0; i < pixels; i++) {
      const p = probabilities[c * pixels + i];
      if (p > confidence[i]) {
        confidence[i] = p;
        labels[i] = c;
      }
    }
  }
  return { labels, confidence };
}

// Labels must agree except where the top two expected probabilities are within `margin`.
function assertLabels(got, probs, pixels, margin = 1e-5) {
  const { labels } = argmaxClasses(probs, 150);
  let differ = 0;
  for (let i = 0; i < pixels; i++) {
    if (got[i] === labels[i]) continue;
    const gap = Math.abs(probs[labels[i] * pixels + i] - probs[got[i] * pixels + i]);
    assert.ok(gap < margin, `pixel ${i}: class ${got[i]} vs ${labels[i]}, probability gap ${gap}`);
    differ++;
  }
  return differ;
}

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('predictMultiScale averages each scale\'s probabilities at the requested size (native, row by row)', async () => {
  const inputs = [randomInput(40, 48, 1), randomInput(56, 64, 2)];
  const h = 30, w = 36, pixels = h * w;
  const out = await predictMultiScale(model, inputs, h, w, { probabilities: true });
  assert.equal(out.numClass, 150);
  assert.equal(out.probabilities.length, 150 * pixels);
  const expected = await expectedProbabilities(inputs, h, w);
  const err = maxAbsDiff(out.probabilities, expected);
  assert.ok(err < 2e-6, `max |probability error| ${err}`);
  assertLabels(out.labels, expected, pixels);
  const { confidence } = argmaxClasses(expected, 150);
  assert.ok(maxAbsDiff(out.confidence, confidence) < 2e-6);
  for (const i of [0, 17, pixels - 1]) {
    let sum = 0;
    for (let c = 0; c < 150; c++) sum += out.probabilities[c * pixels + i];
    assert.ok(Math.abs(sum - 1) < 1e-4);
  }
  // Without probabilities: the same labels and confidence, and no full-size buffer.
  const lean = await predictMultiScale(model, inputs, h, w);
  assert.equal(lean.probabilities, undefined);
  assert.deepEqual(lean.labels, out.labels);
  assert.deepEqual(lean.confidence, out.confidence);
});

test('predictClasses: one scale, flip, batches, and sizes that are not multiples of the stride', async () => {
  const input = randomInput(37, 53, 5);
  for (const [h, w] of [[37, 53], [101, 7], [5, 240]]) {
    const expected = await expectedProbabilities([input], h, w);
    const out = await model.predictClasses(input, { segSize: [h, w] });
    assert.deepEqual(out.labels.shape, [1, h, w]);
    assert.equal(out.labels.dtype, 'int32');
    assert.equal(out.probabilities, undefined);
    assertLabels(out.labels.data(), expected, h * w);
    assert.ok(maxAbsDiff(out.confidence.data(), argmaxClasses(expected, 150).confidence) < 2e-6);
    out.labels.dispose();
    out.confidence.dispose();
  }
  // Flip: the mirrored image's probabilities, mirrored back, averaged in.
  const expected = await expectedProbabilities([input], 37, 53, { flip: true });
  const flipped = await predictMultiScale(model, [input], 37, 53, { flip: true, probabilities: true });
  assert.ok(maxAbsDiff(flipped.probabilities, expected) < 2e-6);
  assertLabels(flipped.labels, expected, 37 * 53);
  // A batch of two: each image as if alone. Not bit for bit: a batch of one small input may
  // take another convolution path (im2col + BLAS rather than oneDNN), so the probabilities
  // agree within rounding (measured <= 7e-6, netlib or OpenBLAS, 1 or 2 threads) and the
  // labels everywhere but where the top two are that close.
  const second = randomInput(37, 53, 6);
  const batch = { data: Float32Array.from([...input.data, ...second.data]), shape: [2, 3, 37, 53] };
  const both = await model.predictClasses(batch, { confidence: false });
  assert.equal(both.confidence, undefined);
  const bothProbabilities = await model.predictClasses(batch, { probabilities: true });
  const pixels = 37 * 53, tolerance = 2e-5;
  for (const [b, image] of [input, second].entries()) {
    const alone = await model.predictClasses(image, { probabilities: true });
    const probs = alone.probabilities.data();
    const err = maxAbsDiff(bothProbabilities.probabilities.data().subarray(b * 150 * pixels, (b + 1) * 150 * pixels), probs);
    assert.ok(err < tolerance, `image ${b} of the batch: max |probability difference| ${err} from the image alone`);
    // A label can flip only where the top two differ by less than both errors together.
    assertLabels(both.labels.data().subarray(b * pixels, (b + 1) * pixels), probs, pixels, 2 * tolerance);
    for (const t of Object.values(alone)) t.dispose();
  }
  for (const t of [both.labels, ...Object.values(bothProbabilities)]) t.dispose();
  assert.throws(() => model.predictClasses([input, randomInput(8, 8, 1), batch]), /same batch size/);
  assert.throws(() => model.predictClasses([]), /inputs/);
  assert.throws(() => model.predictClasses(input, { segSize: [0, 4] }), /segSize/);
  assert.throws(() => model.predictClasses(input, { flip: 'yes' }), /flip/);
});

test('predictClasses at 2000 x 1500 holds no full-size class scores (RSS grows far less than 150 x H x W floats)', async () => {
  const input = randomInput(48, 72, 9);
  const before = process.memoryUsage().rss;
  const out = await model.predictClasses(input, { segSize: [1500, 2000] });
  const grown = (process.memoryUsage().rss - before) / 2 ** 20;
  console.log(`# predictClasses 2000x1500: RSS +${grown.toFixed(0)} MiB (the full-size path would hold ${((150 * 3e6 * 4) / 2 ** 20).toFixed(0)} MiB of scores)`);
  assert.ok(grown < 400, `RSS grew ${grown.toFixed(0)} MiB`);
  assert.deepEqual(out.labels.shape, [1, 1500, 2000]);
  out.labels.dispose();
  out.confidence.dispose();
});

test('evaluate: dataset metrics over every scale equal the per-image pieces', async () => {
  const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 1, val: 3, width: 40, height: 32, seed: 3 });
  const cfg = mergeConfig(defaultConfig(), {
    DIR: join(root, 'run'),
    DATASET: { root_dataset: dataset.root, list_val: dataset.valList, imgSizes: [32, 48], imgMaxSize: 1000 },
    MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512, pretrained: false },
  });
  const live = liveTensorCount();
  model.train();
  const result = await evaluate(cfg, { model, metricsFile: false, workers: 0 });
  assert.equal(model.info.training, true, 'the caller\'s model is left as it was');
  assert.equal(result.metricsFile, undefined);

  const expected = new MetricsAccumulator(150);
  const records = await readOdgt(dataset.valList, { root: dataset.root });
  const loader = await createEvalLoader({ records, imgSizes: [32, 48], workers: 0 });
  model.eval();
  for await (const sample of loader) {
    // Two scales of a 40x32 image: short side 32 -> 40x32, short side 48 -> 60x48.
    assert.deepEqual(sample.images.map((i) => i.shape), valTargetSizes({ width: 40, height: 32 }, { imgSizes: [32, 48] }).map(([w, h]) => [1, 3, h, w]));
    const out = await predictMultiScale(model, sample.images, 32, 40);
    const label = await readLabel(records[sample.index].annotation);
    expected.add(out.labels, Int32Array.from(label.data, (v) => v - 1));
  }
  const summary = expected.summary();
  assert.equal(result.images, 3);
  assert.equal(result.meanIoU, summary.meanIoU);
  assert.equal(result.pixelAccuracy, summary.pixelAccuracy);
  assert.equal(result.score, summary.score);
  assert.deepEqual(result.classes.map((c) => c.iou), Array.from(summary.iou));
  assert.deepEqual(result.imgSizes, [32, 48]);
  assert.ok(result.timePerImage > 0);
  assert.equal(liveTensorCount(), live);
});
