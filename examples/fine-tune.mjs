#!/usr/bin/env node
// Fine-tunes a model on your own images: a folder with images/ and annotations/ holding label
// PNGs of the same relative names (one class per pixel: value = class index + 1, 0 = unlabeled,
// as ADE20K's annotations). Trains a few iterations, saves the weights, then segments the first
// image with the result.
//
//   node examples/fine-tune.mjs my-data/ runs/my-model --config mobilenetv2dilated-c1_deepsup \
//       --weights ckpt/encoder_epoch_20.pth --weights ckpt/decoder_epoch_20.pth --iters 200 --classes 12
//
// --weights: weights to start from (encoder and decoder .pth, or one combined .safetensors);
// with --classes other than the weights' class count the classifier head starts fresh.
// Writes OUT/encoder_epoch_1.pth, OUT/decoder_epoch_1.pth (the reference's files),
// OUT/checkpoint_epoch_1.safetensors (resumable) and OUT/config.yaml.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Segmenter, listFolder, train, isSegtoolError } from 'segtool';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string', default: 'mobilenetv2dilated-c1_deepsup' },
    weights: { type: 'string', multiple: true },
    iters: { type: 'string', default: '20' },
    batch: { type: 'string', default: '2' },
    size: { type: 'string', default: '256' },
    classes: { type: 'string' },
    lr: { type: 'string', default: '0.02' },
    threads: { type: 'string' },
  },
});
if (positionals.length !== 2) {
  console.error('usage: node examples/fine-tune.mjs DATA_DIR OUT_DIR [--config NAME|FILE] [--weights FILE]... [--iters N] [--batch N] [--size PX] [--classes N]');
  process.exit(2);
}
const [data, out] = positionals;
const size = Number(values.size);
const weights = values.weights ?? [];

try {
  const overrides = {
    DIR: out,
    'DATASET.root_dataset': '',
    'DATASET.list_train': data,
    'DATASET.list_val': data,
    'DATASET.imgSizes': [size],
    'DATASET.imgMaxSize': size * 2,
    'TRAIN.num_epoch': 1,
    'TRAIN.epoch_iters': Number(values.iters),
    'TRAIN.batch_size_per_gpu': Number(values.batch),
    'TRAIN.lr_encoder': Number(values.lr),
    'TRAIN.lr_decoder': Number(values.lr),
    'TRAIN.bn_momentum': 0.1, // short runs: BatchNorm statistics must follow the new data quickly
    'TRAIN.workers': 1,
    'TRAIN.disp_iter': Math.max(1, Math.floor(Number(values.iters) / 4)),
    ...(values.classes ? { 'DATASET.num_class': Number(values.classes) } : {}),
    ...(weights[0] ? { 'MODEL.weights_encoder': weights[0] } : {}),
    ...(weights[1] ? { 'MODEL.weights_decoder': weights[1] } : {}),
  };
  const result = await train(values.config, {
    overrides,
    skipMismatchedHead: values.classes !== undefined,
    ...(values.threads ? { threads: Number(values.threads) } : {}),
    onEvent: (event) => {
      if (event.type === 'log' || event.type === 'warning') console.log(event.line ?? `warning: ${event.message}`);
    },
  });
  console.log(`trained ${result.iterations} iterations in ${result.seconds.toFixed(1)} s; weights: ${result.weights.encoder}, ${result.weights.decoder}`);

  // Use what was trained.
  const [first] = await listFolder(data);
  const segmenter = await Segmenter.load({
    config: join(out, 'config.yaml'),
    weights: [result.weights.encoder, result.weights.decoder],
  });
  try {
    const image = first.image;
    const seg = await segmenter.segment(image, { scales: [size] });
    console.log(`${image}: ${seg.classes.map((c) => `${c.name} ${(c.ratio * 100).toFixed(1)}%`).join(', ')}`);
  } finally {
    await segmenter.close();
  }
} catch (error) {
  console.error(isSegtoolError(error) ? `${error.code}: ${error.message}` : error);
  process.exit(1);
}
