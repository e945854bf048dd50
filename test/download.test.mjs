// Downloads and the download cache against a local HTTP server on 127.0.0.1 that serves fixture
// files, with Range support, a connection that breaks mid-file, a server that ignores Range, a
// server that stalls, a web page instead of a file, and a small ADE20K-layout zip. Nothing here
// contacts any other address; the cache is a temporary folder (SEGTOOL_CACHE), never ~/.cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { crc32, deflateRawSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { isSegtoolError, loadConfig } from '../dist/index.js';
import { downloadFile } from '../dist/download/fetch.js';
import { cachedPath, cacheRoot, fetchCached, mirrorBase, ORIGINAL_HOST, usingMirror } from '../dist/download/cache.js';
import { resolveWeightFiles } from '../dist/eval/weights.js';
import { readSampleList } from '../dist/data/list.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'segtool-download-'));
const cache = join(root, 'cache');
process.env.SEGTOOL_CACHE = cache;
delete process.env.SEGTOOL_MIRROR;
delete process.env.SEGTOOL_STALL_TIMEOUT;
const encoder = readFileSync('test/fixtures/checkpoints/legacy-cuda/encoder_epoch_20.pth');
const decoder = readFileSync('test/fixtures/checkpoints/legacy-cuda/decoder_epoch_20.pth');
/** The released-weights config whose architecture the fixture weights have. */
const CONFIG = 'mobilenetv2dilated-c1_deepsup';

