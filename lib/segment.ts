/**
 * Segmenting images with a trained model — what the reference's test.py does, as functions:
 * `segment(model, image)` for one image (a path or decoded pixels), `segmentFiles(model, paths)`
 * for many (decoded and resized by worker threads), `findImages(paths)` to expand folders, and
 * `loadModel(config)` for the model a config's TEST.checkpoint names.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { defaultClassNames } from './classes.js';
import type { ConfigOverrides, SegtoolConfig } from './config/index.js';
import {
  createEvalLoader,
  DEFAULTS,
  IMAGE_EXTENSIONS,
  readImage,
  resizeBilinear,
  valTargetSizes,
  type BadSample,
  type DecodeOptions,
  type NormalizePreset,
  type RgbImage,
} from './data/index.js';
import { normalizeInto } from './data/normalize.js';
import { SegtoolError } from './errors.js';
import { predictMultiScale } from './eval/inference.js';
import { classCoverage, type ClassCoverage } from './eval/visualize.js';
import { createModelWithWeights, modelClassInfo, resolveWeightFiles } from './eval/weights.js';
import { SegmentationModel } from './model.js';
import { resolveConfigInput, type ConfigInput } from './train/common.js';
import { expectBoolean, expectInteger, expectIntegerList, expectNumber, expectObject, expectOneOf, expectString, invalid } from './validate.js';

export interface SegmentOptions extends DecodeOptions {
  /** Short sides to average over (DATASET.imgSizes); default [300, 375, 450, 525, 600]. */
  imgSizes?: number | readonly number[];
  imgMaxSize?: number;
  paddingConstant?: number;
  /** Input normalisation (DATASET.normalization); default 'imagenet'. */
  normalize?: NormalizePreset;
  /** Keep the averaged class probabilities ([numClass, height, width]) in the result. */
  probabilities?: boolean;
  /** Also average every scale mirrored left-right (not in the reference; ~2x the time). */
  flip?: boolean;
  /** Classes listed in `classes` cover more than this fraction of the image; default 0.001. */
  minCoverage?: number;
  /**
   * Class names for `classes`. Default: the classes loadModel found for the model (the config's
   * DATASET.class_info, or its checkpoint's list), else ADE20K's for 150 classes and class_N otherwise.
   */
  names?: readonly string[];
}

export interface SegmentFilesOptions extends SegmentOptions {
  /** Decoding worker threads; default 1. */
  workers?: number;
  /** 'skip' leaves out images that cannot be read (reported in `onBadSample`); default 'error'. */
  onBadSample?: 'error' | 'skip';
  onSkipped?: (bad: BadSample) => void;
}

export interface SegmentResult {
  /** The image file, when segmenting files. */
  path?: string;
  width: number;
  height: number;
  numClass: number;
  /** Class index per pixel, row-major (ADE20K annotation value = index + 1). */
  labels: Int32Array;
  /** Probability of the chosen class per pixel. */
  confidence: Float32Array;
  /** [numClass, height, width] averaged probabilities, when asked for. */
  probabilities?: Float32Array;
  /** Classes by decreasing area, those above minCoverage. */
  classes: ClassCoverage[];
  /** Inference seconds (all scales, averaging, argmax). */
  seconds: number;
  /** The decoded image (RGB), for panels. */
  image: RgbImage;
}

/** SegmentOptions from a config's DATASET keys. */
export function segmentOptionsFromConfig(cfg: SegtoolConfig): SegmentOptions {
  return {
    imgSizes: [...cfg.DATASET.imgSizes],
    imgMaxSize: cfg.DATASET.imgMaxSize,
    paddingConstant: cfg.DATASET.padding_constant,
    normalize: cfg.DATASET.normalization,
  };
}

interface ResolvedOptions {
  geometry: { imgSizes: number[]; imgMaxSize: number; paddingConstant: number };
  normalize: NormalizePreset;
  probabilities: boolean;
  flip: boolean;
  minCoverage: number;
  names?: readonly string[];
  decode: DecodeOptions;
}

