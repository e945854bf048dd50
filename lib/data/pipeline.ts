/**
 * The work of one batch or one evaluation sample: read, decode, check, flip, resize, normalise,
 * assemble. Pure functions of their inputs, run by worker threads (worker.ts) or in-process.
 */
import { isSegtoolError, SegtoolError, type SegtoolErrorCode } from '../errors.js';
import { decodeImage, decodeLabel, readBytes, type LabelMap, type RgbImage } from './decode.js';
import { roundUpToMultiple, trainBatchGeometry, valTargetSizesResolved } from './geometry.js';
import type { SampleRecord } from './list.js';
import { normalizeInto } from './normalize.js';
import type {
  BadSamplePolicy,
  LabelPadding,
  NormalizePreset,
  ResolvedDecodeOptions,
  ResolvedTrainGeometry,
  ResolvedValGeometry,
} from './options.js';
import { nearestIndices, resizeImage, type ResizeFilter } from './resize.js';
import type { TrainPlan } from './sampler.js';

/** Images: NCHW float32, normalised. */
export interface ImageBatch {
  data: Float32Array;
  shape: [number, number, number, number];
}

/** Labels: class indices, -1 = ignore. */
export interface LabelBatch {
  data: Int32Array;
  shape: [number, number, number];
}

/** A sample that could not be used, with why. */
export interface BadSample {
  image: string;
  annotation?: string;
  source?: string;
  code: SegtoolErrorCode;
  message: string;
}

export interface TrainBatch {
  image: ImageBatch;
  label: LabelBatch;
  /** Which records, at which short side, flipped or not. */
  plan: TrainPlan;
  /** The image path of each sample. */
  paths: string[];
  /** Samples of this batch that were bad and replaced by an all-ignore slot (onBadSample 'skip'). */
  skipped: BadSample[];
}

export interface EvalSample {
  /** The index of the record in the list. */
  index: number;
  /** One input per imgSizes entry, each 1x3xHxW. */
  images: ImageBatch[];
  /** The annotation at the original size, 1xHxW, value - 1 (0 = unlabeled -> -1). */
  label?: LabelBatch;
  width: number;
  height: number;
  path: string;
  source?: string;
  /** The decoded RGB image (keepOriginal), e.g. for visualisation. */
  original?: RgbImage;
}

export interface CommonSettings {
  numClass: number;
  normalize: NormalizePreset;
  /** Image resize filter (DATASET.resize); default 'pil'. */
  resize?: ResizeFilter;
  decode: ResolvedDecodeOptions;
  onBadSample: BadSamplePolicy;
}

export interface TrainSettings extends CommonSettings {
  geometry: ResolvedTrainGeometry;
  labelPadding: LabelPadding;
}

export interface EvalSettings extends CommonSettings {
  geometry: ResolvedValGeometry;
  /** Load annotations (records must have them). */
  labels: boolean;
  keepOriginal: boolean;
}

interface LoadedSample {
  image: RgbImage;
  label?: LabelMap;
}

/** Reads and decodes a record's image (and annotation), checking they belong together. */
export async function loadSample(
  record: SampleRecord,
  settings: CommonSettings,
  withLabel: boolean,
  expectedSize?: { width: number; height: number },
): Promise<LoadedSample> {
  const imagePromise = readBytes(record.image, 'image').then((b) => decodeImage(b, record.image, settings.decode));
  let labelPromise: Promise<LabelMap> | undefined;
  if (withLabel) {
    const path = record.annotation;
    if (path === undefined) {
      imagePromise.catch(() => {});
      throw new SegtoolError('ERR_BAD_FILE', `${record.source ?? record.image}: the record has no annotation (fpath_segm)`);
    }
    labelPromise = readBytes(path, 'annotation').then((b) => decodeLabel(b, path, settings.decode.decoder));
    labelPromise.catch(() => {}); // awaited below; keeps an early image failure from leaving it unhandled
  }
  const image = await imagePromise;
  if (expectedSize && (image.width !== expectedSize.width || image.height !== expectedSize.height)) {
    throw new SegtoolError(
      'ERR_BAD_IMAGE',
      `image ${record.image} is ${image.width}x${image.height} but its record (${record.source ?? 'list'}) says ` +
        `${expectedSize.width}x${expectedSize.height}`,
    );
  }
  if (!labelPromise) return { image };
  const label = await labelPromise;
  if (label.width !== image.width || label.height !== image.height) {
    throw new SegtoolError(
      'ERR_BAD_IMAGE',
      `annotation ${record.annotation} is ${label.width}x${label.height} but image ${record.image} is ${image.width}x${image.height}`,
    );
  }
  let max = 0;
  const data = label.data;
  for (let i = 0; i < data.length; i++) if (data[i]! > max) max = data[i]!;
  if (max > settings.numClass) {
    throw new SegtoolError(
      'ERR_BAD_IMAGE',
      `annotation ${record.annotation} has class value ${max}, above numClass ${settings.numClass} ` +
        `(values are 0 = unlabeled, 1..numClass)`,
    );
  }
  return { image, label };
}

