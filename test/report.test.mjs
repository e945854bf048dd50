// Training and evaluation you can look at, end to end on a tiny generated dataset
// (resnet18dilated + c1, 64x64 scenes, MODEL.pretrained false): the live dashboard followed by a
// headless Chromium page while a short run trains; history.csv and the TensorBoard event files
// read back with this file's own TFRecord reader (its own CRC32C, its own protobuf decoding);
// evaluation's confusion matrix against label counts read from the annotation files, its heat
// map and the panels' legends; `segtool report` opened from disk in Chromium with no network.
// Screenshots stay in test/tmp/report/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { defaultConfig, mergeConfig, readOdgt } from '../dist/index.js';
import { train } from '../dist/train/index.js';
import { evaluate } from '../dist/eval/evaluate.js';
import { Dashboard } from '../dist/report/dashboard.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';

const CHROMIUM = '/usr/bin/chromium';
const noChromium = !existsSync(CHROMIUM) && `${CHROMIUM} is missing: bash scripts/setup.sh --test installs Debian's chromium`;
const shots = 'test/tmp/report';
const root = mkdtempSync(join(tmpdir(), 'segtool-report-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const dataset = await generateSyntheticDataset(join(root, 'data'), { train: 8, val: 3, width: 64, seed: 5 });
const NUM_CLASS = 150;
const EPOCH_ITERS = 3;
const cfg = mergeConfig(defaultConfig(), {
  DIR: join(root, 'run'),
  DATASET: { root_dataset: dataset.root, list_train: dataset.trainList, list_val: dataset.valList, imgSizes: [64], imgMaxSize: 1000 },
  MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'c1', fc_dim: 512, pretrained: false },
  TRAIN: { batch_size_per_gpu: 2, num_epoch: 2, epoch_iters: EPOCH_ITERS, disp_iter: 1, workers: 1, bn_momentum: 0.1, seed: 3, tensorboard: true },
  VAL: { checkpoint: 'epoch_2.pth' },
});

async function launch() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'segtool-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { browser, close: async () => { await browser.close(); rmSync(profile, { recursive: true, force: true }); } };
}

/** Pixels of a canvas that are not transparent (a chart drew something). */
function drawnPixels(page, id) {
  return page.evaluate((id) => {
    const canvas = document.getElementById(id);
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
    return n;
  }, id);
}

/** A screenshot that is not blank: many distinct colours and some spread. */
async function assertNotBlank(png, what) {
  mkdirSync(shots, { recursive: true });
  writeFileSync(join(shots, `${what}.png`), png);
  const stats = await sharp(png).stats();
  assert.ok(stats.channels.some((c) => c.stdev > 10), `${what}: the screenshot has contrast`);
  const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const colours = new Set();
  for (let i = 0; i < data.length && colours.size < 200; i += 3 * 7) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  assert.ok(colours.size >= 50, `${what}: the screenshot has ${colours.size} colours`);
}

// --- an independent reader of TensorBoard event files ---------------------------------------

/** CRC32C bit by bit (no table: independent of the writer's). */
function crc32c(bytes) {
  let crc = ~0 >>> 0;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return ~crc >>> 0;
}
const masked = (bytes) => {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
};

function readRecords(buffer) {
  const records = [];
  let at = 0;
  while (at < buffer.length) {
    const header = buffer.subarray(at, at + 8);
    const length = Number(buffer.readBigUInt64LE(at));
    if (buffer.readUInt32LE(at + 8) !== masked(header)) throw new Error(`bad length CRC at byte ${at}`);
    const data = buffer.subarray(at + 12, at + 12 + length);
    if (buffer.readUInt32LE(at + 12 + length) !== masked(data)) throw new Error(`bad data CRC at byte ${at}`);
    records.push(data);
    at += 16 + length;
  }
  return records;
}

/** Protocol-buffer fields of a message: [fieldNumber, wireType, value]. */
function fields(bytes) {
  const out = [];
  let at = 0;
  const varint = () => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = bytes[at++];
      value |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return value;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const [field, wire] = [key >> 3, key & 7];
    if (wire === 0) out.push([field, wire, varint()]);
    else if (wire === 1) { out.push([field, wire, Buffer.from(bytes.subarray(at, at + 8)).readDoubleLE(0)]); at += 8; }
    else if (wire === 5) { out.push([field, wire, Buffer.from(bytes.subarray(at, at + 4)).readFloatLE(0)]); at += 4; }
    else if (wire === 2) { const n = Number(varint()); out.push([field, wire, bytes.subarray(at, at + n)]); at += n; }
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}

/** Event -> { wallTime, step, fileVersion?, scalars: {tag: value} }. */
function decodeEvent(bytes) {
  const event = { step: 0, scalars: {} };
  for (const [field, , value] of fields(bytes)) {
    if (field === 1) event.wallTime = value;
    else if (field === 2) event.step = Number(value);
    else if (field === 3) event.fileVersion = Buffer.from(value).toString('utf8');
    else if (field === 5) {
      for (const [f, , v] of fields(value)) {
        if (f !== 1) continue;
        const parts = Object.fromEntries(fields(v).map(([k, , x]) => [k, x]));
        event.scalars[Buffer.from(parts[1]).toString('utf8')] = parts[2];
      }
    }
  }
  return event;
}

