/**
 * Class names and colours: the one place that decides what class index c is called and how it
 * is drawn. ADE20K's 150 classes by default; `DATASET.class_info` names a file for a custom
 * dataset (the reference's object150_info.csv layout, or a YAML/JSON list of {name, color});
 * training checkpoints carry the list (lib/checkpoint.ts). Any other class count without a list
 * gets `class_0 … class_{N-1}` and a generated palette — never ADE20K's names.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import type { SegtoolConfig } from './config/index.js';
import { SegtoolError } from './errors.js';
import { ADE20K_CLASS_NAMES, ADE20K_NUM_CLASSES, ade20kPalette } from './eval/palette.js';
import { describe, expectInteger, invalid, nearest } from './validate.js';

/** What class index c is called (`names[c]`) and drawn in (`palette[3c..3c+2]`, RGB). */
export interface ClassInfo {
  /** Display names by class index. */
  readonly names: readonly string[];
  /** RGB bytes, 3 per class. */
  readonly palette: Uint8Array;
  /** Where the list came from: 'ADE20K', 'generated', a file path, or a checkpoint's metadata. */
  readonly source: string;
}

/** Class names and colours a caller hands in (checkClassInfo): the palette may be plain numbers, the source is optional. */
export interface ClassInfoInput {
  readonly names: readonly string[];
  readonly palette: Uint8Array | readonly number[];
  readonly source?: string;
}

/** The largest class list file read (DATASET.class_info); ADE20K's CSV is 7 KB. */
export const CLASS_INFO_MAX_BYTES = 1 << 20;

/** Longest accepted class name, in characters. */
const MAX_NAME_LENGTH = 256;

/** The name of a class no list names: `class_7`. */
export function defaultClassName(index: number): string {
  return `class_${index}`;
}

/** `class_0 … class_{numClass-1}`, or ADE20K's names for 150 classes. */
export function defaultClassNames(numClass: number): readonly string[] {
  expectInteger('numClass', numClass, 1, 65535);
  if (numClass === ADE20K_NUM_CLASSES) return ADE20K_CLASS_NAMES;
  return Object.freeze(Array.from({ length: numClass }, (_, i) => defaultClassName(i)));
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number): number => {
    const k = (n + h * 6) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1)];
}

/**
 * A deterministic palette of `numClass` distinct, clearly visible colours (never black, which
 * marks unlabeled pixels, nor dark): hues step by the golden ratio,
 * so neighbouring class indices differ strongly, and saturation and brightness cycle through
 * three levels. Distinct for up to several thousand classes.
 */
export function generatePalette(numClass: number): Uint8Array {
  expectInteger('numClass', numClass, 1, 65535);
  const palette = new Uint8Array(3 * numClass);
  const seen = new Set<number>();
  const golden = (Math.sqrt(5) - 1) / 2;
  const saturation = [0.9, 0.65, 0.8];
  const value = [0.95, 0.85, 0.75];
  for (let c = 0; c < numClass; c++) {
    const level = c % 3;
    const hue = (c * golden) % 1;
    let rgb = hsvToRgb(hue, saturation[level]!, value[level]!);
    // With thousands of classes, rounding makes colours meet: nudge the hue, then the brightness.
    for (let tries = 1; seen.has((rgb[0] << 16) | (rgb[1] << 8) | rgb[2]) && tries < 8192; tries++) {
      rgb = hsvToRgb((hue + tries / 4099) % 1, saturation[level]!, value[level]! - 0.04 * Math.floor(tries / 1024));
    }
    seen.add((rgb[0] << 16) | (rgb[1] << 8) | rgb[2]);
    palette.set(rgb, 3 * c);
  }
  return palette;
}

/** The palette for `numClass` classes when a list gives no colours: ADE20K's for 150, generated otherwise. */
export function defaultPalette(numClass: number): Uint8Array {
  return numClass === ADE20K_NUM_CLASSES ? ade20kPalette() : generatePalette(numClass);
}

/** Names and colours for a model with `numClass` classes and no class list. */
export function defaultClassInfo(numClass: number): ClassInfo {
  return {
    names: defaultClassNames(numClass),
    palette: defaultPalette(numClass),
    source: numClass === ADE20K_NUM_CLASSES ? 'ADE20K' : 'generated',
  };
}

/**
 * Checks a ClassInfo handed in by a caller (`name` is the option, e.g. 'options.classInfo'):
 * names are non-empty strings, the palette holds 3 bytes per name, and with `numClass` the
 * count matches. Returns a normalised copy.
 */
