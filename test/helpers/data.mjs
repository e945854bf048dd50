// Helpers for the data tests: a PNG encoder with every colour type, bit depth, row filter and
// Adam7 interlacing (to exercise lib/data/png.ts), and a small synthetic dataset on disk.
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** One PNG chunk: length, type, data, CRC. */
export function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function packRow(samples, bitDepth) {
  if (bitDepth === 8) return Uint8Array.from(samples);
  if (bitDepth === 16) {
    const row = new Uint8Array(samples.length * 2);
    samples.forEach((v, i) => { row[2 * i] = v >> 8; row[2 * i + 1] = v & 255; });
    return row;
  }
  const perByte = 8 / bitDepth;
  const row = new Uint8Array(Math.ceil(samples.length / perByte));
  samples.forEach((v, i) => { row[Math.floor(i / perByte)] |= v << (8 - bitDepth * ((i % perByte) + 1)); });
  return row;
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function filterRow(type, row, prev, bpp) {
  const out = new Uint8Array(row.length + 1);
  out[0] = type;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
    const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][type];
    out[i + 1] = (row[i] - pred) & 255;
  }
  return out;
}

/** data: interleaved samples (numbers), row-major. Row filters cycle 0..4. */
export function encodePng({ width, height, colorType, bitDepth, data, palette, interlace = false }) {
  const ch = CHANNELS[colorType];
  const bpp = Math.max(1, (ch * bitDepth) >> 3);
  const passes = interlace
    ? [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]
    : [[0, 0, 1, 1]];
  const rows = [];
  let rowCount = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx), ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    let prev = new Uint8Array(Math.ceil((pw * ch * bitDepth) / 8));
    for (let y = 0; y < ph; y++) {
      const samples = [];
      for (let x = 0; x < pw; x++) for (let c = 0; c < ch; c++) samples.push(data[((y0 + y * dy) * width + x0 + x * dx) * ch + c]);
      const row = packRow(samples, bitDepth);
      rows.push(filterRow(rowCount++ % 5, row, prev, bpp));
      prev = row;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth; ihdr[9] = colorType; ihdr[12] = interlace ? 1 : 0;
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  if (palette) parts.push(chunk('PLTE', Uint8Array.from(palette)));
  parts.push(chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}

/** A deterministic label map: classes 0..maxClass in blocks, so nearest resizes are visible. */
export function labelPattern(width, height, maxClass = 150) {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = (x * 7 + y * 13) % (maxClass + 1);
  return data;
}

/** A deterministic RGB image with gradients and edges. */
export function rgbPattern(width, height, salt = 0) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255 / Math.max(1, width - 1)) | 0;
      data[i + 1] = (y * 255 / Math.max(1, height - 1)) | 0;
      data[i + 2] = ((x ^ y) * 8 + salt * 40) & 255;
    }
  }
  return data;
}

export function tempDir(prefix = 'segtool-data-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const DATASET_SIZES = [
  [64, 48], [48, 64], [80, 60], [40, 40], [100, 30], [30, 90], [72, 54], [50, 70],
];

/**
 * Writes images/<name>.jpg (or .png) and annotations/<name>.png under dir and an odgt listing them.
 * Returns { records (odgt-like objects), odgt path }.
 */
export async function writeDataset(dir, sizes = DATASET_SIZES, { format = 'png' } = {}) {
  mkdirSync(join(dir, 'images'), { recursive: true });
  mkdirSync(join(dir, 'annotations'), { recursive: true });
  const lines = [];
  for (const [i, [width, height]] of sizes.entries()) {
    const name = `img_${String(i).padStart(3, '0')}`;
    const img = sharp(Buffer.from(rgbPattern(width, height, i)), { raw: { width, height, channels: 3 } });
    const file = `images/${name}.${format === 'jpeg' ? 'jpg' : 'png'}`;
    writeFileSync(join(dir, file), format === 'jpeg' ? await img.jpeg({ quality: 95 }).toBuffer() : await img.png().toBuffer());
    writeFileSync(join(dir, 'annotations', `${name}.png`), encodePng({ width, height, colorType: 0, bitDepth: 8, data: labelPattern(width, height) }));
    lines.push(JSON.stringify({ fpath_img: file, fpath_segm: `annotations/${name}.png`, width, height }));
  }
  const odgt = join(dir, 'list.odgt');
  writeFileSync(odgt, lines.join('\n') + '\n');
  return { odgt, lines };
}
