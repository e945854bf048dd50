import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  createEvalLoader, readImage, readLabel, resizeBilinear, resizeNearest, nearestIndices, NORMALIZE_SPECS,
} from '../dist/data/index.js';
import { decodePng } from '../dist/data/png.js';
import { normalizeTables } from '../dist/data/normalize.js';
import { readSafetensors } from './helpers/safetensors.mjs';
import { chunk, encodePng, rgbPattern, tempDir } from './helpers/data.mjs';
import { makeFifo, release } from './helpers/special-files.mjs';
import { deflateSync } from 'node:zlib';
import { readImageSizes } from '../dist/data/list.js';

const fixtureDir = new URL('./fixtures/data/', import.meta.url).pathname;
const record = { image: join(fixtureDir, 'ADE_val_00001519.jpg'), annotation: join(fixtureDir, 'ADE_val_00001519.png') };
const reference = readSafetensors(join(fixtureDir, 'ADE_val_00001519.val-input.safetensors'));

async function evalSample(decoder) {
  const loader = await createEvalLoader({ records: [record], workers: 0, decoder });
  const { value } = await loader.next();
  await loader.close();
  return value;
}

function meanAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

test('the real image: scale0 matches the reference pipeline (sharp decoder)', async () => {
  const sample = await evalSample('sharp');
  assert.deepEqual(sample.images[0].shape, reference.tensors.scale0.shape);
  const diff = meanAbsDiff(sample.images[0].data, reference.tensors.scale0.data);
  assert.ok(diff < 0.02, `mean abs diff ${diff}`);
  // libjpeg-turbo decoding + Pillow-exact resizing: bit for bit in practice.
  assert.ok(diff < 1e-6, `expected an exact match, mean abs diff ${diff}`);
  // Every scale: shapes and per-channel means as recorded.
  assert.deepEqual(sample.images.map((i) => i.shape), JSON.parse(reference.metadata.shapes));
  const means = JSON.parse(reference.metadata.channel_means);
  for (const [s, img] of sample.images.entries()) {
    const plane = img.shape[2] * img.shape[3];
    for (let c = 0; c < 3; c++) {
      let sum = 0;
      for (let i = 0; i < plane; i++) sum += img.data[c * plane + i];
      assert.ok(Math.abs(sum / plane - means[s][c]) < 1e-4, `scale ${s} channel ${c}`);
    }
  }
  // Label: original size, shifted by -1.
  assert.deepEqual(sample.label.shape, reference.tensors.seg_label.shape);
  const ref = reference.tensors.seg_label.data;
  for (let i = 0; i < ref.length; i++) if (BigInt(sample.label.data[i]) !== ref[i]) assert.fail(`label differs at ${i}`);
});

test('the real image: the jimp decoder stays within the fixture tolerance', async () => {
  const sample = await evalSample('jimp');
  const diff = meanAbsDiff(sample.images[0].data, reference.tensors.scale0.data);
  assert.ok(diff < 0.02, `mean abs diff ${diff}`);
});

test('PNG decoder: every colour type, bit depth, row filter, interlaced or not', () => {
  const width = 13, height = 11;
  const cases = [
    [0, 1], [0, 2], [0, 4], [0, 8], [0, 16], [3, 1], [3, 2], [3, 4], [3, 8], [4, 8], [4, 16], [2, 8], [2, 16], [6, 8], [6, 16],
  ];
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
  for (const [colorType, bitDepth] of cases) {
    for (const interlace of [false, true]) {
      const n = width * height * channels[colorType];
      const max = colorType === 3 ? Math.min(255, (1 << bitDepth) - 1) : (2 ** bitDepth) - 1;
      const data = Array.from({ length: n }, (_, i) => (i * 2654435761) % (max + 1));
      const palette = colorType === 3 ? Array.from({ length: 3 * (max + 1) }, (_, i) => (i * 37) & 255) : undefined;
      const png = decodePng(encodePng({ width, height, colorType, bitDepth, data, palette, interlace }));
      assert.equal(png.width, width);
      assert.equal(png.channels, channels[colorType]);
      assert.deepEqual(Array.from(png.data), data, `colour type ${colorType}, ${bitDepth} bits, interlace ${interlace}`);
    }
  }
});

