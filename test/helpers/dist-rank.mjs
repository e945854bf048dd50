// One rank of a distributed test: `node dist-rank.mjs <role> [args]`, with RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT in the environment and the role's options as JSON in
// DIST_TEST_ARGS. Exits 0 when the role's checks pass; prints what failed otherwise.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { MetricsAccumulator, systemInfo, Tensor } from '../../dist/index.js';
import { batchNorm, Communicator, distributedEnv, ShardedMetrics, shardRange, syncBatchNorm } from '../../dist/distributed/index.js';
import { prng } from './prng.mjs';

const role = process.argv[2];
const args = JSON.parse(process.env.DIST_TEST_ARGS ?? '{}');
const env = distributedEnv();


const ARRAY = { float32: Float32Array, float64: Float64Array };

function close(actual, expected, what, { rtol, atol }) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`rank ${env?.rank}: ${what}[${i}] = ${a}, expected ${e} (|diff| ${Math.abs(a - e)})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SyncBN: each rank runs its own batch; the truth is BatchNorm over all ranks' batches
// concatenated along the pixel axis ([1, C, P]: shapes may differ in N, H and W).

/** One rank's batch [N, C, H, W] in NCHW order: channel c ~ offset_c + spread_c * noise. */
function makeBatch(shape, seed, channelStats) {
  const [n, c, h, w] = shape;
  const next = prng(seed);
  const x = new Float64Array(n * c * h * w);
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const ch = Math.floor(i / (h * w)) % c;
    const [offset, spread] = channelStats[ch];
    x[i] = offset + spread * (next() * 2 - 1);
    g[i] = next() * 2 - 1;
  }
  return { x, g };
}

/** Rank batches (NCHW) -> [C, P] per-channel pixel rows, rank after rank. */
function concatenate(batches, shapes, channels) {
  const pixels = shapes.reduce((sum, [n, , h, w]) => sum + n * h * w, 0);
  const out = new Float64Array(channels * pixels);
  let offset = 0;
  shapes.forEach(([n, , h, w], r) => {
    const hw = h * w;
    for (let b = 0; b < n; b++)
      for (let c = 0; c < channels; c++)
        for (let i = 0; i < hw; i++) out[c * pixels + offset + b * hw + i] = batches[r][(b * channels + c) * hw + i];
    offset += n * hw;
  });
  return { data: out, pixels };
}

/** The slice of a [C, P] array that belongs to rank `rank`, back in its NCHW layout. */
function sliceOfRank(flat, shapes, rank, channels, pixels) {
  let offset = 0;
  for (let r = 0; r < rank; r++) offset += shapes[r][0] * shapes[r][2] * shapes[r][3];
  const [n, , h, w] = shapes[rank];
  const hw = h * w;
  const out = new Float64Array(n * channels * hw);
  for (let b = 0; b < n; b++)
    for (let c = 0; c < channels; c++)
      for (let i = 0; i < hw; i++) out[(b * channels + c) * hw + i] = flat[c * pixels + offset + b * hw + i];
  return out;
}

/**
 * The reference's SynchronizedBatchNorm2d over x [C, P], written out directly: forward as
 * batchnorm.py (_compute_mean_std, bias-corrected buffers), backward by reverse-mode through
 * that same graph (sum, ssum -> mean, sumvar -> clamp(bias_var, eps) ** -0.5 -> output).
 */
function referenceSyncBN(x, g, channels, pixels, weight, bias, eps, momentum, buffers) {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(channels);
  const db = new Float64Array(channels);
  const keep = 1 - momentum;
  for (let c = 0; c < channels; c++) {
    const row = c * pixels;
    let sum = 0;
    let ssum = 0;
    for (let p = 0; p < pixels; p++) {
      sum += x[row + p];
      ssum += x[row + p] ** 2;
    }
    const mean = sum / pixels;
    const sumvar = ssum - sum * mean;
    const unbiasVar = sumvar / (pixels - 1);
    const biasVar = sumvar / pixels;
    const clamped = Math.max(biasVar, eps);
    const invStd = clamped ** -0.5;
    buffers.tmpMean[c] = buffers.tmpMean[c] * keep + mean;
    buffers.tmpVar[c] = buffers.tmpVar[c] * keep + unbiasVar;
    const k = invStd * weight[c];
    let dk = 0;
    let dmean = 0;
    for (let p = 0; p < pixels; p++) {
      y[row + p] = (x[row + p] - mean) * k + bias[c];
      dk += g[row + p] * (x[row + p] - mean);
      dmean -= g[row + p] * k;
      db[c] += g[row + p];
    }
    dw[c] = dk * invStd;
    const dBiasVar = biasVar >= eps ? dk * weight[c] * -0.5 * clamped ** -1.5 : 0;
    const dSumvar = dBiasVar / pixels;
    dmean -= dSumvar * sum;
    const dSum = -dSumvar * mean + dmean / pixels;
    for (let p = 0; p < pixels; p++) dx[row + p] = g[row + p] * k + dSum + 2 * x[row + p] * dSumvar;
  }
  buffers.iter = buffers.iter * keep + 1;
  for (let c = 0; c < channels; c++) {
    buffers.runningMean[c] = buffers.tmpMean[c] / buffers.iter;
    buffers.runningVar[c] = buffers.tmpVar[c] / buffers.iter;
  }
  return { y, dx, dw, db };
}

async function syncbn() {
  const { shapes, dtype, mode, momentum, eps, steps, channelStats } = args;
  const channels = shapes[0][1];
  const tol = dtype === 'float64' ? { rtol: 1e-9, atol: 1e-9 } : { rtol: 2e-4, atol: 2e-4 };
  const Typed = ARRAY[dtype];
  const tensor = (values, shape) => Tensor.from(Typed.from(values), shape);
  const comm = await Communicator.create({ timeoutMs: 30000 });
  const params = prng(99);
  const weight = Float64Array.from({ length: channels }, () => 0.5 + params());
  const bias = Float64Array.from({ length: channels }, () => params() - 0.5);
  const w = tensor(weight, [channels]);
  const b = tensor(bias, [channels]);
  // This rank's buffers (updated by SyncBN) and the truth's.
  const running = { runningMean: tensor(new Float64Array(channels), [channels]), runningVar: tensor(new Float64Array(channels).fill(1), [channels]) };
  const truthRunning = { runningMean: tensor(new Float64Array(channels), [channels]), runningVar: tensor(new Float64Array(channels).fill(1), [channels]) };
  const refBuffers = { tmpRunningMean: tensor(new Float64Array(channels), [channels]), tmpRunningVar: tensor(new Float64Array(channels).fill(1), [channels]), runningIter: tensor([1], [1]) };
  const refTruth = { tmpMean: new Float64Array(channels), tmpVar: new Float64Array(channels).fill(1), iter: 1, runningMean: new Float64Array(channels), runningVar: new Float64Array(channels).fill(1) };

  for (let step = 0; step < steps; step++) {
    const batches = shapes.map((shape, r) => makeBatch(shape, 1000 * step + r + 1, channelStats));
    const mine = batches[env.rank];
    const shape = shapes[env.rank];
    const result = await syncBatchNorm(comm, {
      input: tensor(mine.x, shape),
      gradOutput: tensor(mine.g, shape),
      weight: w,
      bias: b,
      ...running,
      momentum,
      eps,
      mode,
      ...(mode === 'reference' ? refBuffers : {}),
    });
    const xs = concatenate(batches.map((batch) => Typed.from(batch.x)), shapes, channels);
    const gs = concatenate(batches.map((batch) => Typed.from(batch.g)), shapes, channels);
    let truth;
    if (mode === 'reference') {
      truth = referenceSyncBN(xs.data, gs.data, channels, xs.pixels, weight, bias, eps, momentum, refTruth);
    } else {
      const t = await batchNorm({
        input: tensor(xs.data, [1, channels, xs.pixels]),
        gradOutput: tensor(gs.data, [1, channels, xs.pixels]),
        weight: w,
        bias: b,
        ...truthRunning,
        momentum,
        eps,
      });
      truth = { y: t.output.data(), dx: t.gradInput.data(), dw: t.gradWeight.data(), db: t.gradBias.data() };
    }
    const where = `step ${step}`;
    close(result.output.data(), sliceOfRank(truth.y, shapes, env.rank, channels, xs.pixels), `${where} output`, tol);
    close(result.gradInput.data(), sliceOfRank(truth.dx, shapes, env.rank, channels, xs.pixels), `${where} gradInput`, tol);
    // Weight and bias gradients are this rank's share: their sum over ranks is the truth.
    close(await comm.allReduceFloat64(result.gradWeight.data()), truth.dw, `${where} gradWeight`, tol);
    close(await comm.allReduceFloat64(result.gradBias.data()), truth.db, `${where} gradBias`, tol);
    if (mode === 'reference') {
      close(running.runningMean.data(), refTruth.runningMean, `${where} running_mean`, tol);
      close(running.runningVar.data(), refTruth.runningVar, `${where} running_var`, tol);
      close(refBuffers.tmpRunningMean.data(), refTruth.tmpMean, `${where} _tmp_running_mean`, tol);
      close(refBuffers.tmpRunningVar.data(), refTruth.tmpVar, `${where} _tmp_running_var`, tol);
      close(refBuffers.runningIter.data(), [refTruth.iter], `${where} _running_iter`, tol);
    } else {
      close(running.runningMean.data(), truthRunning.runningMean.data(), `${where} running_mean`, tol);
      close(running.runningVar.data(), truthRunning.runningVar.data(), `${where} running_var`, tol);
    }
  }
  await comm.destroy();
  console.log(`rank ${env.rank}: syncbn ${mode} ${dtype} ok`);
}

// ---------------------------------------------------------------------------------------------

async function allreduce() {
  const comm = await Communicator.create({ timeoutMs: 30000, bucketBytes: args.bucketBytes });
  const r = env.rank;
  // [dtype, shape, value of element i on rank q]: sums are exact in every dtype, and the sizes
  // make several buckets (and one tensor larger than a bucket) with a small bucketBytes.
  const specs = [
    ['float32', [3, 5], (i, q) => q + 1 + i * 0.5],
    ['float64', [1000], (i, q) => (q + 1) * i],
    ['float32', [700], (i, q) => (i % 7) * (q + 1)],
    ['int64', [4], (i, q) => BigInt(q * 10 + i)],
    ['float32', [0], () => 0],
    ['float32', [2, 2, 2], (i, q) => i - q],
    ['int32', [9], (i, q) => i * (q + 2)],
  ];
  const CTORS = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array };
  const count = (shape) => shape.reduce((a, c) => a * c, 1);
  const tensors = specs.map(([dtype, shape, value]) => Tensor.from(CTORS[dtype].from({ length: count(shape) }, (_, i) => value(i, r)), shape));
  await comm.allReduce(tensors);
  specs.forEach(([dtype, shape, value], k) => {
    const expected = Array.from({ length: count(shape) }, (_, i) => {
      let sum = dtype === 'int64' ? 0n : 0;
      for (let q = 0; q < env.worldSize; q++) sum += value(i, q);
      return sum;
    });
    if (expected.length === 0) return; // (a view of an empty tensor has no memory to show)
    assert.deepEqual(Array.from(tensors[k].data()), expected, `tensor ${k} (${dtype} [${shape}])`);
  });
  // Broadcast from the last rank: everyone ends with its values (bucketed like allReduce).
  const root = env.worldSize - 1;
  const cast = [Tensor.from(Float32Array.from({ length: 600 }, (_, i) => i * (r + 1)), [20, 30]), Tensor.from(new Float64Array([r, -r]), [2])];
  await comm.broadcast(cast, root);
  assert.deepEqual(Array.from(cast[0].data()), Array.from({ length: 600 }, (_, i) => i * (root + 1)));
  assert.deepEqual(Array.from(cast[1].data()), [root, -root]);
  const rows = await comm.allGatherNumbers([r, r * 2 + 0.5]);
  assert.deepEqual(rows.map((row) => Array.from(row)), Array.from({ length: env.worldSize }, (_, q) => [q, q * 2 + 0.5]));
  const gathered = await comm.allGather(Tensor.from(new Int32Array([r, 7]), [2]));
  assert.deepEqual(gathered.shape, [env.worldSize, 2]);
  assert.deepEqual(Array.from(gathered.data()), Array.from({ length: env.worldSize }, (_, q) => [q, 7]).flat());
  await comm.barrier();
  await comm.destroy();
  console.log(`rank ${r}: allreduce ok`);
}

// ---------------------------------------------------------------------------------------------

/** Image i of a synthetic validation list: class maps with unlabeled (-1) pixels. */
function evalImage(i, numClass) {
  const next = prng(500 + i);
  const size = 20 + Math.floor(next() * 40);
  const label = Int16Array.from({ length: size }, () => (next() < 0.1 ? -1 : Math.floor(next() * numClass)));
  const pred = Int16Array.from(label, (y) => (next() < 0.6 && y >= 0 ? y : Math.floor(next() * numClass)));
  return { pred, label };
}

async function evalSums() {
  const { images, numClass, skip } = args;
  const comm = await Communicator.create({ timeoutMs: 30000 });
  const { start, end } = shardRange(images, env.rank, env.worldSize);
  const sharded = new ShardedMetrics(numClass, images);
  for (let i = start; i < end; i++) {
    if (i === skip) continue; // a bad sample: scored nowhere
    const { pred, label } = evalImage(i, numClass);
    sharded.add(i, pred, label);
  }
  const merged = await sharded.reduce(comm);
  const single = new MetricsAccumulator(numClass);
  for (let i = 0; i < images; i++) {
    if (i === skip) continue;
    const { pred, label } = evalImage(i, numClass);
    single.add(pred, label);
  }
  assert.deepEqual(merged.toJSON(), single.toJSON());
  assert.deepEqual(merged.summary(), single.summary());
  await comm.destroy();
  console.log(`rank ${env.rank}: eval ok (${end - start} images here)`);
}

// ---------------------------------------------------------------------------------------------

/** Resolves when the parent ends this process's stdin: the gate of startRanks in dist.mjs. */
function untilGateOpens() {
  return new Promise((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.resume();
  });
}

/** Resolves once host:port accepts a connection (the probe connects and closes, sending nothing). */
async function untilListening(host, port) {
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = connect(port, host, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const FAULT_ITERATION = 3;

/**
 * All-reduces in a loop; the rank named in args.rank dies (SIGKILL) or hangs at iteration 3.
 * Started by startRanks: LibTorch is loaded before READY and every rank joins when the gate
 * opens; the others wait for rank 0 to listen first (a client that connects too early retries
 * only after 1 s), so the rendezvous takes milliseconds of the shared timeoutMs. The others
 * print Date.now() as they enter each collective (ENTER) and as one fails (CAUGHT): the test
 * times the communicator, not process starts and exits.
 */
async function fault() {
  await systemInfo(); // loads LibTorch
  console.log('READY');
  await untilGateOpens();
  if (env.rank !== 0) await untilListening(env.masterAddr, env.masterPort);
  const comm = await Communicator.create({ timeoutMs: args.timeoutMs });
  const t = Tensor.from(new Float32Array(1000).fill(1), [1000]);
  for (let i = 0; ; i++) {
    if (i === FAULT_ITERATION && env.rank === args.rank) {
      console.log(`FAULT ${Date.now()}`);
      if (args.behaviour === 'die') process.kill(process.pid, 'SIGKILL');
      await new Promise(() => setInterval(() => {}, 1000)); // hang: alive, never calls again
    }
    console.log(`ENTER ${i} ${Date.now()}`);
    try {
      await comm.allReduce([t]);
    } catch (error) {
      console.log(`CAUGHT ${i} ${Date.now()}`);
      console.error(`FAILED ${error.code}: ${error.message}`);
      process.exit(1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scripts the launcher runs (environment from the launcher).

async function launched() {
  const comm = await Communicator.create({ timeoutMs: 30000 });
  const [sum] = await comm.allReduceFloat64([env.rank + 1]);
  console.log(`launched rank=${env.rank} world=${env.worldSize} local=${env.localRank} sum=${sum}`);
  await comm.destroy();
}

/** This process's listening TCP sockets as "address:port" (from /proc), IPv4 and IPv6. */
function listeningAddresses() {
  const inodes = new Set();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const out = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A' || !inodes.has(f[9])) continue; // LISTEN sockets of this process
      const [hex, port] = f[1].split(':');
      let address;
      if (hex.length === 8) address = [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
      else if (hex === '00000000000000000000000001000000') address = '::1';
      else if (/^0{16}FFFF0000/i.test(hex)) address = `::ffff:${[3, 2, 1, 0].map((i) => parseInt(hex.slice(24 + i * 2, 26 + i * 2), 16)).join('.')}`;
      else address = /^0+$/.test(hex) ? '::' : `ipv6:${hex}`;
      out.push(`${address}:${parseInt(port, 16)}`);
    }
  }
  return out;
}

/** Joins the job, then prints every TCP address this rank listens on. */
async function listeners() {
  const comm = await Communicator.create({ timeoutMs: 30000 });
  await comm.allReduceFloat64([1]);
  console.log(`listeners rank=${env.rank} ${JSON.stringify(listeningAddresses())}`);
  await comm.allReduceFloat64([1]); // every rank has looked before any leaves
  await comm.destroy();
}

async function exitOnRank() {
  const [failRank, code] = process.argv.slice(3).map(Number);
  console.log(`pid=${process.pid}`);
  if (env.rank === failRank) {
    setTimeout(() => process.exit(code), 300);
  } else {
    setInterval(() => {}, 1000);
  }
}

function sleepForever() {
  console.log(`sleeping pid=${process.pid}`);
  setInterval(() => {}, 1000);
}

const roles = { syncbn, allreduce, eval: evalSums, fault, launched, listeners, 'exit-on-rank': exitOnRank, sleep: sleepForever };
if (!roles[role]) {
  console.error(`unknown role ${role}`);
  process.exit(2);
}
try {
  await roles[role]();
} catch (error) {
  console.error(`rank ${env?.rank}: ${error.stack ?? error}`);
  process.exit(1);
}
