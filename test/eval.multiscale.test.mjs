// Multi-scale inference (probabilities of every scale resized to the image and averaged) and
// evaluate()'s dataset metrics, checked against the pieces computed one by one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentationModel, MetricsAccumulator, defaultConfig, mergeConfig, readLabel, readOdgt, valTargetSizes, liveTensorCount } from '../dist/index.js';
import { predictMultiScale, argmaxClasses } from '../dist/eval/inference.js';
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

test('predictMultiScale averages each scale\'s probabilities at the requested size', async () => {
  const inputs = [randomInput(40, 48, 1), randomInput(56, 64, 2)];
  const out = await predictMultiScale(model, inputs, 30, 36);
  assert.equal(out.numClass, 150);
  assert.equal(out.probabilities.length, 150 * 30 * 36);
  const expected = new Float32Array(150 * 30 * 36);
  for (const input of inputs) {
    const p = await model.predict(input, { segSize: [30, 36] });
    const values = p.data();
    for (let i = 0; i < values.length; i++) expected[i] = expected[i] + Math.fround(values[i] / 2);
    p.dispose();
  }
  assert.deepEqual(out.probabilities, expected);
  // Still a distribution per pixel.
  const pixels = 30 * 36;
  for (const i of [0, 17, pixels - 1]) {
    let sum = 0;
    for (let c = 0; c < 150; c++) sum += out.probabilities[c * pixels + i];
    assert.ok(Math.abs(sum - 1) < 1e-4);
  }
});

test('argmaxClasses picks the most probable class, the first one on ties', () => {
  // 3 classes x 4 pixels.
  const probs = Float32Array.from([0.2, 0.5, 0.1, 0.4, /**/ 0.7, 0.5, 0.1, 0.3, /**/ 0.1, 0.0, 0.8, 0.3]);
  const { labels, confidence } = argmaxClasses(probs, 3);
  assert.deepEqual([...labels], [1, 0, 2, 0]);
  assert.deepEqual([...confidence], [...Float32Array.from([0.7, 0.5, 0.8, 0.4])]);
  assert.throws(() => argmaxClasses(new Float32Array(5), 3), /numClass/);
});

test('evaluate: dataset metrics over every scale equal the per-image pieces', async () => {
  const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 1, val: 3, width: 40, height: 32, seed: 3 });
  const cfg = mergeConfig(defaultConfig(), {
    DIR: join(root, 'run'),
    DATASET: { root_dataset: dataset.root, list_val: dataset.valList, imgSizes: [32, 48], imgMaxSize: 1000 },
    MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512 },
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
    expected.add(argmaxClasses(out.probabilities, 150).labels, Int32Array.from(label.data, (v) => v - 1));
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