test('PNG decoder agrees with libpng on files written by sharp (adaptive filters, interlaced)', async () => {
  const width = 37, height = 29;
  const raw = Buffer.from(rgbPattern(width, height, 3));
  for (const progressive of [false, true]) {
    const file = await sharp(raw, { raw: { width, height, channels: 3 } }).png({ adaptiveFiltering: true, progressive }).toBuffer();
    assert.deepEqual(Buffer.from(decodePng(file).data), raw);
  }
});

test('PNG decoder: corrupt and truncated files are errors', () => {
  const good = encodePng({ width: 4, height: 4, colorType: 0, bitDepth: 8, data: new Array(16).fill(3) });
  const badCrc = Buffer.from(good);
  badCrc[20] ^= 1; // inside IHDR
  assert.throws(() => decodePng(badCrc), /CRC mismatch in IHDR/);
  assert.throws(() => decodePng(good.subarray(0, good.length - 20)), /truncated/);
  assert.throws(() => decodePng(Buffer.from('not a png at all')), /signature/);
});

test('annotations: palette indices, 16-bit values, gray+alpha, gray stored as RGB; colour is rejected', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const w = 5, h = 3, values = Array.from({ length: 15 }, (_, i) => i * 10);
  const write = (name, spec) => { const p = join(dir, name); writeFileSync(p, encodePng({ width: w, height: h, ...spec })); return p; };
  const palette = Array.from({ length: 256 * 3 }, (_, i) => 255 - (i % 256));
  let label = await readLabel(write('p.png', { colorType: 3, bitDepth: 8, data: values, palette }));
  assert.deepEqual(Array.from(label.data), values, 'palette PNG gives indices, not colours');
  const big = values.map((v) => v * 100);
  label = await readLabel(write('g16.png', { colorType: 0, bitDepth: 16, data: big }));
  assert.ok(label.data instanceof Uint16Array);
  assert.deepEqual(Array.from(label.data), big);
  label = await readLabel(write('ga.png', { colorType: 4, bitDepth: 8, data: values.flatMap((v) => [v, 255]) }));
  assert.deepEqual(Array.from(label.data), values);
  label = await readLabel(write('rgbgray.png', { colorType: 2, bitDepth: 8, data: values.flatMap((v) => [v, v, v]) }));
  assert.deepEqual(Array.from(label.data), values);
  const colour = write('rgb.png', { colorType: 2, bitDepth: 8, data: values.flatMap((v) => [v, v + 1, v]) });
  await assert.rejects(readLabel(colour), { code: 'ERR_BAD_IMAGE', message: /rgb\.png.*colour image/ });
});

test('images: grayscale, RGBA, palette, 16-bit become 8-bit RGB', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const w = 6, h = 4;
  const write = (name, buf) => { const p = join(dir, name); writeFileSync(p, buf); return p; };
  const gray = Array.from({ length: w * h }, (_, i) => i * 10);
  let img = await readImage(write('gray.png', encodePng({ width: w, height: h, colorType: 0, bitDepth: 8, data: gray })));
  assert.deepEqual(Array.from(img.data), gray.flatMap((v) => [v, v, v]));
  const rgba = gray.flatMap((v) => [v, 255 - v, 7, 0]); // fully transparent: alpha is dropped, not composited
  img = await readImage(write('rgba.png', encodePng({ width: w, height: h, colorType: 6, bitDepth: 8, data: rgba })));
  assert.deepEqual(Array.from(img.data), gray.flatMap((v) => [v, 255 - v, 7]));
  const palette = Array.from({ length: 256 * 3 }, (_, i) => (i * 5) & 255);
  img = await readImage(write('pal.png', encodePng({ width: w, height: h, colorType: 3, bitDepth: 8, data: gray, palette })));
  assert.deepEqual(Array.from(img.data), gray.flatMap((v) => [palette[3 * v], palette[3 * v + 1], palette[3 * v + 2]]));
  const deep = gray.flatMap((v) => [v * 257, 65535, 0]);
  img = await readImage(write('rgb16.png', encodePng({ width: w, height: h, colorType: 2, bitDepth: 16, data: deep })));
  assert.deepEqual(Array.from(img.data), gray.flatMap((v) => [v, 255, 0]));
  for (const decoder of ['sharp', 'jimp']) {
    const g = await readImage(join(dir, 'gray.png'), { decoder });
    assert.equal(g.data.length, w * h * 3, decoder);
  }
});

