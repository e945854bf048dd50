/**
 * Scene-parsing metrics with the reference's exact semantics (mit_semseg/utils.py
 * `intersectionAndUnion`, `accuracy`; eval.py's meters): the numbers equal the reference's to
 * the last bit, which test/fixtures/data/metrics.safetensors checks.
 *
 * Inputs are flat arrays of class indices 0..numClass-1 in row-major order: any typed array
 * (Uint8Array, Int16Array, Int32Array, BigInt64Array, ...) or number[]. In `label`, a negative
 * value (-1) marks an unlabeled pixel; such pixels count nowhere, not even for the prediction
 * ("we should not penalize detections in unlabeled portions of the image"). Indices >= numClass
 * count as labeled pixels but belong to no class, as in the reference's histogram.
 */
import { SegtoolError } from '../errors.js';
import { describe, expectInteger } from '../validate.js';

export type ClassIndexArray = ArrayLike<number> | BigInt64Array;

/**
 * Per-class pixel counts. Float64Array so per-dataset sums can add them in place; values are
 * integers (exact up to 2^53 pixels).
 */
export interface IntersectionAndUnion {
  intersection: Float64Array;
  union: Float64Array;
}

export interface PixelAccuracy {
  /** Labeled pixels where prediction equals label. */
  correct: number;
  /** Pixels with label >= 0. */
  labeled: number;
}

/** The reference adds this to denominators so empty classes give 0, not NaN. */
const EPSILON = 1e-10;

function asNumbers(name: string, values: unknown): ArrayLike<number> {
  if (values instanceof BigInt64Array) return Float64Array.from(values, Number);
  if (Array.isArray(values) || (ArrayBuffer.isView(values) && !(values instanceof DataView) && !(values instanceof BigUint64Array))) {
    return values as ArrayLike<number>;
  }
  throw new SegtoolError('ERR_INVALID_ARG', `Expected a typed array or array of class indices for ${name} but received ${describe(values)}`);
}

