// Class names and colours (DATASET.class_info): object150_info.csv and YAML/JSON lists read
// back, every malformed input a clear error, the defaults (ADE20K's for 150 classes, class_N
// and a generated palette otherwise), checkpoints that carry their classes, and custom names and
// colours end to end through evaluate(), `segtool test` and the Segmenter on a tiny 10-class
// model (mobilenetv2dilated + c1, procedural weights, 32 px, one scale, one LibTorch thread).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import {
  ADE20K_CLASS_NAMES,
  CLASS_INFO_MAX_BYTES,
  SegmentationModel,
  Segmenter,
  ade20kPalette,
  classInfoFromConfig,
  convertWeights,
  defaultClassInfo,
  defaultConfig,
  disposeAll,
  encodePng,
  evaluate,
  generatePalette,
  isSegtoolError,
  liveTensorCount,
  loadConfig,
  loadModel,
  loadTrainingCheckpoint,
  mergeConfig,
  readClassInfo,
  readClassInfoFromWeights,
  saveConfig,
  saveTrainingCheckpoint,
  segment,
  setNumThreads,
  train,
  writeWeights,
} from '../dist/index.js';
import { readSafetensors } from './helpers/safetensors.mjs';
import { TINY_MODEL } from './helpers/tiny-model.mjs';