test('images: EXIF orientation is applied by default and can be ignored', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'rotated.jpg');
  writeFileSync(path, await sharp(Buffer.from(rgbPattern(40, 20)), { raw: { width: 40, height: 20, channels: 3 } })
    .jpeg().withMetadata({ orientation: 6 }).toBuffer());
  const applied = await readImage(path);
  assert.deepEqual([applied.width, applied.height], [20, 40]);
  const raw = await readImage(path, { exif: 'ignore' });
  assert.deepEqual([raw.width, raw.height], [40, 20]);
  await assert.rejects(readImage(path, { exif: 'sideways' }), { code: 'ERR_INVALID_ARG', message: /exif/ });
  const jimp = await readImage(path, { decoder: 'jimp' });
  assert.deepEqual([jimp.width, jimp.height], [20, 40]);
  await assert.rejects(readImage(path, { decoder: 'jimp', exif: 'ignore' }), { code: 'ERR_INVALID_ARG', message: /exif/ });
});

test('resize: PIL pixel-centre nearest and bilinear invariants', () => {
  assert.deepEqual(Array.from(nearestIndices(4, 2)), [1, 3]);
  assert.deepEqual(Array.from(nearestIndices(3, 6)), [0, 0, 1, 1, 2, 2]);
  assert.deepEqual(Array.from(nearestIndices(16, 2)), [4, 12]);
  const label = Uint8Array.from([1, 2, 3, 4, 5, 6]);
  assert.deepEqual(Array.from(resizeNearest(label, 3, 2, 6, 4)), [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6]);
  const flat = new Uint8Array(30 * 20 * 3).fill(77);
  for (const [ow, oh] of [[7, 5], [30, 9], [61, 43], [30, 20]]) {
    const out = resizeBilinear(flat, 30, 20, 3, ow, oh);
    assert.equal(out.length, ow * oh * 3);
    assert.ok(out.every((v) => v === 77), `${ow}x${oh}`);
  }
  // Upscaling by 2 interpolates between neighbours with weights 1/4, 3/4 (pixel centres).
  const row = resizeBilinear(Uint8Array.from([0, 100]), 2, 1, 1, 4, 1);
  assert.deepEqual(Array.from(row), [0, 25, 75, 100]);
});

/** Pillow's ImagingResample for uint8, written plainly: the check for the optimised loops. */
function pillowResize(src, w, h, ch, ow, oh) {
  const coeffs = (inSize, outSize) => {
    const scale = inSize / outSize, fs = Math.max(scale, 1), support = fs;
    return Array.from({ length: outSize }, (_, xx) => {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(0, Math.trunc(center - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
      const ws = [];
      for (let x = xmin; x < xmax; x++) ws.push(Math.max(0, 1 - Math.abs((x - center + 0.5) / fs)));
      const total = ws.reduce((a, b) => a + b, 0);
      return { xmin, ws: ws.map((v) => Math.trunc(0.5 + (v / total) * 2 ** 22)) };
    });
  };
  const clip = (v) => Math.min(255, Math.max(0, Math.floor(v / 2 ** 22)));
  let cur = src, cw = w;
  if (ow !== w) {
    const cs = coeffs(w, ow);
    const out = new Uint8Array(ow * h * ch);
    for (let y = 0; y < h; y++) for (let x = 0; x < ow; x++) for (let c = 0; c < ch; c++) {
      let s = 2 ** 21;
      cs[x].ws.forEach((k, t) => { s += cur[(y * w + cs[x].xmin + t) * ch + c] * k; });
      out[(y * ow + x) * ch + c] = clip(s);
    }
    cur = out; cw = ow;
  }
  if (oh !== h) {
    const cs = coeffs(h, oh);
    const out = new Uint8Array(cw * oh * ch);
    for (let y = 0; y < oh; y++) for (let x = 0; x < cw * ch; x++) {
      let s = 2 ** 21;
      cs[y].ws.forEach((k, t) => { s += cur[(cs[y].xmin + t) * cw * ch + x] * k; });
      out[y * cw * ch + x] = clip(s);
    }
    cur = out;
  }
  return cur;
}

test('bilinear resize equals a plain Pillow resampler for shrinks, stretches and 1-4+ taps', () => {
  const w = 97, h = 61;
  for (const ch of [1, 3]) {
    const src = Uint8Array.from({ length: w * h * ch }, (_, i) => (i * 2654435761) >>> 24);
    for (const [ow, oh] of [[13, 7], [50, 61], [97, 30], [200, 150], [96, 60], [40, 100], [5, 3], [1, 1]]) {
      assert.deepEqual(resizeBilinear(src, w, h, ch, ow, oh), pillowResize(src, w, h, ch, ow, oh), `${ch}ch ${ow}x${oh}`);
    }
  }
});

test('normalisation presets', () => {
  const [r, g, b] = normalizeTables('imagenet');
  assert.ok(Math.abs(r[255] - (1 - 0.485) / 0.229) < 1e-6);
  assert.ok(Math.abs(b[0] - -0.406 / 0.225) < 1e-6);
  const bgr = normalizeTables('legacy-bgr');
  assert.ok(Math.abs(bgr[0][200] - (200 - 102.9801)) < 1e-4);
  assert.deepEqual(NORMALIZE_SPECS['legacy-bgr'].order, [2, 1, 0]);
  assert.ok(g instanceof Float32Array);
});

// ---------------------------------------------------------------------------------------------
// Issue 17: bounded inflation, raster formats only, regular files only.

/** A PNG of `width` x `height` 8-bit gray whose IDAT holds `raw` (filter bytes included) deflated. */
function pngWithRaw(width, height, raw, trailing = Buffer.alloc(0)) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // gray
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)), trailing]);
}