function resolveOptions(options: SegmentOptions): ResolvedOptions {
  expectObject('options', options, true);
  if (options.names !== undefined && !Array.isArray(options.names)) throw invalid('options.names', 'an array of class names', options.names);
  return {
    geometry: {
      imgSizes: expectIntegerList('options.imgSizes', options.imgSizes ?? DEFAULTS.imgSizes, 1, 16384),
      imgMaxSize: expectInteger('options.imgMaxSize', options.imgMaxSize ?? DEFAULTS.imgMaxSize, 1, 16384),
      paddingConstant: expectInteger('options.paddingConstant', options.paddingConstant ?? DEFAULTS.paddingConstant, 1, 1024),
    },
    normalize: expectOneOf('options.normalize', options.normalize ?? 'imagenet', ['imagenet', 'legacy-bgr'] as const),
    probabilities: options.probabilities === undefined ? false : expectBoolean('options.probabilities', options.probabilities),
    flip: options.flip === undefined ? false : expectBoolean('options.flip', options.flip),
    minCoverage: expectNumber('options.minCoverage', options.minCoverage ?? 0.001, 0, 1),
    ...(options.names ? { names: options.names } : {}),
    decode: { ...(options.exif ? { exif: options.exif } : {}), ...(options.decoder ? { decoder: options.decoder } : {}) },
  };
}

function checkModel(model: unknown): SegmentationModel {
  if (!(model instanceof SegmentationModel)) throw invalid('model', 'a SegmentationModel (see loadModel)', model);
  return model;
}

async function finish(
  model: SegmentationModel,
  inputs: Array<{ data: Float32Array; shape: readonly number[] }>,
  image: RgbImage,
  options: ResolvedOptions,
): Promise<SegmentResult> {
  const tic = performance.now();
  const output = await predictMultiScale(model, inputs, image.height, image.width, { flip: options.flip, probabilities: options.probabilities });
  const { labels, confidence } = output;
  const seconds = (performance.now() - tic) / 1000;
  const loaded = modelClassInfo(model)?.names;
  const names = options.names ?? (loaded?.length === output.numClass ? loaded : defaultClassNames(output.numClass));
  return {
    width: image.width,
    height: image.height,
    numClass: output.numClass,
    labels,
    confidence,
    ...(options.probabilities ? { probabilities: output.probabilities } : {}),
    classes: classCoverage(labels, { minRatio: options.minCoverage, names }),
    seconds,
    image,
  };
}

/**
 * Segments one image: a file path (decoded off the main thread by sharp) or decoded RGB pixels
 * (resized and normalised on this thread: a few milliseconds for photo-sized images). The
 * model is put in eval mode.
 */
export async function segment(model: SegmentationModel, input: string | RgbImage, options: SegmentOptions = {}): Promise<SegmentResult> {
  checkModel(model);
  const resolved = resolveOptions(options);
  let image: RgbImage;
  if (typeof input === 'string') {
    image = await readImage(expectString('input', input), resolved.decode);
  } else {
    expectObject('input', input);
    const width = expectInteger('input.width', input.width, 1);
    const height = expectInteger('input.height', input.height, 1);
    if (!(input.data instanceof Uint8Array) || input.data.length !== width * height * 3) {
      throw invalid('input.data', `a Uint8Array of ${width * height * 3} RGB bytes`, input.data);
    }
    image = input;
  }
  const inputs = valTargetSizes(image, resolved.geometry).map(([w, h]) => {
    const resized = resizeBilinear(image.data, image.width, image.height, 3, w, h);
    const data = new Float32Array(3 * w * h);
    normalizeInto(data, 0, w, h, resized, w, h, resolved.normalize);
    return { data, shape: [1, 3, h, w] };
  });
  model.eval();
  const result = await finish(model, inputs, image, resolved);
  if (typeof input === 'string') result.path = input;
  return result;
}

/**
 * Segments image files one after another (results in input order) while worker threads decode
 * and resize the next ones.
 */
