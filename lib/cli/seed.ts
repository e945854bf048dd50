/**
 * The 2018 seed's argparse flags (train.py, eval.py / eval_multipro.py, test.py; see
 * docs/seed-cli.md) on `segtool train`, `eval` and `test`. Each flag is the config key it names
 * (one table, SEED_FLAGS); a few have the seed's own meaning (--id, --ckpt, --model_path,
 * --suffix, --num_gpus, --devices, ...). Without --cfg, a command line with seed flags starts
 * from the seed's defaults (its architectures, lists, 2018 input pipeline and run folder);
 * with --cfg, the flags override the config's values. A flag and a KEY VALUE override of the
 * same key is an error.
 */
import { Option, type Command } from 'commander';
import { join } from 'node:path';
import {
  applyOverrides,
  defaultConfig,
  isConfigKey,
  loadConfig,
  overrideProblem,
  type ConfigKey,
  type SegtoolConfig,
} from '../config/index.js';
import { SegtoolError } from '../errors.js';
import { splitTrailingOverrides } from './common.js';

export type SeedCommand = 'train' | 'eval' | 'test';

type Kind = 'text' | 'int' | 'sizes' | 'bool' | 'special';

interface SeedFlag {
  /** The flag as the seed spells it, without the dashes. */
  readonly flag: string;
  /** Which commands have it, and its seed default there (text as argparse would print it). */
  readonly defaults: Partial<Record<SeedCommand, string>>;
  /** The config key it sets (per command when it differs); none for the flags with their own meaning. */
  readonly key?: ConfigKey | Partial<Record<SeedCommand, ConfigKey>>;
  readonly kind: Kind;
  /** Seed value (a string, or the list for --imgSize) -> override text for the key. */
  readonly toConfig?: (value: string) => string;
  readonly help: string | Partial<Record<SeedCommand, string>>;
  /** The value placeholder in help. */
  readonly arg?: string;
}

const ALL = (value: string): Record<SeedCommand, string> => ({ train: value, eval: value, test: value });

