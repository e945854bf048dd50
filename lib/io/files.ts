/**
 * Path checks shared by every reader (a missing file is ERR_NOT_FOUND naming what it was for), and
 * atomic writes shared by every writer.
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SegtoolError } from '../errors.js';
import { expectString } from '../validate.js';

export function expectExistingFile(name: string, path: unknown): string {
  const file = expectString(name, path);
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch {
    throw new SegtoolError('ERR_NOT_FOUND', `${name}: file not found: ${file}`);
  }
  if (!isFile) throw new SegtoolError('ERR_NOT_FOUND', `${name}: ${file} is not a file`);
  return file;
}

/**
 * Writes `data` to `path` through a temporary file in the same folder (fsync, then rename), so
 * an interrupted write leaves the previous file intact.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const handle = await open(temporary, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}