function readBoard(dir) {
  const files = readdirSync(dir).filter((n) => n.startsWith('events.out.tfevents.')).sort();
  return files.map((f) => readRecords(readFileSync(join(dir, f))).map(decodeEvent));
}

// --- the tests ------------------------------------------------------------------------------

let trained;

test('the live dashboard follows a short training run in Chromium, with sample predictions each epoch, and stops with it', { skip: noChromium }, async () => {
  const dashboard = await Dashboard.start(cfg, { port: 0, samples: 2 });
  assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const { browser, close } = await launch();
  try {
    const page = await browser.newPage();
    const external = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(dashboard.url) && !r.url().startsWith('data:')) external.push(r.url());
    });
    await page.goto(dashboard.url);
    await page.waitForFunction(() => document.body.dataset.rendered === 'true');
    // The page was made before training: everything it shows next came by server-sent events.
    assert.equal(await page.evaluate(() => document.body.dataset.iterations), '0');
    const statusBefore = await page.textContent('#status');

    trained = await train(cfg, { onEvent: dashboard.onEvent });
    assert.equal(trained.epoch, 2);
    await page.waitForFunction((n) => document.body.dataset.iterations === String(n), 2 * EPOCH_ITERS, { timeout: 120_000 });
    assert.notEqual(await page.textContent('#status'), statusBefore, 'the status line follows the run');
    // Sample predictions of the last epoch: panels served by the dashboard, loaded.
    await page.waitForFunction(
      () => {
        const imgs = [...document.querySelectorAll('#samples img')];
        return imgs.length === 2 && imgs.every((i) => i.src.includes('epoch=2') && i.complete && i.naturalWidth > 0);
      },
      null,
      { timeout: 300_000 },
    );
    assert.ok((await drawnPixels(page, 'chart-loss')) > 500, 'the loss chart is drawn');
    assert.ok((await drawnPixels(page, 'chart-epochs')) > 500, 'the epoch chart is drawn');
    assert.ok((await drawnPixels(page, 'chart-iou')) > 500, 'the IoU bars of the samples are drawn');
    assert.ok((await page.locator('#confusion svg rect').count()) > 1, 'the confusion matrix of the samples');
    assert.match(await page.textContent('#metrics-summary'), /sample image\(s\) after epoch 2/);
    await assertNotBlank(await page.screenshot({ fullPage: true }), 'dashboard');

    await dashboard.close('training done', { finishSamples: true });
    await page.waitForFunction(() => document.body.dataset.finished === 'true');
    assert.equal(await page.textContent('#status'), 'training done');
    assert.deepEqual(external, [], 'nothing but the dashboard was requested');
  } finally {
    await dashboard.close();
    await close();
  }
  await assert.rejects(fetch(dashboard.url), 'the server stopped with the run');
});

