/**
 * Distributed evaluation (the reference's eval_multipro): each rank scores a contiguous shard
 * of the validation list, then one all-reduce of float64 sums gives every rank the metrics of
 * the whole list — equal to a single process scoring the list in order, to the last bit:
 * intersections, unions, confusion matrices and pixel counts are integer sums (exact in any
 * order below 2^53), and
 * the dataset accuracy's float sum is redone in list order from per-image terms.
 */
import { SegtoolError } from '../errors.js';
import { imageAccuracy, MetricsAccumulator, type ClassIndexArray, type ImageCounts, type ImageCountsInput, type PixelAccuracy } from '../eval/metrics.js';
import { expectInteger } from '../validate.js';
import type { Communicator } from './communicator.js';

/** The contiguous part [start, end) of a list of `total` items that `rank` evaluates (sizes differ by at most one). */
export function shardRange(total: number, rank: number, worldSize: number): { start: number; end: number } {
  expectInteger('total', total, 0);
  expectInteger('worldSize', worldSize, 1);
  expectInteger('rank', rank, 0, worldSize - 1);
  return { start: Math.floor((rank * total) / worldSize), end: Math.floor(((rank + 1) * total) / worldSize) };
}

/**
 * One rank's share of a dataset's metrics, keyed by each image's index in the whole list, and
 * merged over ranks by `reduce`.
 */
export class ShardedMetrics {
  /** This rank's images only (for progress output). */
  readonly local: MetricsAccumulator;
  readonly listLength: number;
  /** accuracy x labeled pixels of each image, at its list index (0 where not scored here). */
  private readonly accuracyTerms: Float64Array;
  private readonly scored: Uint8Array;

  constructor(numClass: number, listLength: number) {
    this.local = new MetricsAccumulator(numClass);
    this.listLength = expectInteger('listLength', listLength, 0);
    this.accuracyTerms = new Float64Array(listLength);
    this.scored = new Uint8Array(listLength);
  }

  /** Scores the image at `index` of the whole list and adds it. */
  add(index: number, pred: ClassIndexArray, label: ClassIndexArray): ImageCounts {
    this.checkIndex(index);
    const image = this.local.add(pred, label);
    this.record(index, image);
    return image;
  }

  /** Adds counts computed elsewhere (e.g. in a worker) for the image at `index`. */
  addImage(index: number, image: ImageCountsInput): void {
    this.checkIndex(index);
    this.local.addImage(image);
    this.record(index, image);
  }

  /**
   * The whole list's metrics, the same on every rank. Every rank calls it (a collective);
   * null = a single process (the local metrics, recomputed the same way).
   */
  async reduce(communicator: Communicator | null): Promise<MetricsAccumulator> {
    const n = this.local.numClass;
    // [intersection (n), union (n), images, correct, labeled, confusion images, confusion (n x n),
    //  accuracy term per list index]
    const terms = 2 * n + 4 + n * n;
    const sums = new Float64Array(terms + this.listLength);
    sums.set(this.local.intersection, 0);
    sums.set(this.local.union, n);
    sums[2 * n] = this.local.images;
    sums[2 * n + 1] = this.local.correct;
    sums[2 * n + 2] = this.local.labeled;
    sums[2 * n + 3] = this.local.confusionImages;
    sums.set(this.local.confusion, 2 * n + 4);
    sums.set(this.accuracyTerms, terms);
    const total = communicator ? await communicator.allReduceFloat64(sums) : sums;
    const merged = new MetricsAccumulator(n);
    merged.intersection.set(total.subarray(0, n));
    merged.union.set(total.subarray(n, 2 * n));
    merged.images = total[2 * n]!;
    merged.correct = total[2 * n + 1]!;
    merged.labeled = total[2 * n + 2]!;
    merged.confusionImages = total[2 * n + 3]!;
    merged.confusion.set(total.subarray(2 * n + 4, terms));
    // Each slot was non-zero on at most one rank, so the reduced terms are exact; adding them in
    // list order repeats MetricsAccumulator.addImage's float sum of a single process.
    for (let i = 0; i < this.listLength; i++) merged.accuracySum += total[terms + i]!;
    return merged;
  }

  private checkIndex(index: number): void {
    expectInteger('index', index, 0, this.listLength - 1);
    if (this.scored[index]) throw new SegtoolError('ERR_INVALID_ARG', `The image at index ${index} was already added`);
  }

  private record(index: number, image: PixelAccuracy): void {
    this.scored[index] = 1;
    this.accuracyTerms[index] = imageAccuracy(image) * image.labeled;
  }
}