export function checkClassInfo(name: string, value: unknown, numClass?: number): ClassInfo {
  if (typeof value !== 'object' || value === null) throw invalid(name, 'a ClassInfo {names, palette}', value);
  const { names, palette, source } = value as Record<string, unknown>;
  if (!Array.isArray(names) || names.length === 0) throw invalid(`${name}.names`, 'a non-empty array of class names', names);
  names.forEach((n, i) => {
    if (typeof n !== 'string' || n.trim().length === 0 || n.length > MAX_NAME_LENGTH) {
      throw invalid(`${name}.names[${i}]`, `a non-empty string of at most ${MAX_NAME_LENGTH} characters`, n);
    }
  });
  if (!(palette instanceof Uint8Array) && !Array.isArray(palette)) throw invalid(`${name}.palette`, 'RGB bytes (Uint8Array), 3 per class', palette);
  if (palette.length !== 3 * names.length) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `Expected ${3 * names.length} RGB bytes (3 per class, ${names.length} classes) for ${name}.palette but received ${describe(palette)}`,
    );
  }
  if (Array.isArray(palette)) {
    palette.forEach((b: unknown, i) => {
      if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b > 255) throw invalid(`${name}.palette[${i}]`, 'an integer in [0, 255]', b);
    });
  }
  if (source !== undefined && typeof source !== 'string') throw invalid(`${name}.source`, 'a string', source);
  if (numClass !== undefined && names.length !== numClass) {
    throw new SegtoolError('ERR_INVALID_ARG', `${name} has ${names.length} classes but the model has ${numClass}`);
  }
  return { names: Object.freeze([...(names as string[])]), palette: Uint8Array.from(palette as ArrayLike<number>), source: (source as string | undefined) ?? name };
}

// ---------------------------------------------------------------------------------------------
// Lists of {name, color}: YAML/JSON files and checkpoint metadata

/** The portable form (checkpoint metadata, JSON): `[{name, color: [r, g, b]}]`. */
export function classInfoToJson(info: ClassInfo): Array<{ name: string; color: [number, number, number] }> {
  return info.names.map((name, c) => ({ name, color: [info.palette[3 * c]!, info.palette[3 * c + 1]!, info.palette[3 * c + 2]!] }));
}

function badFile(source: string, message: string): SegtoolError {
  return new SegtoolError('ERR_BAD_FILE', `${source}: ${message}`);
}

function parseName(value: unknown, where: string): string {
  if (typeof value !== 'string') throw new SegtoolError('ERR_BAD_FILE', `${where}: expected "name" to be a string but received ${describe(value)}`);
  const name = value.trim();
  if (name.length === 0) throw new SegtoolError('ERR_BAD_FILE', `${where}: the name is empty`);
  if (name.length > MAX_NAME_LENGTH) throw new SegtoolError('ERR_BAD_FILE', `${where}: the name has ${name.length} characters (at most ${MAX_NAME_LENGTH})`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new SegtoolError('ERR_BAD_FILE', `${where}: the name ${JSON.stringify(name)} holds control characters`);
  return name;
}

function parseColor(value: unknown, where: string): [number, number, number] {
  if (typeof value === 'string') {
    const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(value.trim());
    if (match) return [parseInt(match[1]!, 16), parseInt(match[2]!, 16), parseInt(match[3]!, 16)];
  } else if (Array.isArray(value) && value.length === 3 && value.every((b) => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b <= 255)) {
    return value as [number, number, number];
  }
  const shown = typeof value === 'string' || Array.isArray(value) ? JSON.stringify(value) : describe(value);
  throw new SegtoolError('ERR_BAD_FILE', `${where}: expected "color" to be [r, g, b] (integers 0-255) or "#rrggbb" but received ${shown}`);
}

const ENTRY_KEYS = ['name', 'color'];

/**
 * Class info from a parsed list: entries `{name, color}` (color `[r, g, b]` or `'#rrggbb'`) or
 * plain name strings, either as the list itself or as `{classes: [...]}`. Every entry has a
 * colour or none does (then the default palette for the count applies). `where(i)` names entry i
 * in messages (with its line, for files).
 */
export function classInfoFromList(value: unknown, source: string, where: (index: number) => string = (i) => `${source}: entry ${i + 1}`): ClassInfo {
  let list = value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const unknown = keys.filter((k) => k !== 'classes');
    if (unknown.length > 0) {
      const hint = nearest(unknown[0]!, ['classes']);
      throw badFile(source, `unknown key "${unknown[0]}"${hint ? ` (did you mean "${hint}"?)` : ''}; expected a list of {name, color} or {classes: [...]}`);
    }
    list = (value as Record<string, unknown>)['classes'];
  }
  if (!Array.isArray(list)) throw badFile(source, `expected a list of {name, color} entries (or {classes: [...]}) but found ${describe(list)}`);
  if (list.length === 0) throw badFile(source, 'the class list is empty');
  if (list.length > 65535) throw badFile(source, `${list.length} classes (at most 65535)`);
  const names: string[] = [];
  const colors: Array<[number, number, number] | undefined> = [];
  list.forEach((entry, i) => {
    const at = where(i);
    if (typeof entry === 'string') {
      names.push(parseName(entry, at));
      colors.push(undefined);
      return;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new SegtoolError('ERR_BAD_FILE', `${at}: expected {name, color} (or a name) but received ${describe(entry)}`);
    }
    for (const key of Object.keys(entry)) {
      if (!ENTRY_KEYS.includes(key)) {
        const hint = nearest(key, ENTRY_KEYS);
        throw new SegtoolError('ERR_BAD_FILE', `${at}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; an entry has name and color`);
      }
    }
    const record = entry as Record<string, unknown>;
    if (!('name' in record)) throw new SegtoolError('ERR_BAD_FILE', `${at}: the entry has no "name"`);
    names.push(parseName(record['name'], at));
    colors.push(record['color'] === undefined ? undefined : parseColor(record['color'], at));
  });
  const withColor = colors.filter((c) => c !== undefined).length;
  if (withColor > 0 && withColor < colors.length) {
    const missing = colors.findIndex((c) => c === undefined);
    throw new SegtoolError('ERR_BAD_FILE', `${where(missing)}: no "color", but ${withColor} other entries have one; give every class a colour or none`);
  }
  const palette = withColor === 0 ? defaultPalette(names.length) : new Uint8Array(colors.flatMap((c) => c!));
  return { names: Object.freeze(names), palette, source };
}

