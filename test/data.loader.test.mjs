import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createTrainLoader, createEvalLoader, readOdgt, readImage, readLabel, resizeBilinear, resizeNearest,
  roundUpToMultiple, trainBatchGeometry, resolveTrainGeometry, valTargetSizes, TrainSampler, Rng,
} from '../dist/data/index.js';
import { SegtoolError } from '../dist/errors.js';
import { encodePng, labelPattern, tempDir, writeDataset, DATASET_SIZES } from './helpers/data.mjs';

const GEOMETRY = { imgSizes: [32, 40, 48], imgMaxSize: 96, paddingConstant: 8, segmDownsamplingRate: 4, batchPerGpu: 2 };
let dir, cleanup, records;

before(async () => {
  ({ dir, cleanup } = tempDir());
  const { odgt } = await writeDataset(dir, DATASET_SIZES, { format: 'jpeg' });
  records = await readOdgt(odgt, { root: dir });
});
after(() => cleanup());

async function take(loader, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await loader.next()).value);
  await loader.close();
  return out;
}

const f32 = Math.fround;
const MEAN = [0.485, 0.456, 0.406], STD = [0.229, 0.224, 0.225];

/** The reference's TrainDataset.__getitem__ written out step by step (PIL ops = our PIL-exact resizers). */
async function referenceBatch(plan, g) {
  const chosen = plan.indices.map((i) => records[i]);
  const geo = trainBatchGeometry(chosen, plan.short, g);
  const { width: W, height: H } = geo.canvas, { width: w, height: h } = geo.label, n = chosen.length;
  const image = new Float32Array(n * 3 * H * W);
  const label = new Int32Array(n * h * w); // torch.zeros(...).long()
  for (let i = 0; i < n; i++) {
    const img = await readImage(chosen[i].image);
    const seg = await readLabel(chosen[i].annotation);
    if (plan.flips[i]) {
      for (const [data, ch, width] of [[img.data, 3, img.width], [seg.data, 1, seg.width]]) {
        for (let y = 0; y < data.length / (width * ch); y++) {
          const row = data.slice(y * width * ch, (y + 1) * width * ch);
          for (let x = 0; x < width; x++) for (let c = 0; c < ch; c++) data[y * width * ch + x * ch + c] = row[(width - 1 - x) * ch + c];
        }
      }
    }
    const { width: sw, height: sh } = geo.samples[i];
    const resized = resizeBilinear(img.data, img.width, img.height, 3, sw, sh);
    const segResized = resizeNearest(seg.data, seg.width, seg.height, sw, sh);
    const rw = roundUpToMultiple(sw, g.segmDownsamplingRate), rh = roundUpToMultiple(sh, g.segmDownsamplingRate);
    const rounded = new Uint8Array(rw * rh); // Image.new('L', ..., 0) + paste
    for (let y = 0; y < sh; y++) rounded.set(segResized.subarray(y * sw, (y + 1) * sw), y * rw);
    const dw = rw / g.segmDownsamplingRate, dh = rh / g.segmDownsamplingRate;
    const down = resizeNearest(rounded, rw, rh, dw, dh);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) {
        const v = f32(resized[(y * sw + x) * 3 + c] / 255);
        image[((i * 3 + c) * H + y) * W + x] = f32(f32(v - f32(MEAN[c])) / f32(STD[c]));
      }
    }
    for (let y = 0; y < dh; y++) for (let x = 0; x < dw; x++) label[(i * h + y) * w + x] = down[y * dw + x] - 1;
  }
  return { image, label, shape: [n, 3, H, W] };
}

test('training batches equal the reference procedure, with both label paddings', async () => {
  const g = resolveTrainGeometry(GEOMETRY);
  for (const labelPadding of ['reference', 'ignore']) {
    const batches = await take(await createTrainLoader({ records, ...GEOMETRY, workers: 0, seed: 11, randomFlip: 0.5, labelPadding }), 6);
    assert.ok(batches.some((b) => b.plan.flips.includes(true)), 'some samples flipped');
    for (const batch of batches) {
      const ref = await referenceBatch(batch.plan, g);
      assert.deepEqual(batch.image.shape, ref.shape);
      assert.deepEqual(batch.image.data, ref.image);
      if (labelPadding === 'reference') {
        assert.deepEqual(batch.label.data, ref.label);
      } else {
        // Same everywhere except the canvas padding, which is ignore instead of class 0.
        const geo = trainBatchGeometry(batch.plan.indices.map((i) => records[i]), batch.plan.short, g);
        const [n, h, w] = batch.label.shape;
        for (let i = 0; i < n; i++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
          const k = (i * h + y) * w + x;
          const inside = y < geo.sampleLabels[i].height && x < geo.sampleLabels[i].width;
          assert.equal(batch.label.data[k], inside ? ref.label[k] : -1);
        }
      }
    }
  }
});

