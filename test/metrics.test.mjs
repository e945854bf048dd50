import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from './helpers/safetensors.mjs';
import {
  MetricsAccumulator,
  imageAccuracy,
  imageCounts,
  intersectionAndUnion,
  numpyMean,
  pixelAccuracy,
} from '../dist/eval/metrics.js';
import { ImageCounter } from '../dist/eval/counts.js';
import { mostConfused } from '../dist/eval/confusion.js';

const fixture = readSafetensors(fileURLToPath(new URL('./fixtures/data/metrics.safetensors', import.meta.url)));
const perImage = JSON.parse(fixture.metadata.per_image);
const NUM_CLASS = 150;
const IMAGES = [0, 1, 2, 3].map((k) => ({
  pred: fixture.tensors[`pred${k}`].data, // BigInt64Array, as stored
  label: fixture.tensors[`label${k}`].data,
  intersection: Array.from(fixture.tensors[`intersection${k}`].data, Number),
  union: Array.from(fixture.tensors[`union${k}`].data, Number),
  ...perImage[k],
}));

test('fixture sanity: 4 images with unlabeled pixels', () => {
  assert.equal(IMAGES.length, 4);
  for (const image of IMAGES) {
    assert.equal(image.pred.length, image.label.length);
    assert.ok(Array.from(image.label).some((v) => v === -1n));
  }
});

test('per-image intersection and union equal the reference exactly', () => {
  for (const [k, image] of IMAGES.entries()) {
    const { intersection, union } = intersectionAndUnion(image.pred, image.label, NUM_CLASS);
    assert.ok(intersection instanceof Float64Array && union instanceof Float64Array);
    assert.deepEqual(Array.from(intersection), image.intersection, `intersection${k}`);
    assert.deepEqual(Array.from(union), image.union, `union${k}`);
    // same result from the narrow typed arrays the pipeline produces
    const pred8 = Uint8Array.from(image.pred, Number);
    const label16 = Int16Array.from(image.label, Number);
    const again = intersectionAndUnion(pred8, label16, NUM_CLASS);
    assert.deepEqual(Array.from(again.intersection), image.intersection);
    assert.deepEqual(Array.from(again.union), image.union);
  }
});

test('per-image pixel accuracy equals the reference exactly', () => {
  for (const [k, image] of IMAGES.entries()) {
    const counts = pixelAccuracy(image.pred, image.label);
    assert.equal(counts.labeled, image.valid_pixels, `valid_pixels${k}`);
    assert.equal(imageAccuracy(counts), image.accuracy, `accuracy${k}`); // bit-exact, not approximately
  }
});

test('dataset mIoU and pixel accuracy equal the reference exactly', () => {
  const metrics = new MetricsAccumulator(NUM_CLASS);
  for (const [k, image] of IMAGES.entries()) {
    const result = metrics.add(image.pred, image.label);
    assert.equal(result.accuracy, image.accuracy);
    assert.deepEqual(Array.from(result.intersection), image.intersection, `intersection${k}`);
  }
  const summary = metrics.summary();
  assert.equal(summary.images, 4);
  assert.equal(summary.meanIoU, Number(fixture.metadata.mean_iou));
  assert.equal(summary.pixelAccuracy, Number(fixture.metadata.pixel_accuracy));
  assert.equal(metrics.meanIoU(), summary.meanIoU);
  assert.equal(metrics.pixelAccuracy(), summary.pixelAccuracy);
  assert.equal(summary.score, (summary.meanIoU + summary.pixelAccuracy) / 2);
  assert.equal(summary.labeled, IMAGES.reduce((s, i) => s + i.valid_pixels, 0));
  assert.equal(summary.iou.length, NUM_CLASS);
  // iou = intersection / (union + 1e-10), summed over images
  for (let c = 0; c < NUM_CLASS; c++) {
    const inter = IMAGES.reduce((s, i) => s + i.intersection[c], 0);
    const union = IMAGES.reduce((s, i) => s + i.union[c], 0);
    assert.equal(summary.iou[c], inter / (union + 1e-10));
  }
});

