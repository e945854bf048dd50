/**
 * The launcher: one process per rank, like torchrun. `launch(argv, options)` spawns this
 * machine's ranks, each running `node argv...` with RANK, WORLD_SIZE, LOCAL_RANK,
 * LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and MASTER_PORT set (and SEGTOOL_DEVICE=cuda:<id>
 * with --gpus). Multi-node: run it on every machine with the same --nnodes, --master-addr and
 * --master-port and that machine's --node-rank.
 *
 * Rendezvous: on one machine (--nnodes 1) the ranks meet through a file in a private temporary
 * folder (SEGTOOL_RENDEZVOUS_FILE): nothing listens on the network. With several machines rank 0
 * serves c10d's TCPStore on --master-port on every interface of node 0 (LibTorch 1.13 cannot bind
 * it to one); the launcher on node 0 checks that the port is free first.
 *
 * Faults: when a rank exits non-zero or by a signal, the launcher names it, stops the other
 * ranks (SIGTERM, SIGKILL after a grace period) and fails; SIGINT/SIGTERM to the launcher
 * stops every rank. As a command: `node dist/dist/launch.js --nproc 2 script.mjs [args]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { SegtoolError } from '../errors.js';
import { expectInteger, expectString, invalid } from '../validate.js';
import { DEFAULT_MASTER_PORT, distributedEnv, RENDEZVOUS_FILE_ENV } from './env.js';

export interface LaunchOptions {
  /** Ranks on this machine (CPU ranks). Default: one per --gpus device, else 1. */
  nproc?: number;
  /** CUDA devices, one rank each: "0-3", "0,2,4,6", "0-1,4" or [0, 2]. */
  gpus?: string | readonly number[];
  /** Machines in the job (default 1). */
  nnodes?: number;
  /** This machine's index in [0, nnodes) (default 0). */
  nodeRank?: number;
  /** Rank 0's machine. Default 127.0.0.1; required when nnodes > 1. */
  masterAddr?: string;
  /** Rendezvous port on masterAddr. Default: a free port (one machine), 29500 (several). */
  masterPort?: number;
  /** The program each rank runs with `argv`. Default: this Node executable. */
  command?: string;
  /** The ranks' base environment. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long stopped ranks get after SIGTERM before SIGKILL (default 5000 ms). */
  graceMs?: number;
  /** Prefix each line of a rank's output with "[rank N] " (default: when several local ranks). */
  prefixOutput?: boolean;
  /** Where the launcher's own messages go (default: stderr, prefixed "segtool launch: "). */
  log?: (message: string) => void;
}