test('same seed gives the same batches; workers 0 and 1 agree; buffers are transferred whole', async () => {
  const opts = { records, ...GEOMETRY, seed: 5 };
  const a = await take(await createTrainLoader({ ...opts, workers: 2 }), 6);
  const b = await take(await createTrainLoader({ ...opts, workers: 2, prefetch: 1 }), 6);
  for (let k = 0; k < 6; k++) {
    assert.deepEqual(a[k].plan, b[k].plan);
    assert.deepEqual(a[k].image.data, b[k].image.data);
    assert.deepEqual(a[k].label.data, b[k].label.data);
    assert.ok(a[k].image.data.buffer instanceof ArrayBuffer);
    assert.equal(a[k].image.data.buffer.byteLength, a[k].image.data.byteLength);
  }
  const local = await createTrainLoader({ ...opts, workers: 0 });
  assert.equal(local.workers, 0);
  const inProcess = await take(local, 3);
  const oneWorker = await take(await createTrainLoader({ ...opts, workers: 1 }), 3);
  for (let k = 0; k < 3; k++) {
    assert.deepEqual(inProcess[k].plan, oneWorker[k].plan);
    assert.deepEqual(inProcess[k].image.data, oneWorker[k].image.data);
  }
  // Batch 2k comes from worker 0: its stream is worker 0's.
  assert.deepEqual(a[0].plan, inProcess[0].plan);
  assert.deepEqual(a[2].plan, inProcess[1].plan);
});

test('different workers, ranks and seeds draw different streams', async () => {
  const plans = (seed, rank, worker) => {
    const s = new TrainSampler(records, { batchPerGpu: 2, imgSizes: GEOMETRY.imgSizes, flipProbability: 0.5, shuffle: true, rng: Rng.forStream(seed, rank, worker) });
    return Array.from({ length: 8 }, () => s.next());
  };
  const base = plans(304, 0, 0);
  assert.deepEqual(plans(304, 0, 0), base);
  assert.notDeepEqual(plans(304, 0, 1), base);
  assert.notDeepEqual(plans(304, 1, 0), base);
  assert.notDeepEqual(plans(305, 0, 0), base);
  // In a loader with two workers, the two halves of the stream differ.
  const two = await createTrainLoader({ records, ...GEOMETRY, workers: 2, seed: 304 });
  assert.equal(two.workers, 2);
  const batches = await take(two, 8);
  const even = batches.filter((_, k) => k % 2 === 0).map((b) => b.plan);
  const odd = batches.filter((_, k) => k % 2 === 1).map((b) => b.plan);
  assert.notDeepEqual(even, odd);
  assert.deepEqual(even, base.slice(0, 4));
});

test('randomFlip controls the flip probability without shifting other draws', async () => {
  const run = async (randomFlip) => (await take(await createTrainLoader({ records, ...GEOMETRY, workers: 0, seed: 9, randomFlip }), 10)).map((b) => b.plan);
  const never = await run(0), always = await run(1), half = await run(true), off = await run(false);
  assert.ok(never.every((p) => p.flips.every((f) => !f)));
  assert.ok(always.every((p) => p.flips.every((f) => f)));
  const flips = half.flatMap((p) => p.flips);
  assert.ok(flips.includes(true) && flips.includes(false));
  assert.deepEqual(off, never);
  assert.deepEqual(always.map((p) => [p.indices, p.short]), never.map((p) => [p.indices, p.short]));
  // A flipped sample's image is the mirror of the unflipped one (the resize here is symmetric).
  const records1 = [records[3]]; // 40x40
  const opts = { records: records1, ...GEOMETRY, batchPerGpu: 1, imgSizes: [40], workers: 0 };
  const [plain] = await take(await createTrainLoader({ ...opts, randomFlip: 0 }), 1);
  const [mirror] = await take(await createTrainLoader({ ...opts, randomFlip: 1 }), 1);
  const [, , H, W] = plain.image.shape;
  for (let y = 0; y < 40; y++) for (let x = 0; x < 40; x++) assert.equal(mirror.image.data[y * W + x], plain.image.data[y * W + 39 - x]);
});

