/**
 * A small seedable PRNG for the data pipeline: xoshiro128** (Blackman & Vigna, 2018) — 128 bits
 * of state, 32-bit outputs, period 2^128 - 1, passes BigCrush, and needs only 32-bit integer ops
 * (Math.imul), so it is fast and bit-identical on every JS engine. Its state is filled by
 * splitmix32 so that close seeds (0, 1, 2...) give unrelated streams.
 *
 * Streams are named by integers: `Rng.forStream(seed, rank, worker)` hashes the tuple, so every
 * (seed, rank, worker) has its own sequence — the reference's data workers shared numpy's global
 * seed after fork and could yield the same "random" augmentations.
 */
import { expectInteger } from '../validate.js';

const TWO_POW_32 = 4294967296;

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Hashes a seed (any non-negative safe integer) and stream ids into one 32-bit seed.
 * Order matters: (seed, 0, 1) and (seed, 1, 0) differ.
 */
export function deriveSeed(seed: number, ...stream: number[]): number {
  expectInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  h = fmix32(h ^ Math.floor(seed / TWO_POW_32));
  for (const [i, id] of stream.entries()) {
    expectInteger(`stream id ${i}`, id, 0, 0xffffffff);
    h = fmix32((h + 0x9e3779b9 + Math.imul(i + 1, 0x7feb352d)) ^ id);
  }
  return h;
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** `seed`: a 32-bit unsigned integer (use deriveSeed for larger seeds or streams). */
  constructor(seed: number) {
    expectInteger('seed', seed, 0, 0xffffffff);
    // splitmix32 fills the state; it never yields the all-zero state xoshiro must avoid in practice.
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The generator for one stream of a run, e.g. `Rng.forStream(seed, rank, worker)`. */
  static forStream(seed: number, ...stream: number[]): Rng {
    return new Rng(deriveSeed(seed, ...stream));
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** Uniform integer in [0, n), without modulo bias; n in [1, 2^32]. */
  int(n: number): number {
    if (!(Number.isInteger(n) && n >= 1 && n <= TWO_POW_32)) throw new RangeError(`Rng.int: bad bound ${n}`);
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** One element of a non-empty array, uniformly. */
  choice<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i]!;
      items[i] = items[j]!;
      items[j] = tmp;
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
