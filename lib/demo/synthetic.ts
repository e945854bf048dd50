/**
 * A synthetic scene-parsing dataset in the ADE20K layout, for the demo and the tests: indoor
 * scenes (wall, floor, door, painting, table, person) and outdoor scenes (sky with clouds,
 * grass, road, tree, car, person), drawn with per-image colour jitter, textures (planks, tiles,
 * grass blades, wallpaper stripes, mottled canopies) and pixel noise, objects of varied sizes.
 * Annotations hold ADE20K class values (class index + 1; 0 = unlabeled), so the ADE20K palette,
 * names and 150-class models apply unchanged.
 *
 * Layout: images/{training,validation}/scene_NNNNN.png, annotations/... of the same name, and
 * training.odgt / validation.odgt (paths relative to the folder, with width and height).
 * Every image is a pure function of (seed, split, index): the same seed gives the same files.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { deriveSeed, Rng } from '../data/index.js';
import { encodePng } from '../eval/png.js';
import { expectInteger, expectObject, invalid } from '../validate.js';

/** ADE20K class indices (0-based) the scenes use. */
export const SYNTHETIC_CLASSES = Object.freeze({
  wall: 0,
  sky: 2,
  floor: 3,
  tree: 4,
  road: 6,
  grass: 9,
  person: 12,
  door: 14,
  table: 15,
  car: 20,
  painting: 22,
} as const);

type Rgb = [number, number, number];
type Shader = (x: number, y: number) => Rgb;

/** An RGB image and its class map, painted together so they always agree. */
class Scene {
  readonly rgb: Uint8Array;
  readonly classes: Int16Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.rgb = new Uint8Array(width * height * 3);
    this.classes = new Int16Array(width * height).fill(-1);
  }

  /** Paints the pixels inside [x0, x1) x [y0, y1) where `inside` holds. */
  paint(classIndex: number, x0: number, y0: number, x1: number, y1: number, inside: (x: number, y: number) => boolean, shader: Shader): void {
    const xa = Math.max(0, Math.floor(x0));
    const ya = Math.max(0, Math.floor(y0));
    const xb = Math.min(this.width, Math.ceil(x1));
    const yb = Math.min(this.height, Math.ceil(y1));
    for (let y = ya; y < yb; y++) {
      for (let x = xa; x < xb; x++) {
        if (!inside(x + 0.5, y + 0.5)) continue;
        const i = y * this.width + x;
        const [r, g, b] = shader(x, y);
        this.rgb[3 * i] = clamp(r);
        this.rgb[3 * i + 1] = clamp(g);
        this.rgb[3 * i + 2] = clamp(b);
        this.classes[i] = classIndex;
      }
    }
  }

  rect(classIndex: number, x0: number, y0: number, x1: number, y1: number, shader: Shader): void {
    this.paint(classIndex, x0, y0, x1, y1, () => true, shader);
  }

  ellipse(classIndex: number, cx: number, cy: number, rx: number, ry: number, shader: Shader): void {
    this.paint(classIndex, cx - rx, cy - ry, cx + rx, cy + ry, (x, y) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1, shader);
  }
}

function clamp(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Helpers that draw from one image's random stream. */
class Draw {
  constructor(readonly rng: Rng) {}

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rng.next();
  }

  /** Approximately normal (sum of uniforms), mean 0, standard deviation `sd`. */
  noise(sd: number): number {
    return (this.rng.next() + this.rng.next() + this.rng.next() - 1.5) * 2 * sd;
  }

  jitter(base: Rgb, amount: number): Rgb {
    return [base[0] + this.noise(amount), base[1] + this.noise(amount), base[2] + this.noise(amount)];
  }

  /** A flat colour with pixel noise. */
  flat(color: Rgb, sd: number): Shader {
    return () => [color[0] + this.noise(sd), color[1] + this.noise(sd), color[2] + this.noise(sd)];
  }
}

function scale(c: Rgb, f: number): Rgb {
  return [c[0] * f, c[1] * f, c[2] * f];
}

const C = SYNTHETIC_CLASSES;

