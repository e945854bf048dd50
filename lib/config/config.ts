/**
 * Loading, merging, validating and saving configs. Merge order: defaults < YAML file <
 * overrides (`KEY VALUE` pairs from the command line, or `{ 'TRAIN.lr_encoder': 0.01 }`).
 * Every problem is a SegtoolError('ERR_CONFIG') that names where it is (file:line or
 * "overrides"), the key, the value received and what was expected; unknown keys suggest the
 * nearest known one. All problems of one file are reported together.
 */
import { existsSync } from 'node:fs';
import { LineCounter, isAlias, isMap, isScalar, parse as parseYamlValue, parseDocument, type Node as YamlNode } from 'yaml';
import { SegtoolError } from '../errors.js';
import { readInputFile, writeFileAtomic } from '../io/files.js';
import { nearest } from '../validate.js';
import { bundledConfigPath, findBundledConfig, suggestBundledConfig } from './bundled.js';
import { ENCODER_CHANNELS } from './names.js';
import {
  CONFIG_KEYS,
  CONFIG_SPECS,
  SECTION_NAMES,
  isConfigKey,
  type ConfigKey,
  type ConfigValue,
  type KeySpec,
  type SectionName,
  type SegtoolConfig,
  type ValueKind,
} from './schema.js';

/** Overrides: a flat `[KEY, VALUE, KEY, VALUE, ...]` list (CLI) or `{ KEY: value }`. */
export type ConfigOverrides = readonly string[] | Readonly<Record<string, unknown>>;

/** A nested, partial config (e.g. `{ TRAIN: { num_epoch: 2 } }`) for `mergeConfig`. */
export type PartialConfig = { DIR?: string } & { [S in SectionName]?: Partial<SegtoolConfig[S]> };

// ---------------------------------------------------------------------------------------------
// Key access

function splitKey(key: ConfigKey): [SectionName | undefined, string] {
  const dot = key.indexOf('.');
  return dot < 0 ? [undefined, key] : [key.slice(0, dot) as SectionName, key.slice(dot + 1)];
}

/** The value stored under a dotted key. */
export function getConfigValue<K extends ConfigKey>(cfg: SegtoolConfig, key: K): ConfigValue<K> {
  const [section, leaf] = splitKey(key);
  const holder = (section === undefined ? cfg : cfg[section]) as unknown as Record<string, unknown>;
  return holder[leaf] as ConfigValue<K>;
}

function setValue(cfg: SegtoolConfig, key: ConfigKey, value: unknown): void {
  const [section, leaf] = splitKey(key);
  const holder = (section === undefined ? cfg : cfg[section]) as unknown as Record<string, unknown>;
  holder[leaf] = value;
}

function cloneValue<T>(value: T): T {
  return (Array.isArray(value) ? [...value] : value) as T;
}

/** A fresh copy of the defaults. */
export function defaultConfig(): SegtoolConfig {
  const cfg = { DIR: '', DATASET: {}, MODEL: {}, TRAIN: {}, VAL: {}, TEST: {} } as unknown as SegtoolConfig;
  for (const key of CONFIG_KEYS) setValue(cfg, key, cloneValue(CONFIG_SPECS[key].default));
  return cfg;
}

export function cloneConfig(cfg: SegtoolConfig): SegtoolConfig {
  const copy = defaultConfig();
  for (const key of CONFIG_KEYS) setValue(copy, key, cloneValue(getConfigValue(cfg, key)));
  return copy;
}

/** Horizontal-flip probability from `DATASET.random_flip` (true = 0.5, false = 0). */
export function flipProbability(cfg: SegtoolConfig): number {
  const flip = cfg.DATASET.random_flip;
  return typeof flip === 'number' ? flip : flip ? 0.5 : 0;
}

// ---------------------------------------------------------------------------------------------
// Values

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  }
  return String(value);
}

