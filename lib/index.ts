/**
 * segtool: scene parsing (semantic segmentation on MIT ADE20K) for Node.js on LibTorch.
 *
 * The public API, named one by one: what users of the library need, not every helper the CLI
 * and the tests use (those are importable from their modules, without a stability promise).
 * test/exports.test.mjs lists these names; adding or removing one is a decision, not an accident.
 */
export { SegtoolError, isSegtoolError, type SegtoolErrorCode } from './errors.js';
export { Tensor, liveTensorCount, setNumThreads, getNumThreads, type Dtype, type TensorData } from './tensor.js';
export type { BuildInfo } from './native.js';
export { systemInfo, type SystemInfo } from './system.js';
export { cudaStatus, cpuStatus, checkDevice, type DeviceName, type Precision, type RuntimeOptions, type CudaStatus, type CpuStatus } from './device.js';
export {
  SegmentationModel,
  architectures,
  type ModelOptions,
  type PredictSlidingOptions,
  type SlideWindowOptions,
  type SlideWindow,
  type SlideTile,
  type ModelInfo,
  type TrainStepOptions,
  type TrainStepResult,
  type LoadReport,
  type TensorLike,
  type EncoderName,
  type DecoderName,
} from './model.js';
export { loadSafetensors, saveSafetensors, disposeAll, type NamedTensors, type TensorFile } from './io/safetensors.js';

// Configs.
export {
  loadConfig,
  parseConfig,
  defaultConfig,
  mergeConfig,
  applyOverrides,
  validateConfig,
  saveConfig,
  CONFIG_KEYS,
  CONFIG_SPECS,
  BUNDLED_CONFIGS,
  ENCODER_NAMES,
  DECODER_NAMES,
  type SegtoolConfig,
  type PartialConfig,
  type ConfigOverrides,
  type ConfigKey,
} from './config/index.js';

// Classes: names and colours.
export {
  readClassInfo,
  defaultClassInfo,
  generatePalette,
  classInfoFromConfig,
  CLASS_INFO_MAX_BYTES,
  type ClassInfo,
  type ClassInfoInput,
} from './classes.js';
export { ADE20K_CLASS_NAMES, ade20kPalette, colorize } from './eval/palette.js';

// Weights and checkpoints.
export {
  loadWeights,
  readWeights,
  writeWeights,
  convertWeights,
  checkWeightsFile,
  saveReferenceWeights,
  saveTrainingCheckpoint,
  loadTrainingCheckpoint,
  restoreTrainingCheckpoint,
  readClassInfoFromWeights,
  manualSeed,
  type WeightsPart,
  type WeightsSource,
  type LoadWeightsOptions,
  type WeightsLoadReport,
  type WeightsFileReport,
  type TrainingState,
  type TrainingCheckpoint,
} from './checkpoint.js';

// Data.
export { readOdgt, listFolder, readImage, readLabel, valTargetSizes, trainBatchShapes, createTrainLoader, createEvalLoader, type SampleRecord, type RgbImage, type LabelMap } from './data/index.js';

// Training, evaluation, metrics, pictures.
export { train, type TrainOptions, type TrainResult, type TrainEvent, type IterationEvent, type TrainHistoryEntry } from './train/index.js';
export { evaluate, type EvaluateOptions, type EvaluateEvent, type EvaluateResult, type ClassResult } from './eval/evaluate.js';
export { intersectionAndUnion, pixelAccuracy, MetricsAccumulator } from './eval/metrics.js';
export { visualizationPanel, classCoverage, encodeLabelPng } from './eval/visualize.js';
export { encodePng } from './eval/png.js';

// Inference.
export { predictMultiScale, type MultiScaleOptions, type MultiScaleOutput } from './inference/infer.js';
export { segment, segmentFiles, findImages, loadModel, segmentOptionsFromConfig, type SegmentOptions, type SegmentResult } from './segment.js';
export {
  Segmenter,
  SEGMENT_OUTPUTS,
  type SegmenterOptions,
  type SegmenterInput,
  type SegmenterDevice,
  type SegmenterStats,
  type RawPixels,
  type SegmentOutput,
  type SegmentRequestOptions,
  type SegmentationResult,
  type SegmentResultFor,
  type SegmentationBase,
  type SegmentTimings,
  type ClassSummary,
  type LabelsOutput,
  type SummaryOutput,
  type PngOutput,
  type ProbabilitiesOutput,
} from './segmenter.js';
export { exportOnnx, ONNX_DEFAULT_OPSET, ONNX_MIN_OPSET, ONNX_MAX_OPSET, type OnnxExportOptions, type OnnxExportReport } from './onnx/export.js';

// Distributed training and evaluation (one process per rank; see README "Multiple processes and machines").
export { Communicator, distributedEnv, type CommunicatorOptions, type DistributedEnv } from './distributed/index.js';

// Downloads: the cache and the mirror every download uses.
export { cacheRoot, mirrorBase, fetchCached, type FetchCachedOptions, type FetchCachedResult } from './download/index.js';

// The bundled demo.
export { runDemo, DEMO_DEFAULTS, type DemoOptions, type DemoResult } from './demo/demo.js';
export { generateSyntheticDataset } from './demo/synthetic.js';

// Reports: one HTML page of a run, and the live page while it trains.
export { writeReport, Dashboard, DEFAULT_DASHBOARD_PORT, type ReportOptions, type ReportResult, type DashboardOptions } from './report/index.js';
