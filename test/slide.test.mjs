// Sliding-window inference (mode 'slide', SegmentationModel.predictSliding): the crop grid, the
// stitched logits against a stitching computed here from each crop's own forward pass, the
// full-size labels from them, equality with whole-image inference when one crop covers the
// image, cancellation between crops, option checks, and memory bounded by the crop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SegmentationModel, Segmenter } from '../dist/index.js';
import { native } from '../dist/native.js';
import { inferClasses } from '../dist/inference/infer.js';
import { prng } from './helpers/prng.mjs';

const NUM_CLASS = 12;
const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', numClass: NUM_CLASS, init: 'procedural' });
test.after(() => model.dispose());
const S = model.outputStride; // 8

function randomInput(h, w, seed) {
  const next = prng(seed);
  const data = new Float32Array(3 * h * w);
  // Smooth structure plus noise, so that classes change across the image (and across crops).
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) data[(c * h + y) * w + x] = 1.5 * Math.sin((x + 7 * c) / 9) * Math.cos(y / 13) + (next() - 0.5);
    }
  }
  return { data, shape: [1, 3, h, w] };
}

function crop({ data, shape: [, , h, w] }, y0, y1, x0, x1) {
  const out = new Float32Array(3 * (y1 - y0) * (x1 - x0));
  let i = 0;
  for (let c = 0; c < 3; c++) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) out[i++] = data[(c * h + y) * w + x];
  return { data: out, shape: [1, 3, y1 - y0, x1 - x0] };
}

// mmsegmentation's slide grid (mmseg/models/segmentors/encoder_decoder.py slide_inference),
// each crop's start then rounded up to a multiple of the output stride.
function mmsegTiles(h, w, [ch, cw], [sh, sw]) {
  const spans = (size, c, s) => {
    const n = Math.floor(Math.max(size - c + s - 1, 0) / s) + 1;
    return Array.from({ length: n }, (_, i) => {
      const end = Math.min(i * s + c, size);
      const start = Math.max(end - c, 0);
      return [Math.ceil(start / S) * S, end];
    });
  };
  const tiles = [];
  for (const [y0, y1] of spans(h, ch, sh)) for (const [x0, x1] of spans(w, cw, sw)) tiles.push({ y0, y1, x0, x1 });
  return tiles;
}

// The stitching, here: every crop's log-probabilities (model.forward) added into a canvas at the
// output resolution, divided by the crops that covered each cell. Log-probabilities differ from
// logits by a constant per cell, so the softmax (and log-softmax) over classes of either agree.
async function referenceCanvas(input, tiles) {
  const [, , h, w] = input.shape;
  const ch = Math.ceil(h / S), cw = Math.ceil(w / S);
  const sum = new Float64Array(NUM_CLASS * ch * cw);
  const count = new Float64Array(ch * cw);
  for (const t of tiles) {
    const { logprob } = await model.forward(crop(input, t.y0, t.y1, t.x0, t.x1));
    const [, , th, tw] = logprob.shape;
    assert.deepEqual([th, tw], [Math.ceil((t.y1 - t.y0) / S), Math.ceil((t.x1 - t.x0) / S)]);
    const v = logprob.data();
    for (let c = 0; c < NUM_CLASS; c++) {
      for (let y = 0; y < th; y++) {
        for (let x = 0; x < tw; x++) sum[(c * ch + t.y0 / S + y) * cw + t.x0 / S + x] += v[(c * th + y) * tw + x];
      }
    }
    for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) count[(t.y0 / S + y) * cw + t.x0 / S + x] += 1;
    logprob.dispose();
  }
  for (let i = 0; i < sum.length; i++) sum[i] /= count[i % (ch * cw)];
  return { canvas: sum, ch, cw, count };
}

function logSoftmaxOverClasses(values, cells) {
  const out = new Float64Array(values.length);
  for (let p = 0; p < cells; p++) {
    let max = -Infinity;
    for (let c = 0; c < NUM_CLASS; c++) max = Math.max(max, values[c * cells + p]);
    let z = 0;
    for (let c = 0; c < NUM_CLASS; c++) z += Math.exp(values[c * cells + p] - max);
    for (let c = 0; c < NUM_CLASS; c++) out[c * cells + p] = values[c * cells + p] - max - Math.log(z);
  }
  return out;
}