function expectedText(kind: ValueKind): string {
  switch (kind.type) {
    case 'string':
      return kind.allowEmpty ? 'a string' : 'a non-empty string';
    case 'int':
      if (kind.max !== undefined) return `an integer in [${kind.min}, ${kind.max}]`;
      return kind.min === 1 ? 'a positive integer' : kind.min === 0 ? 'a non-negative integer' : `an integer >= ${kind.min}`;
    case 'number':
      return kind.max === undefined ? `a number >= ${kind.min}` : `a number in [${kind.min}, ${kind.max}${kind.maxExclusive ? ')' : ']'}`;
    case 'bool':
      return 'true or false';
    case 'intList':
      return `a list of positive integers${kind.max === undefined ? '' : ` up to ${kind.max}`} (or one), e.g. [300, 375, 450]`;
    case 'enum':
      return `one of ${kind.values.join(', ')}`;
    case 'flip':
      return 'true, false or a probability in [0, 1]';
    case 'device':
      return "'cpu', 'cuda' or 'cuda:N'";
  }
}

const TUPLE = /^\s*[([]([^()[\]]*)[)\]]\s*$/;

function isInt(value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** The value converted to the key's type, or undefined when it does not fit. */
function coerce(kind: ValueKind, value: unknown): unknown {
  switch (kind.type) {
    case 'string':
      return typeof value === 'string' && (kind.allowEmpty || value.length > 0) ? value : undefined;
    case 'int':
      return isInt(value, kind.min, kind.max) ? value : undefined;
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < kind.min) return undefined;
      if (kind.max !== undefined && (value > kind.max || (kind.maxExclusive && value === kind.max))) return undefined;
      return value;
    }
    case 'bool':
      return typeof value === 'boolean' ? value : undefined;
    case 'intList': {
      // The reference's files write Python tuples, `(300, 375, 450)`, which YAML reads as a string.
      let list: unknown = value;
      if (typeof value === 'string') {
        const match = TUPLE.exec(value);
        if (!match) return undefined;
        const items = match[1]!.split(',').map((s) => s.trim());
        if (items.length > 1 && items[items.length - 1] === '') items.pop(); // Python's `(300,)`
        list = items.map((s) => (/^[+-]?\d+$/.test(s) ? Number(s) : NaN));
      }
      if (isInt(list, kind.min, kind.max)) return [list];
      if (!Array.isArray(list) || list.length === 0 || !list.every((v) => isInt(v, kind.min, kind.max))) return undefined;
      return [...list];
    }
    case 'enum': {
      if (typeof value !== 'string') return undefined;
      // The reference lower-cases architecture names before using them.
      return kind.values.find((v) => v.toLowerCase() === value.toLowerCase());
    }
    case 'flip':
      return typeof value === 'boolean' || (typeof value === 'number' && value >= 0 && value <= 1) ? value : undefined;
    case 'device': {
      if (typeof value !== 'string') return undefined;
      const name = value.trim().toLowerCase();
      return /^(cpu|cuda|cuda:(0|[1-9][0-9]{0,3}))$/.test(name) ? name : undefined;
    }
  }
}

function badValue(where: string, key: ConfigKey, spec: KeySpec<unknown>, value: unknown): string {
  let message = `${where}expected ${expectedText(spec.kind)} for ${key} but received ${show(value)}`;
  if (spec.kind.type === 'enum' && typeof value === 'string') {
    const suggestion = nearest(value, spec.kind.values);
    if (suggestion !== undefined) message += ` (did you mean ${suggestion}?)`;
  }
  if (spec.kind.type === 'string' && value !== null && (typeof value === 'number' || typeof value === 'boolean')) {
    message += ' (quote it to make it a string)';
  }
  return message;
}

