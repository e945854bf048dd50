/**
 * Sizes the pipeline gives images — the reference's arithmetic, bit for bit (float64 products,
 * truncation where numpy/Python truncated), so shapes equal test/fixtures/data/geometry.json.
 */
import { expectInteger, expectObject, invalid } from '../validate.js';
import {
  resolveTrainGeometry,
  resolveValGeometry,
  type ResolvedTrainGeometry,
  type ResolvedValGeometry,
  type TrainGeometryOptions,
  type ValGeometryOptions,
} from './options.js';
import { TrainSampler } from './sampler.js';

export interface Size {
  width: number;
  height: number;
}

/** Smallest multiple of p that is >= x (the reference's round2nearest_multiple). */
export function roundUpToMultiple(x: number, p: number): number {
  return (Math.floor((x - 1) / p) + 1) * p;
}

/** Scale that brings the short side to `short` unless the long side would pass `maxSize`. */
function fitScale(size: Size, short: number, maxSize: number): number {
  return Math.min(short / Math.min(size.height, size.width), maxSize / Math.max(size.height, size.width));
}

export function checkSize(name: string, value: unknown): Size {
  const size = expectObject(name, value);
  return {
    width: expectInteger(`${name}.width`, size.width, 1),
    height: expectInteger(`${name}.height`, size.height, 1),
  };
}

/** Validation/test input sizes, one `[width, height]` per `imgSizes` entry (no validation of options). */
export function valTargetSizesResolved(size: Size, g: ResolvedValGeometry): Array<[number, number]> {
  if (g.originalSize) return [[size.width, size.height]];
  return g.imgSizes.map((short) => {
    const scale = fitScale(size, short, g.imgMaxSize);
    // int() truncates; max(1, ...) only matters for needle-thin images the reference could not resize.
    const height = Math.max(1, Math.trunc(size.height * scale));
    const width = Math.max(1, Math.trunc(size.width * scale));
    return [roundUpToMultiple(width, g.paddingConstant), roundUpToMultiple(height, g.paddingConstant)];
  });
}

/**
 * What the validation/test pipeline feeds the network for an image of `size`: the image is
 * resized (not padded) to each returned `[width, height]`.
 */
export function valTargetSizes(size: Size, options: ValGeometryOptions = {}): Array<[number, number]> {
  return valTargetSizesResolved(checkSize('size', size), resolveValGeometry(options));
}

/** One training sample's resized size for the batch's short side (numpy's float -> int32 truncation). */
export function trainSampleSize(size: Size, short: number, imgMaxSize: number): Size {
  const scale = fitScale(size, short, imgMaxSize);
  return {
    width: Math.max(1, Math.trunc(size.width * scale)),
    height: Math.max(1, Math.trunc(size.height * scale)),
  };
}

export interface TrainBatchGeometry {
  /** Each sample's resized size; it sits at the top-left corner of the canvas. */
  samples: Size[];
  /** The image canvas: the largest sample rounded up to paddingConstant. */
  canvas: Size;
  /** The label canvas: canvas / segmDownsamplingRate. */
  label: Size;
  /** Each sample's label extent on the label canvas: its size rounded up to the rate, divided by it. */
  sampleLabels: Size[];
}

export function trainBatchGeometry(sizes: readonly Size[], short: number, g: ResolvedTrainGeometry): TrainBatchGeometry {
  const samples = sizes.map((size) => trainSampleSize(size, short, g.imgMaxSize));
  const canvas = {
    width: roundUpToMultiple(Math.max(...samples.map((s) => s.width)), g.paddingConstant),
    height: roundUpToMultiple(Math.max(...samples.map((s) => s.height)), g.paddingConstant),
  };
  const rate = g.segmDownsamplingRate;
  return {
    samples,
    canvas,
    label: { width: canvas.width / rate, height: canvas.height / rate },
    sampleLabels: samples.map((s) => ({
      width: roundUpToMultiple(s.width, rate) / rate,
      height: roundUpToMultiple(s.height, rate) / rate,
    })),
  };
}

export interface BatchShape {
  image: [number, number, number, number];
  label: [number, number, number];
}

export interface TrainBatchShapesOptions extends TrainGeometryOptions {
  /** The short side used for every batch; may be left out when imgSizes has one entry. */
  short?: number;
  /** How many batches to describe (default 1). */
  count?: number;
}

/**
 * The shapes of the first `count` per-device training batches for `records` taken in order
 * (no shuffle) with the short side fixed: the same bucketing by orientation as training.
 */
export function trainBatchShapes(records: readonly Size[], options: TrainBatchShapesOptions = {}): BatchShape[] {
  const g = resolveTrainGeometry(options);
  if (!Array.isArray(records) || records.length === 0) throw invalid('records', 'a non-empty array of {width, height}', records);
  const sizes = records.map((r, i) => checkSize(`records[${i}]`, r));
  let short: number;
  if (options.short !== undefined) short = expectInteger('short', options.short, 1, 16384);
  else if (g.imgSizes.length === 1) short = g.imgSizes[0]!;
  else throw invalid('short', 'a positive integer (imgSizes has several entries)', options.short);
  const count = expectInteger('count', options.count ?? 1, 1, 1_000_000);
  const sampler = new TrainSampler(sizes, { batchPerGpu: g.batchPerGpu, imgSizes: [short], flipProbability: 0, shuffle: false });
  const shapes: BatchShape[] = [];
  for (let b = 0; b < count; b++) {
    const plan = sampler.next();
    const geo = trainBatchGeometry(plan.indices.map((i) => sizes[i]!), short, g);
    const n = plan.indices.length;
    shapes.push({ image: [n, 3, geo.canvas.height, geo.canvas.width], label: [n, geo.label.height, geo.label.width] });
  }
  return shapes;
}
