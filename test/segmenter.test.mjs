// Segmenter: loading (config name/file/object, .safetensors or .pth), every input kind giving
// the same answer, typed outputs, input errors with codes (corrupt, unsupported, huge headers,
// bad raw pixels), the bounded queue (ERR_BUSY), AbortSignal, close(), replicas, no tensor leak.
// Tiny model (mobilenetv2dilated + c1, 32 px, one scale), one LibTorch thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { Segmenter, SEGMENT_OUTPUTS, colorize, cudaStatus, isSegtoolError, liveTensorCount, setNumThreads } from '../dist/index.js';
import { createTinyModel, pngHeaderOnly, TINY_MODEL } from './helpers/tiny-model.mjs';

setNumThreads(1);
const tiny = await createTinyModel({ size: 32 });
test.after(() => tiny.cleanup());
const baseline = liveTensorCount();

/** A raw 256 x 256 image: at scale 256 it keeps a model busy for a while (tens of ms or more). */
const slowImage = { data: new Uint8Array(256 * 256 * 3).map((_, i) => (i * 37) & 255), width: 256, height: 256 };

/** A raw 32 x 32 image: raw pixels queue without I/O (encoded bytes first have their header read in sharp's thread pool). */
const rawImage = { data: new Uint8Array(32 * 32 * 3).map((_, i) => (i * 11) & 255), width: 32, height: 32 };

/**
 * Resolves once `condition()` holds, letting only microtasks run meanwhile: raw-pixel requests
 * reach the queue that way, and no inference can settle (that takes an event-loop turn), so
 * the queue is seen before any request could finish, however fast or slow the machine.
 */
async function untilQueued(condition) {
  for (let turn = 0; !condition(); turn++) {
    if (turn > 1000) throw new Error(`raw-pixel requests did not reach the queue without I/O: ${JSON.stringify(condition.toString())}`);
    await null;
  }
}

const code = (expected, pattern) => (error) => {
  assert.ok(isSegtoolError(error), `a SegtoolError, got ${error}`);
  assert.equal(error.code, expected, error.message);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

let segmenter;
test.before(async () => {
  segmenter = await Segmenter.load({ config: tiny.config, weights: [tiny.safetensors] });
});
test.after(() => segmenter?.close());

test('loads from a YAML file, a config object or a name, with .safetensors or .pth weights', async () => {
  assert.equal(segmenter.numClass, 150);
  assert.equal(segmenter.classNames[0], 'wall');
  assert.equal(segmenter.config.MODEL.arch_decoder, 'c1');
  const fromPth = await Segmenter.load({ config: { MODEL: TINY_MODEL, DATASET: { imgSizes: [32] } }, weights: tiny.pth });
  const a = await segmenter.segment(tiny.image(1));
  const b = await fromPth.segment(tiny.image(1));
  assert.deepEqual(b.labels, a.labels, 'the .pth pair and the .safetensors hold the same weights');
  await fromPth.close();
  // A bundled name with overrides; no weights on disk -> a clear ERR_NOT_FOUND naming TEST.checkpoint.
  await assert.rejects(
    Segmenter.load({ config: 'mobilenetv2dilated-c1_deepsup', overrides: { DIR: tiny.dir } }),
    code('ERR_NOT_FOUND', /TEST\.checkpoint/),
  );
  if (!cudaStatus().available) {
    await assert.rejects(Segmenter.load({ config: tiny.config, weights: [], device: 'cuda' }), code('ERR_DEVICE', /options\.device 'cuda' is not available/));
  }
  await assert.rejects(Segmenter.load({ config: tiny.config, weights: [], device: 'gpu' }), code('ERR_INVALID_ARG', /'cpu', 'cuda' or 'cuda:N' for options\.device/));
  await assert.rejects(Segmenter.load({ config: tiny.config, weights: [], threds: 2 }), code('ERR_INVALID_ARG', /Unknown Segmenter option "threds"/));
  await assert.rejects(Segmenter.load({ config: tiny.config, weights: [], concurrency: 0 }), code('ERR_INVALID_ARG', /concurrency/));
  await assert.rejects(Segmenter.load({ config: 'no-such-config' }), code('ERR_NOT_FOUND', /bundled configs/));
});

test('a path, encoded bytes (PNG, lossless WebP), raw RGB, RGBA and an ArrayBuffer give the same labels', async () => {
  const path = tiny.image(2);
  const bytes = readFileSync(path);
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  const rgba = new Uint8Array(info.width * info.height * 4);
  for (let i = 0; i < info.width * info.height; i++) {
    rgba.set(data.subarray(i * 3, i * 3 + 3), i * 4);
    rgba[i * 4 + 3] = 255;
  }
  const webp = await sharp(data, { raw: info }).webp({ lossless: true }).toBuffer();
  const results = await Promise.all([
    segmenter.segment(path),
    segmenter.segment(bytes),
    segmenter.segment(new Uint8Array(bytes)),
    segmenter.segment(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)),
    segmenter.segment(webp),
    segmenter.segment({ data: new Uint8Array(data), width: info.width, height: info.height }),
    segmenter.segment({ data: rgba, width: info.width, height: info.height, channels: 4 }),
  ]);
  for (const r of results) {
    assert.equal(r.width, 32);
    assert.equal(r.height, 32);
    assert.deepEqual(r.labels, results[0].labels);
    assert.deepEqual(r.classes, results[0].classes);
  }
  const gray = await segmenter.segment({ data: new Uint8Array(32 * 16).fill(128), width: 32, height: 16, channels: 1 });
  assert.equal(gray.labels.length, 32 * 16);
});

