import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Tensor, liveTensorCount, SegtoolError, setNumThreads, getNumThreads } from '../dist/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

test('float32 round trip keeps shape, dtype and values', () => {
  const values = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
  const t = Tensor.from(values, [2, 3]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(Array.from(t.data()), Array.from(values));
  values[0] = 99; // the tensor holds a copy
  assert.equal(t.data()[0], 1.5);
  t.dispose();
});

test('int64, int32 and uint8 round trip', () => {
  const a = Tensor.from(new BigInt64Array([1n, -1n, 2n ** 40n]), [3]);
  assert.equal(a.dtype, 'int64');
  assert.deepEqual(Array.from(a.data()), [1n, -1n, 2n ** 40n]);
  const b = Tensor.from(new Uint8Array([0, 7, 255, 1]), [2, 2]);
  assert.equal(b.dtype, 'uint8');
  assert.deepEqual(Array.from(b.data()), [0, 7, 255, 1]);
  const c = Tensor.from(new Int32Array([-1, 5]), [2], 'int64');
  assert.equal(c.dtype, 'int64');
  assert.deepEqual(Array.from(c.data()), [-1n, 5n]);
  for (const t of [a, b, c]) t.dispose();
});

test('an empty tensor gives an empty, usable typed array', () => {
  const t = Tensor.from(new Float32Array(0), [0, 3]);
  const view = t.data();
  assert.equal(view.length, 0);
  assert.equal(view.buffer.byteLength, 0);
  assert.deepEqual(Array.from(view.map((v) => v + 1)), []);
  t.dispose();
});

test('views of a tensor stay valid after dispose', () => {
  const t = Tensor.from(new Float32Array([1, 2, 3]), [3]);
  const view = t.data();
  t.dispose();
  gc();
  assert.deepEqual(Array.from(view), [1, 2, 3]);
});

test('a wrong shape is an ERR_INVALID_ARG naming both counts', () => {
  assert.throws(() => Tensor.from(new Float32Array(5), [2, 3]), (e) => e instanceof SegtoolError && e.code === 'ERR_INVALID_ARG' && /6 elements.*5/.test(e.message));
  assert.throws(() => Tensor.from(new Float32Array(1), [-1]), (e) => e.code === 'ERR_INVALID_ARG' && /shape\[0\]/.test(e.message));
  assert.throws(() => Tensor.from([1, 2], [2]), (e) => e.code === 'ERR_INVALID_ARG' && /Float32Array/.test(e.message));
});

test('use after dispose is ERR_DISPOSED, dispose is idempotent', () => {
  const t = Tensor.from(new Float32Array(4), [4]);
  t.dispose();
  t.dispose();
  assert.equal(t.disposed, true);
  assert.throws(() => t.shape, (e) => e instanceof SegtoolError && e.code === 'ERR_DISPOSED');
  assert.throws(() => t.data(), (e) => e.code === 'ERR_DISPOSED');
});

test('live tensor count follows dispose, Symbol.dispose and the finalizer', async () => {
  const base = liveTensorCount();
  const a = Tensor.from(new Float32Array(8), [8]);
  assert.equal(liveTensorCount(), base + 1);
  a.dispose();
  assert.equal(liveTensorCount(), base);
  const b = Tensor.from(new Float32Array(8), [8]);
  try {
    assert.equal(liveTensorCount(), base + 1);
    assert.equal(b.size, 8);
  } finally {
    b[Symbol.dispose](); // what `using` calls
  }
  assert.equal(liveTensorCount(), base);
  // Forgotten tensors are freed by the finalizer (a safety net, not the main path).
  (() => {
    for (let i = 0; i < 100; i++) Tensor.from(new Float32Array(1024), [1024]);
  })();
  assert.equal(liveTensorCount(), base + 100);
  for (let i = 0; i < 20 && liveTensorCount() > base; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(liveTensorCount(), base);
});

test('the intra-op thread count can be set', () => {
  const before = getNumThreads();
  setNumThreads(1);
  assert.equal(getNumThreads(), 1);
  setNumThreads(2);
  assert.equal(getNumThreads(), 2);
  setNumThreads(before);
  assert.throws(() => setNumThreads(0), (e) => e.code === 'ERR_INVALID_ARG' && /threads/.test(e.message));
});

test('conversions to an integer dtype refuse NaN, fractions and out-of-range values, naming the index and value', () => {
  const refused = (data, dtype, pattern) =>
    assert.throws(() => Tensor.from(data, [data.length], dtype), (e) => e instanceof SegtoolError && e.code === 'ERR_INVALID_ARG' && pattern.test(e.message), `${data.constructor.name} -> ${dtype}`);
  refused(Float32Array.of(1, NaN), 'int64', /data\[1\] = NaN to int64: NaN is not an integer/);
  refused(Float64Array.of(0, 1, 300), 'uint8', /data\[2\] = 300 to uint8: out of range \(expected an integer in \[0, 255\]\)/);
  refused(Float64Array.of(-1), 'uint8', /data\[0\] = -1 to uint8: out of range/);
  refused(Float32Array.of(2.5), 'int32', /data\[0\] = 2\.5 to int32: not a whole number/);
  refused(Float64Array.of(Infinity), 'int16', /data\[0\] = Infinity to int16: not finite/);
  refused(Float64Array.of(2 ** 63), 'int64', /data\[0\] = 9223372036854776000 to int64: out of range/);
  refused(Int32Array.of(5, 70000), 'int16', /data\[1\] = 70000 to int16: out of range/);
  refused(Int32Array.of(-2), 'uint8', /data\[0\] = -2 to uint8/);
  refused(BigInt64Array.of(1n, 2n ** 40n), 'int32', /data\[1\] = 1099511627776n to int32: out of range/);
  // What fits converts exactly.
  const a = Tensor.from(Float64Array.of(-(2 ** 53), 0, 2 ** 53), [3], 'int64');
  assert.deepEqual(Array.from(a.data()), [-(2n ** 53n), 0n, 2n ** 53n]);
  const b = Tensor.from(Float32Array.of(0, 255), [2], 'uint8');
  assert.deepEqual(Array.from(b.data()), [0, 255]);
  const c = Tensor.from(Int32Array.of(-1, 149), [2], 'int64');
  assert.deepEqual(Array.from(c.data()), [-1n, 149n]);
  // Float targets take any value.
  const d = Tensor.from(Float64Array.of(NaN, 1e300), [2], 'float32');
  assert.ok(Number.isNaN(d.data()[0]));
  for (const t of [a, b, c, d]) t.dispose();
});
