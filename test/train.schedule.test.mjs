// The reference's poly learning-rate schedule and its log line, without a model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { polyLearningRate, learningRatesAt, formatTrainLine, AverageMeter } from '../dist/train/index.js';

test('poly: base x (1 - iter / max_iter)^power, from base down to 0', () => {
  assert.equal(polyLearningRate(0.02, 0, 100, 0.9), 0.02);
  assert.equal(polyLearningRate(0.02, 100, 100, 0.9), 0);
  assert.equal(polyLearningRate(0.02, 50, 100, 0.9), 0.02 * 0.5 ** 0.9);
  assert.equal(polyLearningRate(0.02, 50, 100, 0), 0.02, 'power 0 keeps the rate constant');
  let previous = Infinity;
  for (let i = 0; i <= 100; i++) {
    const lr = polyLearningRate(0.02, i, 100, 0.9);
    assert.ok(lr < previous);
    previous = lr;
  }
});

test('two groups over epoch_iters x num_epoch, as train.py adjust_learning_rate', () => {
  const settings = { lrEncoder: 0.02, lrDecoder: 0.01, lrPow: 0.9, epochIters: 5000, numEpoch: 20 };
  // cur_iter = i + (epoch - 1) * epoch_iters: epoch 3, i = 10.
  const lr = learningRatesAt(settings, 10 + 2 * 5000);
  const scale = (1 - 10010 / 100000) ** 0.9;
  assert.equal(lr.encoder, 0.02 * scale);
  assert.equal(lr.decoder, 0.01 * scale);
  assert.deepEqual(learningRatesAt(settings, 0), { encoder: 0.02, decoder: 0.01 });
});

test('bad schedule arguments name the argument', () => {
  assert.throws(() => polyLearningRate(0.02, 101, 100, 0.9), /iteration/);
  assert.throws(() => polyLearningRate(0.02, 1, 0, 0.9), /maxIterations/);
  assert.throws(() => polyLearningRate(-1, 1, 10, 0.9), /base/);
});

test('log line has the reference format', () => {
  const line = formatTrainLine({ epoch: 3, iteration: 20, epochIters: 5000, time: 1.234, dataTime: 0.0456, lrEncoder: 0.0199, lrDecoder: 0.02, accuracy: 5.5, loss: 1.23456789 });
  assert.equal(line, 'Epoch: [3][20/5000], Time: 1.23, Data: 0.05, lr_encoder: 0.019900, lr_decoder: 0.020000, Accuracy: 5.50, Loss: 1.234568');
  const meter = new AverageMeter();
  meter.update(2);
  meter.update(4, 3);
  assert.equal(meter.average, 3.5);
});

test('TRAIN.bn_momentum at the reference default keeps hrnetv2\'s own 0.1; another value applies everywhere', async () => {
  const { trainingModelOptions } = await import('../dist/train/train.js');
  const { defaultConfig, mergeConfig } = await import('../dist/index.js');
  const hrnet = (momentum) =>
    trainingModelOptions(mergeConfig(defaultConfig(), { MODEL: { arch_encoder: 'hrnetv2', arch_decoder: 'c1', fc_dim: 720 }, TRAIN: { bn_momentum: momentum } }));
  const byDefault = hrnet(0.001);
  assert.equal('bnMomentum' in byDefault, false, 'no explicit momentum: the model keeps 0.001 and HRNet 0.1');
  assert.equal(byDefault.encoder, 'hrnetv2');
  assert.equal(byDefault.fcDim, 720);
  assert.equal(hrnet(0.1).bnMomentum, 0.1);
});
