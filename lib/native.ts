/**
 * The one door to the native addon: loads it and declares, in one place, everything it exports.
 * A load failure becomes one SegtoolError('ERR_ADDON_LOAD') with numbered possible fixes.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SegtoolError } from './errors.js';

export type NativeDtype = 'float32' | 'float64' | 'int32' | 'int64' | 'uint8' | 'int16';

/** A native tensor handle; owned by exactly one JS object (see lib/tensor.ts). */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: NativeDtype;
  readonly disposed: boolean;
  /** A zero-copy typed array over the tensor's memory (keeps the memory alive). */
  data(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int16Array;
  dispose(): void;
}

export type NamedNativeTensors = Array<[string, NativeTensor]>;

export interface BuildInfo {
  torchVersion: string;
  cuda: boolean;
  cudaKernels: boolean;
  /** CUDA devices LibTorch sees (0 without CUDA). */
  cudaDevices?: number;
  /** CPUID (with the OS's register-state support): AVX-512 F/BW/VL, AVX512-BF16, AMX-BF16. */
  cpuAvx512: boolean;
  cpuAvx512Bf16: boolean;
  cpuAmxBf16: boolean;
  /** Why precision 'bf16' cannot run on this CPU; '' when it can. */
  cpuBf16Unsupported: string;
  /** glibc's mmap threshold as segtool fixed it at load from SEGTOOL_MMAP_THRESHOLD (bytes), or
   * null when left to the C library (the default); `mallocSetting` says it in words ("1048576 bytes
   * (SEGTOOL_MMAP_THRESHOLD)", or why it was left). */
  mallocMmapThreshold: number | null;
  mallocSetting: string;
  mkldnn: boolean;
  openmp: boolean;
  parallel: string;
}

export interface NativeModelInfo {
  encoder: string;
  decoder: string;
  fcDim: number;
  numClass: number;
  outputStride: number;
  deepSupervision: boolean;
  training: boolean;
  fixBn: boolean;
  bnMomentum: number;
  bnEps: number;
  dropout: number;
  device: string;
  precision: 'fp32' | 'bf16';
  channelsLast: boolean;
  cudnnBenchmark: boolean;
  /** Eval-mode inference through the fused graph (BatchNorm folded into the convs). */
  fuse: boolean;
  /** Conv+BN folds computed so far (the fused graph's cache: built once, rebuilt after weights change). */
  fusedBuilds: number;
}

export interface NativeTrainStepResult {
  loss: number;
  accuracy: number;
  lossMain: number;
  lossDeepsup: number;
  gradNormEncoder: number;
  gradNormDecoder: number;
}

/** An opaque cancellation flag (createCancelToken). */
export type NativeCancelToken = { readonly __brand: 'NativeCancelToken' };

/** What predict / predictSliding return (logits: predictSliding's stitched canvas, when asked). */
export interface NativePrediction {
  labels: NativeTensor;
  confidence?: NativeTensor;
  probabilities?: NativeTensor;
  counts?: NativeTensor;
  logits?: NativeTensor;
  colors?: NativeTensor;
}

/** A native nn::SegmentationModel. Async calls pin it; dispose() while they run is ERR_BUSY. */