function toBadSample(record: SampleRecord, error: unknown): BadSample {
  return {
    image: record.image,
    ...(record.annotation !== undefined && { annotation: record.annotation }),
    ...(record.source !== undefined && { source: record.source }),
    code: isSegtoolError(error) ? error.code : 'ERR_BAD_FILE',
    message: (error as Error).message,
  };
}

/** Only data problems may be skipped; programming errors and the like always surface. */
function skippable(error: unknown): boolean {
  return isSegtoolError(error) && ['ERR_NOT_FOUND', 'ERR_BAD_FILE', 'ERR_BAD_IMAGE'].includes(error.code);
}

/** Mirrors rows of interleaved pixel data in place. */
export function flipHorizontal(data: Uint8Array | Uint16Array, width: number, height: number, channels: number): void {
  for (let y = 0; y < height; y++) {
    let left = y * width * channels;
    let right = left + (width - 1) * channels;
    for (; left < right; left += channels, right -= channels) {
      for (let c = 0; c < channels; c++) {
        const t = data[left + c]!;
        data[left + c] = data[right + c]!;
        data[right + c] = t;
      }
    }
  }
}

/**
 * The reference's label path in one pass: nearest resize to the sample's size, pad to a multiple
 * of the rate (padding = ignore), nearest downsample by the rate, minus 1 — written to the
 * sample's slot of the label canvas.
 */
function writeTrainLabel(
  dst: Int32Array,
  offset: number,
  canvasWidth: number,
  label: LabelMap,
  width: number,
  height: number,
  rate: number,
): void {
  const xsResize = nearestIndices(label.width, width);
  const ysResize = nearestIndices(label.height, height);
  const roundedWidth = roundUpToMultiple(width, rate);
  const roundedHeight = roundUpToMultiple(height, rate);
  const xsDown = nearestIndices(roundedWidth, roundedWidth / rate);
  const ysDown = nearestIndices(roundedHeight, roundedHeight / rate);
  const src = label.data;
  for (let y = 0; y < ysDown.length; y++) {
    const yy = ysDown[y]!;
    const o = offset + y * canvasWidth;
    if (yy >= height) {
      dst.fill(-1, o, o + xsDown.length);
      continue;
    }
    const row = ysResize[yy]! * label.width;
    for (let x = 0; x < xsDown.length; x++) {
      const xx = xsDown[x]!;
      dst[o + x] = xx < width ? src[row + xsResize[xx]!]! - 1 : -1;
    }
  }
}

export async function loadTrainBatch(plan: TrainPlan, records: readonly SampleRecord[], settings: TrainSettings): Promise<TrainBatch> {
  const g = settings.geometry;
  const chosen = plan.indices.map((i) => records[i]!);
  const geo = trainBatchGeometry(chosen as Array<{ width: number; height: number }>, plan.short, g);
  const n = chosen.length;
  const { width: W, height: H } = geo.canvas;
  const { width: w, height: h } = geo.label;
  const image = new Float32Array(n * 3 * H * W);
  // 'reference': what the reference's batch canvas held outside each sample (class 0, "wall").
  const label = new Int32Array(n * h * w).fill(settings.labelPadding === 'reference' ? 0 : -1);
  // Start every decode now (sharp decodes on libuv threads) and process them in order.
  const loads = chosen.map((r) => {
    const p = loadSample(r, settings, true, { width: r.width!, height: r.height! });
    p.catch(() => {});
    return p;
  });
  const skipped: BadSample[] = [];
  for (let i = 0; i < n; i++) {
    let sample: LoadedSample;
    try {
      sample = await loads[i]!;
    } catch (error) {
      if (settings.onBadSample === 'skip' && skippable(error)) {
        skipped.push(toBadSample(chosen[i]!, error));
        label.fill(-1, i * h * w, (i + 1) * h * w);
        continue;
      }
      throw error;
    }
    const { image: rgb, label: map } = sample as Required<LoadedSample>;
    if (plan.flips[i]) {
      flipHorizontal(rgb.data, rgb.width, rgb.height, 3);
      flipHorizontal(map.data, map.width, map.height, 1);
    }
    const size = geo.samples[i]!;
    const resized = resizeImage(settings.resize, rgb.data, rgb.width, rgb.height, 3, size.width, size.height);
    normalizeInto(image, i * 3 * H * W, W, H, resized, size.width, size.height, settings.normalize);
    writeTrainLabel(label, i * h * w, w, map, size.width, size.height, g.segmDownsamplingRate);
  }
  return {
    image: { data: image, shape: [n, 3, H, W] },
    label: { data: label, shape: [n, h, w] },
    plan,
    paths: chosen.map((r) => r.image),
    skipped,
  };
}

