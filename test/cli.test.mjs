// The train, eval, test and models commands as a user runs them (bin/segtool in a child
// process), and their errors: unknown keys suggest the nearest, missing files are named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultConfig, mergeConfig, saveConfig } from '../dist/index.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';
import { readSafetensors } from './helpers/safetensors.mjs';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'segtool-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

/** Runs bin/segtool; resolves with {code, stdout, stderr} whatever the exit status. */
async function segtool(...args) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/segtool', ...args], { env: { ...process.env, SEGTOOL_THREADS: '2' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

test('an unknown config key names the nearest one', async () => {
  const r = await segtool('train', '--cfg', 'resnet18dilated-ppm_deepsup', 'TRAIN.num_epochs', '2');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown key TRAIN\.num_epochs \(did you mean TRAIN\.num_epoch\?\)/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('a missing config or a misspelt bundled name is named, with a suggestion', async () => {
  let r = await segtool('eval', '--cfg', join(root, 'nothing.yaml'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /nothing\.yaml is neither a file nor a bundled config/);
  r = await segtool('train', '--cfg', 'resnet50dilated-ppm_deepsu');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /did you mean resnet50dilated-ppm_deepsup\?/);
});

test('missing weights, images and lists are named', async () => {
  let r = await segtool('eval', '--cfg', 'resnet18dilated-ppm_deepsup', 'DIR', join(root, 'nowhere'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /encoder_epoch_20\.pth and .*decoder_epoch_20\.pth not found/);
  r = await segtool('test', '--cfg', 'resnet18dilated-ppm_deepsup', '--imgs', join(root, 'missing.jpg'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /image or folder not found: .*missing\.jpg/);
  r = await segtool('test', '--cfg', 'resnet18dilated-ppm_deepsup');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--imgs/);
  // Results next to PNG inputs would replace them.
  const pictures = join(root, 'pictures');
  mkdirSync(pictures, { recursive: true });
  copyFileSync('test/fixtures/data/ADE_val_00001519.jpg', join(pictures, 'x.jpg'));
  await (await import('sharp')).default(join(pictures, 'x.jpg')).png().toFile(join(pictures, 'x.png'));
  r = await segtool('test', '--imgs', join(pictures, 'x.png'), '--result', pictures);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /would overwrite the input .*x\.png; choose another folder with --result/);
  r = await segtool('train', '--cfg', 'resnet18dilated-ppm_deepsup', 'DATASET.list_train', join(root, 'none', 'train.odgt'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /DATASET\.list_train: .*train\.odgt not found/);
});

test('models lists architectures, configs and the input', async () => {
  const r = await segtool('models', '--json');
  assert.equal(r.code, 0);
  const listing = JSON.parse(r.stdout);
  assert.equal(listing.configs.length, 9, "the reference's seven and the seed's two baseline-* models");
  assert.ok(listing.encoders.some((e) => e.name === 'resnet50dilated' && e.channels === 2048));
  assert.ok(listing.decoders.some((d) => d.name === 'ppm_deepsup' && d.deepSupervision));
  assert.deepEqual(listing.input.normalization.imagenet.mean, [0.485, 0.456, 0.406]);
  const text = await segtool('models');
  assert.match(text.stdout, /resnet50-upernet +resnet50 \+ upernet/);
});

test('train, eval and test from the command line', async () => {
  const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 8, val: 2, width: 48, seed: 5 });
  const dir = join(root, 'ckpt');
  const cfgPath = join(root, 'tiny.yaml');
  await saveConfig(
    mergeConfig(defaultConfig(), {
      DIR: dir,
      DATASET: { root_dataset: dataset.root, list_train: dataset.trainList, list_val: dataset.valList, imgSizes: [48], imgMaxSize: 1000 },
      MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512, pretrained: false },
      TRAIN: { batch_size_per_gpu: 2, num_epoch: 1, epoch_iters: 2, disp_iter: 1, workers: 1, bn_momentum: 0.1 },
    }),
    cfgPath,
  );

  let r = await segtool('train', '--cfg', cfgPath, 'TRAIN.seed', '9');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Epoch: \[1\]\[0\/2\], Time: /m);
  assert.match(r.stdout, /^Epoch: \[1\]\[1\/2\], Time: /m);
  assert.match(r.stdout, /Saved .*encoder_epoch_1\.pth/);
  assert.ok(existsSync(join(dir, 'checkpoint_epoch_1.safetensors')));
  assert.match(readFileSync(join(dir, 'config.yaml'), 'utf8'), /seed: 9/, 'overrides reach DIR/config.yaml');

  r = await segtool('eval', '--cfg', join(dir, 'config.yaml'), 'VAL.checkpoint', 'epoch_1.pth', '--visualize');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[Eval Summary\]:\nMean IoU: \d\.\d{4}, Accuracy: \d+\.\d\d%, Inference Time: \d+\.\d{4}s/);
  assert.match(r.stdout, /^class \[\d+\], IoU: \d\.\d{4}/m);
  assert.ok(existsSync(join(dir, 'metrics_epoch_1.json')));
  assert.match(r.stdout, /^Confusion matrix: .*metrics_epoch_1_confusion\.png$/m);
  assert.ok(existsSync(join(dir, 'metrics_epoch_1_confusion.png')));
  assert.deepEqual(readdirSync(join(dir, 'result')).sort(), ['scene_00001.png', 'scene_00002.png']);

  // A folder with a sub-folder, a JPEG among PNGs: every image type, found recursively.
  const images = join(root, 'photos');
  mkdirSync(join(images, 'sub'), { recursive: true });
  copyFileSync(join(dataset.root, 'images', 'validation', 'scene_00001.png'), join(images, 'a.png'));
  copyFileSync(join(dataset.root, 'images', 'validation', 'scene_00002.png'), join(images, 'sub', 'b.PNG'));
  const sharp = (await import('sharp')).default;
  await sharp(join(images, 'a.png')).jpeg().toFile(join(images, 'c.jpg'));
  const out = join(root, 'out');
  r = await segtool('test', '--cfg', join(dir, 'config.yaml'), '--checkpoint', 'epoch_1.pth', '--imgs', images, '--result', out, '--confidence', '--probabilities');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Predictions in \[.*a\.png\]/);
  assert.match(r.stdout, /^ {2}\S.*: \d+\.\d\d%$/m);
  assert.match(r.stdout, /Segmented 3 image\(s\)/);
  for (const name of ['a', 'c', join('sub', 'b')]) {
    for (const suffix of ['.png', '_label.png', '_confidence.png', '_prob.safetensors']) {
      assert.ok(existsSync(join(out, name + suffix)), `${name}${suffix}`);
    }
  }
  const panel = readFileSync(join(out, 'a.png'));
  assert.equal(panel.readUInt32BE(16), 96, 'image | prediction');
  assert.ok(panel.readUInt32BE(20) > 48, 'with the legend of the classes found below');
  const probs = readSafetensors(join(out, 'a_prob.safetensors'));
  assert.deepEqual(probs.tensors.probabilities.shape, [150, 48, 48]);

  // --slide: the image at its own size by 32 x 32 crops every 16 pixels (mode 'slide').
  const slid = join(root, 'out-slide');
  r = await segtool('test', '--cfg', join(dir, 'config.yaml'), '--checkpoint', 'epoch_1.pth', '--imgs', join(images, 'a.png'), '--result', slid, '--slide', '32,16', '--probabilities');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Segmented 1 image\(s\)/);
  assert.deepEqual(readSafetensors(join(slid, 'a_prob.safetensors')).tensors.probabilities.shape, [150, 48, 48]);
  r = await segtool('test', '--cfg', join(dir, 'config.yaml'), '--checkpoint', 'epoch_1.pth', '--imgs', join(images, 'a.png'), '--result', slid, '--slide', '30');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /multiple of the model's output stride 8 \(e\.g\. 24 or 32\) for options\.crop but received 30/);
  r = await segtool('test', '--imgs', join(images, 'a.png'), '--slide', '32,x');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--slide must be CROP or CROP,STRIDE/);
});
