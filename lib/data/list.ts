/**
 * Sample lists: the reference's .odgt files (one JSON object per line: fpath_img, fpath_segm,
 * width, height; paths relative to root_dataset) and plain folders (images/ + annotations/ with
 * matching names), with the reference's max_sample and start_idx/end_idx selection.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import type { SegtoolConfig } from '../config/schema.js';
import { SegtoolError } from '../errors.js';
import { describe, expectInteger, expectObject, expectString, invalid } from '../validate.js';
import { readBytes, readImageSize } from './decode.js';
import { resolveDecodeOptions, type DecodeOptions } from './options.js';

export interface SampleRecord {
  /** Path of the image (resolved against the list's root). */
  image: string;
  /** Path of the annotation: one class value per pixel, 0 = unlabeled. */
  annotation?: string;
  /** Size of the image as the pipeline sees it; needed for training (batch bucketing). */
  width?: number;
  height?: number;
  /** Where the record came from, for messages: "list.odgt:12" or the image path. */
  source?: string;
}

export interface ListSelection {
  /** Keep only the first maxSample records when > 0 (DATASET max_sample; -1 = all). */
  maxSample?: number;
  /** With endIdx: keep records [startIdx, endIdx) (a shard); -1 = unset. */
  startIdx?: number;
  endIdx?: number;
}

export interface OdgtOptions extends ListSelection {
  /** Directory the list's paths are relative to (DATASET.root_dataset); default: the current directory. */
  root?: string;
  /** Stops reading the list (ERR_ABORTED). */
  signal?: AbortSignal;
}

/** Applies max_sample then start/end, as the reference did; an empty result is an error. */
export function selectSamples<T>(records: readonly T[], selection: ListSelection = {}, what = 'the list'): T[] {
  const maxSample = expectInteger('maxSample', selection.maxSample ?? -1, -1);
  const startIdx = expectInteger('startIdx', selection.startIdx ?? -1, -1);
  const endIdx = expectInteger('endIdx', selection.endIdx ?? -1, -1);
  if ((startIdx >= 0) !== (endIdx >= 0)) {
    throw invalid(startIdx >= 0 ? 'endIdx' : 'startIdx', 'an index >= 0 (startIdx and endIdx select a shard together)', startIdx >= 0 ? endIdx : startIdx);
  }
  if (startIdx >= 0 && endIdx < startIdx) throw invalid('endIdx', `an index >= startIdx (${startIdx})`, endIdx);
  if (records.length === 0) throw new SegtoolError('ERR_BAD_FILE', `${what} has no samples`);
  let out = records.slice();
  if (maxSample > 0) out = out.slice(0, maxSample);
  if (startIdx >= 0) out = out.slice(startIdx, endIdx);
  if (out.length === 0) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `startIdx ${startIdx} / endIdx ${endIdx} select no samples of ${what} (${records.length} samples)`,
    );
  }
  return out;
}

/** Parses odgt text; `source` names it in messages, `root` resolves relative paths. */
export function parseOdgt(text: string, options: { source?: string; root?: string } = {}): SampleRecord[] {
  const source = options.source ?? 'odgt list';
  const root = resolve(options.root ?? '.');
  const records: SampleRecord[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const where = `${source}:${i + 1}`;
    const bad = (reason: string, cause?: unknown): SegtoolError =>
      new SegtoolError('ERR_BAD_FILE', `${where}: ${reason}`, { cause });
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch (error) {
      throw bad(`not a JSON object (${(error as Error).message})`, error);
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`expected a JSON object, got ${describe(entry)}`);
    const e = entry as Record<string, unknown>;
    if (typeof e.fpath_img !== 'string' || e.fpath_img === '') {
      throw bad(e.fpath_img === undefined ? 'lacks the key fpath_img' : `fpath_img must be a non-empty string, got ${describe(e.fpath_img)}`);
    }
    const record: SampleRecord = { image: resolve(root, e.fpath_img), source: where };
    if (e.fpath_segm !== undefined) {
      if (typeof e.fpath_segm !== 'string' || e.fpath_segm === '') throw bad(`fpath_segm must be a non-empty string, got ${describe(e.fpath_segm)}`);
      record.annotation = resolve(root, e.fpath_segm);
    }
    if (e.width !== undefined || e.height !== undefined) {
      for (const key of ['width', 'height'] as const) {
        const v = e[key];
        if (v === undefined) throw bad(`has ${key === 'width' ? 'height' : 'width'} but lacks the key ${key}`);
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw bad(`${key} must be a positive integer, got ${describe(v)}`);
      }
      record.width = e.width as number;
      record.height = e.height as number;
    }
    records.push(record);
  }
  return records;
}

/**
 * Reads an .odgt file and applies the selection. The file must be a regular file within
 * SEGTOOL_MAX_LIST_BYTES (default 256 MiB).
 */
export async function readOdgt(file: string, options: OdgtOptions = {}): Promise<SampleRecord[]> {
  expectString('file', file);
  expectObject('options', options, true);
  const root = options.root === undefined ? '.' : expectString('root', options.root);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalid('signal', 'an AbortSignal', options.signal);
  const text = (await readBytes(file, 'list file', options.signal)).toString('utf8');
  const records = parseOdgt(text, { source: file, root });
  if (records.length === 0) throw new SegtoolError('ERR_BAD_FILE', `${file} lists no samples`);
  return selectSamples(records, options, file);
}

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif'];
const ANNOTATION_EXTENSIONS = ['.png', '.tif', '.tiff', '.bmp'];

