// Training starts where the reference starts: ImageNet-pretrained encoders fetched from a mirror
// (a loopback HTTP server serving files in the reference's layout, written by PyTorch), cached,
// mapped as the reference maps them; MODEL.pretrained false; weight files that mean the role they
// are given for, and every role-mismatch and duplicate-key error. Nothing contacts another address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultConfig, mergeConfig, isSegtoolError, SegmentationModel } from '../dist/index.js';
import { loadWeights, readWeights, saveReferenceWeights } from '../dist/checkpoint.js';
import { disposeAll } from '../dist/io/safetensors.js';
import { train } from '../dist/train/index.js';
import { checkImagenetFile } from '../dist/train/pretrained.js';
import { IMAGENET_CHECKPOINTS, imagenetCheckpointFor } from '../dist/imagenet.js';
import { ENCODER_NAMES } from '../dist/config/names.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';
import { writeImagenetFile } from './helpers/imagenet-files.mjs';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'segtool-pretrained-'));
const cache = join(root, 'cache');
process.env.SEGTOOL_CACHE = cache; // never the user's ~/.cache
delete process.env.SEGTOOL_MIRROR;
const served = join(root, 'mirror'); // the mirror's files, same paths as below the reference's host
const FOLDER = 'model/pretrained_resnet/';

/** Requests seen, by path. */
const requests = [];
const server = createServer((req, res) => {
  requests.push(req.url);
  const file = join(served, decodeURIComponent(req.url.split('?')[0]));
  if (!req.url.startsWith('/') || req.url.includes('..') || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'content-length': statSync(file).size });
  createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const mirror = `http://127.0.0.1:${server.address().port}/`;
test.after(() => {
  server.close();
  rmSync(root, { recursive: true, force: true });
});

const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 4, val: 2, width: 64, seed: 3 });

/** Serves `arch`'s ImageNet file on the mirror; returns its path. */
function serveImagenet(arch, options = {}) {
  const checkpoint = IMAGENET_CHECKPOINTS.find((c) => c.name === arch);
  mkdirSync(join(served, FOLDER), { recursive: true });
  return writeImagenetFile(arch, join(served, FOLDER, checkpoint.file), options);
}

/** A one-iteration run that changes no weight: zero learning rates, BatchNorm frozen (fix_bn). */
function zeroStepConfig(dir, model, extra = {}) {
  return mergeConfig(defaultConfig(), {
    DIR: join(root, dir),
    DATASET: {
      root_dataset: dataset.root, list_train: dataset.trainList, list_val: dataset.valList, imgSizes: [64], imgMaxSize: 1000,
      padding_constant: model.stride, segm_downsampling_rate: model.stride,
    },
    MODEL: { arch_encoder: model.encoder, arch_decoder: 'c1', fc_dim: model.fcDim, ...extra.MODEL },
    TRAIN: { batch_size_per_gpu: 2, num_epoch: 1, epoch_iters: 1, disp_iter: 1, workers: 0, lr_encoder: 0, lr_decoder: 0, fix_bn: true, seed: 5 },
  });
}

async function tensorsOf(path) {
  const tensors = await readWeights(path);
  const out = new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, data: Buffer.from(t.data().buffer.slice(0)) }]));
  disposeAll(tensors);
  return out;
}

test('every encoder has an ImageNet checkpoint; dilated and plain variants share one file', () => {
  for (const encoder of ENCODER_NAMES) assert.ok(imagenetCheckpointFor(encoder).file, encoder);
  assert.equal(imagenetCheckpointFor('resnet50dilated').file, 'resnet50-imagenet.pth');
  assert.equal(imagenetCheckpointFor('resnet50_dilated8').file, 'resnet50-imagenet.pth');
  assert.equal(imagenetCheckpointFor('resnet101').file, 'resnet101-imagenet.pth');
  assert.equal(imagenetCheckpointFor('resnext101dilated').file, 'resnext101-imagenet.pth');
  assert.equal(imagenetCheckpointFor('mobilenetv2dilated').file, 'mobilenet_v2.pth.tar');
  assert.equal(imagenetCheckpointFor('hrnetv2').file, 'hrnetv2_w48-imagenet.pth');
  assert.deepEqual(IMAGENET_CHECKPOINTS.filter((c) => c.strict).map((c) => c.name), ['resnet18', 'resnet50', 'resnet101']);
});

