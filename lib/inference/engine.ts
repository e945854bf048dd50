/**
 * The one inference engine: every path from an image to labels goes through its stages.
 *
 *   admit    header check (type, pixel limit, compute budget) and the queue bound, before any
 *            decoding: a corrupt, oversized or too costly image is answered at once
 *   prepare  in a data worker thread, with the evaluation loader's own code (decode; PIL-exact
 *            resize at each scale, or none in mode 'slide'; normalise: lib/data/pipeline.ts
 *            prepareImage / scaleInputs)
 *   infer    on the compute thread (the model's calls run one after another), cancellable
 *            between scales (crops) and output rows by the request's AbortSignal or time limit;
 *            mode 'whole' runs the image at every scale, mode 'slide' at its own size one crop
 *            at a time (SegmentationModel.predictSliding; the compute budget counts the crops)
 *   outputs  labels, confidence and probabilities as views of native memory, class coverage
 *            from native counts, the colour PNG coloured natively and encoded by sharp
 *
 * One model and a pipeline: up to `concurrency` requests are in the stages at once, so the next
 * images decode and resize in the workers while one infers. Model replicas would not run in
 * parallel (all native work of a process runs on one compute thread, and LibTorch already
 * spreads one image over every thread), so there are none.
 */
import type { ClassInfo } from '../classes.js';
import { checkImageFormat, loadSharp } from '../data/decode.js';
import { resolveDecodeOptions, type NormalizePreset, type ResolvedDecodeOptions } from '../data/options.js';
import type { PreparedImage, PrepareSource } from '../data/pipeline.js';
import { WorkerPool } from '../data/pool.js';
import type { ResizeFilter } from '../data/resize.js';
import { SegtoolError } from '../errors.js';
import { readFileBounded } from '../io/files.js';
import type { SegmentationModel, SlideTile, SlideWindow } from '../model.js';
import { expectInteger, invalid } from '../validate.js';
import { abortError, coverageFromCounts, encodePngOfColors, inferClasses, predictionViews, type ClassCoverage, type MultiScaleOutput } from './infer.js';

/** Raw pixels: interleaved, row-major, 8 bits per channel (gray, RGB or RGBA; alpha is dropped). */
export interface RawPixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA); default 3. */
  channels?: 1 | 3 | 4;
}

/** An image file path, the bytes of an encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF/HEIF), or raw pixels. */
export type EngineInput = string | Uint8Array | ArrayBuffer | RawPixels;

/** What a request can ask for. */
export type EngineOutput = 'labels' | 'summary' | 'png' | 'probabilities' | 'original';

/** sharp's own decoding limit (0x3FFF x 0x3FFF). */
export const DECODER_MAX_PIXELS = 0x3fff * 0x3fff;

export interface AdmissionLimits {
  /** Images with more pixels are refused from their header. */
  maxPixels: number;
  /** Pixels x scales (x 2 with flip) a request may cost; more is refused before decoding. */
  maxComputePixels: number;
  /** Encoded images (bytes or files) larger than this are refused. */
  maxBytes: number;
}

/** Defaults: a 12-megapixel photo at the reference's 5 scales fits; 7000 x 7000 does not (refused from its header). */
export const DEFAULT_LIMITS: Readonly<AdmissionLimits> = Object.freeze({
  maxPixels: 40_000_000,
  maxComputePixels: 100_000_000,
  maxBytes: 256 * 1024 * 1024,
});

/** An image that passed admission: where its pixels come from and its size (nothing decoded yet). */
export interface AdmittedImage {
  source: PrepareSource;
  width: number;
  height: number;
}

function megapixels(pixels: number): string {
  return `${Number((pixels / 1e6).toPrecision(3))} MP`;
}

function checkPixels(width: number, height: number, name: string, limits: AdmissionLimits): void {
  const pixels = width * height;
  if (pixels > limits.maxPixels) {
    throw new SegtoolError('ERR_INVALID_ARG', `${name} is too large: ${width} x ${height} = ${megapixels(pixels)}, more than maxPixels (${megapixels(limits.maxPixels)})`);
  }
}

/**
 * Refuses a request whose cost exceeds the compute budget: pixels x scales (x 2 with flip), or
 * with a sliding window the pixels of every crop it runs (x 2 with flip; overlaps count twice).
 */
