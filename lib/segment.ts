/**
 * Segmenting images with a trained model — what the reference's test.py does, as functions:
 * `segment(model, image)` for one image (a path or decoded pixels), `segmentFiles(model, paths)`
 * for many (decoded and resized by worker threads), `findImages(paths)` to expand folders, and
 * `loadModel(config)` for the model a config's TEST.checkpoint names.
 */
import { defaultClassInfo, type ClassInfo } from './classes.js';
import type { ConfigOverrides, SegtoolConfig } from './config/index.js';
import {
  createEvalLoader,
  DEFAULTS,
  type BadSample,
  type DecodeOptions,
  type NormalizePreset,
  type ResizeFilter,
  type RgbImage,
} from './data/index.js';
import { resolveDecodeOptions } from './data/options.js';
import { SegtoolError } from './errors.js';
import { createModelWithWeights, modelClassInfo, resolveWeightFiles } from './eval/weights.js';
import { admitInput, defaultPreparePool, DEFAULT_LIMITS, runStages, type EngineOutput } from './inference/engine.js';
import { coverageFromCounts, inferClasses, predictionViews, resolveInferMode, type ClassCoverage, type InferModeOptions } from './inference/infer.js';
import { SegmentationModel, type SlideWindow, type TensorLike } from './model.js';
import { resolveConfigInput, type ConfigInput } from './config/index.js';
import { expectBoolean, expectInteger, expectIntegerList, expectNumber, expectObject, expectOneOf, expectString, invalid } from './validate.js';

/** With mode 'slide' the image runs at its own size: imgSizes, imgMaxSize and paddingConstant do not apply. */
export interface SegmentOptions extends DecodeOptions, InferModeOptions {
  /** Short sides to average over (DATASET.imgSizes, mode 'whole'); default [300, 375, 450, 525, 600]. */
  imgSizes?: number | readonly number[];
  imgMaxSize?: number;
  paddingConstant?: number;
  /** Input normalisation (DATASET.normalization); default 'imagenet'. */
  normalize?: NormalizePreset;
  /** Image resize filter (DATASET.resize): 'pil' (default) or 'opencv' (the 2018 seed's, for the baseline-* weights). */
  resize?: ResizeFilter;
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
  /** Stops the work (between scales and output rows): ERR_ABORTED. */
  signal?: AbortSignal;
  /** Stops the work after this many milliseconds (ERR_ABORTED); 0 = no limit (default). */
  timeoutMs?: number;
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
    resize: cfg.DATASET.resize,
  };
}

interface ResolvedOptions {
  geometry: { imgSizes: number[]; imgMaxSize: number; paddingConstant: number };
  normalize: NormalizePreset;
  resize: ResizeFilter;
  probabilities: boolean;
  flip: boolean;
  /** Mode 'slide': the sliding window (the image at its own size). */
  slide?: SlideWindow;
  minCoverage: number;
  names?: readonly string[];
  decode: DecodeOptions;
  signal?: AbortSignal;
  timeoutMs: number;
}

const SEGMENT_OPTION_KEYS = [
  'imgSizes', 'imgMaxSize', 'paddingConstant', 'normalize', 'resize', 'probabilities', 'flip', 'mode', 'crop', 'stride', 'minCoverage', 'names',
  'exif', 'decoder', 'signal', 'timeoutMs',
];

