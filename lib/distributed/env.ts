/**
 * The torchrun environment of one rank: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT — set by `segtool train --nproc/--gpus`, by torchrun, or by a
 * cluster wrapper. Parsed and checked here, once.
 */
import { SegtoolError } from '../errors.js';
import { describe } from '../validate.js';

export interface DistributedEnv {
  rank: number;
  worldSize: number;
  /** This rank's index on its machine (selects the GPU). */
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** SEGTOOL_DEVICE (e.g. "cuda:2") when the launcher assigned a device, else undefined. */
  device?: string;
  /**
   * SEGTOOL_RENDEZVOUS_FILE: set by the launcher for a single-machine job. The ranks rendezvous
   * through this file (a c10d FileStore in a folder only this user can open) and no port is opened.
   */
  rendezvousFile?: string;
}

/** The variable the launcher sets for a single-machine job's rendezvous file. */
export const RENDEZVOUS_FILE_ENV = 'SEGTOOL_RENDEZVOUS_FILE';

/** Collective and rendezvous timeout when neither options nor SEGTOOL_DIST_TIMEOUT_MS say. */
export const DEFAULT_TIMEOUT_MS = 300_000;
export const DEFAULT_MASTER_PORT = 29500;

function envError(name: string, expected: string, value: unknown): SegtoolError {
  return new SegtoolError('ERR_INVALID_ARG', `Expected ${expected} for the environment variable ${name} but received ${describe(value)}`);
}

function envInteger(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || value < min || value > max) {
    throw envError(name, max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, raw);
  }
  return value;
}

/**
 * This process's place in a distributed job, or undefined when RANK and WORLD_SIZE are both
 * unset (a single process). Partial or inconsistent variables are ERR_INVALID_ARG.
 */
export function distributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedEnv | undefined {
  const hasRank = env['RANK'] !== undefined && env['RANK'] !== '';
  const hasWorld = env['WORLD_SIZE'] !== undefined && env['WORLD_SIZE'] !== '';
  if (!hasRank && !hasWorld) return undefined;
  if (!hasRank || !hasWorld) {
    const missing = hasRank ? 'WORLD_SIZE' : 'RANK';
    throw new SegtoolError('ERR_INVALID_ARG', `The environment sets ${hasRank ? 'RANK' : 'WORLD_SIZE'} but not ${missing}: a distributed rank needs both`);
  }
  const worldSize = envInteger(env, 'WORLD_SIZE', 1, 65536)!;
  const rank = envInteger(env, 'RANK', 0, worldSize - 1)!;
  const localWorldSize = envInteger(env, 'LOCAL_WORLD_SIZE', 1, worldSize) ?? worldSize;
  const localRank = envInteger(env, 'LOCAL_RANK', 0, localWorldSize - 1) ?? rank % localWorldSize;
  const masterAddr = env['MASTER_ADDR'] || undefined;
  const masterPort = envInteger(env, 'MASTER_PORT', 1, 65535);
  if (worldSize > 1 && (masterAddr === undefined || masterPort === undefined)) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `The environment describes rank ${rank} of ${worldSize} but MASTER_ADDR or MASTER_PORT is not set: every rank needs rank 0's address and port`,
    );
  }
  const device = env['SEGTOOL_DEVICE'] || undefined;
  const rendezvousFile = env[RENDEZVOUS_FILE_ENV] || undefined;
  if (rendezvousFile !== undefined && !rendezvousFile.startsWith('/')) throw envError(RENDEZVOUS_FILE_ENV, 'an absolute path', rendezvousFile);
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    masterAddr: masterAddr ?? '127.0.0.1',
    masterPort: masterPort ?? DEFAULT_MASTER_PORT,
    ...(device ? { device } : {}),
    ...(rendezvousFile ? { rendezvousFile } : {}),
  };
}

/** SEGTOOL_DIST_TIMEOUT_MS, else DEFAULT_TIMEOUT_MS. */
export function timeoutFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return envInteger(env, 'SEGTOOL_DIST_TIMEOUT_MS', 1, 2 ** 31 - 1) ?? DEFAULT_TIMEOUT_MS;
}