test('merging partial sums (distributed eval) gives the single-process sums', () => {
  const whole = new MetricsAccumulator(NUM_CLASS);
  for (const image of IMAGES) whole.add(image.pred, image.label);
  const rank0 = new MetricsAccumulator(NUM_CLASS);
  const rank1 = new MetricsAccumulator(NUM_CLASS);
  rank0.add(IMAGES[0].pred, IMAGES[0].label);
  rank0.add(IMAGES[1].pred, IMAGES[1].label);
  rank1.add(IMAGES[2].pred, IMAGES[2].label);
  rank1.add(IMAGES[3].pred, IMAGES[3].label);
  // through JSON, as partial sums travel between processes
  const merged = new MetricsAccumulator(NUM_CLASS).merge(JSON.parse(JSON.stringify(rank0))).merge(MetricsAccumulator.fromJSON(rank1.toJSON()));
  assert.deepEqual(merged.intersection, whole.intersection);
  assert.deepEqual(merged.union, whole.union);
  assert.equal(merged.correct, whole.correct);
  assert.equal(merged.labeled, whole.labeled);
  assert.equal(merged.images, 4);
  assert.equal(merged.meanIoU(), Number(fixture.metadata.mean_iou));
  assert.ok(Math.abs(merged.pixelAccuracy() - Number(fixture.metadata.pixel_accuracy)) < 1e-15);
  // counts computed elsewhere (a worker) can be added per image
  const viaCounts = new MetricsAccumulator(NUM_CLASS);
  for (const image of IMAGES) viaCounts.addImage({ ...intersectionAndUnion(image.pred, image.label, NUM_CLASS), ...pixelAccuracy(image.pred, image.label) });
  assert.equal(viaCounts.pixelAccuracy(), Number(fixture.metadata.pixel_accuracy));
  assert.throws(() => merged.merge(new MetricsAccumulator(19)), { code: 'ERR_INVALID_ARG', message: /150 classes but received 19/ });
});

test("the reference's edge semantics: unlabeled pixels, out-of-range indices, empty classes", () => {
  // label -1: not counted, and the prediction there is not counted either
  const pred = Int32Array.from([0, 1, 1, 2, 5, -1, 2]);
  const label = Int32Array.from([0, 1, -1, -1, 2, 2, 9]);
  const { intersection, union } = intersectionAndUnion(pred, label, 3);
  // class 0: I1 U1; class 1: I1 U1 (the pred 1 on an unlabeled pixel is ignored);
  // class 2: label 2 twice (preds 5 and -1 belong to no class), pred 2 on label 9 (labeled, no class)
  assert.deepEqual(Array.from(intersection), [1, 1, 0]);
  assert.deepEqual(Array.from(union), [1, 1, 3]);
  // accuracy: labeled = label >= 0 (label 9 included), correct where equal
  assert.deepEqual(pixelAccuracy(pred, label), { correct: 2, labeled: 5 });
  // nothing labeled: accuracy 0, not NaN (the reference's 1e-10)
  assert.equal(imageAccuracy(pixelAccuracy([1, 2], [-1, -1])), 0);
  const empty = new MetricsAccumulator(3);
  assert.equal(empty.pixelAccuracy(), 0);
  assert.equal(empty.meanIoU(), 0);
  // absent classes count as IoU 0 in the plain mean, as the reference
  const m = new MetricsAccumulator(4);
  m.add([0, 0, 1, 1], [0, 0, 1, 1]);
  assert.deepEqual(Array.from(m.iou(), (v) => Math.round(v * 1e6) / 1e6), [1, 1, 0, 0]);
  assert.ok(Math.abs(m.meanIoU() - 0.5) < 1e-9);
});

test('numpyMean sums in numpy pairwise order', () => {
  // for < 8 values it is a plain left-to-right sum
  assert.equal(numpyMean([0.1, 0.2, 0.3]), (0.1 + 0.2 + 0.3) / 3);
  assert.equal(numpyMean([]), 0);
  // 8 values: ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
  const v = [1e16, 1, -1e16, 1, 3, 1e-3, 7, 0.1];
  assert.equal(numpyMean(v), ((v[0] + v[1] + (v[2] + v[3])) + (v[4] + v[5] + (v[6] + v[7]))) / 8);
});

test('argument checks', () => {
  assert.throws(() => intersectionAndUnion([1], [1, 2], 3), { code: 'ERR_INVALID_ARG', message: /same length but received 1 and 2/ });
  assert.throws(() => intersectionAndUnion([1], [1], 0), { code: 'ERR_INVALID_ARG', message: /numClass/ });
  assert.throws(() => intersectionAndUnion('ab', [1, 2], 3), { code: 'ERR_INVALID_ARG', message: /for pred/ });
  assert.throws(() => pixelAccuracy([1], null), { code: 'ERR_INVALID_ARG', message: /for label/ });
  assert.throws(() => new MetricsAccumulator(1.5), { code: 'ERR_INVALID_ARG' });
  const m = new MetricsAccumulator(3);
  assert.throws(() => m.addImage({ intersection: [1], union: [1], correct: 1, labeled: 1 }), { code: 'ERR_INVALID_ARG', message: /3 intersections/ });
});

/** Rows of a flat numClass x numClass matrix. */
const rowsOf = (flat, n) => Array.from({ length: n }, (_, y) => Array.from(flat.subarray(y * n, (y + 1) * n)));

