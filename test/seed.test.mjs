// The 2018 seed's command lines, its released baseline-* models and their input pipeline
// (issue 16): seed flags on train/eval/test, the run-folder name, the OpenCV resize, and the
// rough edges a user of the seed hits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { defaultConfig, loadConfig, mergeConfig, saveConfig, SegmentationModel } from '../dist/index.js';
import { saveReferenceWeights } from '../dist/checkpoint.js';
import { optionalValuesBeforeKeys } from '../dist/cli/common.js';
import { encodePng } from '../dist/eval/png.js';
import { findImages } from '../dist/segment.js';
import { train } from '../dist/train/index.js';
import { pythonFloat, resolveCommandConfig, seedDefaults, seedRunName } from '../dist/cli/seed.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';
import { cudaStatus } from '../dist/device.js';
import { decodeImage } from '../dist/data/decode.js';
import { resizeBilinear, resizeBilinearOpenCV } from '../dist/data/resize.js';

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

test("DATASET.resize 'opencv' computes what cv2.resize(INTER_LINEAR) computed (fixture from OpenCV 4.6)", async () => {
  const fixture = JSON.parse(readFileSync('test/fixtures/data/opencv-resize.json', 'utf8'));
  const rgb = await decodeImage(readFileSync(fixture.source), fixture.source, { decoder: 'sharp', exif: 'apply' });
  assert.equal(sha256(rgb.data), fixture.decoded_sha256, 'the decoder gives the pixels OpenCV resized');
  for (const c of fixture.cases) {
    const out = resizeBilinearOpenCV(rgb.data, rgb.width, rgb.height, 3, c.width, c.height);
    assert.deepEqual([...out.subarray(0, 12)], c.first, `${c.width}x${c.height} first pixels`);
    assert.equal(sha256(out), c.sha256, `${c.width}x${c.height}`);
    // PIL's antialiased filter is another function: the test could fail.
    assert.notEqual(sha256(resizeBilinear(rgb.data, rgb.width, rgb.height, 3, c.width, c.height)), c.sha256);
  }
});

// --- Seed command lines ----------------------------------------------------------------------

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'segtool-seed-'));
test.after(() => rmSync(root, { recursive: true, force: true }));
const bin = resolve('bin/segtool');

