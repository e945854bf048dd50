#!/usr/bin/env node
// Writes segtool's outputs for the baseline check (bench/baseline/check.py): for each model,
// with the procedural weights, the log-probabilities of a 1 x 3 x 300 x 400 procedural input
// and the full-size prediction (argmax, max probability) of segtool's inference path; and the
// losses of three SGD steps on the fixture's training batch.
//   node bench/check-segtool.mjs [--models a-b,c-d] [--out DIR]
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MODELS, proceduralFloat32 } from './common.mjs';

const segtool = await import('../dist/index.js');
const { predictMultiScale } = await import('../dist/inference/infer.js');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const models = opt('--models', DEFAULT_MODELS.join(',')).split(',');
const out = opt('--out', new URL('./out/check', import.meta.url).pathname);
mkdirSync(out, { recursive: true });
segtool.setNumThreads(Number(opt('--threads', '2')));

for (const name of models) {
  const [encoder, decoder] = name.split('-');
  const model = await segtool.SegmentationModel.create({ encoder, decoder, init: 'procedural' });
  model.eval();
  const shape = [1, 3, 300, 400];
  const input = segtool.Tensor.from(proceduralFloat32('bench.input', 3 * 300 * 400), shape);
  const { logprob, logprobDeepsup } = await model.forward(input);
  logprobDeepsup?.dispose();
  const { labels, confidence } = await predictMultiScale(model, [input], 300, 400);
  const pred = segtool.Tensor.from(labels, [1, 300, 400]);
  const prob = segtool.Tensor.from(confidence, [1, 300, 400]);
  // Three SGD steps on the fixture's training batch (dropout off), as check.py does.
  const fixture = await segtool.loadSafetensors(new URL(`../test/fixtures/models/${name}.safetensors`, import.meta.url).pathname);
  model.train().setDropout(0).setBnMomentum(0.001);
  const losses = [];
  for (let step = 1; step <= 3; step++) {
    const r = await model.trainStep(fixture.tensors.get('train.input'), fixture.tensors.get('train.label'), { lrEncoder: 0.02, lrDecoder: 0.02 });
    losses.push(String(r.loss));
  }
  segtool.disposeAll(fixture.tensors);
  const file = join(out, `${name}.safetensors`);
  await segtool.saveSafetensors(file, { input, logprob, pred, prob }, { 'train.losses': losses.join(',') });
  for (const t of [input, logprob, pred, prob]) t.dispose();
  model.dispose();
  console.log(`wrote ${file}`);
}
