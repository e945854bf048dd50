#!/usr/bin/env node
// GPU benchmark: segtool against PyTorch 2.x eager with the same layers (bench/gpu/baseline.py
// over bench/baseline/segnet.py), on one CUDA device, in the same run.
//
//   node bench/gpu/run.mjs [options]
//   --models a-b,c-d    default: resnet50dilated-ppm_deepsup, resnet50-upernet, mobilenetv2dilated-c1_deepsup
//   --precisions LIST   fp32,bf16 (default both)
//   --tasks LIST        train,infer,syncbn (default all). train: images/s of the reference's
//                       training step; infer: images/s of the network (feature-resolution
//                       log-probabilities); syncbn: training images/s with segtool's SyncBN
//                       kernels (NCCL, world size 1) against plain BatchNorm, and the same for
//                       torch.nn.SyncBatchNorm in the baseline
//   --size HxW          input size (default 450x600: ADE20K's short side 450 at 4:3)
//   --batch N           images per device (default 2, as the reference)
//   --warmup N --iters N  untimed / timed iterations (default 5 / 20; the median is reported)
//   --gpu N             CUDA device (default 0)
//   --channels-last     both sides in channels-last memory format
//   --python PATH       the baseline's interpreter (default python3; needs torch 2.x with CUDA)
//   --no-baseline       segtool only
//   --out FILE          JSON results (default bench/results/gpu-<date>.json)
// segtool's timings include copying each input batch from host memory (its API takes CPU
// tensors); the baseline's batch stays on the GPU. Both sides use cuDNN benchmark mode.
// Refuses (exit 2) without a GPU or with a CPU-only segtool build.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

function refuse(reason) {
  console.error(
    `bench/gpu needs a CUDA GPU and segtool built against a CUDA LibTorch: ${reason}.\n` +
      'See docs/gpu.md (build against a pip-installed PyTorch 2.x, then npm run test:gpu and node bench/gpu/run.mjs).',
  );
  process.exit(2);
}

// ------------------------------------------------------------------ worker (one measurement)

async function worker(job) {
  const { SegmentationModel, Tensor, createCommunicator } = await import(join(root, 'dist', 'index.js'));
  const [encoder, decoder] = [job.model.slice(0, job.model.indexOf('-')), job.model.slice(job.model.indexOf('-') + 1)];
  const device = `cuda:${job.device}`;
  const model = await SegmentationModel.create({
    encoder, decoder, numClass: 150, device, precision: job.precision, channelsLast: job.channelsLast, cudnnBenchmark: true, bnMomentum: 0.1,
  });
  let communicator = null;
  if (job.syncBn) {
    communicator = await createCommunicator({ backend: 'nccl', rank: 0, worldSize: 1, masterPort: 29600 + (process.pid % 300) });
    // 'reference' runs segtool's SyncBN op (its CUDA kernels) even at world size 1; 'exact'
    // at world size 1 is plain BatchNorm by design.
    await model.setCommunicator(communicator, { syncBatchNorm: 'reference' });
  }
  const { batch: n, height: h, width: w } = job;
  let s = 1;
  const x = Tensor.from(Float32Array.from({ length: n * 3 * h * w }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1), [n, 3, h, w]);
  const stride = model.outputStride;
  const lh = Math.ceil(h / stride), lw = Math.ceil(w / stride);
  const label = Tensor.from(BigInt64Array.from({ length: n * lh * lw }, (_, i) => BigInt((i * 7919) % 151) - 1n), [n, lh, lw], 'int64');
  let step;
  if (job.task === 'infer') {
    model.eval();
    step = async () => {
      const out = await model.forward(x);
      out.logprob.dispose();
      out.logprobDeepsup?.dispose();
    };
  } else {
    model.train();
    step = () => model.trainStep(x, label, { lrEncoder: 0.02, lrDecoder: 0.02 });
  }
  for (let i = 0; i < job.warmup; i++) await step();
  const ms = [];
  for (let i = 0; i < job.iters; i++) {
    const t0 = performance.now();
    await step(); // results come back on the CPU: the GPU work is done when it resolves
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  if (communicator) {
    await model.setCommunicator(null);
    await communicator.destroy();
  }
  x.dispose();
  label.dispose();
  model.dispose();
  console.log(JSON.stringify({ ms, median_ms: median, images_per_s: (n * 1000) / median }));
}

if (process.argv[2] === '--worker') {
  await worker(JSON.parse(process.argv[3]));
  process.exit(0);
}

// ------------------------------------------------------------------ runner

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
}
const models = option('--models', 'resnet50dilated-ppm_deepsup,resnet50-upernet,mobilenetv2dilated-c1_deepsup').split(',');
const precisions = option('--precisions', 'fp32,bf16').split(',');
const tasks = option('--tasks', 'train,infer,syncbn').split(',');
const [height, width] = option('--size', '450x600').split('x').map(Number);
const batch = Number(option('--batch', '2'));
const warmup = Number(option('--warmup', '5'));
const iters = Number(option('--iters', '20'));
const gpu = Number(option('--gpu', '0'));
const channelsLast = args.includes('--channels-last');
const python = option('--python', 'python3');
const withBaseline = !args.includes('--no-baseline');
const out = option('--out', join(root, 'bench', 'results', `gpu-${new Date().toISOString().slice(0, 10)}.json`));
if (!Number.isInteger(height) || !Number.isInteger(width) || !(batch > 0) || !(iters > 0) || !(warmup >= 0)) {
  console.error('bench/gpu: bad --size, --batch, --iters or --warmup');
  process.exit(1);
}