test('PNG decoder: inflates at most what the IHDR declares; data after IEND is refused', () => {
  // 4x4 gray declares 4 rows of 1 filter byte + 4 samples = 20 bytes.
  const exact = pngWithRaw(4, 4, Buffer.alloc(20, 0));
  assert.equal(decodePng(exact).data.length, 16);
  // 16 MiB of zeros deflates to ~16 KiB: a bomb behind a 4x4 header.
  const bomb = pngWithRaw(4, 4, Buffer.alloc(16 * 2 ** 20, 0));
  assert.ok(bomb.length < 100_000);
  assert.throws(() => decodePng(bomb), /inflates to more than the 20 bytes a 4x4 image declares/);
  assert.throws(() => decodePng(pngWithRaw(4, 4, Buffer.alloc(21, 0))), /more than the 20 bytes/);
  assert.throws(() => decodePng(pngWithRaw(4, 4, Buffer.alloc(19, 0))), /truncated/);
  assert.throws(() => decodePng(pngWithRaw(4, 4, Buffer.alloc(20, 0), Buffer.from('trailing junk'))), /13 bytes of data after the IEND chunk/);
});

const SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><rect width="64" height="48" fill="red"/></svg>';

test('SVG (vector) files are refused by every decode path with ERR_BAD_IMAGE naming the file and the types', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const svg = join(dir, 'drawing.jpg'); // the extension does not matter: the content decides
  writeFileSync(svg, SVG);
  const refused = (e) => e.code === 'ERR_BAD_IMAGE' && /drawing\.jpg: SVG is not a supported image type \(expected JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF\)/.test(e.message);
  await assert.rejects(readImage(svg), refused);
  await assert.rejects(readImageSizes([{ image: svg }]), refused);
  await assert.rejects(
    readLabel(svg),
    (e) => e.code === 'ERR_BAD_IMAGE' && /annotation .*drawing\.jpg: SVG is not a supported annotation type \(expected PNG or single-channel TIFF\)/.test(e.message),
  );
  const loader = await createEvalLoader({ records: [{ image: svg }], workers: 0 });
  await assert.rejects(loader.next(), (e) => /SVG is not a supported image type/.test(e.message));
  await loader.close();
});

test('images and annotations must be regular files: /dev/zero and a FIFO are refused at once', { timeout: 30000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  await assert.rejects(readImage('/dev/zero'), (e) => e.code === 'ERR_BAD_FILE' && /image \/dev\/zero is a character device, not a regular file/.test(e.message));
  const fifo = makeFifo(dir, 'label.png');
  try {
    await assert.rejects(readLabel(fifo), (e) => e.code === 'ERR_BAD_FILE' && /annotation .*label\.png is a FIFO/.test(e.message));
  } finally {
    release(fifo);
  }
  const big = join(dir, 'big.png');
  writeFileSync(big, Buffer.alloc(4096));
  process.env.SEGTOOL_MAX_ANNOTATION_BYTES = '1000';
  try {
    await assert.rejects(readLabel(big), (e) => e.code === 'ERR_BAD_FILE' && /over the limit of 1000 bytes \(raise it with SEGTOOL_MAX_ANNOTATION_BYTES\)/.test(e.message));
  } finally {
    delete process.env.SEGTOOL_MAX_ANNOTATION_BYTES;
  }
});
