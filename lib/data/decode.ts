/**
 * Files -> pixels. Images become interleaved 8-bit RGB; annotations become one channel of class
 * values exactly as stored. What a user may bring and what happens (docs/data.md has the table):
 * grayscale -> gray replicated to RGB; RGBA / gray+alpha -> alpha dropped (not composited, as
 * PIL's convert('RGB')); palette -> colours for images, indices for annotations; 16-bit -> high
 * byte for images, full values for annotations; EXIF orientation applied by default; embedded ICC
 * profiles ignored (the reference never applied them, and the weights learnt raw values).
 */
import type sharpFactory from 'sharp';
import type { Metadata as SharpMetadata, Sharp } from 'sharp';
import { SegtoolError } from '../errors.js';
import { readInputFile } from '../io/files.js';
import { resolveDecodeOptions, type DecodeOptions, type ImageDecoderName, type ResolvedDecodeOptions } from './options.js';
import { expectString } from '../validate.js';
import { decodePng, isPng, PngError } from './png.js';

export interface RgbImage {
  /** Interleaved RGB, row-major, width * height * 3 bytes. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface LabelMap {
  /** One class value per pixel, as stored in the file (0 = unlabeled in ADE20K). */
  data: Uint8Array | Uint16Array;
  width: number;
  height: number;
}

type SharpFactory = typeof sharpFactory;

let sharpPromise: Promise<SharpFactory> | undefined;

/**
 * Loads sharp once. On glibc Linux it must be loaded by the main thread before worker threads
 * use it (its shared libraries must outlive the workers), so the loaders call this first.
 */
export function loadSharp(): Promise<SharpFactory> {
  sharpPromise ??= import('sharp').then(
    (module) => {
      const sharp = (module as unknown as { default: SharpFactory }).default;
      // One image at a time per call: parallelism comes from our worker threads, and the
      // operation cache only holds memory for images we never see twice.
      sharp.cache(false);
      sharp.concurrency(1);
      return sharp;
    },
    (error: unknown) => {
      sharpPromise = undefined;
      throw new SegtoolError(
        'ERR_ADDON_LOAD',
        `Could not load the image decoder sharp (${(error as Error).message}). ` +
          `Reinstall dependencies (npm ci) so that its prebuilt binary for this platform is present, or pass decoder: 'jimp'.`,
        { cause: error },
      );
    },
  );
  return sharpPromise;
}

/** What readBytes reads, and the limit (lib/io/files.ts READ_LIMITS) that bounds it. */
export type InputFileKind = 'image' | 'annotation' | 'list file';

/**
 * Reads a whole regular file within its kind's byte limit (lib/io/files.ts READ_LIMITS): a
 * missing file is ERR_NOT_FOUND naming what it was meant to be; a folder, FIFO, device or
 * socket, or a file over the limit, is ERR_BAD_FILE; an aborted `signal` is ERR_ABORTED.
 */
export function readBytes(path: string, what: InputFileKind, signal?: AbortSignal): Promise<Buffer> {
  return readInputFile(path, what === 'list file' ? 'list' : what, signal);
}

/**
 * The raster formats segtool decodes, as sharp's metadata names them. Vector and document
 * formats (SVG, PDF) and anything else sharp might load are refused: they would be rendered at a
 * size of the file's choosing, and are not photographs.
 */