// One case per family: the reference's strictness differs (resnet strict; the others not), and
// so do the left-out keys (fc.*, classifier.*, MobileNetV2's features.18).
const FAMILIES = [
  { arch: 'resnet18', encoder: 'resnet18dilated', fcDim: 512, stride: 8, format: 'zip', leftOut: /left out fc\.\* \(2\)/, dropped: /^fc\./ },
  { arch: 'mobilenetv2', encoder: 'mobilenetv2dilated', fcDim: 320, stride: 8, format: 'legacy', leftOut: /left out features\.18\.\* \(9\), classifier\.1\.\* \(2\)/, dropped: /^(features\.18\.|classifier\.)/ },
  { arch: 'resnext101', encoder: 'resnext101', fcDim: 2048, stride: 32, format: 'zip', leftOut: /left out fc\.\* \(2\)/, dropped: /^fc\./ },
  { arch: 'hrnetv2', encoder: 'hrnetv2', fcDim: 720, stride: 4, format: 'zip', leftOut: /nothing left out/, dropped: /^$/ },
];

for (const family of FAMILIES) {
  test(`${family.encoder}: training starts from ${family.arch}'s ImageNet file, fetched once from the mirror; a zero-rate step saves it unchanged`, async () => {
    const file = serveImagenet(family.arch, { format: family.format, seed: 17 });
    const remote = `/${FOLDER}${IMAGENET_CHECKPOINTS.find((c) => c.name === family.arch).file}`;
    const cfg = zeroStepConfig(`zero-${family.arch}`, family);
    const logs = [];
    const before = requests.filter((r) => r === remote).length;
    const result = await train(cfg, { mirror, onEvent: (e) => e.type === 'log' && logs.push(e.line) });
    assert.equal(requests.filter((r) => r === remote).length, before + 1, 'downloaded once');
    const line = logs.find((l) => /starts from ImageNet weights/.test(l));
    assert.ok(line, logs.join('\n'));
    assert.match(line, family.leftOut);
    assert.match(line, new RegExp(`Encoder ${family.encoder} starts from ImageNet weights`));

    const original = await tensorsOf(file);
    const saved = await tensorsOf(result.weights.encoder);
    const expectedKeys = [...original.keys()].filter((k) => !family.dropped.test(k));
    assert.deepEqual([...saved.keys()].sort(), expectedKeys.sort());
    for (const key of expectedKeys) {
      assert.deepEqual(saved.get(key).shape, original.get(key).shape, key);
      assert.ok(saved.get(key).data.equals(original.get(key).data), `${key} differs from the ImageNet file`);
    }

    // Cached: a second run asks the mirror for nothing.
    const again = await train(zeroStepConfig(`zero-${family.arch}-again`, family), { mirror });
    assert.equal(requests.filter((r) => r === remote).length, before + 1, 'served from the cache');
    const cached = join(cache, FOLDER, IMAGENET_CHECKPOINTS.find((c) => c.name === family.arch).file);
    assert.ok(existsSync(cached));
    assert.match(readFileSync(`${cached}.sha256`, 'utf8'), /^[0-9a-f]{64}  /); // recorded: later corruption is found
    assert.ok(again.weights.encoder);
  });
}