export interface FolderOptions extends ListSelection, DecodeOptions {
  /** A sub-folder of images/ and annotations/, e.g. 'training' for ADEChallengeData2016. */
  subset?: string;
  /** Read each image's size from its header (needed for training; default true). */
  readSizes?: boolean;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function filesUnder(dir: string, extensions: readonly string[]): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && extensions.includes(extname(e.name).toLowerCase()))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

function stem(path: string): string {
  return path.slice(0, path.length - extname(path).length);
}

/**
 * Lists a folder: `dir/images/**` with `dir/annotations/**` of the same relative name (any
 * annotation extension), or, without an images/ folder, every image in `dir` (no annotations).
 */
export async function listFolder(dir: string, options: FolderOptions = {}): Promise<SampleRecord[]> {
  expectString('dir', dir);
  expectObject('options', options, true);
  const decode = resolveDecodeOptions(options);
  const root = resolve(dir);
  if (!(await isDirectory(root))) throw new SegtoolError('ERR_NOT_FOUND', `folder not found: ${root}`);
  const sub = options.subset === undefined ? '' : expectString('subset', options.subset);
  let imageDir = join(root, 'images', sub);
  let annotationDir: string | undefined = join(root, 'annotations', sub);
  if (!(await isDirectory(join(root, 'images')))) {
    if (sub) throw new SegtoolError('ERR_NOT_FOUND', `folder not found: ${imageDir}`);
    imageDir = root;
    annotationDir = undefined;
  } else if (!(await isDirectory(imageDir))) {
    throw new SegtoolError('ERR_NOT_FOUND', `folder not found: ${imageDir}`);
  }
  if (annotationDir && !(await isDirectory(annotationDir))) annotationDir = undefined;

  const images = await filesUnder(imageDir, IMAGE_EXTENSIONS);
  if (images.length === 0) throw new SegtoolError('ERR_BAD_FILE', `${imageDir} has no images (${IMAGE_EXTENSIONS.join(' ')})`);
  const annotations = new Map<string, string>();
  if (annotationDir) for (const a of await filesUnder(annotationDir, ANNOTATION_EXTENSIONS)) annotations.set(stem(a), a);

  const records: SampleRecord[] = [];
  const missing: string[] = [];
  for (const image of images) {
    const record: SampleRecord = { image: join(imageDir, image), source: join(imageDir, image) };
    if (annotationDir) {
      const a = annotations.get(stem(image));
      if (a === undefined) missing.push(image);
      else record.annotation = join(annotationDir, a);
    }
    records.push(record);
  }
  if (missing.length > 0) {
    throw new SegtoolError(
      'ERR_NOT_FOUND',
      `${missing.length} image(s) in ${imageDir} have no annotation in ${annotationDir} ` +
        `(expected the same name with ${ANNOTATION_EXTENSIONS.join('/')}): ${missing.slice(0, 5).join(', ')}` +
        (missing.length > 5 ? ', ...' : ''),
    );
  }
  const selected = selectSamples(records, options, imageDir);
  if (options.readSizes ?? true) await readImageSizes(selected, decode);
  return selected;
}

/** Fills in width/height from the image headers where a record lacks them (in place; returns the records). */
export async function readImageSizes(records: SampleRecord[], options: DecodeOptions = {}): Promise<SampleRecord[]> {
  const decode = resolveDecodeOptions(options);
  const todo = records.filter((r) => r.width === undefined || r.height === undefined);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const record = todo[next++]!;
      const size = await readImageSize(record.image, decode);
      record.width = size.width;
      record.height = size.height;
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, todo.length) }, worker));
  return records;
}

/**
 * The samples of DATASET.list_train or DATASET.list_val: an .odgt file (paths relative to
 * DATASET.root_dataset, as the reference) or a folder with images/ and annotations/.
 */
export async function readSampleList(cfg: SegtoolConfig, which: 'train' | 'val'): Promise<SampleRecord[]> {
  const key = which === 'train' ? 'DATASET.list_train' : 'DATASET.list_val';
  const list = which === 'train' ? cfg.DATASET.list_train : cfg.DATASET.list_val;
  try {
    if (await isDirectory(list)) return await listFolder(list, { readSizes: which === 'train' });
    return await readOdgt(list, { root: cfg.DATASET.root_dataset });
  } catch (error) {
    // The bundled configs read ADE20K's lists, which `segtool download ade20k` writes beside the images.
    const ade20k = /^(training|validation)\.odgt$/.test(basename(list))
      ? `; for ADE20K: segtool download ade20k${resolve(dirname(list)) === resolve('data') ? '' : ` --data-dir ${dirname(list)}`}`
      : '';
    if (error instanceof SegtoolError && error.code === 'ERR_NOT_FOUND' && !(await isDirectory(dirname(list)))) {
      throw new SegtoolError('ERR_NOT_FOUND', `${key}: ${list} not found (its folder ${dirname(list)} does not exist either)${ade20k}`, { cause: error });
    }
    if (error instanceof SegtoolError && error.code === 'ERR_NOT_FOUND') {
      throw new SegtoolError('ERR_NOT_FOUND', `${key}: ${error.message}${ade20k}`, { cause: error });
    }
    throw error;
  }
}
