/**
 * A small PNG decoder for annotations. Labels need the stored sample values untouched: palette
 * indices (not the colours), 16-bit values, 1/2/4-bit values unscaled — which general image
 * decoders (sharp, pngjs, jimp) expand or convert. Inflation is node:zlib's; the rest is the
 * PNG spec: chunk walk with CRC check, unfiltering, bit unpacking, Adam7 de-interlacing.
 */
import { crc32, inflateSync } from 'node:zlib';

export interface PngImage {
  width: number;
  height: number;
  /** Samples per pixel as stored: 1 gray or palette index, 2 gray+alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** 1, 2, 4, 8 or 16. */
  bitDepth: number;
  /** PNG colour type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA. */
  colorType: number;
  /** Interleaved samples, unscaled: Uint16Array for 16-bit images, Uint8Array otherwise. */
  data: Uint8Array | Uint16Array;
}

export class PngError extends Error {}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CHANNELS: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ALLOWED_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const MAX_PIXELS = 0x3fff * 0x3fff; // sharp's default limit: refuse decompression bombs

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

/** Width and height from the IHDR chunk, without decoding. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  if (!isPng(bytes) || bytes.length < 24) throw new PngError('not a PNG file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

export function decodePng(bytes: Uint8Array): PngImage {
  if (!isPng(bytes)) throw new PngError('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header: { width: number; height: number; bitDepth: number; colorType: number; interlace: number } | undefined;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (pos < bytes.length) {
    if (pos + 12 > bytes.length) throw new PngError('truncated chunk header');
    const length = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!, bytes[pos + 6]!, bytes[pos + 7]!);
    const dataStart = pos + 8;
    const dataEnd = dataStart + length;
    if (dataEnd + 4 > bytes.length) throw new PngError(`truncated ${type} chunk`);
    const stored = view.getUint32(dataEnd);
    if (crc32(bytes.subarray(pos + 4, dataEnd)) !== stored) throw new PngError(`CRC mismatch in ${type} chunk`);
    const data = bytes.subarray(dataStart, dataEnd);
    if (type === 'IHDR') {
      if (length !== 13) throw new PngError('bad IHDR length');
      header = {
        width: view.getUint32(dataStart),
        height: view.getUint32(dataStart + 4),
        bitDepth: data[8]!,
        colorType: data[9]!,
        interlace: data[12]!,
      };
      if (data[10] !== 0 || data[11] !== 0) throw new PngError('unknown compression or filter method');
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      ended = true;
      pos = dataEnd + 4;
      break;
    }
    pos = dataEnd + 4;
  }
  if (ended && pos < bytes.length) {
    throw new PngError(`${bytes.length - pos} bytes of data after the IEND chunk (a PNG ends with IEND)`);
  }
  if (!header) throw new PngError('no IHDR chunk');
  if (!ended) throw new PngError('truncated file (no IEND chunk)');
  const { width, height, bitDepth, colorType, interlace } = header;
  const channels = CHANNELS[colorType];
  if (channels === undefined || !ALLOWED_DEPTHS[colorType]!.includes(bitDepth)) {
    throw new PngError(`unsupported colour type ${colorType} with bit depth ${bitDepth}`);
  }
  if (width === 0 || height === 0 || width * height > MAX_PIXELS) throw new PngError(`bad size ${width}x${height}`);
  if (interlace > 1) throw new PngError(`unknown interlace method ${interlace}`);

  const bitsPerPixel = channels * bitDepth;
  const bytesPerPixel = Math.max(1, bitsPerPixel >> 3);

  // Adam7 passes: [x0, y0, dx, dy]; non-interlaced is one pass covering everything.
  const passes = (
    interlace
      ? [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]
      : [[0, 0, 1, 1]]
  ) as Array<[number, number, number, number]>;
  // What the IHDR declares: each pass's rows, each a filter byte and its packed samples. The
  // compressed data may inflate to exactly this and no more (a small file must not become a
  // huge buffer unless its header says the image is that large).
  let declared = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const passWidth = Math.ceil((width - x0) / dx);
    const passHeight = Math.ceil((height - y0) / dy);
    if (passWidth > 0 && passHeight > 0) declared += passHeight * (Math.ceil((passWidth * bitsPerPixel) / 8) + 1);
  }
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: declared });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new PngError(`compressed data inflates to more than the ${declared} bytes a ${width}x${height} image declares`);
    }
    throw new PngError(`compressed data is corrupt (${(error as Error).message})`);
  }
  if (raw.length !== declared) throw new PngError(`image data is truncated (${raw.length} of ${declared} bytes)`);
  const out = bitDepth === 16 ? new Uint16Array(width * height * channels) : new Uint8Array(width * height * channels);

  let offset = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const passWidth = Math.ceil((width - x0) / dx);
    const passHeight = Math.ceil((height - y0) / dy);
    if (passWidth <= 0 || passHeight <= 0) continue;
    const rowBytes = Math.ceil((passWidth * bitsPerPixel) / 8);
    const needed = passHeight * (rowBytes + 1);
    if (offset + needed > raw.length) throw new PngError('image data is truncated');
    let previous = new Uint8Array(rowBytes);
    let row = new Uint8Array(rowBytes);
    for (let y = 0; y < passHeight; y++) {
      const filter = raw[offset]!;
      unfilter(filter, raw.subarray(offset + 1, offset + 1 + rowBytes), previous, row, bytesPerPixel);
      offset += rowBytes + 1;
      unpackRow(row, passWidth, channels, bitDepth, out, ((y0 + y * dy) * width + x0) * channels, dx * channels);
      const swap = previous;
      previous = row;
      row = swap;
    }
  }
  return { width, height, channels, bitDepth, colorType, data: out };
}

function unfilter(filter: number, src: Uint8Array, prev: Uint8Array, dst: Uint8Array, bpp: number): void {
  const n = src.length;
  switch (filter) {
    case 0:
      dst.set(src);
      return;
    case 1:
      for (let i = 0; i < n; i++) dst[i] = (src[i]! + (i >= bpp ? dst[i - bpp]! : 0)) & 0xff;
      return;
    case 2:
      for (let i = 0; i < n; i++) dst[i] = (src[i]! + prev[i]!) & 0xff;
      return;
    case 3:
      for (let i = 0; i < n; i++) dst[i] = (src[i]! + (((i >= bpp ? dst[i - bpp]! : 0) + prev[i]!) >> 1)) & 0xff;
      return;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = i >= bpp ? dst[i - bpp]! : 0;
        const b = prev[i]!;
        const c = i >= bpp ? prev[i - bpp]! : 0;
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        dst[i] = (src[i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
      }
      return;
    default:
      throw new PngError(`unknown row filter ${filter}`);
  }
}

/** Writes one unfiltered row's samples to `out` from `start`, `step` samples apart per pixel. */
function unpackRow(
  row: Uint8Array,
  pixels: number,
  channels: number,
  bitDepth: number,
  out: Uint8Array | Uint16Array,
  start: number,
  step: number,
): void {
  if (bitDepth === 8) {
    if (step === channels) {
      out.set(row.subarray(0, pixels * channels), start);
      return;
    }
    for (let x = 0; x < pixels; x++) for (let c = 0; c < channels; c++) out[start + x * step + c] = row[x * channels + c]!;
    return;
  }
  if (bitDepth === 16) {
    for (let x = 0; x < pixels; x++) {
      for (let c = 0; c < channels; c++) {
        const i = (x * channels + c) * 2;
        out[start + x * step + c] = (row[i]! << 8) | row[i + 1]!;
      }
    }
    return;
  }
  // 1, 2 or 4 bits: single channel, most significant bits first.
  const perByte = 8 / bitDepth;
  const mask = (1 << bitDepth) - 1;
  for (let x = 0; x < pixels; x++) {
    const byte = row[Math.floor(x / perByte)]!;
    const shift = 8 - bitDepth * ((x % perByte) + 1);
    out[start + x * step] = (byte >> shift) & mask;
  }
}