/** "(did you mean X?)" for an unknown key, trying the whole key, then its last component. */
function suggestKey(key: string): string {
  const candidates: string[] = [...CONFIG_KEYS];
  let best = nearest(key, candidates);
  if (best === undefined) {
    const leaf = key.slice(key.lastIndexOf('.') + 1);
    const leaves = new Map<string, string>();
    for (const k of CONFIG_KEYS) leaves.set(k.slice(k.lastIndexOf('.') + 1), k);
    const bestLeaf = nearest(leaf, leaves.keys());
    if (bestLeaf !== undefined) best = leaves.get(bestLeaf);
  }
  return best === undefined ? '' : ` (did you mean ${best}?)`;
}

function suggestSection(name: string): string {
  const best = nearest(name, [...SECTION_NAMES, 'DIR']);
  return best === undefined ? '' : ` (did you mean ${best}?)`;
}

class Problems {
  readonly list: string[] = [];
  add(message: string): void {
    this.list.push(message);
  }
  throwIfAny(title: string): void {
    if (this.list.length === 1) throw new SegtoolError('ERR_CONFIG', this.list[0]!);
    if (this.list.length > 1) {
      throw new SegtoolError('ERR_CONFIG', `${this.list.length} problems in ${title}:\n${this.list.map((p) => `  - ${p}`).join('\n')}`);
    }
  }
}

function assign(cfg: SegtoolConfig, key: ConfigKey, value: unknown, where: string, problems: Problems): void {
  const spec = CONFIG_SPECS[key] as KeySpec<unknown>;
  const converted = coerce(spec.kind, value);
  if (converted === undefined) problems.add(badValue(where, key, spec, value));
  else setValue(cfg, key, converted);
}

/** Checks between keys, run once everything is merged. */
function checkConsistency(cfg: SegtoolConfig, where: string, problems: Problems): void {
  const channels = ENCODER_CHANNELS[cfg.MODEL.arch_encoder];
  if (cfg.MODEL.fc_dim !== channels) {
    problems.add(
      `${where}MODEL.fc_dim is ${cfg.MODEL.fc_dim} but encoder ${cfg.MODEL.arch_encoder} outputs ${channels} channels; set MODEL.fc_dim ${channels}`,
    );
  }
  // precision bf16 on device cpu depends on the CPU: checked where the model is made (lib/device.ts).
  if (cfg.TRAIN.start_epoch > cfg.TRAIN.num_epoch) {
    problems.add(`${where}TRAIN.start_epoch (${cfg.TRAIN.start_epoch}) is after TRAIN.num_epoch (${cfg.TRAIN.num_epoch})`);
  }
}

// ---------------------------------------------------------------------------------------------
// YAML files

interface ParseOptions {
  /** Name used in messages (a file path); default "config". */
  source?: string;
  /** Config the file is merged over; default the defaults. */
  base?: SegtoolConfig;
  overrides?: ConfigOverrides;
}

