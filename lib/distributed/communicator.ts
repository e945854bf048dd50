/**
 * Communicator: collectives between the ranks of a job (c10d underneath: TCPStore rendezvous —
 * or a FileStore, without any port, for a single-machine job started by the launcher —
 * Gloo for CPU tensors, NCCL for CUDA ones). Calls on one communicator run one at a time, in
 * the order they were made — every rank must make the same calls in the same order with
 * tensors of the same shapes and dtypes. A rank that dies or hangs makes the others' calls
 * reject with SegtoolError('ERR_DISTRIBUTED') within `timeoutMs`; the communicator is then
 * unusable and the process should exit.
 */
import { SegtoolError } from '../errors.js';
import { loadNative, type NativeCommunicator } from '../native.js';
import { Tensor } from '../tensor.js';
import { expectInteger, expectOneOf, expectString, invalid } from '../validate.js';
import { DEFAULT_MASTER_PORT, distributedEnv, timeoutFromEnv } from './env.js';

export type DistBackend = 'gloo' | 'nccl';

export interface CommunicatorOptions {
  /** Default: RANK from the environment. */
  rank?: number;
  /** Default: WORLD_SIZE from the environment. */
  worldSize?: number;
  /** Rank 0's address. Default: MASTER_ADDR, else 127.0.0.1. */
  masterAddr?: string;
  /** The rendezvous port rank 0 listens on. Default: MASTER_PORT, else 29500. */
  masterPort?: number;
  /**
   * Rendezvous through this file (a c10d FileStore) instead of a port: no socket is opened.
   * Default: SEGTOOL_RENDEZVOUS_FILE, which the launcher sets for single-machine jobs.
   */
  rendezvousFile?: string;
  /** Bound on the rendezvous and on every collective. Default: SEGTOOL_DIST_TIMEOUT_MS, else 300000. */
  timeoutMs?: number;
  /** 'gloo' (CPU tensors, default) or 'nccl' (CUDA tensors; CUDA builds only). */
  backend?: DistBackend;
  /** All-reduce bucket size. Default 25 MiB. */
  bucketBytes?: number;
}

const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

type ResolvedOptions = Required<Omit<CommunicatorOptions, 'rendezvousFile'>> & { storeFile?: string };

function resolveOptions(options: CommunicatorOptions, available: readonly string[]): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
  const env = distributedEnv();
  const worldSize = expectInteger('options.worldSize', options.worldSize ?? env?.worldSize ?? 1, 1, 65536);
  const rank = expectInteger('options.rank', options.rank ?? env?.rank ?? 0, 0, worldSize - 1);
  const backend = expectOneOf('options.backend', options.backend ?? 'gloo', ['gloo', 'nccl'] as const);
  if (!available.includes(backend)) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `This build of segtool has no ${backend} backend (available: ${available.join(', ') || 'none'}); NCCL needs a CUDA LibTorch`,
    );
  }
  const storeFile = options.rendezvousFile === undefined ? env?.rendezvousFile : expectString('options.rendezvousFile', options.rendezvousFile);
  return {
    rank,
    worldSize,
    ...(storeFile !== undefined && worldSize > 1 ? { storeFile } : {}),
    masterAddr: expectString('options.masterAddr', options.masterAddr ?? env?.masterAddr ?? '127.0.0.1'),
    masterPort: expectInteger('options.masterPort', options.masterPort ?? env?.masterPort ?? DEFAULT_MASTER_PORT, 1, 65535),
    timeoutMs: expectInteger('options.timeoutMs', options.timeoutMs ?? timeoutFromEnv(), 1, 2 ** 31 - 1),
    backend,
    bucketBytes: expectInteger('options.bucketBytes', options.bucketBytes ?? DEFAULT_BUCKET_BYTES, 1),
  };
}

/** The dtypes Gloo and NCCL reduce (int16 is not among them). */
const COLLECTIVE_DTYPES: readonly string[] = ['float32', 'float64', 'int32', 'int64', 'uint8'];

// Checked before the call: a tensor the backend refuses would fail on every rank mid-collective
// and leave the communicator unusable.
function expectTensor(name: string, value: unknown): Tensor {
  if (!(value instanceof Tensor)) throw invalid(name, 'a Tensor', value);
  if (value.disposed) throw new SegtoolError('ERR_DISPOSED', `The Tensor given for ${name} was disposed`);
  if (!COLLECTIVE_DTYPES.includes(value.dtype)) throw invalid(name, `a tensor of dtype ${COLLECTIVE_DTYPES.join(', ')}`, value.dtype);
  return value;
}