function resolveOptions(model: SegmentationModel, options: SegmentOptions, extraKeys: readonly string[] = []): ResolvedOptions {
  expectObject('options', options, true);
  for (const key of Object.keys(options)) {
    if (!SEGMENT_OPTION_KEYS.includes(key) && !extraKeys.includes(key)) {
      throw new SegtoolError('ERR_INVALID_ARG', `Unknown option "${key}" (expected one of ${[...SEGMENT_OPTION_KEYS, ...extraKeys].join(', ')})`);
    }
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', options.signal);
  if (options.names !== undefined && !Array.isArray(options.names)) throw invalid('options.names', 'an array of class names', options.names);
  const slide = resolveInferMode('options', options, model.outputStride);
  return {
    geometry: {
      imgSizes: expectIntegerList('options.imgSizes', options.imgSizes ?? DEFAULTS.imgSizes, 1, 16384),
      imgMaxSize: expectInteger('options.imgMaxSize', options.imgMaxSize ?? DEFAULTS.imgMaxSize, 1, 16384),
      paddingConstant: expectInteger('options.paddingConstant', options.paddingConstant ?? DEFAULTS.paddingConstant, 1, 1024),
    },
    normalize: expectOneOf('options.normalize', options.normalize ?? 'imagenet', ['imagenet', 'legacy-bgr'] as const),
    resize: expectOneOf('options.resize', options.resize ?? 'pil', ['pil', 'opencv'] as const),
    probabilities: options.probabilities === undefined ? false : expectBoolean('options.probabilities', options.probabilities),
    flip: options.flip === undefined ? false : expectBoolean('options.flip', options.flip),
    ...(slide ? { slide } : {}),
    minCoverage: expectNumber('options.minCoverage', options.minCoverage ?? 0.001, 0, 1),
    ...(options.names ? { names: options.names } : {}),
    decode: { ...(options.exif ? { exif: options.exif } : {}), ...(options.decoder ? { decoder: options.decoder } : {}) },
    ...(options.signal ? { signal: options.signal } : {}),
    timeoutMs: expectInteger('options.timeoutMs', options.timeoutMs ?? 0, 0),
  };
}

function checkModel(model: unknown): SegmentationModel {
  if (!(model instanceof SegmentationModel)) throw invalid('model', 'a SegmentationModel (see loadModel)', model);
  return model;
}

/** The class names and colours results use: `names` if given, else the model's (loadModel), else the defaults. */
function classesFor(model: SegmentationModel, options: ResolvedOptions): ClassInfo {
  const loaded = modelClassInfo(model);
  const base = loaded?.names.length === model.numClass ? loaded : defaultClassInfo(model.numClass);
  return options.names ? { ...base, names: options.names } : base;
}

/** The infer and outputs stages for prepared inputs (segmentFiles: the loader prepared them). */
async function finish(model: SegmentationModel, inputs: readonly TensorLike[], image: RgbImage, options: ResolvedOptions): Promise<SegmentResult> {
  const tic = performance.now();
  const prediction = await inferClasses(model, inputs, image.height, image.width, {
    flip: options.flip,
    ...(options.slide ? { mode: 'slide' as const, crop: options.slide.crop, stride: options.slide.stride } : {}),
    probabilities: options.probabilities,
    counts: true,
    ...(options.signal ? { signal: options.signal } : {}),
    timeoutMs: options.timeoutMs,
  });
  const output = predictionViews(prediction, model.numClass, image.height, image.width);
  return {
    width: image.width,
    height: image.height,
    numClass: output.numClass,
    labels: output.labels,
    confidence: output.confidence,
    ...(options.probabilities ? { probabilities: output.probabilities! } : {}),
    classes: coverageFromCounts(output.counts!, classesFor(model, options).names, options.minCoverage),
    seconds: (performance.now() - tic) / 1000,
    image,
  };
}

/**
 * Segments one image — a file path, the bytes of an encoded image, or decoded RGB pixels —
 * through the inference engine's stages: checked from its header, decoded, resized and
 * normalised in a data worker thread, inferred on the compute thread. The model is put in eval
 * mode.
 */
export async function segment(model: SegmentationModel, input: string | Uint8Array | RgbImage, options: SegmentOptions = {}): Promise<SegmentResult> {
  checkModel(model);
  const resolved = resolveOptions(model, options);
  if (typeof input === 'string') expectString('input', input);
  const admitted = await admitInput(input, { ...DEFAULT_LIMITS, maxComputePixels: Number.MAX_SAFE_INTEGER });
  model.eval();
  const outputs = new Set<EngineOutput>(['labels', 'summary', 'original', ...(resolved.probabilities ? (['probabilities'] as const) : [])]);
  const out = await runStages(
    {
      model,
      classes: classesFor(model, resolved),
      imgMaxSize: resolved.geometry.imgMaxSize,
      paddingConstant: resolved.geometry.paddingConstant,
      normalize: resolved.normalize,
      resize: resolved.resize,
      minCoverage: resolved.minCoverage,
    },
    defaultPreparePool(),
    admitted,
    {
      scales: resolved.geometry.imgSizes,
      ...(resolved.slide ? { slide: resolved.slide } : {}),
      flip: resolved.flip,
      outputs,
      timeoutMs: resolved.timeoutMs,
      ...(resolved.signal ? { signal: resolved.signal } : {}),
    },
    undefined,
    resolveDecodeOptions(resolved.decode),
  );
  return {
    width: out.width,
    height: out.height,
    numClass: out.numClass,
    labels: out.labels!,
    confidence: out.confidence!,
    ...(out.probabilities ? { probabilities: out.probabilities } : {}),
    classes: out.classes!,
    seconds: out.timings.inferenceMs / 1000,
    image: out.original!,
    ...(typeof input === 'string' ? { path: input } : {}),
  };
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
  const resolved = resolveOptions(model, options, ['workers', 'onBadSample', 'onSkipped']);
  if (!Array.isArray(paths) || paths.length === 0) throw invalid('paths', 'a non-empty array of image paths', paths);
  paths.forEach((p, i) => expectString(`paths[${i}]`, p));
  const onBadSample = expectOneOf('options.onBadSample', options.onBadSample ?? 'error', ['error', 'skip'] as const);
  const loader = await createEvalLoader({
    records: paths.map((image) => ({ image })),
    ...resolved.geometry,
    ...(resolved.slide ? { originalSize: true } : {}),
    normalize: resolved.normalize,
    resize: resolved.resize,
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

export { findImages, type FoundImage } from './data/find-images.js';

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
