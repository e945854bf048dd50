import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import { Jimp } from 'jimp';
import {
  ADE20K_CLASS_NAMES,
  ADE20K_CLASS_SYNONYMS,
  ADE20K_NUM_CLASSES,
  ade20kPalette,
  colorize,
} from '../dist/eval/palette.js';
import { classCoverage, composePanels, encodeImagePng, encodeLabelPng, visualizationPanel } from '../dist/eval/visualize.js';
import { encodePng, encodePngSync } from '../dist/eval/png.js';

const fixture = (name) => new URL(`./fixtures/data/${name}`, import.meta.url);
const COLORS = JSON.parse(readFileSync(fixture('color150.json'), 'utf8'));

/** Decodes with jimp (an independent decoder) to RGBA. */
async function decodeWithJimp(png) {
  const image = await Jimp.read(png);
  return { width: image.bitmap.width, height: image.bitmap.height, rgba: new Uint8Array(image.bitmap.data) };
}

/** Minimal PNG reader for what jimp cannot check (16-bit gray): header, CRCs, all five filters. */
function decodeRaw(png) {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let offset = 8;
  let header;
  const idat = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const body = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') header = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), bitDepth: body[8], colorType: body[9] };
    if (type === 'IDAT') idat.push(body);
    offset += 12 + length;
  }
  const channels = { 0: 1, 2: 3, 6: 4 }[header.colorType];
  const bpp = (channels * header.bitDepth) / 8;
  const rowBytes = header.width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  const out = new Uint8Array(rowBytes * header.height);
  for (let y = 0; y < header.height; y++) {
    const filter = raw[y * (rowBytes + 1)];
    for (let i = 0; i < rowBytes; i++) {
      const x = raw[y * (rowBytes + 1) + 1 + i];
      const a = i >= bpp ? out[y * rowBytes + i - bpp] : 0;
      const b = y > 0 ? out[(y - 1) * rowBytes + i] : 0;
      const c = i >= bpp && y > 0 ? out[(y - 1) * rowBytes + i - bpp] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const predictor = [0, a, b, (a + b) >> 1, paeth][filter];
      out[y * rowBytes + i] = (x + predictor) & 0xff;
    }
  }
  let samples = out;
  if (header.bitDepth === 16) {
    samples = new Uint16Array(out.length / 2);
    for (let i = 0; i < samples.length; i++) samples[i] = (out[2 * i] << 8) | out[2 * i + 1];
  }
  return { ...header, channels, samples };
}

test('the palette is color150.json, the names are object150_info.csv', () => {
  assert.equal(ADE20K_NUM_CLASSES, 150);
  assert.equal(COLORS.length, 150);
  assert.deepEqual(Array.from(ade20kPalette()), COLORS.flat());
  const csv = readFileSync(fixture('object150_info.csv'), 'utf8').trim().split('\n').slice(1);
  assert.equal(csv.length, 150);
  csv.forEach((line, i) => {
    const cells = line.split(',');
    assert.equal(Number(cells[0]), i + 1);
    assert.equal(ADE20K_CLASS_SYNONYMS[i], cells[5]);
    assert.equal(ADE20K_CLASS_NAMES[i], cells[5].split(';')[0]);
  });
  assert.deepEqual(ADE20K_CLASS_NAMES.slice(0, 5), ['wall', 'building', 'sky', 'floor', 'tree']);
  assert.equal(ADE20K_CLASS_NAMES[149], 'flag');
  // a copy each time: callers cannot corrupt the shared palette
  ade20kPalette()[0] = 1;
  assert.equal(ade20kPalette()[0], COLORS[0][0]);
});

