/**
 * Every file segtool reads from a path a user or a request names, and every file it replaces,
 * goes through here:
 * - `readFileBounded`: regular files only (a FIFO, /dev/zero, a folder or a socket is refused
 *   before a byte is read, and opening a FIFO never blocks), at most a byte limit (the error
 *   names the file, the limit and the environment variable that raises it), cancellable.
 * - `replaceFileAtomic` / `writeFileAtomic`: a temporary file beside the target, fsync, rename,
 *   fsync of the folder. A target that is a symlink or not a regular file (a device, a FIFO, a
 *   folder) is refused; temporaries left by a killed save of the same target are removed.
 */
import { randomBytes } from 'node:crypto';
import { constants, statSync, type Stats } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SegtoolError } from '../errors.js';
import { expectString } from '../validate.js';

export function expectExistingFile(name: string, path: unknown): string {
  const file = expectString(name, path);
  let stats: Stats;
  try {
    stats = statSync(file);
  } catch {
    throw new SegtoolError('ERR_NOT_FOUND', `${name}: file not found: ${file}`);
  }
  if (stats.isDirectory()) throw new SegtoolError('ERR_NOT_FOUND', `${name}: ${file} is not a file`);
  if (!stats.isFile()) throw new SegtoolError('ERR_BAD_FILE', `${name}: ${file} is ${fileKind(stats)}, not a regular file`);
  return file;
}

/** "a folder", "a FIFO (named pipe)", ... for messages. */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a folder';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

// ---------------------------------------------------------------------------------------------
// Bounded reads

const MiB = 1024 * 1024;

/** What segtool reads, with its default byte limit and the environment variable that changes it. */
export const READ_LIMITS = {
  image: { what: 'image', bytes: 256 * MiB, env: 'SEGTOOL_MAX_IMAGE_BYTES' },
  annotation: { what: 'annotation', bytes: 64 * MiB, env: 'SEGTOOL_MAX_ANNOTATION_BYTES' },
  list: { what: 'list file', bytes: 256 * MiB, env: 'SEGTOOL_MAX_LIST_BYTES' },
  config: { what: 'config', bytes: 1 * MiB, env: 'SEGTOOL_MAX_CONFIG_BYTES' },
} as const;
export type ReadKind = keyof typeof READ_LIMITS;

export const MAX_IMAGE_BYTES = READ_LIMITS.image.bytes;
export const MAX_ANNOTATION_BYTES = READ_LIMITS.annotation.bytes;
export const MAX_LIST_BYTES = READ_LIMITS.list.bytes;
export const MAX_CONFIG_BYTES = READ_LIMITS.config.bytes;

