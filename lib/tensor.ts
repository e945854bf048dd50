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
   * (e.g. Int32Array labels to 'int64').
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
