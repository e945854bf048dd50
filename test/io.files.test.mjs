// lib/io/files.ts: bounded reads of regular files only (FIFO, /dev/zero, folder, socket refused
// without blocking; a byte limit naming the file, the limit and the variable that raises it;
// cancellable) and atomic replacement of regular files only (symlinks, devices, FIFOs, folders
// refused), removing the temporaries of killed saves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MAX_ANNOTATION_BYTES, MAX_CONFIG_BYTES, MAX_IMAGE_BYTES, MAX_LIST_BYTES, placeFileAtomic, readFileBounded, readInputFile, readLimit,
  removeStaleTemporaries, writeFileAtomic,
} from '../dist/io/files.js';
import { DEV_ZERO, makeFifo, makeSocket, release } from './helpers/special-files.mjs';

const tmp = () => mkdtempSync(join(tmpdir(), 'segtool-files-'));
const code = (c, pattern) => (e) => e?.code === c && (pattern === undefined || pattern.test(e.message));

test('documented default limits', () => {
  assert.equal(MAX_IMAGE_BYTES, 256 * 2 ** 20);
  assert.equal(MAX_LIST_BYTES, 256 * 2 ** 20);
  assert.equal(MAX_ANNOTATION_BYTES, 64 * 2 ** 20);
  assert.equal(MAX_CONFIG_BYTES, 2 ** 20);
  assert.equal(readLimit('image', {}), MAX_IMAGE_BYTES);
  assert.equal(readLimit('image', { SEGTOOL_MAX_IMAGE_BYTES: '1000' }), 1000);
  assert.throws(() => readLimit('config', { SEGTOOL_MAX_CONFIG_BYTES: '-5' }), code('ERR_INVALID_ARG', /SEGTOOL_MAX_CONFIG_BYTES/));
});

test('a FIFO is refused without blocking on open or read', { timeout: 30000 }, async () => {
  const fifo = makeFifo(tmp());
  try {
    await assert.rejects(readFileBounded(fifo, { what: 'image', maxBytes: 100 }), code('ERR_BAD_FILE', /image .*fifo is a FIFO \(named pipe\), not a regular file/));
  } finally {
    release(fifo);
  }
});

test('/dev/zero, a folder and a socket are refused, naming what they are', async () => {
  await assert.rejects(readFileBounded(DEV_ZERO, { what: 'image', maxBytes: 100 }), code('ERR_BAD_FILE', /\/dev\/zero is a character device, not a regular file/));
  const dir = tmp();
  await assert.rejects(readFileBounded(dir, { what: 'list file', maxBytes: 100 }), code('ERR_BAD_FILE', /is a folder, not a regular file/));
  const socket = await makeSocket(dir);
  try {
    await assert.rejects(readFileBounded(socket.path, { what: 'config', maxBytes: 100 }), code('ERR_BAD_FILE', /is a socket, not a regular file/));
  } finally {
    await socket.close();
  }
  await assert.rejects(readFileBounded(join(dir, 'missing.jpg'), { what: 'image', maxBytes: 100 }), code('ERR_NOT_FOUND', /image not found: .*missing\.jpg/));
});

test('a file over the limit is refused, naming the file, the limit and what raises it', async () => {
  const file = join(tmp(), 'big.bin');
  writeFileSync(file, Buffer.alloc(2 * 2 ** 20));
  await assert.rejects(
    readFileBounded(file, { what: 'annotation', maxBytes: 2 ** 20, limitName: 'SEGTOOL_MAX_ANNOTATION_BYTES' }),
    code('ERR_BAD_FILE', /annotation .*big\.bin is 2097152 bytes, over the limit of 1 MiB \(raise it with SEGTOOL_MAX_ANNOTATION_BYTES\)/),
  );
  const exact = await readFileBounded(file, { what: 'annotation', maxBytes: 2 * 2 ** 20 });
  assert.equal(exact.length, 2 * 2 ** 20);
  // The kinds' limits come from their variables.
  process.env.SEGTOOL_MAX_LIST_BYTES = '1024';
  try {
    await assert.rejects(readInputFile(file, 'list'), code('ERR_BAD_FILE', /list file .* over the limit of 1024 bytes \(raise it with SEGTOOL_MAX_LIST_BYTES\)/));
  } finally {
    delete process.env.SEGTOOL_MAX_LIST_BYTES;
  }
});

test('an aborted signal stops the read (ERR_ABORTED)', async () => {
  const file = join(tmp(), 'a.bin');
  writeFileSync(file, 'x');
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(readFileBounded(file, { what: 'image', maxBytes: 10, signal: controller.signal }), code('ERR_ABORTED', /a\.bin/));
});

test('atomic writes refuse a symlink, a FIFO, a device and a folder, and leave them as they were', { timeout: 30000 }, async () => {
  const dir = tmp();
  const target = join(dir, 'real.yaml');
  writeFileSync(target, 'original');
  const link = join(dir, 'link.yaml');
  symlinkSync(target, link);
  await assert.rejects(writeFileAtomic(link, 'new'), code('ERR_BAD_FILE', /link\.yaml: it is a symbolic link/));
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readlinkSync(link), target);
  assert.equal(readFileSync(target, 'utf8'), 'original');

  const fifo = makeFifo(dir);
  try {
    await assert.rejects(writeFileAtomic(fifo, 'x'), code('ERR_BAD_FILE', /fifo: it is a FIFO \(named pipe\), not a regular file/));
    assert.ok(lstatSync(fifo).isFIFO());
  } finally {
    release(fifo);
  }
  const folder = join(dir, 'folder');
  mkdirSync(folder);
  await assert.rejects(placeFileAtomic(target, folder), code('ERR_BAD_FILE', /folder: it is a folder/));
  if (process.getuid?.() === 0) {
    // As root a rename replaces a device node: /dev/full's twin must survive.
    const device = join(dir, 'full');
    assert.equal(spawnSync('mknod', [device, 'c', '1', '7']).status, 0);
    await assert.rejects(writeFileAtomic(device, 'x'), code('ERR_BAD_FILE', /full: it is a character device/));
    assert.ok(lstatSync(device).isCharacterDevice());
  }
  // No temporary is left behind by any refusal.
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), []);
});

test('temporaries of a killed save of the same target are removed; live ones and others stay', async () => {
  const dir = tmp();
  const target = join(dir, 'config.yaml');
  const dead = spawnSync(process.execPath, ['-e', '']).pid; // exited: its pid is gone
  const stale = [`config.yaml.${dead}.0badf00d.tmp`, `config.yaml.${dead}.tmp`, `config.yaml.tmp-${dead}-3`];
  const kept = [`config.yaml.${process.pid}.12345678.tmp`, `other.yaml.${dead}.0badf00d.tmp`, `config.yaml.${dead}.notes`];
  for (const name of [...stale, ...kept]) writeFileSync(join(dir, name), 'partial');
  await writeFileAtomic(target, 'saved');
  assert.equal(readFileSync(target, 'utf8'), 'saved');
  for (const name of stale) assert.ok(!existsSync(join(dir, name)), `${name} removed`);
  for (const name of kept) assert.ok(existsSync(join(dir, name)), `${name} kept`);
  assert.deepEqual(await removeStaleTemporaries(target), []);
});
