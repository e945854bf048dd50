/**
 * Segmenter: what a Node service embeds. One object holds a model (or `concurrency` replicas of
 * it) loaded from a config and weights, takes images as paths, encoded bytes or raw pixels, and
 * answers `segment()` calls through a bounded queue:
 *
 * - at most `concurrency` requests decode + infer at once (each on its own model replica; calls
 *   on one SegmentationModel run one after another), at most `maxQueue` more wait; beyond that
 *   `segment()` rejects at once with ERR_BUSY (a service answers 503);
 * - an AbortSignal removes a waiting request (ERR_ABORTED) and is checked again after decoding
 *   and after inference;
 * - image headers are checked before a request queues: corrupt bytes and unsupported types are
 *   ERR_BAD_IMAGE, images over `maxPixels` ERR_INVALID_ARG (413 in a service), without decoding.
 *
 * Batching concurrent requests into one forward pass is deliberately not done: on CPU LibTorch
 * already spreads one image over every thread, and a batch needs equal input sizes (images of
 * other aspect ratios would have to be padded, changing the result). Measured with
 * mobilenetv2dilated + c1, 4 images of 256 x 256 as one batch against one by one: 0.96x at 1
 * thread, 0.87x at 2 (no gain); only tiny 64 x 64 inputs gained (1.2x-3.5x), where per-operation
 * overhead dominates (README, "Use it from Node").
 */
import { loadSharp, readBytes, decodeImage, type RgbImage } from './data/decode.js';
import { resolveDecodeOptions } from './data/options.js';
import { defaultConfig, mergeConfig, type ConfigOverrides, type PartialConfig, type SegtoolConfig } from './config/index.js';
import { checkClassInfo, readClassInfo, type ClassInfo, type ClassInfoInput } from './classes.js';
import { checkDevice, type DeviceName } from './device.js';
import { SegtoolError } from './errors.js';
import type { ClassCoverage } from './eval/visualize.js';
import { createModelWithWeights, resolveClassInfo, resolveWeightFiles } from './eval/weights.js';
import type { SegmentationModel } from './model.js';
import { segment, type SegmentOptions } from './segment.js';
import { setNumThreads } from './tensor.js';
import { resolveConfigInput } from './train/common.js';
import { expectBoolean, expectInteger, expectIntegerList, expectNumber, expectObject, expectOneOf, expectString, invalid } from './validate.js';

/** Raw pixels: interleaved, row-major, 8 bits per channel (gray, RGB or RGBA; alpha is dropped). */
export interface RawPixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA); default 3. */
  channels?: 1 | 3 | 4;
}

/** An image file path, the bytes of an encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF/HEIF), or raw pixels. */
export type SegmenterInput = string | Uint8Array | ArrayBuffer | RawPixels;

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
  /** LibTorch threads. Process-wide: it applies to every model in the process. Default: unchanged (SEGTOOL_THREADS, OMP_NUM_THREADS or all cores). */
  threads?: number;
  /**
   * Requests decoded and inferred at once, each on its own model replica (memory x concurrency);
   * default 1, which suits the CPU (LibTorch spreads one image over `threads`). Replicas and
   * sharp share libuv's thread pool: above 2, raise UV_THREADPOOL_SIZE (default 4) to match.
   */
  concurrency?: number;
  /** Requests that may wait for a free replica; more are rejected with ERR_BUSY. Default 64. */
  maxQueue?: number;
  /** Images with more pixels are rejected (ERR_INVALID_ARG) from their header, before decoding; default 50 megapixels, at most 268 (the decoder's limit). */
  maxPixels?: number;
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

export interface SegmentRequestOptions<O extends readonly SegmentOutput[] = readonly SegmentOutput[]> {
  /** Short sides to average over; default the config's DATASET.imgSizes. */
  scales?: number | readonly number[];
  /** Also average the horizontally flipped image's probabilities. */
  flip?: boolean;
  /** What to return; default ['labels', 'summary']. */
  outputs?: O;
  /** Aborts the request: removed from the queue if waiting, checked after decoding and after inference. */
  signal?: AbortSignal;
}

/** A class found in the image. */
export type ClassSummary = ClassCoverage;

