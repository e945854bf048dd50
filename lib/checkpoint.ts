/**
 * Checkpoints: the reference's weight files (encoder_epoch_N.pth / decoder_epoch_N.pth, in every
 * format released weights come in), safetensors, and segtool's own training checkpoint, which
 * holds everything needed to resume exactly (weights, SGD momentum, epoch, iteration, config,
 * random-number state, history). Every write is atomic: a failed save never destroys the last
 * good file.
 */
import { basename, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { EncoderName } from './config/names.js';
import { checkClassInfo, classInfoFromList, classInfoToJson, type ClassInfo } from './classes.js';
import { SegtoolError } from './errors.js';
import { loadNative, native } from './native.js';
import { Tensor } from './tensor.js';
import { loadSafetensors, saveSafetensors, disposeAll, readSafetensorsMetadata } from './io/safetensors.js';
import { prepareReplace, readFileHead } from './io/files.js';
import { IMAGENET_DROPPED, imagenetCheckpointFor } from './imagenet.js';
import { SegmentationModel, type LoadReport, type ModelOptions } from './model.js';
import { expectBoolean, expectInteger, expectObject, expectOneOf, expectString, invalid } from './validate.js';

export type WeightsFormat = 'pth' | 'safetensors';

/**
 * Detects a weights file's format from its first bytes (zip, pickle or safetensors header). The
 * file must be a regular file: a FIFO, device or folder is refused (opened non-blocking, so a
 * FIFO never hangs the call), before any native reader sees it.
 */
export async function detectWeightsFormat(path: string): Promise<WeightsFormat> {
  const file = expectString('weights', path);
  const head = await readFileHead(file, 16, 'weights file');
  const read = head.length;
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
  const format = await detectWeightsFormat(path);
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
  await prepareReplace(path, 'weights file');
  await (await loadNative()).writePth(path, [...tensors].map(([key, t]) => [key, t.handle]));
}

/** Writes weights as .pth or .safetensors, chosen by the file extension. */
export async function writeWeights(path: string, tensors: Map<string, Tensor>): Promise<void> {
  if (/\.safetensors$/i.test(path)) await saveSafetensors(path, tensors);
  else await writePth(path, tensors);
}

/** The two halves of a model, as the reference's weight files split it. */
export type WeightsPart = 'encoder' | 'decoder';

/** A weights file, with the part it holds when the caller knows it (a role always wins over the name). */
export type WeightsSource = string | { path: string; part?: WeightsPart };

const PARTS: readonly WeightsPart[] = ['encoder', 'decoder'];

/** Which model part a role-less reference file holds, from its keys or, failing that, its name. */
function guessPart(path: string, keys: string[]): WeightsPart | undefined {
  if (keys.some((k) => k.startsWith('encoder.') || k.startsWith('decoder.'))) return undefined; // combined
  const name = basename(path).toLowerCase();
  if (name.includes('encoder')) return 'encoder';
  if (name.includes('decoder')) return 'decoder';
  throw new SegtoolError(
    'ERR_CHECKPOINT',
    `${path}: cannot tell whether it holds the encoder or the decoder (its keys have no "encoder."/"decoder." prefix and its name says neither); ` +
      'give it for a role (--weights-encoder / --weights-decoder, MODEL.weights_encoder / MODEL.weights_decoder, loadWeights(model, file, { part }))',
  );
}

/** Buffers of the reference's synchronized BatchNorm that plain PyTorch BatchNorm files lack. */
export const OPTIONAL_BUFFER = /\.(num_batches_tracked|_tmp_running_mean|_tmp_running_var|_running_iter)$/;

/** An ImageNet classifier's head: its presence marks an ImageNet classification file. */
const CLASSIFIER_HEAD = /^(fc|classifier)\./;

/**
 * Throws unless the file at `path`, given as `part`, fits a model built from `model` (an
 * architecture, class count and fc_dim): parsed, and every key and shape checked as loadWeights
 * checks them (`strict` false: the keys that are there must fit). What a download is accepted by.
 */
export async function checkWeightsFile(
  path: string,
  part: WeightsPart,
  model: ModelOptions,
  options: { strict?: boolean } = {},
): Promise<WeightsLoadReport> {
  await detectWeightsFormat(path); // before building a model: a web page is refused at once
  const check = await SegmentationModel.create(model);
  try {
    return await loadWeights(check, { path, part }, { strict: options.strict ?? true, wholeModel: false });
  } finally {
    check.dispose();
  }
}

export interface LoadWeightsOptions {
  /**
   * Within the parts the files are given for, every model tensor must be set and every file
   * tensor used (the default; the reference's strict=False hid mistakes). An ImageNet
   * classification file keeps the reference's own strictness instead (see lib/train/pretrained.ts).
   */
  strict?: boolean;
  /** With strict: a part no file is given for is an error too (default true: inference needs the whole model). */
  wholeModel?: boolean;
  /** Leave out tensors whose shape differs from the model's (e.g. a 150-class head when fine-tuning to 7 classes). */
  skipMismatchedHead?: boolean;
  /** The part every file holds, whatever its name (a `{ path, part }` source sets its own). */
  part?: WeightsPart;
}

/** What one file contributed. */
export interface WeightsFileReport {
  path: string;
  /** The part it was given for or guessed to be; 'model' for a combined file. */
  part: WeightsPart | 'model';
  /** Tensors loaded from it. */
  loaded: number;
  /** Its tensors not loaded, e.g. an ImageNet file's classifier (fc.*, classifier.*), or the other part of a combined file given for one role. */
  leftOut: string[];
  /** It holds an ImageNet classification network (its head was dropped, as the reference does). */
  imagenet: boolean;
}

export interface WeightsLoadReport extends LoadReport {
  /** Keys left out because their shape differed (with skipMismatchedHead). */
  skipped: Array<{ key: string; file: number[]; model: number[] }>;
  files: WeightsFileReport[];
}

/** "a, b, c … (12 in all)": keys for a message. */
function listKeys(keys: readonly string[], limit = 6): string {
  return keys.length > limit ? `${keys.slice(0, limit).join(', ')} … (${keys.length} in all)` : keys.join(', ');
}

/** "features.18.* (9), fc.* (2)": keys grouped by their module (a part prefix and a block number kept), for one-line reports. */
export function summarizeKeys(keys: readonly string[]): string {
  const groups = new Map<string, number>();
  for (const key of keys) {
    const parts = key.split('.');
    let n = parts[0] === 'encoder' || parts[0] === 'decoder' ? 2 : 1;
    if (/^\d+$/.test(parts[n] ?? '') && n < parts.length - 1) n++;
    const head = parts.slice(0, Math.min(n, parts.length - 1)).join('.');
    groups.set(head, (groups.get(head) ?? 0) + 1);
  }
  return [...groups].map(([head, n]) => `${head}.* (${n})`).join(', ');
}

function sourcePath(source: WeightsSource, index: number): { path: string; part?: WeightsPart } {
  if (typeof source === 'string') return { path: expectString(`weights[${index}]`, source) };
  expectObject(`weights[${index}]`, source);
  const path = expectString(`weights[${index}].path`, source.path);
  return source.part === undefined ? { path } : { path, part: expectOneOf(`weights[${index}].part`, source.part, PARTS) };
}

/**
 * Loads weights into `model` from one file (combined "encoder."/"decoder." keys, a training
 * checkpoint, or one part), or several (e.g. [encoder_epoch_20.pth, decoder_epoch_20.pth]).
 * A file given for a part (`options.part`, or `{ path, part }`) is that part whatever its name:
 * its keys are taken as the part's (an ImageNet classifier's head dropped), and a file none of
 * whose tensors belong to that part is an error. Two files that both set a tensor are an error.
 */
export async function loadWeights(
  model: SegmentationModel,
  source: WeightsSource | readonly WeightsSource[],
  options: LoadWeightsOptions = {},
): Promise<WeightsLoadReport> {
  const sources = (Array.isArray(source) ? [...(source as readonly WeightsSource[])] : [source as WeightsSource]).map(sourcePath);
  if (sources.length === 0) throw invalid('weights', 'one or more file paths', source);
  expectObject('options', options, true);
  const strict = options.strict === undefined ? true : expectBoolean('strict', options.strict);
  const wholeModel = options.wholeModel === undefined ? true : expectBoolean('wholeModel', options.wholeModel);
  const skipMismatched = options.skipMismatchedHead === undefined ? false : expectBoolean('skipMismatchedHead', options.skipMismatchedHead);
  const defaultPart = options.part === undefined ? undefined : expectOneOf('part', options.part, PARTS);
  const modelShapes = new Map(model.shapes().map(([key, shape]) => [key, shape]));
  const encoderName = model.info.encoder as EncoderName;
  const combined = new Map<string, Tensor>();
  const origin = new Map<string, string>(); // full key -> file that set it
  const skipped: WeightsLoadReport['skipped'] = [];
  const files: WeightsFileReport[] = [];
  /** Parts whose every tensor must be set, and file keys that must be used, by strictness. */
  const strictParts = new Set<WeightsPart>();
  const unused: string[] = [];
  try {
    for (const { path, part: givenPart } of sources) {
      const role = givenPart ?? defaultPart;
      const tensors = await readWeights(path);
      try {
        const keys = [...tensors.keys()];
        const part = role ?? guessPart(path, keys);
        const imagenet = part === 'encoder' && keys.some((k) => CLASSIFIER_HEAD.test(k));
        // An ImageNet file maps as the reference maps it, with the reference's strictness for its family.
        const fileStrict = imagenet ? imagenetCheckpointFor(encoderName).strict : strict;
        const report: WeightsFileReport = { path, part: part ?? 'model', loaded: 0, leftOut: [], imagenet };
        // File key -> model key.
        const mapped = new Map<string, string>();
        for (const key of keys) {
          if (part === undefined) mapped.set(key, key);
          else if (key.startsWith(`${part}.`)) mapped.set(key, key);
          else if (PARTS.some((p) => key.startsWith(`${p}.`)) || (imagenet && IMAGENET_DROPPED.test(key))) report.leftOut.push(key);
          else mapped.set(key, `${part}.${key}`);
        }
        const fits = [...mapped.values()].filter((k) => modelShapes.has(k));
        if (part !== undefined && fits.length === 0) throw misfit(path, part, keys, modelShapes, encoderName, model.describe());
        for (const [key, full] of mapped) {
          const tensor = tensors.get(key)!;
          const want = modelShapes.get(full);
          if (want === undefined) {
            if (fileStrict) unused.push(`${full} (${path})`);
            report.leftOut.push(key);
            continue;
          }
          if (want.length !== tensor.shape.length || want.some((d, i) => d !== tensor.shape[i])) {
            if (!skipMismatched) {
              throw new SegtoolError(
                'ERR_CHECKPOINT',
                `${path}: ${full} has shape [${tensor.shape.join(', ')}] but the model's is [${want.join(', ')}]` +
                  (full.startsWith('decoder.conv_last')
                    ? ' (a head for another class count? use skipMismatchedHead / --skip-mismatched-head to fine-tune)'
                    : ` (weights of another architecture than ${model.describe()}?)`),
              );
            }
            skipped.push({ key: full, file: tensor.shape, model: want });
            report.leftOut.push(key);
            continue;
          }
          const earlier = origin.get(full);
          if (earlier !== undefined) {
            throw new SegtoolError('ERR_CHECKPOINT', `${full} is defined by both ${earlier} and ${path}: give each tensor once (which file should win is not guessed)`);
          }
          origin.set(full, path);
          combined.set(full, tensor);
          tensors.delete(key); // now owned by `combined`
          report.loaded++;
        }
        if (fileStrict) for (const p of part === undefined ? PARTS.filter((q) => fits.some((k) => k.startsWith(`${q}.`))) : [part]) strictParts.add(p);
        files.push(report);
      } finally {
        disposeAll(tensors);
      }
    }
    if (strict && wholeModel) for (const p of PARTS) if (!files.some((f) => f.part === p || f.part === 'model')) strictParts.add(p);
    const report = await model.loadStateDict(combined, { strict: false });
    const skippedKeys = new Set(skipped.map((s) => s.key));
    const missing = report.missing.filter(
      (k) => !OPTIONAL_BUFFER.test(k) && !skippedKeys.has(k) && PARTS.some((p) => strictParts.has(p) && k.startsWith(`${p}.`)),
    );
    if (missing.length > 0 || unused.length > 0) {
      const parts = [];
      if (missing.length) parts.push(`missing from the file${sources.length > 1 ? 's' : ''}: ${listKeys(missing)}`);
      if (unused.length) parts.push(`not in the model: ${listKeys(unused)}`);
      throw new SegtoolError(
        'ERR_CHECKPOINT',
        `${sources.map((s) => s.path).join(' + ')} does not fit ${model.describe()} (${parts.join('; ')}); pass strict: false to load what fits`,
      );
    }
    return { missing: report.missing, unexpected: report.unexpected, skipped, files };
  } finally {
    disposeAll(combined);
  }
}

/** The error for a file given as `part` none of whose tensors is one of that part's. */
function misfit(path: string, part: WeightsPart, keys: string[], modelShapes: Map<string, number[]>, encoder: string, model: string): SegtoolError {
  const other: WeightsPart = part === 'encoder' ? 'decoder' : 'encoder';
  const bare = keys.map((k) => (k.startsWith(`${other}.`) ? k.slice(other.length + 1) : k));
  const fitsOther = bare.filter((k) => modelShapes.has(`${other}.${k}`)).length;
  const expected = [...modelShapes.keys()].filter((k) => k.startsWith(`${part}.`)).slice(0, 3).map((k) => k.slice(part.length + 1));
  const flag = other === 'encoder' ? '--weights-encoder / MODEL.weights_encoder' : '--weights-decoder / MODEL.weights_decoder';
  return new SegtoolError(
    'ERR_CHECKPOINT',
    `${path} was given as the ${part} of ${model}, but none of its ${keys.length} tensors (${listKeys(keys, 3)}) is a ${part === 'encoder' ? `${encoder} encoder` : 'decoder'} tensor ` +
      `(expected keys such as ${expected.join(', ')})` +
      (fitsOther > keys.length / 2 ? `; its tensors are the ${other}'s: give it as ${flag}` : '; weights of another architecture?'),
  );
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
  /** The class names and colours the checkpoint was saved with (checkpoints from before have none). */
  classes?: ClassInfo;
}

/**
 * Saves weights, SGD momentum, LibTorch's random state and `state` in one safetensors file;
 * `classes` (the run's names and colours) go into its metadata as `classes`, JSON
 * `[{name, color: [r, g, b]}]`, so the model carries them (readClassInfoFromWeights).
 */
export async function saveTrainingCheckpoint(
  path: string,
  checkpoint: TrainingState & { model: SegmentationModel; classes?: ClassInfo },
): Promise<void> {
  expectString('path', path);
  const { model } = checkpoint;
  expectInteger('epoch', checkpoint.epoch, 0);
  expectInteger('iteration', checkpoint.iteration, 0);
  const classes = checkpoint.classes === undefined ? undefined : checkClassInfo('classes', checkpoint.classes, model.info.numClass);
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
      ...(classes ? { [CLASSES_KEY]: JSON.stringify(classInfoToJson(classes)) } : {}),
    });
  } finally {
    disposeAll(weights);
    disposeAll(momentum);
    torchRng.dispose();
  }
}

