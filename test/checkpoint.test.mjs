// Checkpoints: the reference's released formats, files PyTorch loads, exact resume, atomic saves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, statSync, copyFileSync, existsSync } from 'node:fs';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SegmentationModel, Tensor, readWeights, loadWeights, saveReferenceWeights, writeWeights,
  saveTrainingCheckpoint, restoreTrainingCheckpoint, manualSeed, disposeAll, liveTensorCount, SegtoolError,
} from '../dist/index.js';

const FIXTURES = 'test/fixtures/checkpoints';
const PYTHON = '/usr/bin/python3';
const tmp = () => mkdtempSync(join(tmpdir(), 'segtool-ckpt-'));

function bytesOf(tensor) {
  const d = tensor.data();
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

async function proceduralModel() {
  return SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', init: 'procedural' });
}

test('every released checkpoint format loads to exactly the procedural weights', async () => {
  const reference = await proceduralModel();
  const cases = [
    ['zip/decoder_epoch_20.pth', 'decoder.'],
    ['legacy/decoder_epoch_20.pth', 'decoder.'],
    ['legacy-cuda/decoder_epoch_20.pth', 'decoder.'],
    ['legacy-cuda/encoder_epoch_20.pth', 'encoder.'],
  ];
  const modelKeys = reference.keys();
  for (const [file, prefix] of cases) {
    const weights = await readWeights(join(FIXTURES, file));
    const expectedKeys = modelKeys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
    assert.deepEqual([...weights.keys()], expectedKeys, `${file}: keys in the reference's order`);
    for (const [key, tensor] of weights) {
      const want = reference.getWeight(prefix + key);
      assert.deepEqual(tensor.shape, want.shape, `${file} ${key} shape`);
      assert.equal(tensor.dtype, want.dtype, `${file} ${key} dtype`);
      assert.ok(bytesOf(tensor).equals(bytesOf(want)), `${file} ${key} values`);
      want.dispose();
    }
    disposeAll(weights);
  }
  // The pair loads into a freshly initialised model, which then equals the procedural one.
  const fresh = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup' });
  const report = await loadWeights(fresh, [join(FIXTURES, 'legacy-cuda/encoder_epoch_20.pth'), join(FIXTURES, 'legacy-cuda/decoder_epoch_20.pth')]);
  assert.deepEqual(report.missing, []);
  assert.deepEqual(report.unexpected, []);
  const a = await fresh.stateDict();
  const b = await reference.stateDict();
  for (const [key, t] of a) assert.ok(bytesOf(t).equals(bytesOf(b.get(key))), key);
  disposeAll(a);
  disposeAll(b);
  fresh.dispose();
  reference.dispose();
});

test('written .pth files load in PyTorch with identical keys, order and values', async () => {
  const model = await proceduralModel();
  const dir = tmp();
  const paths = await saveReferenceWeights(model, dir, 7);
  assert.deepEqual(paths, { encoder: join(dir, 'encoder_epoch_7.pth'), decoder: join(dir, 'decoder_epoch_7.pth') });
  const script = `
import sys, json, hashlib, torch
out = {}
for path in sys.argv[1:]:
    sd = torch.load(path, map_location='cpu')
    assert type(sd).__name__ == 'OrderedDict', type(sd)
    out[path] = [[k, list(v.shape), str(v.dtype), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()] for k, v in sd.items()]
print(json.dumps(out))`;
  const run = spawnSync(PYTHON, ['-c', script, paths.encoder, paths.decoder], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const loaded = JSON.parse(run.stdout);
  const dtypes = { float32: 'torch.float32', int64: 'torch.int64' };
  for (const [part, path] of Object.entries(paths)) {
    const expected = [];
    for (const [key, shape, dtype] of model.shapes()) {
      if (!key.startsWith(`${part}.`)) continue;
      const t = model.getWeight(key);
      expected.push([key.slice(part.length + 1), shape, dtypes[dtype], createHash('sha256').update(bytesOf(t)).digest('hex')]);
      t.dispose();
    }
    assert.deepEqual(loaded[path], expected, `${part} as torch.load sees it`);
  }
  model.dispose();
});

test('safetensors and .pth convert both ways without changing a value', async () => {
  const dir = tmp();
  const weights = await readWeights(join(FIXTURES, 'legacy/decoder_epoch_20.pth'));
  await writeWeights(join(dir, 'd.safetensors'), weights);
  const back = await readWeights(join(dir, 'd.safetensors'));
  await writeWeights(join(dir, 'd.pth'), back);
  const again = await readWeights(join(dir, 'd.pth'));
  assert.deepEqual([...again.keys()], [...weights.keys()]);
  for (const [key, t] of weights) assert.ok(bytesOf(t).equals(bytesOf(again.get(key))), key);
  for (const m of [weights, back, again]) disposeAll(m);
});

test('resume is exact: 4 steps straight equal 2 steps, save, restore into a new process state, 2 steps', async () => {
  const dir = tmp();
  const options = { encoder: 'resnet18dilated', decoder: 'ppm_deepsup', numClass: 5, dropout: 0.1, bnMomentum: 0.1 };
  const batches = [0, 1, 2, 3].map((i) => {
    const data = new Float32Array(2 * 3 * 32 * 48);
    for (let j = 0; j < data.length; j++) data[j] = Math.sin(j * 0.37 + i);
    const label = new Int32Array(2 * 4 * 6);
    for (let j = 0; j < label.length; j++) label[j] = ((j * 7 + i) % 6) - 1;
    return { input: { data, shape: [2, 3, 32, 48] }, label: { data: label, shape: [2, 4, 6] } };
  });
  const step = (model, b, lr) => model.trainStep(b.input, b.label, { lrEncoder: lr, lrDecoder: lr * 2 });

  manualSeed(11);
  const straight = await SegmentationModel.create({ ...options, init: 'procedural' });
  straight.train();
  const lossesStraight = [];
  for (let i = 0; i < 4; i++) lossesStraight.push((await step(straight, batches[i], 0.01)).loss);

  manualSeed(11);
  const first = await SegmentationModel.create({ ...options, init: 'procedural' });
  first.train();
  const lossesResumed = [];
  for (let i = 0; i < 2; i++) lossesResumed.push((await step(first, batches[i], 0.01)).loss);
  const path = join(dir, 'checkpoint.safetensors');
  await saveTrainingCheckpoint(path, { model: first, epoch: 1, iteration: 2, config: { note: 'test' }, rng: 'data-rng-state', history: [{ loss: 1 }] });
  first.dispose();

  manualSeed(999); // a different process state: restore must bring back everything
  const resumed = await SegmentationModel.create(options);
  resumed.train();
  const state = await restoreTrainingCheckpoint(resumed, path);
  assert.deepEqual(state, { epoch: 1, iteration: 2, config: { note: 'test' }, rng: 'data-rng-state', history: [{ loss: 1 }] });
  for (let i = 2; i < 4; i++) lossesResumed.push((await step(resumed, batches[i], 0.01)).loss);

  assert.deepEqual(lossesResumed, lossesStraight);
  const a = await straight.stateDict();
  const b = await resumed.stateDict();
  for (const [key, t] of a) assert.ok(bytesOf(t).equals(bytesOf(b.get(key))), `${key} identical after resume`);
  disposeAll(a);
  disposeAll(b);
  straight.dispose();
  resumed.dispose();
});

// Resolves once every thread of `pid` has stopped (SIGSTOP): one inside a system call stops
// when it returns, so a stopped process cannot get any further into a save.
async function allThreadsStopped(pid) {
  for (const start = performance.now(); performance.now() - start < 30_000; await sleep(2)) {
    const states = readdirSync(`/proc/${pid}/task`).map((task) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
        return stat[stat.lastIndexOf(')') + 2];
      } catch {
        return 'X'; // the thread has just exited
      }
    });
    if (states.every((s) => 'tTZX'.includes(s))) return;
  }
  throw new Error(`process ${pid} did not stop within 30 s`);
}

