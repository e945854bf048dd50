import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  valTargetSizes, trainBatchShapes, trainBatchGeometry, resolveTrainGeometry, roundUpToMultiple, TrainSampler, Rng,
} from '../dist/data/index.js';

const geometry = JSON.parse(readFileSync(new URL('./fixtures/data/geometry.json', import.meta.url)));

test('valTargetSizes equals geometry.json val for every size, imgSizes and padding constant', () => {
  assert.equal(geometry.val.length, 18);
  for (const c of geometry.val) {
    const got = valTargetSizes({ width: c.width, height: c.height }, {
      imgSizes: c.imgSizes, imgMaxSize: c.imgMaxSize, paddingConstant: c.padding_constant,
    });
    assert.deepEqual(got, c.targets, `${c.width}x${c.height} at padding ${c.padding_constant}`);
  }
});

test('trainBatchShapes equals geometry.json train for every setting and batch', () => {
  assert.equal(geometry.train.batches.length, 15);
  for (const b of geometry.train.batches) {
    const shapes = trainBatchShapes(geometry.train.records, {
      imgSizes: [300, 375, 450, 525, 600], imgMaxSize: 1000, paddingConstant: b.padding_constant,
      segmDownsamplingRate: b.segm_downsampling_rate, batchPerGpu: b.batch_per_gpu, short: b.short, count: 3,
    });
    assert.equal(shapes.length, 3);
    const s = shapes[b.batch_index];
    assert.deepEqual(s.image, b.img_data, `batch ${b.batch_index} short ${b.short} padding ${b.padding_constant}`);
    assert.deepEqual(s.label, b.seg_label);
  }
});

test('the reference round-up and per-sample label extents', () => {
  assert.deepEqual([1, 7, 8, 9, 16, 17].map((x) => roundUpToMultiple(x, 8)), [8, 8, 8, 16, 16, 24]);
  const g = resolveTrainGeometry({ imgMaxSize: 1000, paddingConstant: 32, segmDownsamplingRate: 4, batchPerGpu: 2 });
  const geo = trainBatchGeometry([{ width: 683, height: 512 }, { width: 640, height: 480 }], 450, g);
  // 683x512 -> 600x450 (truncated), 640x480 -> 600x450; canvas 608x480; label 152x120
  assert.deepEqual(geo.samples, [{ width: 600, height: 450 }, { width: 600, height: 450 }]);
  assert.deepEqual(geo.canvas, { width: 608, height: 480 });
  assert.deepEqual(geo.label, { width: 152, height: 120 });
  assert.deepEqual(geo.sampleLabels[0], { width: 150, height: 113 });
});

test('batches never mix orientations; the sampler cycles the list', () => {
  const records = geometry.train.records;
  const sampler = new TrainSampler(records, { batchPerGpu: 3, imgSizes: [300], flipProbability: 0.5, shuffle: true, rng: new Rng(7) });
  for (let i = 0; i < 40; i++) {
    const plan = sampler.next();
    assert.equal(plan.indices.length, 3);
    const portrait = plan.indices.map((j) => records[j].height > records[j].width);
    assert.ok(portrait.every((p) => p === portrait[0]), `batch ${i} mixes orientations`);
    assert.equal(plan.flips.length, 3);
  }
});

test('geometry options are validated with the option name', () => {
  const size = { width: 10, height: 10 };
  assert.throws(() => valTargetSizes(size, { imgSizes: [] }), { code: 'ERR_INVALID_ARG', message: /imgSizes/ });
  assert.throws(() => valTargetSizes(size, { imgSizes: [300, -1] }), { code: 'ERR_INVALID_ARG', message: /imgSizes\[1\]/ });
  assert.throws(() => valTargetSizes(size, { imgMaxSize: 0 }), { code: 'ERR_INVALID_ARG', message: /imgMaxSize/ });
  assert.throws(() => valTargetSizes(size, { paddingConstant: 2.5 }), { code: 'ERR_INVALID_ARG', message: /paddingConstant/ });
  assert.throws(() => valTargetSizes({ width: 0, height: 3 }), { code: 'ERR_INVALID_ARG', message: /size\.width/ });
  assert.throws(() => trainBatchShapes([size], { paddingConstant: 8, segmDownsamplingRate: 3, short: 300 }),
    { code: 'ERR_INVALID_ARG', message: /divisor of paddingConstant \(8\) for segmDownsamplingRate/ });
  assert.throws(() => trainBatchShapes([size], { batchPerGpu: 0, short: 300 }), { code: 'ERR_INVALID_ARG', message: /batchPerGpu/ });
  assert.throws(() => trainBatchShapes([size], {}), { code: 'ERR_INVALID_ARG', message: /short/ });
  assert.throws(() => trainBatchShapes([], { short: 300 }), { code: 'ERR_INVALID_ARG', message: /records/ });
  assert.deepEqual(trainBatchShapes([size], { imgSizes: 300, batchPerGpu: 1 }), [{ image: [1, 3, 304, 304], label: [1, 38, 38] }]);
});

test('needle-thin images get at least one pixel instead of a zero-size resize', () => {
  assert.deepEqual(valTargetSizes({ width: 1, height: 5000 }, { imgSizes: [300], imgMaxSize: 1000 }), [[8, 1000]]);
});