// ---------------------------------------------------------------------------------------------
// object150_info.csv

/** Splits CSV text into records of fields (RFC 4180: quoted fields, "" escapes, CRLF), with each record's line. */
function parseCsv(text: string, source: string): Array<{ line: number; fields: string[] }> {
  const records: Array<{ line: number; fields: string[] }> = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let fieldStarted = false;
  const endRecord = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0]!.trim() === '' && !fieldStarted)) records.push({ line: recordLine, fields });
    fields = [];
    field = '';
    fieldStarted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"') {
      if (field.trim() !== '') throw badFile(`${source}:${line}`, 'a quote inside an unquoted field (quote the whole field, doubling inner quotes)');
      field = '';
      quoted = true;
      fieldStarted = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      fieldStarted = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
    }
  }
  if (quoted) throw badFile(`${source}:${recordLine}`, 'a quoted field is not closed');
  endRecord();
  return records;
}

/**
 * Class info from CSV text in the reference's object150_info.csv layout: a header with at least
 * `Idx` and `Name` (the reference's is `Idx,Ratio,Train,Val,Stuff,Name`), then one row per class
 * with Idx 1, 2, 3, … and Name `name;synonym;…` (the first is the display name). The layout has
 * no colours: ADE20K's palette for 150 classes, a generated one otherwise.
 */
export function classInfoFromCsv(text: string, source: string): ClassInfo {
  const records = parseCsv(text, source);
  if (records.length === 0) throw badFile(source, 'empty; expected a header with Idx and Name (object150_info.csv layout: Idx,Ratio,Train,Val,Stuff,Name)');
  const header = records[0]!.fields.map((f) => f.trim());
  const column = (want: string): number => header.findIndex((h) => h.toLowerCase() === want.toLowerCase());
  const idx = column('Idx');
  const nameColumn = column('Name');
  if (idx < 0 || nameColumn < 0) {
    throw badFile(
      `${source}:${records[0]!.line}`,
      `the header ${JSON.stringify(header.join(','))} has no ${idx < 0 ? 'Idx' : 'Name'} column (expected the object150_info.csv layout: Idx,Ratio,Train,Val,Stuff,Name)`,
    );
  }
  const names: string[] = [];
  for (const { line, fields } of records.slice(1)) {
    const at = `${source}:${line}`;
    if (fields.length !== header.length) {
      throw badFile(at, `${fields.length} fields but the header has ${header.length} (${header.join(',')}); quote a name that holds a comma`);
    }
    const want = names.length + 1;
    const text = fields[idx]!.trim();
    if (!/^\d+$/.test(text) || Number(text) !== want) {
      throw badFile(at, `Idx ${JSON.stringify(text)} but expected ${want} (rows list the classes in order from 1)`);
    }
    if (names.length >= 65535) throw badFile(at, 'more than 65535 classes');
    const first = fields[nameColumn]!.split(';')[0]!;
    if (first.trim() === '') throw badFile(at, `class ${want} has no name (Name ${JSON.stringify(fields[nameColumn])})`);
    names.push(parseName(first, at));
  }
  if (names.length === 0) throw badFile(source, 'has a header but no classes');
  return { names: Object.freeze(names), palette: defaultPalette(names.length), source };
}