export interface SegmentTimings {
  /** Waiting for a free model replica. */
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

export interface SegmenterStats {
  /** Requests decoding or inferring now. */
  active: number;
  /** Requests waiting for a replica. */
  queued: number;
  completed: number;
  failed: number;
  rejected: number;
}

const DEFAULT_MAX_PIXELS = 50_000_000;
/** sharp's own decoding limit (0x3FFF x 0x3FFF). */
const DECODER_MAX_PIXELS = 0x3fff * 0x3fff;
const DEFAULT_MAX_QUEUE = 64;
const SUPPORTED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif'];

interface Waiter {
  resolve: (model: SegmentationModel) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

interface Settings {
  cfg: SegtoolConfig;
  maxQueue: number;
  maxPixels: number;
  minCoverage: number;
  classes: ClassInfo;
  /** The palette as opaque RGBA words in this machine's byte order: one store per pixel. */
  paletteWords: Uint32Array;
}

function abortError(signal: AbortSignal, stage: string): SegtoolError {
  const reason = signal.reason instanceof Error ? `: ${signal.reason.message}` : signal.reason === undefined ? '' : `: ${String(signal.reason)}`;
  return new SegtoolError('ERR_ABORTED', `The segmentation was aborted ${stage}${reason}`, { cause: signal.reason });
}

function megapixels(pixels: number): string {
  return `${Number((pixels / 1e6).toPrecision(3))} MP`;
}

/** RGB pixels from raw gray / RGB / RGBA, checked. */
function rawToRgb(input: RawPixels): RgbImage {
  const width = expectInteger('input.width', input.width, 1);
  const height = expectInteger('input.height', input.height, 1);
  const c = input.channels === undefined ? 3 : input.channels;
  if (c !== 1 && c !== 3 && c !== 4) throw invalid('input.channels', '1 (gray), 3 (RGB) or 4 (RGBA)', input.channels);
  if (!(input.data instanceof Uint8Array || input.data instanceof Uint8ClampedArray) || input.data.length !== width * height * c) {
    throw invalid('input.data', `a Uint8Array of ${width} x ${height} x ${c} = ${width * height * c} bytes`, input.data);
  }
  const src = input.data;
  if (c === 3) return { data: src instanceof Uint8Array ? src : new Uint8Array(src.buffer, src.byteOffset, src.length), width, height };
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

/** An RGB palette as opaque RGBA words in this machine's byte order. */
function paletteToWords(rgb: Uint8Array): Uint32Array {
  const words = new Uint32Array(rgb.length / 3);
  const bytes = new Uint8Array(words.buffer); // byte order of the machine, whatever it is
  for (let c = 0; c < words.length; c++) bytes.set([rgb[3 * c]!, rgb[3 * c + 1]!, rgb[3 * c + 2]!, 255], 4 * c);
  return words;
}

/**
 * The label map in a palette (paletteToWords) as an RGB PNG (what `colorize` + `encodePng` give,
 * classes without a colour black). Only the colouring runs on this thread (0.15-0.2 s for 12
 * megapixels on a busy 2-core machine, where colorize + encodePng took ~0.6 s); the PNG encoding
 * runs in sharp's thread pool.
 */
async function encodeColorPng(labels: Int32Array, width: number, height: number, words: Uint32Array): Promise<Buffer> {
  const black = new Uint32Array(new Uint8Array([0, 0, 0, 255]).buffer)[0]!;
  const rgba = new Uint32Array(width * height);
  for (let i = 0; i < rgba.length; i++) rgba[i] = words[labels[i]!] ?? black;
  const sharp = await loadSharp();
  return sharp(new Uint8Array(rgba.buffer), { raw: { width, height, channels: 4 } })
    .removeAlpha()
    .png()
    .toBuffer();
}

type PreparedInput = { kind: 'raw'; image: RgbImage; name: string } | { kind: 'encoded'; bytes: Uint8Array; name: string; width: number; height: number };

export class Segmenter {
  readonly #models: SegmentationModel[];
  readonly #free: SegmentationModel[];
  readonly #waiting: Waiter[] = [];
  readonly #settings: Settings;
  #admitted = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #idleResolvers: Array<() => void> = [];
  readonly #stats = { completed: 0, failed: 0, rejected: 0 };

  private constructor(models: SegmentationModel[], settings: Settings) {
    this.#models = models;
    this.#free = [...models];
    this.#settings = settings;
  }

  /** Builds the model(s) off the main thread and loads the weights. */
  static async load(options: SegmenterOptions): Promise<Segmenter> {
    expectObject('options', options);
    const known = new Set(['config', 'overrides', 'weights', 'device', 'threads', 'concurrency', 'maxQueue', 'maxPixels', 'minCoverage', 'classInfo', 'names']);
    for (const key of Object.keys(options)) {
      if (!known.has(key)) throw new SegtoolError('ERR_INVALID_ARG', `Unknown Segmenter option "${key}" (expected one of ${[...known].join(', ')})`);
    }
    const device = options.device === undefined ? undefined : checkDevice('options.device', options.device);
    const concurrency = expectInteger('options.concurrency', options.concurrency ?? 1, 1, 64);
    const maxQueue = expectInteger('options.maxQueue', options.maxQueue ?? DEFAULT_MAX_QUEUE, 0, 1_000_000);
    const maxPixels = expectInteger('options.maxPixels', options.maxPixels ?? DEFAULT_MAX_PIXELS, 1, DECODER_MAX_PIXELS);
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
    // The device option wins over the config's TEST.device (models are built from TEST.*).
    const cfg: SegtoolConfig = device === undefined ? loaded : { ...loaded, TEST: { ...loaded.TEST, device } };
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
    const models: SegmentationModel[] = [];
    try {
      for (let i = 0; i < concurrency; i++) models.push(await createModelWithWeights(cfg, files, 'TEST', classes));
    } catch (error) {
      for (const model of models) model.dispose();
      throw error;
    }
    return new Segmenter(models, { cfg, maxQueue, maxPixels, minCoverage, classes, paletteWords: paletteToWords(classes.palette) });
  }

  /** The resolved config the model was built from. */
  get config(): SegtoolConfig {
    return this.#settings.cfg;
  }

  get numClass(): number {
    return this.#settings.cfg.DATASET.num_class;
  }

  /** Class names by index (see SegmenterOptions.classInfo; ADE20K's for 150-class models, class_N otherwise). */
  get classNames(): readonly string[] {
    return this.#settings.classes.names;
  }

  /** The class names and colours `classes` and `png` use, and where they came from (`source`). */
  get classInfo(): ClassInfo {
    const { names, palette, source } = this.#settings.classes;
    return { names, palette: palette.slice(), source };
  }

  get stats(): SegmenterStats {
    return { active: this.#models.length - this.#free.length, queued: this.#waiting.length, ...this.#stats };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Segments one image. Rejects with ERR_BUSY when `concurrency + maxQueue` requests are
   * already in, ERR_BAD_IMAGE for bytes that are not a supported image, ERR_INVALID_ARG for an
   * image over maxPixels or a bad option, ERR_NOT_FOUND for a missing file, ERR_ABORTED when
   * `signal` fires, ERR_DISPOSED after close().
   */
  async segment<const O extends readonly SegmentOutput[] = readonly ['labels', 'summary']>(
    input: SegmenterInput,
    options: SegmentRequestOptions<O> = {},
  ): Promise<SegmentResultFor<O>> {
    const start = performance.now();
    if (this.#closed) throw new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed');
    expectObject('options', options, true);
    const request = this.#resolveRequest(options);
    const { signal } = request;
    if (signal?.aborted) throw abortError(signal, 'before it started');
    const limit = this.#models.length + this.#settings.maxQueue;
    if (this.#admitted >= limit) {
      this.#stats.rejected++;
      throw new SegtoolError(
        'ERR_BUSY',
        `The Segmenter's queue is full (${this.#models.length} running, ${this.#waiting.length} waiting, maxQueue ${this.#settings.maxQueue}); try again later`,
      );
    }
    this.#admitted++;
    let model: SegmentationModel | undefined;
    try {
      const prepared = await this.#prepare(input);
      if (this.#closed) throw new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed');
      const queuedAt = performance.now();
      model = await this.#acquire(signal);
      const decodeAt = performance.now();
      const image =
        prepared.kind === 'raw' ? prepared.image : await decodeImage(prepared.bytes, prepared.name, resolveDecodeOptions({ decoder: 'sharp' }));
      if (signal?.aborted) throw abortError(signal, 'after decoding');
      const inferAt = performance.now();
      const segmentOptions: SegmentOptions = {
        imgSizes: request.scales,
        imgMaxSize: this.#settings.cfg.DATASET.imgMaxSize,
        paddingConstant: this.#settings.cfg.DATASET.padding_constant,
        normalize: this.#settings.cfg.DATASET.normalization,
        probabilities: request.outputs.has('probabilities'),
        minCoverage: this.#settings.minCoverage,
        names: this.#settings.classes.names,
        ...(request.flip ? { flip: true } : {}),
      };
      const out = await segment(model, image, segmentOptions);
      this.#release(model);
      model = undefined;
      if (signal?.aborted) throw abortError(signal, 'after inference');
      const encodeAt = performance.now();
      const result: Record<string, unknown> = {
        width: out.width,
        height: out.height,
        numClass: out.numClass,
        scales: request.scales,
      };
      if (request.outputs.has('labels')) {
        result['labels'] = out.labels;
        result['confidence'] = out.confidence;
      }
      if (request.outputs.has('summary')) result['classes'] = out.classes;
      if (request.outputs.has('probabilities')) result['probabilities'] = out.probabilities;
      if (request.outputs.has('png')) result['png'] = await encodeColorPng(out.labels, out.width, out.height, this.#settings.paletteWords);
      const end = performance.now();
      result['timings'] = {
        queuedMs: decodeAt - queuedAt,
        decodeMs: inferAt - decodeAt,
        inferenceMs: encodeAt - inferAt,
        encodeMs: end - encodeAt,
        totalMs: end - start,
      } satisfies SegmentTimings;
      this.#stats.completed++;
      return result as SegmentResultFor<O>;
    } catch (error) {
      this.#stats.failed++;
      throw error;
    } finally {
      if (model) this.#release(model);
      this.#admitted--;
      if (this.#admitted === 0) for (const resolve of this.#idleResolvers.splice(0)) resolve();
    }
  }

  #resolveRequest(options: SegmentRequestOptions<readonly SegmentOutput[]>) {
    const scales =
      options.scales === undefined ? [...this.#settings.cfg.DATASET.imgSizes] : expectIntegerList('options.scales', options.scales, 1, 16384);
    if (scales.length === 0) throw invalid('options.scales', 'one or more short sides', options.scales);
    const flip = options.flip === undefined ? false : expectBoolean('options.flip', options.flip);
    const list = options.outputs ?? ['labels', 'summary'];
    if (!Array.isArray(list) || list.length === 0) throw invalid('options.outputs', `a non-empty array of ${SEGMENT_OUTPUTS.join(', ')}`, list);
    const outputs = new Set(list.map((o, i) => expectOneOf(`options.outputs[${i}]`, o, SEGMENT_OUTPUTS)));
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', signal);
    return { scales, flip, outputs, signal };
  }

  /** Reads a path, checks an encoded image's header (type and size) or raw pixels; nothing is decoded. */
  async #prepare(input: SegmenterInput): Promise<PreparedInput> {
    if (typeof input === 'string') {
      const path = expectString('input', input);
      return this.#inspect(await readBytes(path, 'image'), path);
    }
    if (input instanceof ArrayBuffer) return this.#inspect(new Uint8Array(input), 'image bytes');
    if (input instanceof Uint8Array) return this.#inspect(input, 'image bytes');
    if (input !== null && typeof input === 'object' && 'data' in input && 'width' in input) {
      const image = rawToRgb(input);
      this.#checkPixels(image.width, image.height, 'raw image');
      return { kind: 'raw', image, name: 'raw image' };
    }
    throw invalid('input', 'an image path, a Buffer/Uint8Array of an encoded image, or raw pixels {data, width, height, channels}', input);
  }

  #checkPixels(width: number, height: number, name: string): void {
    const pixels = width * height;
    if (pixels > this.#settings.maxPixels) {
      throw new SegtoolError(
        'ERR_INVALID_ARG',
        `${name} is too large: ${width} x ${height} = ${megapixels(pixels)}, more than maxPixels (${megapixels(this.#settings.maxPixels)})`,
      );
    }
  }

  async #inspect(bytes: Uint8Array, name: string): Promise<PreparedInput> {
    if (bytes.length === 0) throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: it is empty`);
    const sharp = await loadSharp();
    let meta: { format?: string; width?: number; height?: number };
    try {
      // Header only; no pixel limit here so that huge images get their size in the message.
      meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    } catch (error) {
      const reason = (error as Error).message.split('\n')[0]!;
      throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: ${/unsupported image format/i.test(reason) ? 'not a supported image (expected JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF)' : reason}`, {
        cause: error,
      });
    }
    const format = meta.format ?? 'unknown';
    if (!SUPPORTED_FORMATS.includes(format)) {
      throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: ${format.toUpperCase()} is not a supported image type (expected JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF)`);
    }
    if (!meta.width || !meta.height) throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: its header has no size`);
    this.#checkPixels(meta.width, meta.height, name);
    return { kind: 'encoded', bytes, name, width: meta.width, height: meta.height };
  }

  #acquire(signal: AbortSignal | undefined): Promise<SegmentationModel> {
    if (signal?.aborted) return Promise.reject(abortError(signal, 'while queued'));
    const free = this.#free.pop();
    if (free) return Promise.resolve(free);
    return new Promise<SegmentationModel>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.#waiting.indexOf(waiter);
          if (index >= 0) this.#waiting.splice(index, 1);
          reject(abortError(signal!, 'while queued'));
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(model: SegmentationModel): void {
    const next = this.#waiting.shift();
    if (next) {
      next.signal?.removeEventListener('abort', next.onAbort);
      next.resolve(model);
    } else {
      this.#free.push(model);
    }
  }

  /**
   * Stops taking requests (ERR_DISPOSED), rejects the waiting ones, lets the running ones finish,
   * then disposes the model(s). Safe to call twice.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) {
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.reject(new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed while the request was queued'));
    }
    this.#closing = (async () => {
      if (this.#admitted > 0) await new Promise<void>((resolve) => this.#idleResolvers.push(resolve));
      for (const model of this.#models) model.dispose();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
