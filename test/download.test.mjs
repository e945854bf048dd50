// `segtool download` against a local HTTP server on 127.0.0.1 that serves fixture files, with
// Range support, a connection that breaks mid-file, a server that ignores Range, a wrong file,
// and a small ADE20K-layout zip. Nothing here contacts any other address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { crc32, deflateRawSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { isSegtoolError } from '../dist/index.js';
import { downloadFile } from '../dist/cli/fetch-file.js';
import { generateSyntheticDataset } from '../dist/demo/synthetic.js';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'segtool-download-'));
const encoder = readFileSync('test/fixtures/checkpoints/legacy-cuda/encoder_epoch_20.pth');
const decoder = readFileSync('test/fixtures/checkpoints/legacy-cuda/decoder_epoch_20.pth');

/** path -> body; behaviour per path: 'ignore-range', 'cut' (first request breaks off), 'html'. */
const files = new Map();
const behaviour = new Map();
const requests = [];
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
  res.end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;
test.after(() => {
  server.close();
  rmSync(root, { recursive: true, force: true });
});

async function segtool(...args) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/segtool', ...args], { env: { ...process.env, SEGTOOL_MIRROR: '' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

test('download CONFIG fetches both weight files from the mirror into the config\'s DIR layout', async () => {
  files.set('/models/ade20k-resnet18dilated-ppm_deepsup/encoder_epoch_20.pth', encoder);
  files.set('/models/ade20k-resnet18dilated-ppm_deepsup/decoder_epoch_20.pth', decoder);
  const dir = join(root, 'weights');
  let r = await segtool('download', 'resnet18dilated-ppm_deepsup', '--mirror', `${base}/models/`, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(join(dir, 'encoder_epoch_20.pth')), encoder);
  assert.deepEqual(readFileSync(join(dir, 'decoder_epoch_20.pth')), decoder);
  assert.ok(r.stdout.includes(`sha256 ${sha256(encoder)}`));
  assert.ok(!existsSync(join(dir, 'encoder_epoch_20.pth.part')));

  const before = requests.length;
  r = await segtool('download', 'resnet18dilated-ppm_deepsup', '--mirror', `${base}/models`, '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /encoder_epoch_20\.pth already present/);
  assert.equal(requests.length, before, 'nothing downloaded again');
});

test('download names unknown configs, bad mirrors and missing files', async () => {
  let r = await segtool('download', 'resnet18dilated-ppm_deepsu', '--mirror', base);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /did you mean resnet18dilated-ppm_deepsup\?/);
  r = await segtool('download', 'hrnetv2', '--mirror', 'ftp://example.invalid/');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--mirror/);
  r = await segtool('download', 'hrnetv2', '--mirror', `${base}/empty/`, '--dir', join(root, 'none'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ade20k-hrnetv2\/encoder_epoch_20\.pth: HTTP 404/);
  // A mirror that answers with a web page instead of the file.
  files.set('/html/ade20k-hrnetv2/encoder_epoch_20.pth', Buffer.from('<html>moved</html>'));
  behaviour.set('/html/ade20k-hrnetv2/encoder_epoch_20.pth', 'html');
  r = await segtool('download', 'hrnetv2', '--mirror', `${base}/html`, '--dir', join(root, 'html'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is not a weights file/);
  assert.ok(!existsSync(join(root, 'html', 'encoder_epoch_20.pth')));
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
  await assert.rejects(downloadFile(`${base}/cut.pth`, dest), (e) => isSegtoolError(e, 'ERR_BAD_FILE') && /run again to resume/.test(e.message));
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
  await assert.rejects(downloadFile(`${base}/missing.pth`, dest), (e) => isSegtoolError(e, 'ERR_NOT_FOUND') && /HTTP 404/.test(e.message));
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
  files.set('/ade/ADEChallengeData2016.zip', zip(entries));
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
});
