/**
 * Loaders: async iterators over training batches and evaluation samples, fed by a worker pool
 * with a prefetch queue.
 *
 * Training follows the reference's design: every worker owns a full copy of the list and its own
 * random stream, seeded from (seed, rank, worker), and the loader takes batches from the workers
 * in turn (batch k comes from worker k mod workers). A run is reproducible for a given seed,
 * rank and worker count, and no two workers (or ranks) yield the same stream. workers: 0 and
 * workers: 1 give the same batches.
 */
import { SegtoolError } from '../errors.js';
import { expectInteger, expectObject, expectOneOf, invalid } from '../validate.js';
import { loadSharp } from './decode.js';
import type { WorkerResult } from './handler.js';
import type { SampleRecord } from './list.js';
import {
  BAD_SAMPLE_POLICIES,
  DEFAULTS,
  LABEL_PADDINGS,
  resolveDecodeOptions,
  resolveFlipProbability,
  resolveNormalize,
  resolveNumClass,
  resolveOptionalBoolean,
  resolveResize,
  resolveTrainGeometry,
  resolveValGeometry,
  type BadSamplePolicy,
  type DecodeOptions,
  type LabelPadding,
  type NormalizePreset,
  type TrainGeometryOptions,
  type ValGeometryOptions,
} from './options.js';
import type { BadSample, EvalSample, EvalSettings, TrainBatch, TrainSettings } from './pipeline.js';
import { WorkerPool } from './pool.js';
import type { ResizeFilter } from './resize.js';

interface PoolOptions {
  /** Worker threads (TRAIN.workers); 0 = load in this thread. Default 2. */
  workers?: number;
  /** Requests kept in flight per worker. Default 2. */
  prefetch?: number;
  /** 'error' (default): a bad sample rejects; 'skip': it is left out and listed in `badSamples`. */
  onBadSample?: BadSamplePolicy;
}

interface CommonLoaderOptions extends PoolOptions, DecodeOptions {
  /** The samples (readOdgt, listFolder or your own). */
  records: readonly SampleRecord[];
  /** Number of classes (DATASET.num_class); annotation values must be 0..numClass. Default 150. */
  numClass?: number;
  /** Normalisation preset: 'imagenet' (default) or 'legacy-bgr' for the first released weights. */
  normalize?: NormalizePreset;
  /** Image resize filter: 'pil' (default, Pillow's antialiased bilinear) or 'opencv' (the 2018 seed's cv2.resize). */
  resize?: ResizeFilter;
}

export interface TrainLoaderOptions extends CommonLoaderOptions, TrainGeometryOptions {
  /** Horizontal flip: a probability, or DATASET.random_flip's boolean (true = 0.5). Default 0.5. */
  randomFlip?: boolean | number;
  /** Label canvas padding: 'ignore' (-1, default) or 'reference' (class 0, as the reference did). */
  labelPadding?: LabelPadding;
  /** TRAIN.seed; default 304. */
  seed?: number;
  /** This process's rank in distributed training; default 0. */
  rank?: number;
  /** Shuffle the list (at start and at each wrap); default true. */
  shuffle?: boolean;
}

export interface EvalLoaderOptions extends CommonLoaderOptions, ValGeometryOptions {
  /** Load annotations; default: when every record has one. */
  labels?: boolean;
  /** Also return the decoded RGB image of each sample. Default false. */
  keepOriginal?: boolean;
}

function checkRecords(value: unknown, needs: { annotation: boolean; size: boolean }): SampleRecord[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid('records', 'a non-empty array of sample records', value);
  return value.map((item: unknown, i) => {
    const r = expectObject(`records[${i}]`, item) as unknown as SampleRecord;
    const where = r.source ? `records[${i}] (${r.source})` : `records[${i}]`;
    const code = r.source ? 'ERR_BAD_FILE' : 'ERR_INVALID_ARG';
    if (typeof r.image !== 'string' || r.image === '') throw new SegtoolError(code, `${where} has no image path`);
    if (needs.annotation && (typeof r.annotation !== 'string' || r.annotation === '')) {
      throw new SegtoolError(code, `${where} has no annotation (fpath_segm), which training needs`);
    }
    if (needs.size) {
      for (const key of ['width', 'height'] as const) {
        const v = r[key];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
          throw new SegtoolError(
            code,
            `${where} has no valid ${key} (training buckets batches by size): add width/height to the list or call readImageSizes(records)`,
          );
        }
      }
    }
    // Only plain data crosses to the workers.
    const copy: SampleRecord = { image: r.image };
    if (r.annotation !== undefined) copy.annotation = r.annotation;
    if (r.width !== undefined) copy.width = r.width;
    if (r.height !== undefined) copy.height = r.height;
    if (r.source !== undefined) copy.source = r.source;
    return copy;
  });
}

function resolvePool(options: PoolOptions): Required<PoolOptions> {
  return {
    workers: expectInteger('workers', options.workers ?? DEFAULTS.workers, 0, 64),
    prefetch: expectInteger('prefetch', options.prefetch ?? DEFAULTS.prefetch, 1, 64),
    onBadSample: expectOneOf('onBadSample', options.onBadSample ?? 'error', BAD_SAMPLE_POLICIES),
  };
}

/** What both loaders share: the worker pool, bad-sample reports, closing and iteration. */
abstract class PooledLoader<T> implements AsyncIterableIterator<T>, AsyncDisposable {
  /** Samples found bad so far (onBadSample 'skip'), each with the reason. */
  readonly badSamples: BadSample[] = [];
  protected closed = false;

  constructor(protected readonly pool: WorkerPool) {}

