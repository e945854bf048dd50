import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { listFolder, parseOdgt, readOdgt, selectSamples, readImageSizes } from '../dist/data/index.js';
import { tempDir, writeDataset, DATASET_SIZES } from './helpers/data.mjs';
import { makeFifo, release } from './helpers/special-files.mjs';

const line = (i, extra = {}) => JSON.stringify({ fpath_img: `images/a${i}.jpg`, fpath_segm: `annotations/a${i}.png`, width: 10 + i, height: 20, ...extra });

test('odgt: paths resolve under root_dataset, sizes and line sources are kept', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const file = join(dir, 'train.odgt');
  writeFileSync(file, [0, 1, 2].map((i) => line(i)).join('\n') + '\n\n');
  const records = await readOdgt(file, { root: '/data/ade' });
  assert.equal(records.length, 3);
  assert.deepEqual(records[1], {
    image: '/data/ade/images/a1.jpg', annotation: '/data/ade/annotations/a1.png', width: 11, height: 20, source: `${file}:2`,
  });
  // Test lists have only fpath_img; absolute paths ignore the root (os.path.join semantics).
  const test = parseOdgt('{"fpath_img": "/abs/x.jpg"}\n{"fpath_img": "y.jpg"}', { root: '/r' });
  assert.deepEqual(test.map((r) => r.image), ['/abs/x.jpg', '/r/y.jpg']);
  assert.equal(test[0].annotation, undefined);
  assert.equal(parseOdgt('{"fpath_img": "y.jpg"}')[0].image, resolve('y.jpg'));
});

test('odgt: max_sample and start_idx/end_idx as the reference', () => {
  const records = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual(selectSamples(records, { maxSample: 4 }), [0, 1, 2, 3]);
  assert.deepEqual(selectSamples(records, { startIdx: 2, endIdx: 5 }), [2, 3, 4]);
  assert.deepEqual(selectSamples(records, { maxSample: 6, startIdx: 4, endIdx: 100 }), [4, 5]);
  assert.deepEqual(selectSamples(records, { maxSample: -1, startIdx: -1, endIdx: -1 }), records);
  assert.throws(() => selectSamples(records, { startIdx: 3 }), { code: 'ERR_INVALID_ARG', message: /endIdx/ });
  assert.throws(() => selectSamples(records, { startIdx: 5, endIdx: 2 }), { code: 'ERR_INVALID_ARG', message: /endIdx/ });
  assert.throws(() => selectSamples(records, { startIdx: 20, endIdx: 30 }), { code: 'ERR_INVALID_ARG', message: /select no samples/ });
  assert.throws(() => selectSamples(records, { maxSample: 1.5 }), { code: 'ERR_INVALID_ARG', message: /maxSample/ });
  assert.throws(() => selectSamples([], {}), { code: 'ERR_BAD_FILE', message: /no samples/ });
});

test('odgt: malformed lines name the file and line number', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const cases = [
    [`${line(0)}\n{"fpath_img": "x.jpg",\n`, /bad\.odgt:2: not a JSON object/],
    [`${line(0)}\n${line(1)}\n[1, 2]\n`, /bad\.odgt:3: expected a JSON object, got array/],
    [`${line(0)}\n{"fpath_segm": "a.png", "width": 3, "height": 4}\n`, /bad\.odgt:2: lacks the key fpath_img/],
    [`{"fpath_img": "a.jpg", "width": 3}\n`, /bad\.odgt:1: has width but lacks the key height/],
    [`{"fpath_img": "a.jpg", "width": "3", "height": 4}\n`, /bad\.odgt:1: width must be a positive integer, got "3"/],
    [`{"fpath_img": 7}\n`, /bad\.odgt:1: fpath_img must be a non-empty string/],
  ];
  const file = join(dir, 'bad.odgt');
  for (const [text, message] of cases) {
    writeFileSync(file, text);
    await assert.rejects(readOdgt(file), { code: 'ERR_BAD_FILE', message });
  }
});

test('odgt: missing and empty lists', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  await assert.rejects(readOdgt(join(dir, 'nope.odgt')), { code: 'ERR_NOT_FOUND', message: /list file not found: .*nope\.odgt/ });
  writeFileSync(join(dir, 'empty.odgt'), '\n\n');
  await assert.rejects(readOdgt(join(dir, 'empty.odgt')), { code: 'ERR_BAD_FILE', message: /empty\.odgt lists no samples/ });
});

test('folder layout: images/ + annotations/ with matching names, sizes read from headers', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  await writeDataset(dir, DATASET_SIZES.slice(0, 3), { format: 'jpeg' });
  const records = await listFolder(dir);
  assert.equal(records.length, 3);
  assert.equal(records[0].image, join(dir, 'images', 'img_000.jpg'));
  assert.equal(records[0].annotation, join(dir, 'annotations', 'img_000.png'));
  assert.deepEqual(records.map((r) => [r.width, r.height]), DATASET_SIZES.slice(0, 3));
  assert.equal((await listFolder(dir, { maxSample: 2 })).length, 2);
  // A flat folder of images: no annotations (test/inference).
  const flat = await listFolder(join(dir, 'images'), { readSizes: false });
  assert.equal(flat.length, 3);
  assert.equal(flat[0].annotation, undefined);
  assert.equal(flat[0].width, undefined);
  await readImageSizes(flat);
  assert.deepEqual([flat[2].width, flat[2].height], DATASET_SIZES[2]);
  // An image without its annotation.
  rmSync(join(dir, 'annotations', 'img_001.png'));
  await assert.rejects(listFolder(dir), { code: 'ERR_NOT_FOUND', message: /1 image\(s\) .* have no annotation .*img_001\.jpg/ });
  await assert.rejects(listFolder(join(dir, 'nothing-here')), { code: 'ERR_NOT_FOUND' });
  mkdirSync(join(dir, 'blank'));
  await assert.rejects(listFolder(join(dir, 'blank')), { code: 'ERR_BAD_FILE', message: /has no images/ });
  await assert.rejects(listFolder(dir, { subset: 'training' }), { code: 'ERR_NOT_FOUND', message: /training/ });
});

test('odgt: the list must be a regular file within SEGTOOL_MAX_LIST_BYTES; reading it can be aborted', { timeout: 30000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const fifo = makeFifo(dir, 'list.odgt');
  try {
    await assert.rejects(readOdgt(fifo), (e) => e.code === 'ERR_BAD_FILE' && /list file .*list\.odgt is a FIFO/.test(e.message));
  } finally {
    release(fifo);
  }
  await assert.rejects(readOdgt('/dev/zero'), (e) => e.code === 'ERR_BAD_FILE' && /\/dev\/zero is a character device/.test(e.message));
  const file = join(dir, 'train.odgt');
  writeFileSync(file, [0, 1, 2].map((i) => line(i)).join('\n'));
  process.env.SEGTOOL_MAX_LIST_BYTES = '100';
  try {
    await assert.rejects(readOdgt(file), (e) => e.code === 'ERR_BAD_FILE' && /train\.odgt is \d+ bytes, over the limit of 100 bytes \(raise it with SEGTOOL_MAX_LIST_BYTES\)/.test(e.message));
  } finally {
    delete process.env.SEGTOOL_MAX_LIST_BYTES;
  }
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(readOdgt(file, { signal: controller.signal }), (e) => e.code === 'ERR_ABORTED');
});
