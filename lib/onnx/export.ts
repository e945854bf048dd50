/**
 * exportOnnx: a SegmentationModel as an ONNX model that onnxruntime (Node, web, Python, C++)
 * runs at any image size. Input `input`: float32 [N, 3, H, W], normalised as the metadata says;
 * output `logprob`: float32 [N, numClass, h, w] at the output stride, the tensor
 * `SegmentationModel.forward` returns; with `fullSize`, also `pred` (int64 [N, H, W]) and `prob`
 * (float32 [N, H, W]). N, H and W are dynamic. The weights are copied off the model by its queue,
 * the graph is built and written in a worker thread.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { NORMALIZATIONS, type Normalization } from '../config/names.js';
import { defaultConfig } from '../config/config.js';
import { NORMALIZE_SPECS } from '../data/normalize.js';
import { SegtoolError, type SegtoolErrorCode } from '../errors.js';
import { defaultClassInfo, type ClassInfo } from '../classes.js';
import { modelClassInfo } from '../eval/weights.js';
import { SegmentationModel } from '../model.js';
import { expectBoolean, expectInteger, expectIntegerList, expectOneOf, expectString, invalid } from '../validate.js';
import { DEFAULT_OPSET, MAX_OPSET, MIN_OPSET } from './graph.js';
import type { ExportJob, ExportReply } from './worker.js';

export { DEFAULT_OPSET as ONNX_DEFAULT_OPSET, MIN_OPSET as ONNX_MIN_OPSET, MAX_OPSET as ONNX_MAX_OPSET };

export interface OnnxExportOptions {
  /** Also the outputs `pred` (int64 [N, H, W]: bilinear upsampling to the input size, argmax) and `prob` (its probability). */
  fullSize?: boolean;
  /** ONNX opset, 13 to 21 (default 17). */
  opset?: number;
  /** numClass names for the metadata; default the model's classes (loadModel / DATASET.class_info), else ADE20K's for 150 classes and class_N otherwise. */
  classNames?: readonly string[];
  /** RGB bytes, 3 per class; default the model's palette, as for classNames. */
  palette?: Uint8Array | readonly number[];
  /** How inputs are normalised (DATASET.normalization; default 'imagenet'). */
  normalization?: Normalization;
  /** Test scales (DATASET.imgSizes, imgMaxSize, padding_constant), for the metadata; default the config defaults. */
  imgSizes?: readonly number[];
  imgMaxSize?: number;
  paddingConstant?: number;
}

export interface OnnxExportReport {
  path: string;
  bytes: number;
  opset: number;
  inputs: string[];
  outputs: string[];
  nodes: number;
  initializers: number;
  /** Metadata written into the model's metadata_props. */
  metadata: Record<string, string>;
  seconds: number;
}

const KNOWN_OPTIONS = ['fullSize', 'opset', 'classNames', 'palette', 'normalization', 'imgSizes', 'imgMaxSize', 'paddingConstant'];

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Bytes of weights copied before the event loop gets a turn. */
const COPY_SLICE = 32 * 1024 * 1024;

function checkOptions(options: OnnxExportOptions, numClass: number, classes: ClassInfo) {
  if (!options || typeof options !== 'object') throw invalid('options', 'an object', options);
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.includes(key)) throw new SegtoolError('ERR_INVALID_ARG', `Unknown export option "${key}" (expected one of ${KNOWN_OPTIONS.join(', ')})`);
  }
  const dataset = defaultConfig().DATASET;
  const classNames = options.classNames ?? classes.names;
  if (!Array.isArray(classNames) || classNames.length !== numClass || classNames.some((n) => typeof n !== 'string')) {
    throw invalid('options.classNames', `an array of ${numClass} strings (one per class)`, options.classNames);
  }
  let palette: number[];
  if (options.palette === undefined) {
    palette = [...classes.palette];
  } else {
    const given = options.palette;
    if ((!Array.isArray(given) && !(given instanceof Uint8Array)) || given.length !== numClass * 3 || [...given].some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
      throw invalid('options.palette', `${numClass * 3} RGB bytes (3 per class, 0..255)`, given);
    }
    palette = [...given];
  }
  return {
    fullSize: options.fullSize === undefined ? false : expectBoolean('options.fullSize', options.fullSize),
    opset: options.opset === undefined ? DEFAULT_OPSET : expectInteger('options.opset', options.opset, MIN_OPSET, MAX_OPSET),
    classNames: [...classNames],
    palette,
    normalization: options.normalization === undefined ? dataset.normalization : expectOneOf('options.normalization', options.normalization, NORMALIZATIONS),
    imgSizes: options.imgSizes === undefined ? [...dataset.imgSizes] : expectIntegerList('options.imgSizes', options.imgSizes, 1, 16384),
    imgMaxSize: options.imgMaxSize === undefined ? dataset.imgMaxSize : expectInteger('options.imgMaxSize', options.imgMaxSize, 1, 16384),
    paddingConstant: options.paddingConstant === undefined ? dataset.padding_constant : expectInteger('options.paddingConstant', options.paddingConstant, 1, 1024),
  };
}