export interface NativeModel {
  readonly inFlight: number;
  readonly disposed: boolean;
  info(): NativeModelInfo;
  keys(): string[];
  shapes(): Array<[string, number[], NativeDtype]>;
  getTensor(name: string): NativeTensor;
  setTensor(name: string, value: NativeTensor): void;
  stateDict(): Promise<NamedNativeTensors>;
  loadStateDict(tensors: NamedNativeTensors, prefix: string): Promise<{ missing: string[]; unexpected: string[] }>;
  setMode(mode: { training?: boolean; fixBn?: boolean; bnMomentum?: number; dropout?: number }): void;
  forwardFeatures(input: NativeTensor): Promise<{ logprob: NativeTensor; logprobDeepsup?: NativeTensor }>;
  forwardProbs(input: NativeTensor, height: number, width: number): Promise<NativeTensor>;
  predict(
    inputs: NativeTensor[],
    height: number,
    width: number,
    options: { flip: boolean; confidence: boolean; probabilities: boolean; counts?: boolean; palette?: NativeTensor; cancel?: NativeCancelToken },
  ): Promise<NativePrediction>;
  /** Sliding-window prediction at the input's own size (native/nn/slide.h). */
  predictSliding(
    input: NativeTensor,
    options: {
      crop: [number, number];
      stride: [number, number];
      flip: boolean;
      confidence: boolean;
      probabilities: boolean;
      counts: boolean;
      logits: boolean;
      palette?: NativeTensor;
      cancel?: NativeCancelToken;
      /** Called on the main thread after each crop; must not throw. */
      onTile?: (done: number, total: number) => void;
    },
  ): Promise<NativePrediction>;
  trainStep(
    input: NativeTensor,
    label: NativeTensor,
    options: { lrEncoder: number; lrDecoder: number; momentum: number; weightDecay: number; deepSupScale: number },
  ): Promise<NativeTrainStepResult>;
  optimizerState(): Promise<NamedNativeTensors>;
  setOptimizerState(state: NamedNativeTensors): Promise<void>;
  /** Attaches (null: detaches) a communicator and broadcasts rank 0's weights; a collective. */
  setCommunicator(communicator: NativeCommunicator | null, options: { syncBatchNorm: 'exact' | 'reference' | false }): Promise<void>;
  /** Moves parameters, buffers and momentum to `device` ('cpu', 'cuda', 'cuda:N'). */
  to(device: string): Promise<void>;
  setRuntime(runtime: { precision?: 'fp32' | 'bf16'; channelsLast?: boolean; cudnnBenchmark?: boolean; fuse?: boolean }): void;
  dispose(): void;
}

export interface NativeModelOptions {
  encoder: string;
  decoder: string;
  fcDim: number;
  numClass: number;
  /** When absent: 0.001, and HRNet's encoder 0.1, as the reference. */
  bnMomentum?: number;
  bnEps: number;
  dropout: number;
  init: 'reference' | 'procedural';
  device?: string;
  precision?: 'fp32' | 'bf16';
  channelsLast?: boolean;
  cudnnBenchmark?: boolean;
  fuse?: boolean;
}

/** The options createCommunicator receives, validated by lib/distributed. */
export interface NativeCommunicatorOptions {
  rank: number;
  worldSize: number;
  /** A c10d FileStore path: rendezvous without opening a port (single-machine jobs). */
  storeFile?: string;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  backend: 'gloo' | 'nccl';
  bucketBytes?: number;
}

/**
 * A native dist::Communicator (c10d). Every rank must issue the same calls in the same order;
 * lib/distributed/communicator.ts queues them. Failures of the job reject with ERR_DISTRIBUTED.
 */
export interface NativeCommunicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  readonly inFlight: number;
  readonly destroyed: boolean;
  /** Sums every tensor over all ranks, in place (bucketed: one collective per ~25 MB). */
  allReduce(tensors: NativeTensor[]): Promise<void>;
  /** Rank `root`'s values copied in place to every rank (bucketed like allReduce). */
  broadcast(tensors: NativeTensor[], root: number): Promise<void>;
  /** Every rank's value stacked: [worldSize, ...value.shape]. */
  allGather(value: NativeTensor): Promise<NativeTensor>;
  barrier(): Promise<void>;
  /** A last barrier, then closes the group; ERR_BUSY while calls run. */
  destroy(): Promise<void>;
}

/** Training-mode BatchNorm forward plus the backward of sum(output * gradOutput). */
export interface NativeBatchNormArgs {
  input: NativeTensor;
  gradOutput: NativeTensor;
  weight?: NativeTensor;
  bias?: NativeTensor;
  /** Updated in place, as the buffers below. */
  runningMean?: NativeTensor;
  runningVar?: NativeTensor;
  momentum: number;
  eps: number;
  mode?: 'exact' | 'reference';
  tmpRunningMean?: NativeTensor;
  tmpRunningVar?: NativeTensor;
  runningIter?: NativeTensor;
}

export interface NativeBatchNormResult {
  output: NativeTensor;
  gradInput: NativeTensor;
  gradWeight?: NativeTensor;
  gradBias?: NativeTensor;
}

