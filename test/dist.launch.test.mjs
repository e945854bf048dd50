// The launcher (lib/distributed/launch.ts): flag parsing, `--nproc 2` running a script on both ranks
// with the torchrun environment, two "nodes" on loopback, a failing rank stopping the job with
// a message naming it, SIGTERM stopping every rank.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { findFreePort, needsLaunch, parseDeviceList, parseLaunchArgs } from '../dist/distributed/index.js';
import { MAX_LOCAL_RANKS, maxCpuRanks } from '../dist/distributed/launch.js';
import { childEnv, LAUNCHER, LOOPBACK, RANK_SCRIPT, run } from './helpers/dist.mjs';

test('device lists: ranges, lists, both; bad ones name --gpus', () => {
  assert.deepEqual(parseDeviceList('0-3'), [0, 1, 2, 3]);
  assert.deepEqual(parseDeviceList('0,2,4,6'), [0, 2, 4, 6]);
  assert.deepEqual(parseDeviceList('0-1, 4'), [0, 1, 4]);
  for (const bad of ['', '3-1', '0,0', 'a', '1-']) {
    assert.throws(() => parseDeviceList(bad), (e) => e.code === 'ERR_INVALID_ARG' && /--gpus/.test(e.message), bad);
  }
});

test('launcher flags come out of argv; the rest stays in order', () => {
  const { options, rest } = parseLaunchArgs(['train', '--nproc', '2', '--cfg', 'a.yaml', '--master-port=1234', '--gpus', '0,2', 'X', '1']);
  assert.deepEqual(options, { nproc: 2, masterPort: 1234, gpus: '0,2' });
  assert.deepEqual(rest, ['train', '--cfg', 'a.yaml', 'X', '1']);
  const script = parseLaunchArgs(['--nnodes', '2', '--node-rank', '1', '--master-addr', 'n0', 's.mjs', '--nproc', '5'], true);
  assert.deepEqual(script.options, { nnodes: 2, nodeRank: 1, masterAddr: 'n0' });
  assert.deepEqual(script.rest, ['s.mjs', '--nproc', '5']);
  assert.throws(() => parseLaunchArgs(['--nproc', 'two']), (e) => /--nproc/.test(e.message));
});

test('needsLaunch: more than one process wanted, and never nested inside an existing rank', () => {
  assert.equal(needsLaunch({}, {}), false);
  assert.equal(needsLaunch({ nproc: 1 }, {}), false);
  assert.equal(needsLaunch({ nproc: 2 }, {}), true);
  assert.equal(needsLaunch({ gpus: '0' }, {}), true);
  assert.equal(needsLaunch({ nnodes: 2, masterAddr: 'n0' }, {}), true);
  assert.equal(needsLaunch({}, { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }), false);
  assert.throws(() => needsLaunch({ nproc: 2 }, { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }), (e) => /already runs as rank 0 of 2/.test(e.message));
  assert.throws(() => needsLaunch({ nnodes: 2 }, {}), (e) => /--master-addr/.test(e.message));
  assert.throws(() => needsLaunch({ nproc: 3, gpus: '0-1' }, {}), (e) => /--nproc 3 and --gpus 0,1 disagree/.test(e.message));
});

test('--nproc 2 runs the script on both ranks with the torchrun environment', async () => {
  const r = await run([LAUNCHER, '--nproc', '2', RANK_SCRIPT, 'launched'], { killAfterMs: 60000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[rank 0\] launched rank=0 world=2 local=0 sum=3/);
  assert.match(r.stdout, /\[rank 1\] launched rank=1 world=2 local=1 sum=3/);
});

test('two "nodes" on loopback (--nnodes 2 --node-rank 0/1) form one job', async () => {
  const port = await findFreePort(LOOPBACK);
  const node = (rank) =>
    run([LAUNCHER, '--nnodes', '2', '--node-rank', String(rank), '--nproc', '1', '--master-addr', LOOPBACK, '--master-port', String(port), RANK_SCRIPT, 'launched'], {
      killAfterMs: 60000,
    });
  const [n0, n1] = await Promise.all([node(0), node(1)]);
  assert.equal(n0.code, 0, n0.stderr);
  assert.equal(n1.code, 0, n1.stderr);
  assert.match(n0.stdout, /launched rank=0 world=2 local=0 sum=3/);
  assert.match(n1.stdout, /launched rank=1 world=2 local=0 sum=3/);
});

test('a rank that fails stops the others; the launcher exits with its code and names it', async () => {
  const started = Date.now();
  const r = await run([LAUNCHER, '--nproc', '2', RANK_SCRIPT, 'exit-on-rank', '1', '3'], { killAfterMs: 30000 });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /segtool launch: rank 1 \(local rank 1, pid \d+\) exited with code 3; stopping the other ranks/);
  assert.ok(Date.now() - started < 10000, 'rank 0 was stopped, not waited for');
  for (const [, pid] of r.stdout.matchAll(/pid=(\d+)/g)) assert.throws(() => process.kill(Number(pid), 0), { code: 'ESRCH' });
});