/** Reads a training checkpoint; the caller owns (and disposes) its tensors. */
export async function loadTrainingCheckpoint(path: string): Promise<TrainingCheckpoint> {
  if ((await detectWeightsFormat(path)) !== 'safetensors') {
    throw new SegtoolError('ERR_CHECKPOINT', `${path}: a .pth holds weights only; resuming needs a segtool training checkpoint (checkpoint_*.safetensors)`);
  }
  const file = await loadSafetensors(path);
  const meta = file.metadata;
  if (meta['format'] !== TRAINING_FORMAT) {
    disposeAll(file.tensors);
    throw new SegtoolError('ERR_CHECKPOINT', `${path}: not a segtool training checkpoint (it holds plain weights; load them with loadWeights)`);
  }
  let classes: ClassInfo | undefined;
  try {
    classes = classInfoFromMetadata(meta, path);
  } catch (error) {
    disposeAll(file.tensors);
    throw error;
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
    ...(classes ? { classes } : {}),
  };
}

/** Safetensors metadata key of the class list (training checkpoints, converted weights). */
const CLASSES_KEY = 'classes';

/** The class list in a safetensors file's metadata, checked; undefined when it has none. */
function classInfoFromMetadata(meta: Record<string, string>, path: string): ClassInfo | undefined {
  const text = meta[CLASSES_KEY];
  if (text === undefined) return undefined;
  const source = `${path} (metadata "${CLASSES_KEY}")`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SegtoolError('ERR_CHECKPOINT', `${source}: not JSON (expected [{name, color}])`, { cause: error });
  }
  const info = classInfoFromList(value, source);
  const numClass = meta['num_class'] === undefined ? undefined : Number(meta['num_class']);
  if (numClass !== undefined && info.names.length !== numClass) {
    throw new SegtoolError('ERR_CHECKPOINT', `${source} lists ${info.names.length} classes but the checkpoint's model has ${numClass}`);
  }
  return info;
}

