// The communicator over c10d with CPU ranks on 127.0.0.1: bucketed all-reduce, all-gather,
// distributed evaluation sums equal to a single process, and faults — a rank that dies or
// hangs makes the others fail with ERR_DISTRIBUTED within the timeout, a busy port and a
// missing rank are clear errors. Rank programs: helpers/dist-rank.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { SegtoolError, systemInfo, Tensor } from '../dist/index.js';
import { Communicator, distributedEnv, findFreePort, shardRange } from '../dist/distributed/index.js';
import { assertAllOk, LOOPBACK, runRanks, startRanks } from './helpers/dist.mjs';

test('all-reduce in small buckets (several per dtype, one tensor larger than a bucket), broadcast, all-gather, barrier: 3 ranks', async () => {
  assertAllOk(await runRanks('allreduce', 3, { bucketBytes: 1024 }));
});

test('distributed evaluation sums equal single-process evaluation exactly (3 ranks, a skipped image)', async () => {
  assertAllOk(await runRanks('eval', 3, { images: 11, numClass: 6, skip: 4 }));
});

test('shardRange splits a list into contiguous shards that cover it once', () => {
  for (const [total, world] of [[11, 3], [2, 3], [0, 2], [2000, 8]]) {
    let next = 0;
    for (let rank = 0; rank < world; rank++) {
      const { start, end } = shardRange(total, rank, world);
      assert.equal(start, next);
      assert.ok(end - start <= Math.ceil(total / world) && end - start >= Math.floor(total / world));
      next = end;
    }
    assert.equal(next, total);
  }
});

/** A fault rank's failed collective: its iteration, when the rank entered it and when it failed (Date.now()). */
function failedCollective(stdout) {
  const caught = /^CAUGHT (\d+) (\d+)$/m.exec(stdout);
  assert.ok(caught, `a collective failed: ${stdout}`);
  const entered = new RegExp(`^ENTER ${caught[1]} (\\d+)$`, 'm').exec(stdout);
  assert.ok(entered, `the failed collective was entered: ${stdout}`);
  return { iteration: Number(caught[1]), enteredAt: Number(entered[1]), caughtAt: Number(caught[2]) };
}

