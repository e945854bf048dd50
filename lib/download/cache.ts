/**
 * The download cache: every remote file (the dataset, released models, ImageNet encoders) is
 * fetched once into SEGTOOL_CACHE (default ~/.cache/segtool) under its path on the host, from
 * one base URL (the original host, or a mirror with the same paths below it). A file is accepted
 * only after the caller's content check; its SHA-256 is then recorded beside it (`<file>.sha256`,
 * sha256sum format), so later corruption is noticed and the file fetched again.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, stat, utimes, link, mkdir } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SegtoolError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { invalid } from '../validate.js';
import { downloadFile, hashFile, type Checksum, type DownloadProgress } from './fetch.js';

export const ORIGINAL_HOST = 'http://sceneparsing.csail.mit.edu/';

/** --mirror value ?? SEGTOOL_MIRROR ?? ORIGINAL_HOST; validated http(s) URL, always ending with '/'. */
export function mirrorBase(option?: string): string {
  const env = process.env['SEGTOOL_MIRROR'];
  const [name, value] = option !== undefined ? ['--mirror', option] : env ? ['SEGTOOL_MIRROR', env] : [undefined, ORIGINAL_HOST];
  let url: URL | undefined;
  try {
    url = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected an http:// or https:// base URL for ${name} but received ${JSON.stringify(value)}`);
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

/** True when mirrorBase(option) is not ORIGINAL_HOST. */
export function usingMirror(option?: string): boolean {
  return mirrorBase(option) !== ORIGINAL_HOST;
}

/** SEGTOOL_CACHE ?? ~/.cache/segtool (absolute). */
export function cacheRoot(): string {
  const env = process.env['SEGTOOL_CACHE'];
  return env ? resolve(env) : join(homedir(), '.cache', 'segtool');
}

/** 'model/pytorch/x.pth' -> its segments; anything that could leave the cache folder is refused. */
function remoteSegments(remotePath: string): string[] {
  const segments = typeof remotePath === 'string' ? remotePath.split('/') : [];
  if (segments.length === 0 || isAbsolute(remotePath) || remotePath.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw invalid('remotePath', "a relative path below the host such as 'model/pretrained_resnet/resnet50-imagenet.pth'", remotePath);
  }
  return segments;
}

/** Where remotePath ('model/pretrained_resnet/resnet50-imagenet.pth') lives in the cache. */
export function cachedPath(remotePath: string, options: { cacheDir?: string } = {}): string {
  return join(options.cacheDir === undefined ? cacheRoot() : resolve(options.cacheDir), ...remoteSegments(remotePath));
}

export interface FetchCachedOptions {
  /** Base URL override (else SEGTOOL_MIRROR, else ORIGINAL_HOST). */
  mirror?: string;
  /** Else cacheRoot(). */
  cacheDir?: string;
  /** Throws (any error) when the downloaded/cached file is not the expected content; called on a fresh download before it is accepted, and on a cached file whose recorded SHA-256 is missing. */
  validate?: (path: string) => Promise<void>;
  /** A published checksum, when known. */
  checksum?: Checksum;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  stallTimeoutMs?: number;
  /** Appended to the offline / failure message: what to do instead (e.g. "or train from scratch with MODEL.pretrained false"). */
  offlineHint?: string;
}

export interface FetchCachedResult {
  path: string;
  url: string;
  sha256: string;
  bytes: number;
  /** False when the cached file was used. */
  downloaded: boolean;
  resumedFrom: number;
  /** True when the cached file no longer matched its recorded SHA-256 (corrupt) and was downloaded again. */
  refetched: boolean;
  /** True when a cached file without a record (placed by hand) passed the checks and was recorded. */
  adopted: boolean;
}

/** `<file>.sha256`: "<hex>  <name>", as sha256sum writes it. */
export function recordPath(file: string): string {
  return `${file}.sha256`;
}

async function readRecord(file: string): Promise<string | undefined> {
  try {
    return /^([0-9a-f]{64})\b/i.exec(await readFile(recordPath(file), 'utf8'))?.[1]?.toLowerCase();
  } catch {
    return undefined; // none (or unreadable): the file is checked as if placed by hand
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the cached file for remotePath, downloading it (resumably) if it is absent or its
 * content no longer matches the SHA-256 recorded beside it (`<file>.sha256`, written after a
 * file is accepted).
 */
export async function fetchCached(remotePath: string, options: FetchCachedOptions = {}): Promise<FetchCachedResult> {
  const file = cachedPath(remotePath, options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir });
  const base = mirrorBase(options.mirror);
  const mirror = base === ORIGINAL_HOST ? undefined : base;
  const url = base + remotePath;
  return withLock(file, options.signal, async () => {
    let refetched = false;
    if (await exists(file)) {
      const sha256 = createHash('sha256');
      const sha1 = createHash('sha1');
      await hashFile(file, options.checksum?.algorithm === 'sha1' ? [sha256, sha1] : [sha256]);
      const digests = { sha256: sha256.digest('hex'), sha1: options.checksum?.algorithm === 'sha1' ? sha1.digest('hex') : '' };
      const bytes = (await stat(file)).size;
      const recorded = await readRecord(file);
      if (recorded !== undefined && recorded !== digests.sha256) {
        // Changed since it was accepted: disk corruption or a truncated copy. Fetch it again.
        await rm(recordPath(file), { force: true });
        await rm(file, { force: true });
        refetched = true;
      } else {
        const expected = options.checksum;
        if (expected && digests[expected.algorithm] !== expected.hex.toLowerCase()) {
          throw new SegtoolError(
            'ERR_BAD_FILE',
            `${file}: ${expected.algorithm} is ${digests[expected.algorithm]} but expected ${expected.hex.toLowerCase()} (downloaded unchecked, or a different file): delete it to download ${url} again`,
          );
        }
        if (recorded === undefined) {
          try {
            await options.validate?.(file);
          } catch (error) {
            throw new SegtoolError(
              'ERR_BAD_FILE',
              `${file} is in the cache without a SHA-256 record (placed by hand?) and is not the expected file: ${(error as Error).message}; replace it, or delete it to download ${url}`,
              { cause: error },
            );
          }
          await writeRecord(file, digests.sha256);
        }
        return { path: file, url, sha256: digests.sha256, bytes, downloaded: false, resumedFrom: 0, refetched: false, adopted: recorded === undefined };
      }
    }
    let result;
    try {
      result = await downloadFile(url, file, {
        ...(options.checksum ? { checksum: options.checksum } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.stallTimeoutMs !== undefined ? { stallTimeoutMs: options.stallTimeoutMs } : {}),
        ...(options.validate ? { validate: options.validate } : {}),
        ...(mirror ? { mirror } : {}),
      });
    } catch (error) {
      if (!(error instanceof SegtoolError && error.code === 'ERR_DOWNLOAD')) throw error;
      // Offline or the host is down: say at once where a copy obtained elsewhere goes.
      const lines = [
        `Cannot download ${basename(file)}: ${error.message}`,
        `To use a copy you already have, put it at ${file} (it is checked before use).`,
        ...(options.offlineHint ? [options.offlineHint] : []),
      ];
      throw new SegtoolError('ERR_DOWNLOAD', lines.join('\n'), { cause: error });
    }
    await writeRecord(file, result.sha256);
    return { path: file, url, sha256: result.sha256, bytes: result.bytes, downloaded: true, resumedFrom: result.resumedFrom, refetched, adopted: false };
  });
}

function writeRecord(file: string, sha256: string): Promise<void> {
  return writeFileAtomic(recordPath(file), `${sha256}  ${basename(file)}\n`);
}

// --- One process per cached file ---------------------------------------------------------
// `<file>.lock` holds "pid host". A lock whose process is gone (same host) or whose holder
// stopped refreshing its time stamp (another host sharing the cache) is stale and taken over.

const LOCK_POLL_MS = 200;
const LOCK_HEARTBEAT_MS = 5_000;
const LOCK_STALE_MS = 30_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, but another user's
  }
}

/** The lock's content when it is stale, else undefined (live, or gone meanwhile). */
async function staleContent(lock: string): Promise<string | undefined> {
  try {
    const [content, info] = await Promise.all([readFile(lock, 'utf8'), stat(lock)]);
    const [pid, host] = content.trim().split(' ');
    if (host === hostname() && Number(pid) > 0) return processAlive(Number(pid)) ? undefined : content;
    return Date.now() - info.mtimeMs > LOCK_STALE_MS ? content : undefined;
  } catch {
    return undefined;
  }
}

/** Takes away a stale lock; renaming first makes sure only the lock that was judged stale goes. */
async function breakLock(lock: string, content: string): Promise<void> {
  const aside = `${lock}.${process.pid}.stale`;
  try {
    await rename(lock, aside);
  } catch {
    return; // another waiter took it first
  }
  if ((await readFile(aside, 'utf8').catch(() => content)) !== content) {
    await link(aside, lock).catch(() => undefined); // a fresh lock was renamed by mistake: put it back
  }
  await rm(aside, { force: true });
}

async function withLock<T>(file: string, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  try {
    await mkdir(dirname(file), { recursive: true });
  } catch (error) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `Cannot create the download cache folder ${dirname(file)} (${(error as Error).message}): set SEGTOOL_CACHE to a writable folder`,
      { cause: error },
    );
  }
  for (;;) {
    if (signal?.aborted) throw new SegtoolError('ERR_ABORTED', `Stopped while another segtool process was downloading ${file}`);
    try {
      const handle = await open(lock, 'wx');
      try {
        await handle.writeFile(`${process.pid} ${hostname()}\n`);
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stale = await staleContent(lock);
    if (stale !== undefined) await breakLock(lock, stale);
    else await sleep(LOCK_POLL_MS, undefined, signal ? { signal } : {}).catch(() => undefined);
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(lock, now, now).catch(() => undefined);
  }, LOCK_HEARTBEAT_MS);
  heartbeat.unref();
  try {
    return await work();
  } finally {
    clearInterval(heartbeat);
    await rm(lock, { force: true });
  }
}
