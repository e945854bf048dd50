/**
 * A small PNG encoder for raw pixels (gray, RGB, RGBA; 8 or 16 bit) on node:zlib.
 *
 * Why not jimp (the design's image library): jimp 1.6 encodes through pngjs, synchronously in
 * JavaScript (adaptive filters tried per row, deflate level 9). Measured on a 2-core machine busy
 * with other builds, 3 runs each, for a 2049x512 RGB panel (photo | label colours | label
 * colours): jimp 255-310 ms, all of it blocking the event loop, 737 kB; this encoder 50-70 ms
 * wall, of which 16-20 ms on the main thread (the row filter; deflate runs on libuv's thread
 * pool), 273 kB. On the real ADE_val_00001519 panel (2304x512), synchronous totals: jimp
 * 479 ms / 675 kB, this 120 ms / 508 kB. It also writes 16-bit gray PNGs (label maps of more
 * than 255 classes), which jimp's 8-bit RGBA bitmaps cannot hold.
 */
import { crc32, deflate, deflateSync } from 'node:zlib';
import { promisify } from 'node:util';
import { loadSharp } from '../data/decode.js';
import { SegtoolError } from '../errors.js';
import { describe, expectInteger, invalid } from '../validate.js';

const deflateAsync = promisify(deflate);

export interface PngOptions {
  /** 1 = gray, 3 = RGB (default), 4 = RGBA. */
  channels?: 1 | 3 | 4;
  /** 8 (default; `data` holds bytes) or 16 (`data` is a Uint16Array of samples). */
  bitDepth?: 8 | 16;
  /** zlib level 0..9; default 6. */
  level?: number;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const COLOR_TYPE = { 1: 0, 3: 2, 4: 6 } as const;

function chunk(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  body.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

function checkArgs(data: unknown, width: number, height: number, options: PngOptions) {
  expectInteger('width', width, 1, 0x7fffffff);
  expectInteger('height', height, 1, 0x7fffffff);
  const channels = options.channels ?? 3;
  if (channels !== 1 && channels !== 3 && channels !== 4) throw invalid('options.channels', '1, 3 or 4', channels);
  const bitDepth = options.bitDepth ?? 8;
  if (bitDepth !== 8 && bitDepth !== 16) throw invalid('options.bitDepth', '8 or 16', bitDepth);
  const level = expectInteger('options.level', options.level ?? 6, 0, 9);
  const expectedType = bitDepth === 8 ? 'a Uint8Array' : 'a Uint16Array';
  if (bitDepth === 8 ? !(data instanceof Uint8Array) : !(data instanceof Uint16Array)) throw invalid('data', expectedType, data);
  const samples = width * height * channels;
  if ((data as Uint8Array).length !== samples) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `Expected ${samples} samples (${width} x ${height} x ${channels}) for data but received ${describe(data)}`,
    );
  }
  return { channels, bitDepth, level };
}

/** Big-endian bytes of 16-bit samples (PNG's byte order). */
function toBytes(data: Uint8Array | Uint16Array, bitDepth: number): Uint8Array {
  if (bitDepth === 8) return data as Uint8Array;
  const out = new Uint8Array(data.length * 2);
  for (let i = 0; i < data.length; i++) {
    out[2 * i] = data[i]! >>> 8;
    out[2 * i + 1] = data[i]! & 0xff;
  }
  return out;
}

/**
 * Scanlines with PNG's "Up" filter (each byte minus the byte above). Measured on ADE-sized
 * panels it compresses as well as libpng's adaptive per-row choice (the photo third gains
 * little from Paeth, label colours compress to almost nothing either way) at a sixth of the
 * main-thread time, so it is the only filter used.
 */
function filterRows(bytes: Uint8Array, rowBytes: number, height: number): Uint8Array {
  const stride = rowBytes + 1;
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const row = y * rowBytes;
    const start = y * stride + 1;
    out[start - 1] = 2; // filter type Up
    if (y === 0) {
      out.set(bytes.subarray(0, rowBytes), start); // the row above the first is zeros
      continue;
    }
    for (let i = 0; i < rowBytes; i++) out[start + i] = bytes[row + i]! - bytes[row - rowBytes + i]!; // wraps mod 256
  }
  return out;
}

function assemble(width: number, height: number, channels: 1 | 3 | 4, bitDepth: 8 | 16, idat: Buffer): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = bitDepth;
  header[9] = COLOR_TYPE[channels];
  // bytes 10..12: compression 0 (deflate), filter method 0, interlace 0 (none)
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

function prepare(data: Uint8Array | Uint16Array, width: number, height: number, options: PngOptions) {
  const { channels, bitDepth, level } = checkArgs(data, width, height, options);
  const filtered = filterRows(toBytes(data, bitDepth), width * channels * (bitDepth / 8), height);
  return { channels, bitDepth: bitDepth as 8 | 16, level, filtered };
}

/**
 * Encodes raw row-major pixels as PNG: the one PNG encoder of segtool (panels, label maps, the
 * Segmenter's colour maps). 8-bit images go to libvips (sharp) whole: filtering and deflate run
 * in its thread pool, nothing per pixel on this thread (a 12-megapixel colour map took ~0.1 s of
 * the event loop when the rows were filtered here). 16-bit gray (label maps of more than 254
 * classes), which sharp's raw input cannot take, is filtered here and deflated off the thread.
 */
export async function encodePng(data: Uint8Array | Uint16Array, width: number, height: number, options: PngOptions = {}): Promise<Buffer> {
  const { channels, bitDepth, level } = checkArgs(data, width, height, options);
  if (bitDepth === 8) {
    const sharp = await loadSharp();
    const image = sharp(data as Uint8Array, { raw: { width, height, channels } });
    return (channels === 1 ? image.toColourspace('b-w') : image).png({ compressionLevel: level }).toBuffer(); // gray stays 1-channel
  }
  const { filtered } = prepare(data, width, height, options);
  const idat = await deflateAsync(filtered, { level });
  return assemble(width, height, channels, bitDepth as 8 | 16, idat);
}

/** Synchronous PNG encoding (the same pixels as `encodePng`, byte-for-byte other compression), for scripts and tests. */
export function encodePngSync(data: Uint8Array | Uint16Array, width: number, height: number, options: PngOptions = {}): Buffer {
  const { channels, bitDepth, level, filtered } = prepare(data, width, height, options);
  return assemble(width, height, channels, bitDepth, deflateSync(filtered, { level }));
}