// Bilinear upsampling (align_corners=false, as upsample_bilinear2d) of the canvas to h x w,
// softmax, argmax: the labels, the top probability and the runner-up's.
function fullSize(canvas, ch, cw, h, w) {
  const axis = (inSize, outSize) =>
    Array.from({ length: outSize }, (_, o) => {
      const src = Math.max((o + 0.5) * (inSize / outSize) - 0.5, 0);
      const i0 = Math.min(Math.floor(src), inSize - 1);
      return [i0, Math.min(i0 + 1, inSize - 1), src - i0];
    });
  const rows = axis(ch, h), cols = axis(cw, w);
  const labels = new Int32Array(h * w), top = new Float64Array(h * w), second = new Float64Array(h * w);
  const scores = new Float64Array(NUM_CLASS);
  for (let y = 0; y < h; y++) {
    const [r0, r1, ly] = rows[y];
    for (let x = 0; x < w; x++) {
      const [c0, c1, lx] = cols[x];
      let max = -Infinity;
      for (let c = 0; c < NUM_CLASS; c++) {
        const at = (r, q) => canvas[(c * ch + r) * cw + q];
        scores[c] = (1 - ly) * ((1 - lx) * at(r0, c0) + lx * at(r0, c1)) + ly * ((1 - lx) * at(r1, c0) + lx * at(r1, c1));
        max = Math.max(max, scores[c]);
      }
      let z = 0;
      for (let c = 0; c < NUM_CLASS; c++) z += Math.exp(scores[c] - max);
      let best = 0, p1 = -1, p2 = -1;
      for (let c = 0; c < NUM_CLASS; c++) {
        const p = Math.exp(scores[c] - max) / z;
        if (p > p1) {
          p2 = p1;
          p1 = p;
          best = c;
        } else if (p > p2) p2 = p;
      }
      labels[y * w + x] = best;
      top[y * w + x] = p1;
      second[y * w + x] = p2;
    }
  }
  return { labels, top, second };
}

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function disposeAll(out) {
  for (const t of Object.values(out)) t.dispose();
}

test('the crop grid is mmsegmentation\'s, each crop starting on an output cell, none larger than the crop', () => {
  const cases = [
    [100, 132, [48, 48], [32, 32]],
    [45, 61, [64, 64], [40, 40]],
    [256, 200, [64, 96], [64, 48]],
    [49, 33, [16, 24], [8, 16]],
  ];
  for (const [h, w, cropSize, stride] of cases) {
    const tiles = model.slideTiles(h, w, { crop: cropSize, stride });
    assert.deepEqual(tiles, mmsegTiles(h, w, cropSize, stride), `${h} x ${w}, crop ${cropSize}, stride ${stride}`);
    const covered = new Uint8Array(h * w);
    for (const t of tiles) {
      assert.ok(t.y0 % S === 0 && t.x0 % S === 0, 'starts on a cell');
      assert.ok(t.y1 - t.y0 <= cropSize[0] && t.x1 - t.x0 <= cropSize[1], 'no larger than the crop');
      for (let y = t.y0; y < t.y1; y++) for (let x = t.x0; x < t.x1; x++) covered[y * w + x] = 1;
    }
    assert.ok(covered.every((v) => v === 1), 'every pixel covered');
  }
  // Written out: rows [0, 48), [32, 80), [56, 100) (the last starts at ceil((100 - 48) / 8) * 8).
  assert.deepEqual([...new Set(model.slideTiles(100, 132, { crop: 48, stride: 32 }).map((t) => `${t.y0}-${t.y1}`))], ['0-48', '32-80', '56-100']);
  // The default stride: two thirds of the crop, down to a multiple of the output stride.
  assert.deepEqual(model.slideTiles(600, 600, { crop: 512 }), model.slideTiles(600, 600, { crop: 512, stride: 336 }));
});

test('one crop covering the image: slide equals whole-image inference (with and without flip)', async () => {
  const input = randomInput(45, 61, 1);
  for (const flip of [false, true]) {
    const whole = await model.predictClasses(input, { flip, counts: true });
    const slide = await model.predictSliding(input, { crop: 64, flip, counts: true });
    assert.deepEqual(slide.labels.shape, [1, 45, 61]);
    assert.deepEqual(slide.labels.data(), whole.labels.data());
    assert.ok(maxAbsDiff(slide.confidence.data(), whole.confidence.data()) <= 1e-5);
    assert.deepEqual(slide.counts.data(), whole.counts.data());
    assert.ok(new Set(whole.labels.data()).size > 1, 'the image has more than one class');
    disposeAll(whole);
    disposeAll(slide);
  }
});