/**
 * The network inputs of an image at every test scale: bilinear resize (PIL-exact, or OpenCV's
 * with resize 'opencv') to each of the geometry's sizes, then normalisation, one [1, 3, h, w]
 * input per scale. The one implementation the evaluation loader and the inference engine's prepare stage share.
 */
export function scaleInputs(rgb: RgbImage, geometry: ResolvedValGeometry, normalize: NormalizePreset, resize?: ResizeFilter): ImageBatch[] {
  return valTargetSizesResolved(rgb, geometry).map(([tw, th]): ImageBatch => {
    const resized = resizeImage(resize, rgb.data, rgb.width, rgb.height, 3, tw, th);
    const data = new Float32Array(3 * tw * th);
    normalizeInto(data, 0, tw, th, resized, tw, th, normalize);
    return { data, shape: [1, 3, th, tw] };
  });
}

/** Loads one validation/test sample; with onBadSample 'skip' a bad one yields `{ bad }`. */
export async function loadEvalSample(
  index: number,
  record: SampleRecord,
  settings: EvalSettings,
): Promise<{ sample: EvalSample } | { bad: BadSample }> {
  let loaded: LoadedSample;
  try {
    loaded = await loadSample(record, settings, settings.labels);
  } catch (error) {
    if (settings.onBadSample === 'skip' && skippable(error)) return { bad: toBadSample(record, error) };
    throw error;
  }
  const { image: rgb, label: map } = loaded;
  const images = scaleInputs(rgb, settings.geometry, settings.normalize, settings.resize);
  const sample: EvalSample = { index, images, width: rgb.width, height: rgb.height, path: record.image };
  if (record.source !== undefined) sample.source = record.source;
  if (map) {
    const data = new Int32Array(map.data.length);
    for (let i = 0; i < data.length; i++) data[i] = map.data[i]! - 1;
    sample.label = { data, shape: [1, map.height, map.width] };
  }
  // A copy: decoder output may live in memory that cannot be transferred between threads.
  if (settings.keepOriginal) sample.original = { data: rgb.data.slice(), width: rgb.width, height: rgb.height };
  return { sample };
}

/** An image to prepare for inference: encoded bytes, a file, or raw 8-bit pixels. */
export type PrepareSource =
  | { kind: 'bytes'; bytes: Uint8Array; name: string }
  | { kind: 'path'; path: string }
  | { kind: 'raw'; data: Uint8Array; width: number; height: number; channels: 1 | 3 | 4; name: string };

export interface PrepareSettings {
  geometry: ResolvedValGeometry;
  normalize: NormalizePreset;
  /** Image resize filter (DATASET.resize); default 'pil'. */
  resize?: ResizeFilter;
  decode: ResolvedDecodeOptions;
  /** Return the decoded RGB image too (for panels). */
  keepOriginal: boolean;
}

/** An image ready for the network: one normalised input per scale, and its size. */
export interface PreparedImage {
  images: ImageBatch[];
  width: number;
  height: number;
  original?: RgbImage;
}

/** RGB from raw gray, RGB or RGBA pixels (alpha dropped). */
function rawToRgb(source: Extract<PrepareSource, { kind: 'raw' }>): RgbImage {
  const { data: src, width, height, channels: c } = source;
  if (c === 3) return { data: src, width, height };
  const n = width * height;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * c;
    rgb[i * 3] = src[s]!;
    rgb[i * 3 + 1] = src[c === 1 ? s : s + 1]!;
    rgb[i * 3 + 2] = src[c === 1 ? s : s + 2]!;
  }
  return { data: rgb, width, height };
}

/**
 * The prepare stage of inference (run in a data worker): decode, then the evaluation
 * loader's own resize and normalisation at every scale (scaleInputs).
 */
export async function prepareImage(source: PrepareSource, settings: PrepareSettings): Promise<PreparedImage> {
  const rgb =
    source.kind === 'raw'
      ? rawToRgb(source)
      : source.kind === 'path'
        ? await decodeImage(await readBytes(source.path, 'image'), source.path, settings.decode)
        : await decodeImage(source.bytes, source.name, settings.decode);
  const prepared: PreparedImage = { images: scaleInputs(rgb, settings.geometry, settings.normalize, settings.resize), width: rgb.width, height: rgb.height };
  // A copy: decoder output may live in memory that cannot be transferred between threads.
  if (settings.keepOriginal) prepared.original = { data: rgb.data.slice(), width: rgb.width, height: rgb.height };
  return prepared;
}

/** The buffers of a result, for postMessage's transfer list. */
export function transferables(value: TrainBatch | EvalSample | PreparedImage): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  const add = (a: ArrayBufferView): void => {
    if (a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength) buffers.add(a.buffer);
  };
  if ('plan' in value) {
    add(value.image.data);
    add(value.label.data);
  } else {
    for (const img of value.images) add(img.data);
    if ('label' in value && value.label) add(value.label.data);
    if (value.original) add(value.original.data);
  }
  return [...buffers];
}
