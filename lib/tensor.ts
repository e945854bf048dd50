/**
 * Tensor: a typed JS face of one native at::Tensor. Call dispose() (or `using`) when done;
 * a finalizer frees forgotten tensors eventually, but GC cannot see native memory.
 */
import { SegtoolError } from './errors.js';
import { native, type NativeDtype, type NativeTensor } from './native.js';
import { expectInteger, invalid } from './validate.js';

export type Dtype = NativeDtype;
export type TypedArrayFor<D extends Dtype> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : D extends 'int32'
      ? Int32Array
      : D extends 'int64'
        ? BigInt64Array
        : D extends 'int16'
          ? Int16Array
          : Uint8Array;
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint8ClampedArray | Int16Array;

const DTYPE_OF: Array<[new (...args: never[]) => TensorData, Dtype]> = [
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
  [Int32Array, 'int32'],
  [BigInt64Array, 'int64'],
  [Uint8Array, 'uint8'],
  [Uint8ClampedArray, 'uint8'],
  [Int16Array, 'int16'],
];
const DTYPES: readonly Dtype[] = ['float32', 'float64', 'int32', 'int64', 'uint8', 'int16'];

function dtypeOf(data: unknown): Dtype | undefined {
  return DTYPE_OF.find(([ctor]) => data instanceof ctor)?.[1];
}

/** The values each integer dtype holds. */
const INTEGER_RANGES: Partial<Record<Dtype, readonly [bigint, bigint]>> = {
  uint8: [0n, 255n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
};

/**
 * Throws ERR_INVALID_ARG naming the first index whose value does not fit the integer `dtype`
 * exactly: NaN, infinities, fractions, or out of range. LibTorch would convert those silently
 * (NaN to INT64_MIN, 300 to 44 for uint8); labels and indices must never change on the way in.
 */
export function checkIntegerConversion(data: TensorData, dtype: Dtype): void {
  const range = INTEGER_RANGES[dtype];
  if (!range) return; // a float target: no wrap-around
  const [lo, hi] = range;
  const bad = (i: number, value: number | bigint, why: string): SegtoolError =>
    new SegtoolError(
      'ERR_INVALID_ARG',
      `Cannot convert data[${i}] = ${typeof value === 'bigint' ? `${value}n` : value} to ${dtype}: ${why} (expected an integer in [${lo}, ${hi}])`,
    );
  if (data instanceof BigInt64Array) {
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (v < lo || v > hi) throw bad(i, v, 'out of range');
    }
    return;
  }
  const min = Number(lo);
  const max = Number(hi);
  // Float sources need the integer check; integer sources only the range (when narrower).
  const floats = data instanceof Float32Array || data instanceof Float64Array;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v >= min && v <= max && (!floats || Number.isInteger(v))) {
      // int64's bounds are not exact doubles: 2^63 compares equal to max but does not fit.
      if (dtype !== 'int64' || v < 9223372036854775808) continue;
    }
    if (Number.isNaN(v)) throw bad(i, v, 'NaN is not an integer');
    if (!Number.isFinite(v)) throw bad(i, v, 'not finite');
    if (!Number.isInteger(v)) throw bad(i, v, 'not a whole number');
    throw bad(i, v, 'out of range');
  }
}

export function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw invalid(name, 'an array of non-negative integers', shape);
  shape.forEach((size, i) => expectInteger(`${name}[${i}]`, size, 0));
  return shape as number[];
}

export class Tensor {
  /** @internal */
  readonly handle: NativeTensor;

  /** @internal Wraps a native handle; takes ownership. */
  constructor(handle: NativeTensor) {
    this.handle = handle;
  }

  /**
   * A tensor holding a copy of `data` with the given shape. `dtype` converts on the way in
   * (e.g. Int32Array labels to 'int64'); to an integer dtype every value must fit exactly (no
   * NaN, fraction or out-of-range value: ERR_INVALID_ARG naming the index).
   */
  static from(data: TensorData, shape: readonly number[], dtype?: Dtype): Tensor {
    const source = dtypeOf(data);
    if (!source) throw invalid('data', 'a Float32Array, Float64Array, Int32Array, BigInt64Array, Int16Array or Uint8Array', data);
    const dims = checkShape('shape', [...shape]);
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected ${count} elements for shape [${dims.join(', ')}] but data has ${data.length}`);
    }
    if (dtype !== undefined && !DTYPES.includes(dtype)) throw invalid('dtype', `one of ${DTYPES.join(', ')}`, dtype);
    if (dtype !== undefined && dtype !== source) checkIntegerConversion(data, dtype);
    return new Tensor(native().fromTypedArray(data, dims, dtype));
  }

  get shape(): number[] {
    return this.handle.shape;
  }

  get dtype(): Dtype {
    return this.handle.dtype;
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The values as a typed array that shares the tensor's memory (no copy). */
  data<D extends Dtype = Dtype>(): TypedArrayFor<D> {
    return this.handle.data() as TypedArrayFor<D>;
  }

  dispose(): void {
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** How many native tensors are alive (not disposed, not finalized): for leak tests. */
export function liveTensorCount(): number {
  return native().liveTensorCount();
}

/** Sets LibTorch's intra-op thread count for all segtool work in this process. */
export function setNumThreads(threads: number): void {
  native().setNumThreads(expectInteger('threads', threads, 1, 1024));
}

export function getNumThreads(): number {
  return native().getNumThreads();
}
