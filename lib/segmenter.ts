/**
 * Segmenter: what a Node service embeds. One object holds a model loaded from a config and
 * weights, takes images as paths, encoded bytes or raw pixels, and answers `segment()` calls
 * through the inference engine (lib/inference/engine.ts):
 *
 * - image headers are checked before a request queues: corrupt bytes and unsupported types are
 *   ERR_BAD_IMAGE; images over `maxPixels` / `maxBytes` and requests over `maxComputePixels`
 *   ERR_INVALID_ARG (413 in a service), without decoding;
 * - at most `concurrency` requests are in the pipeline at once (decoding and resizing in data
 *   worker threads while another infers on the compute thread), at most `maxQueue` more wait;
 *   beyond that `segment()` rejects at once with ERR_BUSY (a service answers 503);
 * - an AbortSignal or the time limit (`timeoutMs`) removes a waiting request and stops a running
 *   one, inside the native computation between scales and output rows (ERR_ABORTED);
 * - nothing per pixel runs on the event loop: results are views of native memory, coverage
 *   comes from native counts, the PNG is coloured natively and encoded by sharp;
 * - `mode: 'slide'` (with `crop`, `stride`) segments an image at its own size one crop at a time
 *   (SegmentationModel.predictSliding): memory bounded by the crop, for huge images; the
 *   compute budget counts the crops' pixels.
 *
 * Batching concurrent requests into one forward pass is deliberately not done: on CPU LibTorch
 * already spreads one image over every thread, and a batch needs equal input sizes (images of
 * other aspect ratios would have to be padded, changing the result). Measured with
 * mobilenetv2dilated + c1, 4 images of 256 x 256 as one batch against one by one: 0.96x at 1
 * thread, 0.87x at 2 (no gain); only tiny 64 x 64 inputs gained (1.2x-3.5x), where per-operation
 * overhead dominates (README, "Use it from Node").
 */
import { defaultConfig, mergeConfig, type ConfigOverrides, type PartialConfig, type SegtoolConfig } from './config/index.js';
import { checkClassInfo, readClassInfo, type ClassInfo, type ClassInfoInput } from './classes.js';
import { checkDevice, type DeviceName, type Precision } from './device.js';
import { PRECISIONS } from './config/schema.js';
import { SegtoolError } from './errors.js';
import { createModelWithWeights, resolveClassInfo, resolveWeightFiles } from './eval/weights.js';
import { DECODER_MAX_PIXELS, DEFAULT_LIMITS, InferenceEngine, type EngineInput, type EngineStats, type RawPixels } from './inference/engine.js';
import { resolveInferMode, type ClassCoverage, type InferModeOptions } from './inference/infer.js';
import { setNumThreads } from './tensor.js';
import { resolveConfigInput } from './config/index.js';
import { expectBoolean, expectInteger, expectIntegerList, expectNumber, expectObject, expectOneOf, expectString, invalid } from './validate.js';

export type { RawPixels };

/** An image file path, the bytes of an encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF/HEIF), or raw pixels. */
export type SegmenterInput = EngineInput;

/** What `segment()` can return; default ['labels', 'summary']. */
export type SegmentOutput = 'labels' | 'summary' | 'png' | 'probabilities';

export const SEGMENT_OUTPUTS: readonly SegmentOutput[] = Object.freeze(['labels', 'summary', 'png', 'probabilities']);

/** 'cpu' (default), 'cuda' or 'cuda:N' (a CUDA build of the addon on a machine with a GPU). */
export type SegmenterDevice = DeviceName;