test('MODEL.pretrained false: random weights, a warning, and no download', async () => {
  const family = FAMILIES[0];
  const cfg = zeroStepConfig('scratch', family, { MODEL: { pretrained: false } });
  const warnings = [];
  const before = requests.length;
  await train(cfg, { mirror, onEvent: (e) => e.type === 'warning' && warnings.push(e.message) });
  assert.equal(requests.length, before);
  assert.ok(warnings.some((w) => /MODEL\.pretrained is false/.test(w) && /published results need ImageNet-pretrained encoders/.test(w)), warnings.join('\n'));
});

test('offline: training stops at once, naming the file, the URL, where to put it and how to train from scratch', async () => {
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const deadMirror = `http://127.0.0.1:${closed.address().port}/`;
  await new Promise((resolve) => closed.close(resolve));
  const family = { encoder: 'resnet50dilated', fcDim: 2048, stride: 8 };
  const cfg = zeroStepConfig('offline', family);
  await assert.rejects(train(cfg, { mirror: deadMirror }), (e) => {
    assert.ok(isSegtoolError(e, 'ERR_DOWNLOAD'), e.stack);
    assert.match(e.message, /resnet50-imagenet\.pth/);
    assert.ok(e.message.includes(`${deadMirror}${FOLDER}resnet50-imagenet.pth`), e.message);
    assert.ok(e.message.includes(join(cache, FOLDER, 'resnet50-imagenet.pth')), e.message);
    assert.match(e.message, /MODEL\.pretrained false/);
    return true;
  });
  assert.ok(!existsSync(join(root, 'offline', 'encoder_epoch_1.pth')));
});

test('segtool train --mirror: the report line on stdout; the reference\'s own file as MODEL.weights_encoder is the encoder', async () => {
  const family = FAMILIES[0];
  const cfgPath = join(root, 'cli.yaml');
  const cfg = zeroStepConfig('cli', family);
  writeFileSync(cfgPath, JSON.stringify(cfg)); // JSON is YAML
  const env = { ...process.env, SEGTOOL_THREADS: '2', SEGTOOL_CACHE: cache };
  if (!existsSync(join(served, FOLDER, 'resnet18-imagenet.pth'))) serveImagenet('resnet18', { seed: 17 });
  const r = await run(process.execPath, ['bin/segtool', 'train', '--cfg', cfgPath, '--mirror', mirror], { env });
  assert.match(r.stdout, /Encoder resnet18dilated starts from ImageNet weights resnet18-imagenet\.pth \((cached|downloaded from \S+): \S+\): 207 tensors loaded, left out fc\.\* \(2\)/);

  // Given by the user under any name: loaded as the encoder with its head dropped, nothing fetched.
  const own = join(root, 'my-start.pth');
  writeImagenetFile('resnet18', own, { seed: 23 });
  const before = requests.length;
  const r2 = await run(process.execPath, ['bin/segtool', 'train', '--cfg', cfgPath, 'MODEL.weights_encoder', own, 'DIR', join(root, 'cli-own')], { env });
  assert.equal(requests.length, before);
  assert.match(r2.stdout, /MODEL\.weights_encoder: 207 tensors from .*my-start\.pth; left out fc\.\* \(2\)/);
  const saved = await tensorsOf(join(root, 'cli-own', 'encoder_epoch_1.pth'));
  const original = await tensorsOf(own);
  assert.ok(saved.get('layer4.1.conv2.weight').data.equals(original.get('layer4.1.conv2.weight').data));
});

test('the reference\'s strictness: a resnet file missing a tensor is refused; a mobilenet one loads what it has and says what is missing', async () => {
  const resnetFile = writeImagenetFile('resnet18', join(root, 'resnet18-missing.pth'), { drop: ['layer4.1.bn2.weight'] });
  await assert.rejects(checkImagenetFile(resnetFile, IMAGENET_CHECKPOINTS.find((c) => c.name === 'resnet18')), (e) =>
    isSegtoolError(e, 'ERR_CHECKPOINT') && /encoder\.layer4\.1\.bn2\.weight/.test(e.message) && /resnet18-missing\.pth/.test(e.message));
  const mobileFile = writeImagenetFile('mobilenetv2', join(root, 'mobilenet-missing.pth'), { drop: ['features.3.conv.1.weight'] });
  const report = await checkImagenetFile(mobileFile, IMAGENET_CHECKPOINTS.find((c) => c.name === 'mobilenetv2'));
  assert.ok(report.missing.includes('encoder.features.3.conv.1.weight'));
  assert.equal(report.files[0].imagenet, true);
  assert.equal(report.files[0].loaded, 458); // the encoder's 459 tensors but the one left out of the file
});

