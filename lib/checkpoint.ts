/**
 * Checkpoints: the reference's weight files (encoder_epoch_N.pth / decoder_epoch_N.pth, in every
 * format released weights come in), safetensors, and segtool's own training checkpoint, which
 * holds everything needed to resume exactly (weights, SGD momentum, epoch, iteration, config,
 * random-number state, history). Every write is atomic: a failed save never destroys the last
 * good file.
 */
import { openSync, readSync, closeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { SegtoolError } from './errors.js';
import { loadNative, native } from './native.js';
import { Tensor } from './tensor.js';
import { loadSafetensors, saveSafetensors, disposeAll } from './io/safetensors.js';
import { expectExistingFile } from './io/files.js';
import type { LoadReport, SegmentationModel } from './model.js';
import { expectBoolean, expectInteger, expectString, invalid } from './validate.js';

export type WeightsFormat = 'pth' | 'safetensors';

/** Detects a weights file's format from its first bytes (zip, pickle or safetensors header). */
export function detectWeightsFormat(path: string): WeightsFormat {
  const file = expectExistingFile('weights', path);
  const head = Buffer.alloc(16);
  const fd = openSync(file, 'r');
  let read = 0;
  try {
    read = readSync(fd, head, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (read >= 2 && head[0] === 0x50 && head[1] === 0x4b) return 'pth'; // zip (torch.save >= 1.6)
  if (read >= 2 && head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5) return 'pth'; // pickle (legacy)
  if (read >= 9 && head[8] === 0x7b) return 'safetensors'; // 8-byte length, then '{'
  throw new SegtoolError(
    'ERR_BAD_FILE',
    `${file}: not a checkpoint (expected a PyTorch .pth — zip or legacy pickle — or a safetensors file)`,
  );
}

/** Every tensor of a weights file (.pth state dict or safetensors), keys as stored ("module." stripped). */
export async function readWeights(path: string, options: { key?: string } = {}): Promise<Map<string, Tensor>> {
  const format = detectWeightsFormat(path);
  if (format === 'safetensors') {
    const file = await loadSafetensors(path);
    if (file.metadata['format'] === TRAINING_FORMAT) {
      // A training checkpoint: its weights are under "model/".
      const weights = new Map<string, Tensor>();
      for (const [key, tensor] of file.tensors) {
        if (key.startsWith('model/')) weights.set(key.slice('model/'.length), tensor);
        else tensor.dispose();
      }
      return weights;
    }
    return file.tensors;
  }
  const { tensors } = await (await loadNative()).readPth(path, options.key ?? '');
  return new Map(tensors.map(([key, handle]) => [key, new Tensor(handle)]));
}

/** Writes weights as a torch.save(OrderedDict) .pth file that torch.load reads. */
export async function writePth(path: string, tensors: Map<string, Tensor>): Promise<void> {
  expectString('path', path);
  await (await loadNative()).writePth(path, [...tensors].map(([key, t]) => [key, t.handle]));
}

/** Writes weights as .pth or .safetensors, chosen by the file extension. */
export async function writeWeights(path: string, tensors: Map<string, Tensor>): Promise<void> {
  if (/\.safetensors$/i.test(path)) await saveSafetensors(path, tensors);
  else await writePth(path, tensors);
}

/** Which model part a reference file holds, from keys or file name. */
function prefixFor(path: string, keys: string[]): string {
  if (keys.some((k) => k.startsWith('encoder.') || k.startsWith('decoder.'))) return '';
  const name = basename(path).toLowerCase();
  if (name.includes('encoder')) return 'encoder.';
  if (name.includes('decoder')) return 'decoder.';
  throw new SegtoolError(
    'ERR_CHECKPOINT',
    `${path}: cannot tell whether it holds the encoder or the decoder (its keys have no "encoder."/"decoder." prefix and its name says neither; name it encoder_*.pth / decoder_*.pth)`,
  );
}

/** Buffers of the reference's synchronized BatchNorm that plain PyTorch BatchNorm files lack. */
const OPTIONAL_BUFFER = /\.(num_batches_tracked|_tmp_running_mean|_tmp_running_var|_running_iter)$/;

/**
 * Checks that `path` holds one model part exactly: every key of `expected` (as the reference's
 * encoder_/decoder_ files store them, without the part's prefix; the optional BatchNorm buffers
 * may be absent) with the same shape, and no other key. Throws ERR_CHECKPOINT naming the
 * differences and `what` the file should hold.
 */
export async function checkWeightsFile(path: string, expected: ReadonlyArray<readonly [string, readonly number[]]>, what: string): Promise<void> {
  const tensors = await readWeights(path);
  try {
    const want = new Map(expected.map(([key, shape]) => [key, shape]));
    const list = (keys: string[]) => (keys.length > 6 ? `${keys.slice(0, 6).join(', ')} … (${keys.length} in all)` : keys.join(', '));
    const missing = [...want.keys()].filter((k) => !tensors.has(k) && !OPTIONAL_BUFFER.test(k));
    const unexpected = [...tensors.keys()].filter((k) => !want.has(k));
    const reshaped = [...tensors]
      .filter(([k, t]) => want.has(k) && (want.get(k)!.length !== t.shape.length || want.get(k)!.some((d, i) => d !== t.shape[i])))
      .map(([k, t]) => `${k} [${t.shape.join(', ')}] instead of [${want.get(k)!.join(', ')}]`);
    const parts = [];
    if (missing.length) parts.push(`missing keys: ${list(missing)}`);
    if (unexpected.length) parts.push(`unexpected keys: ${list(unexpected)}`);
    if (reshaped.length) parts.push(`shapes: ${list(reshaped)}`);
    if (parts.length > 0) throw new SegtoolError('ERR_CHECKPOINT', `${path} does not hold ${what} (${parts.join('; ')})`);
  } finally {
    disposeAll(tensors);
  }
}

export interface LoadWeightsOptions {
  /** Unset model keys or unused file keys are an error (the default; the reference's strict=False hid mistakes). */
  strict?: boolean;
  /** Leave out tensors whose shape differs from the model's (e.g. a 150-class head when fine-tuning to 7 classes). */
  skipMismatchedHead?: boolean;
}

export interface WeightsLoadReport extends LoadReport {
  /** Keys left out because their shape differed (with skipMismatchedHead). */
  skipped: Array<{ key: string; file: number[]; model: number[] }>;
}

/**
 * Loads weights into `model` from one file (combined "encoder."/"decoder." keys, a training
 * checkpoint, or one part), or several (e.g. [encoder_epoch_20.pth, decoder_epoch_20.pth]).
 */
export async function loadWeights(
  model: SegmentationModel,
  source: string | readonly string[],
  options: LoadWeightsOptions = {},
): Promise<WeightsLoadReport> {
  const paths = typeof source === 'string' ? [source] : [...source];
  if (paths.length === 0) throw invalid('weights', 'one or more file paths', source);
  const strict = options.strict === undefined ? true : expectBoolean('strict', options.strict);
  const skipMismatched = options.skipMismatchedHead === undefined ? false : expectBoolean('skipMismatchedHead', options.skipMismatchedHead);
  const modelShapes = new Map(model.shapes().map(([key, shape]) => [key, shape]));
  const combined = new Map<string, Tensor>();
  const skipped: WeightsLoadReport['skipped'] = [];
  try {
    for (const path of paths) {
      const tensors = await readWeights(path);
      let prefix: string;
      try {
        prefix = prefixFor(path, [...tensors.keys()]);
      } catch (error) {
        disposeAll(tensors);
        throw error;
      }
      for (const [key, tensor] of tensors) {
        const full = prefix + key;
        const want = modelShapes.get(full);
        if (want && (want.length !== tensor.shape.length || want.some((d, i) => d !== tensor.shape[i]))) {
          if (!skipMismatched) {
            const message =
              `${path}: ${full} has shape [${tensor.shape.join(', ')}] but the model's is [${want.join(', ')}]` +
              (full.startsWith('decoder.conv_last')
                ? ' (a head for another class count? use skipMismatchedHead / --skip-mismatched-head to fine-tune)'
                : ' (weights of another architecture?)');
            disposeAll(tensors);
            throw new SegtoolError('ERR_CHECKPOINT', message);
          }
          skipped.push({ key: full, file: tensor.shape, model: want });
          tensor.dispose();
          continue;
        }
        combined.get(full)?.dispose();
        combined.set(full, tensor);
      }
    }
    const report = await model.loadStateDict(combined, { strict: false });
    const skippedKeys = new Set(skipped.map((s) => s.key));
    const missing = report.missing.filter((k) => !OPTIONAL_BUFFER.test(k) && !skippedKeys.has(k));
    if (strict && (missing.length > 0 || report.unexpected.length > 0)) {
      const list = (keys: string[]) => (keys.length > 6 ? `${keys.slice(0, 6).join(', ')} … (${keys.length} in all)` : keys.join(', '));
      const parts = [];
      if (missing.length) parts.push(`missing from the file: ${list(missing)}`);
      if (report.unexpected.length) parts.push(`not in the model: ${list(report.unexpected)}`);
      throw new SegtoolError(
        'ERR_CHECKPOINT',
        `${paths.join(' + ')} does not fit ${model.describe()} (${parts.join('; ')}); pass strict: false to load what fits`,
      );
    }
    return { missing: report.missing, unexpected: report.unexpected, skipped };
  } finally {
    disposeAll(combined);
  }
}

/** Writes DIR/encoder_epoch_N.pth and DIR/decoder_epoch_N.pth with the reference's keys. */
export async function saveReferenceWeights(model: SegmentationModel, dir: string, epoch: number): Promise<{ encoder: string; decoder: string }> {
  expectString('dir', dir);
  expectInteger('epoch', epoch, 0);
  await mkdir(dir, { recursive: true });
  const state = await model.stateDict();
  try {
    const parts = { encoder: new Map<string, Tensor>(), decoder: new Map<string, Tensor>() };
    for (const [key, tensor] of state) {
      const part = key.startsWith('encoder.') ? 'encoder' : 'decoder';
      parts[part].set(key.slice(part.length + 1), tensor);
    }
    const paths = { encoder: join(dir, `encoder_epoch_${epoch}.pth`), decoder: join(dir, `decoder_epoch_${epoch}.pth`) };
    await writePth(paths.encoder, parts.encoder);
    await writePth(paths.decoder, parts.decoder);
    return paths;
  } finally {
    disposeAll(state);
  }
}

const TRAINING_FORMAT = 'segtool-training-checkpoint';
const TRAINING_VERSION = '1';

export interface TrainingState {
  /** Epochs completed. */
  epoch: number;
  /** Iterations completed over the whole run. */
  iteration: number;
  /** The run's configuration (any JSON value; segtool stores its SegtoolConfig). */
  config?: unknown;
  /** The data pipeline's random state (opaque string, e.g. JSON). */
  rng?: string;
  /** Per-iteration or per-epoch records (any JSON values). */
  history?: unknown[];
}

export interface TrainingCheckpoint extends TrainingState {
  encoder: string;
  decoder: string;
  numClass: number;
  weights: Map<string, Tensor>;
  momentum: Map<string, Tensor>;
  torchRng?: Tensor;
}

/** Saves weights, SGD momentum, LibTorch's random state and `state` in one safetensors file. */
export async function saveTrainingCheckpoint(path: string, checkpoint: TrainingState & { model: SegmentationModel }): Promise<void> {
  expectString('path', path);
  const { model } = checkpoint;
  expectInteger('epoch', checkpoint.epoch, 0);
  expectInteger('iteration', checkpoint.iteration, 0);
  const weights = await model.stateDict();
  const momentum = await model.optimizerState();
  const torchRng = new Tensor(native().getRngState());
  try {
    const tensors = new Map<string, Tensor>();
    for (const [key, t] of weights) tensors.set(`model/${key}`, t);
    for (const [key, t] of momentum) tensors.set(`momentum/${key}`, t);
    tensors.set('rng/torch_cpu', torchRng);
    const info = model.info;
    await saveSafetensors(path, tensors, {
      format: TRAINING_FORMAT,
      version: TRAINING_VERSION,
      encoder: info.encoder,
      decoder: info.decoder,
      num_class: String(info.numClass),
      epoch: String(checkpoint.epoch),
      iteration: String(checkpoint.iteration),
      config: JSON.stringify(checkpoint.config ?? null),
      rng: checkpoint.rng ?? '',
      history: JSON.stringify(checkpoint.history ?? []),
    });
  } finally {
    disposeAll(weights);
    disposeAll(momentum);
    torchRng.dispose();
  }
}

/** Reads a training checkpoint; the caller owns (and disposes) its tensors. */
export async function loadTrainingCheckpoint(path: string): Promise<TrainingCheckpoint> {
  if (detectWeightsFormat(path) !== 'safetensors') {
    throw new SegtoolError('ERR_CHECKPOINT', `${path}: a .pth holds weights only; resuming needs a segtool training checkpoint (checkpoint_*.safetensors)`);
  }
  const file = await loadSafetensors(path);
  const meta = file.metadata;
  if (meta['format'] !== TRAINING_FORMAT) {
    disposeAll(file.tensors);
    throw new SegtoolError('ERR_CHECKPOINT', `${path}: not a segtool training checkpoint (it holds plain weights; load them with loadWeights)`);
  }
  const weights = new Map<string, Tensor>();
  const momentum = new Map<string, Tensor>();
  let torchRng: Tensor | undefined;
  for (const [key, tensor] of file.tensors) {
    if (key.startsWith('model/')) weights.set(key.slice(6), tensor);
    else if (key.startsWith('momentum/')) momentum.set(key.slice(9), tensor);
    else if (key === 'rng/torch_cpu') torchRng = tensor;
    else tensor.dispose();
  }
  return {
    encoder: meta['encoder'] ?? '',
    decoder: meta['decoder'] ?? '',
    numClass: Number(meta['num_class']),
    epoch: Number(meta['epoch']),
    iteration: Number(meta['iteration']),
    config: JSON.parse(meta['config'] ?? 'null'),
    ...(meta['rng'] ? { rng: meta['rng'] } : {}),
    history: JSON.parse(meta['history'] ?? '[]') as unknown[],
    weights,
    momentum,
    ...(torchRng ? { torchRng } : {}),
  };
}

/**
 * Restores a training checkpoint into `model` (weights strictly, momentum, LibTorch's random
 * state) and returns the saved training state.
 */
export async function restoreTrainingCheckpoint(model: SegmentationModel, path: string): Promise<TrainingState> {
  const checkpoint = await loadTrainingCheckpoint(path);
  try {
    const info = model.info;
    if (checkpoint.encoder !== info.encoder || checkpoint.decoder !== info.decoder || checkpoint.numClass !== info.numClass) {
      throw new SegtoolError(
        'ERR_CHECKPOINT',
        `${path} was trained as ${checkpoint.encoder} + ${checkpoint.decoder} with ${checkpoint.numClass} classes, but the model is ${model.describe()}`,
      );
    }
    await model.loadStateDict(checkpoint.weights, { strict: true });
    await model.setOptimizerState(checkpoint.momentum);
    if (checkpoint.torchRng) native().setRngState(checkpoint.torchRng.handle);
    const { epoch, iteration, config, rng, history } = checkpoint;
    return { epoch, iteration, config, ...(rng !== undefined ? { rng } : {}), history: history ?? [] };
  } finally {
    disposeAll(checkpoint.weights);
    disposeAll(checkpoint.momentum);
    checkpoint.torchRng?.dispose();
  }
}

/** Seeds LibTorch's CPU random generator (dropout, random initialisation). */
export function manualSeed(seed: number): void {
  native().manualSeed(expectInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER));
}

/**
 * Converts weights between .pth and .safetensors. Several inputs (e.g. encoder_epoch_20.pth and
 * decoder_epoch_20.pth) combine into one file with "encoder."/"decoder." prefixes; an output that
 * is a folder (ends with "/") splits a combined file into encoder_* and decoder_* files of
 * `format`. Returns the files written.
 */
export async function convertWeights(inputs: readonly string[], output: string, options: { format?: WeightsFormat } = {}): Promise<string[]> {
  if (inputs.length === 0) throw invalid('inputs', 'one or more weight files', inputs);
  expectString('output', output);
  const combined = new Map<string, Tensor>();
  try {
    for (const input of inputs) {
      const tensors = await readWeights(input);
      const prefix = inputs.length > 1 ? prefixFor(input, [...tensors.keys()]) : '';
      for (const [key, t] of tensors) combined.set(prefix + key, t);
    }
    if (!output.endsWith('/')) {
      await writeWeights(output, combined);
      return [output];
    }
    const format = options.format ?? 'pth';
    const epoch = inputs.map((p) => /epoch_(\d+)/.exec(basename(p))?.[1]).find((e) => e !== undefined);
    await mkdir(output, { recursive: true });
    const written: string[] = [];
    for (const part of ['encoder', 'decoder'] as const) {
      const tensors = new Map([...combined].filter(([k]) => k.startsWith(`${part}.`)).map(([k, t]) => [k.slice(part.length + 1), t]));
      if (tensors.size === 0) continue;
      const path = join(output, `${part}${epoch ? `_epoch_${epoch}` : ''}.${format}`);
      await writeWeights(path, tensors);
      written.push(path);
    }
    if (written.length === 0) {
      throw new SegtoolError('ERR_CHECKPOINT', `${inputs.join(' + ')}: no "encoder."/"decoder." keys to split into ${output}`);
    }
    return written;
  } finally {
    disposeAll(combined);
  }
}
