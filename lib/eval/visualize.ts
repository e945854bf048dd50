/**
 * What eval --visualize and test write: panels side by side (image | ground truth |
 * prediction, as the reference's visualize_result), the classes a prediction covers, and the
 * label map as an annotation-style PNG.
 */
import { coverageFromCounts, type ClassCoverage } from '../inference/infer.js';
import { SegtoolError } from '../errors.js';
import { describe, expectInteger, expectNumber, invalid } from '../validate.js';
import type { ClassIndexArray } from './metrics.js';
import { ADE20K_CLASS_NAMES, colorize } from './palette.js';
import { encodePng } from './png.js';

/** Raw row-major pixels: 1 (gray), 3 (RGB) or 4 (RGBA) bytes per pixel. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

function checkImage(name: string, image: RawImage): void {
  if (typeof image !== 'object' || image === null) throw invalid(name, 'an image {data, width, height, channels}', image);
  expectInteger(`${name}.width`, image.width, 1);
  expectInteger(`${name}.height`, image.height, 1);
  if (image.channels !== 1 && image.channels !== 3 && image.channels !== 4) throw invalid(`${name}.channels`, '1, 3 or 4', image.channels);
  if (!(image.data instanceof Uint8Array) || image.data.length !== image.width * image.height * image.channels) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `Expected a Uint8Array of ${image.width * image.height * image.channels} bytes (${image.width} x ${image.height} x ${image.channels}) for ${name}.data but received ${describe(image.data)}`,
    );
  }
}

export interface PanelOptions {
  /** Pixels between panels; default 0 (the reference's layout). */
  gap?: number;
  /** RGB of the gap; default white. */
  gapColor?: readonly [number, number, number];
}

/**
 * Places images of the same height left to right as one RGB image. Gray is expanded to RGB;
 * the alpha of RGBA inputs is dropped (colorize leaves transparent pixels black).
 */
export function composePanels(panels: readonly RawImage[], options: PanelOptions = {}): RawImage {
  if (!Array.isArray(panels) || panels.length === 0) throw invalid('panels', 'a non-empty array of images', panels);
  panels.forEach((p, i) => checkImage(`panels[${i}]`, p));
  const height = panels[0]!.height;
  panels.forEach((p, i) => {
    if (p.height !== height) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected panels of the same height but panels[${i}] is ${p.height} high and panels[0] ${height}`);
    }
  });
  const gap = expectInteger('options.gap', options.gap ?? 0, 0);
  const gapColor = options.gapColor ?? [255, 255, 255];
  const width = panels.reduce((sum, p) => sum + p.width, 0) + gap * (panels.length - 1);
  const data = new Uint8Array(width * height * 3);
  if (gap > 0) for (let i = 0; i < width * height; i++) data.set(gapColor, 3 * i);
  let left = 0;
  for (const panel of panels) {
    const { data: src, width: w, channels } = panel;
    for (let y = 0; y < height; y++) {
      const rowOut = (y * width + left) * 3;
      if (channels === 3) {
        data.set(src.subarray(y * w * 3, (y + 1) * w * 3), rowOut);
        continue;
      }
      for (let x = 0; x < w; x++) {
        const s = (y * w + x) * channels;
        const o = rowOut + x * 3;
        data[o] = src[s]!;
        data[o + 1] = src[channels === 1 ? s : s + 1]!;
        data[o + 2] = src[channels === 1 ? s : s + 2]!;
      }
    }
    left += w + gap;
  }
  return { data, width, height, channels: 3 };
}

export interface VisualizationInput {
  /** The input image, RGB or RGBA, at the label's size. */
  image: RawImage;
  /** Ground truth (class indices, -1 unlabeled); omit for test panels (image | prediction). */
  label?: ClassIndexArray;
  pred: ClassIndexArray;
  /** RGB bytes, 3 per class (a ClassInfo's `palette`); default the ADE20K palette. */
  palette?: Uint8Array | readonly number[];
}

/** image | ground truth | prediction (or image | prediction without a label) as one RGB image. */
export function visualizationPanel(input: VisualizationInput, options: PanelOptions = {}): RawImage {
  checkImage('input.image', input.image);
  const { width, height } = input.image;
  const colored = (labels: ClassIndexArray): RawImage => ({
    data: colorize(labels, width, height, { palette: input.palette }),
    width,
    height,
    channels: 3,
  });
  const panels = [input.image];
  if (input.label !== undefined) panels.push(colored(input.label));
  panels.push(colored(input.pred));
  return composePanels(panels, options);
}

export type { ClassCoverage };

export interface CoverageOptions {
  /** Classes covering at most this fraction are left out; default 0.001 (the reference's 0.1%). */
  minRatio?: number;
  /** Names by class index (a ClassInfo's `names`); default the ADE20K names. Unnamed indices are `class_N`. */
  names?: readonly string[];
}

/** Classes of a prediction by decreasing area (what the reference's test.py prints). */
export function classCoverage(labelMap: ClassIndexArray, options: CoverageOptions = {}): ClassCoverage[] {
  const minRatio = expectNumber('options.minRatio', options.minRatio ?? 0.001, 0, 1);
  const names = options.names ?? ADE20K_CLASS_NAMES;
  if (!(ArrayBuffer.isView(labelMap) || Array.isArray(labelMap)) || labelMap instanceof DataView) {
    throw invalid('labelMap', 'a typed array of class indices', labelMap);
  }
  const labels = labelMap instanceof BigInt64Array ? Float64Array.from(labelMap, Number) : (labelMap as ArrayLike<number>);
  // Class indices from 0 to 65535 are counted (a Map per pixel cost ~0.5 s on a 12-megapixel
  // image); anything else (negative = unlabeled, huge, fractional) counts in the total only.
  const counts = new Float64Array(65536);
  let top = -1;
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!;
    if (c >= 0 && c < 65536 && (c | 0) === c) {
      counts[c]!++;
      if (c > top) top = c;
    }
  }
  return coverageFromCounts(counts.subarray(0, top + 1), names, minRatio, labels.length);
}

/**
 * The label map as an ADE20K-style annotation PNG: value = class index + 1, 0 = unlabeled;
 * 8-bit gray, or 16-bit when an index exceeds 254.
 */
export function encodeLabelPng(labelMap: ClassIndexArray, width: number, height: number): Promise<Buffer> {
  expectInteger('width', width, 1);
  expectInteger('height', height, 1);
  if (!(ArrayBuffer.isView(labelMap) || Array.isArray(labelMap)) || labelMap instanceof DataView) {
    throw invalid('labelMap', 'a typed array of class indices', labelMap);
  }
  const labels = labelMap instanceof BigInt64Array ? Float64Array.from(labelMap, Number) : (labelMap as ArrayLike<number>);
  if (labels.length !== width * height) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected ${width * height} pixels (${width} x ${height}) for labelMap but received ${describe(labelMap)}`);
  }
  let max = -1;
  for (let i = 0; i < labels.length; i++) if (labels[i]! > max) max = labels[i]!;
  if (max > 65534) throw invalid('labelMap', 'class indices below 65535', max);
  const values = max > 254 ? new Uint16Array(labels.length) : new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) values[i] = labels[i]! >= 0 ? labels[i]! + 1 : 0;
  return encodePng(values, width, height, { channels: 1, bitDepth: max > 254 ? 16 : 8 });
}

/** PNG of a RawImage (RGB, RGBA or gray). */
export function encodeImagePng(image: RawImage): Promise<Buffer> {
  checkImage('image', image);
  return encodePng(image.data, image.width, image.height, { channels: image.channels });
}
