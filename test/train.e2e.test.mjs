// End to end on a tiny generated dataset: train (resnet18dilated + c1, 16 scenes of 64x64,
// 2 epochs x 4 iterations), stop after epoch 1 and resume, check the resumed run equals an
// uninterrupted one bit for bit, then evaluate and segment, and check every file written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, mergeConfig, liveTensorCount, isSegtoolError } from '../dist/index.js';
import { readWeights } from '../dist/checkpoint.js';
import { disposeAll } from '../dist/io/safetensors.js';
import { train } from '../dist/train/index.js';
import { evaluate } from '../dist/eval/evaluate.js';
import { segment, segmentFiles, loadModel, findImages } from '../dist/segment.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';

const root = mkdtempSync(join(tmpdir(), 'segtool-train-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 16, val: 4, width: 64, seed: 7 });

function config(dir, extra = {}) {
  return mergeConfig(defaultConfig(), {
    DIR: join(root, dir),
    DATASET: { root_dataset: dataset.root, list_train: dataset.trainList, list_val: dataset.valList, imgSizes: [64], imgMaxSize: 1000 },
    MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512, pretrained: false },
    TRAIN: { batch_size_per_gpu: 2, num_epoch: 2, epoch_iters: 4, disp_iter: 2, workers: 1, bn_momentum: 0.1, seed: 11, lr_encoder: 0.02, lr_decoder: 0.02 },
    VAL: { checkpoint: 'epoch_2.pth' },
    TEST: { checkpoint: 'epoch_2.pth' },
    ...extra,
  });
}

async function weightsOf(path) {
  const tensors = await readWeights(path);
  const out = new Map([...tensors].map(([k, t]) => [k, Array.from(t.data())]));
  disposeAll(tensors);
  return out;
}

const straight = config('straight');
let straightResult;

test('train writes per-epoch weights, a training checkpoint, history and config', async () => {
  const live = liveTensorCount();
  const events = [];
  straightResult = await train(straight, { onEvent: (e) => events.push(e) });
  const dir = straight.DIR;
  for (const name of ['config.yaml', 'history.json', 'encoder_epoch_1.pth', 'decoder_epoch_1.pth', 'encoder_epoch_2.pth', 'decoder_epoch_2.pth', 'checkpoint_epoch_2.safetensors']) {
    assert.ok(existsSync(join(dir, name)), `${name} written`);
  }
  assert.ok(!existsSync(join(dir, 'checkpoint_epoch_1.safetensors')), 'older training checkpoints are removed (keepCheckpoints 1)');
  assert.ok(!readdirSync(dir).some((n) => n.endsWith('.tmp') || n.endsWith('.part')), 'no temporary files left');
  assert.equal(straightResult.epoch, 2);
  assert.equal(straightResult.iterations, 8);

  // A log line every disp_iter in the reference's format, and the poly schedule in it.
  const lines = events.filter((e) => e.type === 'log').map((e) => e.line);
  assert.equal(lines.length, 4); // iterations 0 and 2 of each epoch
  assert.match(lines[0], /^Epoch: \[1\]\[0\/4\], Time: \d+\.\d\d, Data: \d+\.\d\d, lr_encoder: 0\.020000, lr_decoder: 0\.020000, Accuracy: +\d+\.\d\d, Loss: \d+\.\d{6}$/);
  assert.match(lines[3], /^Epoch: \[2\]\[2\/4\],/);
  const iterations = events.filter((e) => e.type === 'iteration');
  assert.equal(iterations.length, 8);
  assert.ok(Math.abs(iterations[5].lrEncoder - 0.02 * (1 - 5 / 8) ** 0.9) < 1e-15);
  for (const it of iterations) assert.ok(Number.isFinite(it.loss) && it.accuracy >= 0 && it.accuracy <= 1);

  const history = JSON.parse(readFileSync(join(dir, 'history.json'), 'utf8'));
  assert.deepEqual(history.map((h) => h.epoch), [0, 0.5, 1, 1.5]);
  assert.deepEqual(history.map((h) => h.iteration), [0, 2, 4, 6]);
  assert.match(readFileSync(join(dir, 'config.yaml'), 'utf8'), /arch_encoder: "resnet18dilated"/);
  assert.equal(liveTensorCount(), live, 'no tensor leaked');
});

test('stopping after epoch 1 and resuming gives the same weights as training straight through', async () => {
  const split = config('split');
  const controller = new AbortController();
  await assert.rejects(
    train(split, { signal: controller.signal, onEvent: (e) => e.type === 'checkpoint' && controller.abort() }),
    (error) => isSegtoolError(error, 'ERR_ABORTED') && /resume from .*checkpoint_epoch_1\.safetensors/.test(error.message),
  );
  assert.ok(existsSync(join(split.DIR, 'checkpoint_epoch_1.safetensors')));
  assert.ok(!existsSync(join(split.DIR, 'encoder_epoch_2.pth')));

  const events = [];
  const resumed = await train(split, { resume: true, onEvent: (e) => events.push(e) });
  assert.equal(events.find((e) => e.type === 'start').firstEpoch, 2);
  assert.ok(!events.some((e) => e.type === 'warning'), 'same settings: no warning');
  assert.equal(resumed.epoch, 2);
  assert.deepEqual(resumed.history.map((h) => h.iteration), [0, 2, 4, 6], 'history carried over');

  for (const part of ['encoder', 'decoder']) {
    const a = await weightsOf(join(straight.DIR, `${part}_epoch_2.pth`));
    const b = await weightsOf(join(split.DIR, `${part}_epoch_2.pth`));
    assert.deepEqual([...a.keys()], [...b.keys()]);
    for (const [key, values] of a) assert.deepEqual(b.get(key), values, `${part} ${key} equal after resume`);
  }
});

test('resume refuses another architecture and reports a missing checkpoint', async () => {
  const other = config('split', { MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1_deepsup', fc_dim: 512 } });
  await assert.rejects(train(other, { resume: true }), (e) => isSegtoolError(e, 'ERR_CHECKPOINT') && /c1/.test(e.message));
  await assert.rejects(train(config('empty'), { resume: true }), (e) => isSegtoolError(e, 'ERR_NOT_FOUND') && /no training checkpoint/.test(e.message));
  await assert.rejects(train(straight, { overrides: ['DATASET.segm_downsampling_rate', '4', 'DATASET.padding_constant', '8'] }), (e) =>
    isSegtoolError(e, 'ERR_CONFIG') && /segm_downsampling_rate 8/.test(e.message),
  );
});

test('evaluate writes the metrics file and panels of image | ground truth | prediction', async () => {
  const live = liveTensorCount();
  const result = await evaluate(straight, { visualize: true });
  assert.equal(result.images, 4);
  assert.ok(result.pixelAccuracy >= 0 && result.pixelAccuracy <= 1);
  assert.equal(result.classes.length, 150);
  assert.ok(Math.abs(result.score - (result.pixelAccuracy + result.meanIoU) / 2) < 1e-15);
  assert.ok(result.presentClasses >= 3);
  assert.equal(result.metricsFile, join(straight.DIR, 'metrics_epoch_2.json'));
  const saved = JSON.parse(readFileSync(result.metricsFile, 'utf8'));
  assert.equal(saved.meanIoU, result.meanIoU);
  assert.equal(saved.pixelAccuracy, result.pixelAccuracy);
  assert.equal(saved.classes.length, 150);
  assert.deepEqual(saved.model.weights, [join(straight.DIR, 'encoder_epoch_2.pth'), join(straight.DIR, 'decoder_epoch_2.pth')]);
  const panels = readdirSync(join(straight.DIR, 'result')).sort();
  assert.deepEqual(panels, ['scene_00001.png', 'scene_00002.png', 'scene_00003.png', 'scene_00004.png']);
  const png = readFileSync(join(straight.DIR, 'result', panels[0]));
  assert.equal(png.readUInt32BE(16), 3 * 64, 'panel width = 3 x image width');
  assert.ok(png.readUInt32BE(20) > 64, 'panel height = image height and the legend of its classes below');
  assert.equal(result.confusionFile, join(straight.DIR, 'metrics_epoch_2_confusion.png'));
  assert.deepEqual(saved.confusion, result.confusion);
  assert.equal(liveTensorCount(), live, 'no tensor leaked');
});

test('evaluate names missing weights and what DIR has', async () => {
  await assert.rejects(evaluate(straight, { checkpoint: 'epoch_9.pth' }), (e) =>
    isSegtoolError(e, 'ERR_NOT_FOUND') && /encoder_epoch_9\.pth/.test(e.message) && /epoch_2\.pth/.test(e.message),
  );
});

test('segment and segmentFiles label every pixel and list the classes', async () => {
  const model = await loadModel(straight);
  try {
    const [image] = await findImages([join(dataset.root, 'images', 'validation')]);
    const one = await segment(model, image.path, { imgSizes: [64, 48], probabilities: true });
    assert.equal(one.width, 64);
    assert.equal(one.labels.length, 64 * 64);
    assert.equal(one.probabilities.length, 150 * 64 * 64);
    assert.ok(one.labels.every((c) => c >= 0 && c < 150));
    assert.ok(one.confidence.every((p) => p > 0 && p <= 1));
    assert.ok(Math.abs(one.classes.reduce((s, c) => s + c.ratio, 0) - 1) < 0.05);
    // In-memory pixels give what the file gives.
    const fromPixels = await segment(model, one.image, { imgSizes: [64, 48] });
    assert.deepEqual(fromPixels.labels, one.labels);

    const paths = (await findImages([join(dataset.root, 'images', 'validation')])).map((f) => f.path);
    const results = [];
    for await (const r of segmentFiles(model, paths, { imgSizes: [64, 48] })) results.push(r);
    assert.deepEqual(results.map((r) => r.path), paths);
    assert.deepEqual(results[0].labels, one.labels);
  } finally {
    model.dispose();
  }
});