export interface NativeAddon {
  TensorHandle: abstract new (...args: never[]) => NativeTensor;
  setErrorClass(ctor: new (code: string, message: string) => Error): void;
  fromTypedArray(array: ArrayBufferView, shape: number[], dtype?: NativeDtype): NativeTensor;
  liveTensorCount(): number;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  buildInfo(): BuildInfo;
  /** At least `iterations` n x n float32 products, and more until `minSeconds` have passed. */
  matmulBenchmark(n: number, iterations: number, minSeconds?: number): Promise<{ seconds: number; gflops: number; iterations: number }>;
  readSafetensors(path: string): Promise<{ tensors: NamedNativeTensors; metadata: Record<string, string> }>;
  writeSafetensors(path: string, tensors: NamedNativeTensors, metadata: Record<string, string>): Promise<void>;
  /** The state dict of a PyTorch .pth (zip or legacy); `key` picks a nested dict ("a/b"). */
  readPth(path: string, key?: string): Promise<{ tensors: NamedNativeTensors; metadata: { format: 'zip' | 'legacy'; statePath: string } }>;
  writePth(path: string, tensors: NamedNativeTensors): Promise<void>;
  createModel(options: NativeModelOptions): Promise<NativeModel>;
  /** Seeds LibTorch's CPU generator (dropout, random initialisation). */
  manualSeed(seed: number): void;
  getRngState(): NativeTensor;
  setRngState(state: NativeTensor): void;
  architectures(): { encoders: string[]; decoders: string[]; defaultFcDim: Record<string, number> };
  /** A flag native work checks between scales, bands and rows (predict's `cancel`). */
  createCancelToken(): NativeCancelToken;
  /** Sets the flag: work using the token stops with ERR_ABORTED at its next check. */
  cancelToken(token: NativeCancelToken): void;
  /** The crops predictSliding runs on a height x width image, [y0, y1, x0, x1] each (ERR_INVALID_ARG for a bad grid). */
  slideTiles(height: number, width: number, crop: [number, number], stride: [number, number], outputStride: number): Array<[number, number, number, number]>;
  CommunicatorHandle: abstract new (...args: never[]) => NativeCommunicator;
  /** Joins the job (rendezvous through rank 0's TCPStore); settles once every rank joined. */
  createCommunicator(options: NativeCommunicatorOptions): Promise<NativeCommunicator>;
  /** The process-group backends this build has. */
  distBackends(): Array<'gloo' | 'nccl'>;
  /** ops::sync_batch_norm (null = this process alone); a collective when a communicator is given. */
  syncBatchNorm(communicator: NativeCommunicator | null, args: NativeBatchNormArgs): Promise<NativeBatchNormResult>;
  /** The same through at::batch_norm: the ground truth for tests. */
  atenBatchNorm(args: NativeBatchNormArgs): Promise<NativeBatchNormResult>;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the addon is looked for: $SEGTOOL_ADDON, then the cmake-js / node-gyp output. */
export function addonCandidates(): string[] {
  const fromEnv = process.env['SEGTOOL_ADDON'];
  return [
    ...(fromEnv ? [resolve(fromEnv)] : []),
    join(packageRoot, 'build', 'Release', 'segtool.node'),
    join(packageRoot, 'build', 'Debug', 'segtool.node'),
  ];
}

function explainLoadFailure(path: string | undefined, cause: unknown): SegtoolError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const fixes = [
    'Build it: `npm run setup` (installs LibTorch with apt when missing, then builds), or `npm run build`.',
    'LibTorch missing: on Debian/Ubuntu `sudo apt-get install libtorch-dev libgloo-dev`; elsewhere set Torch_DIR or pip-install torch, then rebuild.',
    'Built against another LibTorch (ABI or version mismatch, "undefined symbol"): remove build/ and run `npm run build` again.',
    'Custom build elsewhere: set SEGTOOL_ADDON=/path/to/segtool.node.',
  ];
  const where = path ? `from ${path}` : `(looked in ${addonCandidates().join(', ')})`;
  return new SegtoolError(
    'ERR_ADDON_LOAD',
    `The segtool native addon could not be loaded ${where}: ${detail}\nPossible fixes:\n` +
      fixes.map((fix, i) => `  ${i + 1}. ${fix}`).join('\n'),
    { cause },
  );
}

let loaded: NativeAddon | undefined;