export interface RankExit {
  rank: number;
  localRank: number;
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchResult {
  /** 0 when every rank succeeded; the failing rank's exit code (else 1); 130/143 after SIGINT/SIGTERM. */
  exitCode: number;
  ranks: RankExit[];
  /** What went wrong, naming the rank, when exitCode is not 0. */
  failure?: string;
}

/** "0-3" -> [0, 1, 2, 3]; "0,2,4,6" -> [0, 2, 4, 6]; "0-1,4" -> [0, 1, 4]. Duplicates are errors. */
export function parseDeviceList(spec: string): number[] {
  if (typeof spec !== 'string' || !/^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$/.test(spec)) {
    throw invalid('--gpus', 'a device list like "0-3" or "0,2,4,6"', spec);
  }
  const devices: number[] = [];
  for (const part of spec.split(',')) {
    const [from, to = from] = part.split('-').map((s) => Number(s.trim())) as [number, number?];
    if (to! < from) throw invalid('--gpus', `an increasing range (got ${from}-${to})`, spec);
    for (let d = from; d <= to!; d++) devices.push(d);
  }
  const duplicate = devices.find((d, i) => devices.indexOf(d) !== i);
  if (duplicate !== undefined) throw invalid('--gpus', `each device once (${duplicate} is listed twice)`, spec);
  return devices;
}

/** A TCP port that was free on `host` a moment ago (the OS picks it). */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Ranks one machine may run: never more than this (a process each, and a full mesh of connections). */
export const MAX_LOCAL_RANKS = 64;
/** CPU ranks per core: more only time-slice the same cores (each rank has its own model and threads). */
export const CPU_RANKS_PER_CORE = 4;

/** The most CPU ranks (--nproc without --gpus) this machine can run, and why. */
export function maxCpuRanks(cores = availableParallelism()): { limit: number; reason: string } {
  const byCores = Math.max(1, cores * CPU_RANKS_PER_CORE);
  return byCores < MAX_LOCAL_RANKS
    ? { limit: byCores, reason: `${CPU_RANKS_PER_CORE} per CPU core on this machine's ${cores} core(s): each rank is a process with its own model copy and threads` }
    : { limit: MAX_LOCAL_RANKS, reason: `at most ${MAX_LOCAL_RANKS} ranks per machine (one process each, all connected to each other)` };
}

/** Whether `port` can be listened on (on every interface, as rank 0's TCPStore will); false when in use. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code !== 'EADDRINUSE' && error.code !== 'EACCES'));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

interface Plan {
  devices: number[] | undefined;
  localRanks: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number | undefined;
}

function plan(options: LaunchOptions): Plan {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
  const devices =
    options.gpus === undefined
      ? undefined
      : typeof options.gpus === 'string'
        ? parseDeviceList(options.gpus)
        : Array.isArray(options.gpus)
          ? parseDeviceList(options.gpus.join(','))
          : (() => {
              throw invalid('--gpus', 'a device list like "0-3" or an array of device indices', options.gpus);
            })();
  let localRanks = options.nproc === undefined ? (devices?.length ?? 1) : expectInteger('--nproc', options.nproc, 1, 1024);
  if (devices && options.nproc !== undefined && localRanks !== devices.length) {
    throw new SegtoolError('ERR_INVALID_ARG', `--nproc ${localRanks} and --gpus ${devices.join(',')} disagree: one rank runs per GPU`);
  }
  localRanks = devices?.length ?? localRanks;
  if (!devices) {
    const { limit, reason } = maxCpuRanks();
    if (localRanks > limit) {
      throw new SegtoolError('ERR_INVALID_ARG', `--nproc ${localRanks} is more CPU ranks than this machine can run: the limit is ${limit} (${reason})`);
    }
  }
  const nnodes = expectInteger('--nnodes', options.nnodes ?? 1, 1, 65536);
  const nodeRank = expectInteger('--node-rank', options.nodeRank ?? 0, 0, nnodes - 1);
  if (nnodes > 1 && options.masterAddr === undefined) {
    throw new SegtoolError('ERR_INVALID_ARG', `--nnodes ${nnodes} needs --master-addr: the address of node 0, where rank 0 runs`);
  }
  return {
    devices,
    localRanks,
    nnodes,
    nodeRank,
    masterAddr: expectString('--master-addr', options.masterAddr ?? '127.0.0.1'),
    masterPort: options.masterPort === undefined ? (nnodes > 1 ? DEFAULT_MASTER_PORT : undefined) : expectInteger('--master-port', options.masterPort, 1, 65535),
  };
}

/**
 * Whether `options` ask for more than this one process. Throws when they do but the
 * environment already makes this process a rank (RANK/WORLD_SIZE set by torchrun or by
 * segtool's launcher): the two would nest.
 */
export function needsLaunch(options: LaunchOptions, env: NodeJS.ProcessEnv = process.env): boolean {
  const p = plan(options);
  const wanted = p.localRanks > 1 || p.nnodes > 1 || p.devices !== undefined;
  const current = distributedEnv(env);
  if (wanted && current) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `This process already runs as rank ${current.rank} of ${current.worldSize} (RANK and WORLD_SIZE are set, by torchrun or segtool): ` +
        'drop --nproc/--gpus/--nnodes, or unset those variables to launch from here',
    );
  }
  return wanted;
}

