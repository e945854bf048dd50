/**
 * Data-pipeline options: names, defaults (the reference's config defaults) and validation.
 * Option names are the camelCase of the reference's keys: DATASET.imgSizes -> imgSizes,
 * DATASET.padding_constant -> paddingConstant, TRAIN.batch_size_per_gpu -> batchPerGpu, ...
 */
import { LABEL_PADDINGS, NORMALIZATIONS, RESIZE_METHODS, type LabelPadding, type Normalization, type ResizeMethod } from '../config/names.js';
import { expectBoolean, expectInteger, expectIntegerList, expectNumber, expectOneOf, invalid } from '../validate.js';

// The preset names are config values (DATASET.normalization); one list serves both layers.
export const NORMALIZE_PRESETS = NORMALIZATIONS;
export type NormalizePreset = Normalization;

/** 'ignore': label canvas padding is -1; 'reference': the batch canvas is padded with class 0, as the reference did. */
export { LABEL_PADDINGS, type LabelPadding };

export const BAD_SAMPLE_POLICIES = ['error', 'skip'] as const;
export type BadSamplePolicy = (typeof BAD_SAMPLE_POLICIES)[number];

export const EXIF_POLICIES = ['apply', 'ignore'] as const;
export type ExifPolicy = (typeof EXIF_POLICIES)[number];

export const DECODERS = ['sharp', 'jimp'] as const;
export type ImageDecoderName = (typeof DECODERS)[number];

export const DEFAULTS = {
  imgSizes: [300, 375, 450, 525, 600],
  imgMaxSize: 1000,
  paddingConstant: 8,
  segmDownsamplingRate: 8,
  batchPerGpu: 2,
  numClass: 150,
  randomFlip: 0.5,
  seed: 304,
  workers: 2,
  prefetch: 2,
} as const;

/** Sizes are capped so that a typo (imgMaxSize 100000) fails here, not as an out-of-memory later. */
const MAX_SIDE = 16384;

export interface ValGeometryOptions {
  /** Short side(s) in pixels; one entry per scale (validation) or the set to draw from (training). */
  imgSizes?: number | readonly number[];
  /** Cap on the long side. */
  imgMaxSize?: number;
  /** Network input sides are rounded up to a multiple of this. */
  paddingConstant?: number;
  /**
   * One input at the image's own size, neither resized nor rounded up (sliding-window
   * inference): imgSizes, imgMaxSize and paddingConstant do not apply. Default false.
   */
  originalSize?: boolean;
}

export interface TrainGeometryOptions extends ValGeometryOptions {
  /** The label is downsampled by this factor (the decoder's output stride); must divide paddingConstant. */
  segmDownsamplingRate?: number;
  /** Samples per device batch (TRAIN.batch_size_per_gpu). */
  batchPerGpu?: number;
}

export interface ResolvedValGeometry {
  imgSizes: number[];
  imgMaxSize: number;
  paddingConstant: number;
  originalSize?: boolean;
}

export interface ResolvedTrainGeometry extends ResolvedValGeometry {
  segmDownsamplingRate: number;
  batchPerGpu: number;
}

export function resolveValGeometry(options: ValGeometryOptions = {}): ResolvedValGeometry {
  return {
    imgSizes: expectIntegerList('imgSizes', options.imgSizes ?? DEFAULTS.imgSizes, 1, MAX_SIDE),
    imgMaxSize: expectInteger('imgMaxSize', options.imgMaxSize ?? DEFAULTS.imgMaxSize, 1, MAX_SIDE),
    paddingConstant: expectInteger('paddingConstant', options.paddingConstant ?? DEFAULTS.paddingConstant, 1, 1024),
    ...(options.originalSize === undefined ? {} : { originalSize: expectBoolean('originalSize', options.originalSize) }),
  };
}

export function resolveTrainGeometry(options: TrainGeometryOptions = {}): ResolvedTrainGeometry {
  const base = resolveValGeometry(options);
  const rate = expectInteger(
    'segmDownsamplingRate',
    options.segmDownsamplingRate ?? DEFAULTS.segmDownsamplingRate,
    1,
    1024,
  );
  // The label canvas is canvas / rate: exact only when rate divides the padding constant
  // (the reference asserted padding_constant >= rate, which lets e.g. 12 / 8 overflow the canvas).
  if (base.paddingConstant % rate !== 0) {
    throw invalid('segmDownsamplingRate', `a divisor of paddingConstant (${base.paddingConstant})`, rate);
  }
  return {
    ...base,
    segmDownsamplingRate: rate,
    batchPerGpu: expectInteger('batchPerGpu', options.batchPerGpu ?? DEFAULTS.batchPerGpu, 1, 1024),
  };
}

/** DATASET.random_flip: true = 0.5 (what the reference meant), false = 0, or a probability. */
export function resolveFlipProbability(value: unknown): number {
  if (value === undefined) return DEFAULTS.randomFlip;
  if (typeof value === 'boolean') return value ? 0.5 : 0;
  if (typeof value !== 'number') throw invalid('randomFlip', 'a boolean or a probability in [0, 1]', value);
  return expectNumber('randomFlip', value, 0, 1);
}

export interface DecodeOptions {
  /** 'apply' (default): rotate/flip by the EXIF Orientation tag, as viewers show the photo; 'ignore': raw pixels, as PIL does. */
  exif?: ExifPolicy;
  /** Image decoder: 'sharp' (default, libjpeg-turbo/libpng via libvips) or 'jimp' (pure JS, slower). */
  decoder?: ImageDecoderName;
}

export interface ResolvedDecodeOptions {
  exif: ExifPolicy;
  decoder: ImageDecoderName;
}

export function resolveDecodeOptions(options: DecodeOptions = {}): ResolvedDecodeOptions {
  const exif = expectOneOf('exif', options.exif ?? 'apply', EXIF_POLICIES);
  const decoder = expectOneOf('decoder', options.decoder ?? 'sharp', DECODERS);
  // jimp always applies the EXIF orientation of a JPEG; it cannot be told not to.
  if (decoder === 'jimp' && exif === 'ignore') throw invalid('exif', "'apply' with decoder 'jimp' (use decoder 'sharp' to ignore EXIF)", exif);
  return { exif, decoder };
}

export function resolveNormalize(value: unknown): NormalizePreset {
  return expectOneOf('normalize', value ?? 'imagenet', NORMALIZE_PRESETS);
}

export const RESIZE_FILTERS = RESIZE_METHODS;

export function resolveResize(value: unknown): ResizeMethod {
  return expectOneOf('resize', value ?? 'pil', RESIZE_FILTERS);
}

export function resolveNumClass(value: unknown): number {
  return expectInteger('numClass', value ?? DEFAULTS.numClass, 1, 65535);
}

export function resolveOptionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  return value === undefined ? fallback : expectBoolean(name, value);
}