/** Every seed flag, in the seed's order (docs/seed-cli.md lists them with the same meanings). */
export const SEED_FLAGS: readonly SeedFlag[] = [
  { flag: 'id', defaults: { train: 'baseline', eval: '' }, kind: 'special', help: { train: 'name of the run: its folder is <ckpt>/<id>-<encoder>-<decoder>-ngpus<N>-batchSize<..>-... as train.py named it', eval: 'the run folder\'s name under --ckpt (required with seed flags)' } },
  { flag: 'arch_encoder', defaults: ALL('resnet50_dilated8'), key: 'MODEL.arch_encoder', kind: 'text', help: 'MODEL.arch_encoder' },
  { flag: 'arch_decoder', defaults: ALL('ppm_bilinear_deepsup'), key: 'MODEL.arch_decoder', kind: 'text', help: 'MODEL.arch_decoder' },
  { flag: 'weights_encoder', defaults: { train: '' }, key: 'MODEL.weights_encoder', kind: 'text', help: 'MODEL.weights_encoder (empty: ImageNet-pretrained)' },
  { flag: 'weights_decoder', defaults: { train: '' }, key: 'MODEL.weights_decoder', kind: 'text', help: 'MODEL.weights_decoder' },
  { flag: 'fc_dim', defaults: ALL('2048'), key: 'MODEL.fc_dim', kind: 'int', help: 'MODEL.fc_dim' },
  { flag: 'list_train', defaults: { train: './data/train.odgt' }, key: 'DATASET.list_train', kind: 'text', help: 'DATASET.list_train' },
  { flag: 'list_val', defaults: { train: './data/validation.odgt', eval: './data/validation.odgt' }, key: 'DATASET.list_val', kind: 'text', help: 'DATASET.list_val' },
  { flag: 'root_dataset', defaults: { train: './data/', eval: './data/' }, key: 'DATASET.root_dataset', kind: 'text', help: 'DATASET.root_dataset' },
  { flag: 'num_gpus', defaults: { train: '' }, kind: 'special', arg: 'N', help: 'N ranks: N CUDA devices, or N CPU ranks without CUDA (batch N x batch_size_per_gpu, SyncBN across ranks); default 1 (the seed\'s was 8)' },
  { flag: 'batch_size_per_gpu', defaults: { train: '2' }, key: 'TRAIN.batch_size_per_gpu', kind: 'int', help: 'TRAIN.batch_size_per_gpu' },
  { flag: 'num_epoch', defaults: { train: '20' }, key: 'TRAIN.num_epoch', kind: 'int', help: 'TRAIN.num_epoch' },
  { flag: 'start_epoch', defaults: { train: '1' }, key: 'TRAIN.start_epoch', kind: 'int', toConfig: (v) => String(Number(v) - 1), help: 'first epoch to train: N > 1 continues from <run folder>/*_epoch_<N-1>.pth (TRAIN.start_epoch N-1)' },
  { flag: 'epoch_iters', defaults: { train: '5000' }, key: 'TRAIN.epoch_iters', kind: 'int', help: 'TRAIN.epoch_iters' },
  { flag: 'optim', defaults: { train: 'SGD' }, key: 'TRAIN.optim', kind: 'text', help: 'TRAIN.optim' },
  { flag: 'lr_encoder', defaults: { train: '0.02' }, key: 'TRAIN.lr_encoder', kind: 'text', help: 'TRAIN.lr_encoder' },
  { flag: 'lr_decoder', defaults: { train: '0.02' }, key: 'TRAIN.lr_decoder', kind: 'text', help: 'TRAIN.lr_decoder' },
  { flag: 'lr_pow', defaults: { train: '0.9' }, key: 'TRAIN.lr_pow', kind: 'text', help: 'TRAIN.lr_pow' },
  { flag: 'beta1', defaults: { train: '0.9' }, key: 'TRAIN.beta1', kind: 'text', help: 'TRAIN.beta1 (SGD momentum)' },
  { flag: 'weight_decay', defaults: { train: '0.0001' }, key: 'TRAIN.weight_decay', kind: 'text', help: 'TRAIN.weight_decay' },
  { flag: 'deep_sup_scale', defaults: { train: '0.4' }, key: 'TRAIN.deep_sup_scale', kind: 'text', help: 'TRAIN.deep_sup_scale' },
  { flag: 'fix_bn', defaults: { train: '0' }, key: 'TRAIN.fix_bn', kind: 'bool', arg: '0|1', help: 'TRAIN.fix_bn' },
  { flag: 'num_class', defaults: ALL('150'), key: 'DATASET.num_class', kind: 'int', help: 'DATASET.num_class' },
  { flag: 'imgSize', defaults: { train: '300 375 450 525 600', eval: '450', test: '300 400 500 600' }, key: 'DATASET.imgSizes', kind: 'sizes', arg: 'sizes...', help: 'DATASET.imgSizes (several values)' },
  { flag: 'imgMaxSize', defaults: ALL('1000'), key: 'DATASET.imgMaxSize', kind: 'int', help: 'DATASET.imgMaxSize' },
  { flag: 'padding_constant', defaults: ALL('8'), key: 'DATASET.padding_constant', kind: 'int', help: 'DATASET.padding_constant' },
  { flag: 'segm_downsampling_rate', defaults: { train: '8', test: '8' }, key: 'DATASET.segm_downsampling_rate', kind: 'int', help: 'DATASET.segm_downsampling_rate' },
  { flag: 'random_flip', defaults: { train: 'True' }, key: 'DATASET.random_flip', kind: 'bool', arg: 'True|False', help: 'DATASET.random_flip' },
  { flag: 'seed', defaults: { train: '304' }, key: 'TRAIN.seed', kind: 'int', help: 'TRAIN.seed' },
  { flag: 'ckpt', defaults: { train: './ckpt', eval: './ckpt' }, kind: 'special', arg: 'dir', help: 'folder of the run folders' },
  { flag: 'disp_iter', defaults: { train: '20' }, key: 'TRAIN.disp_iter', kind: 'int', help: 'TRAIN.disp_iter' },
  // eval.py / test.py
  { flag: 'suffix', defaults: { eval: '_epoch_20.pth', test: '_epoch_20.pth' }, key: { eval: 'VAL.checkpoint', test: 'TEST.checkpoint' }, kind: 'text', toConfig: (v) => v.slice(1), help: 'weights <folder>/encoder<suffix> and decoder<suffix> (VAL/TEST.checkpoint without the "_")' },
  { flag: 'model_path', defaults: { test: '' }, key: { test: 'DIR' }, kind: 'text', arg: 'dir', help: 'the folder holding the weights (DIR)' },
  { flag: 'test_img', defaults: { test: '' }, kind: 'special', arg: 'image', help: 'the image to segment (as --imgs)' },
  { flag: 'num_val', defaults: { eval: '-1', test: '-1' }, kind: 'special', arg: 'N', help: 'only the first N images (-1: all)' },
  { flag: 'batch_size', defaults: { eval: '1', test: '1' }, key: { eval: 'VAL.batch_size', test: 'TEST.batch_size' }, kind: 'int', help: 'VAL/TEST.batch_size' },
  { flag: 'gpu_id', defaults: { eval: '', test: '' }, key: { eval: 'VAL.device', test: 'TEST.device' }, kind: 'int', toConfig: (v) => `cuda:${v}`, arg: 'N', help: 'CUDA device N (VAL/TEST.device cuda:N; without it: the CPU)' },
  { flag: 'result', defaults: { eval: './result' }, kind: 'special', arg: 'dir', help: 'with --visualize, panels go to <result>/<id>/' },
  { flag: 'devices', defaults: { eval: '' }, kind: 'special', arg: 'list', help: 'eval_multipro: one rank per CUDA device, "0-7" or "0,2,4,6" (as --gpus)' },
  { flag: 'device', defaults: { eval: '' }, kind: 'special', arg: 'list', help: 'the seed README\'s spelling of --devices' },
];

