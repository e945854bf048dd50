/**
 * Which records form each training batch, at which short side, which flipped — the reference's
 * TrainDataset._get_sub_batch: records are taken in (shuffled) order and dropped into two
 * buckets, portrait (h > w) and landscape (h <= w); a bucket that reaches batchPerGpu becomes a
 * batch, so a batch never mixes orientations and wastes little canvas. The list is reshuffled
 * every time the pointer wraps around.
 *
 * Every random draw comes from one Rng, in a fixed order: shuffles, then the short side, then one
 * flip draw per sample (drawn even when the flip probability is 0 or 1, so that changing it does
 * not shift the other draws).
 */
import type { Size } from './geometry.js';
import { Rng } from './prng.js';

export interface TrainPlan {
  /** Indices into the record list, in batch order. */
  indices: number[];
  /** The short side every sample of this batch is resized to. */
  short: number;
  /** Whether each sample is flipped horizontally. */
  flips: boolean[];
}

export interface TrainSamplerOptions {
  batchPerGpu: number;
  imgSizes: readonly number[];
  flipProbability: number;
  /** false: take records in list order (geometry checks); true needs `rng`. */
  shuffle: boolean;
  rng?: Rng;
}

export class TrainSampler {
  private readonly sizes: readonly Size[];
  private readonly order: number[];
  private readonly options: TrainSamplerOptions;
  private readonly rng: Rng | undefined;
  private cursor = 0;
  private readonly portrait: number[] = [];
  private readonly landscape: number[] = [];

  constructor(sizes: readonly Size[], options: TrainSamplerOptions) {
    if (sizes.length === 0) throw new RangeError('TrainSampler: no records');
    if (options.shuffle && !options.rng) throw new RangeError('TrainSampler: shuffle needs an rng');
    this.sizes = sizes;
    this.options = options;
    this.rng = options.rng;
    this.order = sizes.map((_, i) => i);
    if (options.shuffle) this.rng!.shuffle(this.order);
  }

  next(): TrainPlan {
    const { batchPerGpu } = this.options;
    let indices: number[];
    for (;;) {
      const index = this.order[this.cursor]!;
      const size = this.sizes[index]!;
      (size.height > size.width ? this.portrait : this.landscape).push(index);
      this.cursor += 1;
      if (this.cursor >= this.order.length) {
        this.cursor = 0;
        if (this.options.shuffle) this.rng!.shuffle(this.order);
      }
      if (this.portrait.length === batchPerGpu) {
        indices = this.portrait.splice(0);
        break;
      }
      if (this.landscape.length === batchPerGpu) {
        indices = this.landscape.splice(0);
        break;
      }
    }
    const sizes = this.options.imgSizes;
    const short = this.rng ? sizes[this.rng.int(sizes.length)]! : sizes[0]!;
    const p = this.options.flipProbability;
    const flips = indices.map(() => (this.rng ? this.rng.next() < p : false));
    return { indices, short, flips };
  }
}