test('a rank that dies (SIGKILL) makes the others exit with ERR_DISTRIBUTED, well within the timeout', async () => {
  const timeoutMs = 5000;
  const results = await Promise.all(await startRanks('fault', 3, { rank: 1, behaviour: 'die', timeoutMs }, { killAfterMs: 60000 }));
  assert.equal(results[1].signal, 'SIGKILL', `rank 1: ${results[1].stdout}\n${results[1].stderr}`);
  assert.match(results[1].stdout, /^FAULT \d+$/m);
  for (const rank of [0, 2]) {
    const r = results[rank];
    assert.equal(r.code, 1, `rank ${rank}: ${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`FAILED ERR_DISTRIBUTED: rank ${rank} of 3: all-reduce failed: .*did not take part within 5000 ms`));
    // Timed in the rank from entering the collective: under timeoutMs, the dead peer was noticed
    // (a timeout cannot fire sooner); process starts and exits are not in it.
    const { enteredAt, caughtAt } = failedCollective(r.stdout);
    assert.ok(caughtAt - enteredAt < timeoutMs, `rank ${rank} failed ${caughtAt - enteredAt} ms after entering the collective`);
  }
});

test('a rank that hangs makes the others fail with ERR_DISTRIBUTED after the timeout, not never', async () => {
  const timeoutMs = 2000;
  const [survivor, hanging] = await startRanks('fault', 2, { rank: 1, behaviour: 'hang', timeoutMs }, { killAfterMs: 60000 });
  const r0 = await survivor;
  hanging.child.kill('SIGKILL'); // rank 0 failed by itself; stopping the hung rank is the launcher's job
  const r1 = await hanging;
  assert.match(r1.stdout, /^FAULT \d+$/m, `rank 1 reached the fault: ${r1.stdout}\n${r1.stderr}`);
  assert.equal(r0.code, 1, `${r0.stdout}\n${r0.stderr}`);
  assert.match(r0.stderr, /FAILED ERR_DISTRIBUTED: rank 0 of 2: all-reduce failed: .*within 2000 ms/);
  // Timed in rank 0, from entering the collective rank 1 never joined to its failure: the
  // timeout itself (a clock tick of slack below it), not rank 1's start or rank 0's exit.
  const { iteration, enteredAt, caughtAt } = failedCollective(r0.stdout);
  assert.equal(iteration, 3, 'the collective after the fault is the one that failed');
  const took = caughtAt - enteredAt;
  assert.ok(took >= timeoutMs - 50 && took < 3 * timeoutMs + 5000, `rank 0 failed ${took} ms after entering the collective`);
});

test('a busy MASTER_PORT is a clear ERR_DISTRIBUTED at once', async () => {
  await systemInfo(); // LibTorch loaded first: its load is not part of "at once"
  const server = createServer();
  await new Promise((resolve) => server.listen(0, LOOPBACK, resolve));
  const { port } = server.address();
  const timeoutMs = 10000;
  const started = Date.now();
  try {
    await assert.rejects(
      Communicator.create({ rank: 0, worldSize: 2, masterAddr: LOOPBACK, masterPort: port, timeoutMs }),
      (e) => e instanceof SegtoolError && e.code === 'ERR_DISTRIBUTED' && new RegExp(`MASTER_PORT ${port} is already in use`).test(e.message),
    );
    const took = Date.now() - started;
    assert.ok(took < timeoutMs / 4, `the busy port is reported without waiting for the timeout (${took} ms)`);
  } finally {
    server.close();
  }
});

test('a rank that never joins is named when the rendezvous times out; a missing rank 0 too', async () => {
  const port = await findFreePort(LOOPBACK);
  await assert.rejects(
    Communicator.create({ rank: 0, worldSize: 3, masterAddr: LOOPBACK, masterPort: port, timeoutMs: 1500 }),
    (e) => e.code === 'ERR_DISTRIBUTED' && /rendezvous timed out after 1500 ms: rank\(s\) 1, 2 did not join/.test(e.message),
  );
  await assert.rejects(
    Communicator.create({ rank: 1, worldSize: 2, masterAddr: LOOPBACK, masterPort: port, timeoutMs: 1500 }),
    (e) => e.code === 'ERR_DISTRIBUTED' && new RegExp(`rank 1 of 2: could not reach the rendezvous server at 127\\.0\\.0\\.1:${port} within 1500 ms`).test(e.message),
  );
});

test('communicator options and the torchrun environment are validated', async () => {
  await assert.rejects(Communicator.create({ rank: 2, worldSize: 2 }), (e) => e.code === 'ERR_INVALID_ARG' && /options\.rank/.test(e.message));
  await assert.rejects(Communicator.create({ worldSize: 2, masterPort: 70000 }), (e) => e.code === 'ERR_INVALID_ARG' && /options\.masterPort/.test(e.message));
  assert.equal(distributedEnv({}), undefined);
  assert.deepEqual(distributedEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '1234', LOCAL_RANK: '1' }), {
    rank: 1,
    worldSize: 2,
    localRank: 1,
    localWorldSize: 2,
    masterAddr: 'node0',
    masterPort: 1234,
  });
  assert.throws(() => distributedEnv({ RANK: '0' }), (e) => e.code === 'ERR_INVALID_ARG' && /WORLD_SIZE/.test(e.message));
  assert.throws(() => distributedEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }), (e) => /RANK/.test(e.message) && /"2"/.test(e.message));
  assert.throws(() => distributedEnv({ RANK: '0', WORLD_SIZE: '2' }), (e) => /MASTER_ADDR or MASTER_PORT/.test(e.message));
  assert.throws(() => distributedEnv({ RANK: '0', WORLD_SIZE: 'two' }), (e) => /WORLD_SIZE/.test(e.message));
});

test('a world of one: collectives are identities; bad tensors and use after destroy are refused', async () => {
  const comm = await Communicator.create({ rank: 0, worldSize: 1, masterAddr: LOOPBACK, masterPort: await findFreePort(LOOPBACK), timeoutMs: 5000 });
  const t = Tensor.from(new Float64Array([1.5, -2]), [2]);
  await comm.allReduce([t]);
  assert.deepEqual(Array.from(t.data()), [1.5, -2]);
  assert.deepEqual((await comm.allGatherNumbers([4, 5])).map((row) => Array.from(row)), [[4, 5]]);
  assert.throws(() => comm.allReduce([Tensor.from(new Int16Array(2), [2])]), (e) => e.code === 'ERR_INVALID_ARG' && /tensors\[0\]/.test(e.message) && /int16/.test(e.message));
  assert.throws(() => comm.broadcast([t], 1), (e) => e.code === 'ERR_INVALID_ARG' && /root/.test(e.message));
  await comm.destroy();
  await comm.destroy();
  assert.equal(comm.destroyed, true);
  await assert.rejects(comm.barrier(), (e) => e instanceof SegtoolError && e.code === 'ERR_DISPOSED');
});