test('a save killed midway never destroys the last good checkpoint', async () => {
  const dir = tmp();
  const name = 'checkpoint.safetensors';
  const path = join(dir, name);
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const m = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
    const model = await m.SegmentationModel.create({ encoder: 'resnet50dilated', decoder: 'ppm_deepsup', init: 'procedural' });
    for (let i = 1; ; i++) {
      await m.saveTrainingCheckpoint(${JSON.stringify(path)}, { model, epoch: i, iteration: 10 * i });
      console.log('saved ' + i); // a pipe: written before the next save starts
    }
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const closed = once(child, 'close'); // after the last of stdout
  const running = () => child.exitCode === null && child.signalCode === null;
  try {
    // Kill only while a save is provably in progress, not after a guessed sleep: once a first
    // save completed, as soon as another file (the next save's temp file) appears beside the
    // checkpoint, stop every thread of the child. If that file is still there, the save is
    // unfinished and stays so: SIGKILL. If it finished meanwhile, resume and catch the next.
    const others = () => readdirSync(dir).filter((f) => f !== name);
    const completed = () => out.match(/saved \d+/g)?.length ?? 0;
    let temp;
    for (;; await sleep(5)) {
      assert.ok(running(), `the child exited before it could be killed mid-save: ${out}`);
      if (completed() === 0) continue;
      assert.ok(existsSync(path), 'the last good checkpoint is never missing while another save runs');
      // A bound, not a hang, should saves never show a temp file (written in place?).
      assert.ok(completed() <= 6, `${completed()} saves (~190 MB each) completed, none caught with a temp file beside the checkpoint`);
      if (others().length === 0) continue;
      child.kill('SIGSTOP');
      await allThreadsStopped(child.pid);
      [temp] = others();
      if (temp !== undefined) break;
      child.kill('SIGCONT');
    }
    child.kill('SIGKILL');
    await closed;
    console.log(`# killed mid-save after ${completed()} complete save(s): ${temp} holds ${(statSync(join(dir, temp)).size / 2 ** 20).toFixed(0)} of ${(statSync(path).size / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(existsSync(join(dir, temp)), `the kill landed mid-save: ${temp} was never renamed over the checkpoint`);
  } finally {
    if (running()) child.kill('SIGKILL');
  }
  // The checkpoint on disk is the last completed save, whole.
  const saved = Number(/saved (\d+)\s*$/.exec(out)?.[1]);
  assert.ok(saved >= 1, `the child reported a completed save: ${out}`);
  const model = await SegmentationModel.create({ encoder: 'resnet50dilated', decoder: 'ppm_deepsup' });
  const state = await restoreTrainingCheckpoint(model, path);
  assert.equal(state.epoch, saved, 'the checkpoint on disk is the last complete save and loads');
  assert.equal(state.iteration, 10 * saved);
  model.dispose();
});

test('bad checkpoints are clear errors, never a crash', async () => {
  const dir = tmp();
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', numClass: 7 });
  const base = liveTensorCount();
  // Truncated .pth
  const full = readFileSync(join(FIXTURES, 'zip/decoder_epoch_20.pth'));
  const truncated = join(dir, 'decoder_truncated.pth');
  writeFileSync(truncated, full.subarray(0, Math.floor(full.length / 2)));
  await assert.rejects(readWeights(truncated), (e) => e instanceof SegtoolError && e.code === 'ERR_BAD_FILE' && e.message.includes('decoder_truncated.pth'));
  const legacy = readFileSync(join(FIXTURES, 'legacy/decoder_epoch_20.pth'));
  const truncatedLegacy = join(dir, 'decoder_legacy_truncated.pth');
  writeFileSync(truncatedLegacy, legacy.subarray(0, legacy.length - 1000));
  await assert.rejects(readWeights(truncatedLegacy), (e) => e.code === 'ERR_BAD_FILE' && e.message.includes('decoder_legacy_truncated.pth'));
  // Not a checkpoint at all
  const jpeg = join(dir, 'photo.pth');
  copyFileSync('test/fixtures/data/ADE_val_00001519.jpg', jpeg);
  await assert.rejects(readWeights(jpeg), (e) => e.code === 'ERR_BAD_FILE' && /not a checkpoint/.test(e.message));
  const empty = join(dir, 'empty.pth');
  writeFileSync(empty, '');
  await assert.rejects(readWeights(empty), (e) => e.code === 'ERR_BAD_FILE');
  await assert.rejects(readWeights(join(dir, 'missing.pth')), (e) => e.code === 'ERR_NOT_FOUND' && /missing\.pth/.test(e.message));
  // A pickle that asks for anything but tensors and containers is refused, not executed.
  const evil = join(dir, 'evil.pth');
  writeFileSync(evil, Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n(S\'touch /tmp/segtool-pwned\'\ntR.')]));
  await assert.rejects(readWeights(evil), (e) => e.code === 'ERR_BAD_FILE' && /os/.test(e.message) && /system/.test(e.message));
  assert.equal(existsSync('/tmp/segtool-pwned'), false);
  // A checkpoint of another architecture
  await assert.rejects(loadWeights(model, join(FIXTURES, 'legacy-cuda/decoder_epoch_20.pth')), (e) => e.code === 'ERR_CHECKPOINT' && /decoder\.conv_last\.weight/.test(e.message) && /\[150, 80, 1, 1\]/.test(e.message) && /\[7, 80, 1, 1\]/.test(e.message));
  const resnet = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'c1_deepsup' });
  await assert.rejects(loadWeights(resnet, join(FIXTURES, 'legacy-cuda/encoder_epoch_20.pth')), (e) => e.code === 'ERR_CHECKPOINT' && /encoder_epoch_20\.pth/.test(e.message));
  resnet.dispose();
  // Fine-tuning to 7 classes: the 150-class heads are skipped on request, the rest loads.
  const report = await loadWeights(model, [join(FIXTURES, 'legacy-cuda/encoder_epoch_20.pth'), join(FIXTURES, 'legacy-cuda/decoder_epoch_20.pth')], { skipMismatchedHead: true, strict: false });
  assert.deepEqual(report.skipped.map((s) => s.key).sort(), ['decoder.conv_last.bias', 'decoder.conv_last.weight', 'decoder.conv_last_deepsup.bias', 'decoder.conv_last_deepsup.weight']);
  assert.deepEqual(report.skipped.find((s) => s.key === 'decoder.conv_last.weight'), { key: 'decoder.conv_last.weight', file: [150, 80, 1, 1], model: [7, 80, 1, 1] });
  assert.equal(liveTensorCount(), base, 'failed loads leak no tensor');
  model.dispose();
});

test('segtool convert combines a released pair and splits it back, values unchanged', async () => {
  const dir = tmp();
  const cli = (...args) => spawnSync(process.execPath, ['bin/segtool', 'convert', ...args], { encoding: 'utf8' });
  const enc = join(FIXTURES, 'legacy-cuda/encoder_epoch_20.pth');
  const dec = join(FIXTURES, 'legacy-cuda/decoder_epoch_20.pth');
  let run = cli(enc, dec, join(dir, 'combined.safetensors'));
  assert.equal(run.status, 0, run.stderr);
  const combined = await readWeights(join(dir, 'combined.safetensors'));
  assert.ok(combined.has('encoder.conv1.weight') === false && [...combined.keys()][0].startsWith('encoder.'));
  run = cli(join(dir, 'combined.safetensors'), `${dir}/split/`);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /split\/encoder\.pth/);
  for (const [part, original] of [['encoder', enc], ['decoder', dec]]) {
    const a = await readWeights(original);
    const b = await readWeights(join(dir, 'split', `${part}.pth`));
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [k, t] of a) assert.ok(bytesOf(t).equals(bytesOf(b.get(k))), k);
    disposeAll(a);
    disposeAll(b);
  }
  disposeAll(combined);
  run = cli(join(dir, 'nope.pth'), join(dir, 'out.pth'));
  assert.equal(run.status, 1);
  assert.match(run.stderr, /nope\.pth/);
});

test('weights must be regular files: FIFO and /dev/zero refused by the TS checks and by the native readers themselves', { timeout: 60000 }, async () => {
  const { makeFifo, release } = await import('./helpers/special-files.mjs');
  const { loadNative } = await import('../dist/native.js');
  const native = await loadNative();
  const dir = tmp();
  const fifo = makeFifo(dir, 'encoder.pth');
  try {
    await assert.rejects(readWeights(fifo), (e) => e.code === 'ERR_BAD_FILE' && /weights file .*encoder\.pth is a FIFO \(named pipe\), not a regular file/.test(e.message));
    // The native readers check too (fstat after a non-blocking open), whoever calls them.
    await assert.rejects(native.readPth(fifo, ''), (e) => e.code === 'ERR_BAD_FILE' && /encoder\.pth: is a FIFO \(named pipe\), expected a regular file/.test(e.message));
    await assert.rejects(native.readSafetensors(fifo), (e) => e.code === 'ERR_BAD_FILE' && /is a FIFO/.test(e.message));
  } finally {
    release(fifo);
  }
  await assert.rejects(readWeights('/dev/zero'), (e) => e.code === 'ERR_BAD_FILE' && /\/dev\/zero is a character device/.test(e.message));
  await assert.rejects(native.readPth('/dev/zero', ''), (e) => e.code === 'ERR_BAD_FILE' && /\/dev\/zero: is a character device, expected a regular file/.test(e.message));
  await assert.rejects(native.readSafetensors(dir), (e) => e.code === 'ERR_BAD_FILE' && /is a folder, expected a regular file/.test(e.message));
});

test('weight writers replace regular files only: a symlink or a FIFO target is refused (TS and native), temporaries of killed saves removed', { timeout: 60000 }, async () => {
  const { makeFifo, release } = await import('./helpers/special-files.mjs');
  const { loadNative } = await import('../dist/native.js');
  const { symlinkSync, readlinkSync, lstatSync } = await import('node:fs');
  const native = await loadNative();
  const dir = tmp();
  const weights = new Map([['w', Tensor.from(Float32Array.of(1, 2, 3), [3])]]);
  const real = join(dir, 'mine.pth');
  writeFileSync(real, 'precious');
  for (const name of ['link.pth', 'link.safetensors']) {
    const link = join(dir, name);
    symlinkSync(real, link);
    await assert.rejects(writeWeights(link, weights), (e) => e.code === 'ERR_BAD_FILE' && new RegExp(`${name.replace('.', '\\.')}: it is a symbolic link`).test(e.message));
    const handles = [['w', weights.get('w').handle]];
    await assert.rejects(
      name.endsWith('.pth') ? native.writePth(link, handles) : native.writeSafetensors(link, handles, {}),
      (e) => e.code === 'ERR_BAD_FILE' && new RegExp(`refusing to replace .*${name.replace('.', '\\.')}: it is a symbolic link`).test(e.message),
    );
    assert.equal(readlinkSync(link), real);
  }
  assert.equal(readFileSync(real, 'utf8'), 'precious');
  const fifo = makeFifo(dir, 'out.pth');
  try {
    await assert.rejects(native.writePth(fifo, [['w', weights.get('w').handle]]), (e) => e.code === 'ERR_BAD_FILE' && /out\.pth: it is a FIFO/.test(e.message));
    assert.ok(lstatSync(fifo).isFIFO());
  } finally {
    release(fifo);
  }
  // A killed save's temporary (its process gone) is removed by the next save of that target.
  const target = join(dir, 'model.pth');
  const dead = spawnSync(process.execPath, ['-e', '']).pid;
  writeFileSync(join(dir, `model.pth.${dead}.deadbeef.tmp`), 'partial');
  await writeWeights(target, weights);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('model.pth')), ['model.pth']);
  const back = await readWeights(target);
  assert.deepEqual(Array.from(back.get('w').data()), [1, 2, 3]);
  disposeAll(back);
  disposeAll(weights);
});

test('a deflated .pth record is bounded by the sizes the file declares: the pickle\'s storage size must equal the zip entry\'s, and inflating past it is an error', async () => {
  const dir = tmp();
  const plain = join(dir, 'plain.pth');
  const weights = new Map([['w', Tensor.from(new Float32Array(1 << 20), [1 << 20])]]); // 4 MiB of zeros
  await writeWeights(plain, weights);
  disposeAll(weights);
  // Re-zip with deflate: (1) honest; (2) data/0 holds 64 MiB of zeros while the pickle and the
  // directory say 4 MiB; (3) the directory claims 64 MiB for a 4 MiB storage.
  const script = `
import sys, zipfile, zlib, struct
src, out = sys.argv[1], sys.argv[2]
def rezip(path, replace=None, claim=None):
    with zipfile.ZipFile(src) as s, zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as d:
        for info in s.infolist():
            data = s.read(info.filename)
            if info.filename.endswith('/data/0') and replace is not None:
                data = replace
            d.writestr(info.filename, data)
    if claim is None:
        return
    b = bytearray(open(path, 'rb').read())
    name = [n for n in zipfile.ZipFile(path).namelist() if n.endswith('/data/0')][0].encode()
    size, crc = claim
    for sig, size_at, crc_at, name_at in ((b'PK\\x01\\x02', 24, 16, 46), (b'PK\\x03\\x04', 22, 14, 30)):
        i = 0
        while True:
            i = b.find(sig, i)
            if i < 0: break
            if b[i + name_at:i + name_at + len(name)] == name:
                struct.pack_into('<I', b, i + size_at, size)
                struct.pack_into('<I', b, i + crc_at, crc)
            i += 4
    open(path, 'wb').write(bytes(b))
four = bytes(4 << 20)
rezip(out + '/honest.pth')
rezip(out + '/bomb.pth', replace=bytes(64 << 20), claim=(4 << 20, zlib.crc32(four)))
rezip(out + '/claims.pth', claim=(64 << 20, zlib.crc32(bytes(64 << 20))))
`;
  const made = spawnSync(PYTHON, ['-c', script, plain, dir], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const honest = await readWeights(join(dir, 'honest.pth'));
  assert.equal(honest.get('w').size, 1 << 20);
  disposeAll(honest);
  assert.ok(statSync(join(dir, 'bomb.pth')).size < 200_000);
  await assert.rejects(readWeights(join(dir, 'bomb.pth')), (e) => e.code === 'ERR_BAD_FILE' && /data\/0 inflates to more than the 4194304 bytes its zip entry declares/.test(e.message));
  await assert.rejects(readWeights(join(dir, 'claims.pth')), (e) => e.code === 'ERR_BAD_FILE' && /data\/0 holds 67108864 bytes, expected 4194304/.test(e.message));
});
