// Reads the safetensors fixtures in tests (the library's own reader is native).
import { readFileSync } from 'node:fs';

const ARRAYS = {
  F32: Float32Array, F64: Float64Array, I64: BigInt64Array, I32: Int32Array,
  I16: Int16Array, I8: Int8Array, U8: Uint8Array,
};

/** @returns {{tensors: Record<string, {dtype: string, shape: number[], data: ArrayLike<number|bigint>}>, metadata: Record<string,string>}} */
export function readSafetensors(path) {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  const base = 8 + headerLen;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const Ctor = ARRAYS[info.dtype];
    if (!Ctor) throw new Error(`${path}: dtype ${info.dtype} of ${name} not supported by the test reader`);
    const [begin, end] = info.data_offsets;
    const bytes = buf.subarray(base + begin, base + end);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    tensors[name] = { dtype: info.dtype, shape: info.shape, data: new Ctor(copy.buffer) };
  }
  return { tensors, metadata: header.__metadata__ ?? {} };
}