test('colorize maps class indices to palette colours; unlabeled and unknown stay black', () => {
  const labels = Int16Array.from([0, 1, 149, -1, 150, 2]);
  const rgb = colorize(labels, 3, 2);
  assert.equal(rgb.length, 18);
  assert.deepEqual([...rgb.subarray(0, 3)], COLORS[0]);
  assert.deepEqual([...rgb.subarray(3, 6)], COLORS[1]);
  assert.deepEqual([...rgb.subarray(6, 9)], COLORS[149]);
  assert.deepEqual([...rgb.subarray(9, 12)], [0, 0, 0]);
  assert.deepEqual([...rgb.subarray(12, 15)], [0, 0, 0]);
  assert.deepEqual([...rgb.subarray(15, 18)], COLORS[2]);
  const rgba = colorize(labels, 3, 2, { channels: 4 });
  assert.deepEqual([...rgba.subarray(0, 4)], [...COLORS[0], 255]);
  assert.deepEqual([...rgba.subarray(12, 16)], [0, 0, 0, 0]); // unlabeled is transparent
  // BigInt64Array (safetensors int64) and number[] work too
  assert.deepEqual(colorize(BigInt64Array.from([1n, -1n]), 2, 1), Uint8Array.from([...COLORS[1], 0, 0, 0]));
  assert.deepEqual(colorize([2], 1, 1, { palette: [1, 2, 3, 4, 5, 6, 7, 8, 9] }), Uint8Array.from([7, 8, 9]));
  assert.throws(() => colorize(new Uint8Array(5), 3, 2), { code: 'ERR_INVALID_ARG', message: /Expected 6 pixels \(3 x 2\) for labelMap/ });
  assert.throws(() => colorize(new Uint8Array(6), 3, 2, { channels: 2 }), { code: 'ERR_INVALID_ARG', message: /options.channels/ });
});

test('panels: image | ground truth | prediction side by side', () => {
  const width = 4;
  const height = 2;
  const image = { data: Uint8Array.from({ length: width * height * 3 }, (_, i) => i), width, height, channels: 3 };
  const label = Int32Array.from([0, 1, 2, 3, -1, 5, 6, 7]);
  const pred = Int32Array.from([7, 6, 5, 4, 3, 2, 1, 0]);
  const panel = visualizationPanel({ image, label, pred });
  assert.deepEqual({ width: panel.width, height: panel.height, channels: panel.channels }, { width: 12, height: 2, channels: 3 });
  const at = (x, y) => [...panel.data.subarray((y * panel.width + x) * 3, (y * panel.width + x) * 3 + 3)];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      assert.deepEqual(at(x, y), [3 * i, 3 * i + 1, 3 * i + 2], `image at ${x},${y}`);
      assert.deepEqual(at(width + x, y), label[i] < 0 ? [0, 0, 0] : COLORS[label[i]], `label at ${x},${y}`);
      assert.deepEqual(at(2 * width + x, y), COLORS[pred[i]], `pred at ${x},${y}`);
    }
  }
  // test panels (no ground truth): image | prediction
  assert.equal(visualizationPanel({ image, pred }).width, 8);
  // gaps, gray and RGBA inputs
  const gray = { data: Uint8Array.from([10, 20]), width: 1, height: 2, channels: 1 };
  const rgba = { data: Uint8Array.from([1, 2, 3, 0, 4, 5, 6, 255]), width: 1, height: 2, channels: 4 };
  const joined = composePanels([gray, rgba], { gap: 2, gapColor: [9, 9, 9] });
  assert.equal(joined.width, 4);
  assert.deepEqual([...joined.data], [10, 10, 10, 9, 9, 9, 9, 9, 9, 1, 2, 3, 20, 20, 20, 9, 9, 9, 9, 9, 9, 4, 5, 6]);
  assert.throws(() => composePanels([gray, { data: new Uint8Array(3), width: 1, height: 1, channels: 3 }]), { code: 'ERR_INVALID_ARG', message: /same height/ });
  assert.throws(() => composePanels([{ ...image, data: new Uint8Array(3) }]), { code: 'ERR_INVALID_ARG', message: /panels\[0\].data/ });
  assert.throws(() => composePanels([]), { code: 'ERR_INVALID_ARG' });
});