function drawPerson(s: Scene, d: Draw, footX: number, footY: number, tall: number): void {
  const skin = d.jitter([205, 160, 130], 20);
  const shirt: Rgb = [d.uniform(30, 230), d.uniform(30, 230), d.uniform(30, 230)];
  const trousers = d.jitter([50, 55, 80], 15);
  const w = tall * 0.32;
  s.rect(C.person, footX - w * 0.4, footY - tall * 0.45, footX + w * 0.4, footY, d.flat(trousers, 6));
  s.ellipse(C.person, footX, footY - tall * 0.62, w / 2, tall * 0.22, d.flat(shirt, 8));
  s.ellipse(C.person, footX, footY - tall * 0.9, w * 0.3, tall * 0.1, d.flat(skin, 6));
}

function drawOutdoor(s: Scene, d: Draw): void {
  const { width: W, height: H } = s;
  const horizon = H * d.uniform(0.3, 0.55);
  const skyTop = d.jitter([70, 130, 215], 20);
  const skyBottom = d.jitter([170, 205, 240], 15);
  s.rect(C.sky, 0, 0, W, horizon + 1, (_x, y) => {
    const t = y / horizon;
    return [skyTop[0] + (skyBottom[0] - skyTop[0]) * t + d.noise(3), skyTop[1] + (skyBottom[1] - skyTop[1]) * t + d.noise(3), skyTop[2] + (skyBottom[2] - skyTop[2]) * t + d.noise(3)];
  });
  for (let k = Math.floor(d.uniform(0, 4)); k > 0; k--) {
    const cloud = d.jitter([245, 245, 250], 6);
    s.ellipse(C.sky, d.uniform(0, W), d.uniform(0, horizon * 0.7), d.uniform(W * 0.06, W * 0.18), d.uniform(H * 0.03, H * 0.07), d.flat(cloud, 4));
  }
  // Ground: grass, with a road band in front on some images.
  const grass = d.jitter([70, 140, 50], 20);
  s.rect(C.grass, 0, horizon, W, H, (x, y) => {
    const blade = (x * 7 + Math.floor(y / 3) * 13) % 5 === 0 ? 0.7 : 1;
    return scale(grass, blade * (0.85 + 0.3 * d.rng.next()));
  });
  let groundY = H;
  if (d.rng.next() < 0.6) {
    const top = d.uniform(horizon + (H - horizon) * 0.35, H * 0.85);
    const bottom = Math.min(H, top + d.uniform(H * 0.12, H * 0.3));
    const asphalt = d.jitter([95, 95, 100], 12);
    s.rect(C.road, 0, top, W, bottom, (x, y) => {
      const stripe = Math.abs(y - (top + bottom) / 2) < 1.2 && Math.floor(x / 8) % 2 === 0;
      return stripe ? d.jitter([235, 225, 150], 8) : d.jitter(asphalt, 7);
    });
    groundY = (top + bottom) / 2;
  }
  // Trees behind, then cars and people in front.
  for (let k = Math.floor(d.uniform(1, 4)); k > 0; k--) {
    const cx = d.uniform(0, W);
    const size = d.uniform(H * 0.1, H * 0.3);
    const baseY = horizon + d.uniform(0, (H - horizon) * 0.3);
    const bark = d.jitter([100, 70, 45], 12);
    s.rect(C.tree, cx - size * 0.12, baseY - size * 0.9, cx + size * 0.12, baseY, d.flat(bark, 8));
    const leaves = d.jitter([35, 95, 40], 15);
    for (let j = 0; j < 3; j++) {
      s.ellipse(C.tree, cx + d.noise(size * 0.3), baseY - size * (1.1 + 0.3 * d.rng.next()), size * d.uniform(0.4, 0.6), size * d.uniform(0.35, 0.55), () =>
        scale(leaves, 0.7 + 0.6 * d.rng.next()),
      );
    }
  }
  for (let k = Math.floor(d.uniform(0, 3)); k > 0; k--) {
    const length = d.uniform(W * 0.18, W * 0.45);
    const x0 = d.uniform(-length * 0.2, W - length * 0.8);
    const bottom = Math.min(H, groundY + d.uniform(-H * 0.05, H * 0.08));
    const body: Rgb = [d.uniform(20, 240), d.uniform(20, 240), d.uniform(20, 240)];
    const bodyH = length * 0.28;
    s.rect(C.car, x0, bottom - bodyH - length * 0.08, x0 + length, bottom - length * 0.08, d.flat(body, 6));
    s.rect(C.car, x0 + length * 0.22, bottom - bodyH - length * 0.3, x0 + length * 0.75, bottom - bodyH - length * 0.08, (x) =>
      x % 9 < 2 ? scale(body, 0.8) : d.jitter([150, 190, 215], 8),
    );
    for (const wx of [0.2, 0.8]) s.ellipse(C.car, x0 + length * wx, bottom - length * 0.08, length * 0.09, length * 0.09, d.flat([25, 25, 28], 5));
  }
  if (d.rng.next() < 0.5) drawPerson(s, d, d.uniform(0, W), Math.min(H, groundY + d.uniform(0, H * 0.1)), d.uniform(H * 0.25, H * 0.5));
}

