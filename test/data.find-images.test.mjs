// lib/data/find-images.ts: the inputs of `segtool test` / segmentFiles. Regular files as given,
// folders recursively; devices, FIFOs and sockets named as inputs are ERR_BAD_FILE naming them,
// missing paths ERR_NOT_FOUND — never a raw ENOTDIR stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findImages } from '../dist/data/find-images.js';
import { tempDir } from './helpers/data.mjs';
import { makeFifo, makeSocket, release } from './helpers/special-files.mjs';

test('files as given, folders searched recursively for regular image files, sorted; duplicate names get suffixes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  mkdirSync(join(dir, 'set', 'sub'), { recursive: true });
  for (const name of ['set/b.jpg', 'set/sub/a.PNG', 'set/notes.txt', 'x.webp']) writeFileSync(join(dir, name), 'x');
  makeFifo(join(dir, 'set'), 'pipe.jpg'); // not a regular file: not an image
  const found = await findImages([join(dir, 'set'), join(dir, 'x.webp'), join(dir, 'set', 'b.jpg')]);
  assert.deepEqual(found.map((f) => f.name), ['b.jpg', 'sub/a.PNG', 'x.webp', 'b-1.jpg']);
  assert.equal(found[0].path, join(dir, 'set', 'b.jpg'));
});

test('/dev/zero, a FIFO and a socket are ERR_BAD_FILE naming them; missing paths ERR_NOT_FOUND', { timeout: 30000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  await assert.rejects(findImages(['/dev/zero']), (e) => e.code === 'ERR_BAD_FILE' && /^\/dev\/zero is a character device, not an image file or a folder of images$/.test(e.message));
  const fifo = makeFifo(dir);
  try {
    await assert.rejects(findImages([fifo]), (e) => e.code === 'ERR_BAD_FILE' && /fifo is a FIFO \(named pipe\)/.test(e.message));
  } finally {
    release(fifo);
  }
  const socket = await makeSocket(dir);
  try {
    await assert.rejects(findImages([socket.path]), (e) => e.code === 'ERR_BAD_FILE' && /socket is a socket/.test(e.message));
  } finally {
    await socket.close();
  }
  await assert.rejects(findImages([join(dir, 'missing')]), (e) => e.code === 'ERR_NOT_FOUND' && /image or folder not found: .*missing/.test(e.message));
  await assert.rejects(findImages(['/dev/zero/x.jpg']), (e) => e.code === 'ERR_NOT_FOUND' && /\/dev\/zero\/x\.jpg/.test(e.message));
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  await assert.rejects(findImages([empty]), (e) => e.code === 'ERR_NOT_FOUND' && /no images .* in .*empty/.test(e.message));
  await assert.rejects(findImages([]), (e) => e.code === 'ERR_INVALID_ARG');
});
