// One rank of a distributed training test (`node dist-train-rank.mjs <role>`, RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT and DIST_TEST_ARGS in the environment; see test/dist.train.test.mjs).
//
// Role `steps`: every rank builds a model from its own seed, attaches the communicator (rank
// 0's weights are broadcast; SyncBN in args.mode) and runs args.steps training steps on its half
// of a fixed batch. After every step the ranks compare a SHA-256 of every weight and buffer
// (bitwise equality). Rank 0 then trains a model alone on the concatenated batch (the SyncBN op
// in the same mode, without other ranks), the same run with the batch in three other orders (the float32
// rounding envelope) and one step with plain BatchNorm, and prints the largest differences as a
// JSON line `RESULT {...}` for the test to judge.
import { createHash } from 'node:crypto';
import { manualSeed, SegmentationModel, Tensor } from '../../dist/index.js';
import { Communicator, distributedEnv } from '../../dist/distributed/index.js';
import { prng } from './prng.mjs';

const role = process.argv[2];
const args = JSON.parse(process.env.DIST_TEST_ARGS ?? '{}');
const env = distributedEnv();


const MODEL = { encoder: args.encoder ?? 'resnet18dilated', decoder: args.decoder ?? 'c1_deepsup', numClass: 5, bnMomentum: 0.1 };
const STEP = { lrEncoder: 0.02, lrDecoder: 0.02, momentum: 0.9, weightDecay: 1e-4, deepSupScale: 0.4 };

/** Step `step`'s whole batch: images [B, 3, S, S] and labels [B, S/8, S/8] (no ignored pixels). */
function batchOf(step, batch, size, stride) {
  const next = prng(1000 + step);
  const image = Float32Array.from({ length: batch * 3 * size * size }, () => next() * 2 - 1);
  const h = Math.ceil(size / stride);
  const label = BigInt64Array.from({ length: batch * h * h }, () => BigInt(Math.floor(next() * MODEL.numClass)));
  return { image, label, h };
}

/**
 * Rows [from, to) of a batch, in the order `order` (a permutation of 0..to-from-1) when given: the
 * same batch summed in another order, hence other float32 rounding.
 */
function rows(batch, from, to, size, h, order) {
  const px = 3 * size * size;
  const count = to - from;
  const picks = order ?? Array.from({ length: count }, (_, i) => i);
  const image = new Float32Array(count * px);
  const label = new BigInt64Array(count * h * h);
  picks.forEach((r, i) => {
    image.set(batch.image.subarray((from + r) * px, (from + r + 1) * px), i * px);
    label.set(batch.label.subarray((from + r) * h * h, (from + r + 1) * h * h), i * h * h);
  });
  return { image: Tensor.from(image, [count, 3, size, size]), label: Tensor.from(label, [count, h, h]) };
}

async function stateOf(model) {
  const state = await model.stateDict();
  const out = new Map();
  for (const [key, t] of state) {
    out.set(key, Array.from(t.data(), Number));
    t.dispose();
  }
  return out;
}

async function digest(model) {
  const hash = createHash('sha256');
  const state = await model.stateDict();
  for (const [key, t] of state) {
    hash.update(key);
    const data = t.data();
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    t.dispose();
  }
  return hash.digest();
}

async function train(model, from, to, steps, size, onStep, order) {
  const losses = [];
  for (let step = 0; step < steps; step++) {
    const batch = batchOf(step, args.batch, size, model.outputStride);
    const part = rows(batch, from, to, size, batch.h, order);
    const result = await model.trainStep(part.image, part.label, STEP);
    part.image.dispose();
    part.label.dispose();
    losses.push(result.loss);
    await onStep?.(step, result);
  }
  return losses;
}

