// Shared by the benchmark's runner and its segtool worker: the five models, the procedural
// inputs of test/fixtures/README.md section 1 (the Python baseline generates the same values),
// and peak-RSS bookkeeping through /proc.
import { readFileSync, writeFileSync } from 'node:fs';

export const DEFAULT_MODELS = [
  'resnet18dilated-c1_deepsup',
  'resnet50dilated-ppm_deepsup',
  'resnet50-upernet',
  'mobilenetv2dilated-c1_deepsup',
  'hrnetv2-c1',
];

export function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function mix32(x) {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** u_i for NAME, i = 0..n-1, as float32 (the fixtures' input rule). */
export function proceduralFloat32(name, n) {
  const h = fnv1a32(name);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (mix32((h ^ mix32(i)) >>> 0) / 2147483648) - 1;
  return out;
}

/** floor((u_i + 1) / 2 * 151) - 1 as int64 (the fixtures' label rule). */
export function proceduralLabel(name, n) {
  const h = fnv1a32(name);
  const out = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const u = mix32((h ^ mix32(i)) >>> 0) / 2147483648 - 1;
    out[i] = BigInt(Math.floor(((u + 1) / 2) * 151) - 1);
  }
  return out;
}

/** The process's peak resident set (VmHWM) and current RSS, in bytes. */
export function memory() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { peak: kib('VmHWM'), rss: kib('VmRSS') };
}

/** Resets VmHWM to the current RSS (Linux >= 4.0), so that the peak covers what follows. */
export function resetPeak() {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