export const SUPPORTED_IMAGE_FORMATS: readonly string[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif'];
/** Annotations: PNG (decoded by lib/data/png.ts) or single-channel TIFF (through sharp). */
export const SUPPORTED_ANNOTATION_FORMATS: readonly string[] = ['png', 'tiff'];
const IMAGE_TYPES_TEXT = 'JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF';

/**
 * Throws ERR_BAD_IMAGE naming `path` and the supported types unless `format` (sharp's
 * metadata().format) is one of the supported ones for `kind`. Every decode path calls this.
 */
export function checkImageFormat(format: string | undefined, path: string, kind: 'image' | 'annotation' = 'image'): void {
  const allowed = kind === 'image' ? SUPPORTED_IMAGE_FORMATS : SUPPORTED_ANNOTATION_FORMATS;
  if (format !== undefined && allowed.includes(format)) return;
  const name = (format ?? 'unknown').toUpperCase();
  throw new SegtoolError(
    'ERR_BAD_IMAGE',
    kind === 'image'
      ? `Cannot decode image ${path}: ${name} is not a supported image type (expected ${IMAGE_TYPES_TEXT})`
      : `Cannot decode annotation ${path}: ${name} is not a supported annotation type (expected PNG or single-channel TIFF)`,
  );
}

/** sharp's metadata, with its errors as ERR_BAD_IMAGE naming the file. */
async function sharpMetadata(image: Sharp, path: string, what: string): Promise<SharpMetadata> {
  try {
    return await image.metadata();
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0]!;
    throw new SegtoolError(
      'ERR_BAD_IMAGE',
      `Cannot decode ${what} ${path}: ${/unsupported image format/i.test(reason) ? `not a supported ${what} type (expected ${what === 'image' ? IMAGE_TYPES_TEXT : 'PNG or single-channel TIFF'})` : reason}`,
      { cause: error },
    );
  }
}

function badImage(path: string, reason: string, cause?: unknown): SegtoolError {
  return new SegtoolError('ERR_BAD_IMAGE', `Cannot decode image ${path}: ${reason}`, { cause });
}

/** Decodes an image file's bytes to 8-bit RGB. */
export async function decodeImage(bytes: Uint8Array, path: string, options: ResolvedDecodeOptions): Promise<RgbImage> {
  if (bytes.length === 0) throw badImage(path, 'the file is empty');
  return options.decoder === 'jimp' ? decodeWithJimp(bytes, path) : decodeWithSharp(bytes, path, options);
}

async function decodeWithSharp(bytes: Uint8Array, path: string, options: ResolvedDecodeOptions): Promise<RgbImage> {
  const sharp = await loadSharp();
  let result: { data: Buffer; info: { width: number; height: number; channels: number } };
  const image = sharp(bytes, { failOn: 'error', ignoreIcc: true, autoOrient: options.exif === 'apply' });
  checkImageFormat((await sharpMetadata(image, path, 'image')).format, path);
  try {
    result = await image
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw badImage(path, (error as Error).message.split('\n')[0]!, error);
  }
  const { data, info } = result;
  if (info.channels !== 3) throw badImage(path, `decoded to ${info.channels} channels, expected RGB`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

async function decodeWithJimp(bytes: Uint8Array, path: string): Promise<RgbImage> {
  const { Jimp } = await import('jimp');
  let bitmap: { data: Uint8Array; width: number; height: number };
  try {
    bitmap = (await Jimp.fromBuffer(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))).bitmap;
  } catch (error) {
    throw badImage(path, (error as Error).message, error);
  }
  const { width, height } = bitmap;
  const rgba = bitmap.data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgb[j] = rgba[i]!;
    rgb[j + 1] = rgba[i + 1]!;
    rgb[j + 2] = rgba[i + 2]!;
  }
  return { data: rgb, width, height };
}

/**
 * Decodes an annotation: PNG by our own decoder (values as stored), other formats through sharp
 * when they are single-channel. RGB annotations are accepted only when R = G = B everywhere.
 */
