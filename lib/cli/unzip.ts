/**
 * Extracts a .zip (stored and deflated entries, as the ADE20K archive has) with node:zlib, so
 * `segtool download ade20k` needs no unzip program. Entries are streamed to disk one at a time;
 * names that would escape the destination ("../", absolute paths) are refused.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import { SegtoolError } from '../errors.js';

interface Entry {
  name: string;
  method: number;
  compressedSize: number;
  localHeaderOffset: number;
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const CENTRAL_HEADER = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;

async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

async function readEntries(file: FileHandle, path: string): Promise<Entry[]> {
  const size = (await file.stat()).size;
  // The end record is 22 bytes plus a comment of up to 65535 bytes.
  const tailLength = Math.min(size, 22 + 65535);
  const tail = await readAt(file, size - tailLength, tailLength);
  let end = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === END_OF_CENTRAL_DIRECTORY) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new SegtoolError('ERR_BAD_FILE', `${path}: not a zip file (no end of central directory; truncated download?)`);
  const count = tail.readUInt16LE(end + 10);
  const directorySize = tail.readUInt32LE(end + 12);
  const directoryOffset = tail.readUInt32LE(end + 16);
  if (count === 0xffff || directoryOffset === 0xffffffff) throw new SegtoolError('ERR_BAD_FILE', `${path}: ZIP64 archives are not supported`);
  const directory = await readAt(file, directoryOffset, directorySize);
  const entries: Entry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > directory.length || directory.readUInt32LE(p) !== CENTRAL_HEADER) {
      throw new SegtoolError('ERR_BAD_FILE', `${path}: corrupt central directory at entry ${i}`);
    }
    const nameLength = directory.readUInt16LE(p + 28);
    const extraLength = directory.readUInt16LE(p + 30);
    const commentLength = directory.readUInt16LE(p + 32);
    entries.push({
      method: directory.readUInt16LE(p + 10),
      compressedSize: directory.readUInt32LE(p + 20),
      localHeaderOffset: directory.readUInt32LE(p + 42),
      name: directory.toString('utf8', p + 46, p + 46 + nameLength),
    });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function safeTarget(dest: string, name: string, path: string): string {
  const clean = normalize(name);
  if (isAbsolute(clean) || clean.startsWith(`..${sep}`) || clean === '..') {
    throw new SegtoolError('ERR_BAD_FILE', `${path}: entry "${name}" would be written outside ${dest}`);
  }
  return join(dest, clean);
}

/** The entry names of a zip file (its central directory); ERR_BAD_FILE when it is not a zip. */
export async function zipEntryNames(zipPath: string): Promise<string[]> {
  const file = await open(zipPath, 'r');
  try {
    return (await readEntries(file, zipPath)).map((e) => e.name);
  } finally {
    await file.close();
  }
}

/** Extracts `zipPath` into `dest`; returns the number of files written. */
export async function extractZip(zipPath: string, dest: string, onProgress?: (done: number, total: number) => void): Promise<number> {
  const file = await open(zipPath, 'r');
  try {
    const entries = await readEntries(file, zipPath);
    let written = 0;
    for (const [i, entry] of entries.entries()) {
      const target = safeTarget(dest, entry.name, zipPath);
      if (entry.name.endsWith('/')) {
        await mkdir(target, { recursive: true });
        continue;
      }
      const local = await readAt(file, entry.localHeaderOffset, 30);
      if (local.length < 30 || local.readUInt32LE(0) !== LOCAL_HEADER) {
        throw new SegtoolError('ERR_BAD_FILE', `${zipPath}: corrupt local header of ${entry.name}`);
      }
      const dataStart = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      if (entry.method !== 0 && entry.method !== 8) {
        throw new SegtoolError('ERR_BAD_FILE', `${zipPath}: ${entry.name} uses compression method ${entry.method} (only stored and deflate are supported)`);
      }
      await mkdir(dirname(target), { recursive: true });
      const source: Readable =
        entry.compressedSize === 0
          ? Readable.from([])
          : file.createReadStream({ start: dataStart, end: dataStart + entry.compressedSize - 1, autoClose: false });
      if (entry.method === 8) await pipeline(source, createInflateRaw(), createWriteStream(target));
      else await pipeline(source, createWriteStream(target));
      written++;
      onProgress?.(i + 1, entries.length);
    }
    return written;
  } finally {
    await file.close();
  }
}
