// The package's public API is named one by one (lib/index.ts): this list is the contract.
// Adding or removing a name must change it here too; internals (the native addon's door, the
// addon search list, CLI helpers) must never leak into it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as segtool from '../dist/index.js';

const PUBLIC = [
  'ADE20K_CLASS_NAMES', 'BUNDLED_CONFIGS', 'CLASS_INFO_MAX_BYTES', 'CONFIG_KEYS', 'CONFIG_SPECS', 'Communicator', 'DECODER_NAMES',
  'DEFAULT_DASHBOARD_PORT', 'DEMO_DEFAULTS', 'Dashboard', 'ENCODER_NAMES', 'MetricsAccumulator', 'ONNX_DEFAULT_OPSET', 'ONNX_MAX_OPSET', 'ONNX_MIN_OPSET', 'SEGMENT_OUTPUTS',
  'SegmentationModel', 'Segmenter', 'SegtoolError', 'Tensor', 'ade20kPalette', 'applyOverrides', 'architectures', 'cacheRoot',
  'checkDevice', 'checkWeightsFile', 'classCoverage', 'classInfoFromConfig', 'colorize', 'convertWeights', 'createEvalLoader',
  'createTrainLoader', 'cpuStatus', 'cudaStatus', 'defaultClassInfo', 'defaultConfig', 'disposeAll', 'distributedEnv', 'encodeLabelPng', 'encodePng',
  'evaluate', 'exportOnnx', 'fetchCached', 'findImages', 'generatePalette', 'generateSyntheticDataset', 'getNumThreads',
  'intersectionAndUnion', 'isSegtoolError', 'listFolder', 'liveTensorCount', 'loadConfig', 'loadModel', 'loadSafetensors',
  'loadTrainingCheckpoint', 'loadWeights', 'manualSeed', 'mergeConfig', 'mirrorBase', 'parseConfig', 'pixelAccuracy', 'predictMultiScale',
  'readClassInfo', 'readClassInfoFromWeights', 'readImage', 'readLabel', 'readOdgt', 'readWeights', 'restoreTrainingCheckpoint', 'runDemo',
  'saveConfig', 'saveReferenceWeights', 'saveSafetensors', 'saveTrainingCheckpoint', 'segment', 'segmentFiles', 'segmentOptionsFromConfig',
  'setNumThreads', 'systemInfo', 'train', 'trainBatchShapes', 'valTargetSizes', 'validateConfig', 'visualizationPanel', 'writeReport', 'writeWeights',
];

test('the public exports are exactly the documented list', () => {
  assert.deepEqual(Object.keys(segtool).sort(), [...PUBLIC].sort());
});

test('internals stay internal', () => {
  for (const name of ['native', 'addonCandidates', 'loadNative', 'InferenceEngine', 'OPTIONAL_BUFFER', 'summarizeKeys', 'writeFileAtomic', 'resolveConfigInput']) {
    assert.ok(!(name in segtool), `${name} is exported`);
  }
});
