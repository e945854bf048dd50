/**
 * Resumable HTTP(S) downloads: the file grows as DEST.part and becomes DEST only once complete
 * and verified (size, SHA-1/SHA-256 when known, and the caller's content check), so an
 * interrupted download never leaves a truncated file where a good one is expected, and the next
 * attempt asks the server for the missing bytes only (HTTP Range). Network failures (host
 * unreachable, HTTP errors, stalls, broken connections) are ERR_DOWNLOAD; content that fails a
 * check is ERR_BAD_FILE.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { SegtoolError } from '../errors.js';
import { invalid } from '../validate.js';

export interface Checksum {
  algorithm: 'sha1' | 'sha256';
  hex: string;
}

export interface DownloadProgress {
  url: string;
  /** Bytes on disk so far, resumed ones included. */
  received: number;
  /** Expected total, when the server or the manifest says. */
  total?: number;
  /** Bytes that were already on disk when this attempt started. */
  resumedFrom: number;
}

export interface DownloadOptions {
  /** Expected size in bytes. */
  size?: number;
  checksum?: Checksum;
  /** Continue a DEST.part left by an earlier attempt (default true). */
  resume?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  /** No bytes for this long is an ERR_DOWNLOAD (default: SEGTOOL_STALL_TIMEOUT seconds, else 60 s). */
  stallTimeoutMs?: number;
  /** Throws when the complete file is not the expected content; runs before DEST.part becomes DEST. */
  validate?: (path: string) => Promise<void>;
  /** The mirror base URL `url` is on, when it is one: failures then name the mirror instead of suggesting one. */
  mirror?: string;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** SHA-256 of the file (always computed, to record or compare with a published one). */
  sha256: string;
  /** The checksum that was verified, if any. */
  verified?: Checksum;
  resumedFrom: number;
  /** True when DEST already existed and was accepted without downloading. */
  alreadyPresent: boolean;
}