test('evaluation samples come in list order with every scale and the full-size label', async () => {
  const loader = await createEvalLoader({ records, imgSizes: [24, 40], imgMaxSize: 96, workers: 2, prefetch: 2, keepOriginal: true });
  assert.equal(loader.length, records.length);
  let k = 0;
  for await (const s of loader) {
    assert.equal(s.index, k);
    assert.equal(s.path, records[k].image);
    const [w, h] = DATASET_SIZES[k];
    assert.deepEqual(s.images.map((i) => i.shape), valTargetSizes({ width: w, height: h }, { imgSizes: [24, 40], imgMaxSize: 96 }).map(([tw, th]) => [1, 3, th, tw]));
    assert.deepEqual(s.label.shape, [1, h, w]);
    const expected = labelPattern(w, h);
    assert.ok(s.label.data.every((v, i) => v === expected[i] - 1));
    assert.equal(s.original.data.length, w * h * 3);
    k++;
  }
  assert.equal(k, records.length);
  // Test lists: no annotations, labels left out.
  const unlabeled = await createEvalLoader({ records: records.map(({ image }) => ({ image })), workers: 0 });
  const first = (await unlabeled.next()).value;
  await unlabeled.close();
  assert.equal(first.label, undefined);
  assert.equal(first.images.length, 5);
});

/** A copy of the dataset with one record's file replaced. */
function brokenCopy(index, field, contents) {
  const copy = records.map((r) => ({ ...r }));
  const path = join(dir, `broken-${index}-${field}-${Math.random().toString(36).slice(2)}`);
  if (contents !== undefined) writeFileSync(path, contents);
  copy[index][field] = path;
  return { copy, path };
}

const SMALL = { imgSizes: [32], imgMaxSize: 96 };

async function firstEvalError(copy, extra = {}) {
  const loader = await createEvalLoader({ records: copy, ...SMALL, workers: 0, ...extra });
  try {
    for await (const _ of loader);
  } finally {
    await loader.close();
  }
}

test('bad input: missing files, corrupt and truncated images name the file', async () => {
  let { copy, path } = brokenCopy(0, 'image');
  await assert.rejects(firstEvalError(copy, { workers: 1 }), { code: 'ERR_NOT_FOUND', message: new RegExp(`image not found: ${path}`) });
  ({ copy, path } = brokenCopy(1, 'annotation'));
  await assert.rejects(firstEvalError(copy), { code: 'ERR_NOT_FOUND', message: new RegExp(`annotation not found: ${path}`) });
  ({ copy, path } = brokenCopy(2, 'image', Buffer.from('this is not an image')));
  await assert.rejects(firstEvalError(copy), { code: 'ERR_BAD_IMAGE', message: new RegExp(`Cannot decode image ${path}`) });
  const jpeg = readFileSync(records[0].image);
  ({ copy, path } = brokenCopy(0, 'image', jpeg.subarray(0, jpeg.length >> 1)));
  await assert.rejects(firstEvalError(copy), { code: 'ERR_BAD_IMAGE', message: new RegExp(`Cannot decode image ${path}`) });
  const png = readFileSync(records[0].annotation);
  ({ copy, path } = brokenCopy(0, 'annotation', png.subarray(0, png.length - 30)));
  await assert.rejects(firstEvalError(copy), { code: 'ERR_BAD_IMAGE', message: new RegExp(`Cannot decode annotation ${path}: .*truncated`) });
  // The same errors reach a training loader across the worker boundary.
  ({ copy, path } = brokenCopy(0, 'image'));
  const loader = await createTrainLoader({ records: copy, ...GEOMETRY, batchPerGpu: 1, shuffle: false, workers: 1 });
  const error = await loader.next().catch((e) => e);
  assert.ok(error instanceof SegtoolError, 'a SegtoolError, rebuilt on this side of the worker boundary');
  assert.equal(error.code, 'ERR_NOT_FOUND');
  assert.match(error.message, new RegExp(path));
  await loader.close();
});

