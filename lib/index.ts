/** segtool: scene parsing (semantic segmentation on MIT ADE20K) for Node.js on LibTorch. */
export { SegtoolError, isSegtoolError, type SegtoolErrorCode } from './errors.js';
export { Tensor, liveTensorCount, setNumThreads, getNumThreads, type Dtype, type TensorData } from './tensor.js';
export { native, addonCandidates, type BuildInfo } from './native.js';
export { loadSafetensors, saveSafetensors, disposeAll, type NamedTensors, type TensorFile } from './io/safetensors.js';
export { systemInfo, type SystemInfo } from './system.js';
export { cudaStatus, checkDevice, type DeviceName, type Precision, type RuntimeOptions, type CudaStatus } from './device.js';
export {
  SegmentationModel,
  architectures,
  checkSlideWindow,
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
export * from './config/index.js';
export * from './eval/index.js';
export * from './data/index.js';
export * from './checkpoint.js';
export * from './classes.js';
export { resolveClassInfo, modelClassInfo } from './eval/weights.js';
export * from './train/index.js';
export { evaluate, type EvaluateOptions, type EvaluateEvent, type EvaluateResult, type ClassResult } from './eval/evaluate.js';
export { predictMultiScale, coverageFromCounts } from './inference/infer.js';
export { InferenceEngine } from './inference/engine.js';
export { segment, segmentFiles, findImages, loadModel, segmentOptionsFromConfig } from './segment.js';
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
export {
  exportOnnx,
  ONNX_DEFAULT_OPSET,
  ONNX_MIN_OPSET,
  ONNX_MAX_OPSET,
  type OnnxExportOptions,
  type OnnxExportReport,
} from './onnx/export.js';
export { runDemo, DEMO_DEFAULTS, type DemoOptions, type DemoResult } from './demo/demo.js';
export { generateSyntheticDataset, syntheticScene, SYNTHETIC_CLASSES } from './demo/synthetic.js';
export * from './dist/index.js';
export * from './download/index.js';