// Roles: a file given for a part is that part, whatever its name; a misfit is an error.
const roleDir = join(root, 'roles');
let parts;
test('roles: files named anything load for the role they are given; segtool forward --weights-encoder enc.pth matches the reference', async () => {
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', fcDim: 320, init: 'procedural' });
  const written = await saveReferenceWeights(model, roleDir, 0);
  model.dispose();
  parts = { encoder: join(roleDir, 'enc.pth'), decoder: join(roleDir, 'dec.pth') };
  renameSync(written.encoder, parts.encoder);
  renameSync(written.decoder, parts.decoder);
  const r = await run(process.execPath, [
    'bin/segtool', 'forward', '--encoder', 'mobilenetv2dilated', '--decoder', 'c1_deepsup',
    '--weights-encoder', parts.encoder, '--weights-decoder', parts.decoder,
    '--input', 'test/fixtures/models/mobilenetv2dilated-c1_deepsup.safetensors',
  ], { env: { ...process.env, SEGTOOL_THREADS: '2' } });
  assert.match(r.stdout, /MATCH/);
  assert.doesNotMatch(r.stdout, /MISMATCH/);

  // Without a role, a name that says neither part is still refused (and the message says how to give one).
  const fresh = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', fcDim: 320 });
  try {
    await assert.rejects(loadWeights(fresh, [parts.encoder, parts.decoder]), (e) => isSegtoolError(e, 'ERR_CHECKPOINT') && /--weights-encoder/.test(e.message));
    const report = await loadWeights(fresh, [{ path: parts.encoder, part: 'encoder' }, { path: parts.decoder, part: 'decoder' }]);
    assert.deepEqual(report.files.map((f) => [f.part, f.leftOut.length]), [['encoder', 0], ['decoder', 0]]);
  } finally {
    fresh.dispose();
  }
});

test('roles: a decoder file given as the encoder, weights of another architecture, and a tensor defined twice are errors that name the file, the role and the key', async () => {
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', fcDim: 320 });
  try {
    // The decoder given as the encoder (today this loaded nothing, silently).
    await assert.rejects(loadWeights(model, parts.decoder, { part: 'encoder', wholeModel: false }), (e) =>
      isSegtoolError(e, 'ERR_CHECKPOINT') && e.message.includes(parts.decoder) && /given as the encoder/.test(e.message) &&
      /expected keys such as features\.0\.0\.weight/.test(e.message) && /give it as --weights-decoder/.test(e.message));
    // And the other way round.
    await assert.rejects(loadWeights(model, parts.encoder, { part: 'decoder', wholeModel: false }), (e) =>
      isSegtoolError(e, 'ERR_CHECKPOINT') && /given as the decoder/.test(e.message) && /give it as --weights-encoder/.test(e.message));
    // Another architecture's ImageNet file: none of its names is a mobilenet tensor.
    const resnet = writeImagenetFile('resnet18', join(root, 'resnet18-for-mobilenet.pth'));
    await assert.rejects(loadWeights(model, resnet, { part: 'encoder', wholeModel: false }), (e) =>
      isSegtoolError(e, 'ERR_CHECKPOINT') && /resnet18-for-mobilenet\.pth was given as the encoder/.test(e.message) && /another architecture/.test(e.message));
    // Same names, other shapes: resnet50's file for resnet18's encoder.
    const r18 = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'c1', fcDim: 512 });
    try {
      const r50 = writeImagenetFile('resnet50', join(root, 'resnet50-for-resnet18.pth'));
      await assert.rejects(loadWeights(r18, r50, { part: 'encoder', wholeModel: false }), (e) =>
        isSegtoolError(e, 'ERR_CHECKPOINT') && /resnet50-for-resnet18\.pth: encoder\.\S+ has shape/.test(e.message));
    } finally {
      r18.dispose();
    }
    // A tensor defined twice (here: the same encoder file given twice).
    await assert.rejects(loadWeights(model, [{ path: parts.encoder, part: 'encoder' }, { path: parts.encoder, part: 'encoder' }]), (e) =>
      isSegtoolError(e, 'ERR_CHECKPOINT') && /encoder\.features\.0\.0\.weight is defined by both/.test(e.message));
    // Strict by default: one part's file with a tensor missing.
    await assert.rejects(loadWeights(model, [{ path: parts.encoder, part: 'encoder' }]), (e) =>
      isSegtoolError(e, 'ERR_CHECKPOINT') && /missing from the file: decoder\./.test(e.message));
    const partial = await loadWeights(model, [{ path: parts.encoder, part: 'encoder' }], { wholeModel: false });
    assert.equal(partial.files[0].loaded, 459);
  } finally {
    model.dispose();
  }
});