test('history.csv beside history.json, and TensorBoard event files read back record by record', async () => {
  trained ??= await train(cfg);
  const history = JSON.parse(readFileSync(join(cfg.DIR, 'history.json'), 'utf8'));
  const csv = readFileSync(join(cfg.DIR, 'history.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'epoch,iteration,loss,accuracy,lr_encoder,lr_decoder');
  assert.equal(csv.length, history.length + 1);
  assert.equal(history.length, 2 * EPOCH_ITERS);
  csv.slice(1).forEach((line, i) => {
    const h = history[i];
    assert.deepEqual(line.split(',').map(Number), [h.epoch, h.iteration, h.loss, h.accuracy, h.lrEncoder, h.lrDecoder]);
  });

  const files = readBoard(join(cfg.DIR, 'tensorboard'));
  const events = files.flat();
  assert.equal(files[0][0].fileVersion, 'brain.Event:2', 'each file starts with its version');
  const series = (tag) => events.filter((e) => tag in e.scalars).map((e) => [e.step, e.scalars[tag]]);
  assert.deepEqual(series('train/loss'), history.map((h) => [h.iteration, Math.fround(h.loss)]));
  assert.deepEqual(series('train/accuracy'), history.map((h) => [h.iteration, Math.fround(h.accuracy)]));
  assert.deepEqual(series('train/lr_encoder'), history.map((h) => [h.iteration, Math.fround(h.lrEncoder)]));
  assert.deepEqual(series('train/lr_decoder'), history.map((h) => [h.iteration, Math.fround(h.lrDecoder)]));
  assert.deepEqual(series('epoch/loss').map(([s]) => s), [EPOCH_ITERS, 2 * EPOCH_ITERS]);
  assert.ok(events.every((e) => e.wallTime > 1.6e9));
  // The reader checks what it reads: a flipped byte is caught.
  const name = readdirSync(join(cfg.DIR, 'tensorboard'))[0];
  const bytes = readFileSync(join(cfg.DIR, 'tensorboard', name));
  bytes[bytes.length - 6] ^= 1;
  assert.throws(() => readRecords(bytes), /bad data CRC/);
});

test('evaluate: the confusion matrix against the label counts of the annotation files; heat map; legends; val mIoU in TensorBoard', async () => {
  trained ??= await train(cfg);
  const resultDir = join(root, 'panels');
  const result = await evaluate(cfg, { visualize: true, resultDir, workers: 1 });
  // Ground truth counted here, from the PNG annotations (value - 1; 0 = unlabeled).
  const labelCounts = new Array(NUM_CLASS).fill(0);
  for (const record of await readOdgt(dataset.valList, { root: dataset.root })) {
    const { data } = await sharp(record.annotation).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    for (const v of data) if (v > 0) labelCounts[v - 1]++;
  }
  assert.equal(result.confusion.length, NUM_CLASS);
  assert.deepEqual(result.confusion.map((row) => row.reduce((a, b) => a + b, 0)), labelCounts, 'row sums = labeled pixels per class');
  assert.deepEqual(result.confusion.map((row, c) => row[c]), result.classes.map((c) => c.intersection), 'diagonal = intersections');
  assert.deepEqual(result.classes.map((c) => c.labeledPixels), labelCounts);
  const metrics = JSON.parse(readFileSync(result.metricsFile, 'utf8'));
  assert.deepEqual(metrics.confusion, result.confusion);
  assert.match(result.confusionFile, /metrics_epoch_2_confusion\.png$/);
  const heat = await sharp(result.confusionFile).stats();
  assert.ok(heat.channels[0].min < 100, 'the heat map has dark (confused or correct) cells');

  // Panels: image | ground truth | prediction, 64 high, with the legend below unless asked not to.
  const panel = await sharp(join(resultDir, 'scene_00001.png')).metadata();
  assert.equal(panel.width, 3 * 64);
  assert.ok(panel.height > 64 + 10, `legend below the panel (height ${panel.height})`);
  const plainDir = join(root, 'panels-plain');
  await evaluate(cfg, { visualize: true, resultDir: plainDir, legend: false, metricsFile: false, workers: 1 });
  assert.equal((await sharp(join(plainDir, 'scene_00001.png')).metadata()).height, 64);

  // `segtool eval` of DIR's epoch_2 weights: its scores at epoch 2's step in the run's TensorBoard log.
  const events = readBoard(join(cfg.DIR, 'tensorboard')).flat();
  const val = events.filter((e) => 'val/mIoU' in e.scalars);
  assert.equal(val.length, 1, 'one evaluation logged (the one with a metrics file and DIR weights)');
  assert.equal(val[0].step, 2 * EPOCH_ITERS);
  assert.equal(val[0].scalars['val/mIoU'], Math.fround(result.meanIoU));
  assert.equal(val[0].scalars['val/pixel_accuracy'], Math.fround(result.pixelAccuracy));
});

test('segtool report writes one self-contained page: curves, IoU bars, confusion matrix, panels, drawn in Chromium without a network', { skip: noChromium }, async () => {
  trained ??= await train(cfg);
  if (!existsSync(join(cfg.DIR, 'result'))) await evaluate(cfg, { visualize: true, workers: 1 });
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/segtool', 'report', cfg.DIR, '--samples', '2']);
  assert.match(stdout, /Wrote .*report\.html \(6 logged iteration\(s\) over 2 epoch\(s\), metrics .*metrics_epoch_2\.json, 2 panel\(s\)\)/);
  const file = join(cfg.DIR, 'report.html');
  const html = readFileSync(file, 'utf8');
  assert.ok(!/<script[^>]+src=|<link\b|<img[^>]+src="(?!data:)|url\(/.test(html), 'no resource loaded from elsewhere');
  const { browser, close } = await launch();
  try {
    const page = await browser.newPage();
    const requests = [];
    page.on('request', (r) => {
      if (!r.url().startsWith('data:')) requests.push(r.url());
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(file).href);
    await page.waitForFunction(() => document.body.dataset.rendered === 'true');
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, [pathToFileURL(file).href], 'only the file itself');
    assert.equal(await page.evaluate(() => document.body.dataset.iterations), '6');
    for (const id of ['chart-loss', 'chart-accuracy', 'chart-lr', 'chart-epochs', 'chart-iou']) {
      assert.ok((await drawnPixels(page, id)) > 500, `${id} is drawn`);
    }
    const bars = await page.evaluate(() => Chart.getChart('chart-iou').data.labels);
    const expected = JSON.parse(readFileSync(join(cfg.DIR, 'metrics_epoch_2.json'), 'utf8')).classes.filter((c) => c.union > 0).map((c) => c.name);
    assert.deepEqual([...bars].sort(), [...expected].sort(), 'one bar per class present, named');
    assert.ok((await page.locator('#confusion svg rect').count()) > expected.length, 'the heat map');
    assert.ok((await page.locator('#confusion svg text.pair').count()) > 0, 'the most-confused pairs');
    assert.equal(await page.locator('#samples img').count(), 2);
    assert.ok(await page.evaluate(() => [...document.querySelectorAll('#samples img')].every((i) => i.complete && i.naturalWidth > 0)));
    await assertNotBlank(await page.screenshot({ fullPage: true }), 'report');
  } finally {
    await close();
  }
});
