/**
 * The model a config describes, with the weights evaluation or testing should use: the
 * reference's DIR/encoder_<checkpoint> + DIR/decoder_<checkpoint> (VAL.checkpoint /
 * TEST.checkpoint), or any weights file a user names.
 */
import { applyRuntime, runtimeFromConfig } from '../device.js';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadWeights, readClassInfoFromWeights, type WeightsSource } from '../checkpoint.js';
import { classInfoFromConfig, type ClassInfo } from '../classes.js';
import { findBundledConfig, type SegtoolConfig } from '../config/index.js';
import { SegtoolError } from '../errors.js';
import { SegmentationModel } from '../model.js';

/**
 * Weight files for `checkpoint`: an existing file (a segtool training checkpoint, a combined
 * .safetensors, an encoder or decoder .pth), a folder holding encoder_/decoder_ files, or a
 * suffix such as "epoch_20.pth" looked up in DIR as the reference did. 'none' = no weights.
 */
export function resolveWeightFiles(cfg: SegtoolConfig, checkpoint: string, key = 'VAL.checkpoint'): string[] {
  if (checkpoint === 'none') return [];
  if (existsSync(checkpoint) && statSync(checkpoint).isFile()) return [checkpoint];
  const [dir, suffix] =
    existsSync(checkpoint) && statSync(checkpoint).isDirectory() ? [checkpoint, latestSuffix(checkpoint)] : [cfg.DIR, checkpoint];
  const files = [join(dir, `encoder_${suffix}`), join(dir, `decoder_${suffix}`)];
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length > 0) {
    const available = weightSuffixes(dir);
    const released = dir === cfg.DIR && suffix === 'epoch_20.pth' ? releasedWeightsConfig(cfg) : undefined;
    throw new SegtoolError(
      'ERR_NOT_FOUND',
      `${key} ${checkpoint}: ${missing.join(' and ')} not found` +
        (available.length > 0 ? ` (${dir} has ${available.join(', ')})` : ` (train first, or set ${key} to a weights file)`) +
        (released ? `; the released weights: segtool download ${released} --dir ${dir}` : ''),
    );
  }
  return files;
}

/** The bundled config whose released weights fit `cfg`'s architecture (150 classes), if any. */
function releasedWeightsConfig(cfg: SegtoolConfig): string | undefined {
  const { arch_encoder: encoder, arch_decoder: decoder } = cfg.MODEL;
  if (cfg.DATASET.num_class !== 150) return undefined;
  // The bundled names are ENCODER-DECODER, but for hrnetv2 (+ c1).
  return findBundledConfig(encoder === 'hrnetv2' && decoder === 'c1' ? 'hrnetv2' : `${encoder}-${decoder}`);
}

/** Suffixes ("epoch_N.pth") for which `dir` has both an encoder and a decoder file. */
function weightSuffixes(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const suffixes = names.filter((n) => n.startsWith('encoder_')).map((n) => n.slice('encoder_'.length));
  return suffixes.filter((s) => names.includes(`decoder_${s}`)).sort((a, b) => epochOf(a) - epochOf(b) || a.localeCompare(b));
}

function epochOf(suffix: string): number {
  const match = /epoch_(\d+)/.exec(suffix);
  return match ? Number(match[1]) : -1;
}

function latestSuffix(dir: string): string {
  const suffixes = weightSuffixes(dir);
  if (suffixes.length === 0) throw new SegtoolError('ERR_NOT_FOUND', `${dir} holds no encoder_*/decoder_* weight files`);
  return suffixes[suffixes.length - 1]!;
}

/**
 * The class names and colours for running the config's model with `files`: DATASET.class_info
 * when the config sets it; else the list the weight files store (a training checkpoint's, which
 * must have DATASET.num_class classes); else the defaults for DATASET.num_class.
 */
export async function resolveClassInfo(cfg: SegtoolConfig, sources: readonly WeightsSource[]): Promise<ClassInfo> {
  if (cfg.DATASET.class_info) return classInfoFromConfig(cfg);
  for (const file of sources.map((s) => (typeof s === 'string' ? s : s.path))) {
    const stored = await readClassInfoFromWeights(file);
    if (!stored) continue;
    if (stored.names.length !== cfg.DATASET.num_class) {
      throw new SegtoolError(
        'ERR_CHECKPOINT',
        `${stored.source} lists ${stored.names.length} classes but DATASET.num_class is ${cfg.DATASET.num_class}; set DATASET.num_class ${stored.names.length} (or DATASET.class_info to a list of ${cfg.DATASET.num_class})`,
      );
    }
    return stored;
  }
  return classInfoFromConfig(cfg);
}

/** The classes createModelWithWeights (and so loadModel) resolved for each model it built. */
const modelClasses = new WeakMap<SegmentationModel, ClassInfo>();

/**
 * The class names and colours a model built by createModelWithWeights / loadModel runs with
 * (the config's class list, its checkpoint's, or the defaults); undefined for other models.
 */
export function modelClassInfo(model: SegmentationModel): ClassInfo | undefined {
  return modelClasses.get(model);
}

/**
 * Builds the config's model (eval mode) and loads `files` into it, then moves it to the device
 * (and runtime options) of config section `section` (VAL for evaluation, TEST for segmenting).
 * Its classes (`classes`, or resolveClassInfo's) are found with modelClassInfo(model).
 */
export async function createModelWithWeights(
  cfg: SegtoolConfig,
  files: readonly WeightsSource[],
  section: 'VAL' | 'TEST' = 'TEST',
  classes?: ClassInfo,
): Promise<SegmentationModel> {
  const runtime = runtimeFromConfig(cfg, section);
  // Before the model is built: a bad class list fails at once.
  const info = classes ?? (await resolveClassInfo(cfg, files));
  const model = await SegmentationModel.create({
    encoder: cfg.MODEL.arch_encoder,
    decoder: cfg.MODEL.arch_decoder,
    fcDim: cfg.MODEL.fc_dim,
    numClass: cfg.DATASET.num_class,
  });
  try {
    if (files.length > 0) await loadWeights(model, files.length === 1 ? files[0]! : [...files]);
    await applyRuntime(model, runtime);
    modelClasses.set(model, info);
    return model.eval();
  } catch (error) {
    model.dispose();
    throw error;
  }
}
