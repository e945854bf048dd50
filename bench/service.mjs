#!/usr/bin/env node
// bench/service: what a Node service gets from one Segmenter — throughput (images/s), latency
// (p50/p95 of segment()) and the event loop's delay (perf_hooks monitorEventLoopDelay, p99/max)
// — for 1, 2 and 4 concurrent clients sending photo-sized JPEGs (1600 x 1200 and 4000 x 3000,
// alternating), with `concurrency` 1 (one request in the stages at a time) against 2 (the
// pipeline: the next image decodes and resizes in a data worker while one infers), and two
// replicas (two Segmenters of concurrency 1, clients spread over them) to show whether model
// replicas run in parallel. Ratios are against concurrency 1 with the same clients, in the same
// run. A benchmark, not a test: nothing here asserts a speed.
//
// Usage: node bench/service.mjs [--requests N per client] [--scales 450] [--threads N]
//        [--out FILE.json]   (also prints the markdown table)
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import { Segmenter, getNumThreads, native, setNumThreads } from '../dist/index.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const perClient = Number(arg('requests', 4));
const scales = String(arg('scales', '450')).split(',').map(Number);
if (arg('threads') !== undefined) setNumThreads(Number(arg('threads')));
const out = arg('out');
const CONFIG = 'mobilenetv2dilated-c1_deepsup';

// Photo-sized JPEGs made from the ADE20K fixture (scaled, flipped, cropped so no two are alike).
const source = 'test/fixtures/data/ADE_val_00001519.jpg';
const sizes = [
  [1600, 1200],
  [4000, 3000],
];
const photos = [];
for (let i = 0; i < 4; i++) {
  const [width, height] = sizes[i % 2];
  const bytes = await sharp(source)
    .resize(width + 64, height + 48, { fit: 'fill' })
    .extract({ left: 16 * i, top: 12 * i, width, height })
    .flop(i >= 2)
    .jpeg({ quality: 90 })
    .toBuffer();
  photos.push({ bytes, width, height });
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** `clients` loops of `perClient` segment() calls over `segmenters` (client c uses segmenters[c % n]). */
async function scenario(name, segmenters, clients, concurrency) {
  const latencies = [];
  const monitor = monitorEventLoopDelay({ resolution: 10 });
  monitor.enable();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const segmenter = segmenters[c % segmenters.length];
      for (let r = 0; r < perClient; r++) {
        const photo = photos[(c + r) % photos.length];
        const t0 = performance.now();
        await segmenter.segment(photo.bytes, { scales, outputs: ['labels', 'summary'] });
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  monitor.disable();
  latencies.sort((a, b) => a - b);
  return {
    name,
    clients,
    concurrency,
    replicas: segmenters.length,
    requests: latencies.length,
    imagesPerSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    loopP99Ms: monitor.percentile(99) / 1e6,
    loopMaxMs: monitor.max / 1e6,
    load: loadavg()[0],
  };
}

async function load(concurrency) {
  const segmenter = await Segmenter.load({ config: CONFIG, weights: [], concurrency, timeoutMs: 0, maxQueue: 64 });
  await segmenter.segment(photos[0].bytes, { scales }); // warm-up: worker started, first forward
  await segmenter.segment(photos[1].bytes, { scales });
  return segmenter;
}

const loadBefore = loadavg();
// Every setup loaded up front and the scenarios interleaved (setups in turn for each client
// count), so that load from other work on a shared machine falls on all of them alike.
const setups = [
  { name: 'concurrency 1', segmenters: [await load(1)], concurrency: 1 },
  { name: 'concurrency 2 (pipeline)', segmenters: [await load(2)], concurrency: 2 },
  { name: '2 replicas x concurrency 1', segmenters: [await load(1), await load(1)], concurrency: 1 },
];
const rows = [];
try {
  for (const clients of [1, 2, 4]) {
    for (const setup of setups) {
      if (setup.segmenters.length > clients) continue;
      rows.push(await scenario(setup.name, setup.segmenters, clients, setup.concurrency));
      console.error(`  ${setup.name}, ${clients} client(s): ${rows.at(-1).imagesPerSecond.toFixed(3)} images/s (load ${loadavg()[0].toFixed(1)})`);
    }
  }
} finally {
  await Promise.all(setups.flatMap((s) => s.segmenters.map((x) => x.close())));
}
const baseline = (clients) => rows.find((r) => r.name === 'concurrency 1' && r.clients === clients);
const build = native().buildInfo();
const facts =
  `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ` +
  `LibTorch ${build.torchVersion}, ${getNumThreads()} LibTorch threads; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ` +
  `${loadavg().map((l) => l.toFixed(2)).join(' ')} after`;
const lines = [
  `bench/service: ${CONFIG} (random weights), scales [${scales.join(', ')}], outputs labels + summary, ` +
    `${perClient} requests per client over JPEGs of ${sizes.map(([w, h]) => `${w} x ${h}`).join(' and ')} (alternating); ${facts}`,
  '',
  '| setup | clients | images/s | vs concurrency 1 | p50 ms | p95 ms | loop delay p99 ms | loop delay max ms | load |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => {
    const base = baseline(r.clients);
    const ratio = base ? `${(r.imagesPerSecond / base.imagesPerSecond).toFixed(2)}x` : 'n/a';
    return `| ${r.name} | ${r.clients} | ${r.imagesPerSecond.toFixed(3)} | ${ratio} | ${r.p50Ms.toFixed(0)} | ${r.p95Ms.toFixed(0)} | ${r.loopP99Ms.toFixed(1)} | ${r.loopMaxMs.toFixed(1)} | ${r.load.toFixed(1)} |`;
  }),
];
console.log(lines.join('\n'));
if (out) {
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), config: CONFIG, scales, perClient, facts, rows, text: lines.join('\n') }, null, 1)}\n`);
}