test('overlapping crops: the stitched logits and the labels equal a stitching of every crop\'s forward pass', async () => {
  const [h, w] = [100, 132];
  const input = randomInput(h, w, 2);
  const window = { crop: 48, stride: 32 };
  const tiles = model.slideTiles(h, w, window);
  assert.equal(tiles.length, 12);
  const seen = [];
  const out = await model.predictSliding(input, { ...window, logits: true, probabilities: true, onTile: (done, total) => seen.push([done, total]) });
  const ref = await referenceCanvas(input, mmsegTiles(h, w, [48, 48], [32, 32]));
  assert.ok(Math.max(...ref.count) > 1, 'the crops overlap');
  assert.deepEqual(out.logits.shape, [1, NUM_CLASS, ref.ch, ref.cw]);
  const cells = ref.ch * ref.cw;
  const got = logSoftmaxOverClasses(out.logits.data(), cells);
  const expected = logSoftmaxOverClasses(ref.canvas, cells);
  // No seams: every cell (those on crop borders, covered by one to four crops, included) is
  // the average of the crops that cover it.
  const err = maxAbsDiff(got, expected);
  assert.ok(err < 1e-4, `stitched log-probabilities differ by ${err}`);
  // The same cells shifted by one (a crop placed a cell off) would not match.
  assert.ok(maxAbsDiff(got.subarray(1), expected.subarray(0, expected.length - 1)) > 1e-2);

  const { labels, top, second } = fullSize(ref.canvas, ref.ch, ref.cw, h, w);
  const gotLabels = out.labels.data(), confidence = out.confidence.data(), probabilities = out.probabilities.data();
  let differing = 0;
  for (let i = 0; i < h * w; i++) {
    if (gotLabels[i] !== labels[i]) {
      assert.ok(top[i] - second[i] < 1e-5, `pixel ${i}: label ${gotLabels[i]}, expected ${labels[i]} (top two ${top[i]}, ${second[i]})`);
      differing++;
    }
    assert.ok(Math.abs(confidence[i] - top[i]) < 1e-5, `pixel ${i}: confidence ${confidence[i]}, expected ${top[i]}`);
    assert.ok(Math.abs(probabilities[gotLabels[i] * h * w + i] - confidence[i]) < 1e-6);
  }
  assert.ok(differing < 5, `${differing} labels differ (ties only)`);
  assert.ok(new Set(gotLabels).size > 1);
  assert.deepEqual(seen.at(-1), [12, 12], 'progress after every crop');
  disposeAll(out);
});

test('cancellation between crops: an AbortSignal fired after the first crop stops the work (ERR_ABORTED)', async () => {
  const input = randomInput(256, 256, 3);
  const total = model.slideTiles(256, 256, { crop: 64, stride: 32 }).length;
  assert.equal(total, 49);
  const controller = new AbortController();
  const ticks = [];
  await assert.rejects(
    inferClasses(model, [input], 256, 256, {
      mode: 'slide',
      crop: 64,
      stride: 32,
      signal: controller.signal,
      onTile: (done) => {
        ticks.push(done);
        controller.abort(new Error('enough'));
      },
    }),
    (error) => {
      assert.equal(error.code, 'ERR_ABORTED');
      assert.match(error.message, /aborted: enough/);
      const [, done] = /after (\d+) of 49 crops/.exec(error.cause.message) ?? [];
      assert.ok(Number(done) >= 1 && Number(done) < total, `stopped after ${done} of ${total} crops`);
      return true;
    },
  );
  assert.ok(ticks.length >= 1 && ticks.length < total);
  // The model is free again and a token cancelled before the call runs nothing.
  const token = native().createCancelToken();
  native().cancelToken(token);
  await assert.rejects(model.predictSliding(input, { crop: 64, cancel: token }), /after 0 of 36 crops/);
  const after = await model.predictSliding(randomInput(16, 16, 4), { crop: 16 });
  disposeAll(after);
});

