// One rank of the NCCL SyncBN test: cuda:LOCAL_RANK, exact SyncBN, 3 steps on a rank-specific
// batch (different sizes per rank), then prints a checksum of every weight (JSON, last line).
import { SegmentationModel } from '../../../dist/index.js';
import { createCommunicator } from '../../../dist/distributed/index.js';

const rank = Number(process.env.RANK);
const communicator = await createCommunicator({ backend: 'nccl' });
const model = await SegmentationModel.create({
  encoder: 'resnet18dilated', decoder: 'ppm_deepsup', numClass: 8, init: 'procedural', bnMomentum: 0.1, device: `cuda:${process.env.LOCAL_RANK}`,
});
await model.setCommunicator(communicator, { syncBatchNorm: 'exact' });
const h = 48 + 16 * rank, w = 64;
const x = { data: Float32Array.from({ length: 2 * 3 * h * w }, (_, i) => Math.sin(i * 0.11 + rank)), shape: [2, 3, h, w] };
const label = { data: BigInt64Array.from({ length: 2 * (h / 8) * (w / 8) }, (_, i) => BigInt((i + rank) % 8)), shape: [2, h / 8, w / 8] };
model.train();
for (let i = 0; i < 3; i++) await model.trainStep(x, label, { lrEncoder: 0.01, lrDecoder: 0.01 });
const state = await model.stateDict();
const checksum = [];
for (const [key, t] of state) {
  if (key.endsWith('.weight')) checksum.push(Array.from(t.data()).reduce((a, b) => a + b, 0).toPrecision(7));
  t.dispose();
}
await model.setCommunicator(null);
model.dispose();
await communicator.destroy();
console.log(JSON.stringify({ rank, checksum }));
process.exit(0);
