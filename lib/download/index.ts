/** Downloads: resumable transfers (fetch.ts) and the cache every downloaded file goes through (cache.ts). */
export { downloadFile, stallTimeoutMs, DEFAULT_STALL_TIMEOUT_MS, type Checksum, type DownloadOptions, type DownloadProgress, type DownloadResult } from './fetch.js';
export {
  ORIGINAL_HOST,
  mirrorBase,
  usingMirror,
  cacheRoot,
  cachedPath,
  fetchCached,
  type FetchCachedOptions,
  type FetchCachedResult,
} from './cache.js';