test('PNG of RGB, RGBA and gray decodes back identically (jimp as the decoder)', async () => {
  const width = 37;
  const height = 23;
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (const channels of [3, 4, 1]) {
    const data = Uint8Array.from({ length: width * height * channels }, random);
    const png = await encodePng(data, width, height, { channels });
    assert.deepEqual(decodeRaw(encodePngSync(data, width, height, { channels })).samples, data);
    const decoded = await decodeWithJimp(png);
    assert.equal(decoded.width, width);
    assert.equal(decoded.height, height);
    for (let i = 0; i < width * height; i++) {
      const expected = channels === 1 ? [data[i], data[i], data[i], 255] : [...data.subarray(i * channels, i * channels + 3), channels === 4 ? data[i * channels + 3] : 255];
      assert.deepEqual([...decoded.rgba.subarray(4 * i, 4 * i + 4)], expected, `pixel ${i} of ${channels}-channel PNG`);
    }
    assert.deepEqual(decodeRaw(png).samples, data);
  }
  // the real annotation, coloured, survives the round trip
  const annotation = await Jimp.read(fileURLToPath(fixture('ADE_val_00001519.png')));
  const { width: w, height: h } = annotation.bitmap;
  const labels = Int16Array.from({ length: w * h }, (_, i) => annotation.bitmap.data[4 * i] - 1);
  const colored = colorize(labels, w, h);
  const back = await decodeWithJimp(await encodeImagePng({ data: colored, width: w, height: h, channels: 3 }));
  for (let i = 0; i < w * h; i++) {
    if (back.rgba[4 * i] !== colored[3 * i] || back.rgba[4 * i + 1] !== colored[3 * i + 1] || back.rgba[4 * i + 2] !== colored[3 * i + 2]) {
      assert.fail(`pixel ${i} differs`);
    }
  }
  assert.throws(() => encodePngSync(new Uint8Array(5), 2, 1), { code: 'ERR_INVALID_ARG', message: /Expected 6 samples/ });
  assert.throws(() => encodePngSync(new Uint16Array(6), 2, 1), { code: 'ERR_INVALID_ARG', message: /Uint8Array/ });
  await assert.rejects(encodePng(new Uint8Array(6), 0, 1), { code: 'ERR_INVALID_ARG', message: /width/ });
});

test('label PNGs are annotation style: class + 1, 0 unlabeled; 16-bit above 254 classes', async () => {
  const labels = Int32Array.from([0, 149, -1, 7, 3, -1]);
  const png = await encodeLabelPng(labels, 3, 2);
  const raw = decodeRaw(png);
  assert.deepEqual({ bitDepth: raw.bitDepth, channels: raw.channels }, { bitDepth: 8, channels: 1 });
  assert.deepEqual([...raw.samples], [1, 150, 0, 8, 4, 0]);
  const decoded = await decodeWithJimp(png); // a standard decoder agrees
  assert.deepEqual([...decoded.rgba].filter((_, i) => i % 4 === 0), [1, 150, 0, 8, 4, 0]);
  const wide = decodeRaw(await encodeLabelPng(Int32Array.from([300, -1, 0, 65000]), 2, 2));
  assert.equal(wide.bitDepth, 16);
  assert.deepEqual([...wide.samples], [301, 0, 1, 65001]);
});

test('class coverage: classes above 0.1% by decreasing area, with names', () => {
  const labels = new Int16Array(10000);
  labels.fill(2, 0, 6000); // sky 60%
  labels.fill(0, 6000, 9000); // wall 30%
  labels.fill(-1, 9000, 9990); // unlabeled
  labels.fill(4, 9990, 10000); // tree 0.1%: not more than 0.1%, left out
  assert.deepEqual(classCoverage(labels), [
    { classIndex: 2, name: 'sky', pixels: 6000, ratio: 0.6 },
    { classIndex: 0, name: 'wall', pixels: 3000, ratio: 0.3 },
  ]);
  assert.equal(classCoverage(labels, { minRatio: 0 }).length, 3);
  assert.equal(classCoverage(Int16Array.from([200]), { minRatio: 0 })[0].name, 'class_200');
});
