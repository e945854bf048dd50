// Files that are not regular files, for the tests of bounded reads and safe writes: a FIFO (a
// reader that opens it blocking would wait forever: `release` unblocks it so a failing test ends),
// a Unix socket, a character device.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export function makeFifo(dir, name = 'fifo') {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  return path;
}

/** Opens the FIFO for writing and closes it: a reader blocked in open() or read() gets EOF. */
export function release(fifo) {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    // no reader waiting (ENXIO): nothing to release
  }
}

/** A listening Unix socket at dir/name; call close() when done. */
export async function makeSocket(dir, name = 'socket') {
  const path = join(dir, name);
  const server = createServer();
  await new Promise((resolve) => server.listen(path, resolve));
  return { path, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** /dev/zero: endless. */
export const DEV_ZERO = '/dev/zero';
