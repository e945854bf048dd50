// TEMPORARY stub with the agreed interface; replaced by the download branch's implementation.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { downloadFile, type Checksum, type DownloadProgress } from '../cli/fetch-file.js';

export const ORIGINAL_HOST = 'http://sceneparsing.csail.mit.edu/';
export function mirrorBase(option?: string): string {
  const base = option ?? (process.env['SEGTOOL_MIRROR'] || ORIGINAL_HOST);
  return base.endsWith('/') ? base : `${base}/`;
}
export function usingMirror(option?: string): boolean {
  return mirrorBase(option) !== ORIGINAL_HOST;
}
export function cacheRoot(): string {
  return resolve(process.env['SEGTOOL_CACHE'] || join(homedir(), '.cache', 'segtool'));
}
export function cachedPath(remotePath: string, options: { cacheDir?: string } = {}): string {
  return join(options.cacheDir ?? cacheRoot(), remotePath);
}
export interface FetchCachedOptions {
  mirror?: string;
  cacheDir?: string;
  validate?: (path: string) => Promise<void>;
  checksum?: Checksum;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  stallTimeoutMs?: number;
  offlineHint?: string;
}
export interface FetchCachedResult { path: string; url: string; sha256: string; bytes: number; downloaded: boolean; resumedFrom: number }
export async function fetchCached(remotePath: string, options: FetchCachedOptions = {}): Promise<FetchCachedResult> {
  const url = mirrorBase(options.mirror) + remotePath;
  const dest = cachedPath(remotePath, options);
  const had = existsSync(dest);
  const r = await downloadFile(url, dest, { ...(options.signal ? { signal: options.signal } : {}) });
  if (!had && options.validate) await options.validate(dest);
  return { path: dest, url, sha256: r.sha256, bytes: r.bytes, downloaded: !had, resumedFrom: r.resumedFrom };
}
