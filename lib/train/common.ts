/**
 * What training, evaluation, testing and the demo share: the config a caller hands in and the
 * sample lists it names. (Atomic writes of history.json / metrics JSON: lib/io/files.ts.)
 */
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { applyOverrides, loadConfig, validateConfig, type ConfigOverrides, type SegtoolConfig } from '../config/index.js';
import { listFolder, readOdgt, type SampleRecord } from '../data/index.js';
import { SegtoolError } from '../errors.js';

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
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

/** A config object, or a YAML path / bundled config name; `overrides` (KEY VALUE) go on top. */
export type ConfigInput = SegtoolConfig | string;

export async function resolveConfigInput(config: ConfigInput, overrides?: ConfigOverrides): Promise<SegtoolConfig> {
  if (typeof config === 'string') return loadConfig(config, overrides);
  const valid = validateConfig(config);
  return overrides === undefined ? valid : applyOverrides(valid, overrides);
}