/** Merges YAML text over `base` (default: the defaults), then `overrides`, and validates. */
export function parseConfig(text: string, options: ParseOptions = {}): SegtoolConfig {
  const source = options.source ?? 'config';
  const cfg = cloneConfig(options.base ?? defaultConfig());
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    const line = error.pos ? lineCounter.linePos(error.pos[0]).line : undefined;
    throw new SegtoolError('ERR_CONFIG', `${source}${line ? `:${line}` : ''}: invalid YAML: ${error.message}`);
  }
  const problems = new Problems();
  const at = (node: YamlNode | null | undefined): string => {
    const offset = node?.range?.[0];
    return offset === undefined ? `${source}: ` : `${source}:${lineCounter.linePos(offset).line}: `;
  };
  // Anchors and aliases (`lr_decoder: *lr`, `VAL: *common`) are YAML: an alias stands for its anchor's node.
  const resolveAlias = (node: YamlNode | null): YamlNode | null => (isAlias(node) ? ((node.resolve(doc) as YamlNode | undefined) ?? null) : node);
  const jsOf = (node: YamlNode | null): unknown => {
    try {
      return node === null ? null : node.toJS(doc);
    } catch (error) {
      throw new SegtoolError('ERR_CONFIG', `${at(node)}invalid YAML: ${(error as Error).message}`, { cause: error });
    }
  };
  const root = doc.contents;
  if (root !== null && !(isScalar(root) && root.value === null)) {
    if (!isMap(root)) throw new SegtoolError('ERR_CONFIG', `${at(root)}expected a mapping of sections (DATASET:, MODEL:, ...) at the top level`);
    for (const pair of root.items) {
      const keyNode = pair.key as YamlNode | null;
      const name = String(isScalar(keyNode) ? keyNode.value : keyNode);
      const valueNode = resolveAlias(pair.value as YamlNode | null);
      const value = jsOf(valueNode);
      if (name === 'DIR') {
        assign(cfg, 'DIR', value, at(keyNode), problems);
      } else if ((SECTION_NAMES as readonly string[]).includes(name)) {
        const section = name as SectionName;
        if (value === null) continue; // `VAL:` with nothing under it
        if (!isMap(valueNode)) {
          problems.add(`${at(keyNode)}expected a mapping of keys under ${section} but received ${show(value)}`);
          continue;
        }
        for (const item of valueNode.items) {
          const leafNode = item.key as YamlNode | null;
          const key = `${section}.${String(isScalar(leafNode) ? leafNode.value : leafNode)}`;
          const leafValueNode = resolveAlias(item.value as YamlNode | null);
          const leafValue = jsOf(leafValueNode);
          if (isConfigKey(key)) assign(cfg, key, leafValue, at(leafNode), problems);
          else problems.add(`${at(leafNode)}unknown key ${key}${suggestKey(key)}`);
        }
      } else if (isMap(valueNode)) {
        problems.add(`${at(keyNode)}unknown section ${name}${suggestSection(name)}`);
      } else {
        problems.add(`${at(keyNode)}unknown key ${name}${suggestKey(name)}`);
      }
    }
  }
  problems.throwIfAny(source);
  if (options.overrides !== undefined) return applyOverrides(cfg, options.overrides, `${source} with overrides`);
  checkConsistency(cfg, `${source}: `, problems);
  problems.throwIfAny(source);
  return cfg;
}

/**
 * Where a `--cfg` argument points: an existing file, else a bundled config by short name
 * (`resnet50dilated-ppm_deepsup`, `ade20k-resnet50dilated-ppm_deepsup`, with or without `.yaml`).
 */
export function resolveConfigPath(pathOrName: string): string {
  if (typeof pathOrName !== 'string' || pathOrName.length === 0) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a config file path or bundled config name but received ${show(pathOrName)}`);
  }
  if (existsSync(pathOrName)) return pathOrName;
  const bundled = findBundledConfig(pathOrName);
  if (bundled !== undefined) return bundledConfigPath(bundled);
  throw new SegtoolError('ERR_NOT_FOUND', `Config ${pathOrName} is neither a file nor a bundled config${suggestBundledConfig(pathOrName)}`);
}

/**
 * Reads a YAML config (a path, or a bundled config's short name), merges it over the defaults,
 * then applies `overrides`, and validates the result.
 */
export async function loadConfig(pathOrName: string, overrides?: ConfigOverrides): Promise<SegtoolConfig> {
  const path = resolveConfigPath(pathOrName);
  // A regular file within SEGTOOL_MAX_CONFIG_BYTES (1 MiB): a FIFO or /dev/zero is refused.
  const text = (await readInputFile(path, 'config')).toString('utf8');
  const contents = parseDocument(text).contents;
  if (contents === null || (isScalar(contents) && (contents.value === null || contents.value === ''))) {
    // An empty file would silently mean every default: almost always the wrong file, or one not yet saved.
    throw new SegtoolError(
      'ERR_CONFIG',
      `${path} is empty (nothing but blank lines or comments): a config names at least one section (DATASET:, MODEL:, TRAIN:, VAL:, TEST:) or DIR; ` +
        `for the reference's defaults use a bundled config (--cfg ${BUNDLED_DEFAULT}) or write the keys you change`,
    );
  }
  return parseConfig(text, { source: path, overrides });
}

