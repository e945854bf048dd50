#!/usr/bin/env node
// onnxruntime-node's side of the `forward` measurement: the model exported by segtool's
// exportOnnx (procedural weights, logprob only) run by an onnxruntime InferenceSession on the
// CPU with the same intra-op thread count as segtool (inter-op 1, all graph optimisations).
// Same protocol as bench/worker-segtool.mjs: READY, then warmup | rep -> DONE <ms>, end -> RESULT.
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { memory, proceduralFloat32, resetPeak } from './common.mjs';

const job = JSON.parse(process.argv[2]);
if (job.task !== 'forward') throw new Error(`onnxruntime worker: unknown task ${job.task}`);
const ort = (await import('onnxruntime-node')).default;
const segtool = await import('../dist/index.js');
segtool.setNumThreads(job.threads);

const now = () => performance.now();
const send = (line) => process.stdout.write(`${line}\n`);
const collect = () => globalThis.gc?.();

const [encoder, decoder] = job.model.split('-');
let t0 = now();
const dir = join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(dir, { recursive: true });
const path = join(dir, `${job.model}-${process.pid}.onnx`);
const model = await segtool.SegmentationModel.create({ encoder, decoder, init: 'procedural' });
const exported = await segtool.exportOnnx(model, path);
model.dispose();
const exportMs = now() - t0;
t0 = now();
const session = await ort.InferenceSession.create(path, {
  intraOpNumThreads: job.threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const sessionMs = now() - t0;
const bytes = statSync(path).size;
rmSync(path, { force: true });

const [[w, h]] = job.scales;
const input = new ort.Tensor('float32', proceduralFloat32(`bench.input.${h}x${w}`, 3 * h * w), [1, 3, h, w]);
const run = async () => {
  const out = await session.run({ input });
  out.logprob.dispose?.();
};

const result = {
  side: 'onnxruntime',
  model: job.model,
  task: job.task,
  scaleSet: job.scaleSet,
  threads: job.threads,
  onnxruntime: ort.env.versions?.node ?? 'unknown',
  exportMs,
  sessionMs,
  onnxBytes: bytes,
  opset: exported.opset,
  createMs: exportMs + sessionMs,
  rssAfterLoad: memory().rss,
  peakReset: resetPeak(),
  times: [],
  warmupTimes: [],
};
send(`READY ${JSON.stringify({ createMs: result.createMs, rssAfterLoad: result.rssAfterLoad })}`);
for await (const command of createInterface({ input: process.stdin })) {
  if (command === 'warmup' || command === 'rep') {
    collect();
    t0 = now();
    await run();
    const ms = now() - t0;
    (command === 'rep' ? result.times : result.warmupTimes).push(ms);
    send(`DONE ${ms}`);
  } else if (command === 'end') {
    break;
  } else {
    throw new Error(`unknown command ${command}`);
  }
}
result.peakRss = memory().peak;
await session.release();
send(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