test("the confusion matrix: its diagonal is the reference's intersection, its row sums the label counts", () => {
  const total = new MetricsAccumulator(NUM_CLASS);
  const labelCounts = new Array(NUM_CLASS).fill(0);
  for (const [k, image] of IMAGES.entries()) {
    const counts = imageCounts(image.pred, image.label, NUM_CLASS);
    const rows = rowsOf(counts.confusion, NUM_CLASS);
    const perImageLabels = new Array(NUM_CLASS).fill(0);
    for (const v of image.label) if (v >= 0n) perImageLabels[Number(v)]++;
    assert.deepEqual(rows.map((row, c) => row[c]), image.intersection, `diagonal ${k}`);
    assert.deepEqual(rows.map((row) => row.reduce((a, b) => a + b, 0)), perImageLabels, `row sums ${k}`);
    // the same pass gives the reference's union and accuracy
    assert.deepEqual(Array.from(counts.union), image.union, `union ${k}`);
    assert.equal(counts.labeled, image.valid_pixels);
    assert.equal(counts.accuracy, image.accuracy);
    // off-diagonal cells: pixels labeled y and predicted x, counted directly
    const cell = (y, x) => image.label.reduce((n, v, i) => n + (v === BigInt(y) && image.pred[i] === BigInt(x) ? 1 : 0), 0);
    const [y, x] = [...rows.entries()].flatMap(([yy, row]) => row.map((v, xx) => [yy, xx, v])).filter(([yy, xx, v]) => yy !== xx && v > 0)[0];
    assert.equal(rows[y][x], cell(y, x));
    perImageLabels.forEach((v, c) => (labelCounts[c] += v));
    total.add(image.pred, image.label);
  }
  const rows = total.confusionRows();
  assert.deepEqual(rows.map((row, c) => row[c]), Array.from(total.intersection));
  assert.deepEqual(rows.map((row) => row.reduce((a, b) => a + b, 0)), labelCounts);
  assert.deepEqual(Array.from(total.summary().confusion), rows.flat());
  // partial sums carry it (ranks, workers) and merge exactly
  const a = new MetricsAccumulator(NUM_CLASS);
  const b = new MetricsAccumulator(NUM_CLASS);
  IMAGES.forEach((image, k) => (k % 2 ? a : b).add(image.pred, image.label));
  const merged = new MetricsAccumulator(NUM_CLASS).merge(JSON.parse(JSON.stringify(a))).merge(b.toJSON());
  assert.deepEqual(merged.confusionRows(), rows);
  // counts from elsewhere without a confusion matrix: the dataset has none
  const partial = new MetricsAccumulator(NUM_CLASS);
  partial.add(IMAGES[0].pred, IMAGES[0].label);
  partial.addImage({ ...intersectionAndUnion(IMAGES[1].pred, IMAGES[1].label, NUM_CLASS), ...pixelAccuracy(IMAGES[1].pred, IMAGES[1].label) });
  assert.equal(partial.confusionRows(), undefined);
  assert.equal(partial.summary().confusion, undefined);
});

test('the confusion matrix leaves out unlabeled pixels and out-of-range indices, as the metrics do', () => {
  const pred = Int32Array.from([0, 1, 1, 2, 5, -1, 2, 0]);
  const label = Int32Array.from([0, 1, -1, -1, 2, 2, 9, 1]);
  const counts = imageCounts(pred, label, 3);
  assert.deepEqual(rowsOf(counts.confusion, 3), [
    [1, 0, 0],
    [1, 1, 0],
    [0, 0, 0], // label 2 predicted 5 and -1: no column
  ]);
  const reference = intersectionAndUnion(pred, label, 3);
  assert.deepEqual(Array.from(counts.intersection), Array.from(reference.intersection));
  assert.deepEqual(Array.from(counts.union), Array.from(reference.union));
  assert.deepEqual({ correct: counts.correct, labeled: counts.labeled }, pixelAccuracy(pred, label));
  assert.deepEqual(mostConfused(rowsOf(counts.confusion, 3), ['a', 'b', 'c']), [
    { truth: 1, truthName: 'b', predicted: 0, predictedName: 'a', pixels: 1, fraction: 0.5 },
  ]);
  assert.throws(() => new MetricsAccumulator(3).addImage({ ...counts, confusion: [1, 2] }), { code: 'ERR_INVALID_ARG', message: /confusion matrix of 3 x 3 = 9 counts/ });
});

test('ImageCounter computes the same counts on a worker thread', async () => {
  const counter = new ImageCounter(NUM_CLASS);
  try {
    for (const image of IMAGES) {
      const pred = Int32Array.from(image.pred, Number);
      const label = Int32Array.from(image.label, Number);
      const counts = await counter.count(pred, label);
      const here = imageCounts(pred, label, NUM_CLASS);
      assert.ok(counts.confusion instanceof Float64Array);
      assert.deepEqual(counts, here);
    }
    await assert.rejects(counter.count(new Int32Array(2), new Int32Array(3)), { code: 'ERR_INVALID_ARG', message: /same length/ });
    await assert.rejects(counter.count([1], new Int32Array(1)), { code: 'ERR_INVALID_ARG', message: /pred/ });
  } finally {
    await counter.close();
  }
  await assert.rejects(counter.count(new Int32Array(1), new Int32Array(1)), { code: 'ERR_DISPOSED' });
});