/** path -> body; behaviour per path: 'ignore-range', 'cut' (first request breaks off), 'html', 'stall'. */
const files = new Map();
const behaviour = new Map();
const requests = [];
const stalled = [];
const server = createServer((req, res) => {
  requests.push({ url: req.url, range: req.headers.range });
  const body = files.get(req.url);
  const mode = behaviour.get(req.url);
  if (!body) {
    res.writeHead(404).end('not found');
    return;
  }
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (range && mode !== 'ignore-range') {
    const start = Number(range[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    res.end(body.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-length': body.length, 'content-type': mode === 'html' ? 'text/html' : 'application/octet-stream' });
  if (mode === 'cut') {
    behaviour.delete(req.url); // only the first request breaks off
    res.write(body.subarray(0, Math.floor(body.length / 3)), () => res.destroy());
    return;
  }
  if (mode === 'stall') {
    res.write(body.subarray(0, 1000)); // then nothing, until the test ends
    stalled.push(res);
    return;
  }
  res.end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;
test.after(() => {
  for (const res of stalled) res.destroy();
  server.close();
  rmSync(root, { recursive: true, force: true });
});

/** Serves `body` at `mirror` + `remotePath` (with an optional behaviour). */
function serve(mirror, remotePath, body, mode) {
  const path = `${new URL(mirror).pathname}${remotePath}`;
  files.set(path, body);
  if (mode) behaviour.set(path, mode);
  return path;
}

const requestsFor = (path) => requests.filter((r) => r.url === path);

/** Runs the CLI; `env` (an object as the last argument) adds to the environment. */
async function segtool(...args) {
  const env = typeof args.at(-1) === 'object' ? args.pop() : {};
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/segtool', ...args], { env: { ...process.env, SEGTOOL_MIRROR: '', SEGTOOL_CACHE: cache, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

test('download CONFIG: the released weights go through the cache into DIR, and are re-verified on every run', async () => {
  const mirror = `${base}/mirror/`;
  const enc = serve(mirror, `model/pytorch/ade20k-${CONFIG}/encoder_epoch_20.pth`, encoder);
  serve(mirror, `model/pytorch/ade20k-${CONFIG}/decoder_epoch_20.pth`, decoder);
  const dir = join(root, 'weights');
  let r = await segtool('download', CONFIG, '--mirror', mirror, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(join(dir, 'encoder_epoch_20.pth')), encoder);
  assert.deepEqual(readFileSync(join(dir, 'decoder_epoch_20.pth')), decoder);
  assert.ok(r.stdout.includes(`sha256 ${sha256(encoder)}`));
  const cached = join(cache, 'model', 'pytorch', `ade20k-${CONFIG}`, 'encoder_epoch_20.pth');
  assert.deepEqual(readFileSync(cached), encoder);
  assert.equal(readFileSync(`${cached}.sha256`, 'utf8'), `${sha256(encoder)}  encoder_epoch_20.pth\n`);
  assert.ok(!existsSync(`${cached}.part`) && !existsSync(`${cached}.lock`));

  // Already present: checked against the record, nothing downloaded (mirror without the trailing slash).
  let before = requests.length;
  r = await segtool('download', CONFIG, '--mirror', `${base}/mirror`, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /encoder_epoch_20\.pth already present \(.*sha256 ok\)/);
  assert.equal(requests.length, before, 'nothing downloaded again');

  // The cached copy flipped a byte (in place: DIR's hard link to it too): noticed, downloaded again, and DIR gets the good file.
  const bad = Buffer.from(readFileSync(cached));
  bad[bad.length >> 1] ^= 0xff;
  writeFileSync(cached, bad);
  before = requestsFor(enc).length;
  r = await segtool('download', CONFIG, '--mirror', mirror, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /no longer matched its SHA-256: corrupt, downloaded again/);
  assert.equal(requestsFor(enc).length, before + 1);
  assert.deepEqual(readFileSync(cached), encoder);
  assert.deepEqual(readFileSync(join(dir, 'encoder_epoch_20.pth')), encoder);

  // A different file in DIR (the user's own weights?) is named, never overwritten; once it is gone, the cache fills in.
  writeFileSync(join(dir, 'tmp'), Buffer.from('not the weights'));
  renameSync(join(dir, 'tmp'), join(dir, 'decoder_epoch_20.pth'));
  r = await segtool('download', CONFIG, '--mirror', mirror, '--dir', dir);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(`${join(dir, 'decoder_epoch_20.pth')} is not the released file (sha256 ${sha256(Buffer.from('not the weights'))}, the released one is ${sha256(decoder)})`));
  assert.equal(readFileSync(join(dir, 'decoder_epoch_20.pth'), 'utf8'), 'not the weights');
  rmSync(join(dir, 'decoder_epoch_20.pth'));
  before = requests.length;
  r = await segtool('download', CONFIG, '--mirror', mirror, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /decoder_epoch_20\.pth already present .*\(copied from the cache\)/);
  assert.equal(requests.length, before);
  assert.deepEqual(readFileSync(join(dir, 'decoder_epoch_20.pth')), decoder);
});

test('download names unknown configs, bad mirrors, missing files and files of another architecture', async () => {
  let r = await segtool('download', 'resnet18dilated-ppm_deepsu', '--mirror', base);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /did you mean resnet18dilated-ppm_deepsup\?/);
  r = await segtool('download', 'hrnetv2', '--mirror', 'ftp://example.invalid/');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--mirror/);
  r = await segtool('download', 'hrnetv2', '--mirror', `${base}/empty/`, '--dir', join(root, 'none'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /model\/pytorch\/ade20k-hrnetv2-c1\/encoder_epoch_30\.pth: HTTP 404/, 'the folder of DIR and the config\'s VAL.checkpoint (epoch_30.pth), where eval looks');
  assert.match(r.stderr, new RegExp(`from the mirror ${base}/empty/`));
  assert.ok(r.stderr.includes(`put it at ${join(cache, 'model', 'pytorch', 'ade20k-hrnetv2-c1', 'encoder_epoch_30.pth')}`));
  assert.doesNotMatch(r.stderr, /use a mirror/, 'a mirror failed: no advice to use one');

  // A mirror that answers with a web page instead of the file (another cache: the shared one has the file).
  serve(`${base}/html/`, `model/pytorch/ade20k-${CONFIG}/encoder_epoch_20.pth`, Buffer.from('<html>moved</html>'), 'html');
  r = await segtool('download', CONFIG, '--mirror', `${base}/html`, '--dir', join(root, 'html'), { SEGTOOL_CACHE: join(root, 'cache-html') });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`\\(the mirror ${base}/html/\\) served something that is not the expected file \\(removed it\\): .*not a checkpoint`));
  assert.ok(!existsSync(join(root, 'html', 'encoder_epoch_20.pth')));

  // Weights of another architecture under this config's name.
  serve(`${base}/other/`, 'model/pytorch/ade20k-resnet18dilated-ppm_deepsup/encoder_epoch_20.pth', encoder);
  r = await segtool('download', 'resnet18dilated-ppm_deepsup', '--mirror', `${base}/other/`, '--dir', join(root, 'other'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /was given as the encoder of resnet18dilated \+ ppm_deepsup \(150 classes\), but none of its 459 tensors .* is a resnet18dilated encoder tensor/);
  assert.ok(!existsSync(cachedPath('model/pytorch/ade20k-resnet18dilated-ppm_deepsup/encoder_epoch_20.pth')));
});

test('a partial file resumes with a Range request', async () => {
  files.set('/resume.pth', encoder);
  const dest = join(root, 'resume', 'encoder.pth');
  mkdirSync(join(root, 'resume'), { recursive: true });
  writeFileSync(`${dest}.part`, encoder.subarray(0, 1_000_000));
  const progress = [];
  const result = await downloadFile(`${base}/resume.pth`, dest, { onProgress: (p) => progress.push(p.received) });
  assert.equal(requests.at(-1).range, 'bytes=1000000-');
  assert.equal(result.resumedFrom, 1_000_000);
  assert.equal(result.bytes, encoder.length);
  assert.equal(result.sha256, sha256(encoder));
  assert.deepEqual(readFileSync(dest), encoder);
  assert.equal(progress[0], 1_000_000);
  assert.equal(progress.at(-1), encoder.length);
});

test('a broken connection leaves a .part that the next attempt completes', async () => {
  files.set('/cut.pth', decoder);
  behaviour.set('/cut.pth', 'cut');
  const dest = join(root, 'cut', 'decoder.pth');
  await assert.rejects(downloadFile(`${base}/cut.pth`, dest), (e) => isSegtoolError(e, 'ERR_DOWNLOAD') && /run again to resume/.test(e.message));
  assert.ok(!existsSync(dest));
  const partial = statSync(`${dest}.part`).size;
  assert.ok(partial > 0 && partial < decoder.length);
  const result = await downloadFile(`${base}/cut.pth`, dest, { checksum: { algorithm: 'sha256', hex: sha256(decoder) } });
  assert.equal(result.resumedFrom, partial);
  assert.deepEqual(result.verified, { algorithm: 'sha256', hex: sha256(decoder) });
  assert.deepEqual(readFileSync(dest), decoder);
});

test('a server that ignores Range makes the download start over', async () => {
  files.set('/norange.pth', decoder);
  behaviour.set('/norange.pth', 'ignore-range');
  const dest = join(root, 'norange', 'decoder.pth');
  mkdirSync(join(root, 'norange'), { recursive: true });
  writeFileSync(`${dest}.part`, Buffer.from('stale bytes from another file'));
  const result = await downloadFile(`${base}/norange.pth`, dest);
  assert.equal(result.resumedFrom, 0);
  assert.deepEqual(readFileSync(dest), decoder);
});

test('a checksum or size mismatch is an error and leaves no file behind', async () => {
  files.set('/wrong.pth', decoder);
  const dest = join(root, 'wrong', 'decoder.pth');
  await assert.rejects(downloadFile(`${base}/wrong.pth`, dest, { checksum: { algorithm: 'sha1', hex: '0'.repeat(40) } }), (e) =>
    isSegtoolError(e, 'ERR_BAD_FILE') && /sha1 is [0-9a-f]{40} but expected 0{40}/.test(e.message),
  );
  assert.ok(!existsSync(dest) && !existsSync(`${dest}.part`));
  await assert.rejects(downloadFile(`${base}/wrong.pth`, dest, { size: 12 }), (e) => isSegtoolError(e, 'ERR_BAD_FILE') && /expected 12/.test(e.message));
  await assert.rejects(downloadFile(`${base}/missing.pth`, dest), (e) => isSegtoolError(e, 'ERR_DOWNLOAD') && /HTTP 404/.test(e.message));
});

/** A zip of `entries` ([name, Buffer]), deflated, as the ADE20K archive. */
function zip(entries) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name);
    const packed = deflateRawSync(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, packed);
    centrals.push(central, nameBytes);
    offset += 30 + nameBytes.length + packed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

test('download ade20k: checked, extracted, listed as the reference\'s odgt files', async () => {
  const scenes = await generateSyntheticDataset(join(root, 'scenes'), { train: 2, val: 1, width: 32, height: 24, seed: 1 });
  const entries = [];
  for (const [subset, count, prefix] of [['training', 2, 'ADE_train'], ['validation', 1, 'ADE_val']]) {
    for (let i = 1; i <= count; i++) {
      const id = String(i).padStart(8, '0');
      entries.push([`ADEChallengeData2016/images/${subset}/${prefix}_${id}.png`, readFileSync(join(scenes.root, 'images', subset, `scene_0000${i}.png`))]);
      entries.push([`ADEChallengeData2016/annotations/${subset}/${prefix}_${id}.png`, readFileSync(join(scenes.root, 'annotations', subset, `scene_0000${i}.png`))]);
    }
  }
  serve(`${base}/ade/`, 'data/ADEChallengeData2016.zip', zip(entries));
  const dataDir = join(root, 'ade-data');

  // The mirror's archive is not the published one: the SHA-1 check catches it.
  let r = await segtool('download', 'ade20k', '--mirror', `${base}/ade`, '--data-dir', dataDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /sha1 is [0-9a-f]{40} but expected 219e1696abb36c8ba3a3afe7fb2f4b4606a897c7/);

  r = await segtool('download', 'ade20k', '--mirror', `${base}/ade`, '--data-dir', dataDir, '--no-verify');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(dataDir, 'ADEChallengeData2016', 'images', 'training', 'ADE_train_00000002.png')));
  const training = readFileSync(join(dataDir, 'training.odgt'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(training[0], {
    fpath_img: 'ADEChallengeData2016/images/training/ADE_train_00000001.png',
    fpath_segm: 'ADEChallengeData2016/annotations/training/ADE_train_00000001.png',
    width: 32,
    height: 24,
  });
  assert.equal(training.length, 2);
  assert.equal(readFileSync(join(dataDir, 'validation.odgt'), 'utf8').trim().split('\n').length, 1);
  assert.ok(existsSync(cachedPath('data/ADEChallengeData2016.zip')), 'the archive stays in the cache');
  assert.ok(!existsSync(join(dataDir, 'ADEChallengeData2016.zip')));
});

// --- fetchCached -------------------------------------------------------------------------

test('mirrorBase, usingMirror and cachedPath: one base URL, paths kept inside the cache', () => {
  assert.equal(mirrorBase(), ORIGINAL_HOST);
  assert.equal(usingMirror(), false);
  assert.equal(mirrorBase('https://example.org/segtool'), 'https://example.org/segtool/');
  assert.equal(usingMirror('http://sceneparsing.csail.mit.edu'), false);
  assert.throws(() => mirrorBase('ftp://example.org/'), (e) => isSegtoolError(e, 'ERR_INVALID_ARG') && /--mirror but received "ftp:/.test(e.message));
  process.env.SEGTOOL_MIRROR = 'not a url';
  try {
    assert.throws(() => mirrorBase(), (e) => isSegtoolError(e, 'ERR_INVALID_ARG') && /SEGTOOL_MIRROR but received "not a url"/.test(e.message));
    assert.equal(mirrorBase('http://example.org/'), 'http://example.org/', '--mirror wins over SEGTOOL_MIRROR');
  } finally {
    delete process.env.SEGTOOL_MIRROR;
  }
  assert.equal(cacheRoot(), cache);
  assert.equal(cachedPath('model/x/y.pth'), join(cache, 'model', 'x', 'y.pth'));
  assert.equal(cachedPath('a.pth', { cacheDir: join(root, 'c2') }), join(root, 'c2', 'a.pth'));
  for (const bad of ['../x.pth', '/etc/passwd', 'a//b', 'a/./b', '']) {
    assert.throws(() => cachedPath(bad), (e) => isSegtoolError(e, 'ERR_INVALID_ARG') && /remotePath/.test(e.message), bad);
  }
});

test('fetchCached downloads once, records the SHA-256, and answers later calls from the cache', async () => {
  const mirror = `${base}/fc1/`;
  const path = serve(mirror, 'model/once.pth', decoder);
  let validated = 0;
  const validate = async () => void validated++;
  const first = await fetchCached('model/once.pth', { mirror, validate });
  assert.equal(first.path, join(cache, 'model', 'once.pth'));
  assert.equal(first.url, `${mirror}model/once.pth`);
  assert.equal(first.downloaded, true);
  assert.equal(first.sha256, sha256(decoder));
  assert.equal(first.bytes, decoder.length);
  assert.equal(readFileSync(`${first.path}.sha256`, 'utf8'), `${sha256(decoder)}  once.pth\n`);
  assert.equal(validated, 1);
  const second = await fetchCached('model/once.pth', { mirror, validate });
  assert.equal(second.downloaded, false);
  assert.equal(second.sha256, sha256(decoder));
  assert.equal(requestsFor(path).length, 1, 'the second call made no request');
  assert.equal(validated, 1, 'a recorded file is checked by its SHA-256, not validated again');
});

test('fetchCached resumes after a broken connection (Range) and says where a copy would go', async () => {
  const mirror = `${base}/fc2/`;
  const path = serve(mirror, 'model/cut.pth', encoder, 'cut');
  const file = cachedPath('model/cut.pth');
  await assert.rejects(fetchCached('model/cut.pth', { mirror }), (e) => {
    assert.ok(isSegtoolError(e, 'ERR_DOWNLOAD'), e.message);
    assert.match(e.message, /^Cannot download cut\.pth: Download of .* broke off at \d+ bytes/);
    assert.match(e.message, new RegExp(`the mirror ${mirror} failed: run again to resume`));
    assert.ok(e.message.includes(`put it at ${file}`));
    return true;
  });
  const partial = statSync(`${file}.part`).size;
  const result = await fetchCached('model/cut.pth', { mirror });
  assert.equal(requestsFor(path).at(-1).range, `bytes=${partial}-`);
  assert.equal(result.resumedFrom, partial);
  assert.deepEqual(readFileSync(file), encoder);
});

test('fetchCached notices a corrupted cached file and fetches it again', async () => {
  const mirror = `${base}/fc3/`;
  const path = serve(mirror, 'model/flip.pth', decoder);
  const { path: file } = await fetchCached('model/flip.pth', { mirror });
  const bad = readFileSync(file);
  bad[100] ^= 0x01;
  writeFileSync(file, bad);
  const again = await fetchCached('model/flip.pth', { mirror });
  assert.equal(again.downloaded, true);
  assert.equal(again.refetched, true);
  assert.equal(requestsFor(path).length, 2);
  assert.deepEqual(readFileSync(file), decoder);
  assert.equal(readFileSync(`${file}.sha256`, 'utf8').slice(0, 64), sha256(decoder));
});

test('fetchCached refuses what fails validation: a mirror serving a web page', async () => {
  const mirror = `${base}/fc4/`;
  serve(mirror, 'model/page.pth', Buffer.from('<!doctype html><title>Moved</title>'), 'html');
  const validate = async (p) => {
    if (readFileSync(p).subarray(0, 2).toString() !== 'PK') throw new Error('not a zip');
  };
  await assert.rejects(fetchCached('model/page.pth', { mirror, validate }), (e) =>
    isSegtoolError(e, 'ERR_BAD_FILE') && e.message.includes(`${mirror}model/page.pth (the mirror ${mirror}) served something that is not the expected file (removed it): not a zip`),
  );
  const file = cachedPath('model/page.pth');
  assert.ok(!existsSync(file) && !existsSync(`${file}.part`) && !existsSync(`${file}.sha256`));
});

test('fetchCached offline: ERR_DOWNLOAD at once with the URL, the cache path and the hint', async () => {
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const mirror = `http://127.0.0.1:${closed.address().port}/`;
  await new Promise((resolve) => closed.close(resolve));
  const file = cachedPath('model/pretrained_resnet/resnet50-imagenet.pth');
  await assert.rejects(
    fetchCached('model/pretrained_resnet/resnet50-imagenet.pth', { mirror, offlineHint: 'Or train from scratch with MODEL.pretrained false.' }),
    (e) => {
      assert.ok(isSegtoolError(e, 'ERR_DOWNLOAD'), e.message);
      const lines = e.message.split('\n');
      assert.match(lines[0], /^Cannot download resnet50-imagenet\.pth: Cannot reach the mirror /);
      assert.ok(lines[0].includes(`${mirror}model/pretrained_resnet/resnet50-imagenet.pth`));
      assert.match(lines[0], /try another mirror/);
      assert.equal(lines[1], `To use a copy you already have, put it at ${file} (it is checked before use).`);
      assert.equal(lines[2], 'Or train from scratch with MODEL.pretrained false.');
      return true;
    },
  );
  assert.ok(!existsSync(`${file}.lock`));
});

test('a download that stalls fails after the stall timeout, naming it and what to do', async () => {
  const mirror = `${base}/fc5/`;
  serve(mirror, 'model/stall.pth', encoder, 'stall');
  await assert.rejects(fetchCached('model/stall.pth', { mirror, stallTimeoutMs: 300 }), (e) => {
    assert.ok(isSegtoolError(e, 'ERR_DOWNLOAD'), e.message);
    assert.match(e.message, /stalled: no data for 0\.3 s \(at 1000 bytes; the limit is SEGTOOL_STALL_TIMEOUT seconds\)/);
    assert.match(e.message, new RegExp(`the mirror ${mirror} failed: run again to resume, or try another mirror`));
    return true;
  });
  assert.equal(statSync(`${cachedPath('model/stall.pth')}.part`).size, 1000, 'what arrived is kept to resume');
  process.env.SEGTOOL_STALL_TIMEOUT = 'soon';
  try {
    await assert.rejects(fetchCached('model/stall.pth', { mirror }), (e) => isSegtoolError(e, 'ERR_INVALID_ARG') && /SEGTOOL_STALL_TIMEOUT but received "soon"/.test(e.message));
  } finally {
    delete process.env.SEGTOOL_STALL_TIMEOUT;
  }
});

test('a file placed in the cache by hand is validated, recorded and used without a download', async () => {
  const mirror = `${base}/fc6/`;
  const path = serve(mirror, 'model/hand.pth', decoder);
  const file = cachedPath('model/hand.pth');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, Buffer.from('a wrong file'));
  const validate = async (p) => {
    if (!readFileSync(p).equals(decoder)) throw new Error('not the decoder');
  };
  await assert.rejects(fetchCached('model/hand.pth', { mirror, validate }), (e) =>
    isSegtoolError(e, 'ERR_BAD_FILE') && e.message.includes(`${file} is in the cache without a SHA-256 record (placed by hand?) and is not the expected file: not the decoder`),
  );
  assert.ok(existsSync(file), "a user's file is not deleted");
  writeFileSync(file, decoder);
  const result = await fetchCached('model/hand.pth', { mirror, validate });
  assert.equal(result.downloaded, false);
  assert.equal(result.adopted, true);
  assert.equal(readFileSync(`${file}.sha256`, 'utf8'), `${sha256(decoder)}  hand.pth\n`);
  assert.equal(requestsFor(path).length, 0);
});

test('concurrent fetches of one file download it once; a lock left by a dead process is taken over', async () => {
  const mirror = `${base}/fc7/`;
  const path = serve(mirror, 'model/both.pth', encoder);
  const [a, b] = await Promise.all([fetchCached('model/both.pth', { mirror }), fetchCached('model/both.pth', { mirror })]);
  assert.equal(requestsFor(path).length, 1);
  assert.deepEqual([a.downloaded, b.downloaded].sort(), [false, true]);
  assert.deepEqual(readFileSync(a.path), encoder);

  serve(mirror, 'model/stale.pth', decoder);
  const file = cachedPath('model/stale.pth');
  const dead = spawnSync(process.execPath, ['-e', '']).pid;
  writeFileSync(`${file}.lock`, `${dead} ${(await import('node:os')).hostname()}\n`);
  const result = await fetchCached('model/stale.pth', { mirror });
  assert.equal(result.downloaded, true);
  assert.ok(!existsSync(`${file}.lock`));
});

test('a missing list or released-weights file names the segtool download command', async () => {
  const cfg = await loadConfig(CONFIG);
  const dir = join(root, 'no-weights');
  assert.throws(() => resolveWeightFiles({ ...cfg, DIR: dir }, 'epoch_20.pth'), (e) =>
    isSegtoolError(e, 'ERR_NOT_FOUND') && e.message.endsWith(`; the released weights: segtool download ${CONFIG} --dir ${dir}`),
  );
  const list = join(root, 'no-data', 'validation.odgt');
  await assert.rejects(readSampleList({ ...cfg, DATASET: { ...cfg.DATASET, list_val: list } }, 'val'), (e) =>
    isSegtoolError(e, 'ERR_NOT_FOUND') && e.message.includes(`for ADE20K: segtool download ade20k --data-dir ${dirname(list)}`),
  );
});