/**
 * The class names and colours stored with weights: a training checkpoint's, or a .safetensors
 * whose metadata has `classes` (e.g. one `convertWeights` made from a training checkpoint).
 * Undefined for files without them (.pth files, plain safetensors). Reads the header only.
 */
export async function readClassInfoFromWeights(path: string): Promise<ClassInfo | undefined> {
  if ((await detectWeightsFormat(path)) !== 'safetensors') return undefined;
  return classInfoFromMetadata(await readSafetensorsMetadata(path), path);
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

async function firstClassInfo(inputs: readonly string[]): Promise<ClassInfo | undefined> {
  for (const input of inputs) {
    const classes = await readClassInfoFromWeights(input);
    if (classes) return classes;
  }
  return undefined;
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
      const part = inputs.length > 1 ? guessPart(input, [...tensors.keys()]) : undefined;
      const prefix = part === undefined ? '' : `${part}.`;
      for (const [key, t] of tensors) combined.set(prefix + key, t);
    }
    if (!output.endsWith('/')) {
      // A training checkpoint's (or converted file's) class list stays with the weights.
      const classes = /\.safetensors$/i.test(output) ? await firstClassInfo(inputs) : undefined;
      if (classes) await saveSafetensors(output, combined, { [CLASSES_KEY]: JSON.stringify(classInfoToJson(classes)) });
      else await writeWeights(output, combined);
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
