import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { makeFifo, release } from './helpers/special-files.mjs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BUNDLED_CONFIGS,
  CONFIG_KEYS,
  CONFIG_SPECS,
  ENCODER_CHANNELS,
  applyOverrides,
  bundledConfigPath,
  defaultConfig,
  findBundledConfig,
  flipProbability,
  loadConfig,
  mergeConfig,
  parseConfig,
  saveConfig,
  stringifyConfig,
  validateConfig,
} from '../dist/config/index.js';

/** Runs fn, expects a SegtoolError with `code` whose message contains every piece. */
function throwsConfig(fn, pieces, code = 'ERR_CONFIG') {
  let error;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error, 'expected an error');
  assert.equal(error.name, 'SegtoolError', error.stack);
  assert.equal(error.code, code, error.message);
  for (const piece of pieces) assert.ok(error.message.includes(piece), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(piece)}`);
  return error;
}

async function rejectsConfig(promise, pieces, code = 'ERR_CONFIG') {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  return throwsConfig(() => {
    if (error) throw error;
  }, pieces, code);
}

async function withTempDir(fn) {
  const dir = await mkdtemp(join(tmpdir(), 'segtool-config-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('defaults are the reference defaults', () => {
  const cfg = defaultConfig();
  assert.equal(cfg.DIR, 'ckpt/ade20k-resnet50dilated-ppm_deepsup');
  assert.deepEqual(cfg.DATASET.imgSizes, [300, 375, 450, 525, 600]);
  assert.equal(cfg.DATASET.num_class, 150);
  assert.equal(cfg.MODEL.arch_encoder, 'resnet50dilated');
  assert.equal(cfg.MODEL.fc_dim, 2048);
  assert.equal(cfg.TRAIN.lr_encoder, 0.02);
  assert.equal(cfg.TRAIN.weight_decay, 1e-4);
  assert.equal(cfg.TRAIN.start_epoch, 0);
  assert.equal(cfg.TRAIN.seed, 304);
  assert.equal(cfg.VAL.checkpoint, 'epoch_20.pth');
  assert.equal(cfg.TEST.result, './');
  // segtool's additions
  assert.equal(cfg.TRAIN.bn_momentum, 0.001);
  assert.equal(cfg.DATASET.normalization, 'imagenet');
  assert.equal(cfg.DATASET.resize, 'pil');
  assert.equal(cfg.DATASET.label_padding, 'ignore');
  assert.equal(cfg.MODEL.pretrained, true); // the reference's behaviour: an empty weights_encoder means ImageNet weights
  assert.equal(cfg.DATASET.class_info, '');
  // copies, not shared state
  cfg.DATASET.imgSizes.push(1);
  assert.deepEqual(defaultConfig().DATASET.imgSizes, [300, 375, 450, 525, 600]);
  // every key has a doc, and only segtool's own keys are marked
  const marked = CONFIG_KEYS.filter((k) => CONFIG_SPECS[k].segtool);
  const runtime = ['TRAIN', 'VAL', 'TEST'].flatMap((s) => ['device', 'precision', 'channels_last', 'cudnn_benchmark'].map((k) => `${s}.${k}`));
  assert.deepEqual(marked.sort(), ['DATASET.class_info', 'DATASET.label_padding', 'DATASET.normalization', 'DATASET.resize', 'MODEL.pretrained', 'TRAIN.bn_momentum', 'TRAIN.tensorboard', ...runtime].sort());
  for (const key of CONFIG_KEYS) assert.ok(CONFIG_SPECS[key].doc.length > 0, key);
});

const EXPECTED_BUNDLED = {
  'mobilenetv2dilated-c1_deepsup': ['mobilenetv2dilated', 'c1_deepsup', 320, 8, 8, 3, 20, 'epoch_20.pth'],
  'resnet18dilated-ppm_deepsup': ['resnet18dilated', 'ppm_deepsup', 512, 8, 8, 2, 20, 'epoch_20.pth'],
  'resnet50dilated-ppm_deepsup': ['resnet50dilated', 'ppm_deepsup', 2048, 8, 8, 2, 20, 'epoch_20.pth'],
  'resnet101dilated-ppm_deepsup': ['resnet101dilated', 'ppm_deepsup', 2048, 8, 8, 2, 25, 'epoch_25.pth'],
  'resnet50-upernet': ['resnet50', 'upernet', 2048, 32, 4, 2, 30, 'epoch_30.pth'],
  'resnet101-upernet': ['resnet101', 'upernet', 2048, 32, 4, 2, 40, 'epoch_50.pth'],
  hrnetv2: ['hrnetv2', 'c1', 720, 32, 4, 2, 30, 'epoch_30.pth'],
  // The 2018 seed's released models (config/baseline-*.yaml): test.py's scales, the 2018 pipeline.
  'baseline-resnet50_dilated8-ppm_bilinear_deepsup': ['resnet50_dilated8', 'ppm_bilinear_deepsup', 2048, 8, 8, 2, 20, 'epoch_20.pth'],
  'baseline-resnet101_dilated8-ppm_bilinear_deepsup': ['resnet101_dilated8', 'ppm_bilinear_deepsup', 2048, 8, 8, 2, 25, 'epoch_25.pth'],
};

test('every bundled config loads, by short name, full name and path', async () => {
  assert.deepEqual([...BUNDLED_CONFIGS].sort(), Object.keys(EXPECTED_BUNDLED).sort());
  for (const name of BUNDLED_CONFIGS) {
    const cfg = await loadConfig(name);
    const [encoder, decoder, fcDim, padding, rate, batch, epochs, checkpoint] = EXPECTED_BUNDLED[name];
    assert.equal(cfg.MODEL.arch_encoder, encoder, name);
    assert.equal(cfg.MODEL.arch_decoder, decoder, name);
    assert.equal(cfg.MODEL.fc_dim, fcDim, name);
    assert.equal(cfg.MODEL.fc_dim, ENCODER_CHANNELS[encoder], name);
    assert.equal(cfg.DATASET.padding_constant, padding, name);
    assert.equal(cfg.DATASET.segm_downsampling_rate, rate, name);
    assert.equal(cfg.TRAIN.batch_size_per_gpu, batch, name);
    assert.equal(cfg.TRAIN.num_epoch, epochs, name);
    assert.equal(cfg.VAL.checkpoint, checkpoint, name);
    assert.equal(cfg.TEST.checkpoint, checkpoint, name);
    // the reference's Python tuple `(300, 375, 450, 525, 600)`, `True`, `1e-4`
    const seed = name.startsWith('baseline-');
    assert.deepEqual(cfg.DATASET.imgSizes, seed ? [300, 400, 500, 600] : [300, 375, 450, 525, 600], name);
    assert.deepEqual([cfg.DATASET.normalization, cfg.DATASET.resize], seed ? ['legacy-bgr', 'opencv'] : ['imagenet', 'pil'], name);
    assert.equal(cfg.DATASET.random_flip, true, name);
    assert.equal(cfg.TRAIN.weight_decay, 1e-4, name);
    assert.equal(cfg.TRAIN.fix_bn, false, name);
    const file = seed ? name : `ade20k-${name}`;
    assert.equal(cfg.DIR, name === 'hrnetv2' ? 'ckpt/ade20k-hrnetv2-c1' : `ckpt/${file}`, name);
    const path = bundledConfigPath(name);
    assert.ok(path.endsWith(`config/${file}.yaml`), path);
    assert.deepEqual(await loadConfig(path), cfg);
    assert.deepEqual(await loadConfig(`${file}.yaml`), cfg);
  }
  assert.equal(findBundledConfig('ADE20K-HRNETV2'), 'hrnetv2');
  assert.equal(findBundledConfig('resnet50'), undefined);
});

test('unknown bundled names and missing files suggest the nearest', async () => {
  throwsConfig(() => bundledConfigPath('resnet50dilated-ppm_deepsp'), ['resnet50dilated-ppm_deepsp', 'did you mean resnet50dilated-ppm_deepsup?'], 'ERR_NOT_FOUND');
  await rejectsConfig(loadConfig('resnet18dilated-ppm'), ['resnet18dilated-ppm', 'did you mean resnet18dilated-ppm_deepsup?'], 'ERR_NOT_FOUND');
  await rejectsConfig(loadConfig('/nonexistent/x.yaml'), ['/nonexistent/x.yaml', 'bundled configs: mobilenetv2dilated-c1_deepsup'], 'ERR_NOT_FOUND');
});

test('overrides: KEY VALUE list parsed as YAML, typed by the default, merged last', async () => {
  const cfg = await loadConfig('resnet18dilated-ppm_deepsup', [
    'TRAIN.num_epoch', '3',
    'TRAIN.lr_encoder', '1e-3',
    'TRAIN.lr_decoder', '1', // an int where the default is a float is fine
    'TRAIN.fix_bn', 'True',
    'DATASET.imgSizes', '[128, 160]',
    'DATASET.imgMaxSize', '256',
    'DATASET.random_flip', '0.25',
    'MODEL.arch_decoder', 'C1_DeepSup', // the reference lower-cases names
    'MODEL.weights_encoder', 'ckpt/x/encoder_epoch_20.pth',
    'DIR', '2024', // string keys keep the text as it is
    'VAL.checkpoint', '"epoch_3.pth"', // quoted YAML strings are unquoted
    'TRAIN.num_epoch', '4', // later wins
  ]);
  assert.equal(cfg.TRAIN.num_epoch, 4);
  assert.equal(cfg.TRAIN.lr_encoder, 0.001);
  assert.equal(cfg.TRAIN.lr_decoder, 1);
  assert.equal(cfg.TRAIN.fix_bn, true);
  assert.deepEqual(cfg.DATASET.imgSizes, [128, 160]);
  assert.equal(cfg.DATASET.imgMaxSize, 256);
  assert.equal(cfg.DATASET.random_flip, 0.25);
  assert.equal(flipProbability(cfg), 0.25);
  assert.equal(cfg.MODEL.arch_decoder, 'c1_deepsup');
  assert.equal(cfg.MODEL.weights_encoder, 'ckpt/x/encoder_epoch_20.pth');
  assert.equal(cfg.DIR, '2024');
  assert.equal(cfg.VAL.checkpoint, 'epoch_3.pth');
  // untouched keys keep the file's values
  assert.equal(cfg.MODEL.fc_dim, 512);
  assert.equal(cfg.TRAIN.weight_decay, 1e-4);

  // the reference's tuple syntax and a single int both give a list
  assert.deepEqual(applyOverrides(cfg, ['DATASET.imgSizes', '(300, 400,)']).DATASET.imgSizes, [300, 400]);
  assert.deepEqual(applyOverrides(cfg, ['DATASET.imgSizes', '300']).DATASET.imgSizes, [300]);
  assert.equal(flipProbability(applyOverrides(cfg, ['DATASET.random_flip', 'false'])), 0);
  assert.equal(flipProbability(applyOverrides(cfg, ['DATASET.random_flip', 'true'])), 0.5);
  // object form with typed values (library callers)
  const typed = applyOverrides(cfg, { 'TRAIN.seed': 7, 'DATASET.imgSizes': [96], 'TRAIN.bn_momentum': '0.1' });
  assert.equal(typed.TRAIN.seed, 7);
  assert.deepEqual(typed.DATASET.imgSizes, [96]);
  assert.equal(typed.TRAIN.bn_momentum, 0.1);
  // the input config is not modified
  assert.equal(cfg.TRAIN.seed, 304);
});

test('unknown keys in a file name the key, the line, and the nearest known key', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'typo.yaml');
    await writeFile(path, 'DATASET:\n  num_class: 150\nTRAIN:\n  lr_encodr: 0.01\n');
    await rejectsConfig(loadConfig(path), [`${path}:4`, 'unknown key TRAIN.lr_encodr', 'did you mean TRAIN.lr_encoder?']);
  });
  throwsConfig(() => parseConfig('TRIAN:\n  num_epoch: 2\n', { source: 'a.yaml' }), ['a.yaml:1', 'unknown section TRIAN', 'did you mean TRAIN?']);
  // a key in the wrong section suggests where it lives
  throwsConfig(() => parseConfig('DATASET:\n  lr_encoder: 0.1\n'), ['unknown key DATASET.lr_encoder', 'did you mean TRAIN.lr_encoder?']);
  throwsConfig(() => parseConfig('dir: x\n'), ['unknown key dir', 'did you mean DIR?']);
  // older reference files used VAL.suffix
  throwsConfig(() => parseConfig('VAL:\n  suffix: "_epoch_20.pth"\n'), ['unknown key VAL.suffix']);
  // every problem of a file is reported at once
  const error = throwsConfig(() => parseConfig('TRAIN:\n  num_epoch: -1\n  lr_encodr: 1\nMODEL:\n  fc_dim: 0\n', { source: 'b.yaml' }), [
    '3 problems in b.yaml',
    'b.yaml:2: expected a positive integer for TRAIN.num_epoch but received -1',
    'b.yaml:3: unknown key TRAIN.lr_encodr',
    'b.yaml:5: expected a positive integer for MODEL.fc_dim but received 0',
  ]);
  assert.equal(error.message.split('\n').length, 4);
});

test('unknown keys in overrides name the key and suggest the nearest', async () => {
  await rejectsConfig(loadConfig('hrnetv2', ['TRAIN.lr_encodr', '0.1']), ['overrides', 'unknown key TRAIN.lr_encodr', 'did you mean TRAIN.lr_encoder?']);
  await rejectsConfig(loadConfig('hrnetv2', ['lr_encoder', '0.1']), ['unknown key lr_encoder', 'did you mean TRAIN.lr_encoder?']);
  await rejectsConfig(loadConfig('hrnetv2', ['train.num_epoch', '2']), ['unknown key train.num_epoch', 'did you mean TRAIN.num_epoch?']);
  await rejectsConfig(loadConfig('hrnetv2', ['TRAIN', '2']), ['TRAIN is a section', 'TRAIN.batch_size_per_gpu']);
  await rejectsConfig(loadConfig('hrnetv2', ['TRAIN.num_epoch']), ['"TRAIN.num_epoch" has no value']);
  throwsConfig(() => applyOverrides(defaultConfig(), { 'MODEL.fc_dimm': 512 }), ['unknown key MODEL.fc_dimm', 'did you mean MODEL.fc_dim?']);
});

test('bad values name the key, the value and what was expected', () => {
  const cfg = defaultConfig();
  const cases = [
    [['TRAIN.num_epoch', '0'], 'expected a positive integer for TRAIN.num_epoch but received 0'],
    [['TRAIN.num_epoch', '2.5'], 'expected a positive integer for TRAIN.num_epoch but received 2.5'],
    [['TRAIN.num_epoch', 'ten'], 'expected a positive integer for TRAIN.num_epoch but received "ten"'],
    [['TRAIN.start_epoch', '-1'], 'expected a non-negative integer for TRAIN.start_epoch but received -1'],
    [['TRAIN.lr_encoder', '-0.1'], 'expected a number >= 0 for TRAIN.lr_encoder but received -0.1'],
    [['TRAIN.beta1', '1'], 'expected a number in [0, 1) for TRAIN.beta1 but received 1'],
    [['TRAIN.bn_momentum', '2'], 'expected a number in [0, 1] for TRAIN.bn_momentum but received 2'],
    [['TRAIN.fix_bn', 'yes'], 'expected true or false for TRAIN.fix_bn but received "yes"'],
    [['TRAIN.optim', 'adam'], 'expected one of SGD for TRAIN.optim but received "adam"'],
    [['DATASET.imgSizes', '[300, -1]'], 'for DATASET.imgSizes but received [300,-1]'],
    [['DATASET.imgSizes', '[]'], 'for DATASET.imgSizes but received []'],
    [['DATASET.imgSizes', '(300, x)'], 'for DATASET.imgSizes but received "(300, x)"'],
    [['DATASET.random_flip', '1.5'], 'expected true, false or a probability in [0, 1] for DATASET.random_flip but received 1.5'],
    [['DATASET.normalization', 'bgr'], 'expected one of imagenet, legacy-bgr for DATASET.normalization but received "bgr"'],
    [['DATASET.label_padding', 'zero'], 'expected one of ignore, reference for DATASET.label_padding'],
    [['DATASET.list_train', ''], 'expected a non-empty string for DATASET.list_train but received ""'],
    [['MODEL.arch_encoder', 'resnet50dilted'], 'for MODEL.arch_encoder but received "resnet50dilted" (did you mean resnet50dilated?)'],
    [['MODEL.arch_decoder', 'ppm_deepsupp'], 'did you mean ppm_deepsup?'],
  ];
  for (const [overrides, piece] of cases) throwsConfig(() => applyOverrides(cfg, overrides), ['overrides', piece]);
  // file values are typed as written: a number where a string is expected must be quoted
  throwsConfig(() => parseConfig('DIR: 2024\n', { source: 'c.yaml' }), ['c.yaml:1: expected a non-empty string for DIR but received 2024', 'quote it']);
  throwsConfig(() => parseConfig('TRAIN: 3\n'), ['expected a mapping of keys under TRAIN but received 3']);
  throwsConfig(() => parseConfig('- a\n- b\n'), ['expected a mapping of sections']);
  throwsConfig(() => parseConfig('TRAIN:\n  seed: 1\n  seed: 2\n', { source: 'd.yaml' }), ['d.yaml:3', 'invalid YAML', 'unique']);
  throwsConfig(() => parseConfig('TRAIN: [1,\n'), ['invalid YAML']);
});

test('checks between keys: fc_dim must match the encoder, start_epoch <= num_epoch', async () => {
  await rejectsConfig(loadConfig('resnet50dilated-ppm_deepsup', ['MODEL.arch_encoder', 'resnet18dilated']), [
    'MODEL.fc_dim is 2048 but encoder resnet18dilated outputs 512 channels; set MODEL.fc_dim 512',
  ]);
  const ok = await loadConfig('resnet50dilated-ppm_deepsup', ['MODEL.arch_encoder', 'resnet18dilated', 'MODEL.fc_dim', '512']);
  assert.equal(ok.MODEL.fc_dim, 512);
  throwsConfig(() => applyOverrides(defaultConfig(), ['TRAIN.start_epoch', '21']), ['TRAIN.start_epoch (21) is after TRAIN.num_epoch (20)']);
  throwsConfig(() => parseConfig('MODEL:\n  arch_encoder: hrnetv2\n', { source: 'e.yaml' }), ['e.yaml: MODEL.fc_dim is 2048 but encoder hrnetv2 outputs 720']);
});

test('an empty file or empty section gives the defaults', () => {
  assert.deepEqual(parseConfig(''), defaultConfig());
  assert.deepEqual(parseConfig('# nothing\n'), defaultConfig());
  assert.deepEqual(parseConfig('VAL:\n'), defaultConfig());
});

test('save then load gives the identical config, and the file reads like the reference', async () => {
  await withTempDir(async (dir) => {
    for (const name of BUNDLED_CONFIGS) {
      const cfg = await loadConfig(name);
      const path = join(dir, name, 'config.yaml'); // folder created on demand
      await saveConfig(cfg, path);
      assert.deepEqual(await loadConfig(path), cfg, name);
    }
    const odd = await loadConfig('mobilenetv2dilated-c1_deepsup', [
      'DIR', 'ckpt/with "quotes" and: colon # hash',
      'DATASET.root_dataset', '',
      'DATASET.imgSizes', '[64]',
      'DATASET.random_flip', '0.3',
      'TRAIN.lr_encoder', '1.5e-7',
      'TRAIN.weight_decay', '0.00012345678901234',
      'TRAIN.bn_momentum', '0.1',
      'TRAIN.seed', '9007199254740991',
      'DATASET.normalization', 'legacy-bgr',
      'DATASET.label_padding', 'reference',
      'TEST.result', 'out/ünïcode',
    ]);
    const path = join(dir, 'odd.yaml');
    await saveConfig(odd, path);
    assert.deepEqual(await loadConfig(path), odd);
    const text = await readFile(path, 'utf8');
    assert.equal(text, stringifyConfig(odd));
    assert.match(text, /^DATASET:$/m);
    assert.match(text, /^ {2}imgSizes: \[64\]$/m);
    assert.match(text, /# segtool additions/);
    assert.ok(text.indexOf('bn_momentum') > text.indexOf('seed:'), 'segtool keys come after the reference keys');
  });
});

test('mergeConfig and validateConfig check whole objects', () => {
  const cfg = mergeConfig(defaultConfig(), { TRAIN: { num_epoch: 2 }, DIR: 'x' });
  assert.equal(cfg.TRAIN.num_epoch, 2);
  assert.equal(cfg.DIR, 'x');
  assert.deepEqual(validateConfig(cfg), cfg);
  throwsConfig(() => mergeConfig(defaultConfig(), { TRAIN: { num_epochs: 2 } }), ['unknown key TRAIN.num_epochs', 'did you mean TRAIN.num_epoch?']);
  throwsConfig(() => mergeConfig(defaultConfig(), { TRAINING: { num_epoch: 2 } }), ['unknown section TRAINING']);
  const broken = defaultConfig();
  delete broken.VAL.checkpoint;
  throwsConfig(() => validateConfig(broken), ['VAL.checkpoint is missing']);
  const bad = defaultConfig();
  bad.MODEL.fc_dim = '2048';
  throwsConfig(() => validateConfig(bad), ['expected a positive integer for MODEL.fc_dim but received "2048"']);
});

test('saveConfig refuses invalid configs', async () => {
  await withTempDir(async (dir) => {
    const bad = defaultConfig();
    bad.TRAIN.lr_encoder = -1;
    await rejectsConfig(saveConfig(bad, join(dir, 'config.yaml')), ['TRAIN.lr_encoder']);
  });
});

test('loadConfig reads regular files within SEGTOOL_MAX_CONFIG_BYTES only: a FIFO or an endless file is refused', { timeout: 30000 }, async () => {
  await withTempDir(async (dir) => {
    const fifo = makeFifo(dir, 'config.yaml');
    try {
      await assert.rejects(loadConfig(fifo), (e) => e.code === 'ERR_BAD_FILE' && /config .*config\.yaml is a FIFO \(named pipe\), not a regular file/.test(e.message));
    } finally {
      release(fifo);
    }
    const big = join(dir, 'big.yaml');
    await writeFile(big, `# ${'x'.repeat(2 * 2 ** 20)}\nDIR: a\n`);
    await assert.rejects(loadConfig(big), (e) => e.code === 'ERR_BAD_FILE' && /big\.yaml is \d+ bytes, over the limit of 1 MiB \(raise it with SEGTOOL_MAX_CONFIG_BYTES\)/.test(e.message));
  });
});

test('saveConfig replaces regular files only: a symlink is refused and left pointing where it did', async () => {
  await withTempDir(async (dir) => {
    const real = join(dir, 'elsewhere.yaml');
    await writeFile(real, 'mine\n');
    const link = join(dir, 'config.yaml');
    await symlink(real, link);
    await assert.rejects(saveConfig(defaultConfig(), link), (e) => e.code === 'ERR_BAD_FILE' && /config\.yaml: it is a symbolic link/.test(e.message));
    assert.equal(await readlink(link), real);
    assert.equal(await readFile(real, 'utf8'), 'mine\n');
  });
});