test('segtool download imagenet-<arch> fetches ahead of time into the cache training uses; a corrupted copy is fetched again', async () => {
  const file = serveImagenet('mobilenetv2', { seed: 29 });
  const downloadCache = join(root, 'download-cache');
  const env = { ...process.env, SEGTOOL_CACHE: downloadCache };
  const r = await run(process.execPath, ['bin/segtool', 'download', 'imagenet-mobilenetv2', '--mirror', mirror], { env });
  const cached = join(downloadCache, FOLDER, 'mobilenet_v2.pth.tar');
  assert.match(r.stdout + r.stderr, /mobilenet_v2\.pth\.tar: [\d.]+ MB from http:\/\/127\.0\.0\.1:\d+\/model\/pretrained_resnet\/mobilenet_v2\.pth\.tar, sha256 [0-9a-f]{64}/);
  assert.ok(readFileSync(cached).equals(readFileSync(file)));
  // Corrupt the cached copy: the next run notices (SHA-256 record) and fetches it again.
  const bytes = readFileSync(cached);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(cached, bytes);
  const again = await run(process.execPath, ['bin/segtool', 'download', 'imagenet-mobilenetv2', '--mirror', mirror], { env });
  assert.match(again.stdout + again.stderr, /no longer matched its SHA-256: corrupt, downloaded again/);
  assert.ok(readFileSync(cached).equals(readFileSync(file)));
  // A mirror serving another architecture's file under this name: refused, nothing kept.
  mkdirSync(join(served, 'wrong-mirror', FOLDER), { recursive: true });
  writeImagenetFile('resnet18', join(served, 'wrong-mirror', FOLDER, 'mobilenet_v2.pth.tar'));
  const wrongCache = join(root, 'wrong-cache');
  const wrong = await run(process.execPath, ['bin/segtool', 'download', 'imagenet-mobilenetv2', '--mirror', `${mirror}wrong-mirror/`], {
    env: { ...env, SEGTOOL_CACHE: wrongCache },
  }).catch((e) => e);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /served something that is not the expected file .*given as the encoder of mobilenetv2dilated/);
  assert.ok(!existsSync(join(wrongCache, FOLDER, 'mobilenet_v2.pth.tar')));
  // Unknown names list what there is.
  const unknown = await run(process.execPath, ['bin/segtool', 'download', 'imagenet-vgg16'], { env }).catch((e) => e);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /imagenet-resnet18, imagenet-resnet50, .*imagenet-hrnetv2/);
});