test('bad windows and modes are refused with the option named', async () => {
  const input = randomInput(32, 32, 5);
  const reject = (options, pattern) => assert.throws(() => model.predictSliding(input, options), pattern);
  reject({ crop: 50 }, /Expected a multiple of the model's output stride 8 \(e\.g\. 48 or 56\) for options\.crop but received 50/);
  reject({ crop: [64, 60] }, /options\.crop\[1\]/);
  reject({ crop: 64, stride: 72 }, /at most the crop's height \(64\).*options\.stride/);
  reject({ crop: 0 }, /integer in \[1, 65536\] for options\.crop/);
  reject({ crop: [64] }, /one side or \[height, width\] for options\.crop/);
  reject({}, /crop size.*options\.crop/);
  reject({ crop: 64, onTile: 3 }, /function.*onTile/);
  assert.throws(() => model.slideTiles(0, 10, { crop: 64 }), /height/);
  await assert.rejects(inferClasses(model, [input], 32, 32, { mode: 'tiles' }), /one of whole, slide for options\.mode/);
  await assert.rejects(inferClasses(model, [input], 32, 32, { mode: 'slide' }), /crop size with mode 'slide'.*options\.crop/);
  await assert.rejects(inferClasses(model, [input], 32, 32, { crop: 64 }), /no crop with mode 'whole'/);
  await assert.rejects(inferClasses(model, [input, input], 32, 32, { mode: 'slide', crop: 64 }), /one input of the image's own size/);
  await assert.rejects(inferClasses(model, [input], 40, 32, { mode: 'slide', crop: 64 }), /one input of the image's own size/);
});

test('Segmenter mode slide: the image at its own size, crops counted in the compute budget', async () => {
  const segmenter = await Segmenter.load({
    config: 'mobilenetv2dilated-c1_deepsup',
    weights: [],
    overrides: { 'DATASET.num_class': NUM_CLASS },
    maxComputePixels: 10_000,
  });
  try {
    const [width, height] = [61, 45];
    const pixels = { data: new Uint8Array(width * height * 3).map((_, i) => (i * 37) % 251), width, height };
    const out = await segmenter.segment(pixels, { mode: 'slide', crop: 32, stride: 24, outputs: ['labels', 'summary'] });
    assert.equal(out.labels.length, width * height);
    assert.deepEqual(out.scales, [45]);
    // 45 x 61 in 2 x 3 crops (rows 32 + 29, columns 32 + 32 + 29: 5673 pixels) fits 10000; with a
    // stride of 8, 3 x 5 crops (93 x 157 = 14601 pixels) do not.
    await assert.rejects(segmenter.segment(pixels, { mode: 'slide', crop: 32, stride: 8 }), /would cost 0\.0146 MP \(61 x 45 in 15 crop\(s\)\).*maxComputePixels/);
    await assert.rejects(segmenter.segment(pixels, { mode: 'slide', crop: 32, scales: [300] }), /no scales with mode 'slide'/);
    await assert.rejects(segmenter.segment(pixels, { mode: 'slide', crop: 36 }), /multiple of the model's output stride/);
  } finally {
    await segmenter.close();
  }
});

test('a large input by crops holds no [numClass, H, W] buffer (RSS grows far less than 150 x H x W floats)', async () => {
  const big = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1', numClass: 150, init: 'procedural' });
  try {
    const [h, w] = [1536, 2048];
    const input = { data: new Float32Array(3 * h * w).fill(0.25), shape: [1, 3, h, w] };
    const before = process.memoryUsage().rss;
    const out = await big.predictSliding(input, { crop: 512, stride: 512 });
    const grown = (process.memoryUsage().rss - before) / 2 ** 20;
    const full = (150 * h * w * 4) / 2 ** 20;
    console.log(`# predictSliding ${w}x${h} by 512 x 512 crops: RSS +${grown.toFixed(0)} MiB (150 x H x W floats: ${full.toFixed(0)} MiB)`);
    // Measured +84 to +248 MiB (the input's native copy, labels, confidence, the 29 MiB canvas, one
    // crop's activations, malloc's cache); one full-size score buffer alone would be 1800 MiB.
    assert.ok(grown < full / 3, `RSS grew ${grown.toFixed(0)} MiB`);
    assert.deepEqual(out.labels.shape, [1, h, w]);
    disposeAll(out);
  } finally {
    big.dispose();
  }
});