export function checkComputeBudget(
  image: { width: number; height: number },
  plan: { scales: number; flip: boolean; tiles?: readonly SlideTile[] },
  name: string,
  limits: AdmissionLimits,
): void {
  const { scales, flip, tiles } = plan;
  const pixels = tiles ? tiles.reduce((sum, t) => sum + (t.y1 - t.y0) * (t.x1 - t.x0), 0) : image.width * image.height * scales;
  const cost = pixels * (flip ? 2 : 1);
  if (cost > limits.maxComputePixels) {
    const how = tiles ? `in ${tiles.length} crop(s)` : `at ${scales} scale(s)`;
    const fix = tiles ? 'use a larger stride, a smaller image' : 'use fewer scales, a smaller image';
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `${name} would cost ${megapixels(cost)} (${image.width} x ${image.height} ${how}${flip ? ', flipped too' : ''}), ` +
        `more than maxComputePixels (${megapixels(limits.maxComputePixels)}): ${fix}, or raise maxComputePixels`,
    );
  }
}

async function inspectEncoded(bytes: Uint8Array, name: string, limits: AdmissionLimits): Promise<AdmittedImage> {
  if (bytes.length === 0) throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: it is empty`);
  if (bytes.length > limits.maxBytes) {
    throw new SegtoolError('ERR_INVALID_ARG', `${name} is ${bytes.length} bytes, more than maxBytes (${limits.maxBytes})`);
  }
  const sharp = await loadSharp();
  let meta: { format?: string; width?: number; height?: number };
  try {
    // Header only; no pixel limit here so that huge images get their size in the message.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0]!;
    throw new SegtoolError(
      'ERR_BAD_IMAGE',
      `Cannot decode ${name}: ${/unsupported image format/i.test(reason) ? 'not a supported image (expected JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF)' : reason}`,
      { cause: error },
    );
  }
  checkImageFormat(meta.format, name); // raster types only: SVG, PDF, ... are refused from the header
  if (!meta.width || !meta.height) throw new SegtoolError('ERR_BAD_IMAGE', `Cannot decode ${name}: its header has no size`);
  checkPixels(meta.width, meta.height, name, limits);
  return { source: { kind: 'bytes', bytes, name }, width: meta.width, height: meta.height };
}

/**
 * The admit stage: reads a path, checks an encoded image's header (type and size) or raw
 * pixels; nothing is decoded. Errors: ERR_BAD_IMAGE (not a supported raster image),
 * ERR_INVALID_ARG (over maxPixels / maxBytes, a bad input), ERR_NOT_FOUND, ERR_BAD_FILE.
 */
export async function admitInput(input: EngineInput, limits: AdmissionLimits = DEFAULT_LIMITS, signal?: AbortSignal): Promise<AdmittedImage> {
  if (typeof input === 'string') {
    if (input.length === 0) throw invalid('input', 'an image path', input);
    // Regular files only (a FIFO or a device is refused, never read), up to maxBytes.
    const bytes = await readFileBounded(input, { what: 'image', maxBytes: limits.maxBytes, limitName: 'maxBytes', ...(signal ? { signal } : {}) });
    return inspectEncoded(bytes, input, limits);
  }
  if (input instanceof ArrayBuffer) return inspectEncoded(new Uint8Array(input), 'image bytes', limits);
  if (input instanceof Uint8Array) return inspectEncoded(input, 'image bytes', limits);
  if (input !== null && typeof input === 'object' && 'data' in input && 'width' in input) {
    const width = expectInteger('input.width', input.width, 1);
    const height = expectInteger('input.height', input.height, 1);
    const channels = input.channels === undefined ? 3 : input.channels;
    if (channels !== 1 && channels !== 3 && channels !== 4) throw invalid('input.channels', '1 (gray), 3 (RGB) or 4 (RGBA)', input.channels);
    const data = input.data;
    if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray) || data.length !== width * height * channels) {
      throw invalid('input.data', `a Uint8Array of ${width} x ${height} x ${channels} = ${width * height * channels} bytes`, data);
    }
    checkPixels(width, height, 'raw image', limits);
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length);
    return { source: { kind: 'raw', data: bytes, width, height, channels, name: 'raw image' }, width, height };
  }
  throw invalid('input', 'an image path, a Buffer/Uint8Array of an encoded image, or raw pixels {data, width, height, channels}', input);
}

/** Where images are prepared: data worker threads (requests spread over them). */
export class PreparePool {
  readonly #pool: WorkerPool;
  #next = 0;

  constructor(workers: number) {
    this.#pool = new WorkerPool(expectInteger('workers', workers, 1, 64), () => ({ kind: 'prepare' }));
  }

  /** The prepare stage: decode, resize to every scale, normalise, in a worker thread. */
  async prepare(
    image: AdmittedImage,
    settings: {
      scales: readonly number[];
      /** One input at the image's own size (not resized): sliding-window inference. */
      originalSize?: boolean;
      imgMaxSize: number;
      paddingConstant: number;
      normalize: NormalizePreset;
      resize?: ResizeFilter;
      keepOriginal?: boolean;
      decode?: ResolvedDecodeOptions;
    },
  ): Promise<PreparedImage> {
    const index = this.#next++ % this.#pool.size;
    const result = await this.#pool.request(index, {
      type: 'prepare',
      source: image.source,
      settings: {
        geometry: {
          imgSizes: [...settings.scales],
          imgMaxSize: settings.imgMaxSize,
          paddingConstant: settings.paddingConstant,
          ...(settings.originalSize ? { originalSize: true } : {}),
        },
        normalize: settings.normalize,
        ...(settings.resize ? { resize: settings.resize } : {}),
        decode: settings.decode ?? resolveDecodeOptions({ decoder: 'sharp' }),
        keepOriginal: settings.keepOriginal ?? false,
      },
    });
    if (!('prepared' in result)) throw new Error('prepare worker returned no image');
    return result.prepared;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

let sharedPool: PreparePool | undefined;

/** A process-wide pool of one worker for one-off calls (segment()); its idle worker keeps nothing alive. */
export function defaultPreparePool(): PreparePool {
  sharedPool ??= new PreparePool(1);
  return sharedPool;
}

export interface InferRequest {
  /** Short sides to average over (mode 'whole'). */
  scales: readonly number[];
  /** Mode 'slide': the image at its own size by this sliding window (scales do not apply). */
  slide?: SlideWindow;
  flip: boolean;
  outputs: ReadonlySet<EngineOutput>;
  signal?: AbortSignal;
  /** Stop the request after this many milliseconds (0: no limit). */
  timeoutMs: number;
}

export interface EngineSettings {
  model: SegmentationModel;
  classes: ClassInfo;
  imgMaxSize: number;
  paddingConstant: number;
  normalize: NormalizePreset;
  /** Image resize filter (DATASET.resize); default 'pil'. */
  resize?: ResizeFilter;
  minCoverage: number;
}

export interface EngineTimings {
  /** Waiting for a place in the pipeline. */
  queuedMs: number;
  /** Decoding, resizing and normalising (in a worker). */
  decodeMs: number;
  /** All scales, averaging and argmax. */
  inferenceMs: number;
  /** Colouring and PNG encoding. */
  encodeMs: number;
  totalMs: number;
}

export interface EngineResult {
  width: number;
  height: number;
  numClass: number;
  scales: number[];
  labels?: Int32Array;
  confidence?: Float32Array;
  classes?: ClassCoverage[];
  png?: Buffer;
  probabilities?: Float32Array;
  /** The decoded RGB image, with 'original'. */
  original?: { data: Uint8Array; width: number; height: number };
  timings: EngineTimings;
}

/**
 * Prepare (in `pool`), infer and outputs for one admitted image: what every client runs once
 * its request is admitted and has its place (`started`: when the request arrived, for timings).
 */
export async function runStages(
  settings: EngineSettings,
  pool: PreparePool,
  image: AdmittedImage,
  request: InferRequest,
  started = performance.now(),
  decode?: ResolvedDecodeOptions,
): Promise<EngineResult> {
  const { signal, outputs } = request;
  const decodeAt = performance.now();
  const { slide } = request;
  const prepared = await pool.prepare(image, {
    scales: request.scales,
    originalSize: slide !== undefined,
    imgMaxSize: settings.imgMaxSize,
    paddingConstant: settings.paddingConstant,
    normalize: settings.normalize,
    ...(settings.resize ? { resize: settings.resize } : {}),
    keepOriginal: outputs.has('original'),
    ...(decode ? { decode } : {}),
  });
  if (signal?.aborted) throw abortError(signal, 'after decoding');
  const inferAt = performance.now();
  const { model, classes } = settings;
  const prediction = await inferClasses(model, prepared.images, prepared.height, prepared.width, {
    flip: request.flip,
    ...(slide ? { mode: 'slide' as const, crop: slide.crop, stride: slide.stride } : {}),
    probabilities: outputs.has('probabilities'),
    counts: outputs.has('summary'),
    ...(outputs.has('png') ? { colors: classes } : {}),
    ...(signal ? { signal } : {}),
    timeoutMs: request.timeoutMs,
  });
  const encodeAt = performance.now();
  let png: Buffer | undefined;
  let views: MultiScaleOutput;
  try {
    if (prediction.colors) png = await encodePngOfColors(prediction.colors);
  } finally {
    views = predictionViews(prediction, model.numClass, prepared.height, prepared.width); // disposes the handles
  }
  const result: EngineResult = {
    width: prepared.width,
    height: prepared.height,
    numClass: model.numClass,
    scales: slide ? [Math.min(prepared.width, prepared.height)] : [...request.scales],
    timings: { queuedMs: decodeAt - started, decodeMs: inferAt - decodeAt, inferenceMs: encodeAt - inferAt, encodeMs: 0, totalMs: 0 },
  };
  if (outputs.has('labels')) {
    result.labels = views.labels;
    result.confidence = views.confidence;
  }
  if (outputs.has('summary')) result.classes = coverageFromCounts(views.counts!, classes.names, settings.minCoverage);
  if (views.probabilities) result.probabilities = views.probabilities;
  if (prepared.original) result.original = prepared.original;
  if (png) result.png = png;
  const end = performance.now();
  result.timings.encodeMs = end - encodeAt;
  result.timings.totalMs = end - started;
  return result;
}

export interface EngineOptions extends EngineSettings {
  /** What admission refuses from the header: pixels, bytes, compute budget. */
  limits: AdmissionLimits;
  /** Requests in the stages at once (preparing while another infers); default 2. */
  concurrency: number;
  /** Requests that may wait for a place; more are refused with ERR_BUSY. */
  maxQueue: number;
  /** Data worker threads preparing images; default 1. */
  workers: number;
}

export interface EngineStats {
  /** Requests in the stages now. */
  active: number;
  /** Requests waiting for a place. */
  queued: number;
  completed: number;
  failed: number;
  rejected: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** Admission, the bounded queue, the pipeline and the stats of a service's requests. */
export class InferenceEngine {
  readonly #settings: EngineOptions;
  readonly #pool: PreparePool;
  readonly #waiting: Waiter[] = [];
  #active = 0;
  #admitted = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #idleResolvers: Array<() => void> = [];
  readonly #stats = { completed: 0, failed: 0, rejected: 0 };

  constructor(options: EngineOptions) {
    this.#settings = options;
    this.#pool = new PreparePool(options.workers);
  }

  get settings(): Readonly<EngineSettings> {
    return this.#settings;
  }

  get stats(): EngineStats {
    return { active: this.#active, queued: this.#waiting.length, ...this.#stats };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** One request through every stage. */
  async run(input: EngineInput, request: InferRequest): Promise<EngineResult> {
    const started = performance.now();
    if (this.#closed) throw new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed');
    const { signal } = request;
    if (signal?.aborted) throw abortError(signal, 'before it started');
    const { concurrency, maxQueue } = this.#settings;
    if (this.#admitted >= concurrency + maxQueue) {
      this.#stats.rejected++;
      throw new SegtoolError(
        'ERR_BUSY',
        `The Segmenter's queue is full (${this.#active} running, ${this.#admitted - this.#active} waiting, maxQueue ${maxQueue}); try again later`,
      );
    }
    this.#admitted++;
    let placed = false;
    try {
      const image = await admitInput(input, this.#settings.limits, signal);
      const tiles = request.slide && this.#settings.model.slideTiles(image.height, image.width, request.slide);
      checkComputeBudget(
        image,
        { scales: request.scales.length, flip: request.flip, ...(tiles ? { tiles } : {}) },
        typeof input === 'string' ? input : 'the image',
        this.#settings.limits,
      );
      if (this.#closed) throw new SegtoolError('ERR_DISPOSED', 'The Segmenter was closed');
      await this.#place(signal);
      placed = true;
      const result = await runStages(this.#settings, this.#pool, image, request, started);
      if (signal?.aborted) throw abortError(signal, 'after inference');
      this.#stats.completed++;
      return result;
    } catch (error) {
      this.#stats.failed++;
      throw error;
    } finally {
      if (placed) this.#leave();
      this.#admitted--;
      if (this.#admitted === 0) for (const resolve of this.#idleResolvers.splice(0)) resolve();
    }
  }

  #place(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal, 'while queued'));
    if (this.#active < this.#settings.concurrency) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
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

  #leave(): void {
    const next = this.#waiting.shift();
    if (next) {
      next.signal?.removeEventListener('abort', next.onAbort);
      next.resolve(); // the place passes on: #active stays
    } else {
      this.#active--;
    }
  }

  /**
   * Stops taking requests (ERR_DISPOSED), rejects the waiting ones, lets the running ones finish,
   * then stops the workers and disposes the model. Safe to call twice; always resolves.
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
      await this.#pool.close();
      this.#settings.model.dispose();
    })();
    return this.#closing;
  }
}