function drawIndoor(s: Scene, d: Draw): void {
  const { width: W, height: H } = s;
  const floorY = H * d.uniform(0.55, 0.8);
  const wallColor: Rgb = d.jitter([200, 190, 170], 30);
  const stripes = d.rng.next() < 0.4 ? Math.floor(d.uniform(5, 12)) : 0;
  s.rect(C.wall, 0, 0, W, floorY + 1, (x) => {
    const shade = stripes && Math.floor(x / stripes) % 2 === 0 ? 0.92 : 1;
    return scale(d.jitter(wallColor, 4), shade);
  });
  const tiles = d.rng.next() < 0.5;
  const floorColor: Rgb = tiles ? d.jitter([150, 150, 155], 25) : d.jitter([140, 95, 55], 20);
  const plank = Math.floor(d.uniform(5, 10));
  s.rect(C.floor, 0, floorY, W, H, (x, y) => {
    const line = tiles ? x % (plank * 2) === 0 || y % plank === 0 : y % plank === 0;
    return scale(d.jitter(floorColor, 5), line ? 0.7 : 1);
  });
  if (d.rng.next() < 0.6) {
    const doorW = d.uniform(W * 0.15, W * 0.25);
    const doorH = floorY * d.uniform(0.65, 0.85);
    const x0 = d.uniform(0, W - doorW);
    const wood = d.jitter([120, 75, 40], 15);
    s.rect(C.door, x0, floorY - doorH, x0 + doorW, floorY + 1, (x, y) => {
      const panel = x > x0 + doorW * 0.2 && x < x0 + doorW * 0.8 && (y - (floorY - doorH)) % (doorH / 2) > doorH * 0.1;
      return scale(d.jitter(wood, 5), panel ? 0.85 : 1);
    });
  }
  for (let k = Math.floor(d.uniform(0, 3)); k > 0; k--) {
    const pw = d.uniform(W * 0.12, W * 0.3);
    const ph = d.uniform(H * 0.1, H * 0.25);
    const x0 = d.uniform(0, W - pw);
    const y0 = d.uniform(floorY * 0.05, Math.max(floorY * 0.1, floorY * 0.7 - ph));
    const frame = d.jitter([60, 45, 30], 10);
    const colors: Rgb[] = [0, 1, 2].map(() => [d.uniform(0, 255), d.uniform(0, 255), d.uniform(0, 255)]);
    s.rect(C.painting, x0, y0, x0 + pw, y0 + ph, (x, y) => {
      const border = x - x0 < 2 || x0 + pw - x < 3 || y - y0 < 2 || y0 + ph - y < 3;
      if (border) return frame;
      return d.jitter(colors[Math.floor(((x - x0) / pw) * 2 + ((y - y0) / ph) * 2) % 3]!, 12);
    });
  }
  if (d.rng.next() < 0.7) {
    const tw = d.uniform(W * 0.25, W * 0.5);
    const x0 = d.uniform(-tw * 0.1, W - tw * 0.9);
    const top = floorY + d.uniform(-H * 0.2, H * 0.02);
    const legH = d.uniform(H * 0.12, H * 0.2);
    const wood = d.jitter([150, 100, 60], 25);
    s.rect(C.table, x0, top, x0 + tw, top + H * 0.04, d.flat(wood, 6));
    for (const lx of [0.05, 0.87]) s.rect(C.table, x0 + tw * lx, top, x0 + tw * (lx + 0.08), top + legH, d.flat(scale(wood, 0.8), 6));
  }
  if (d.rng.next() < 0.5) drawPerson(s, d, d.uniform(0, W), Math.min(H, floorY + d.uniform(H * 0.05, H * 0.2)), d.uniform(H * 0.35, H * 0.6));
}

