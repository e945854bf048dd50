#!/usr/bin/env node
// bench/data: images/s of segtool's training loader (decode + resize + normalise + batch) at 1
// and 2 workers on ADE-sized JPEGs, against PIL (Debian python3-pil) doing the same work on the
// same files in the same run. Usage: node bench/data/run.mjs [--images N] [--batches N]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { createTrainLoader } from '../../dist/index.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const imageCount = arg('images', 48);
const batches = arg('batches', 24);
const batchPerGpu = 2;

// ADE-sized scenes (512-683 px short side): the real validation image, cropped, flipped and
// scaled differently each time so no two files are alike.
const dir = mkdtempSync(join(tmpdir(), 'segtool-bench-data-'));
mkdirSync(join(dir, 'images'));
mkdirSync(join(dir, 'annotations'));
const source = 'test/fixtures/data/ADE_val_00001519.jpg';
const label = 'test/fixtures/data/ADE_val_00001519.png';
const records = [];
for (let i = 0; i < imageCount; i++) {
  const width = 640 + (i % 5) * 64;
  const height = i % 3 === 0 ? 900 : 512 + (i % 4) * 32; // some portrait
  const img = join(dir, 'images', `scene_${i}.jpg`);
  const seg = join(dir, 'annotations', `scene_${i}.png`);
  await sharp(source).resize(width, height, { fit: 'fill' }).flop(i % 2 === 1).jpeg({ quality: 90 }).toFile(img);
  await sharp(label).resize(width, height, { fit: 'fill', kernel: 'nearest' }).flop(i % 2 === 1).png().toFile(seg);
  records.push({ image: img, annotation: seg, width, height });
}

async function segtoolRate(workers) {
  const loader = await createTrainLoader({ records, batchPerGpu, workers, seed: 1, decoder: 'sharp' });
  try {
    await loader.next(); // warm-up: workers started, first batch
    const start = performance.now();
    for (let i = 0; i < batches; i++) await loader.next();
    return (batches * batchPerGpu) / ((performance.now() - start) / 1000);
  } finally {
    await loader.close();
  }
}

// The same per-image work with PIL, as the reference's dataset.py does it (one process).
const pilScript = `
import sys, time, random, json
import numpy as np
from PIL import Image
paths = json.loads(sys.argv[1]); n = int(sys.argv[2])
sizes = (300, 375, 450, 525, 600); mean = np.array([0.485, 0.456, 0.406]); std = np.array([0.229, 0.224, 0.225])
random.seed(1)
def one(img_path, seg_path):
    img = Image.open(img_path).convert('RGB'); seg = Image.open(seg_path)
    short = random.choice(sizes); w, h = img.size
    scale = min(short / min(w, h), 1000 / max(w, h)); tw, th = int(w * scale + 0.5), int(h * scale + 0.5)
    img = img.resize((tw, th), Image.BILINEAR); seg = seg.resize((tw // 8, th // 8), Image.NEAREST)
    if random.random() < 0.5: img = img.transpose(Image.FLIP_LEFT_RIGHT); seg = seg.transpose(Image.FLIP_LEFT_RIGHT)
    x = (np.asarray(img, dtype=np.float32) / 255.0 - mean) / std
    return x.transpose(2, 0, 1).copy(), np.asarray(seg, dtype=np.int64) - 1
for p in paths[:2]: one(*p)
t = time.perf_counter()
for i in range(n): one(*paths[i % len(paths)])
print(n / (time.perf_counter() - t))
`;
function pilRate() {
  const run = spawnSync('/usr/bin/python3', ['-c', pilScript, JSON.stringify(records.map((r) => [r.image, r.annotation])), String(batches * batchPerGpu)], { encoding: 'utf8' });
  if (run.status !== 0) return { error: run.stderr.trim().split('\n').pop() };
  return { rate: Number(run.stdout.trim()) };
}

const rows = [];
const pil = pilRate();
for (const workers of [1, 2]) rows.push({ workers, segtool: await segtoolRate(workers) });
rmSync(dir, { recursive: true, force: true });

console.log(`bench/data: ${imageCount} ADE-sized JPEGs, ${batches} batches of ${batchPerGpu}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'})`);
console.log('| loader | images/s | vs PIL (1 process) |');
console.log('|---|---|---|');
for (const row of rows) {
  const ratio = pil.rate ? `${(row.segtool / pil.rate).toFixed(2)}x` : 'n/a';
  console.log(`| segtool, ${row.workers} worker${row.workers > 1 ? 's' : ''} | ${row.segtool.toFixed(1)} | ${ratio} |`);
}
console.log(pil.rate ? `| PIL (reference dataset.py work) | ${pil.rate.toFixed(1)} | 1.00x |` : `| PIL | not run: ${pil.error} (apt-get install python3-pil) |`);
