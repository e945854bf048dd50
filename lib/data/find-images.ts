/**
 * Expanding the inputs of `segtool test` / segmentFiles: files as given, folders searched
 * recursively. Only regular files are images: a device (/dev/zero), a FIFO or a socket named as
 * an input is refused with ERR_BAD_FILE naming it, a missing path is ERR_NOT_FOUND, and an
 * unreadable folder is ERR_BAD_FILE — never a raw errno stack.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { SegtoolError } from '../errors.js';
import { expectString, invalid } from '../validate.js';
import { fileKind } from '../io/files.js';
import { IMAGE_EXTENSIONS } from './list.js';

export interface FoundImage {
  path: string;
  /** Output name: the path relative to the folder it was found in (or the file name). */
  name: string;
}

/**
 * Image files under `inputs`: regular files as given (any type the decoder reads), folders
 * searched recursively for regular files with an image extension (case-insensitive), in sorted
 * order. Two inputs that yield the same output name get "-1", "-2", ... suffixes.
 */
export async function findImages(inputs: readonly string[]): Promise<FoundImage[]> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('inputs', 'a non-empty array of image files or folders', inputs);
  const found: FoundImage[] = [];
  for (const [i, input] of inputs.entries()) {
    expectString(`inputs[${i}]`, input);
    let info;
    try {
      info = await stat(input);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new SegtoolError('ERR_NOT_FOUND', `image or folder not found: ${input}`, { cause: error });
      throw new SegtoolError('ERR_BAD_FILE', `Cannot read image or folder ${input}: ${(error as Error).message}`, { cause: error });
    }
    if (info.isFile()) {
      found.push({ path: resolve(input), name: basename(input) });
      continue;
    }
    if (!info.isDirectory()) {
      throw new SegtoolError('ERR_BAD_FILE', `${input} is ${fileKind(info)}, not an image file or a folder of images`);
    }
    let entries;
    try {
      entries = await readdir(input, { recursive: true, withFileTypes: true });
    } catch (error) {
      throw new SegtoolError('ERR_BAD_FILE', `Cannot list folder ${input}: ${(error as Error).message}`, { cause: error });
    }
    const images = entries
      .filter((e) => e.isFile() && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase()))
      .map((e) => join(e.parentPath, e.name))
      .sort();
    if (images.length === 0) {
      throw new SegtoolError('ERR_NOT_FOUND', `no images (${IMAGE_EXTENSIONS.join(' ')}) in ${input}`);
    }
    for (const image of images) found.push({ path: resolve(image), name: relative(input, image) });
  }
  // Two inputs may yield the same output name (a.jpg given twice, x/a.jpg and y/a.jpg as files,
  // x.jpg and x.png: outputs are named by the stem): later ones get -1, -2, ... (a free stem).
  const stemOf = (name: string): string => name.slice(0, name.length - extname(name).length).toLowerCase();
  const taken = new Set(found.map((item) => stemOf(item.name)));
  const seen = new Set<string>();
  for (const item of found) {
    const stem = stemOf(item.name);
    if (!seen.has(stem)) {
      seen.add(stem);
      continue;
    }
    const base = item.name.slice(0, item.name.length - extname(item.name).length);
    let n = 1;
    while (taken.has(`${stem}-${n}`)) n++;
    item.name = `${base}-${n}${extname(item.name)}`;
    taken.add(`${stem}-${n}`);
    seen.add(`${stem}-${n}`);
  }
  return found;
}