export interface SegmenterOptions {
  /** A bundled config name ('mobilenetv2dilated-c1_deepsup'), a YAML path, or a config object (partial: the rest is the defaults). */
  config: string | SegtoolConfig | PartialConfig;
  /** KEY VALUE overrides over the config (['DATASET.imgSizes', '[300]'] or {'DATASET.imgSizes': [300]}). */
  overrides?: ConfigOverrides;
  /**
   * Weight files: a combined .safetensors / training checkpoint, or the reference's encoder and
   * decoder .pth. Default: the config's TEST.checkpoint in DIR. `[]` = none (random weights, for tests).
   */
  weights?: string | readonly string[];
  /**
   * Where the model computes: 'cpu', 'cuda' or 'cuda:N' (default: the config's TEST.device, 'cpu');
   * ERR_DEVICE when this build or machine has no such device.
   */
  device?: SegmenterDevice;
  /**
   * 'fp32', or 'bf16': bfloat16 convolutions (CUDA, or a CPU with AVX512-BF16 or AMX; ERR_DEVICE
   * elsewhere, see cpuStatus()). Default: the config's TEST.precision ('fp32'). On this project's
   * CPU, bf16 predictions agreed with float32 on 99.6 % or more of the pixels (README, "bfloat16 on the CPU").
   */
  precision?: Precision;
  /** LibTorch threads. Process-wide: it applies to every model in the process. Default: unchanged (SEGTOOL_THREADS, OMP_NUM_THREADS or all cores). */
  threads?: number;
  /**
   * Requests in the pipeline at once, on one model: the next ones decode and resize in the data
   * workers while one infers (all native work of a process runs on one compute thread, so model
   * replicas would not run in parallel). Default 2. It hides the decode time of the next image
   * only: measured 0.81-1.14x the throughput of 1 on a shared 2-core CPU, where inference is
   * 92-98% of a photo's time (bench/service.mjs, bench/results/service-2026-12-02.md).
   */
  concurrency?: number;
  /** Data worker threads that decode, resize and normalise images; default 1. */
  workers?: number;
  /** Requests that may wait for a place; more are rejected with ERR_BUSY. Default 64. */
  maxQueue?: number;
  /** Images with more pixels are rejected (ERR_INVALID_ARG) from their header, before decoding; default 40 megapixels, at most 268 (the decoder's limit). */
  maxPixels?: number;
  /** Pixels x scales (x 2 with flip) one request may cost; more is rejected before decoding (ERR_INVALID_ARG). Default 100 million (a 12-megapixel photo at 5 scales fits). */
  maxComputePixels?: number;
  /** Encoded images (files or bytes) larger than this are rejected; default 256 MiB. */
  maxBytes?: number;
  /** A request running longer is stopped (ERR_ABORTED), inside the native work; default 60000 ms, 0 = no limit. */
  timeoutMs?: number;
  /** Classes in `classes` cover more than this fraction of the image; default 0.001. */
  minCoverage?: number;
  /**
   * Class names and colours (for `classes` and `png`): a ClassInfo `{names, palette}`, or a class
   * list file read as DATASET.class_info is. Default: the config's DATASET.class_info, else the
   * list the weights were saved with (training checkpoints), else ADE20K's for 150 classes and
   * `class_N` with generated colours otherwise.
   */
  classInfo?: ClassInfoInput | string;
  /** Class names only (over classInfo's; kept for compatibility: prefer classInfo). */
  names?: readonly string[];
}

export interface SegmentRequestOptions<O extends readonly SegmentOutput[] = readonly SegmentOutput[]> extends InferModeOptions {
  /** Short sides to average over (mode 'whole'); default the config's DATASET.imgSizes. */
  scales?: number | readonly number[];
  /** Also average the horizontally flipped image's probabilities. */
  flip?: boolean;
  /** What to return; default ['labels', 'summary']. */
  outputs?: O;
  /** Aborts the request: removed from the queue if waiting, stops the native work between scales and rows if running. */
  signal?: AbortSignal;
  /** This request's time limit (default the Segmenter's timeoutMs; 0 = none). */
  timeoutMs?: number;
}

/** A class found in the image. */
export type ClassSummary = ClassCoverage;

export interface SegmentTimings {
  /** Waiting for a place in the pipeline. */
  queuedMs: number;
  decodeMs: number;
  /** All scales, averaging and argmax. */
  inferenceMs: number;
  /** Colourising and PNG encoding. */
  encodeMs: number;
  totalMs: number;
}

export interface SegmentationBase {
  width: number;
  height: number;
  numClass: number;
  /** The short sides the image was run at. */
  scales: number[];
  timings: SegmentTimings;
}

export interface LabelsOutput {
  /** Class index per pixel, row-major (ADE20K annotation value = index + 1). */
  labels: Int32Array;
  /** Probability of the chosen class per pixel. */
  confidence: Float32Array;
}

export interface SummaryOutput {
  /** Classes by decreasing area, those above minCoverage. */
  classes: ClassSummary[];
}

export interface PngOutput {
  /** The label map colourised with the model's palette (`segmenter.classInfo`; ADE20K's by default), as an RGB PNG. */
  png: Buffer;
}

export interface ProbabilitiesOutput {
  /** Averaged class probabilities, [numClass, height, width] row-major. */
  probabilities: Float32Array;
}

/** The result of `segment()`: the fields of the outputs asked for are present (and typed so). */
export type SegmentationResult<O extends SegmentOutput = 'labels' | 'summary'> = SegmentationBase &
  ('labels' extends O ? LabelsOutput : unknown) &
  ('summary' extends O ? SummaryOutput : unknown) &
  ('png' extends O ? PngOutput : unknown) &
  ('probabilities' extends O ? ProbabilitiesOutput : unknown);

/**
 * What `segment()` resolves to for an `outputs` list: exact fields for a literal list
 * (`['png']`), optional ones for a list only known at run time (`SegmentOutput[]`).
 */