setNumThreads(1);
const root = mkdtempSync(join(tmpdir(), 'segtool-classes-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const CSV = 'test/fixtures/data/object150_info.csv';

const code = (expected, pattern) => (error) => {
  assert.ok(isSegtoolError(error), `a SegtoolError, got ${error}`);
  assert.equal(error.code, expected, error.message);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

function file(name, text) {
  const path = join(root, name);
  writeFileSync(path, text);
  return path;
}

const colorOf = (palette, c) => [palette[3 * c], palette[3 * c + 1], palette[3 * c + 2]];

// ---------------------------------------------------------------------------------------------
// A 10-class model, its checkpoint and a tiny dataset (made before any test is registered: the
// runner starts tests, and would run test.after, while top-level awaits are still pending)

const SIZE = 32;
const NAMES = ['asphalt', 'gravel', 'lawn', 'hedge', 'pond', 'bench', 'lamp', 'bin', 'kerb', 'sign'];
const COLORS = NAMES.map((_, c) => [10 + 20 * c, 250 - 20 * c, (37 * c) % 256]);
const customYaml = file('garden.yaml', NAMES.map((n, c) => `- name: ${n}\n  color: [${COLORS[c].join(', ')}]\n`).join(''));
const customPalette = Uint8Array.from(COLORS.flat());
const classOf = (x, y) => ((x >> 2) + (y >> 3)) % 10;

const data = join(root, 'garden');
mkdirSync(join(data, 'images'), { recursive: true });
mkdirSync(join(data, 'annotations'), { recursive: true });
const odgt = [];
for (const i of [1, 2]) {
  const rgb = new Uint8Array(SIZE * SIZE * 3).map((_, k) => (k * (7 + i) + i * 31) & 255);
  const label = new Uint8Array(SIZE * SIZE).map((_, k) => 1 + classOf(k % SIZE, Math.floor(k / SIZE)));
  writeFileSync(join(data, 'images', `g${i}.png`), await encodePng(rgb, SIZE, SIZE, { channels: 3 }));
  writeFileSync(join(data, 'annotations', `g${i}.png`), await encodePng(label, SIZE, SIZE, { channels: 1 }));
  odgt.push(JSON.stringify({ fpath_img: `images/g${i}.png`, fpath_segm: `annotations/g${i}.png`, width: SIZE, height: SIZE }));
}
writeFileSync(join(data, 'val.odgt'), `${odgt.join('\n')}\n`);
const image = join(data, 'images', 'g1.png');

const model10 = await SegmentationModel.create({ encoder: TINY_MODEL.arch_encoder, decoder: TINY_MODEL.arch_decoder, numClass: 10, init: 'procedural', bnMomentum: 0.1 });
const plain = join(root, 'garden.safetensors');
const state = await model10.stateDict();
await writeWeights(plain, state);
disposeAll(state);
const trained = join(root, 'checkpoint_epoch_1.safetensors');
const custom = await readClassInfo(customYaml, 10);
await saveTrainingCheckpoint(trained, { model: model10, epoch: 1, iteration: 1, classes: custom });
model10.dispose();

/** The 10-class config; `extra` over it (class_info unset unless given). */
const config10 = (extra = {}) =>
  mergeConfig(defaultConfig(), {
    DIR: join(root, 'ckpt'),
    MODEL: { ...TINY_MODEL, pretrained: false },
    DATASET: { num_class: 10, imgSizes: [SIZE], imgMaxSize: 4 * SIZE, root_dataset: data, list_val: join(data, 'val.odgt'), ...extra },
  });

/** Every pixel of `rgb` (an RGB region of a decoded image) is palette[labels[i]]. */
function assertColoured(rgb, labels, palette, what) {
  for (let i = 0; i < labels.length; i++) {
    assert.deepEqual([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]], colorOf(palette, labels[i]), `${what}: pixel ${i} (class ${labels[i]})`);
  }
}

/** Columns [x0, x0 + w) of an RGB image as its own RGB array. */
async function crop(png, x0, w) {
  const { data: pixels, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(w * info.height * 3);
  for (let y = 0; y < info.height; y++) out.set(pixels.subarray((y * info.width + x0) * 3, (y * info.width + x0 + w) * 3), y * w * 3);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

test("the reference's object150_info.csv reads back as ADE20K's names and palette", async () => {
  const info = await readClassInfo(CSV, 150);
  assert.deepEqual(info.names, ADE20K_CLASS_NAMES);
  assert.deepEqual(info.palette, ade20kPalette());
  assert.equal(info.source, CSV);
});

test('a CSV of another count: first synonym, quoted fields, CRLF, a BOM, the header without Stuff; a generated palette', async () => {
  const path = file(
    'three.csv',
    '\ufeffIdx,Ratio,Train,Val,Name\r\n1,0.5,10,2,"road, paved;street"\r\n2,0.3,8,1,"the ""big"" tree"\r\n3,0.2,4,1,  sky ;heaven\r\n\r\n',
  );
  const info = await readClassInfo(path, 3);
  assert.deepEqual(info.names, ['road, paved', 'the "big" tree', 'sky']);
  assert.deepEqual(info.palette, generatePalette(3));
});

test('a YAML list and a JSON list with names and colours; {classes: [...]}; names only', async () => {
  const yaml = file('classes.yaml', '# my dataset\n- {name: background, color: [0, 0, 0]}\n- name: cat\n  color: "#FF8000"\n- name: dog\n  color: [1, 2, 3]\n');
  let info = await readClassInfo(yaml, 3);
  assert.deepEqual(info.names, ['background', 'cat', 'dog']);
  assert.deepEqual([...info.palette], [0, 0, 0, 255, 128, 0, 1, 2, 3]);
  assert.equal(info.source, yaml);

  const json = file('classes.json', JSON.stringify({ classes: [{ name: 'a', color: '#010203' }, { name: 'b', color: [4, 5, 6] }] }));
  info = await readClassInfo(json, 2);
  assert.deepEqual(info.names, ['a', 'b']);
  assert.deepEqual([...info.palette], [1, 2, 3, 4, 5, 6]);

  const names = file('names.yml', 'classes:\n  - wall\n  - name: sky\n');
  info = await readClassInfo(names);
  assert.deepEqual(info.names, ['wall', 'sky']);
  assert.deepEqual(info.palette, generatePalette(2), 'no colours: the generated palette');
});

test('every malformed class list is a clear error naming the file, the entry or line, and what was expected', async () => {
  const yaml = (name, text) => file(name, text);
  const cases = [
    // count
    [yaml('count.yaml', '- a\n- b\n'), 3, 'ERR_CONFIG', /count\.yaml lists 2 classes but DATASET\.num_class is 3/],
    // colours
    [yaml('hex.yaml', '- {name: a, color: "#fff"}\n- {name: b, color: "#000000"}\n'), 2, 'ERR_BAD_FILE', /hex\.yaml: entry 1 \(line 1\): expected "color" to be \[r, g, b\] \(integers 0-255\) or "#rrggbb" but received "#fff"/],
    [yaml('range.yaml', '- {name: a, color: [0, 0, 0]}\n- {name: b, color: [256, 0, 0]}\n'), 2, 'ERR_BAD_FILE', /range\.yaml: entry 2 \(line 2\): expected "color".*\[256,0,0\]/],
    [yaml('short.json', '[{"name": "a", "color": [1, 2]}]'), 1, 'ERR_BAD_FILE', /short\.json: entry 1 \(line 1\): expected "color"/],
    [yaml('mixed.yaml', '- {name: a, color: [1, 2, 3]}\n- {name: b}\n'), 2, 'ERR_BAD_FILE', /mixed\.yaml: entry 2 \(line 2\): no "color", but 1 other entries have one/],
    // names
    [yaml('noname.yaml', '- {name: a}\n- {color: [1, 2, 3]}\n'), 2, 'ERR_BAD_FILE', /noname\.yaml: entry 2 \(line 2\): the entry has no "name"/],
    [yaml('empty-name.yaml', '- name: "  "\n'), 1, 'ERR_BAD_FILE', /entry 1 \(line 1\): the name is empty/],
    [yaml('number-name.yaml', '- name: 7\n'), 1, 'ERR_BAD_FILE', /entry 1 \(line 1\): expected "name" to be a string but received 7/],
    [yaml('typo.yaml', '- {name: a, colour: [1, 2, 3]}\n'), 1, 'ERR_BAD_FILE', /entry 1 \(line 1\): unknown key "colour" \(did you mean "color"\?\)/],
    [yaml('top.yaml', 'clases: [a]\n'), 1, 'ERR_BAD_FILE', /top\.yaml: unknown key "clases" \(did you mean "classes"\?\)/],
    [yaml('scalar.yaml', '42\n'), 1, 'ERR_BAD_FILE', /scalar\.yaml: expected a list of \{name, color\} entries/],
    [yaml('empty.yaml', '[]\n'), 1, 'ERR_BAD_FILE', /empty\.yaml: the class list is empty/],
    [yaml('broken.yaml', '- {name: a\n- b\n'), 1, 'ERR_BAD_FILE', /broken\.yaml:\d+: not valid YAML\/JSON/],
    [yaml('broken.json', '[{"name": "a",}'), 1, 'ERR_BAD_FILE', /broken\.json:1: not valid YAML\/JSON/],
    // CSV
    [file('noheader.csv', 'Index,Label\n1,wall\n'), 1, 'ERR_BAD_FILE', /noheader\.csv:1: the header "Index,Label" has no Idx column/],
    [file('order.csv', 'Idx,Name\n1,wall\n3,sky\n'), 2, 'ERR_BAD_FILE', /order\.csv:3: Idx "3" but expected 2/],
    [file('fields.csv', 'Idx,Ratio,Name\n1,0.1,wall\n2,0.2,sky,blue\n'), 2, 'ERR_BAD_FILE', /fields\.csv:3: 4 fields but the header has 3 .*quote a name that holds a comma/],
    [file('noname.csv', 'Idx,Name\n1,wall\n2,;sky\n'), 2, 'ERR_BAD_FILE', /noname\.csv:3: class 2 has no name/],
    [file('quote.csv', 'Idx,Name\n1,"wall\n'), 1, 'ERR_BAD_FILE', /quote\.csv:2: a quoted field is not closed/],
    [file('header-only.csv', 'Idx,Name\n'), 1, 'ERR_BAD_FILE', /header-only\.csv: has a header but no classes/],
    [file('latin1.csv', Buffer.from('Idx,Name\n1,caf\xe9\n', 'latin1')), 1, 'ERR_BAD_FILE', /latin1\.csv is not UTF-8 text/],
    // files
    [file('classes.txt', 'wall\n'), 1, 'ERR_BAD_FILE', /classes\.txt is neither \.csv .* nor \.yaml, \.yml or \.json/],
    [join(root, 'missing.yaml'), 1, 'ERR_NOT_FOUND', /class_info: file not found: .*missing\.yaml/],
  ];
  for (const [path, numClass, errorCode, pattern] of cases) {
    await assert.rejects(readClassInfo(path, numClass), code(errorCode, pattern), path);
  }
});

test('only regular files of at most 1 MiB are read (folders, pipes and large files are refused)', async () => {
  const folder = join(root, 'folder.yaml');
  mkdirSync(folder);
  await assert.rejects(readClassInfo(folder, 1, { key: 'DATASET.class_info' }), code('ERR_BAD_FILE', /DATASET\.class_info: .*folder\.yaml is a folder; expected a regular file/));
  const fifo = join(root, 'pipe.csv');
  execFileSync('mkfifo', [fifo]);
  // O_NONBLOCK: no writer, yet the open returns and the pipe is refused.
  await assert.rejects(readClassInfo(fifo, 1), code('ERR_BAD_FILE', /pipe\.csv is a pipe; expected a regular file/));
  assert.equal(CLASS_INFO_MAX_BYTES, 1 << 20);
  const big = file('big.yaml', `- a\n${'#'.repeat(CLASS_INFO_MAX_BYTES)}\n`);
  await assert.rejects(readClassInfo(big, 1), code('ERR_BAD_FILE', /big\.yaml has 1048581 bytes; a class list may have at most 1048576/));
  const small = file('small.yaml', '- a\n- b\n');
  await assert.rejects(readClassInfo(small, 2, { maxBytes: 4 }), code('ERR_BAD_FILE', /at most 4/));
});

test('defaults: ADE20K for 150 classes; class_N and a deterministic, distinct, visible palette otherwise', () => {
  const ade = defaultClassInfo(150);
  assert.deepEqual(ade.names, ADE20K_CLASS_NAMES);
  assert.deepEqual(ade.palette, ade20kPalette());
  assert.equal(ade.source, 'ADE20K');
  const ten = defaultClassInfo(10);
  assert.deepEqual(ten.names, Array.from({ length: 10 }, (_, i) => `class_${i}`));
  assert.ok(!ten.names.includes('wall'));
  assert.equal(ten.source, 'generated');
  assert.deepEqual(ten.palette, defaultClassInfo(10).palette, 'deterministic');
  for (const n of [1, 2, 10, 151, 1000]) {
    const palette = generatePalette(n);
    const colours = new Set();
    for (let c = 0; c < n; c++) {
      const [r, g, b] = colorOf(palette, c);
      colours.add((r << 16) | (g << 8) | b);
      assert.ok(Math.max(r, g, b) >= 150, `class ${c} of ${n} is visible: ${[r, g, b]}`);
    }
    assert.equal(colours.size, n, `${n} distinct colours`);
  }
  // Neighbouring classes differ clearly.
  const p = generatePalette(10);
  for (let c = 1; c < 10; c++) {
    const d = colorOf(p, c).reduce((s, v, k) => s + Math.abs(v - colorOf(p, c - 1)[k]), 0);
    assert.ok(d > 100, `classes ${c - 1} and ${c} differ (${d})`);
  }
});

test('DATASET.class_info is a segtool config key; classInfoFromConfig checks DATASET.num_class', async () => {
  const list = file('cfg-classes.yaml', '- a\n- b\n');
  const cfgPath = join(root, 'cfg.yaml');
  await saveConfig(mergeConfig(defaultConfig(), { DATASET: { num_class: 2, class_info: list } }), cfgPath);
  assert.match(readFileSync(cfgPath, 'utf8'), /class_info: ".*cfg-classes\.yaml"/);
  const cfg = await loadConfig(cfgPath);
  assert.deepEqual((await classInfoFromConfig(cfg)).names, ['a', 'b']);
  await assert.rejects(classInfoFromConfig(await loadConfig(cfgPath, ['DATASET.num_class', '3'])), code('ERR_CONFIG', /DATASET\.class_info: .* lists 2 classes but DATASET\.num_class is 3/));
  assert.deepEqual((await classInfoFromConfig(defaultConfig())).names, ADE20K_CLASS_NAMES);
  await assert.rejects(loadConfig(cfgPath, ['DATASET.clas_info', 'x.csv']), code('ERR_CONFIG', /did you mean DATASET\.class_info/));
});

// ---------------------------------------------------------------------------------------------
// Checkpoints and end to end

test('training checkpoints carry their classes; convertWeights keeps them; other files have none', async () => {
  const stored = await readClassInfoFromWeights(trained);
  assert.deepEqual(stored.names, NAMES);
  assert.deepEqual(stored.palette, customPalette);
  assert.match(stored.source, /checkpoint_epoch_1\.safetensors \(metadata "classes"\)/);
  assert.deepEqual(JSON.parse(readSafetensors(trained).metadata.classes)[1], { name: 'gravel', color: COLORS[1] });
  const loaded = await loadTrainingCheckpoint(trained);
  assert.deepEqual(loaded.classes.names, NAMES);
  disposeAll(loaded.weights);
  disposeAll(loaded.momentum);
  loaded.torchRng?.dispose();
  assert.equal(await readClassInfoFromWeights(plain), undefined);
  const combined = join(root, 'combined.safetensors');
  await convertWeights([trained], combined);
  assert.deepEqual((await readClassInfoFromWeights(combined)).names, NAMES);
  const model = await SegmentationModel.create({ encoder: TINY_MODEL.arch_encoder, decoder: TINY_MODEL.arch_decoder, numClass: 10, init: 'procedural' });
  await assert.rejects(saveTrainingCheckpoint(join(root, 'bad.safetensors'), { model, epoch: 1, iteration: 1, classes: defaultClassInfo(150) }), code('ERR_INVALID_ARG', /classes has 150 classes but the model has 10/));
  model.dispose();
});

test('training stores the config\'s class list in its checkpoint (and a bad list fails before training)', async () => {
  const dir = join(root, 'train-run');
  const cfg = mergeConfig(config10({ class_info: customYaml, list_train: join(data, 'val.odgt') }), {
    DIR: dir,
    TRAIN: { batch_size_per_gpu: 1, num_epoch: 1, epoch_iters: 1, disp_iter: 1, workers: 0, bn_momentum: 0.1 },
  });
  const result = await train(cfg, { workers: 0 });
  const stored = await readClassInfoFromWeights(result.checkpoint);
  assert.deepEqual(stored.names, NAMES);
  assert.deepEqual(stored.palette, customPalette);
  const bad = mergeConfig(cfg, { DIR: join(root, 'train-bad'), DATASET: { class_info: file('bad-colour.yaml', '- {name: a, color: "#fff"}\n') } });
  await assert.rejects(train(bad, { workers: 0 }), code('ERR_BAD_FILE', /bad-colour\.yaml: entry 1 \(line 1\): expected "color"/));
});

test('evaluate: per-class names in the result and metrics JSON, panels in the custom palette; a 10-class model without a list says class_N', async () => {
  const resultDir = join(root, 'eval-result');
  const metricsFile = join(root, 'metrics.json');
  const result = await evaluate(config10({ class_info: customYaml }), { checkpoint: plain, visualize: true, resultDir, metricsFile, workers: 0 });
  assert.deepEqual(result.classes.map((c) => c.name), NAMES);
  assert.equal(result.classSource, customYaml);
  const metrics = JSON.parse(readFileSync(metricsFile, 'utf8'));
  assert.deepEqual(metrics.classes.map((c) => c.name), NAMES);
  assert.equal(metrics.dataset.classInfo, customYaml);
  // The panel is image | ground truth | prediction; the ground truth is known pixel by pixel.
  const panel = readFileSync(join(resultDir, 'g1.png'));
  const truth = Int32Array.from({ length: SIZE * SIZE }, (_, k) => classOf(k % SIZE, Math.floor(k / SIZE)));
  assertColoured(await crop(panel, SIZE, SIZE), truth, customPalette, 'ground truth panel');
  const model = await loadModel(config10({ class_info: customYaml }), { checkpoint: plain });
  const { labels } = await segment(model, image, { imgSizes: [SIZE] });
  model.dispose();
  assertColoured(await crop(panel, 2 * SIZE, SIZE), labels, customPalette, 'prediction panel');

  const bare = await evaluate(config10(), { checkpoint: plain, metricsFile: false, workers: 0 });
  assert.deepEqual(bare.classes.map((c) => c.name), Array.from({ length: 10 }, (_, i) => `class_${i}`));
  assert.equal(bare.classSource, 'generated');
});

test("weights that carry classes name them when the config has no class_info; the config's wins; a count that differs is an error naming both", async () => {
  const fromCheckpoint = await evaluate(config10(), { checkpoint: trained, metricsFile: false, workers: 0 });
  assert.deepEqual(fromCheckpoint.classes.map((c) => c.name), NAMES);
  const other = file('other.yaml', NAMES.map((n) => `- other_${n}\n`).join(''));
  const fromConfig = await evaluate(config10({ class_info: other }), { checkpoint: trained, metricsFile: false, workers: 0 });
  assert.equal(fromConfig.classes[0].name, 'other_asphalt');
  await assert.rejects(
    evaluate(config10({ num_class: 12 }), { checkpoint: trained, metricsFile: false, workers: 0 }),
    code('ERR_CHECKPOINT', /checkpoint_epoch_1\.safetensors \(metadata "classes"\) lists 10 classes but DATASET\.num_class is 12/),
  );
  await assert.rejects(
    evaluate(config10({ class_info: join(root, 'count.yaml') }), { checkpoint: trained, metricsFile: false, workers: 0 }),
    code('ERR_CONFIG', /DATASET\.class_info: .*count\.yaml lists 2 classes but DATASET\.num_class is 10/),
  );
});

test('segtool test prints the custom names and draws the custom palette', async () => {
  const cfgPath = join(root, 'garden-config.yaml');
  await saveConfig(config10({ class_info: customYaml }), cfgPath);
  const out = join(root, 'test-out');
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/segtool', 'test', '--cfg', cfgPath, '--checkpoint', plain, '--imgs', image, '--result', out], {
    env: { ...process.env, SEGTOOL_THREADS: '1' },
  });
  const printed = [...stdout.matchAll(/^ {2}(\S.*): \d+\.\d\d%$/gm)].map((m) => m[1]);
  assert.ok(printed.length > 0, stdout);
  for (const name of printed) assert.ok(NAMES.includes(name), `${name} is a custom name`);
  assert.doesNotMatch(stdout, /wall|class_\d/);
  // image | prediction, the prediction in the custom palette; the label PNG holds index + 1.
  const labelPixels = await sharp(join(out, 'g1_label.png')).extractChannel(0).raw().toBuffer();
  const labels = Int32Array.from(labelPixels, (v) => v - 1);
  assertColoured(await crop(readFileSync(join(out, 'g1.png')), SIZE, SIZE), labels, customPalette, 'segtool test panel');
  // Without a list: class_N names and a generated palette, never ADE20K's.
  const bare = join(root, 'bare-config.yaml');
  await saveConfig(config10(), bare);
  const r = await promisify(execFile)(process.execPath, ['bin/segtool', 'test', '--cfg', bare, '--checkpoint', plain, '--imgs', image, '--result', join(root, 'bare-out')], {
    env: { ...process.env, SEGTOOL_THREADS: '1' },
  });
  assert.match(r.stdout, /^ {2}class_\d: \d+\.\d\d%$/m);
  assert.doesNotMatch(r.stdout, /wall/);
});

test('Segmenter: classes[].name and png colours from the class list, the checkpoint, or an option', async () => {
  const before = liveTensorCount();
  const check = async (segmenter, names, palette) => {
    const result = await segmenter.segment(image, { outputs: ['labels', 'summary', 'png'] });
    assert.ok(result.classes.length > 0);
    for (const c of result.classes) assert.equal(c.name, names[c.classIndex]);
    const { data: rgb, info } = await sharp(result.png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    assertColoured(rgb, result.labels, palette, 'png');
  };
  let segmenter = await Segmenter.load({ config: config10({ class_info: customYaml }), weights: plain });
  assert.deepEqual(segmenter.classNames, NAMES);
  assert.equal(segmenter.classInfo.source, customYaml);
  await check(segmenter, NAMES, customPalette);
  await segmenter.close();

  segmenter = await Segmenter.load({ config: config10(), weights: trained }); // the checkpoint's list
  assert.deepEqual(segmenter.classNames, NAMES);
  await check(segmenter, NAMES, customPalette);
  await segmenter.close();

  segmenter = await Segmenter.load({ config: config10(), weights: plain }); // none: class_N, generated colours
  assert.equal(segmenter.classNames[0], 'class_0');
  await check(segmenter, defaultClassInfo(10).names, generatePalette(10));
  await segmenter.close();

  const option = { names: NAMES.map((n) => n.toUpperCase()), palette: Uint8Array.from(customPalette).reverse() };
  segmenter = await Segmenter.load({ config: config10(), weights: plain, classInfo: option, names: ['x', ...NAMES.slice(1)] });
  assert.equal(segmenter.classNames[0], 'x', 'names (the older option) still wins for names');
  await check(segmenter, ['x', ...NAMES.slice(1)], option.palette);
  await segmenter.close();

  segmenter = await Segmenter.load({ config: config10(), weights: plain, classInfo: customYaml });
  assert.deepEqual(segmenter.classNames, NAMES);
  await segmenter.close();

  await assert.rejects(Segmenter.load({ config: config10(), weights: plain, classInfo: { names: ['a'], palette: new Uint8Array(3) } }), code('ERR_INVALID_ARG', /options\.classInfo has 1 classes but the model has 10/));
  await assert.rejects(Segmenter.load({ config: config10(), weights: plain, classInfo: { names: NAMES, palette: new Uint8Array(3) } }), code('ERR_INVALID_ARG', /Expected 30 RGB bytes .* for options\.classInfo\.palette/));
  await assert.rejects(Segmenter.load({ config: config10(), weights: plain, classInfo: 7 }), code('ERR_INVALID_ARG', /options\.classInfo/));
  await assert.rejects(Segmenter.load({ config: config10({ num_class: 11 }), weights: trained }), code('ERR_CHECKPOINT', /lists 10 classes but DATASET\.num_class is 11/));
  assert.equal(liveTensorCount(), before, 'no tensor leaked');
});
