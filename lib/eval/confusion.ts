/**
 * The confusion matrix as people read it: which classes are taken for which (the off-diagonal
 * cells with the most pixels) and a heat map, row-normalised (each ground-truth class's pixels
 * split by what was predicted), with the class names on the axes. The heat map is one SVG
 * document: inlined in `segtool report` pages, rasterised by sharp for the PNG beside the
 * metrics JSON.
 */
import { defaultClassName } from '../classes.js';
import { loadSharp } from '../data/decode.js';
import { SegtoolError } from '../errors.js';
import { describe, expectInteger } from '../validate.js';
import { escapeXml } from './legend.js';

/** Rows (ground truth) of pixel counts by prediction, numClass x numClass. */
export type ConfusionRows = readonly (readonly number[])[];

export interface ConfusedPair {
  /** Ground-truth class. */
  truth: number;
  truthName: string;
  /** The class predicted instead. */
  predicted: number;
  predictedName: string;
  pixels: number;
  /** Share of the ground-truth class's pixels, 0..1. */
  fraction: number;
}

function checkRows(rows: unknown): ConfusionRows {
  const n = Array.isArray(rows) ? rows.length : 0;
  if (n === 0 || !(rows as unknown[]).every((r) => Array.isArray(r) && r.length === n)) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected a square confusion matrix (a list of numClass rows of numClass counts) but received ${describe(rows)}`);
  }
  return rows as ConfusionRows;
}

const rowSum = (row: readonly number[]): number => row.reduce((s, v) => s + v, 0);

/** The off-diagonal cells with the most pixels, most first (ties: lower class indices first). */
export function mostConfused(rows: ConfusionRows, names: readonly string[], count = 10): ConfusedPair[] {
  checkRows(rows);
  expectInteger('count', count, 0);
  const pairs: ConfusedPair[] = [];
  rows.forEach((row, truth) => {
    const total = rowSum(row);
    row.forEach((pixels, predicted) => {
      if (predicted === truth || pixels <= 0) return;
      pairs.push({
        truth,
        truthName: names[truth] ?? defaultClassName(truth),
        predicted,
        predictedName: names[predicted] ?? defaultClassName(predicted),
        pixels,
        fraction: pixels / total,
      });
    });
  });
  pairs.sort((a, b) => b.pixels - a.pixels || a.truth - b.truth || a.predicted - b.predicted);
  return pairs.slice(0, count);
}

export interface HeatmapOptions {
  /** At most this many classes on the axes: those with the most ground-truth pixels (default 60). */
  maxClasses?: number;
  /** Side of one cell in pixels (default: 640 / classes shown, within 14..36). */
  cell?: number;
  /** How many most-confused pairs to list under the map (default 10). */
  pairs?: number;
  title?: string;
}

/** The classes the heat map shows: those in the ground truth or the predictions, the `max` with the most ground-truth pixels, by index. */
export function heatmapClasses(rows: ConfusionRows, max: number): number[] {
  const n = rows.length;
  const truth = rows.map(rowSum);
  const predicted = Array.from({ length: n }, (_, x) => rows.reduce((s, row) => s + row[x]!, 0));
  const present = truth.map((t, c) => c).filter((c) => truth[c]! > 0 || predicted[c]! > 0);
  present.sort((a, b) => truth[b]! - truth[a]! || predicted[b]! - predicted[a]! || a - b);
  return present.slice(0, max).sort((a, b) => a - b);
}

/** White to dark blue (ColorBrewer Blues' ends) for 0..1. */
function blues(v: number): string {
  const t = Math.min(1, Math.max(0, v));
  const mix = (a: number, b: number): number => Math.round(a + (b - a) * t);
  return `rgb(${mix(247, 8)},${mix(251, 48)},${mix(255, 107)})`;
}

const FONT = 'font-family="DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"';

/** The row-normalised heat map with names on both axes and the most-confused pairs below, as SVG. */
export function confusionSvg(rows: ConfusionRows, names: readonly string[], options: HeatmapOptions = {}): string {
  checkRows(rows);
  const maxClasses = expectInteger('options.maxClasses', options.maxClasses ?? 60, 1);
  const shown = heatmapClasses(rows, maxClasses);
  const cell = expectInteger('options.cell', options.cell ?? Math.max(14, Math.min(36, Math.floor(640 / Math.max(1, shown.length)))), 2);
  const nameOf = (c: number): string => {
    const name = names[c] ?? defaultClassName(c);
    return name.length > 24 ? `${name.slice(0, 23)}…` : name;
  };
  const fontSize = Math.max(8, Math.min(12, cell - 3));
  const labelWidth = Math.max(40, Math.ceil(Math.max(0, ...shown.map((c) => nameOf(c).length)) * fontSize * 0.62) + 8);
  const titleHeight = 28;
  const left = labelWidth;
  const top = titleHeight + labelWidth;
  const grid = shown.length * cell;
  const pairs = mostConfused(rows, names, options.pairs ?? 10);
  const lineHeight = 18;
  const total = rows.length;
  const title =
    options.title ??
    `Confusion matrix (rows: ground truth, normalised; columns: prediction)` +
      (shown.length < total ? `, the ${shown.length} of ${total} classes present` : '');
  // Text widths estimated at ~0.62 em per character (DejaVu Sans).
  const longestPair = Math.max(0, ...pairs.map((p) => `${p.truthName} -> ${p.predictedName}: ${p.pixels} px, 100.0% of ${p.truthName}`.length));
  const width = Math.ceil(Math.max(left + grid + 90, 16 + title.length * 13 * 0.66, 24 + longestPair * 12 * 0.62));
  const height = top + grid + 30 + lineHeight * (pairs.length + 1) + 10;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" class="segtool-confusion">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="8" y="18" font-size="13" font-weight="bold" ${FONT}>${escapeXml(title)}</text>`);
  shown.forEach((c, i) => {
    const y = top + i * cell + cell / 2;
    out.push(`<text x="${left - 4}" y="${y}" text-anchor="end" dominant-baseline="central" font-size="${fontSize}" ${FONT}>${escapeXml(nameOf(c))}</text>`);
    const x = left + i * cell + cell / 2;
    out.push(`<text transform="translate(${x},${top - 4}) rotate(-90)" dominant-baseline="central" font-size="${fontSize}" ${FONT}>${escapeXml(nameOf(c))}</text>`);
  });
  shown.forEach((truth, i) => {
    const row = rows[truth]!;
    const sum = rowSum(row);
    shown.forEach((predicted, j) => {
      const pixels = row[predicted]!;
      const v = sum > 0 ? pixels / sum : 0;
      const fill = sum > 0 ? blues(v) : '#e6e6e6';
      const tip = `${nameOf(truth)} -> ${nameOf(predicted)}: ${pixels} px${sum > 0 ? ` (${(v * 100).toFixed(1)}%)` : ''}`;
      out.push(`<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="${fill}"><title>${escapeXml(tip)}</title></rect>`);
    });
  });
  out.push(`<rect x="${left}" y="${top}" width="${grid}" height="${grid}" fill="none" stroke="#999" stroke-width="0.5"/>`);
  // Colour scale.
  const scaleX = left + grid + 16;
  for (let k = 0; k < 10; k++) {
    out.push(`<rect x="${scaleX}" y="${top + (grid * k) / 10}" width="14" height="${grid / 10 + 0.5}" fill="${blues(1 - (k + 0.5) / 10)}"/>`);
  }
  out.push(`<text x="${scaleX + 18}" y="${top + 8}" font-size="10" ${FONT}>100%</text>`);
  out.push(`<text x="${scaleX + 18}" y="${top + grid}" font-size="10" ${FONT}>0%</text>`);
  let y = top + grid + 30;
  out.push(`<text x="8" y="${y}" font-size="12" font-weight="bold" ${FONT}>${pairs.length > 0 ? 'Most confused (ground truth -> prediction)' : 'No confusion between classes'}</text>`);
  for (const p of pairs) {
    y += lineHeight;
    const text = `${p.truthName} -> ${p.predictedName}: ${p.pixels} px, ${(p.fraction * 100).toFixed(1)}% of ${p.truthName}`;
    out.push(`<text x="16" y="${y}" font-size="12" ${FONT} class="pair">${escapeXml(text)}</text>`);
  }
  out.push('</svg>');
  return out.join('');
}

/** The heat map as a PNG (rasterised by sharp, off the main thread). */
export async function confusionPng(rows: ConfusionRows, names: readonly string[], options: HeatmapOptions = {}): Promise<Buffer> {
  const svg = confusionSvg(rows, names, options);
  const sharp = await loadSharp();
  return sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).png().toBuffer();
}