export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** options.stallTimeoutMs, else SEGTOOL_STALL_TIMEOUT (seconds), else 60 s. */
export function stallTimeoutMs(option?: number): number {
  if (option !== undefined) {
    if (typeof option !== 'number' || !Number.isFinite(option) || option <= 0) throw invalid('stallTimeoutMs', 'a positive number of milliseconds', option);
    return option;
  }
  const env = process.env['SEGTOOL_STALL_TIMEOUT'];
  if (env === undefined || env === '') return DEFAULT_STALL_TIMEOUT_MS;
  const seconds = Number(env);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a positive number of seconds for SEGTOOL_STALL_TIMEOUT but received ${JSON.stringify(env)}`);
  }
  return seconds * 1000;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

export async function hashFile(path: string, hashes: Hash[]): Promise<void> {
  for await (const chunk of createReadStream(path)) for (const h of hashes) h.update(chunk as Buffer);
}

/** What is wrong with content of `bytes` bytes and these digests, if anything (size, published checksum). */
function checkProblem(bytes: number, digests: { sha1: string; sha256: string }, options: DownloadOptions): string | undefined {
  if (options.size !== undefined && bytes !== options.size) return `${bytes} bytes but expected ${options.size}`;
  const expected = options.checksum;
  if (expected && digests[expected.algorithm] !== expected.hex.toLowerCase()) {
    return `${expected.algorithm} is ${digests[expected.algorithm]} but expected ${expected.hex.toLowerCase()} (corrupt or a different file)`;
  }
  return undefined;
}

/** "bytes 100-199/1000" -> 1000. */
function totalFromContentRange(header: string | null): number | undefined {
  const match = header ? /\/(\d+)\s*$/.exec(header) : null;
  return match ? Number(match[1]) : undefined;
}

/** What to do after a network failure: retrying resumes; a mirror helps unless it is the mirror that failed. */
function advice(options: DownloadOptions): string {
  return options.mirror === undefined
    ? 'run again to resume, or use a mirror (--mirror URL or SEGTOOL_MIRROR: a host with the same paths)'
    : `the mirror ${options.mirror} failed: run again to resume, or try another mirror (--mirror URL or SEGTOOL_MIRROR)`;
}

/**
 * Downloads `url` to `dest`. An existing `dest` that passes the size/checksum/validate checks is
 * kept (when none is given, any existing file is kept: delete it to download again).
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const stallMs = stallTimeoutMs(options.stallTimeoutMs);
  await mkdir(dirname(dest), { recursive: true });
  const existing = await sizeOf(dest);
  if (existing !== undefined) {
    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    await hashFile(dest, [sha1, sha256]);
    const digests = { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
    const problem = checkProblem(existing, digests, options);
    if (problem) throw new SegtoolError('ERR_BAD_FILE', `${dest}: ${problem}`); // a bad file in place is an error, not silently replaced
    if (options.validate) {
      try {
        await options.validate(dest);
      } catch (error) {
        throw new SegtoolError('ERR_BAD_FILE', `${dest} is not the expected file (delete it to download again): ${(error as Error).message}`, { cause: error });
      }
    }
    return { path: dest, bytes: existing, sha256: digests.sha256, ...(options.checksum ? { verified: options.checksum } : {}), resumedFrom: existing, alreadyPresent: true };
  }

  // One timer for the whole transfer, refreshed by every chunk: waiting for the response counts too.
  const stall = new AbortController();
  const timer = setTimeout(() => stall.abort(), stallMs);
  const signal = options.signal ? AbortSignal.any([options.signal, stall.signal]) : stall.signal;
  const seconds = `${stallMs / 1000} s`;
  const stalled = (received: number, cause: unknown): SegtoolError =>
    new SegtoolError(
      'ERR_DOWNLOAD',
      `Download of ${url} stalled: no data for ${seconds} (at ${received} bytes; the limit is SEGTOOL_STALL_TIMEOUT seconds): ${advice(options)}`,
      { cause },
    );
  try {
    const part = `${dest}.part`;
    let offset = options.resume === false ? 0 : ((await sizeOf(part)) ?? 0);
    if (offset === 0) await rm(part, { force: true });
    const headers: Record<string, string> = { 'user-agent': 'segtool' };
    if (offset > 0) headers['range'] = `bytes=${offset}-`;
    let response: Response;
    try {
      response = await fetch(url, { headers, redirect: 'follow', signal });
    } catch (error) {
      if (options.signal?.aborted) throw new SegtoolError('ERR_ABORTED', `Download of ${url} stopped; run again to resume`, { cause: error });
      if (stall.signal.aborted) throw stalled(offset, error);
      const reason = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
      throw new SegtoolError(
        'ERR_DOWNLOAD',
        options.mirror === undefined
          ? `Cannot reach ${url}: ${reason} (the host is often down: use a mirror with --mirror URL or SEGTOOL_MIRROR, a host with the same paths)`
          : `Cannot reach the mirror ${options.mirror} (${url}): ${reason}; check the --mirror / SEGTOOL_MIRROR URL or try another mirror`,
        { cause: error },
      );
    }

    let total: number | undefined;
    if (response.status === 416 && offset > 0) {
      // Range past the end: the .part already holds the whole file.
      await response.body?.cancel();
      total = totalFromContentRange(response.headers.get('content-range')) ?? offset;
    } else if (response.status === 206 && offset > 0) {
      total = totalFromContentRange(response.headers.get('content-range'));
    } else if (response.ok) {
      if (offset > 0) {
        offset = 0; // the server ignored the Range: start over
        await rm(part, { force: true });
      }
      const length = response.headers.get('content-length');
      total = length === null ? undefined : Number(length);
    } else {
      await response.body?.cancel();
      throw new SegtoolError(
        'ERR_DOWNLOAD',
        `${url}: HTTP ${response.status} ${response.statusText}` +
          (options.mirror === undefined ? '' : ` (from the mirror ${options.mirror}: it needs the original host's paths below it)`),
      );
    }
    if (options.size !== undefined && total !== undefined && total !== options.size) {
      await response.body?.cancel();
      throw new SegtoolError('ERR_BAD_FILE', `${url} is ${total} bytes but expected ${options.size} (a different file? check the mirror)`);
    }
    total ??= options.size;

    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    if (offset > 0) await hashFile(part, [sha1, sha256]);
    timer.refresh(); // hashing a large .part is not the server's delay
    let received = offset;
    const resumedFrom = offset;
    options.onProgress?.({ url, received, resumedFrom, ...(total !== undefined ? { total } : {}) });
    if (response.status !== 416 && response.body) {
      const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
      body.on('data', (chunk: Buffer) => {
        timer.refresh();
        sha1.update(chunk);
        sha256.update(chunk);
        received += chunk.length;
        options.onProgress?.({ url, received, resumedFrom, ...(total !== undefined ? { total } : {}) });
      });
      const file = createWriteStream(part, { flags: offset > 0 ? 'a' : 'w' });
      try {
        await pipeline(body, file, { signal });
      } catch (error) {
        // Writes already queued still land after the pipeline rejects: wait for the file to close,
        // so that the .part a later attempt resumes from is final (its size is the resume offset).
        if (!file.closed) await once(file, 'close').catch(() => undefined);
        if (options.signal?.aborted) {
          throw new SegtoolError('ERR_ABORTED', `Download of ${url} stopped at ${received} bytes; run again to resume`, { cause: error });
        }
        if (stall.signal.aborted) throw stalled(received, error);
        throw new SegtoolError('ERR_DOWNLOAD', `Download of ${url} broke off at ${received} bytes (${(error as Error).message}): ${advice(options)}`, {
          cause: error,
        });
      }
    }
    clearTimeout(timer);
    if (total !== undefined && received < total) {
      throw new SegtoolError('ERR_DOWNLOAD', `Download of ${url} ended at ${received} of ${total} bytes: ${advice(options)}`);
    }
    const digests = { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
    try {
      const problem = checkProblem(received, digests, options);
      if (problem) throw new SegtoolError('ERR_BAD_FILE', problem);
      await options.validate?.(part);
    } catch (error) {
      await rm(part, { force: true }); // resuming a wrong file would never succeed
      const source = options.mirror === undefined ? url : `${url} (the mirror ${options.mirror})`;
      throw new SegtoolError('ERR_BAD_FILE', `${source} served something that is not the expected file (removed it): ${(error as Error).message}`, {
        cause: error,
      });
    }
    await rename(part, dest);
    return { path: dest, bytes: received, sha256: digests.sha256, ...(options.checksum ? { verified: options.checksum } : {}), resumedFrom, alreadyPresent: false };
  } finally {
    clearTimeout(timer);
  }
}
