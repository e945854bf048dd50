/**
 * Colour legends under visualisation panels: a swatch and the name of each class shown, laid
 * out in rows as wide as the panel, drawn as SVG and rasterised by sharp (librsvg, off the main
 * thread), then appended below the panel.
 */
import { defaultClassName } from '../classes.js';
import { loadSharp } from '../data/decode.js';
import { SegtoolError } from '../errors.js';
import { expectInteger, invalid } from '../validate.js';
import type { RawImage } from './visualize.js';

export interface LegendEntry {
  index: number;
  name: string;
  /** RGB, 0..255. */
  color: readonly [number, number, number];
}

/** Names and colours of `classes` (indices) from a class list's names and palette (3 bytes per class). */
export function legendEntries(
  classes: Iterable<number>,
  names: readonly string[],
  palette: Uint8Array | readonly number[],
): LegendEntry[] {
  const out: LegendEntry[] = [];
  for (const index of classes) {
    expectInteger('class index', index, 0);
    const color: [number, number, number] = [palette[3 * index] ?? 0, palette[3 * index + 1] ?? 0, palette[3 * index + 2] ?? 0];
    out.push({ index, name: names[index] ?? defaultClassName(index), color });
  }
  return out;
}

/** Text for an SVG text node or attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const FONT = "font-family=\"DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif\"";

/** Longest name drawn in a legend, in characters (longer ones end with an ellipsis). */
const MAX_NAME = 28;

function shortName(name: string, max = MAX_NAME): string {
  return name.length > max ? `${name.slice(0, max - 1)}…` : name;
}

/** The legend as an SVG document `width` pixels wide, and its height. */
export function legendSvg(entries: readonly LegendEntry[], width: number, options: { fontSize?: number } = {}): { svg: string; height: number } {
  expectInteger('width', width, 1);
  if (!Array.isArray(entries)) throw invalid('entries', 'an array of legend entries', entries);
  const fontSize = options.fontSize ?? 13;
  const rowHeight = Math.round(fontSize * 1.6);
  const swatch = Math.round(fontSize * 1.1);
  const pad = 6;
  const charWidth = fontSize * 0.62; // DejaVu Sans averages ~0.6 em per character
  const items: string[] = [];
  let x = pad;
  let y = pad;
  for (const entry of entries) {
    const label = shortName(entry.name);
    const itemWidth = swatch + 5 + Math.ceil(label.length * charWidth) + 14;
    if (x > pad && x + itemWidth > width - pad) {
      x = pad;
      y += rowHeight;
    }
    const [r, g, b] = entry.color;
    items.push(
      `<rect x="${x}" y="${y + (rowHeight - swatch) / 2}" width="${swatch}" height="${swatch}" fill="rgb(${r},${g},${b})" stroke="#444" stroke-width="0.5"/>` +
        `<text x="${x + swatch + 5}" y="${y + rowHeight / 2}" dominant-baseline="central" font-size="${fontSize}" ${FONT} fill="#111">${escapeXml(label)}</text>`,
    );
    x += itemWidth;
  }
  const height = entries.length === 0 ? 0 : y + rowHeight + pad;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${Math.max(height, 1)}"><rect width="100%" height="100%" fill="#fff"/>${items.join('')}</svg>`;
  return { svg, height };
}

/**
 * The panel with the legend of `entries` below it (an RGB image as wide as the panel). The
 * legend is rasterised by sharp; the main thread only copies rows.
 */
export async function addLegend(panel: RawImage, entries: readonly LegendEntry[], options: { fontSize?: number } = {}): Promise<RawImage> {
  if (panel.channels !== 3) throw new SegtoolError('ERR_INVALID_ARG', `Expected an RGB panel (3 channels) but received ${panel.channels} channels`);
  if (entries.length === 0) return panel;
  const fontSize = options.fontSize ?? Math.max(11, Math.min(18, Math.round(panel.height / 40)));
  const { svg, height } = legendSvg(entries, panel.width, { fontSize });
  const sharp = await loadSharp();
  const band = await sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (band.info.width !== panel.width || band.info.height !== height || band.info.channels !== 3) {
    throw new SegtoolError('ERR_NATIVE', `The legend was drawn ${band.info.width}x${band.info.height}x${band.info.channels}, expected ${panel.width}x${height}x3`);
  }
  const data = new Uint8Array(panel.width * (panel.height + height) * 3);
  data.set(panel.data, 0);
  data.set(band.data, panel.data.length);
  return { data, width: panel.width, height: panel.height + height, channels: 3 };
}