/** The byte limit for `kind`: its environment variable (a positive integer of bytes) when set, else the default. */
export function readLimit(kind: ReadKind, env: NodeJS.ProcessEnv = process.env): number {
  const limit = READ_LIMITS[kind];
  const text = env[limit.env];
  if (text === undefined || text === '') return limit.bytes;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a positive number of bytes for ${limit.env} but received ${JSON.stringify(text)}`);
  }
  return value;
}

export interface BoundedReadOptions {
  /** What the file is, for messages ("image", "annotation", "list file"). */
  what: string;
  /** Refuse files larger than this many bytes. */
  maxBytes: number;
  /** The option or environment variable that raises `maxBytes`, named in the error. */
  limitName?: string;
  signal?: AbortSignal;
}

function formatBytes(n: number): string {
  return n >= MiB && n % MiB === 0 ? `${n / MiB} MiB` : `${n} bytes`;
}

function aborted(what: string, path: string, signal: AbortSignal): SegtoolError {
  return new SegtoolError('ERR_ABORTED', `Reading ${what} ${path} was aborted`, { cause: signal.reason });
}

/**
 * Opens `path` for reading if it is a regular file: opened non-blocking (a FIFO's open never
 * waits for a writer), then fstat'ed, so what is checked is what is read. A missing file is
 * ERR_NOT_FOUND; a folder, FIFO, device or socket is ERR_BAD_FILE naming what it is.
 */
export async function openRegularFile(path: string, what: string): Promise<{ handle: FileHandle; stats: Stats }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new SegtoolError('ERR_NOT_FOUND', `${what} not found: ${path}`, { cause: error });
    }
    if (code === 'ENXIO') {
      throw new SegtoolError('ERR_BAD_FILE', `${what} ${path} is a socket, not a regular file`, { cause: error });
    }
    throw new SegtoolError('ERR_BAD_FILE', `Cannot read ${what} ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new SegtoolError('ERR_BAD_FILE', `${what} ${path} is ${fileKind(stats)}, not a regular file`);
    return { handle, stats };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The first `length` bytes (fewer for a shorter file) of a regular file. */
export async function readFileHead(path: string, length: number, what: string): Promise<Buffer> {
  const { handle } = await openRegularFile(path, what);
  try {
    const head = Buffer.alloc(length);
    const { bytesRead } = await handle.read(head, 0, length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Reads a whole regular file of at most `maxBytes` bytes. A missing file is ERR_NOT_FOUND; a
 * folder, FIFO, device or socket, or a file over the limit, is ERR_BAD_FILE; an aborted signal
 * is ERR_ABORTED. The file is opened non-blocking and checked (fstat) before anything is read.
 */
export async function readFileBounded(path: string, options: BoundedReadOptions): Promise<Buffer> {
  const { what, maxBytes, limitName, signal } = options;
  if (signal?.aborted) throw aborted(what, path, signal);
  const { handle, stats } = await openRegularFile(path, what);
  try {
    const tooLarge = (size: string): SegtoolError =>
      new SegtoolError(
        'ERR_BAD_FILE',
        `${what} ${path} is ${size}, over the limit of ${formatBytes(maxBytes)}` +
          (limitName ? ` (raise it with ${limitName})` : ''),
      );
    if (stats.size > maxBytes) throw tooLarge(`${stats.size} bytes`);
    // The file may grow while it is read: read at most maxBytes + 1 to notice.
    let buffer = Buffer.allocUnsafe(Math.min(maxBytes + 1, Math.max(stats.size, 64 * 1024)));
    let length = 0;
    for (;;) {
      if (signal?.aborted) throw aborted(what, path, signal);
      if (length === buffer.length) {
        if (length > maxBytes) throw tooLarge(`over ${maxBytes} bytes (it grew while being read)`);
        const bigger = Buffer.allocUnsafe(Math.min(maxBytes + 1, buffer.length * 2));
        buffer.copy(bigger, 0, 0, length);
        buffer = bigger;
      }
      const { bytesRead } = await handle.read(buffer, length, Math.min(buffer.length - length, 8 * MiB), length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw tooLarge(`over ${maxBytes} bytes (it grew while being read)`);
    return length === buffer.length ? buffer : buffer.subarray(0, length);
  } catch (error) {
    if (error instanceof SegtoolError) throw error;
    throw new SegtoolError('ERR_BAD_FILE', `Cannot read ${what} ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    await handle.close();
  }
}

/** Reads a file of one of the kinds in READ_LIMITS with that kind's limit. */
export function readInputFile(path: string, kind: ReadKind, signal?: AbortSignal): Promise<Buffer> {
  const limit = READ_LIMITS[kind];
  return readFileBounded(path, { what: limit.what, maxBytes: readLimit(kind), limitName: limit.env, signal });
}

// ---------------------------------------------------------------------------------------------
// Atomic replacement

/**
 * The temporary files of an atomic save of `name`: `<name>.<pid>.<hex>.tmp` (both the TS and the
 * native writer), and the older `<name>.<pid>.tmp` and `<name>.tmp-<pid>-<n>`.
 */
function temporaryPattern(name: string): RegExp {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}\\.(?:(\\d+)\\.[0-9a-f]+\\.tmp|(\\d+)\\.tmp|tmp-(\\d+)-\\d+)$`);
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** Removes temporaries of `path` whose writing process is gone (a save killed part-way). Returns what it removed. */
export async function removeStaleTemporaries(path: string): Promise<string[]> {
  const dir = dirname(path);
  const pattern = temporaryPattern(basename(path));
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = pattern.exec(name);
    if (!match) continue;
    const pid = Number(match[1] ?? match[2] ?? match[3]);
    if (processAlive(pid)) continue;
    const stale = join(dir, name);
    const stats = await lstat(stale).catch(() => undefined);
    if (!stats?.isFile()) continue;
    await rm(stale, { force: true });
    removed.push(stale);
  }
  return removed;
}

/**
 * Checks that `path` may be replaced by a new regular file: it does not exist, or it is a regular
 * file (not a symlink, device, FIFO, socket or folder). Then removes stale temporaries of it and
 * creates its folder. Used by every atomic writer, the native ones included (before the call).
 */
export async function prepareReplace(path: string, what = 'output'): Promise<void> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    if (error.code === 'ENOTDIR') throw new SegtoolError('ERR_BAD_FILE', `Cannot write ${what} ${path}: a parent of it is not a folder`, { cause: error });
    throw new SegtoolError('ERR_BAD_FILE', `Cannot write ${what} ${path}: ${error.message}`, { cause: error });
  });
  if (stats?.isSymbolicLink()) {
    throw new SegtoolError(
      'ERR_BAD_FILE',
      `Refusing to replace ${what} ${path}: it is a symbolic link (segtool replaces only regular files; remove the link or write to its target)`,
    );
  }
  if (stats && !stats.isFile()) {
    throw new SegtoolError('ERR_BAD_FILE', `Refusing to replace ${what} ${path}: it is ${fileKind(stats)}, not a regular file`);
  }
  await mkdir(dirname(path), { recursive: true });
  await removeStaleTemporaries(path);
}

/** A fresh temporary name beside `path`, in the pattern removeStaleTemporaries knows. */
export function temporaryPathFor(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

/**
 * The one TS atomic writer: `fill(temporary)` creates the temporary file beside `path` (write,
 * link, copy), then it is fsynced and renamed over `path`, and the folder is fsynced. On any
 * error the temporary is removed and the previous file is untouched.
 */
export async function replaceFileAtomic(path: string, fill: (temporary: string) => Promise<void>, what = 'output'): Promise<void> {
  await prepareReplace(path, what);
  const temporary = temporaryPathFor(path);
  try {
    await fill(temporary);
    const handle = await open(temporary, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The target may have been swapped for something else meanwhile: check again just before.
    const now = await lstat(path).catch(() => undefined);
    if (now && !now.isFile()) {
      throw new SegtoolError('ERR_BAD_FILE', `Refusing to replace ${what} ${path}: it is ${fileKind(now)}, not a regular file`);
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  try {
    const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // best effort: makes the rename itself durable
  }
}

/**
 * Writes `data` to `path` atomically (see replaceFileAtomic): an interrupted write leaves the
 * previous file intact.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, what?: string): Promise<void> {
  return replaceFileAtomic(
    path,
    async (temporary) => {
      const handle = await open(temporary, 'wx');
      try {
        await handle.writeFile(data);
      } finally {
        await handle.close();
      }
    },
    what,
  );
}

/** Places a copy of `source` at `path` atomically: a hard link when the file system allows, else a copy. */
export function placeFileAtomic(source: string, path: string, what?: string): Promise<void> {
  return replaceFileAtomic(path, (temporary) => link(source, temporary).catch(() => copyFile(source, temporary, constants.COPYFILE_EXCL)), what);
}

export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}
