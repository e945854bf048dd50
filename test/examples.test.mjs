// The examples run as a user runs them from the README (`node examples/NAME.mjs ...` in the
// package root, importing 'segtool'), on a tiny model and synthetic scenes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import sharp from 'sharp';
import { createTinyModel, pngHeaderOnly } from './helpers/tiny-model.mjs';

const tiny = await createTinyModel({ size: 32, scenes: 6 });
test.after(() => tiny.cleanup());
const env = { ...process.env, OMP_NUM_THREADS: '1', SEGTOOL_THREADS: '1' };

function run(args) {
  const result = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 120_000 });
  return { ...result, output: `${result.stdout}${result.stderr}` };
}

test('segment-image: writes the colourised PNG and prints the classes', async () => {
  const out = join(tiny.dir, 'scene.seg.png');
  const r = run(['examples/segment-image.mjs', tiny.image(1), '--config', tiny.config, '--weights', tiny.safetensors, '--out', out]);
  assert.equal(r.status, 0, r.output);
  assert.match(r.stdout, /scene_00001\.png: 32 x 32, \d+ ms; wrote .*scene\.seg\.png/);
  assert.match(r.stdout, /^ +\d+\.\d% +\S/m, 'a line per class');
  const meta = await sharp(readFileSync(out)).metadata();
  assert.deepEqual([meta.width, meta.height, meta.channels], [32, 32, 3]);

  const bad = run(['examples/segment-image.mjs', '/no/such.jpg', '--config', tiny.config, '--weights', tiny.safetensors]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /ERR_NOT_FOUND: image not found: \/no\/such\.jpg/);
  const usage = run(['examples/segment-image.mjs']);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /usage:/);
});

/** A side x side PNG (small file): its full-size prediction keeps the model busy for a while. */
const bigImage = (side = 1200) => sharp({ create: { width: side, height: side, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();

/** The service's Segmenter stats (GET /stats). */
const segmenterStats = async (base) => (await (await fetch(`${base}/stats`)).json()).segmenter;

/** Resolves once the service is running a request. */
async function untilActive(base) {
  for (const t0 = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 5))) {
    if ((await segmenterStats(base)).active >= 1) return;
    assert.ok(Date.now() - t0 < 30_000, 'a request started');
  }
}

/**
 * One try at a full queue: a `side` x `side` request runs, then `count` small ones are posted.
 * Resolves with the Segmenter's counts from the first /stats that shows every small one turned
 * away or queued while the big one still runs (with the responses to await), or with `raced`
 * when the big one finished first (the machine was quick for that size), once all are answered.
 */
async function fillQueue(service, side, small, count) {
  const before = await segmenterStats(service.base);
  const slow = service.post(await bigImage(side));
  await untilActive(service.base);
  const answers = Promise.all(Array.from({ length: count }, () => service.post(small)));
  for (;;) {
    const now = await segmenterStats(service.base);
    const rejected = now.rejected - before.rejected;
    if (now.completed + now.failed > before.completed + before.failed) {
      for (const r of [await slow, ...(await answers)]) await r.arrayBuffer();
      return { raced: true };
    }
    if (rejected + now.queued >= count) return { slow, answers, counts: { active: now.active, queued: now.queued, rejected } };
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts the service on a free port; resolves once it prints its URL. */
async function startService(args) {
  const child = spawn(process.execPath, ['examples/http-service.mjs', '--config', tiny.config, '--weights', tiny.safetensors, '--port', '0', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service = { child, stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (service.stdout += d));
  child.stderr.on('data', (d) => (service.stderr += d));
  service.base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed: ${service.stdout}${service.stderr}`)), 60_000);
    child.stdout.on('data', () => {
      const match = /listening on (http:\/\/\S+?)\/? /.exec(service.stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${service.stdout}${service.stderr}`)));
  });
  service.post = (body, type = 'image/png', query = '') =>
    fetch(`${service.base}/segment${query}`, { method: 'POST', body, headers: type ? { 'content-type': type } : {} });
  return service;
}