// ---------------------------------------------------------------------------------------------
// Files

/** Reads at most `maxBytes` of a regular file as UTF-8, off the main thread; `key` names what the file is for. */
async function readBoundedText(path: string, key: string, maxBytes: number): Promise<string> {
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new SegtoolError('ERR_NOT_FOUND', `${key}: file not found: ${path}`, { cause: error });
    throw new SegtoolError('ERR_BAD_FILE', `${key}: cannot open ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      const kind = info.isDirectory() ? 'a folder' : info.isFIFO() ? 'a pipe' : info.isSocket() ? 'a socket' : 'a device or other special file';
      throw new SegtoolError('ERR_BAD_FILE', `${key}: ${path} is ${kind}; expected a regular file (.csv, .yaml, .yml or .json)`);
    }
    if (info.size > maxBytes) {
      throw new SegtoolError('ERR_BAD_FILE', `${key}: ${path} has ${info.size} bytes; a class list may have at most ${maxBytes}`);
    }
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new SegtoolError('ERR_BAD_FILE', `${key}: ${path} has more than ${maxBytes} bytes; a class list may have at most ${maxBytes}`);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(buffer.subarray(0, length));
    } catch (error) {
      throw new SegtoolError('ERR_BAD_FILE', `${key}: ${path} is not UTF-8 text`, { cause: error });
    }
  } finally {
    await handle.close();
  }
}

function yamlLine(node: unknown, lines: LineCounter): number | undefined {
  const range = (node as YamlNode | undefined)?.range;
  return range ? lines.linePos(range[0]).line : undefined;
}

/** YAML or JSON text (JSON is read as YAML) to class info, with entry lines in messages. */
export function classInfoFromYaml(text: string, source: string): ClassInfo {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    const line = lines.linePos(error.pos[0]).line;
    throw badFile(`${source}:${line}`, `not valid YAML/JSON: ${error.message.split('\n')[0]}`);
  }
  let seq: unknown = doc.contents;
  if (isMap(seq)) seq = seq.items.find((p) => isScalar(p.key) && p.key.value === 'classes')?.value;
  const items = isSeq(seq) ? seq.items : [];
  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  return classInfoFromList(value, source, (i) => {
    const line = yamlLine(items[i], lines);
    return `${source}: entry ${i + 1}${line !== undefined ? ` (line ${line})` : ''}`;
  });
}

export interface ReadClassInfoOptions {
  /** What the file is for, in messages; default 'class_info'. */
  key?: string;
  /** Default CLASS_INFO_MAX_BYTES (1 MiB). */
  maxBytes?: number;
}

/**
 * Reads a class list: `.csv` in object150_info.csv layout, or `.yaml` / `.yml` / `.json` with
 * a list of {name, color}. With `numClass`, the count must equal it (ERR_CONFIG naming both).
 * Only regular files of at most `maxBytes` are read.
 */
export async function readClassInfo(path: string, numClass?: number, options: ReadClassInfoOptions = {}): Promise<ClassInfo> {
  const key = options.key ?? 'class_info';
  if (typeof path !== 'string' || path.length === 0) throw invalid(key, 'a class list file path (.csv, .yaml, .yml or .json)', path);
  if (numClass !== undefined) expectInteger('numClass', numClass, 1);
  const maxBytes = expectInteger('options.maxBytes', options.maxBytes ?? CLASS_INFO_MAX_BYTES, 1);
  const ext = extname(path).toLowerCase();
  if (!['.csv', '.yaml', '.yml', '.json'].includes(ext)) {
    throw new SegtoolError('ERR_BAD_FILE', `${key}: ${path} is neither .csv (object150_info.csv layout) nor .yaml, .yml or .json (a list of {name, color})`);
  }
  const text = await readBoundedText(path, key, maxBytes);
  const info = ext === '.csv' ? classInfoFromCsv(text, path) : classInfoFromYaml(text, path);
  if (numClass !== undefined && info.names.length !== numClass) {
    throw new SegtoolError('ERR_CONFIG', `${key}: ${path} lists ${info.names.length} classes but DATASET.num_class is ${numClass}; they must agree`);
  }
  return info;
}

/** The config's classes: DATASET.class_info when set (checked against DATASET.num_class), the defaults otherwise. */
export async function classInfoFromConfig(cfg: SegtoolConfig): Promise<ClassInfo> {
  const path = cfg.DATASET.class_info;
  if (path) return readClassInfo(path, cfg.DATASET.num_class, { key: 'DATASET.class_info' });
  return defaultClassInfo(cfg.DATASET.num_class);
}