let cuda;
try {
  const { cudaStatus } = await import(join(root, 'dist', 'index.js'));
  cuda = cudaStatus();
} catch (error) {
  refuse(`the segtool addon could not be loaded (${String(error?.message ?? error).split('\n')[0]})`);
}
if (!cuda.available) refuse(`LibTorch ${cuda.torchVersion} in this build has no usable CUDA device (CUDA devices: ${cuda.deviceCount})`);
if (!cuda.kernels) refuse('this addon was built without segtool CUDA kernels (use the CMake build against the CUDA LibTorch)');
if (gpu >= cuda.deviceCount) refuse(`--gpu ${gpu} but only ${cuda.deviceCount} device(s)`);

function run(command, argv, env = {}) {
  const r = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env } });
  if (r.status !== 0) return { error: (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').slice(-5).join(' | ') };
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `unreadable output: ${r.stdout.slice(-300)}` };
  }
}

function measure(side, job) {
  if (side === 'segtool') return run(process.execPath, [fileURLToPath(import.meta.url), '--worker', JSON.stringify(job)]);
  return run(python, [join(here, 'baseline.py'), JSON.stringify({
    model: job.model, task: job.task, precision: job.precision, batch: job.batch, height: job.height, width: job.width,
    warmup: job.warmup, iters: job.iters, channels_last: job.channelsLast, cudnn_benchmark: true, sync_bn: job.syncBn, device: job.device,
  })]);
}

const environment = {
  date: new Date().toISOString(),
  segtoolTorch: cuda.torchVersion,
  gpus: (() => {
    const smi = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8' });
    return smi.status === 0 ? smi.stdout.trim() : 'nvidia-smi unavailable';
  })(),
  baseline: withBaseline ? run(python, ['-c', 'import json, torch; print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}))']) : null,
  size: [height, width], batch, warmup, iters, channelsLast,
};
console.log(`bench/gpu on ${environment.gpus ?? 'cuda'}; segtool LibTorch ${cuda.torchVersion}; baseline ${JSON.stringify(environment.baseline)}`);

const rows = [];
for (const model of models) {
  for (const precision of precisions) {
    for (const task of tasks) {
      const base = { model, precision, batch, height, width, warmup, iters, channelsLast, device: gpu };
      const row = { model, precision, task };
      if (task === 'syncbn') {
        if (precision !== 'fp32') continue; // the overhead is measured once, in fp32
        row.segtoolPlain = measure('segtool', { ...base, task: 'train', syncBn: false });
        row.segtoolSyncBn = measure('segtool', { ...base, task: 'train', syncBn: true });
        if (withBaseline) {
          row.torchPlain = measure('torch', { ...base, task: 'train', syncBn: false });
          row.torchSyncBn = measure('torch', { ...base, task: 'train', syncBn: true });
        }
      } else {
        row.segtool = measure('segtool', { ...base, task, syncBn: false });
        if (withBaseline) row.torch = measure('torch', { ...base, task, syncBn: false });
      }
      rows.push(row);
      const fmt = (r) => (r ? (r.error ? `error: ${r.error}` : `${r.images_per_s.toFixed(2)} img/s`) : '-');
      if (task === 'syncbn') {
        const overhead = (a, b) => (a?.images_per_s && b?.images_per_s ? `${((a.images_per_s / b.images_per_s - 1) * 100).toFixed(1)}%` : '-');
        console.log(`${model} syncbn: segtool plain ${fmt(row.segtoolPlain)}, SyncBN ${fmt(row.segtoolSyncBn)} (slowdown ${overhead(row.segtoolPlain, row.segtoolSyncBn)}); torch plain ${fmt(row.torchPlain)}, SyncBatchNorm ${fmt(row.torchSyncBn)} (slowdown ${overhead(row.torchPlain, row.torchSyncBn)})`);
      } else {
        console.log(`${model} ${precision} ${task}: segtool ${fmt(row.segtool)}, torch ${fmt(row.torch)}`);
      }
    }
  }
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ environment, rows }, null, 2)}\n`);
console.log(`results: ${relative(process.cwd(), out)}`);