/**
 * SEGTOOL_THREADS, else OMP_NUM_THREADS, else every core: LibTorch's own default under OpenMP
 * can be a single thread.
 */
function defaultThreadCount(): number {
  for (const name of ['SEGTOOL_THREADS', 'OMP_NUM_THREADS']) {
    const value = Number(process.env[name]);
    if (Number.isInteger(value) && value > 0) return value;
  }
  return availableParallelism();
}

/** Sets what LibTorch's libraries read from the environment when they load. */
function prepareEnvironment(): void {
  // OpenMP reads OMP_WAIT_POLICY when LibTorch loads. Its default lets idle intra-op threads
  // spin for a while after every parallel region; in a Node process that shares its cores with
  // the event loop (and on any loaded machine) spinning threads steal the cores the work
  // needs: training steps measured 2-10x slower, erratically, on a busy 2-core machine.
  // Passive unless the user chose.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  // Read by the addon when it loads (nn/runtime.h, configure_malloc); the addon ignores a bad
  // value rather than fail to load, so it is refused here, before.
  const threshold = process.env['SEGTOOL_MMAP_THRESHOLD'];
  if (threshold !== undefined && threshold !== '' && !(/^\d+$/.test(threshold) && Number(threshold) <= MAX_MMAP_THRESHOLD)) {
    throw new SegtoolError(
      'ERR_CONFIG',
      `SEGTOOL_MMAP_THRESHOLD=${JSON.stringify(threshold)} in the environment: expected the bytes from which malloc maps each ` +
        `block on its own, an integer from 0 (glibc's dynamic threshold, the default) to ${MAX_MMAP_THRESHOLD}, e.g. 1048576`,
    );
  }
}

/** glibc's largest mmap threshold (HEAP_MAX_SIZE / 2 on 64-bit). */
const MAX_MMAP_THRESHOLD = 32 * 1024 * 1024;

/** The first candidate that exists, if any. */
function findAddon(): string | undefined {
  return addonCandidates().find((candidate) => existsSync(candidate));
}

/** The addon, loaded on first use. Throws SegtoolError('ERR_ADDON_LOAD') when it cannot load. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  const path = findAddon();
  if (!path) throw explainLoadFailure(undefined, new Error('no built addon found'));
  prepareEnvironment();
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (cause) {
    throw explainLoadFailure(path, cause);
  }
  addon.setErrorClass(SegtoolError as unknown as new (code: string, message: string) => Error);
  addon.setNumThreads(defaultThreadCount());
  loaded = addon;
  return addon;
}

let loading: Promise<NativeAddon> | undefined;

/**
 * The addon, loaded without blocking the event loop. Loading LibTorch (mapping and relocating
 * a few hundred MB of shared libraries, running their static constructors) takes 0.5-0.7 s of
 * one core; done by `native()` on the main thread, a service that creates its first model while
 * it serves stalls every request for that long. Here a worker thread loads the addon first, so
 * the libraries are in the process when the main thread opens it again (measured: 2 ms instead
 * of 480-640 ms on the main thread). Every asynchronous entry point (model creation, checkpoint
 * and safetensors I/O, communicators, systemInfo) goes through this.
 */
export function loadNative(): Promise<NativeAddon> {
  if (loaded) return Promise.resolve(loaded);
  loading ??= openAfterWorkerPreload().catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

/** Opens the addon in a worker thread, then on the main thread while that worker holds it open. */
async function openAfterWorkerPreload(): Promise<NativeAddon> {
  const path = findAddon();
  if (!path) return native(); // throws, saying where it looked
  prepareEnvironment();
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     require(workerData);
     parentPort.on('message', () => {}); // stays alive, the addon open, until terminated
     parentPort.postMessage('loaded');`,
    // execArgv []: the parent's flags (--input-type=module, say) must not turn this CommonJS source into a module.
    { eval: true, workerData: path, execArgv: [], stdout: false, stderr: false },
  );
  worker.unref();
  try {
    // A failure to load in the worker ('error') is not reported from here: native() loads again
    // on the main thread and explains.
    await new Promise<void>((resolvePromise) => {
      worker.once('message', () => resolvePromise());
      worker.once('error', () => resolvePromise());
      worker.once('exit', () => resolvePromise());
    });
    return native();
  } finally {
    await worker.terminate();
  }
}