function describeExit(exit: RankExit): string {
  const who = `rank ${exit.rank} (local rank ${exit.localRank}, pid ${exit.pid ?? '?'})`;
  return exit.signal ? `${who} was killed by signal ${exit.signal}` : `${who} exited with code ${exit.code}`;
}

// Copies a rank's output line by line with a "[rank N] " prefix.
function pipeWithPrefix(stream: NodeJS.ReadableStream | null, out: NodeJS.WritableStream, prefix: string): void {
  if (!stream) return;
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => out.write(`${prefix}${line}\n`));
}

/**
 * Spawns this machine's ranks running `argv` (e.g. [scriptPath, ...args]) and resolves when
 * all have exited. See the module comment for the environment and fault handling.
 */
export async function launch(argv: readonly string[], options: LaunchOptions = {}): Promise<LaunchResult> {
  if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== 'string')) {
    throw invalid('argv', 'a non-empty array of strings (the script and its arguments)', argv);
  }
  const p = plan(options);
  const graceMs = expectInteger('options.graceMs', options.graceMs ?? 5000, 0);
  const log = options.log ?? ((message: string) => process.stderr.write(`segtool launch: ${message}\n`));
  const baseEnv = options.env ?? process.env;
  if (p.nnodes > 1 && p.nodeRank === 0 && p.masterPort !== undefined && !(await portFree(p.masterPort))) {
    // Rank 0's TCPStore could not listen: say so, instead of the first rank to fail on it.
    throw new SegtoolError(
      'ERR_DISTRIBUTED',
      `The master port ${p.masterPort} is already in use on this machine (node 0, where rank 0 serves the rendezvous). ` +
        'Choose a free port with --master-port (the same on every node) or stop the process that holds it.',
    );
  }
  const masterPort = p.masterPort ?? (await findFreePort(p.masterAddr === 'localhost' ? '127.0.0.1' : p.masterAddr));
  // One machine: the ranks rendezvous through a file in a folder only this user can open, so no
  // port is opened at all (LibTorch's TCPStore would listen on every interface).
  const rendezvousDir = p.nnodes === 1 ? await mkdtemp(join(tmpdir(), 'segtool-rendezvous-')) : undefined;
  const worldSize = p.nnodes * p.localRanks;
  const prefix = options.prefixOutput ?? p.localRanks > 1;
  // Several CPU ranks on one machine share its cores unless told otherwise (as torchrun).
  const threads =
    baseEnv['OMP_NUM_THREADS'] || baseEnv['SEGTOOL_THREADS'] ? undefined : String(Math.max(1, Math.floor(availableParallelism() / p.localRanks)));

  const exits: RankExit[] = [];
  const children: ChildProcess[] = [];
  let failure: string | undefined;
  let failedExit: RankExit | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let killTimer: NodeJS.Timeout | undefined;

  const stopAll = (): void => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    killTimer ??= setTimeout(() => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, graceMs);
    killTimer.unref();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopSignal) return;
    stopSignal = signal;
    log(`${signal} received; stopping ${p.localRanks} rank(s)`);
    stopAll();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await new Promise<void>((resolve) => {
      let running = p.localRanks;
      for (let localRank = 0; localRank < p.localRanks; localRank++) {
        const rank = p.nodeRank * p.localRanks + localRank;
        const env: NodeJS.ProcessEnv = {
          ...baseEnv,
          RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          LOCAL_RANK: String(localRank),
          LOCAL_WORLD_SIZE: String(p.localRanks),
          GROUP_RANK: String(p.nodeRank),
          MASTER_ADDR: p.masterAddr,
          MASTER_PORT: String(masterPort),
          ...(rendezvousDir ? { [RENDEZVOUS_FILE_ENV]: join(rendezvousDir, 'store') } : { [RENDEZVOUS_FILE_ENV]: '' }),
          ...(threads ? { OMP_NUM_THREADS: threads } : {}),
          ...(p.devices ? { SEGTOOL_DEVICE: `cuda:${p.devices[localRank]}`, SEGTOOL_GPUS: p.devices.join(',') } : {}),
        };
        const child = spawn(options.command ?? process.execPath, argv, { env, stdio: ['ignore', prefix ? 'pipe' : 'inherit', prefix ? 'pipe' : 'inherit'] });
        children.push(child);
        if (prefix) {
          pipeWithPrefix(child.stdout, process.stdout, `[rank ${rank}] `);
          pipeWithPrefix(child.stderr, process.stderr, `[rank ${rank}] `);
        }
        let settled = false;
        const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
          if (settled) return;
          settled = true;
          const exit: RankExit = { rank, localRank, pid: child.pid, code, signal };
          exits.push(exit);
          if ((code !== 0 || signal) && !failure && !stopSignal) {
            failedExit = exit;
            failure = describeExit(exit);
            log(`${failure}; stopping the other ranks`);
            stopAll();
          }
          if (--running === 0) resolve();
        };
        child.once('error', (error) => {
          if (!failure && !stopSignal) failure = `rank ${rank} could not start: ${error.message}`;
          finish(null, null);
        });
        child.once('exit', finish);
      }
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (killTimer) clearTimeout(killTimer);
    if (rendezvousDir) await rm(rendezvousDir, { recursive: true, force: true });
  }

  exits.sort((a, b) => a.rank - b.rank);
  if (stopSignal) {
    return { exitCode: stopSignal === 'SIGINT' ? 130 : 143, ranks: exits, failure: `stopped by ${stopSignal}` };
  }
  if (failure) {
    const exitCode = failedExit?.code ? failedExit.code : 1;
    return { exitCode, ranks: exits, failure };
  }
  return { exitCode: 0, ranks: exits };
}

