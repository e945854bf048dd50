/**
 * Training starts where the reference starts: with `MODEL.weights_encoder` empty and
 * `MODEL.pretrained` true, the encoder begins from the reference's ImageNet checkpoint for its
 * architecture (lib/imagenet.ts), fetched once into the download cache and checked against the
 * architecture's keys and shapes before it is accepted.
 */
import { basename } from 'node:path';
import { checkWeightsFile, loadWeights, OPTIONAL_BUFFER, summarizeKeys, type WeightsLoadReport } from '../checkpoint.js';
import type { EncoderName } from '../config/names.js';
import { cachedPath, fetchCached, type FetchCachedOptions, type FetchCachedResult } from '../download/cache.js';
import { IMAGENET_REMOTE_FOLDER, imagenetCheckEncoder, imagenetCheckpointFor, type ImagenetCheckpoint } from '../imagenet.js';
import { ENCODER_CHANNELS } from '../config/names.js';
import type { SegmentationModel } from '../model.js';

export type PretrainedFetchOptions = Pick<FetchCachedOptions, 'mirror' | 'cacheDir' | 'signal' | 'onProgress' | 'stallTimeoutMs' | 'offlineHint'>;

/** What to do instead when the file cannot be had. */
const FROM_SCRATCH_HINT =
  'To train from random weights instead, set MODEL.pretrained false (the published results need ImageNet-pretrained encoders); ' +
  'to start from other weights, set MODEL.weights_encoder FILE.';

/** The path below the download host, e.g. model/pretrained_resnet/resnet50-imagenet.pth. */
export function imagenetRemotePath(checkpoint: ImagenetCheckpoint): string {
  return IMAGENET_REMOTE_FOLDER + checkpoint.file;
}

/** Where the checkpoint of `encoder` lives in the cache (whether or not it is there yet). */
export function imagenetCachePath(encoder: EncoderName, options: { cacheDir?: string } = {}): string {
  return cachedPath(imagenetRemotePath(imagenetCheckpointFor(encoder)), options);
}

/**
 * Throws unless `path` holds `checkpoint`'s network: it parses as weights and maps onto the
 * encoder with the reference's strictness (every key and shape checked).
 */
export function checkImagenetFile(path: string, checkpoint: ImagenetCheckpoint): Promise<WeightsLoadReport> {
  const encoder = imagenetCheckEncoder(checkpoint);
  return checkWeightsFile(path, 'encoder', { encoder, decoder: 'c1', fcDim: ENCODER_CHANNELS[encoder], numClass: 1 }, { strict: checkpoint.strict });
}

/** The cached ImageNet checkpoint of `encoder`, downloaded (and checked) when it is not there yet. */
export function fetchImagenetCheckpoint(encoder: EncoderName, options: PretrainedFetchOptions = {}): Promise<FetchCachedResult> {
  const checkpoint = imagenetCheckpointFor(encoder);
  return fetchCached(imagenetRemotePath(checkpoint), {
    ...options,
    offlineHint: options.offlineHint ?? FROM_SCRATCH_HINT,
    validate: async (path) => {
      await checkImagenetFile(path, checkpoint);
    },
  });
}

export interface PretrainedLoad {
  file: FetchCachedResult;
  report: WeightsLoadReport;
  /** One line: what was loaded from where, and what was left out. */
  summary: string;
}

/** Starts `model`'s encoder from its ImageNet checkpoint (the decoder keeps its initialisation). */
export async function loadImagenetEncoder(model: SegmentationModel, options: PretrainedFetchOptions = {}): Promise<PretrainedLoad> {
  const encoder = model.info.encoder as EncoderName;
  const checkpoint = imagenetCheckpointFor(encoder);
  const file = await fetchImagenetCheckpoint(encoder, options);
  const report = await loadWeights(model, { path: file.path, part: 'encoder' }, { strict: checkpoint.strict, wholeModel: false });
  const loaded = report.files.reduce((n, f) => n + f.loaded, 0);
  const leftOut = report.files.flatMap((f) => f.leftOut);
  const notInFile = report.missing.filter((k) => k.startsWith('encoder.') && !OPTIONAL_BUFFER.test(k));
  const summary =
    `Encoder ${encoder} starts from ImageNet weights ${basename(file.path)} (${file.downloaded ? 'downloaded from ' + file.url : 'cached'}: ${file.path}): ` +
    `${loaded} tensors loaded, ${leftOut.length === 0 ? 'nothing left out' : `left out ${summarizeKeys(leftOut)}`}` +
    (notInFile.length > 0 ? `; not in the file (initialised as the reference does): ${summarizeKeys(notInFile)}` : '');
  return { file, report, summary };
}

/** Printed when training starts from random weights on purpose. */
export const FROM_SCRATCH_WARNING =
  'MODEL.pretrained is false: the encoder starts from random weights. The reference\'s published results need ImageNet-pretrained encoders; ' +
  'expect far lower mIoU on ADE20K-sized training runs.';