test('http-service: JSON and PNG answers, 415/400/413/404/405, then a graceful SIGTERM', async () => {
  const service = await startService(['--max-bytes', '200000', '--max-pixels', '4000000']);
  const { child, base, post } = service;
  try {
    const png = readFileSync(tiny.image(2));

    const ok = await post(png);
    assert.equal(ok.status, 200);
    const json = await ok.json();
    assert.equal(json.width, 32);
    assert.equal(json.height, 32);
    assert.equal(json.numClass, 150);
    assert.ok(json.classes.length > 0 && typeof json.classes[0].name === 'string' && json.classes[0].ratio > 0);

    const image = await post(png, 'application/octet-stream', '?format=png');
    assert.equal(image.status, 200);
    assert.equal(image.headers.get('content-type'), 'image/png');
    const meta = await sharp(Buffer.from(await image.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [32, 32]);

    const expectError = async (response, status, pattern) => {
      assert.equal(response.status, status);
      const body = await response.json();
      assert.match(body.error.message, pattern);
      assert.match(body.error.code, /^ERR_/);
    };
    await expectError(await post(png, 'text/plain'), 415, /content-type image\/\* or application\/octet-stream.*text\/plain/);
    await expectError(await post(png, ''), 415, /none/);
    await expectError(await post(Buffer.from('garbage')), 400, /not a supported image/);
    await expectError(await post(Buffer.alloc(0)), 400, /empty/);
    await expectError(await post(pngHeaderOnly(100_000, 100_000)), 413, /100000 x 100000.*maxPixels/);
    await expectError(await post(Buffer.alloc(300_000, 1)), 413, /larger than 200000 bytes/);
    await expectError(await post(png, 'image/png', '?format=gif'), 400, /format json or png/);
    await expectError(await fetch(`${base}/segment`), 405, /POST/);
    await expectError(await fetch(`${base}/nope`), 404, /No route/);
    const health = await fetch(`${base}/healthz`);
    assert.deepEqual(await health.json(), { ok: true });
    const stats = await (await fetch(`${base}/stats`)).json();
    assert.equal(stats.segmenter.completed, 2);
    assert.equal(stats.liveTensors, 0);

    // SIGTERM while a request runs (a 1200 x 1200 image: a second or more of full-size
    // prediction): it is answered, then the process exits 0.
    const inFlight = post(await bigImage());
    await untilActive(base);
    child.kill('SIGTERM');
    const last = await inFlight;
    assert.equal(last.status, 200);
    assert.equal((await last.json()).width, 1200);
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, `${service.stdout}${service.stderr}`);
    assert.match(service.stdout, /SIGTERM: answering \d request\(s\) \(grace 30000 ms\), then exiting\nstopped/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('http-service: a request over --timeout-ms is stopped and answered 503; after SIGTERM, --grace-ms bounds the wait and the running request is answered 503, not cut off', async () => {
  const service = await startService(['--timeout-ms', '30', '--grace-ms', '100']);
  const { child, base, post } = service;
  try {
    const big = await bigImage();
    const slow = await post(big);
    assert.equal(slow.status, 503);
    assert.match((await slow.json()).error.message, /time limit \(30 ms\)/);
    const ok = await post(readFileSync(tiny.image(2)));
    assert.equal(ok.status, 200, 'the service goes on');
    await ok.arrayBuffer();
  } finally {
    child.kill('SIGKILL');
  }
  const graceful = await startService(['--grace-ms', '100']);
  try {
    const inFlight = graceful.post(await bigImage());
    await untilActive(graceful.base);
    graceful.child.kill('SIGTERM');
    const answer = await inFlight;
    assert.equal(answer.status, 503);
    assert.match((await answer.json()).error.message, /shutting down/);
    const [code] = await once(graceful.child, 'exit');
    assert.equal(code, 0, `${graceful.stdout}${graceful.stderr}`);
  } finally {
    graceful.child.kill('SIGKILL');
  }
});

test('http-service: a bad setting is one clear line and exit status 1', () => {
  const r = run(['examples/http-service.mjs', '--config', tiny.config, '--weights', '/no/such.safetensors', '--port', '0']);
  assert.equal(r.status, 1, r.output);
  assert.match(r.stderr, /^ERR_NOT_FOUND: .*\/no\/such\.safetensors/m);
});

test('http-service: 503 with Retry-After when the queue is full, and it recovers', async () => {
  const service = await startService(['--max-queue', '1', '--concurrency', '1']);
  try {
    const png = readFileSync(tiny.image(3));
    // One runs, one may wait (--max-queue 1): of four more, three are turned away at once. That
    // is only so while the big one runs, so it is checked in a /stats taken while it does; a
    // machine that finished it before the four were in tries again with a bigger image.
    let full;
    for (const side of [1200, 1800, 2700]) {
      full = await fillQueue(service, side, png, 4);
      if (!full.raced) break;
    }
    assert.ok(!full.raced, 'a 2700 x 2700 request still ran when four small ones had been posted');
    assert.deepEqual(full.counts, { active: 1, queued: 1, rejected: 3 });
    const answers = await full.answers;
    assert.equal((await full.slow).status, 200);
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 503, 503, 503]);
    const busy = answers.find((r) => r.status === 503);
    assert.equal(busy.headers.get('retry-after'), '1');
    assert.match((await busy.json()).error.message, /queue is full/);
    assert.equal((await service.post(png)).status, 200, 'answers again once the queue drains');
    service.child.kill('SIGINT');
    const [code] = await once(service.child, 'exit');
    assert.equal(code, 0);
    assert.match(service.stdout, /SIGINT: answering/);
  } finally {
    service.child.kill('SIGKILL');
  }
});

test('fine-tune: trains a few iterations on a folder of images + label PNGs, saves weights, segments with them', () => {
  const out = join(tiny.dir, 'finetuned');
  const r = run([
    'examples/fine-tune.mjs', tiny.data.root, out, '--config', tiny.config, '--weights', tiny.pth[0], '--weights', tiny.pth[1],
    '--iters', '3', '--batch', '2', '--size', '32',
  ]);
  assert.equal(r.status, 0, r.output);
  assert.match(r.stdout, /Epoch: \[1\]\[0\/3\]/);
  assert.match(r.stdout, /trained 3 iterations in [\d.]+ s; weights: .*encoder_epoch_1\.pth, .*decoder_epoch_1\.pth/);
  assert.match(r.stdout, /scene_00001\.png: \S.*%/);
  for (const name of ['encoder_epoch_1.pth', 'decoder_epoch_1.pth', 'checkpoint_epoch_1.safetensors', 'config.yaml']) {
    assert.ok(existsSync(join(out, name)), name);
  }
});
