// The names TypeScript validates are exactly the ones the native library builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { architectures, SegmentationModel, SegtoolError } from '../dist/index.js';
import { ENCODER_NAMES, DECODER_NAMES, ENCODER_CHANNELS } from '../dist/config/names.js';

test('encoder and decoder names and default fcDim agree between TypeScript and native', () => {
  const arch = architectures();
  assert.deepEqual([...ENCODER_NAMES].sort(), [...arch.encoders].sort());
  assert.deepEqual([...DECODER_NAMES].sort(), [...arch.decoders].sort());
  for (const name of arch.encoders) assert.equal(ENCODER_CHANNELS[name], arch.defaultFcDim[name], name);
});

test('bad model options are clear errors', async () => {
  await assert.rejects(SegmentationModel.create({ encoder: 'resnet51', decoder: 'c1' }), (e) => e instanceof SegtoolError && e.code === 'ERR_INVALID_ARG' && /encoder/.test(e.message) && /resnet51/.test(e.message));
  await assert.rejects(SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', fcDim: 2048 }), (e) => e.code === 'ERR_INVALID_ARG' && /fcDim 512/.test(e.message));
  await assert.rejects(SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', numClass: 0 }), (e) => e.code === 'ERR_INVALID_ARG' && /numClass/.test(e.message));
  await assert.rejects(SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', numClasses: 3 }), (e) => e.code === 'ERR_INVALID_ARG' && /numClasses/.test(e.message));
});

test('a model pins itself while it runs: dispose is ERR_BUSY, then works', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'c1', numClass: 5 });
  const running = model.predict({ data: new Float32Array(3 * 64 * 64), shape: [1, 3, 64, 64] });
  assert.throws(() => model.dispose(), (e) => e.code === 'ERR_BUSY');
  assert.throws(() => model.keys(), (e) => e.code === 'ERR_BUSY');
  const probs = await running;
  assert.deepEqual(probs.shape, [1, 5, 64, 64]);
  probs.dispose();
  model.dispose();
  assert.equal(model.disposed, true);
  await assert.rejects(model.predict({ data: new Float32Array(3 * 8 * 8), shape: [1, 3, 8, 8] }), (e) => e.code === 'ERR_DISPOSED');
});

test('weights by name: get, set, shape mismatch names the key and both shapes', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', numClass: 7 });
  const keys = model.keys();
  assert.equal(keys[0], 'encoder.conv1.weight');
  assert.ok(keys.includes('decoder.conv_last.bias'));
  const bias = model.getWeight('decoder.conv_last.bias');
  assert.deepEqual(bias.shape, [7]);
  const ones = bias.data().fill(1);
  model.setWeight('decoder.conv_last.bias', bias);
  const again = model.getWeight('decoder.conv_last.bias');
  assert.deepEqual(Array.from(again.data()), Array.from(ones));
  const wrong = model.getWeight('encoder.conv1.weight');
  assert.throws(() => model.setWeight('decoder.conv_last.bias', wrong), (e) => e.code === 'ERR_INVALID_ARG' && /decoder\.conv_last\.bias/.test(e.message) && /\[7\]/.test(e.message));
  assert.throws(() => model.getWeight('decoder.nope'), (e) => e.code === 'ERR_INVALID_ARG' && /decoder\.nope/.test(e.message));
  for (const t of [bias, again, wrong]) t.dispose();
  model.dispose();
});