const FLAGS: Record<string, keyof LaunchOptions> = {
  '--nproc': 'nproc',
  '--nproc-per-node': 'nproc',
  '--gpus': 'gpus',
  '--nnodes': 'nnodes',
  '--node-rank': 'nodeRank',
  '--master-addr': 'masterAddr',
  '--master-port': 'masterPort',
};

/**
 * Takes the launcher's flags (--nproc, --gpus, --nnodes, --node-rank, --master-addr,
 * --master-port; "--flag value" or "--flag=value") out of `argv`; `rest` keeps the others in
 * order. With `stopAtFirstPositional`, parsing ends at the first other argument (the script).
 */
export function parseLaunchArgs(argv: readonly string[], stopAtFirstPositional = false): { options: LaunchOptions; rest: string[] } {
  const options: LaunchOptions = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const key = FLAGS[flag];
    if (!key) {
      if (stopAtFirstPositional && !arg.startsWith('-')) {
        rest.push(...argv.slice(i));
        break;
      }
      rest.push(arg);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw invalid(flag, 'a value', undefined);
    if (key === 'gpus' || key === 'masterAddr') {
      options[key] = value;
    } else {
      const n = Number(value);
      if (!/^\d+$/.test(value)) throw invalid(flag, 'an integer', value);
      options[key] = n as never;
    }
  }
  return { options, rest };
}

const USAGE = `usage: node dist/dist/launch.js [--nproc N | --gpus 0-3] [--nnodes N --node-rank I --master-addr HOST] [--master-port P] script.mjs [args...]`;

/** The command-line entry: launcher flags, then the script and its arguments. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  try {
    const { options, rest } = parseLaunchArgs(argv, true);
    if (rest.length === 0 || rest[0] === '--help' || rest[0] === '-h') {
      process.stderr.write(`${USAGE}\n`);
      return rest.length === 0 ? 2 : 0;
    }
    return (await launch(rest, options)).exitCode;
  } catch (error) {
    process.stderr.write(`segtool launch: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
