/**
 * Resumable HTTP(S) downloads for `segtool download`: the file grows as DEST.part and becomes
 * DEST only once complete and verified (size, and SHA-1/SHA-256 when known), so an interrupted
 * download never leaves a truncated file where a good one is expected, and the next attempt
 * asks the server for the missing bytes only (HTTP Range).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SegtoolError } from '../errors.js';

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

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, hashes: Hash[]): Promise<void> {
  for await (const chunk of createReadStream(path)) for (const h of hashes) h.update(chunk as Buffer);
}

function verify(path: string, bytes: number, digests: { sha1: string; sha256: string }, options: DownloadOptions): void {
  if (options.size !== undefined && bytes !== options.size) {
    throw new SegtoolError('ERR_BAD_FILE', `${path}: downloaded ${bytes} bytes but expected ${options.size}`);
  }
  const expected = options.checksum;
  if (expected && digests[expected.algorithm] !== expected.hex.toLowerCase()) {
    throw new SegtoolError(
      'ERR_BAD_FILE',
      `${path}: ${expected.algorithm} is ${digests[expected.algorithm]} but expected ${expected.hex.toLowerCase()} (corrupt or a different file)`,
    );
  }
}

/** "bytes 100-199/1000" -> 1000. */
function totalFromContentRange(header: string | null): number | undefined {
  const match = header ? /\/(\d+)\s*$/.exec(header) : null;
  return match ? Number(match[1]) : undefined;
}

/**
 * Downloads `url` to `dest`. An existing `dest` that passes the size/checksum checks is kept
 * (when neither is known, any existing file is kept: delete it to download again).
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  await mkdir(dirname(dest), { recursive: true });
  const existing = await sizeOf(dest);
  if (existing !== undefined) {
    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    await hashFile(dest, [sha1, sha256]);
    const digests = { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
    verify(dest, existing, digests, options); // a bad file in place is an error, not silently replaced
    return { path: dest, bytes: existing, sha256: digests.sha256, ...(options.checksum ? { verified: options.checksum } : {}), resumedFrom: existing, alreadyPresent: true };
  }

  const part = `${dest}.part`;
  let offset = options.resume === false ? 0 : ((await sizeOf(part)) ?? 0);
  if (offset === 0) await rm(part, { force: true });
  const headers: Record<string, string> = { 'user-agent': 'segtool' };
  if (offset > 0) headers['range'] = `bytes=${offset}-`;
  let response: Response;
  try {
    response = await fetch(url, { headers, redirect: 'follow', ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    if (options.signal?.aborted) throw new SegtoolError('ERR_ABORTED', `Download of ${url} stopped; run again to resume`, { cause: error });
    const reason = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
    throw new SegtoolError('ERR_NOT_FOUND', `Cannot reach ${url}: ${reason} (the host is often down: try --mirror URL)`, { cause: error });
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
    throw new SegtoolError('ERR_NOT_FOUND', `${url}: HTTP ${response.status} ${response.statusText}`);
  }
  if (options.size !== undefined && total !== undefined && total !== options.size) {
    await response.body?.cancel();
    throw new SegtoolError('ERR_BAD_FILE', `${url} is ${total} bytes but expected ${options.size} (a different file? check the mirror)`);
  }
  total ??= options.size;

  const sha1 = createHash('sha1');
  const sha256 = createHash('sha256');
  if (offset > 0) await hashFile(part, [sha1, sha256]);
  let received = offset;
  const resumedFrom = offset;
  options.onProgress?.({ url, received, resumedFrom, ...(total !== undefined ? { total } : {}) });
  if (response.status !== 416 && response.body) {
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      sha1.update(chunk);
      sha256.update(chunk);
      received += chunk.length;
      options.onProgress?.({ url, received, resumedFrom, ...(total !== undefined ? { total } : {}) });
    });
    try {
      await pipeline(body, createWriteStream(part, { flags: offset > 0 ? 'a' : 'w' }), options.signal ? { signal: options.signal } : {});
    } catch (error) {
      if (options.signal?.aborted) {
        throw new SegtoolError('ERR_ABORTED', `Download of ${url} stopped at ${received} bytes; run again to resume`, { cause: error });
      }
      throw new SegtoolError('ERR_BAD_FILE', `Download of ${url} broke off at ${received} bytes (${(error as Error).message}); run again to resume`, {
        cause: error,
      });
    }
  }
  if (total !== undefined && received < total) {
    throw new SegtoolError('ERR_BAD_FILE', `Download of ${url} ended at ${received} of ${total} bytes; run again to resume`);
  }
  const digests = { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
  try {
    verify(url, received, digests, options);
  } catch (error) {
    await rm(part, { force: true }); // resuming a corrupt file would never succeed
    throw error;
  }
  await rename(part, dest);
  return { path: dest, bytes: received, sha256: digests.sha256, ...(options.checksum ? { verified: options.checksum } : {}), resumedFrom, alreadyPresent: false };
}