/** One scene (RGB + ADE20K annotation values) for (seed, split, index). */
export function syntheticScene(seed: number, split: 0 | 1, index: number, width: number, height: number): { rgb: Uint8Array; annotation: Uint8Array } {
  const d = new Draw(Rng.forStream(seed, split, index));
  const scene = new Scene(width, height);
  if (d.rng.next() < 0.5) drawOutdoor(scene, d);
  else drawIndoor(scene, d);
  const annotation = new Uint8Array(width * height);
  for (let i = 0; i < annotation.length; i++) annotation[i] = scene.classes[i]! + 1; // unpainted (never) -> 0
  return { rgb: scene.rgb, annotation };
}

export interface SyntheticDatasetOptions {
  /** Training images; default 300. */
  train?: number;
  /** Held-out validation images; default 50. */
  val?: number;
  /** Image width and height in pixels; default 128. */
  width?: number;
  height?: number;
  /** Default 304 (the reference's TRAIN.seed). */
  seed?: number;
}

export interface SyntheticDataset {
  root: string;
  trainList: string;
  valList: string;
  train: number;
  val: number;
  /** ADE20K class indices that occur. */
  classes: number[];
}

/** Writes the dataset under `dir` (created if needed). */
export async function generateSyntheticDataset(dir: string, options: SyntheticDatasetOptions = {}): Promise<SyntheticDataset> {
  if (typeof dir !== 'string' || dir === '') throw invalid('dir', 'a folder path', dir);
  expectObject('options', options, true);
  const train = expectInteger('options.train', options.train ?? 300, 1, 1_000_000);
  const val = expectInteger('options.val', options.val ?? 50, 1, 1_000_000);
  const width = expectInteger('options.width', options.width ?? 128, 16, 4096);
  const height = expectInteger('options.height', options.height ?? width, 16, 4096);
  const seed = expectInteger('options.seed', options.seed ?? 304, 0, Number.MAX_SAFE_INTEGER);
  const root = resolve(dir);
  const present = new Set<number>();
  const lists: Record<string, string> = {};
  for (const [split, subset, count] of [[0, 'training', train], [1, 'validation', val]] as const) {
    await mkdir(join(root, 'images', subset), { recursive: true });
    await mkdir(join(root, 'annotations', subset), { recursive: true });
    const lines: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = `scene_${String(i + 1).padStart(5, '0')}.png`;
      const { rgb, annotation } = syntheticScene(deriveSeed(seed), split, i, width, height);
      for (const v of annotation) present.add(v - 1);
      const imagePath = `images/${subset}/${name}`;
      const annotationPath = `annotations/${subset}/${name}`;
      const [imagePng, annotationPng] = await Promise.all([
        encodePng(rgb, width, height, { channels: 3 }),
        encodePng(annotation, width, height, { channels: 1 }),
      ]);
      await Promise.all([writeFile(join(root, imagePath), imagePng), writeFile(join(root, annotationPath), annotationPng)]);
      lines.push(JSON.stringify({ fpath_img: imagePath, fpath_segm: annotationPath, width, height }));
    }
    lists[subset] = join(root, `${subset}.odgt`);
    await writeFile(lists[subset]!, `${lines.join('\n')}\n`);
  }
  present.delete(-1);
  return { root, trainList: lists['training']!, valList: lists['validation']!, train, val, classes: [...present].sort((a, b) => a - b) };
}
