/**
 * segtool's data pipeline: sample lists, the reference's geometry, decoding, PIL-exact resizing,
 * normalisation, training batches and evaluation samples loaded by worker threads.
 * See docs/data.md.
 */
export { readImage, readLabel, type LabelMap, type RgbImage } from './decode.js';
export {
  checkSize,
  roundUpToMultiple,
  trainBatchGeometry,
  trainBatchShapes,
  trainSampleSize,
  valTargetSizes,
  type BatchShape,
  type Size,
  type TrainBatchGeometry,
  type TrainBatchShapesOptions,
} from './geometry.js';
export {
  IMAGE_EXTENSIONS,
  listFolder,
  parseOdgt,
  readImageSizes,
  readOdgt,
  selectSamples,
  type FolderOptions,
  type ListSelection,
  type OdgtOptions,
  type SampleRecord,
} from './list.js';
export {
  createEvalLoader,
  createTrainLoader,
  EvalLoader,
  TrainLoader,
  type EvalLoaderOptions,
  type TrainLoaderOptions,
} from './loader.js';
export type { BadSample, EvalSample, ImageBatch, LabelBatch, TrainBatch } from './pipeline.js';
export {
  DEFAULTS,
  NORMALIZE_PRESETS,
  resolveTrainGeometry,
  resolveValGeometry,
  type BadSamplePolicy,
  type DecodeOptions,
  type ImageDecoderName,
  type ExifPolicy,
  type NormalizePreset,
  type TrainGeometryOptions,
  type ValGeometryOptions,
} from './options.js';
export { NORMALIZE_SPECS, type NormalizeSpec } from './normalize.js';
export { deriveSeed, Rng } from './prng.js';
export { nearestIndices, resizeBilinear, resizeBilinearOpenCV, resizeImage, resizeNearest, type ResizeFilter } from './resize.js';
export { TrainSampler, type TrainPlan, type TrainSamplerOptions } from './sampler.js';
