/** Path checks shared by every reader: a missing file is ERR_NOT_FOUND naming what it was for. */
import { statSync } from 'node:fs';
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