test('bad input: annotation size, record size, values above numClass', async () => {
  const wrongSize = encodePng({ width: 10, height: 10, colorType: 0, bitDepth: 8, data: labelPattern(10, 10) });
  let { copy, path } = brokenCopy(0, 'annotation', wrongSize);
  await assert.rejects(firstEvalError(copy), { code: 'ERR_BAD_IMAGE', message: new RegExp(`annotation ${path} is 10x10 but image .*img_000\\.jpg is 64x48`) });
  await assert.rejects(firstEvalError(records, { numClass: 100 }), { code: 'ERR_BAD_IMAGE', message: /img_000\.png has class value 150, above numClass 100/ });
  const lying = records.map((r, i) => (i === 0 ? { ...r, width: 65 } : r));
  const loader = await createTrainLoader({ records: lying, ...GEOMETRY, batchPerGpu: 1, shuffle: false, workers: 0 });
  await assert.rejects(loader.next(), { code: 'ERR_BAD_IMAGE', message: /img_000\.jpg is 64x48 but its record \(.*list\.odgt:1\) says 65x48/ });
  await loader.close();
});

test('bad input: skip mode leaves bad samples out and reports them', async () => {
  const { copy, path } = brokenCopy(2, 'image', Buffer.from('junk'));
  const evalLoader = await createEvalLoader({ records: copy, ...SMALL, workers: 2, onBadSample: 'skip' });
  const seen = [];
  for await (const s of evalLoader) seen.push(s.index);
  assert.deepEqual(seen, [0, 1, 3, 4, 5, 6, 7]);
  assert.equal(evalLoader.badSamples.length, 1);
  assert.equal(evalLoader.badSamples[0].image, path);
  assert.equal(evalLoader.badSamples[0].code, 'ERR_BAD_IMAGE');
  // Training: the bad sample's slot is all ignore, the batch keeps its shape.
  const train = await createTrainLoader({ records: copy.map((r, i) => (i === 2 ? { ...r, width: 80, height: 60 } : r)), ...GEOMETRY, batchPerGpu: 1, shuffle: false, workers: 0, onBadSample: 'skip' });
  const batches = await take(train, 3);
  assert.equal(batches[2].skipped.length, 1);
  assert.ok(batches[2].label.data.every((v) => v === -1));
  assert.ok(batches[1].label.data.some((v) => v >= 0));
  assert.equal(train.badSamples.length, 1);
});

test('bad input: lists and options are checked before any work', async () => {
  await assert.rejects(createTrainLoader({ records: [], ...GEOMETRY }), { code: 'ERR_INVALID_ARG', message: /records/ });
  const noSize = (await readOdgt(join(dir, 'list.odgt'), { root: dir })).map(({ width, height, ...r }) => r);
  await assert.rejects(createTrainLoader({ records: noSize }), { code: 'ERR_BAD_FILE', message: /records\[0\] \(.*list\.odgt:1\) has no valid width.*readImageSizes/ });
  await assert.rejects(createTrainLoader({ records: records.map(({ annotation, ...r }) => r) }), { code: 'ERR_BAD_FILE', message: /has no annotation/ });
  await assert.rejects(createEvalLoader({ records: records.map(({ annotation, ...r }) => r), labels: true }), { code: 'ERR_BAD_FILE', message: /has no annotation/ });
  const bad = [
    [{ workers: -1 }, /workers/], [{ workers: 1.5 }, /workers/], [{ prefetch: 0 }, /prefetch/], [{ randomFlip: 1.5 }, /randomFlip/],
    [{ randomFlip: 'yes' }, /randomFlip/], [{ numClass: 0 }, /numClass/], [{ normalize: 'bgr' }, /one of imagenet, legacy-bgr for normalize/],
    [{ labelPadding: 'zero' }, /labelPadding/], [{ onBadSample: 'ignore' }, /onBadSample/], [{ seed: -1 }, /seed/],
    [{ rank: 0.5 }, /rank/], [{ decoder: 'pil' }, /decoder/], [{ imgSizes: [0] }, /imgSizes\[0\]/], [{ shuffle: 1 }, /shuffle/],
  ];
  for (const [opts, message] of bad) {
    await assert.rejects(createTrainLoader({ records, ...GEOMETRY, ...opts }), { code: 'ERR_INVALID_ARG', message }, JSON.stringify(opts));
  }
});

test('a loader that is not closed does not keep the process alive, and closing twice is fine', async () => {
  const loader = await createTrainLoader({ records, ...GEOMETRY, workers: 1 });
  await loader.next();
  await loader.close();
  await loader.close();
  assert.deepEqual(await loader.next(), { done: true, value: undefined });
  // Deliberately left open: the test runner would time out if its idle worker kept the loop alive.
  const leaked = await createEvalLoader({ records, imgSizes: [32], imgMaxSize: 96, workers: 1 });
  await leaked.next();
});