/** The seed flags of a command (those segtool already had with the same meaning, --result of test, --visualize of eval and --workers of train, are not in the table). */
function flagsOf(command: SeedCommand): SeedFlag[] {
  return SEED_FLAGS.filter((f) => command in f.defaults);
}

function keyOf(flag: SeedFlag, command: SeedCommand): ConfigKey | undefined {
  if (flag.key === undefined || typeof flag.key === 'string') return flag.key;
  return flag.key[command];
}

/** The help group heading of the seed flags. */
export const SEED_HELP_GROUP = 'Seed flags (the 2018 argparse scripts; each sets the config key named; docs/seed-cli.md):';

/** Adds the command's seed flags to `command`, in their own help group. */
export function withSeedFlags(command: Command, which: SeedCommand): Command {
  for (const flag of flagsOf(which)) {
    const arg = flag.arg ?? (flag.kind === 'int' ? 'n' : 'value');
    const def = flag.defaults[which];
    const text = typeof flag.help === 'string' ? flag.help : flag.help[which]!;
    const help = `${text}${def ? ` (seed default ${def})` : ''}`;
    const option = new Option(`--${flag.flag} <${arg}>`, help).helpGroup(SEED_HELP_GROUP);
    command.addOption(option);
  }
  return command;
}

/** The seed flags a command line gave, flag -> value (string, or the list of --imgSize). */
export function givenSeedFlags(options: Record<string, unknown>, command: SeedCommand): Map<string, string | string[]> {
  const given = new Map<string, string | string[]>();
  for (const flag of flagsOf(command)) {
    const value = options[flag.flag];
    if (value !== undefined) given.set(flag.flag, value as string | string[]);
  }
  return given;
}

/** Python's str(float): 0.02, 0.0001, 1e-05, 1.0 (how the seed printed numbers into folder names). */
export function pythonFloat(value: number): string {
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : value < 0 ? '-inf' : 'nan';
  if (value === 0) return '0.0';
  const exponent = Math.floor(Math.log10(Math.abs(value)));
  if (exponent < -4 || exponent >= 16) {
    const [mantissa, exp] = value.toExponential().split('e') as [string, string];
    const sign = exp.startsWith('-') ? '-' : '+';
    const digits = exp.replace(/^[+-]/, '').padStart(2, '0');
    return `${mantissa}e${sign}${digits}`;
  }
  const text = String(value);
  return Number.isInteger(value) ? `${text}.0` : text;
}

/**
 * The seed's run folder name (train.py): `<id>-<encoder>-<decoder>-ngpus<N>-batchSize<N*bs>-
 * imgMaxSize<..>-paddingConst<..>-segmDownsampleRate<..>-LR_encoder<..>-LR_decoder<..>-
 * epoch<..>-decay<..>-fixBN<0|1>`.
 */
export function seedRunName(id: string, cfg: SegtoolConfig, numGpus: number): string {
  return [
    id,
    cfg.MODEL.arch_encoder,
    cfg.MODEL.arch_decoder,
    `ngpus${numGpus}`,
    `batchSize${numGpus * cfg.TRAIN.batch_size_per_gpu}`,
    `imgMaxSize${cfg.DATASET.imgMaxSize}`,
    `paddingConst${cfg.DATASET.padding_constant}`,
    `segmDownsampleRate${cfg.DATASET.segm_downsampling_rate}`,
    `LR_encoder${pythonFloat(cfg.TRAIN.lr_encoder)}`,
    `LR_decoder${pythonFloat(cfg.TRAIN.lr_decoder)}`,
    `epoch${cfg.TRAIN.num_epoch}`,
    `decay${pythonFloat(cfg.TRAIN.weight_decay)}`,
    `fixBN${cfg.TRAIN.fix_bn ? 1 : 0}`,
  ].join('-');
}