test('outputs: default labels + summary; png, probabilities on request; the fields match', async () => {
  const plain = await segmenter.segment(tiny.image(3));
  assert.deepEqual(Object.keys(plain).sort(), ['classes', 'confidence', 'height', 'labels', 'numClass', 'scales', 'timings', 'width']);
  assert.deepEqual(plain.scales, [32]);
  for (const key of ['queuedMs', 'decodeMs', 'inferenceMs', 'encodeMs', 'totalMs']) assert.ok(plain.timings[key] >= 0, key);
  const ratio = plain.classes.reduce((s, c) => s + c.ratio, 0);
  assert.ok(ratio > 0.9 && ratio <= 1 + 1e-9);

  const all = await segmenter.segment(tiny.image(3), { outputs: SEGMENT_OUTPUTS });
  assert.deepEqual(all.labels, plain.labels);
  const { numClass, width, height } = all;
  assert.equal(all.probabilities.length, numClass * width * height);
  for (const pixel of [0, 100, width * height - 1]) {
    let sum = 0;
    let best = 0;
    for (let c = 0; c < numClass; c++) {
      const p = all.probabilities[c * width * height + pixel];
      sum += p;
      if (p > all.probabilities[best * width * height + pixel]) best = c;
    }
    assert.ok(Math.abs(sum - 1) < 1e-4, `probabilities sum to 1 at pixel ${pixel}`);
    assert.equal(all.labels[pixel], best);
    assert.ok(Math.abs(all.confidence[pixel] - all.probabilities[best * width * height + pixel]) < 1e-6);
  }
  const meta = await sharp(all.png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', width, height, 3]);
  const decoded = await sharp(all.png).raw().toBuffer();
  assert.deepEqual(new Uint8Array(decoded), colorize(all.labels, width, height), 'the PNG holds the ADE20K palette colours');

  const pngOnly = await segmenter.segment(tiny.image(3), { outputs: ['png'] });
  assert.equal(pngOnly.labels, undefined);
  assert.equal(pngOnly.classes, undefined);
  assert.ok(Buffer.isBuffer(pngOnly.png));

  const flipped = await segmenter.segment(tiny.image(3), { flip: true, scales: [32, 48] });
  assert.deepEqual(flipped.scales, [32, 48]);
  assert.equal(flipped.labels.length, width * height);

  await assert.rejects(segmenter.segment(tiny.image(3), { outputs: ['labels', 'mask'] }), code('ERR_INVALID_ARG', /outputs\[1\]/));
  await assert.rejects(segmenter.segment(tiny.image(3), { outputs: [] }), code('ERR_INVALID_ARG', /outputs/));
  await assert.rejects(segmenter.segment(tiny.image(3), { scales: [0] }), code('ERR_INVALID_ARG', /scales/));
  await assert.rejects(segmenter.segment(tiny.image(3), { signal: 'stop' }), code('ERR_INVALID_ARG', /signal/));
});

test('bad inputs fail with codes and messages, before inference, and the Segmenter keeps working', async () => {
  const png = readFileSync(tiny.image(1));
  await assert.rejects(segmenter.segment(Buffer.from('definitely not an image')), code('ERR_BAD_IMAGE', /not a supported image/));
  await assert.rejects(segmenter.segment(Buffer.alloc(0)), code('ERR_BAD_IMAGE', /empty/));
  await assert.rejects(segmenter.segment(png.subarray(0, png.length - 40)), code('ERR_BAD_IMAGE'), 'truncated PNG');
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
  await assert.rejects(segmenter.segment(svg), code('ERR_BAD_IMAGE', /SVG is not a supported image type|not a supported image/));
  const t0 = performance.now();
  await assert.rejects(segmenter.segment(pngHeaderOnly(100_000, 100_000)), code('ERR_INVALID_ARG', /100000 x 100000 = 10000 MP, more than maxPixels \(40 MP\)/));
  assert.ok(performance.now() - t0 < 2000, 'the size is read from the header, nothing is decoded');
  await assert.rejects(segmenter.segment('/no/such/image.png'), code('ERR_NOT_FOUND'));
  await assert.rejects(segmenter.segment({ data: new Uint8Array(10), width: 2, height: 2 }), code('ERR_INVALID_ARG', /12 bytes/));
  await assert.rejects(segmenter.segment({ data: new Uint8Array(8), width: 2, height: 2, channels: 2 }), code('ERR_INVALID_ARG', /channels/));
  await assert.rejects(segmenter.segment(42), code('ERR_INVALID_ARG', /an image path, a Buffer/));
  const small = await Segmenter.load({ config: tiny.config, weights: [tiny.safetensors], maxPixels: 1000 });
  await assert.rejects(small.segment(tiny.image(1)), code('ERR_INVALID_ARG', /32 x 32 = 0\.00102 MP, more than maxPixels/));
  await assert.rejects(small.segment({ data: new Uint8Array(40 * 40 * 3), width: 40, height: 40 }), code('ERR_INVALID_ARG', /maxPixels/));
  await small.close();
  const ok = await segmenter.segment(png);
  assert.equal(ok.width, 32);
});

test('the queue: concurrency + maxQueue requests are taken, more get ERR_BUSY at once; AbortSignal removes a waiting one', async () => {
  const s = await Segmenter.load({ config: tiny.config, weights: [tiny.safetensors], concurrency: 1, maxQueue: 2 });
  const image = readFileSync(tiny.image(1));
  const settled = await Promise.allSettled(Array.from({ length: 6 }, () => s.segment(image)));
  assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected']);
  // The message counts the requests that wait (it said "0 waiting" while they did).
  for (const r of settled.slice(3)) code('ERR_BUSY', /queue is full \(\d running, [1-9]\d* waiting, maxQueue 2\)/)(r.reason);
  assert.equal(s.stats.rejected, 3);

  // Abort a waiting request: it leaves the queue at once; the others complete.
  const controller = new AbortController();
  const first = s.segment(slowImage, { scales: [256] }); // keeps the model busy
  const second = s.segment(rawImage, { signal: controller.signal });
  const third = s.segment(rawImage);
  await untilQueued(() => s.stats.queued === 2);
  controller.abort();
  assert.equal(s.stats.queued, 1, 'removed from the queue synchronously');
  await assert.rejects(second, code('ERR_ABORTED', /aborted while queued/));
  await Promise.all([first, third]);
  // An already aborted signal never starts.
  await assert.rejects(s.segment(image, { signal: AbortSignal.abort() }), code('ERR_ABORTED', /before it started/));
  assert.deepEqual({ active: s.stats.active, queued: s.stats.queued }, { active: 0, queued: 0 });
  await s.close();
});

test('close(): running requests finish, waiting ones get ERR_DISPOSED, later calls too; two requests in the pipeline at once', async () => {
  const s = await Segmenter.load({ config: tiny.config, weights: [tiny.safetensors], concurrency: 2 });
  const image = readFileSync(tiny.image(1));
  const running = [s.segment(slowImage, { scales: [256] }), s.segment(slowImage, { scales: [256] })];
  const waiting = [s.segment(rawImage), s.segment(rawImage), s.segment(rawImage)];
  await untilQueued(() => s.stats.active === 2 && s.stats.queued === 3);
  const closing = s.close();
  assert.ok(s.closed);
  assert.equal(s.stats.queued, 0);
  for (const r of await Promise.allSettled(waiting)) code('ERR_DISPOSED', /closed while the request was queued/)(r.reason);
  for (const r of await Promise.all(running)) assert.equal(r.labels.length, 256 * 256, 'the running ones finish');
  await closing;
  await assert.rejects(s.segment(image), code('ERR_DISPOSED'));
  await s.close(); // twice is fine
});

test('no tensor is left behind', async () => {
  await segmenter.close();
  segmenter = undefined;
  assert.equal(liveTensorCount(), baseline);
});