test('SIGTERM to the launcher stops every rank', async () => {
  const launcher = run([LAUNCHER, '--nproc', '2', RANK_SCRIPT, 'sleep'], {
    killAfterMs: 30000,
    env: childEnv(),
    onStdout: (out, child) => {
      if (/\[rank 0\] sleeping/.test(out) && /\[rank 1\] sleeping/.test(out) && !child.signalSent) {
        child.signalSent = true;
        child.kill('SIGTERM');
      }
    },
  });
  const r = await launcher;
  assert.equal(r.code, 143, r.stderr);
  assert.match(r.stderr, /SIGTERM received; stopping 2 rank\(s\)/);
  const pids = [...r.stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, 2);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});

test('--nproc beyond what the machine can run is refused with the limit and why', () => {
  const { limit, reason } = maxCpuRanks();
  assert.ok(limit >= 1 && limit <= MAX_LOCAL_RANKS);
  assert.throws(
    () => needsLaunch({ nproc: 1000 }, {}),
    (e) => e.code === 'ERR_INVALID_ARG' && e.message === `--nproc 1000 is more CPU ranks than this machine can run: the limit is ${limit} (${reason})`,
  );
  assert.equal(maxCpuRanks(2).limit, 8);
  assert.match(maxCpuRanks(2).reason, /4 per CPU core on this machine's 2 core\(s\)/);
  assert.equal(maxCpuRanks(1000).limit, MAX_LOCAL_RANKS);
  assert.equal(needsLaunch({ nproc: 2 }, {}), true);
});

/** Addresses in a rank's "listeners rank=N [...]" line. */
function listenersOf(stdout, rank) {
  const m = new RegExp(`listeners rank=${rank} (\\[.*\\])`).exec(stdout);
  assert.ok(m, stdout);
  return JSON.parse(m[1]);
}
const isLoopback = (address) => /^(127\.|::1:|::ffff:127\.)/.test(address);

test('a single-machine job listens on no interface but loopback (the rendezvous opens no port)', async () => {
  const r = await run([LAUNCHER, '--nproc', '2', RANK_SCRIPT, 'listeners'], { killAfterMs: 60000 });
  assert.equal(r.code, 0, r.stderr);
  for (const rank of [0, 1]) {
    const addresses = listenersOf(r.stdout, rank);
    assert.deepEqual(addresses.filter((a) => !isLoopback(a)), [], `rank ${rank} listens on ${addresses.join(', ')}`);
  }
});

test('a busy master port: a single machine does not need it; node 0 of several says the port is in use, blaming no rank', async () => {
  const busy = createServer();
  await new Promise((resolve) => busy.listen(0, resolve)); // every interface, as a TCPStore would
  const port = busy.address().port;
  try {
    const single = await run([LAUNCHER, '--nproc', '2', '--master-port', String(port), RANK_SCRIPT, 'launched'], { killAfterMs: 60000 });
    assert.equal(single.code, 0, single.stderr);
    assert.match(single.stdout, /launched rank=1 world=2 local=1 sum=3/);
    const node0 = await run(
      [LAUNCHER, '--nnodes', '2', '--node-rank', '0', '--nproc', '1', '--master-addr', LOOPBACK, '--master-port', String(port), RANK_SCRIPT, 'launched'],
      { killAfterMs: 60000 },
    );
    assert.notEqual(node0.code, 0);
    assert.match(node0.stderr, new RegExp(`The master port ${port} is already in use on this machine`));
    assert.match(node0.stderr, /--master-port/);
    assert.doesNotMatch(node0.stderr, /rank \d+ \(local rank/);
  } finally {
    await new Promise((resolve) => busy.close(resolve));
  }
});