export class Communicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: DistBackend;
  readonly timeoutMs: number;
  private readonly handle: NativeCommunicator;
  /** The last queued call: each call starts when the one before it has settled. */
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(handle: NativeCommunicator, options: ResolvedOptions) {
    this.handle = handle;
    this.rank = options.rank;
    this.worldSize = options.worldSize;
    this.backend = options.backend;
    this.timeoutMs = options.timeoutMs;
  }

  /**
   * Joins the job; resolves once every rank has joined (rank 0 serves the rendezvous on
   * masterPort: a port in use is ERR_DISTRIBUTED at once, a missing rank after timeoutMs).
   */
  static async create(options: CommunicatorOptions = {}): Promise<Communicator> {
    const addon = await loadNative();
    const resolved = resolveOptions(options, addon.distBackends());
    const handle = await addon.createCommunicator(resolved);
    return new Communicator(handle, resolved);
  }

  get destroyed(): boolean {
    return this.handle.destroyed;
  }

  /** @internal Runs `call` after every call made before it (the order all ranks share). */
  enqueue<T>(call: (handle: NativeCommunicator) => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.handle.destroyed) throw new SegtoolError('ERR_DISPOSED', 'The communicator was destroyed');
      return call(this.handle);
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Sums each tensor over all ranks, in place (tensors are bucketed: one collective per ~25 MB). */
  allReduce(tensors: readonly Tensor[]): Promise<void> {
    if (!Array.isArray(tensors)) throw invalid('tensors', 'an array of Tensors', tensors);
    const handles = tensors.map((t, i) => expectTensor(`tensors[${i}]`, t).handle);
    return this.enqueue((h) => h.allReduce(handles));
  }

  /** Rank `root`'s values of every tensor, copied in place on every rank (e.g. initial weights). */
  broadcast(tensors: readonly Tensor[], root = 0): Promise<void> {
    if (!Array.isArray(tensors)) throw invalid('tensors', 'an array of Tensors', tensors);
    const handles = tensors.map((t, i) => expectTensor(`tensors[${i}]`, t).handle);
    expectInteger('root', root, 0, this.worldSize - 1);
    return this.enqueue((h) => h.broadcast(handles, root));
  }

  /** The element-wise sum over all ranks of `values` (same length on every rank), in float64. */
  async allReduceFloat64(values: ArrayLike<number>): Promise<Float64Array> {
    const t = Tensor.from(Float64Array.from(values), [values.length]);
    try {
      await this.allReduce([t]);
      return Float64Array.from(t.data<'float64'>());
    } finally {
      t.dispose();
    }
  }

  /** Every rank's `value` (same shape and dtype on every rank), stacked: [worldSize, ...shape]. */
  async allGather(value: Tensor): Promise<Tensor> {
    const handle = expectTensor('value', value).handle;
    return new Tensor(await this.enqueue((h) => h.allGather(handle)));
  }

  /** Every rank's small vector of numbers (same length on every rank), indexed by rank. */
  async allGatherNumbers(values: ArrayLike<number>): Promise<Float64Array[]> {
    const t = Tensor.from(Float64Array.from(values), [values.length]);
    let gathered: Tensor | undefined;
    try {
      gathered = await this.allGather(t);
      const flat = gathered.data<'float64'>();
      return Array.from({ length: this.worldSize }, (_, r) => flat.slice(r * values.length, (r + 1) * values.length));
    } finally {
      t.dispose();
      gathered?.dispose();
    }
  }

  barrier(): Promise<void> {
    return this.enqueue((h) => h.barrier());
  }

  /**
   * Waits for the calls already made, synchronises with the other ranks one last time, and
   * closes the group (rank 0 also stops the rendezvous server). Idempotent.
   */
  async destroy(): Promise<void> {
    const previous = this.tail;
    const run = previous.then(() => this.handle.destroy());
    this.tail = run.catch(() => undefined);
    await run;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

/** Communicator.create: joins the job described by `options`, completed from the environment. */
export function createCommunicator(options: CommunicatorOptions = {}): Promise<Communicator> {
  return Communicator.create(options);
}