/** The bundled config that holds the reference's defaults (config/defaults.py's model). */
const BUNDLED_DEFAULT = 'resnet50dilated-ppm_deepsup';

// ---------------------------------------------------------------------------------------------
// Overrides

/** Override text -> value: YAML scalars and lists; string keys take the text as it is. */
function parseOverrideText(kind: ValueKind, text: string): unknown {
  const quoted = /^(["']).*\1$/s.test(text);
  if ((kind.type === 'string' || kind.type === 'enum' || kind.type === 'device') && !quoted) return text;
  try {
    const value: unknown = parseYamlValue(text);
    return value === null || value === undefined ? text : value; // keep "" / "~" visible in messages
  } catch {
    return text;
  }
}

/**
 * What is wrong with override text `text` for `key` on its own (its type and range, not how it
 * fits the other keys), as a message starting with `where`; undefined when it is fine.
 */
export function overrideProblem(key: ConfigKey, text: string, where: string): string | undefined {
  const spec = CONFIG_SPECS[key] as KeySpec<unknown>;
  const value = parseOverrideText(spec.kind, text);
  return coerce(spec.kind, value) === undefined ? badValue(where, key, spec, value) : undefined;
}

/** Applies `KEY VALUE` overrides (later ones win) and validates; returns a new config. */
export function applyOverrides(cfg: SegtoolConfig, overrides: ConfigOverrides, title = 'overrides'): SegtoolConfig {
  const out = cloneConfig(cfg);
  const problems = new Problems();
  const entries: [string, unknown, boolean][] = [];
  if (Array.isArray(overrides)) {
    const list = overrides as readonly unknown[];
    if (list.length % 2 !== 0) {
      problems.add(`overrides: ${show(list[list.length - 1])} has no value (overrides are KEY VALUE pairs)`);
    }
    for (let i = 0; i + 1 < list.length; i += 2) {
      if (typeof list[i] !== 'string' || typeof list[i + 1] !== 'string') {
        throw new SegtoolError(
          'ERR_INVALID_ARG',
          `Expected strings for overrides[${i}] and overrides[${i + 1}] but received ${show(list[i])} and ${show(list[i + 1])}`,
        );
      }
      entries.push([list[i] as string, list[i + 1], true]);
    }
  } else if (typeof overrides === 'object' && overrides !== null) {
    for (const [key, value] of Object.entries(overrides)) entries.push([key, value, typeof value === 'string']);
  } else {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a KEY VALUE list or an object for overrides but received ${show(overrides)}`);
  }
  for (const [key, raw, isText] of entries) {
    if (!isConfigKey(key)) {
      if ((SECTION_NAMES as readonly string[]).includes(key)) {
        problems.add(`overrides: ${key} is a section; override one of its keys, e.g. ${CONFIG_KEYS.find((k) => k.startsWith(`${key}.`))}`);
      } else {
        problems.add(`overrides: unknown key ${key}${suggestKey(key)}`);
      }
      continue;
    }
    const value = isText ? parseOverrideText(CONFIG_SPECS[key].kind, raw as string) : raw;
    assign(out, key, value, 'overrides: ', problems);
  }
  checkConsistency(out, `${title}: `, problems);
  problems.throwIfAny(title);
  return out;
}

/** Merges a nested partial config (`{ TRAIN: { num_epoch: 2 } }`) over `base`, with the same checks. */
export function mergeConfig(base: SegtoolConfig, partial: PartialConfig, source = 'config object'): SegtoolConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected an object for the partial config but received ${show(partial)}`);
  }
  const out = cloneConfig(base);
  const problems = new Problems();
  const where = `${source}: `;
  for (const [name, value] of Object.entries(partial as Record<string, unknown>)) {
    if (name === 'DIR') {
      assign(out, 'DIR', value, where, problems);
    } else if ((SECTION_NAMES as readonly string[]).includes(name)) {
      if (value === undefined || value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) {
        problems.add(`${where}expected an object for ${name} but received ${show(value)}`);
        continue;
      }
      for (const [leaf, leafValue] of Object.entries(value as Record<string, unknown>)) {
        const key = `${name}.${leaf}`;
        if (isConfigKey(key)) assign(out, key, leafValue, where, problems);
        else problems.add(`${where}unknown key ${key}${suggestKey(key)}`);
      }
    } else {
      problems.add(`${where}unknown ${typeof value === 'object' && value !== null ? 'section' : 'key'} ${name}${suggestSection(name)}`);
    }
  }
  checkConsistency(out, where, problems);
  problems.throwIfAny(source);
  return out;
}

/** Checks a complete config object (every key present, known and valid); returns a normalised copy. */
export function validateConfig(cfg: unknown, source = 'config object'): SegtoolConfig {
  if (typeof cfg !== 'object' || cfg === null) {
    throw new SegtoolError('ERR_CONFIG', `${source}: expected a config object but received ${show(cfg)}`);
  }
  const problems = new Problems();
  for (const key of CONFIG_KEYS) {
    if (CONFIG_SPECS[key].optional) continue;
    const [section, leaf] = splitKey(key);
    const holder = (section === undefined ? cfg : (cfg as Record<string, unknown>)[section]) as Record<string, unknown> | undefined;
    if (typeof holder !== 'object' || holder === null || !(leaf in holder)) problems.add(`${source}: ${key} is missing`);
  }
  problems.throwIfAny(source);
  return mergeConfig(defaultConfig(), cfg as PartialConfig, source);
}

// ---------------------------------------------------------------------------------------------
// Writing

function yamlScalar(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value); // a JSON string is a YAML double-quoted scalar
  if (Array.isArray(value)) return `[${value.map(yamlScalar).join(', ')}]`;
  return String(value); // numbers print so that YAML 1.2 reads the same double back (1e-7, 0.02, ...)
}