/** Runs bin/segtool in `cwd` (default: the seed layout's folder); {code, stdout, stderr} whatever the status. */
async function segtool(args, { cwd = join(root, 'seed'), env = {} } = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd, env: { ...process.env, SEGTOOL_THREADS: '1', ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

/** A small dataset laid out as the seed expects: ./data/train.odgt, ./data/validation.odgt. */
let layout;
async function seedLayout() {
  layout ??= (async () => {
    const dir = join(root, 'seed');
    await generateSyntheticDataset(join(dir, 'data'), { train: 4, val: 2, width: 48, seed: 5 });
    renameSync(join(dir, 'data', 'training.odgt'), join(dir, 'data', 'train.odgt'));
    return dir;
  })();
  return layout;
}

// A small network instead of the seed's resnet50_dilated8, on CPU, in seconds.
const SMALL = ['--arch_encoder', 'resnet18dilated', '--arch_decoder', 'c1_bilinear', '--fc_dim', '512'];
const SHORT = ['--num_epoch', '1', '--epoch_iters', '2', '--imgMaxSize', '64', '--workers', '1', '--disp_iter', '1'];
const NO_DOWNLOAD = ['MODEL.pretrained', 'false', 'TRAIN.bn_momentum', '0.1'];
const RUN = 'baseline-resnet18dilated-c1_bilinear-ngpus1-batchSize2-imgMaxSize64-paddingConst8-segmDownsampleRate8-LR_encoder1e-05-LR_decoder0.02-epoch1-decay0.0001-fixBN0';

test('pythonFloat and seedRunName print what train.py printed', () => {
  assert.deepEqual([0.02, 1e-4, 1e-5, 2.5e-7, 1, 0.9, 1e16, 123.5].map(pythonFloat), ['0.02', '0.0001', '1e-05', '2.5e-07', '1.0', '0.9', '1e+16', '123.5']);
  const cfg = seedDefaults('train');
  assert.equal(
    seedRunName('baseline', cfg, 8),
    'baseline-resnet50_dilated8-ppm_bilinear_deepsup-ngpus8-batchSize16-imgMaxSize1000-paddingConst8-segmDownsampleRate8-LR_encoder0.02-LR_decoder0.02-epoch20-decay0.0001-fixBN0',
  );
  // The seed's defaults, and the 2018 input pipeline.
  assert.deepEqual(cfg.DATASET.imgSizes, [300, 375, 450, 525, 600]);
  assert.equal(cfg.DATASET.list_train, './data/train.odgt');
  assert.equal(cfg.TRAIN.start_epoch, 0);
  assert.equal(cfg.DATASET.normalization, 'legacy-bgr');
  assert.equal(cfg.DATASET.resize, 'opencv');
  assert.deepEqual(seedDefaults('eval').DATASET.imgSizes, [450]);
  assert.deepEqual(seedDefaults('test').DATASET.imgSizes, [300, 400, 500, 600]);
});

test('the seed command lines: train names its run folder as train.py; eval --id and test --model_path find it', async () => {
  const dir = await seedLayout();
  let r = await segtool(['train', ...SMALL, ...SHORT, '--imgSize', '48', '40', '--lr_encoder', '1e-5', ...NO_DOWNLOAD]);
  assert.equal(r.code, 0, r.stderr);
  const runDir = join(dir, 'ckpt', RUN);
  assert.ok(existsSync(join(runDir, 'encoder_epoch_1.pth')), readdirSync(join(dir, 'ckpt')).join(', '));
  assert.ok(existsSync(join(runDir, 'decoder_epoch_1.pth')));
  const saved = readFileSync(join(runDir, 'config.yaml'), 'utf8');
  assert.match(saved, /imgSizes: \[48, 40\]/, '--imgSize takes several values');
  assert.match(saved, /list_train: "\.\/data\/train\.odgt"/);
  assert.match(saved, /normalization: "legacy-bgr"/);
  assert.match(saved, /resize: "opencv"/);
  assert.match(saved, /lr_encoder: 0?\.?1e-5|lr_encoder: 0\.00001/);

  r = await segtool(['eval', '--id', RUN, '--suffix', '_epoch_1.pth', ...SMALL, '--imgSize', '48', '--visualize', '--num_val', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Evaluating 1 images|\[Eval Summary\]/);
  assert.ok(existsSync(join(runDir, 'metrics_epoch_1.json')));
  assert.deepEqual(readdirSync(join(dir, 'result', RUN)), ['scene_00001.png'], '<result>/<id>/, --num_val 1');

  r = await segtool(['test', '--test_img', 'data/images/validation/scene_00002.png', '--model_path', join('ckpt', RUN), '--suffix', '_epoch_1.pth', ...SMALL, '--result', 'out']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(dir, 'out', 'scene_00002.png')));

  // A missing run folder is named.
  r = await segtool(['eval', '--id', 'nothing', ...SMALL]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ckpt\/nothing\/encoder_epoch_20\.pth/);
});

test('--num_gpus 2 without CUDA runs two CPU ranks and says so; the folder says ngpus2-batchSize4', { skip: cudaStatus().available && 'CUDA present' }, async () => {
  const dir = await seedLayout();
  const r = await segtool(['train', '--num_gpus', '2', '--id', 'two', ...SMALL, ...SHORT, '--imgSize', '48', ...NO_DOWNLOAD]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /no CUDA device: --num_gpus 2 runs 2 CPU ranks \(a batch of 2 x 2 = 4 images, BatchNorm synchronised/);
  assert.match(r.stdout, /with 2 ranks/);
  const name = 'two-resnet18dilated-c1_bilinear-ngpus2-batchSize4-imgMaxSize64-paddingConst8-segmDownsampleRate8-LR_encoder0.02-LR_decoder0.02-epoch1-decay0.0001-fixBN0';
  assert.ok(existsSync(join(dir, 'ckpt', name, 'encoder_epoch_1.pth')));
  const bad = await segtool(['train', '--num_gpus', '2', '--nproc', '2', ...SMALL]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--num_gpus and --nproc both say how many ranks/);
});

test('seed flags: validated under their own name, never together with an override of the same key; --cfg keeps its values', async () => {
  await seedLayout();
  let r = await segtool(['train', '--num_epoch', '-3']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--num_epoch/);
  r = await segtool(['train', '--arch_encoder', 'resnet50_dilated', '--num_epoch', '1']);
  assert.match(r.stderr, /--arch_encoder: expected one of .* for MODEL\.arch_encoder but received "resnet50_dilated" \(did you mean resnet50dilated\?\)/);
  r = await segtool(['train', '--lr_encoder', '0.1', 'TRAIN.lr_encoder', '0.2']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--lr_encoder and the override TRAIN\.lr_encoder 0\.2 both set TRAIN\.lr_encoder; give one/);
  r = await segtool(['eval', '--gpu', '0', '--gpu_id', '1', '--id', 'x']);
  assert.match(r.stderr, /--gpu_id and --gpu both set VAL\.device/);
  r = await segtool(['eval', '--suffix', 'epoch_20.pth', '--id', 'x']);
  assert.match(r.stderr, /--suffix/);
  r = await segtool(['eval', ...SMALL]);
  assert.match(r.stderr, /needs --id/);
  // --imgSize's values end at the first KEY: the rest are overrides; with --cfg the config's values stay.
  const cfgPath = join(root, 'mine.yaml');
  await saveConfig(mergeConfig(defaultConfig(), { DIR: join(root, 'mine'), TRAIN: { lr_decoder: 0.5 } }), cfgPath);
  const { cfg } = await resolveCommandConfig('train', { cfg: cfgPath, imgSize: ['320', '480'], lr_encoder: '0.25' }, ['TRAIN.num_epoch', '3'], 'unused');
  assert.deepEqual(cfg.DATASET.imgSizes, [320, 480]);
  assert.equal(cfg.TRAIN.lr_encoder, 0.25);
  assert.equal(cfg.TRAIN.lr_decoder, 0.5, 'the config\'s value, not the seed default');
  assert.equal(cfg.MODEL.arch_encoder, 'resnet50dilated');
  assert.equal(cfg.DATASET.normalization, 'imagenet');
  assert.equal(cfg.DIR, join(root, 'mine'));
  const split = await resolveCommandConfig('train', { imgSize: ['300', '400', 'TRAIN.num_epoch', '3'] }, [], 'unused');
  assert.deepEqual(split.cfg.DATASET.imgSizes, [300, 400]);
  assert.equal(split.cfg.TRAIN.num_epoch, 3);
});

test('segtool train --help shows the seed flags in their own group', async () => {
  const r = await segtool(['train', '--help'], { cwd: process.cwd() });
  assert.equal(r.code, 0);
  const at = r.stdout.indexOf('Seed flags');
  assert.ok(at > 0, r.stdout);
  const group = r.stdout.slice(at);
  for (const flag of ['--num_gpus', '--arch_encoder', '--imgSize <sizes...>', '--segm_downsampling_rate', '--ckpt', '--id']) assert.ok(group.includes(flag), flag);
  assert.ok(!r.stdout.slice(0, at).includes('--num_gpus'));
  const ev = await segtool(['eval', '--help'], { cwd: process.cwd() });
  for (const flag of ['--devices', '--device ', '--suffix', '--gpu_id', '--num_val']) assert.ok(ev.stdout.includes(flag), flag);
  const te = await segtool(['test', '--help'], { cwd: process.cwd() });
  for (const flag of ['--test_img', '--model_path']) assert.ok(te.stdout.includes(flag), flag);
});

// --- The 2018 released models, from a loopback mirror ----------------------------------------

const MODEL = 'baseline-resnet50_dilated8-ppm_bilinear_deepsup';
const served = new Map(); // URL path -> file on disk
const requests = [];
const server = createServer((req, res) => {
  requests.push(req.url);
  const file = served.get(req.url);
  if (!file) return res.writeHead(404).end('not found');
  res.writeHead(200, { 'content-length': statSync(file).size });
  createReadStream(file).pipe(res);
});
await new Promise((done) => server.listen(0, '127.0.0.1', done));
const mirror = `http://127.0.0.1:${server.address().port}/`;
test.after(() => server.close());

test('segtool download baseline-*: the seed\'s folders on the host, into the bundled config\'s DIR, with the 2018 pipeline; demo-test segments ADE_val_00001519.jpg', async () => {
  // Weights of the released architecture (procedural values: the real ones are 200 MB away).
  const weights = join(root, 'released');
  const model = await SegmentationModel.create({ encoder: 'resnet50_dilated8', decoder: 'ppm_bilinear_deepsup', fcDim: 2048, numClass: 150, init: 'procedural' });
  try {
    await saveReferenceWeights(model, weights, 20);
  } finally {
    model.dispose();
  }
  served.set(`/model/pytorch/${MODEL}/encoder_epoch_20.pth`, join(weights, 'encoder_epoch_20.pth'));
  served.set(`/model/pytorch/${MODEL}/decoder_epoch_20.pth`, join(weights, 'decoder_epoch_20.pth'));
  const cwd = join(root, 'released-run');
  mkdirSync(cwd, { recursive: true });
  const env = { SEGTOOL_CACHE: join(root, 'cache'), SEGTOOL_MIRROR: '' };

  // Offline (nothing served for the image yet): the three files and where they go.
  let r = await segtool(['demo-test', '--mirror', mirror], { cwd, env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /demo-test needs these three files/);
  for (const path of [`model/pytorch/${MODEL}/encoder_epoch_20.pth`, `model/pytorch/${MODEL}/decoder_epoch_20.pth`, 'data/ADEChallengeData2016/images/validation/ADE_val_00001519.jpg']) {
    assert.ok(r.stderr.includes(`${mirror}${path}\n    -> ${join(root, 'cache', ...path.split('/'))}`), path);
  }
  assert.ok(existsSync(join(cwd, 'ckpt', MODEL, 'encoder_epoch_20.pth')), 'the weights came before the image failed');

  served.set('/data/ADEChallengeData2016/images/validation/ADE_val_00001519.jpg', resolve('test/fixtures/data/ADE_val_00001519.jpg'));
  const before = requests.length;
  r = await segtool(['demo-test', '--mirror', mirror, '--result', 'out', 'DATASET.imgSizes', '64'], { cwd, env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /the 2018 pipeline: legacy-bgr normalisation, opencv resize/);
  assert.deepEqual(requests.slice(before), ['/data/ADEChallengeData2016/images/validation/ADE_val_00001519.jpg'], 'the weights from the cache');
  const panel = await (await import('sharp')).default(join(cwd, 'out', 'ADE_val_00001519.png')).metadata();
  assert.equal(panel.width, 768 * 2, 'image | prediction');
  assert.ok(panel.height > 512, 'the 512-row panel and a legend below it');
  assert.ok(existsSync(join(cwd, 'out', 'ADE_val_00001519_label.png')));

  // segtool download names the same folder; the config it goes with chooses the 2018 pipeline.
  r = await segtool(['download', MODEL, '--mirror', mirror, '--dir', 'elsewhere'], { cwd, env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /encoder_epoch_20\.pth already present/);
  assert.ok(existsSync(join(cwd, 'elsewhere', 'decoder_epoch_20.pth')));
  const cfg = await loadConfig(MODEL);
  assert.equal(cfg.DATASET.normalization, 'legacy-bgr');
  assert.equal(cfg.DATASET.resize, 'opencv');
  assert.equal(cfg.MODEL.arch_encoder, 'resnet50_dilated8');
  // ...and a key overrides it.
  assert.equal((await loadConfig(MODEL, ['DATASET.resize', 'pil'])).DATASET.resize, 'pil');
  const r101 = await loadConfig('baseline-resnet101_dilated8-ppm_bilinear_deepsup');
  assert.equal(r101.VAL.checkpoint, 'epoch_25.pth');
});

// --- Rough edges (issue 16): each fails without its fix -------------------------------------

test('segtool test: x.jpg and x.png in one folder get outputs of their own', async () => {
  const dir = join(root, 'same-stem');
  mkdirSync(dir, { recursive: true });
  const sharp = (await import('sharp')).default;
  copyFileSync('test/fixtures/data/ADE_val_00001519.jpg', join(dir, 'x.jpg'));
  await sharp(join(dir, 'x.jpg')).png().toFile(join(dir, 'x.png'));
  await sharp(join(dir, 'x.jpg')).png().toFile(join(dir, 'x-1.png')); // the first suffix is taken
  const found = await findImages([dir]);
  const stems = found.map((f) => f.name.replace(/\.[^.]+$/, ''));
  assert.equal(new Set(stems).size, 3, stems.join(', '));
  assert.deepEqual(stems.sort(), ['x', 'x-1', 'x-2']);
});

test('segtool eval on another list keeps the earlier metrics file; the same list replaces it', async () => {
  const dir = await seedLayout();
  const runDir = join(dir, 'ckpt', RUN);
  const first = readFileSync(join(runDir, 'metrics_epoch_1.json'), 'utf8');
  let r = await segtool(['eval', '--id', RUN, '--suffix', '_epoch_1.pth', ...SMALL, '--imgSize', '48', '--list_val', './data/train.odgt']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(runDir, 'metrics_epoch_1.json'), 'utf8'), first);
  assert.equal(JSON.parse(readFileSync(join(runDir, 'metrics_epoch_1-train.json'), 'utf8')).dataset.list, './data/train.odgt');
  assert.match(r.stdout, /metrics_epoch_1-train\.json/);
  r = await segtool(['eval', '--id', RUN, '--suffix', '_epoch_1.pth', ...SMALL, '--imgSize', '48', '--list_val', './data/train.odgt']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!existsSync(join(runDir, 'metrics_epoch_1-train-2.json')), 'the same list replaces its own file');
});

test('--resume without a value leaves the next KEY to the overrides', async () => {
  assert.deepEqual(optionalValuesBeforeKeys(['node', 'segtool', 'train', '--resume', 'TRAIN.num_epoch', '2']), ['node', 'segtool', 'train', '--resume=', 'TRAIN.num_epoch', '2']);
  assert.deepEqual(optionalValuesBeforeKeys(['train', '--resume', 'ckpt/x.safetensors', 'DIR', 'y']), ['train', '--resume', 'ckpt/x.safetensors', 'DIR', 'y']);
  const dir = await seedLayout();
  const runDir = join(dir, 'ckpt', RUN);
  const r = await segtool(['train', '--cfg', join(runDir, 'config.yaml'), '--resume', 'TRAIN.num_epoch', '2', 'TRAIN.workers', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Training epochs 2\.\.2 .*resumed from .*checkpoint_epoch_1\.safetensors/);
  assert.ok(existsSync(join(runDir, 'encoder_epoch_2.pth')));
});

test('segtool models marks the seed\'s names as aliases', async () => {
  const r = await segtool(['models', '--json'], { cwd: process.cwd() });
  const listing = JSON.parse(r.stdout);
  const encoder = (name) => listing.encoders.find((e) => e.name === name);
  assert.equal(encoder('resnet50_dilated8').aliasOf, 'resnet50dilated');
  assert.equal(encoder('resnet50dilated').aliasOf, undefined);
  assert.equal(listing.decoders.find((d) => d.name === 'ppm_bilinear_deepsup').aliasOf, 'ppm_deepsup');
  const text = await segtool(['models'], { cwd: process.cwd() });
  assert.match(text.stdout, /resnet101_dilated16 +2048 +alias of resnet101dilated16/);
});

test('the demo counts the classes that never occur instead of printing 139', async () => {
  const dir = join(root, 'demo');
  const r = await segtool(['demo', '--dir', dir, '--images', '4', '--val', '2', '--size', '48', '--epochs', '1', '--iters', '1', '--batch', '2', '--seed', '7'], { cwd: root });
  assert.equal(r.code, 0, r.stderr);
  const metrics = JSON.parse(readFileSync(join(dir, 'ckpt', 'metrics_epoch_1.json'), 'utf8'));
  const never = 150 - metrics.presentClasses;
  assert.match(r.stdout, new RegExp(`all 150 ADE20K classes \\(the reference's definition; ${never} never occur in these scenes\\)`));
});

test('configs: an empty file is refused; YAML anchors and aliases are YAML', async () => {
  const empty = join(root, 'empty.yaml');
  writeFileSync(empty, '# nothing yet\n\n');
  await assert.rejects(loadConfig(empty), (e) => e.code === 'ERR_CONFIG' && e.message.includes(`${empty} is empty`));
  const r = await segtool(['train', '--cfg', empty], { cwd: root });
  assert.match(r.stderr, /empty\.yaml is empty/);
  const anchors = join(root, 'anchors.yaml');
  writeFileSync(anchors, 'TRAIN:\n  lr_encoder: &lr 0.01\n  lr_decoder: *lr\nVAL: &runtime\n  batch_size: 1\nDIR: ckpt/anchors\n');
  const cfg = await loadConfig(anchors);
  assert.equal(cfg.TRAIN.lr_decoder, 0.01);
  writeFileSync(anchors, 'TRAIN:\n  lr_decoder: *nowhere\n');
  await assert.rejects(loadConfig(anchors), (e) => e.code === 'ERR_CONFIG' && /anchors\.yaml:2: invalid YAML: .*nowhere/.test(e.message));
});

test('errors name the key or flag the user wrote, not options.imgSizes[0], numClass or workers', async () => {
  for (const [args, expected] of [
    [['DATASET.imgSizes', '20000'], /DATASET\.imgSizes/],
    [['DATASET.num_class', '70000'], /DATASET\.num_class/],
    [['TRAIN.workers', '100'], /TRAIN\.workers/],
    [['--workers', '100'], /--workers/],
  ]) {
    const r = await segtool(['test', '--cfg', 'resnet18dilated-ppm_deepsup', '--imgs', 'test/fixtures/data/ADE_val_00001519.jpg', ...args], { cwd: process.cwd() });
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, expected, r.stderr);
    assert.doesNotMatch(r.stderr, /options\.|numClass|for workers/, r.stderr);
  }
});

test('segtool train | head -2: a closed stdout ends the output, never the training', async () => {
  const dir = await seedLayout();
  const runDir = join(dir, 'ckpt', RUN);
  const out = join(root, 'epipe');
  const child = spawn(process.execPath, [bin, 'train', '--cfg', join(runDir, 'config.yaml'), 'DIR', out, 'TRAIN.num_epoch', '2', 'TRAIN.workers', '1'], {
    cwd: dir,
    env: { ...process.env, SEGTOOL_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Read the first line, then go away as `head` does.
  await new Promise((done) => child.stdout.once('data', done));
  child.stdout.destroy();
  const code = await new Promise((done) => child.on('exit', done));
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE/);
  assert.ok(existsSync(join(out, 'encoder_epoch_2.pth')), 'trained to the end');
});

test('an all-unlabeled batch is named as such, not as a NaN loss to fix with the learning rate', async () => {
  const data = await generateSyntheticDataset(join(root, 'unlabeled'), { train: 2, val: 1, width: 32, seed: 3 });
  for (const name of readdirSync(join(data.root, 'annotations', 'training'))) {
    writeFileSync(join(data.root, 'annotations', 'training', name), await encodePng(new Uint8Array(32 * 32), 32, 32, { channels: 1 }));
  }
  const cfg = mergeConfig(defaultConfig(), {
    DIR: join(root, 'unlabeled-run'),
    DATASET: { root_dataset: data.root, list_train: data.trainList, list_val: data.valList, imgSizes: [32], imgMaxSize: 64 },
    MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512, pretrained: false },
    TRAIN: { batch_size_per_gpu: 2, num_epoch: 1, epoch_iters: 1, workers: 0 },
  });
  await assert.rejects(train(cfg), (e) => e.code === 'ERR_BAD_IMAGE' && /has no labelled pixel/.test(e.message) && /scene_00001\.png/.test(e.message) && !/lr_encoder/.test(e.message));
});
