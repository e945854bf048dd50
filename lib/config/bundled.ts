/**
 * The reference's seven ADE20K configs and the 2018 seed's released `baseline-*` models,
 * shipped in the package's `config/` folder and found by short name
 * (`resnet50dilated-ppm_deepsup`, `baseline-resnet50_dilated8-ppm_bilinear_deepsup`), so `--cfg`
 * works without a path.
 */
import { fileURLToPath } from 'node:url';
import { SegtoolError } from '../errors.js';
import { nearest } from '../validate.js';

/**
 * Short names; the files are `config/ade20k-<name>.yaml`, and `config/<name>.yaml` for the
 * seed's `baseline-*` models (named as their folders on the host, with the 2018 input pipeline).
 */
export const BUNDLED_CONFIGS = Object.freeze([
  'mobilenetv2dilated-c1_deepsup',
  'resnet18dilated-ppm_deepsup',
  'resnet50dilated-ppm_deepsup',
  'resnet101dilated-ppm_deepsup',
  'resnet50-upernet',
  'resnet101-upernet',
  'hrnetv2',
  'baseline-resnet50_dilated8-ppm_bilinear_deepsup',
  'baseline-resnet101_dilated8-ppm_bilinear_deepsup',
] as const);
export type BundledConfigName = (typeof BUNDLED_CONFIGS)[number];

// dist/config/bundled.js -> <package root>/config/
const CONFIG_DIR = new URL('../../config/', import.meta.url);

/** The short name `name` refers to (`ade20k-` prefix and `.yaml` suffix optional), or undefined. */
export function findBundledConfig(name: string): BundledConfigName | undefined {
  if (typeof name !== 'string') return undefined;
  const base = name.replace(/\.ya?ml$/i, '').replace(/^ade20k-/i, '').toLowerCase();
  return BUNDLED_CONFIGS.find((n) => n.toLowerCase() === base);
}

/** " (did you mean X?)" for a name that is not bundled, or the list of bundled names. */
export function suggestBundledConfig(name: string): string {
  const base = String(name).replace(/^.*[\\/]/, '').replace(/\.ya?ml$/i, '').replace(/^ade20k-/i, '');
  const containing = BUNDLED_CONFIGS.filter((n) => base.length >= 3 && n.toLowerCase().includes(base.toLowerCase()));
  const best = containing.length === 1 ? containing[0] : nearest(base, BUNDLED_CONFIGS);
  if (best !== undefined) return ` (did you mean ${best}?)`;
  return `; bundled configs: ${(containing.length > 1 ? containing : BUNDLED_CONFIGS).join(', ')}`;
}

/** Absolute path of a bundled config; throws ERR_NOT_FOUND with a suggestion for unknown names. */
export function bundledConfigPath(name: string): string {
  const found = findBundledConfig(name);
  if (found === undefined) {
    throw new SegtoolError('ERR_NOT_FOUND', `No bundled config named ${JSON.stringify(name)}${suggestBundledConfig(name)}`);
  }
  return fileURLToPath(new URL(`${bundledConfigFile(found)}.yaml`, CONFIG_DIR));
}

/** The config's file name without `.yaml`. */
function bundledConfigFile(name: BundledConfigName): string {
  return name.startsWith('baseline-') ? name : `ade20k-${name}`;
}