/**
 * The config as YAML, in the reference's layout and key order (loads back identically;
 * segtool's own keys come last in their section, under a comment).
 */
export function stringifyConfig(cfg: SegtoolConfig): string {
  const valid = validateConfig(cfg);
  const lines = ['# segtool config: the keys of CSAILVision/semantic-segmentation-pytorch plus segtool\'s own (marked)'];
  for (const section of SECTION_NAMES) {
    lines.push('', `${section}:`);
    let marked = false;
    for (const key of CONFIG_KEYS) {
      const [s, leaf] = splitKey(key);
      if (s !== section) continue;
      if (CONFIG_SPECS[key].segtool && !marked) {
        lines.push('  # segtool additions (not read by the reference)');
        marked = true;
      }
      lines.push(`  ${leaf}: ${yamlScalar(getConfigValue(valid, key))}`);
    }
  }
  lines.push('', `DIR: ${yamlScalar(valid.DIR)}`, '');
  return lines.join('\n');
}

/** Writes the config as YAML (e.g. `DIR/config.yaml`), atomically, creating the folder. */
export async function saveConfig(cfg: SegtoolConfig, path: string): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a non-empty string for path but received ${show(path)}`);
  }
  // Written atomically, so a crash never leaves a half-written config.yaml behind.
  await writeFileAtomic(path, stringifyConfig(cfg), 'config');
}

/** A config object, or a YAML path / bundled config name; `overrides` (KEY VALUE) go on top. */
export type ConfigInput = SegtoolConfig | string;

export async function resolveConfigInput(config: ConfigInput, overrides?: ConfigOverrides): Promise<SegtoolConfig> {
  if (typeof config === 'string') return loadConfig(config, overrides);
  const valid = validateConfig(config);
  return overrides === undefined ? valid : applyOverrides(valid, overrides);
}