export type SegmentResultFor<O extends readonly SegmentOutput[]> = number extends O['length']
  ? SegmentationBase & Partial<SegmentationResult<O[number]>>
  : SegmentationResult<O[number]>;

/** Requests in the Segmenter (EngineStats). */
export type SegmenterStats = EngineStats;

const DEFAULT_MAX_QUEUE = 64;
const DEFAULT_TIMEOUT_MS = 60_000;

/** A Segmenter: a config's model behind the inference engine (lib/inference/engine.ts). */
export class Segmenter {
  readonly #engine: InferenceEngine;
  readonly #cfg: SegtoolConfig;
  readonly #timeoutMs: number;

  private constructor(engine: InferenceEngine, cfg: SegtoolConfig, timeoutMs: number) {
    this.#engine = engine;
    this.#cfg = cfg;
    this.#timeoutMs = timeoutMs;
  }

  /** Builds the model off the main thread and loads the weights. */
  static async load(options: SegmenterOptions): Promise<Segmenter> {
    expectObject('options', options);
    const known = new Set([
      'config', 'overrides', 'weights', 'device', 'precision', 'threads', 'concurrency', 'workers', 'maxQueue', 'maxPixels', 'maxComputePixels', 'maxBytes',
      'timeoutMs', 'minCoverage', 'classInfo', 'names',
    ]);
    for (const key of Object.keys(options)) {
      if (!known.has(key)) throw new SegtoolError('ERR_INVALID_ARG', `Unknown Segmenter option "${key}" (expected one of ${[...known].join(', ')})`);
    }
    const device = options.device === undefined ? undefined : checkDevice('options.device', options.device);
    const precision = options.precision === undefined ? undefined : expectOneOf('options.precision', options.precision, PRECISIONS);
    const concurrency = expectInteger('options.concurrency', options.concurrency ?? 2, 1, 64);
    const workers = expectInteger('options.workers', options.workers ?? 1, 1, 64);
    const maxQueue = expectInteger('options.maxQueue', options.maxQueue ?? DEFAULT_MAX_QUEUE, 0, 1_000_000);
    const limits = {
      maxPixels: expectInteger('options.maxPixels', options.maxPixels ?? DEFAULT_LIMITS.maxPixels, 1, DECODER_MAX_PIXELS),
      maxComputePixels: expectInteger('options.maxComputePixels', options.maxComputePixels ?? DEFAULT_LIMITS.maxComputePixels, 1),
      maxBytes: expectInteger('options.maxBytes', options.maxBytes ?? DEFAULT_LIMITS.maxBytes, 1),
    };
    const timeoutMs = expectInteger('options.timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 0);
    const minCoverage = expectNumber('options.minCoverage', options.minCoverage ?? 0.001, 0, 1);
    if (options.names !== undefined && !Array.isArray(options.names)) throw invalid('options.names', 'an array of class names', options.names);
    if (options.classInfo !== undefined && typeof options.classInfo !== 'string' && (typeof options.classInfo !== 'object' || options.classInfo === null)) {
      throw invalid('options.classInfo', 'a ClassInfo {names, palette} or a class list file path', options.classInfo);
    }
    if (options.threads !== undefined) setNumThreads(expectInteger('options.threads', options.threads, 1, 1024));
    if (options.config === undefined || options.config === null) {
      throw invalid('options.config', 'a bundled config name, a YAML path or a config object', options.config);
    }
    const loaded =
      typeof options.config === 'string'
        ? await resolveConfigInput(options.config, options.overrides)
        : await resolveConfigInput(mergeConfig(defaultConfig(), expectObject('options.config', options.config) as PartialConfig), options.overrides);
    // The device and precision options win over the config's TEST.* (models are built from TEST.*).
    const cfg: SegtoolConfig = {
      ...loaded,
      TEST: { ...loaded.TEST, ...(device === undefined ? {} : { device }), ...(precision === undefined ? {} : { precision }) },
    };
    let files: string[];
    if (options.weights === undefined) files = resolveWeightFiles(cfg, cfg.TEST.checkpoint, 'TEST.checkpoint');
    else if (typeof options.weights === 'string') files = [expectString('options.weights', options.weights)];
    else if (Array.isArray(options.weights)) files = options.weights.map((w, i) => expectString(`options.weights[${i}]`, w));
    else throw invalid('options.weights', 'a weights file path or an array of them', options.weights);
    // Before any model is built: a bad class list fails at once.
    const numClass = cfg.DATASET.num_class;
    const resolved =
      options.classInfo === undefined
        ? await resolveClassInfo(cfg, files)
        : typeof options.classInfo === 'string'
          ? await readClassInfo(options.classInfo, numClass, { key: 'options.classInfo' })
          : checkClassInfo('options.classInfo', options.classInfo, numClass);
    const classes: ClassInfo = options.names ? { ...resolved, names: Object.freeze([...options.names]) } : resolved;
    const model = await createModelWithWeights(cfg, files, 'TEST', classes);
    const engine = new InferenceEngine({
      model,
      classes,
      imgMaxSize: cfg.DATASET.imgMaxSize,
      paddingConstant: cfg.DATASET.padding_constant,
      normalize: cfg.DATASET.normalization,
      resize: cfg.DATASET.resize,
      minCoverage,
      limits,
      concurrency,
      maxQueue,
      workers,
    });
    return new Segmenter(engine, cfg, timeoutMs);
  }

  /** The resolved config the model was built from. */
  get config(): SegtoolConfig {
    return this.#cfg;
  }

  get numClass(): number {
    return this.#cfg.DATASET.num_class;
  }

  /** Class names by index (see SegmenterOptions.classInfo; ADE20K's for 150-class models, class_N otherwise). */
  get classNames(): readonly string[] {
    return this.#engine.settings.classes.names;
  }

  /** The class names and colours `classes` and `png` use, and where they came from (`source`). */
  get classInfo(): ClassInfo {
    const { names, palette, source } = this.#engine.settings.classes;
    return { names, palette: palette.slice(), source };
  }

  get stats(): SegmenterStats {
    return this.#engine.stats;
  }

  get closed(): boolean {
    return this.#engine.closed;
  }

  /**
   * Segments one image. Rejects with ERR_BUSY when `concurrency + maxQueue` requests are
   * already in, ERR_BAD_IMAGE for bytes that are not a supported image, ERR_INVALID_ARG for an
   * image over maxPixels / maxBytes / maxComputePixels or a bad option, ERR_NOT_FOUND for a
   * missing file, ERR_ABORTED when `signal` fires or the time limit passes (the native work
   * stops between scales and rows), ERR_DISPOSED after close().
   */
  async segment<const O extends readonly SegmentOutput[] = readonly ['labels', 'summary']>(
    input: SegmenterInput,
    options: SegmentRequestOptions<O> = {},
  ): Promise<SegmentResultFor<O>> {
    if (this.#engine.closed) throw new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed');
    expectObject('options', options, true);
    const known = new Set(['scales', 'flip', 'outputs', 'signal', 'timeoutMs', 'mode', 'crop', 'stride']);
    for (const key of Object.keys(options)) {
      if (!known.has(key)) throw new SegtoolError('ERR_INVALID_ARG', `Unknown segment() option "${key}" (expected one of ${[...known].join(', ')})`);
    }
    const slide = resolveInferMode('options', options, this.#engine.settings.model.outputStride);
    if (slide && options.scales !== undefined) throw invalid('options.scales', "no scales with mode 'slide' (the image runs at its own size)", options.scales);
    const scales =
      options.scales === undefined ? [...this.#cfg.DATASET.imgSizes] : expectIntegerList('options.scales', options.scales, 1, 16384);
    if (scales.length === 0) throw invalid('options.scales', 'one or more short sides', options.scales);
    const flip = options.flip === undefined ? false : expectBoolean('options.flip', options.flip);
    const list = options.outputs ?? ['labels', 'summary'];
    if (!Array.isArray(list) || list.length === 0) throw invalid('options.outputs', `a non-empty array of ${SEGMENT_OUTPUTS.join(', ')}`, list);
    const outputs = new Set(list.map((o, i) => expectOneOf(`options.outputs[${i}]`, o, SEGMENT_OUTPUTS)));
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', signal);
    const timeoutMs = options.timeoutMs === undefined ? this.#timeoutMs : expectInteger('options.timeoutMs', options.timeoutMs, 0);
    const out = await this.#engine.run(input, { scales, flip, outputs, timeoutMs, ...(slide ? { slide } : {}), ...(signal ? { signal } : {}) });
    const result: Record<string, unknown> = { width: out.width, height: out.height, numClass: out.numClass, scales: out.scales, timings: out.timings };
    if (outputs.has('labels')) {
      result['labels'] = out.labels;
      result['confidence'] = out.confidence;
    }
    if (outputs.has('summary')) result['classes'] = out.classes;
    if (outputs.has('probabilities')) result['probabilities'] = out.probabilities;
    if (outputs.has('png')) result['png'] = out.png;
    return result as SegmentResultFor<O>;
  }

  /**
   * Stops taking requests (ERR_DISPOSED), rejects the waiting ones, lets the running ones finish,
   * then frees the model and the workers. Safe to call twice; always resolves.
   */
  close(): Promise<void> {
    return this.#engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
