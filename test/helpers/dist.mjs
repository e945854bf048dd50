// Helpers for the distributed tests: spawn N ranks of test/helpers/dist-rank.mjs on loopback
// (127.0.0.1 only) and collect their exit status and output.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../../dist/distributed/index.js';

export const RANK_SCRIPT = fileURLToPath(new URL('./dist-rank.mjs', import.meta.url));
export const LAUNCHER = fileURLToPath(new URL('../../dist/distributed/launch.js', import.meta.url));
export const LOOPBACK = '127.0.0.1';

/** The environment of a child: the test runner's own variables removed, one thread per rank. */
export function childEnv(extra = {}) {
  const env = { ...process.env, OMP_NUM_THREADS: '1', ...extra };
  delete env.NODE_TEST_CONTEXT;
  for (const name of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

/**
 * Spawns `node args...`; the promise (whose `.child` is the process) resolves with {code,
 * signal, stdout, stderr, exitedAt, pid}. The process is killed after `killAfterMs`. With
 * `stdin: 'pipe'` the child's stdin is `.child.stdin` (a start gate, see startRanks).
 */
export function run(args, { env = childEnv(), killAfterMs = 60000, onStdout, stdin = 'ignore' } = {}) {
  const child = spawn(process.execPath, args, { env, stdio: [stdin, 'pipe', 'pipe'] });
  // A rank that died before its gate opened must not crash the test with EPIPE.
  child.stdin?.on('error', () => {});
  const done = new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('exit', (code, signal) => {
      const exitedAt = Date.now();
      clearTimeout(timer);
      // 'exit' can precede the last 'data' events: wait for the streams to close.
      child.on('close', () => resolve({ code, signal, stdout, stderr, exitedAt, pid: child.pid }));
    });
  });
  done.child = child;
  return done;
}

/** The environment of rank `rank` of a job of `worldSize` on loopback port `port`. */
export function rankEnv(rank, worldSize, port, args = {}) {
  return childEnv({
    RANK: String(rank),
    WORLD_SIZE: String(worldSize),
    MASTER_ADDR: LOOPBACK,
    MASTER_PORT: String(port),
    DIST_TEST_ARGS: JSON.stringify(args),
  });
}

/**
 * Runs `role` of dist-rank.mjs as ranks 0..worldSize-1 of one job on a free loopback port. */
export async function runRanks(role, worldSize, args = {}, { killAfterMs = 60000 } = {}) {
  const port = await findFreePort(LOOPBACK);
  return Promise.all(Array.from({ length: worldSize }, (_, rank) => run([RANK_SCRIPT, role], { killAfterMs, env: rankEnv(rank, worldSize, port, args) })));
}

/**
 * Starts `role` of dist-rank.mjs as ranks 0..worldSize-1 of one job, like runRanks, behind a
 * start gate: each rank loads LibTorch, prints READY and waits for its stdin to end, which
 * happens once every rank is READY. The rendezvous is bounded by the role's own timeoutMs
 * (there is no separate one), so it must not have to fit the ranks' process starts and
 * LibTorch loads on a loaded machine. Returns the ranks' run() promises (each with .child).
 */
export async function startRanks(role, worldSize, args = {}, { killAfterMs = 60000 } = {}) {
  const port = await findFreePort(LOOPBACK);
  const ready = new Set();
  const ranks = Array.from({ length: worldSize }, (_, rank) =>
    run([RANK_SCRIPT, role], {
      killAfterMs,
      stdin: 'pipe',
      env: rankEnv(rank, worldSize, port, args),
      onStdout: (stdout) => {
        if (ready.has(rank) || !/^READY$/m.test(stdout)) return;
        ready.add(rank);
        if (ready.size === worldSize) for (const r of ranks) r.child.stdin.end();
      },
    }),
  );
  return ranks;
}

/** Throws with every failing rank's output unless all exited 0. */
export function assertAllOk(results) {
  const failed = results.map((r, rank) => ({ ...r, rank })).filter((r) => r.code !== 0);
  if (failed.length > 0) {
    throw new Error(failed.map((r) => `rank ${r.rank} exited ${r.code ?? r.signal}:\n${r.stdout}\n${r.stderr}`).join('\n---\n'));
  }
}