function badFlag(flag: string, expected: string, value: unknown): SegtoolError {
  return new SegtoolError('ERR_INVALID_ARG', `Expected ${expected} for --${flag} but received ${JSON.stringify(value)}`);
}

function integerFlag(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw badFlag(flag, min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer >= ${min}`, value);
  }
  return n;
}

/** The override text a seed flag's value means for its key; validated with the flag's name. */
function overrideText(flag: SeedFlag, key: ConfigKey, raw: string | string[]): string {
  let text: string;
  if (flag.kind === 'sizes') {
    const list = Array.isArray(raw) ? raw : [raw];
    if (list.length === 0) throw badFlag(flag.flag, 'one or more short sides, e.g. --imgSize 300 400', '');
    for (const size of list) integerFlag(flag.flag, size, 1);
    text = `[${list.join(', ')}]`;
  } else {
    const value = String(raw);
    if (flag.kind === 'bool') {
      // argparse's type=int (fix_bn) and the seed's True/False.
      const lower = value.toLowerCase();
      if (!['0', '1', 'true', 'false'].includes(lower)) throw badFlag(flag.flag, flag.flag === 'fix_bn' ? '0 or 1' : 'True or False', value);
      text = lower === '1' || lower === 'true' ? 'true' : 'false';
    } else {
      if (flag.kind === 'int') integerFlag(flag.flag, value, flag.flag === 'start_epoch' ? 1 : 0);
      if (flag.flag === 'suffix' && !value.startsWith('_')) {
        throw badFlag('suffix', 'a suffix starting with "_" such as _epoch_20.pth (the weights are encoder<suffix> and decoder<suffix>)', value);
      }
      text = flag.toConfig ? flag.toConfig(value) : value;
    }
  }
  const problem = overrideProblem(key, text, `--${flag.flag}: `);
  if (problem !== undefined) throw new SegtoolError('ERR_INVALID_ARG', problem);
  return text;
}

/** What the seed flags of a command line ask beyond config keys. */
export interface SeedPlan {
  /** True when no --cfg was given and seed flags were: the seed's defaults are the base. */
  seedMode: boolean;
  /** --num_gpus (train). */
  numGpus?: number;
  /** --devices / --device (eval): CUDA device list for one rank each. */
  devices?: string;
  /** --test_img (test). */
  testImage?: string;
  /** --num_val: only the first N images (undefined: all). */
  numVal?: number;
  /** Eval with --id in seed mode, or --result: where the panels go (<result>/<id>). */
  resultDir?: string;
}

/** The 2018 input pipeline the seed trained with (BGR, caffe mean, no std; cv2.resize). */
export const SEED_PIPELINE = ['DATASET.normalization', 'legacy-bgr', 'DATASET.resize', 'opencv'] as const;

/**
 * The config a train/eval/test command line means: `--cfg` (else, with seed flags, the seed's
 * defaults; else `fallbackConfig`), then the seed flags, then the KEY VALUE overrides and the
 * command's own options' keys (`extra`). A seed flag and an override of the same key is an error.
 */
export async function resolveCommandConfig(
  command: SeedCommand,
  options: Record<string, unknown> & { cfg?: string },
  overrides: readonly string[],
  fallbackConfig: string,
  extra: ReadonlyArray<readonly [ConfigKey, string, string]> = [],
): Promise<{ cfg: SegtoolConfig; plan: SeedPlan }> {
  const given = givenSeedFlags(options, command);
  // A variadic --imgSize ends at the first config key: what follows are overrides.
  const sizes = given.get('imgSize');
  if (Array.isArray(sizes)) {
    const split = splitTrailingOverrides(sizes);
    given.set('imgSize', split.values);
    overrides = [...split.overrides, ...overrides];
  }
  const seedMode = options.cfg === undefined && given.size > 0;
  const plan: SeedPlan = { seedMode };
  const flagKeys = new Map<ConfigKey, string>(); // key -> the flag (or option) that set it
  const fromFlags: string[] = [];
  const set = (key: ConfigKey, text: string, by: string): void => {
    const other = flagKeys.get(key);
    if (other !== undefined) throw new SegtoolError('ERR_INVALID_ARG', `${other} and ${by} both set ${key}; give one`);
    flagKeys.set(key, by);
    fromFlags.push(key, text);
  };
  for (const [name, raw] of given) {
    const flag = SEED_FLAGS.find((f) => f.flag === name)!;
    const key = keyOf(flag, command);
    if (key !== undefined) {
      set(key, overrideText(flag, key, raw), `--${name}`);
      continue;
    }
    const value = String(raw);
    if (name === 'num_gpus') plan.numGpus = integerFlag(name, value, 1);
    else if (name === 'num_val') {
      const n = integerFlag(name, value, -1);
      if (n === 0) throw badFlag(name, 'a positive number of images, or -1 for all', value);
      if (n > 0) plan.numVal = n;
    } else if (name === 'devices' || name === 'device') {
      if (plan.devices !== undefined) throw new SegtoolError('ERR_INVALID_ARG', '--devices and --device are the same flag; give one');
      plan.devices = value;
    } else if (name === 'test_img') plan.testImage = value;
  }
  for (const [key, text, by] of extra) set(key, text, by);
  // The command's KEY VALUE overrides must not set what a flag set.
  for (let i = 0; i + 1 < overrides.length; i += 2) {
    const key = overrides[i]!;
    if (!isConfigKey(key)) continue;
    const by = flagKeys.get(key);
    if (by !== undefined) {
      throw new SegtoolError('ERR_INVALID_ARG', `${by} and the override ${key} ${overrides[i + 1]} both set ${key}; give one`);
    }
  }
  const runFolderFlags = ['id', 'ckpt'].filter((f) => given.has(f)).map((f) => `--${f}`);
  if (runFolderFlags.length > 0 && overrides.some((o, i) => i % 2 === 0 && o === 'DIR')) {
    throw new SegtoolError('ERR_INVALID_ARG', `${runFolderFlags.join(' and ')} and the override DIR both name the run folder; give one`);
  }

  let base: SegtoolConfig;
  if (options.cfg !== undefined) base = await loadConfig(options.cfg);
  else if (seedMode) base = seedDefaults(command);
  else base = await loadConfig(fallbackConfig);
  // Flags first, then the overrides: a consistency problem names the keys.
  let cfg = applyOverrides(base, [...fromFlags, ...overrides], given.size > 0 ? 'the seed flags and overrides' : 'overrides');

  const id = given.get('id') as string | undefined;
  const ckpt = (given.get('ckpt') as string | undefined) ?? (seedMode ? './ckpt' : undefined);
  if (command === 'train' && (seedMode || id !== undefined || given.has('ckpt'))) {
    const numGpus = plan.numGpus ?? 1;
    cfg = applyOverrides(cfg, ['DIR', join(ckpt ?? './ckpt', seedRunName(id ?? 'baseline', cfg, numGpus))]);
  } else if (command === 'eval' && id !== undefined) {
    cfg = applyOverrides(cfg, ['DIR', join(ckpt ?? './ckpt', id)]);
    if (seedMode || given.has('result')) plan.resultDir = join((given.get('result') as string | undefined) ?? './result', id);
  } else if (command === 'eval' && given.has('ckpt')) {
    throw new SegtoolError('ERR_INVALID_ARG', '--ckpt names the folder of the run folders: give the run folder\'s name with --id too');
  } else if (command === 'eval' && seedMode) {
    throw new SegtoolError('ERR_INVALID_ARG', 'eval with seed flags needs --id, the run folder\'s name under --ckpt (default ./ckpt), as eval.py did');
  }
  if (command === 'test' && seedMode && !given.has('model_path')) {
    throw new SegtoolError('ERR_INVALID_ARG', 'test with seed flags needs --model_path, the folder holding encoder<suffix> and decoder<suffix>, as test.py did');
  }
  return { cfg, plan };
}

/** The seed's defaults for a command: its flags' defaults over the config defaults, and the 2018 pipeline. */
export function seedDefaults(command: SeedCommand): SegtoolConfig {
  const overrides: string[] = [...SEED_PIPELINE];
  for (const flag of flagsOf(command)) {
    const key = keyOf(flag, command);
    const value = flag.defaults[command];
    if (key === undefined || key === 'DIR' || value === undefined || value === '') continue;
    overrides.push(key, overrideText(flag, key, flag.kind === 'sizes' ? value.split(' ') : value));
  }
  return applyOverrides(defaultConfig(), overrides, `the seed's ${command} defaults`);
}
