/**
 * `segtool report DIR` / `writeReport(dir)`: a run folder as one self-contained HTML page
 * (lib/report/page.ts) — its history.json, its newest metrics JSON (or the one named) with the
 * confusion matrix, and the panels `segtool eval --visualize` wrote (DIR/result).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { loadSharp } from '../data/decode.js';
import { SegtoolError } from '../errors.js';
import { confusionSvg } from '../eval/confusion.js';
import { writeFileAtomic } from '../io/files.js';
import type { TrainHistoryEntry } from '../train/train.js';
import { expectInteger, expectObject, expectString } from '../validate.js';
import { epochsFromHistory, reportHtml, type ReportData, type ReportMetrics, type ReportSample } from './page.js';

export interface ReportOptions {
  /** The HTML file; default DIR/report.html. */
  output?: string;
  /** A metrics JSON (segtool eval's); default the newest DIR/metrics*.json. */
  metrics?: string;
  /** Folder of sample panels; default DIR/result. */
  resultDir?: string;
  /** How many panels to include (default 6; 0 = none). */
  samples?: number;
  /** Page title; default "segtool: <DIR's name>". */
  title?: string;
}

export interface ReportResult {
  file: string;
  /** What went into it. */
  iterations: number;
  epochs: number;
  metricsFile?: string;
  samples: string[];
}

/** What a metrics JSON holds that the page shows. */
interface MetricsFile {
  images?: number;
  dataset?: { images?: number };
  meanIoU: number;
  pixelAccuracy: number;
  classes: Array<{ index: number; name: string; iou: number; union: number }>;
  confusion?: number[][];
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new SegtoolError('ERR_NOT_FOUND', `Cannot read ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SegtoolError('ERR_BAD_FILE', `${what} ${path} is not JSON: ${(cause as Error).message}`, { cause });
  }
}

async function readHistory(dir: string): Promise<TrainHistoryEntry[]> {
  const file = join(dir, 'history.json');
  try {
    await stat(file);
  } catch {
    return [];
  }
  const history = await readJson(file, 'the training history');
  if (!Array.isArray(history) || !history.every((h) => typeof h === 'object' && h !== null && Number.isFinite(h.iteration) && Number.isFinite(h.loss))) {
    throw new SegtoolError('ERR_BAD_FILE', `Expected ${file} to be a list of {epoch, iteration, loss, accuracy, lrEncoder, lrDecoder} entries`);
  }
  return history as TrainHistoryEntry[];
}

/** The newest metrics*.json in `dir`, if any. */
async function newestMetrics(dir: string): Promise<string | undefined> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^metrics.*\.json$/.test(n));
  const dated = await Promise.all(names.map(async (n) => ({ path: join(dir, n), mtime: (await stat(join(dir, n))).mtimeMs })));
  dated.sort((a, b) => b.mtime - a.mtime || a.path.localeCompare(b.path));
  return dated[0]?.path;
}

/** The page's view of an evaluation: classes that occur, and the heat map when there is a confusion matrix. */
export function reportMetrics(metrics: MetricsFile, source: string): ReportMetrics {
  if (typeof metrics !== 'object' || metrics === null || !Array.isArray(metrics.classes) || !Number.isFinite(metrics.meanIoU)) {
    throw new SegtoolError('ERR_BAD_FILE', `Expected ${source} to be a metrics JSON written by segtool eval (meanIoU, classes)`);
  }
  const names = metrics.classes.map((c) => c.name);
  return {
    source: basename(source),
    images: metrics.images ?? metrics.dataset?.images ?? 0,
    meanIoU: metrics.meanIoU,
    pixelAccuracy: metrics.pixelAccuracy,
    classes: metrics.classes.filter((c) => c.union > 0).map((c) => ({ index: c.index, name: c.name, iou: c.iou })),
    ...(Array.isArray(metrics.confusion) && metrics.confusion.length === names.length ? { confusionSvg: confusionSvg(metrics.confusion, names) } : {}),
  };
}

/** A panel as a data: URI, scaled down to at most `maxWidth` pixels (JPEG; sharp, off the main thread). */
export async function panelDataUri(file: string, maxWidth = 1600): Promise<string> {
  const sharp = await loadSharp();
  const jpeg = await sharp(file).resize({ width: maxWidth, withoutEnlargement: true }).jpeg({ quality: 88 }).toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

/** The first `count` panels (by name) in `resultDir`. */
export async function listPanels(resultDir: string, count: number): Promise<string[]> {
  const names = await readdir(resultDir).catch(() => [] as string[]);
  return names
    .filter((n) => extname(n).toLowerCase() === '.png')
    .sort()
    .slice(0, count)
    .map((n) => join(resultDir, n));
}

function checkOptions(options: ReportOptions): void {
  expectObject('options', options, true);
  if (options.output !== undefined) expectString('options.output', options.output);
  if (options.metrics !== undefined) expectString('options.metrics', options.metrics);
  if (options.resultDir !== undefined) expectString('options.resultDir', options.resultDir);
  if (options.samples !== undefined) expectInteger('options.samples', options.samples, 0, 1000);
  if (options.title !== undefined) expectString('options.title', options.title);
}

/** Writes the report of run folder `dir`; see ReportOptions. */
export async function writeReport(dir: string, options: ReportOptions = {}): Promise<ReportResult> {
  expectString('dir', dir);
  checkOptions(options);
  const root = resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new SegtoolError('ERR_NOT_FOUND', `Expected a run folder for dir but ${root} is not a folder`);
  const history = await readHistory(root);
  const metricsFile = options.metrics !== undefined ? resolve(options.metrics) : await newestMetrics(root);
  const metrics = metricsFile ? reportMetrics((await readJson(metricsFile, 'the metrics')) as MetricsFile, metricsFile) : undefined;
  const panels = await listPanels(resolve(options.resultDir ?? join(root, 'result')), options.samples ?? 6);
  const samples: ReportSample[] = [];
  for (const panel of panels) samples.push({ name: basename(panel, extname(panel)), src: await panelDataUri(panel) });
  if (history.length === 0 && !metrics && samples.length === 0) {
    throw new SegtoolError('ERR_NOT_FOUND', `Nothing to report in ${root}: no history.json (segtool train), metrics*.json (segtool eval) or result/*.png (segtool eval --visualize)`);
  }
  const data: ReportData = {
    title: options.title ?? `segtool: ${basename(root)}`,
    dir: root,
    history,
    epochs: epochsFromHistory(history),
    ...(metrics ? { metrics } : {}),
    samples,
  };
  const file = resolve(options.output ?? join(root, 'report.html'));
  await writeFileAtomic(file, await reportHtml(data));
  return { file, iterations: history.length, epochs: data.epochs.length, ...(metricsFile ? { metricsFile } : {}), samples: panels };
}
