// Synchronized BatchNorm on CUDA over NCCL: world size 1 with the reference's SyncBN formula
// (the custom CUDA kernels inside a model's training step), and with 2+ GPUs one process per
// GPU, exact SyncBN plus gradient averaging: every rank ends with identical weights.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SegmentationModel } from '../../dist/index.js';
import { createCommunicator } from '../../dist/distributed/index.js';
import { cuda, gpuTest } from './gpu-env.mjs';

const rankScript = fileURLToPath(new URL('./helpers/nccl-rank.mjs', import.meta.url));

gpuTest('SyncBN (reference mode) over NCCL, world size 1, a few training steps on cuda', { kernels: true }, async () => {
  const communicator = await createCommunicator({ backend: 'nccl', rank: 0, worldSize: 1, masterPort: 29650 + (process.pid % 200) });
  const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'ppm_deepsup', numClass: 8, init: 'procedural', bnMomentum: 0.1, device: 'cuda' });
  await model.setCommunicator(communicator, { syncBatchNorm: 'reference' });
  const n = 2 * 3 * 64 * 80;
  const x = { data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), shape: [2, 3, 64, 80] };
  const label = { data: BigInt64Array.from({ length: 2 * 8 * 10 }, (_, i) => BigInt(i % 8)), shape: [2, 8, 10] };
  model.train();
  const losses = [];
  for (let i = 0; i < 3; i++) losses.push((await model.trainStep(x, label, { lrEncoder: 0.01, lrDecoder: 0.01 })).loss);
  assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
  await model.setCommunicator(null);
  model.dispose();
  await communicator.destroy();
});

gpuTest(`exact SyncBN over NCCL with ${Math.max(2, cuda.deviceCount)} GPUs: identical weights on every rank`, { kernels: true, gpus: 2 }, async () => {
  const world = cuda.deviceCount;
  const port = 29850 + (process.pid % 100);
  const runs = Array.from({ length: world }, (_, rank) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [rankScript], {
        env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '', err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      child.on('close', (code) => resolve({ code, out, err }));
    }),
  );
  const results = await Promise.all(runs);
  for (const r of results) assert.equal(r.code, 0, r.err.slice(-3000));
  const sums = results.map((r) => JSON.parse(r.out.trim().split('\n').pop()));
  for (const s of sums.slice(1)) assert.deepEqual(s.checksum, sums[0].checksum);
});