/**
 * Writes `model` (in eval mode: BatchNorm running statistics, folded into the convolutions;
 * no dropout; no deep-supervision head) to `path` as ONNX. The metadata_props hold the
 * architecture, class names and palette, the input normalisation and the test scales.
 * ERR_BUSY when the model has calls in flight as the export starts, ERR_DEVICE when it is not
 * on the CPU, ERR_EXPORT when the architecture cannot be described.
 */
export async function exportOnnx(model: SegmentationModel, path: string, options: OnnxExportOptions = {}): Promise<OnnxExportReport> {
  if (!(model instanceof SegmentationModel)) throw invalid('model', 'a SegmentationModel', model);
  const target = resolve(expectString('path', path));
  if (path.length === 0) throw invalid('path', 'a file name', path);
  const info = model.info;
  if (info.device !== 'cpu') {
    throw new SegtoolError('ERR_DEVICE', `exportOnnx reads the weights of a CPU model but this one is on ${info.device}: await model.to('cpu') first`);
  }
  const o = checkOptions(options, info.numClass, modelClassInfo(model) ?? defaultClassInfo(info.numClass));
  const started = performance.now();
  const spec = NORMALIZE_SPECS[o.normalization];
  const metadata: Record<string, string> = {
    producer: `segtool ${VERSION}`,
    encoder: info.encoder,
    decoder: info.decoder,
    num_class: String(info.numClass),
    fc_dim: String(info.fcDim),
    output_stride: String(info.outputStride),
    class_names: JSON.stringify(o.classNames),
    palette: JSON.stringify(o.palette),
    // input[c] = (rgb[order[c]] / scale - mean[c]) / std[c]
    normalization: JSON.stringify({ preset: o.normalization, order: spec.order, scale: spec.scale, mean: spec.mean, std: spec.std }),
    img_sizes: JSON.stringify(o.imgSizes),
    img_max_size: String(o.imgMaxSize),
    padding_constant: String(o.paddingConstant),
    outputs: o.fullSize ? 'logprob,pred,prob' : 'logprob',
  };

  const shapes: Array<[string, number[]]> = model.shapes().map(([key, shape]) => [key, shape]);
  const values: Array<[string, Float32Array]> = [];
  const state = await model.stateDict();
  try {
    let sinceYield = 0;
    for (const [key, tensor] of state) {
      if (tensor.dtype === 'float32') {
        const copy = new Float32Array(tensor.data<'float32'>()); // transferable, unlike the native memory
        values.push([key, copy]);
        sinceYield += copy.byteLength;
      }
      tensor.dispose();
      if (sinceYield > COPY_SLICE) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
    }
  } finally {
    for (const tensor of state.values()) tensor.dispose();
  }

  const job: ExportJob = {
    path: target,
    info: { encoder: info.encoder, decoder: info.decoder, numClass: info.numClass, bnEps: info.bnEps },
    options: { opset: o.opset, fullSize: o.fullSize },
    metadata,
    producerVersion: VERSION,
    shapes,
    values,
  };
  const reply = await new Promise<ExportReply>((resolvePromise, reject) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: job,
      transferList: values.map(([, v]) => v.buffer as ArrayBuffer),
    });
    let settled = false;
    worker.once('message', (message: ExportReply) => {
      settled = true;
      resolvePromise(message);
    });
    worker.once('error', (error) => {
      settled = true;
      reject(new SegtoolError('ERR_EXPORT', `The ONNX export's worker failed: ${error.message}`, { cause: error }));
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new SegtoolError('ERR_EXPORT', `The ONNX export's worker exited (code ${code}) without a result`));
    });
  });
  if (!reply.ok) {
    const code = reply.code.startsWith('ERR_') ? (reply.code as SegtoolErrorCode) : 'ERR_EXPORT';
    throw new SegtoolError(code, reply.code.startsWith('ERR_') ? reply.message : `Cannot write ${target}: ${reply.message}`);
  }
  return {
    path: target,
    bytes: reply.bytes,
    opset: o.opset,
    inputs: ['input'],
    outputs: o.fullSize ? ['logprob', 'pred', 'prob'] : ['logprob'],
    nodes: reply.nodes,
    initializers: reply.initializers,
    metadata,
    seconds: (performance.now() - started) / 1000,
  };
}