async function steps() {
  const { steps: count, size, batch, mode } = args;
  const comm = await Communicator.create({ timeoutMs: 60000 });
  const perRank = batch / env.worldSize;
  // Different seeds: rank 0's weights must reach the others through setCommunicator.
  manualSeed(7 + env.rank);
  const model = await SegmentationModel.create(MODEL);
  model.train();
  const started = performance.now();
  await model.setCommunicator(comm, { syncBatchNorm: mode });
  const digests = [];
  const losses = await train(model, env.rank * perRank, (env.rank + 1) * perRank, count, size, async (step) => {
    const mine = await digest(model);
    const all = await comm.allGather(Tensor.from(new Uint8Array(mine), [mine.length]));
    const bytes = all.data();
    all.dispose();
    const same = Array.from({ length: env.worldSize }, (_, r) => Buffer.from(bytes.subarray(r * 32, (r + 1) * 32)).equals(mine));
    digests.push(same.every(Boolean));
  });
  const distributedSeconds = (performance.now() - started) / 1000;
  const distributed = await stateOf(model);
  model.dispose();
  await comm.destroy();
  if (env.rank !== 0) {
    console.log(`RESULT ${JSON.stringify({ rank: env.rank, identical: digests, losses })}`);
    return;
  }

  // The single process on the whole batch, from the same initial weights (rank 0's seed), with
  // the SyncBN op alone in the same mode: the same arithmetic, so float32 rounding differences
  // (which flip ReLUs at pre-activations within an ulp of 0 and make training chaotic) stay
  // at the level of the summation order.
  manualSeed(7);
  const single = await SegmentationModel.create(MODEL);
  single.train();
  await single.setCommunicator(null, { syncBatchNorm: mode });
  const singleLosses = await train(single, 0, batch, count, size);
  const expected = await stateOf(single);
  single.dispose();
  // The noise envelope: the same single-process run with the batch in other orders (the same
  // math; only the summation order, hence the rounding, differs). Several orders, because one
  // may by chance flip no ReLU where the distributed run flips one.
  const orders = [
    Array.from({ length: batch }, (_, i) => batch - 1 - i),
    Array.from({ length: batch }, (_, i) => (i + 1) % batch),
    Array.from({ length: batch }, (_, i) => (i + batch / 2) % batch),
  ];
  const envelopeRuns = [];
  for (const order of orders) {
    manualSeed(7);
    const permuted = await SegmentationModel.create(MODEL);
    permuted.train();
    await permuted.setCommunicator(null, { syncBatchNorm: mode });
    const permutedLosses = await train(permuted, 0, batch, count, size, undefined, order);
    envelopeRuns.push({ order, losses: permutedLosses, state: await stateOf(permuted) });
    permuted.dispose();
  }
  // Plain BatchNorm (ATen) on the whole batch: the first step's loss (before any update).
  manualSeed(7);
  const plain = await SegmentationModel.create(MODEL);
  plain.train();
  const plainLosses = await train(plain, 0, batch, 1, size);
  plain.dispose();

  // Per tensor: max |other - single| / max(max |single|, 0.01), over parameters and buffers.
  const compare = (other) => {
    const worst = { key: '', relative: 0 };
    const worstBuffer = { key: '', relative: 0 };
    for (const [key, values] of expected) {
      const got = other.get(key);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < values.length; i++) {
        scale = Math.max(scale, Math.abs(values[i]));
        diff = Math.max(diff, Math.abs(got[i] - values[i]));
      }
      // Floored at 0.01: biases that start at 0 are a few updates large, and relative
      // differences there measure rounding, not the method.
      const relative = diff / Math.max(scale, 0.01);
      const slot = /running|num_batches/.test(key) ? worstBuffer : worst;
      if (relative > slot.relative) Object.assign(slot, { key, relative });
    }
    return { worst, worstBuffer };
  };
  const { worst, worstBuffer } = compare(distributed);
  // The envelope: per tensor class, the largest deviation any reordered run shows.
  const envelope = { worst: { key: '', relative: 0 }, worstBuffer: { key: '', relative: 0 } };
  for (const run of envelopeRuns) {
    const c = compare(run.state);
    if (c.worst.relative > envelope.worst.relative) envelope.worst = c.worst;
    if (c.worstBuffer.relative > envelope.worstBuffer.relative) envelope.worstBuffer = c.worstBuffer;
  }
  const envelopeLosses = envelopeRuns.map((run) => run.losses);
  let changed = 0;
  for (const [key, values] of expected) if (/_tmp_running_mean$/.test(key) && values.some((v) => v !== 0)) changed++;
  console.log(
    `RESULT ${JSON.stringify({
      rank: 0,
      identical: digests,
      losses,
      singleLosses,
      plainLosses,
      worst,
      worstBuffer,
      envelope,
      envelopeLosses,
      tmpBuffersUpdated: changed,
      distributedSeconds,
    })}`,
  );
}

const roles = { steps };
try {
  await roles[role]();
} catch (error) {
  console.error(`rank ${env?.rank}: ${error.stack ?? error}`);
  process.exit(1);
}