export async function* segmentFiles(
  model: SegmentationModel,
  paths: readonly string[],
  options: SegmentFilesOptions = {},
): AsyncGenerator<SegmentResult> {
  checkModel(model);
  const resolved = resolveOptions(options);
  if (!Array.isArray(paths) || paths.length === 0) throw invalid('paths', 'a non-empty array of image paths', paths);
  paths.forEach((p, i) => expectString(`paths[${i}]`, p));
  const onBadSample = expectOneOf('options.onBadSample', options.onBadSample ?? 'error', ['error', 'skip'] as const);
  const loader = await createEvalLoader({
    records: paths.map((image) => ({ image })),
    ...resolved.geometry,
    normalize: resolved.normalize,
    labels: false,
    keepOriginal: true,
    workers: expectInteger('options.workers', options.workers ?? 1, 0, 64),
    onBadSample,
    ...resolved.decode,
  });
  let reported = 0;
  try {
    model.eval();
    for await (const sample of loader) {
      for (; reported < loader.badSamples.length; reported++) options.onSkipped?.(loader.badSamples[reported]!);
      const result = await finish(model, sample.images, sample.original!, resolved);
      result.path = sample.path;
      yield result;
    }
    for (; reported < loader.badSamples.length; reported++) options.onSkipped?.(loader.badSamples[reported]!);
  } finally {
    await loader.close();
  }
}

export interface FoundImage {
  path: string;
  /** Output name: the path relative to the folder it was found in (or the file name). */
  name: string;
}

/**
 * Image files under `inputs`: files as given (any type the decoder reads), folders searched
 * recursively for image extensions (case-insensitive), in sorted order.
 */
export async function findImages(inputs: readonly string[]): Promise<FoundImage[]> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('inputs', 'a non-empty array of image files or folders', inputs);
  const found: FoundImage[] = [];
  for (const [i, input] of inputs.entries()) {
    expectString(`inputs[${i}]`, input);
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new SegtoolError('ERR_NOT_FOUND', `image or folder not found: ${input}`);
    }
    if (info.isFile()) {
      found.push({ path: resolve(input), name: basename(input) });
      continue;
    }
    const entries = await readdir(input, { recursive: true, withFileTypes: true });
    const images = entries
      .filter((e) => e.isFile() && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase()))
      .map((e) => join(e.parentPath, e.name))
      .sort();
    if (images.length === 0) {
      throw new SegtoolError('ERR_NOT_FOUND', `no images (${IMAGE_EXTENSIONS.join(' ')}) in ${input}`);
    }
    for (const image of images) found.push({ path: resolve(image), name: relative(input, image) });
  }
  // Two inputs may yield the same output name (a.jpg given twice, x/a.jpg and y/a.jpg as files).
  const seen = new Map<string, number>();
  for (const item of found) {
    const key = item.name.toLowerCase();
    const count = seen.get(key) ?? 0;
    seen.set(key, count + 1);
    if (count > 0) item.name = `${item.name.slice(0, item.name.length - extname(item.name).length)}-${count}${extname(item.name)}`;
  }
  return found;
}

export interface LoadModelOptions {
  overrides?: ConfigOverrides;
  /** Weights: TEST.checkpoint by default (DIR/encoder_<it> + DIR/decoder_<it>), or a file/folder; 'none' for none. */
  checkpoint?: string;
}

/**
 * The model a config describes with its trained weights, in eval mode, with its classes
 * (DATASET.class_info, else the checkpoint's list, else the defaults: modelClassInfo(model),
 * used by segment()). Dispose it when done.
 */
export async function loadModel(config: ConfigInput, options: LoadModelOptions = {}): Promise<SegmentationModel> {
  expectObject('options', options, true);
  const cfg = await resolveConfigInput(config, options.overrides);
  const checkpoint = options.checkpoint === undefined ? cfg.TEST.checkpoint : expectString('options.checkpoint', options.checkpoint);
  return createModelWithWeights(cfg, resolveWeightFiles(cfg, checkpoint, options.checkpoint ? 'checkpoint' : 'TEST.checkpoint'));
}