function pair(pred: unknown, label: unknown): [ArrayLike<number>, ArrayLike<number>] {
  const p = asNumbers('pred', pred);
  const l = asNumbers('label', label);
  if (p.length !== l.length) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected pred and label of the same length but received ${p.length} and ${l.length}`);
  }
  return [p, l];
}

/**
 * Per-class intersection and union of one image (the reference's `intersectionAndUnion`):
 * intersection[c] = pixels labeled c and predicted c; union[c] = pixels labeled c or predicted c,
 * counting predictions only where the pixel is labeled.
 */
export function intersectionAndUnion(pred: ClassIndexArray, label: ClassIndexArray, numClass: number): IntersectionAndUnion {
  expectInteger('numClass', numClass, 1);
  const [p, l] = pair(pred, label);
  const intersection = new Float64Array(numClass);
  const areaPred = new Float64Array(numClass);
  const areaLabel = new Float64Array(numClass);
  for (let i = 0; i < l.length; i++) {
    const y = l[i]!;
    if (!(y >= 0)) continue; // unlabeled: the prediction is not counted either
    const x = p[i]!;
    if (y < numClass) areaLabel[y]! += 1;
    if (x >= 0 && x < numClass) {
      areaPred[x]! += 1;
      if (x === y) intersection[x]! += 1;
    }
  }
  const union = new Float64Array(numClass);
  for (let c = 0; c < numClass; c++) union[c] = areaPred[c]! + areaLabel[c]! - intersection[c]!;
  return { intersection, union };
}

/**
 * Everything the metrics need from one image, in one pass: the confusion matrix and the
 * reference's intersection, union, correct and labeled counts (equal to intersectionAndUnion's
 * and pixelAccuracy's). `confusion` is numClass x numClass, row-major: row = ground truth,
 * column = prediction; unlabeled pixels (label < 0) and indices outside 0..numClass-1 count in
 * no cell. Its diagonal is the intersection and its row sums the labeled pixels of each class.
 */
export function imageCounts(pred: ClassIndexArray, label: ClassIndexArray, numClass: number): ImageCounts {
  expectInteger('numClass', numClass, 1);
  const [p, l] = pair(pred, label);
  const n = numClass;
  const confusion = new Float64Array(n * n);
  // The reference's areas also count a labeled pixel whose label or prediction is out of range
  // on the side that is in range.
  const labelOnly = new Float64Array(n);
  const predOnly = new Float64Array(n);
  let correct = 0;
  let labeled = 0;
  for (let i = 0; i < l.length; i++) {
    const y = l[i]!;
    if (!(y >= 0)) continue;
    labeled++;
    const x = p[i]!;
    if (x === y) correct++;
    const predInRange = x >= 0 && x < n;
    if (y < n) {
      if (predInRange) confusion[y * n + x]! += 1;
      else labelOnly[y]! += 1;
    } else if (predInRange) predOnly[x]! += 1;
  }
  const intersection = new Float64Array(n);
  const union = new Float64Array(n);
  const areaPred = predOnly;
  for (let y = 0; y < n; y++) {
    let areaLabel = labelOnly[y]!;
    for (let x = 0; x < n; x++) {
      const v = confusion[y * n + x]!;
      areaLabel += v;
      areaPred[x]! += v;
    }
    intersection[y] = confusion[y * n + y]!;
    union[y] = areaLabel - intersection[y]!;
  }
  for (let c = 0; c < n; c++) union[c]! += areaPred[c]!;
  return { intersection, union, correct, labeled, confusion, accuracy: correct / (labeled + EPSILON) };
}

/** Correct and labeled pixel counts of one image (the reference's `accuracy` before dividing). */
export function pixelAccuracy(pred: ClassIndexArray, label: ClassIndexArray): PixelAccuracy {
  const [p, l] = pair(pred, label);
  let correct = 0;
  let labeled = 0;
  for (let i = 0; i < l.length; i++) {
    const y = l[i]!;
    if (!(y >= 0)) continue;
    labeled++;
    if (p[i] === y) correct++;
  }
  return { correct, labeled };
}

/** One image's accuracy exactly as the reference prints it: correct / (labeled + 1e-10). */
export function imageAccuracy(counts: PixelAccuracy): number {
  return counts.correct / (counts.labeled + EPSILON);
}

/**
 * Sum in numpy's pairwise order (`np.add.reduce` on a contiguous float64 array), so a mean
 * over 150 classes rounds exactly as the reference's `iou.mean()`.
 */
function pairwiseSum(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += a[start + i]!;
    return sum;
  }
  if (n <= 128) {
    const r = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => a[start + j]!);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j]! += a[start + i + j]!;
    let sum = r[0]! + r[1]! + (r[2]! + r[3]!) + (r[4]! + r[5]! + (r[6]! + r[7]!));
    for (; i < n; i++) sum += a[start + i]!;
    return sum;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return pairwiseSum(a, start, half) + pairwiseSum(a, start + half, n - half);
}

/** Mean as numpy computes it (pairwise summation), 0 for an empty array. */
export function numpyMean(values: ArrayLike<number>): number {
  return values.length === 0 ? 0 : pairwiseSum(values, 0, values.length) / values.length;
}

/** One image's metrics, as returned by `MetricsAccumulator.add`. */
export interface ImageMetrics extends IntersectionAndUnion, PixelAccuracy {
  /** correct / (labeled + 1e-10), the reference's per-image accuracy. */
  accuracy: number;
}

/** One image's metrics with its confusion matrix (imageCounts). */
export interface ImageCounts extends ImageMetrics {
  /** numClass x numClass pixel counts, row-major: row = ground truth, column = prediction. */
  confusion: Float64Array;
}

/** Per-image counts handed to `addImage`; without `confusion` the dataset has no confusion matrix. */
export type ImageCountsInput = IntersectionAndUnion & PixelAccuracy & { confusion?: ArrayLike<number> };

/** Plain-data partial sums (JSON/structured-clone safe) to send between workers or ranks. */
export interface MetricSums {
  numClass: number;
  images: number;
  intersection: number[];
  union: number[];
  correct: number;
  labeled: number;
  /** Sum over images of accuracy x labeled pixels (the reference's AverageMeter sum). */
  accuracySum: number;
  /** Images whose confusion matrix is in `confusion` (absent: none). */
  confusionImages?: number;
  /** numClass x numClass row-major sums (rows ground truth, columns prediction). */
  confusion?: number[];
}

export interface MetricsSummary {
  numClass: number;
  images: number;
  /** Per-class IoU = intersection / (union + 1e-10): 0 for classes that never occur. */
  iou: Float64Array;
  /** Plain mean of `iou` over all classes, absent ones included (as the reference). */
  meanIoU: number;
  /** The reference's dataset accuracy: labeled-pixel-weighted mean of per-image accuracies. */
  pixelAccuracy: number;
  /** ADE20K benchmark score: (pixelAccuracy + meanIoU) / 2. */
  score: number;
  correct: number;
  labeled: number;
  /**
   * numClass x numClass pixel counts, row-major (row = ground truth, column = prediction), when
   * every image added had one (images added through `addImage` without `confusion` leave it out).
   */
  confusion?: Float64Array;
}

/**
 * Dataset metrics: sums of per-image intersections, unions and pixel counts. Partial sums from
 * other workers or ranks merge in with `merge` (intersection, union, correct and labeled are
 * integer sums, so they are exact in any order; `accuracySum` is a float sum whose last bit can
 * depend on the order partial sums are added, as in the reference's multi-process eval).
 */
export class MetricsAccumulator {
  readonly numClass: number;
  readonly intersection: Float64Array;
  readonly union: Float64Array;
  /** Confusion-matrix sums (numClass x numClass, rows ground truth); complete when confusionImages === images. */
  readonly confusion: Float64Array;
  confusionImages = 0;
  images = 0;
  correct = 0;
  labeled = 0;
  accuracySum = 0;

  constructor(numClass: number) {
    this.numClass = expectInteger('numClass', numClass, 1);
    this.intersection = new Float64Array(numClass);
    this.union = new Float64Array(numClass);
    this.confusion = new Float64Array(numClass * numClass);
  }

  /** Scores one image (imageCounts) and adds it; returns that image's metrics and confusion matrix. */
  add(pred: ClassIndexArray, label: ClassIndexArray): ImageCounts {
    const image = imageCounts(pred, label, this.numClass);
    this.addImage(image);
    return image;
  }

  /** Adds one image's counts computed elsewhere (e.g. in a worker). */
  addImage(image: ImageCountsInput): void {
    this.checkCounts(image.intersection, image.union, 'image');
    this.checkConfusion(image.confusion, 'image');
    for (let c = 0; c < this.numClass; c++) {
      this.intersection[c]! += image.intersection[c]!;
      this.union[c]! += image.union[c]!;
    }
    if (image.confusion) {
      for (let i = 0; i < this.confusion.length; i++) this.confusion[i]! += image.confusion[i]!;
      this.confusionImages++;
    }
    this.correct += image.correct;
    this.labeled += image.labeled;
    this.accuracySum += imageAccuracy(image) * image.labeled;
    this.images++;
  }

  /** Adds another accumulator's (or its `toJSON()`'s) sums. */
  merge(other: MetricsAccumulator | MetricSums): this {
    if (other.numClass !== this.numClass) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected partial sums for ${this.numClass} classes but received ${other.numClass}`);
    }
    this.checkCounts(other.intersection, other.union, 'partial sums');
    this.checkConfusion(other.confusion, 'partial sums');
    for (let c = 0; c < this.numClass; c++) {
      this.intersection[c]! += other.intersection[c]!;
      this.union[c]! += other.union[c]!;
    }
    if (other.confusion && other.confusionImages) {
      for (let i = 0; i < this.confusion.length; i++) this.confusion[i]! += other.confusion[i]!;
      this.confusionImages += other.confusionImages;
    }
    this.images += other.images;
    this.correct += other.correct;
    this.labeled += other.labeled;
    this.accuracySum += other.accuracySum;
    return this;
  }

  private checkCounts(intersection: ArrayLike<number>, union: ArrayLike<number>, what: string): void {
    if (intersection?.length !== this.numClass || union?.length !== this.numClass) {
      throw new SegtoolError(
        'ERR_INVALID_ARG',
        `Expected ${what} with ${this.numClass} intersections and unions but received ${describe(intersection)} and ${describe(union)}`,
      );
    }
  }

  private checkConfusion(confusion: ArrayLike<number> | undefined, what: string): void {
    if (confusion !== undefined && confusion?.length !== this.confusion.length) {
      throw new SegtoolError(
        'ERR_INVALID_ARG',
        `Expected ${what} with a confusion matrix of ${this.numClass} x ${this.numClass} = ${this.confusion.length} counts but received ${describe(confusion)}`,
      );
    }
  }

  /** The confusion matrix as rows (ground truth) of counts by prediction, when every image added had one. */
  confusionRows(): number[][] | undefined {
    if (this.confusionImages !== this.images) return undefined;
    const n = this.numClass;
    return Array.from({ length: n }, (_, y) => Array.from(this.confusion.subarray(y * n, (y + 1) * n)));
  }

  toJSON(): MetricSums {
    return {
      numClass: this.numClass,
      images: this.images,
      intersection: Array.from(this.intersection),
      union: Array.from(this.union),
      correct: this.correct,
      labeled: this.labeled,
      accuracySum: this.accuracySum,
      ...(this.confusionImages > 0 ? { confusionImages: this.confusionImages, confusion: Array.from(this.confusion) } : {}),
    };
  }

  static fromJSON(sums: MetricSums): MetricsAccumulator {
    return new MetricsAccumulator(sums.numClass).merge(sums);
  }

  /** Per-class IoU, intersection / (union + 1e-10) as the reference. */
  iou(): Float64Array {
    return this.intersection.map((v, c) => v / (this.union[c]! + EPSILON));
  }

  meanIoU(): number {
    return numpyMean(this.iou());
  }

  /** The reference's dataset pixel accuracy; 0 before any labeled pixel. */
  pixelAccuracy(): number {
    return this.labeled === 0 ? 0 : this.accuracySum / this.labeled;
  }

  summary(): MetricsSummary {
    const iou = this.iou();
    const meanIoU = numpyMean(iou);
    const pixelAccuracy = this.pixelAccuracy();
    return {
      numClass: this.numClass,
      images: this.images,
      iou,
      meanIoU,
      pixelAccuracy,
      score: (pixelAccuracy + meanIoU) / 2,
      correct: this.correct,
      labeled: this.labeled,
      ...(this.confusionImages === this.images ? { confusion: this.confusion.slice() } : {}),
    };
  }
}
