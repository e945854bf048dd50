/**
 * uint8 RGB -> normalised float32 NCHW, by table lookup. The tables hold exactly what the
 * reference computed per value in float32: imagenet = (x / 255 - mean) / std (torchvision
 * Normalize on an RGB tensor), legacy-bgr = x - mean with channels in BGR order (the first
 * releases' cv2 pipeline, std 1).
 */
import type { NormalizePreset } from './options.js';

export interface NormalizeSpec {
  /** Output channel c reads input channel order[c] (RGB input). */
  order: [number, number, number];
  mean: [number, number, number];
  std: [number, number, number];
  /** Input divisor before the mean is taken: 255 (0..1 range) or 1 (0..255 range). */
  scale: number;
}

export const NORMALIZE_SPECS: Record<NormalizePreset, NormalizeSpec> = {
  imagenet: { order: [0, 1, 2], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], scale: 255 },
  'legacy-bgr': { order: [2, 1, 0], mean: [102.9801, 115.9465, 122.7717], std: [1, 1, 1], scale: 1 },
};

const f32 = Math.fround;
const tableCache = new Map<NormalizePreset, Float32Array[]>();

/** Three 256-entry tables (one per output channel) for a preset. */
export function normalizeTables(preset: NormalizePreset): Float32Array[] {
  let tables = tableCache.get(preset);
  if (!tables) {
    const spec = NORMALIZE_SPECS[preset];
    tables = [0, 1, 2].map((c) => {
      const t = new Float32Array(256);
      for (let v = 0; v < 256; v++) t[v] = f32(f32(f32(v / spec.scale) - f32(spec.mean[c]!)) / f32(spec.std[c]!));
      return t;
    });
    tableCache.set(preset, tables);
  }
  return tables;
}

/**
 * Writes an interleaved RGB image (width x height) into plane set `dst` (3 planes of
 * planeWidth x planeHeight starting at `offset`), top-left aligned; the rest is left as is.
 */
export function normalizeInto(
  dst: Float32Array,
  offset: number,
  planeWidth: number,
  planeHeight: number,
  rgb: Uint8Array,
  width: number,
  height: number,
  preset: NormalizePreset,
): void {
  const [t0, t1, t2] = normalizeTables(preset) as [Float32Array, Float32Array, Float32Array];
  const [o0, o1, o2] = NORMALIZE_SPECS[preset].order;
  const plane = planeWidth * planeHeight;
  for (let y = 0; y < height; y++) {
    let p = y * width * 3;
    let d = offset + y * planeWidth;
    const end = d + width;
    for (; d < end; d++, p += 3) {
      dst[d] = t0[rgb[p + o0]!]!;
      dst[d + plane] = t1[rgb[p + o1]!]!;
      dst[d + 2 * plane] = t2[rgb[p + o2]!]!;
    }
  }
}
