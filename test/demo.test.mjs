// The demo's synthetic dataset (ADE20K layout and class values, deterministic per seed) and the
// demo pipeline on a tiny setting (the real one trains for minutes: `npm run demo`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLabel, readImage, ADE20K_CLASS_NAMES } from '../dist/index.js';
import { generateSyntheticDataset, syntheticScene, SYNTHETIC_CLASSES } from '../dist/demo/synthetic.js';
import { runDemo } from '../dist/demo/demo.js';

const root = mkdtempSync(join(tmpdir(), 'segtool-demo-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('the synthetic dataset has the ADE20K layout, class values and lists', async () => {
  const ds = await generateSyntheticDataset(join(root, 'a'), { train: 6, val: 2, width: 48, height: 40, seed: 1 });
  assert.equal(readdirSync(join(ds.root, 'images', 'training')).length, 6);
  assert.equal(readdirSync(join(ds.root, 'annotations', 'validation')).length, 2);
  const lines = readFileSync(ds.trainList, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], { fpath_img: 'images/training/scene_00001.png', fpath_segm: 'annotations/training/scene_00001.png', width: 48, height: 40 });
  const image = await readImage(join(ds.root, lines[0].fpath_img));
  const label = await readLabel(join(ds.root, lines[0].fpath_segm));
  assert.deepEqual([image.width, image.height, label.width, label.height], [48, 40, 48, 40]);
  const allowed = new Set(Object.values(SYNTHETIC_CLASSES).map((c) => c + 1));
  assert.ok(label.data.every((v) => allowed.has(v)), 'every pixel labelled with an ADE20K class value');
  for (const c of ds.classes) assert.ok(ADE20K_CLASS_NAMES[c]);
  assert.equal(ADE20K_CLASS_NAMES[SYNTHETIC_CLASSES.sky], 'sky');
  assert.equal(ADE20K_CLASS_NAMES[SYNTHETIC_CLASSES.wall], 'wall');
  assert.equal(ADE20K_CLASS_NAMES[SYNTHETIC_CLASSES.floor], 'floor');
});

test('scenes are a pure function of the seed', async () => {
  const a = await generateSyntheticDataset(join(root, 'b1'), { train: 3, val: 1, width: 40, seed: 9 });
  const b = await generateSyntheticDataset(join(root, 'b2'), { train: 3, val: 1, width: 40, seed: 9 });
  for (const sub of ['images/training/scene_00003.png', 'annotations/validation/scene_00001.png']) {
    assert.deepEqual(readFileSync(join(a.root, sub)), readFileSync(join(b.root, sub)));
  }
  const other = syntheticScene(10, 0, 2, 40, 40);
  const same = syntheticScene(9, 0, 2, 40, 40);
  assert.notDeepEqual(other.rgb, same.rgb);
  assert.deepEqual(syntheticScene(9, 0, 2, 40, 40), same);
  // Varied content: indoor and outdoor scenes, several classes per scene.
  const kinds = new Set();
  for (let i = 0; i < 20; i++) {
    const { annotation } = syntheticScene(1, 0, i, 64, 64);
    const values = new Set(annotation);
    kinds.add(values.has(SYNTHETIC_CLASSES.sky + 1) ? 'outdoor' : 'indoor');
    assert.ok(values.size >= 2);
  }
  assert.deepEqual([...kinds].sort(), ['indoor', 'outdoor']);
});

test('the demo pipeline trains, evaluates, writes pictures, and repeats itself for a seed', async () => {
  const settings = { trainImages: 8, valImages: 2, size: 48, epochs: 1, epochIters: 2, batchSize: 2, seed: 5 };
  const steps = [];
  const first = await runDemo({ dir: join(root, 'demo'), ...settings, onStep: (m) => steps.push(m) });
  assert.equal(steps.length, 3);
  assert.equal(first.evaluation.images, 2);
  assert.ok(first.majorityBaseline > 0 && first.majorityBaseline < 1);
  assert.ok(first.evaluation.presentClasses >= 2);
  assert.deepEqual(readdirSync(join(root, 'demo', 'result')).sort(), ['scene_00001.png', 'scene_00002.png']);
  assert.ok(existsSync(join(root, 'demo', 'ckpt', 'metrics_epoch_1.json')));
  const second = await runDemo({ dir: join(root, 'demo'), ...settings, onStep: (m) => steps.push(m) });
  assert.match(steps[3], /Using the synthetic dataset/);
  assert.equal(second.evaluation.meanIoU, first.evaluation.meanIoU);
  assert.equal(second.evaluation.pixelAccuracy, first.evaluation.pixelAccuracy);
  assert.equal(second.train.averageLoss, first.train.averageLoss);
});