  /** Worker threads in use (0 = in-process). */
  get workers(): number {
    return this.pool.threads;
  }

  abstract next(): Promise<IteratorResult<T>>;

  async return(): Promise<IteratorResult<T>> {
    await this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Stops the workers; work in flight is dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export class TrainLoader extends PooledLoader<TrainBatch> {
  private readonly prefetch: number;
  private readonly queues: Array<Array<Promise<WorkerResult>>>;
  private turn = 0;

  /** @internal use createTrainLoader */
  constructor(pool: WorkerPool, prefetch: number) {
    super(pool);
    this.prefetch = prefetch;
    this.queues = Array.from({ length: pool.size }, () => []);
    for (let w = 0; w < pool.size; w++) this.refill(w);
  }

  private refill(w: number): void {
    const queue = this.queues[w]!;
    while (queue.length < this.prefetch) {
      const p = this.pool.request(w, { type: 'train' });
      p.catch(() => {}); // surfaced when its turn comes
      queue.push(p);
    }
  }

  async next(): Promise<IteratorResult<TrainBatch>> {
    if (this.closed) return { done: true, value: undefined };
    const w = this.turn % this.queues.length;
    this.turn += 1;
    const p = this.queues[w]!.shift()!;
    this.refill(w);
    const batch = (await p) as TrainBatch;
    this.badSamples.push(...batch.skipped);
    return { done: false, value: batch };
  }


}

/**
 * An endless iterator of training batches (the reference's loader was endless too: an epoch is
 * TRAIN.epoch_iters batches). Close it when done (or use `await using`).
 */
export async function createTrainLoader(options: TrainLoaderOptions): Promise<TrainLoader> {
  expectObject('options', options);
  const geometry = resolveTrainGeometry(options);
  const records = checkRecords(options.records, { annotation: true, size: true });
  const pool = resolvePool(options);
  const settings: TrainSettings = {
    geometry,
    numClass: resolveNumClass(options.numClass),
    normalize: resolveNormalize(options.normalize),
    resize: resolveResize(options.resize),
    decode: resolveDecodeOptions(options),
    onBadSample: pool.onBadSample,
    labelPadding: expectOneOf('labelPadding', options.labelPadding ?? 'ignore', LABEL_PADDINGS),
  };
  const flipProbability = resolveFlipProbability(options.randomFlip);
  const seed = expectInteger('seed', options.seed ?? DEFAULTS.seed, 0, Number.MAX_SAFE_INTEGER);
  const rank = expectInteger('rank', options.rank ?? 0, 0, 0xffffffff);
  const shuffle = resolveOptionalBoolean('shuffle', options.shuffle, true);
  if (settings.decode.decoder === 'sharp') await loadSharp(); // before any worker loads it (see loadSharp)
  const workerPool = new WorkerPool(pool.workers, (worker) => ({
    kind: 'train',
    records,
    settings,
    flipProbability,
    shuffle,
    seed,
    rank,
    worker,
  }));
  return new TrainLoader(workerPool, pool.prefetch);
}

export class EvalLoader extends PooledLoader<EvalSample> {
  /** Number of records (yielded samples may be fewer when bad ones are skipped). */
  readonly length: number;
  private readonly window: number;
  private readonly inFlight: Array<Promise<WorkerResult>> = [];
  private requested = 0;

  /** @internal use createEvalLoader */
  constructor(pool: WorkerPool, length: number, prefetch: number) {
    super(pool);
    this.length = length;
    this.window = Math.max(1, pool.size) * prefetch;
    this.refill();
  }

  private refill(): void {
    while (this.inFlight.length < this.window && this.requested < this.length) {
      const index = this.requested++;
      const p = this.pool.request(index % this.pool.size, { type: 'eval', index });
      p.catch(() => {});
      this.inFlight.push(p);
    }
  }

  async next(): Promise<IteratorResult<EvalSample>> {
    while (!this.closed && this.inFlight.length > 0) {
      const p = this.inFlight.shift()!;
      this.refill();
      const result = (await p) as { sample: EvalSample } | { bad: BadSample };
      if ('bad' in result) {
        this.badSamples.push(result.bad);
        continue;
      }
      return { done: false, value: result.sample };
    }
    await this.close();
    return { done: true, value: undefined };
  }


}

/**
 * Validation/test samples in list order: each image at every imgSizes scale (the reference's
 * multi-scale inputs) and, when annotated, its label at the original size.
 */
export async function createEvalLoader(options: EvalLoaderOptions): Promise<EvalLoader> {
  expectObject('options', options);
  const geometry = resolveValGeometry(options);
  const probe = checkRecords(options.records, { annotation: false, size: false });
  const allAnnotated = probe.every((r) => r.annotation !== undefined);
  const labels = resolveOptionalBoolean('labels', options.labels, allAnnotated);
  const records = labels ? checkRecords(options.records, { annotation: true, size: false }) : probe;
  const pool = resolvePool(options);
  const settings: EvalSettings = {
    geometry,
    numClass: resolveNumClass(options.numClass),
    normalize: resolveNormalize(options.normalize),
    resize: resolveResize(options.resize),
    decode: resolveDecodeOptions(options),
    onBadSample: pool.onBadSample,
    labels,
    keepOriginal: resolveOptionalBoolean('keepOriginal', options.keepOriginal, false),
  };
  if (settings.decode.decoder === 'sharp') await loadSharp();
  const workers = Math.min(pool.workers, records.length);
  const workerPool = new WorkerPool(workers, () => ({ kind: 'eval', records, settings }));
  return new EvalLoader(workerPool, records.length, pool.prefetch);
}
