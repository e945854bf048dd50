/**
 * The ADE20K palette and class names, and label map -> colour image (the reference's
 * `colorEncode`). Class index c (0..149) is ADE20K annotation value c + 1.
 */
import { SegtoolError } from '../errors.js';
import { describe, expectInteger, invalid } from '../validate.js';
import { ADE20K_CLASS_SYNONYMS, ADE20K_PALETTE_RGB } from './ade20k.js';
import type { ClassIndexArray } from './metrics.js';

export { ADE20K_CLASS_SYNONYMS };

export const ADE20K_NUM_CLASSES = 150;

/** Class names, index 0..149: the first name of each object150_info.csv entry (as the reference's test.py). */
export const ADE20K_CLASS_NAMES: readonly string[] = Object.freeze(ADE20K_CLASS_SYNONYMS.map((n) => n.split(';')[0]!));

/** A fresh copy of the palette: RGB bytes, 3 per class index. */
export function ade20kPalette(): Uint8Array {
  return Uint8Array.from(ADE20K_PALETTE_RGB);
}

const DEFAULT_PALETTE = ade20kPalette();

export interface ColorizeOptions {
  /** 3 = RGB (default), 4 = RGBA with unlabeled pixels transparent (for overlays). */
  channels?: 3 | 4;
  /** RGB bytes, 3 per class; default the ADE20K palette. */
  palette?: Uint8Array | readonly number[];
}

/**
 * Colours a row-major label map. Pixels outside the palette (unlabeled -1, or an index with no
 * colour) are black, and transparent in RGBA — the reference leaves them black too.
 */
export function colorize(labelMap: ClassIndexArray, width: number, height: number, options: ColorizeOptions = {}): Uint8Array {
  expectInteger('width', width, 1);
  expectInteger('height', height, 1);
  const channels = options.channels ?? 3;
  if (channels !== 3 && channels !== 4) throw invalid('options.channels', '3 or 4', channels);
  const palette = options.palette ?? DEFAULT_PALETTE;
  if ((!Array.isArray(palette) && !(palette instanceof Uint8Array)) || palette.length % 3 !== 0 || palette.length === 0) {
    throw invalid('options.palette', 'RGB bytes, 3 per class', palette);
  }
  if (!(ArrayBuffer.isView(labelMap) || Array.isArray(labelMap)) || labelMap instanceof DataView) {
    throw invalid('labelMap', 'a typed array of class indices', labelMap);
  }
  const n = width * height;
  if ((labelMap as ArrayLike<unknown>).length !== n) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected ${n} pixels (${width} x ${height}) for labelMap but received ${describe(labelMap)}`);
  }
  const numColors = palette.length / 3;
  const labels = labelMap instanceof BigInt64Array ? Float64Array.from(labelMap, Number) : (labelMap as ArrayLike<number>);
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const c = labels[i]!;
    if (!(c >= 0 && c < numColors) || c !== Math.floor(c)) continue; // stays black (and transparent)
    const o = i * channels;
    out[o] = palette[3 * c]!;
    out[o + 1] = palette[3 * c + 1]!;
    out[o + 2] = palette[3 * c + 2]!;
    if (channels === 4) out[o + 3] = 255;
  }
  return out;
}