export async function decodeLabel(bytes: Uint8Array, path: string, decoder: ImageDecoderName): Promise<LabelMap> {
  const fail = (reason: string, cause?: unknown): SegtoolError =>
    new SegtoolError('ERR_BAD_IMAGE', `Cannot decode annotation ${path}: ${reason}`, { cause });
  if (bytes.length === 0) throw fail('the file is empty');
  let channels: number;
  let data: Uint8Array | Uint16Array;
  let width: number;
  let height: number;
  if (isPng(bytes)) {
    try {
      ({ channels, data, width, height } = decodePng(bytes));
    } catch (error) {
      if (error instanceof PngError) throw fail(error.message, error);
      throw error;
    }
  } else {
    if (decoder === 'jimp') throw fail('annotations must be PNG files when decoder is jimp');
    const sharp = await loadSharp();
    const image = sharp(bytes, { failOn: 'error', ignoreIcc: true });
    checkImageFormat((await sharpMetadata(image, path, 'annotation')).format, path, 'annotation');
    try {
      const out = await image.raw().toBuffer({ resolveWithObject: true });
      ({ channels, width, height } = out.info);
      data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
    } catch (error) {
      throw fail((error as Error).message.split('\n')[0]!, error);
    }
  }
  if (channels === 1) return { data, width, height };
  if (channels === 2) return { data: takeChannel(data, 2), width, height }; // gray + alpha: alpha ignored
  // RGB(A): only a gray image stored as colour has unambiguous class values.
  const n = width * height;
  for (let i = 0; i < n; i++) {
    const r = data[i * channels]!;
    if (data[i * channels + 1] !== r || data[i * channels + 2] !== r) {
      throw fail(
        `it is a colour image (pixel ${i % width},${Math.floor(i / width)} has R,G,B = ` +
          `${r},${data[i * channels + 1]},${data[i * channels + 2]}); annotations must hold one class value per pixel ` +
          `(grayscale or palette PNG)`,
      );
    }
  }
  return { data: takeChannel(data, channels), width, height };
}

function takeChannel(data: Uint8Array | Uint16Array, channels: number): Uint8Array | Uint16Array {
  const n = data.length / channels;
  const out = data instanceof Uint16Array ? new Uint16Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = data[i * channels]!;
  return out;
}

/** An image's size as the pipeline will see it (after EXIF orientation when applied), from its header. */
export async function readImageSize(path: string, options: ResolvedDecodeOptions): Promise<{ width: number; height: number }> {
  const bytes = await readBytes(path, 'image');
  if (options.decoder === 'jimp') {
    const image = await decodeImage(bytes, path, options);
    return { width: image.width, height: image.height };
  }
  const sharp = await loadSharp();
  const meta = await sharpMetadata(sharp(bytes), path, 'image');
  checkImageFormat(meta.format, path);
  try {
    if (!meta.width || !meta.height) throw new Error('no size in header');
    const swap = options.exif === 'apply' && (meta.orientation ?? 1) >= 5;
    return swap ? { width: meta.height, height: meta.width } : { width: meta.width, height: meta.height };
  } catch (error) {
    throw badImage(path, (error as Error).message.split('\n')[0]!, error);
  }
}

/** Where a read may be cancelled: `signal` stops reading the file (ERR_ABORTED). */
export interface ReadOptions {
  signal?: AbortSignal;
}

function expectSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw new SegtoolError('ERR_INVALID_ARG', `Expected an AbortSignal for signal but received ${typeof signal}`);
}

/**
 * Reads and decodes an image file to 8-bit RGB, as the pipeline sees it. The file must be a
 * regular file within SEGTOOL_MAX_IMAGE_BYTES (default 256 MiB) of a raster type.
 */
export async function readImage(path: string, options: DecodeOptions & ReadOptions = {}): Promise<RgbImage> {
  expectString('path', path);
  const decode = resolveDecodeOptions(options);
  return decodeImage(await readBytes(path, 'image', expectSignal(options.signal)), path, decode);
}

/**
 * Reads an annotation file: one class value per pixel, as stored (0 = unlabeled in ADE20K). The
 * file must be a regular file within SEGTOOL_MAX_ANNOTATION_BYTES (default 64 MiB).
 */
export async function readLabel(path: string, options: DecodeOptions & ReadOptions = {}): Promise<LabelMap> {
  expectString('path', path);
  const decode = resolveDecodeOptions(options);
  return decodeLabel(await readBytes(path, 'annotation', expectSignal(options.signal)), path, decode.decoder);
}
