/** What the train, eval, test and demo commands share: --cfg, KEY VALUE overrides, threads. */
import { InvalidArgumentError, type Command } from 'commander';
import { isConfigKey } from '../config/index.js';
import { cudaStatus } from '../device.js';
import { distributedEnv } from '../distributed/env.js';
import { launch, needsLaunch, parseDeviceList, parseLaunchArgs, type LaunchOptions } from '../distributed/launch.js';
import { SegtoolError } from '../errors.js';

/** The reference scripts' default --cfg (config/ade20k-resnet50dilated-ppm_deepsup.yaml). */
export const DEFAULT_CONFIG = 'resnet50dilated-ppm_deepsup';

export function parseCount(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return (text: string) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}`);
    }
    return value;
  };
}

/** --precision fp32|bf16 of the section a command runs (TRAIN, VAL or TEST), as a config override. */
export function withPrecisionOption(command: Command, section: 'TRAIN' | 'VAL' | 'TEST'): Command {
  return command.option(
    '--precision <p>',
    `fp32, or bf16: bfloat16 convolutions on CUDA or on a CPU with AVX512-BF16 or AMX (= ${section}.precision)`,
    (text: string) => {
      if (text !== 'fp32' && text !== 'bf16') throw new InvalidArgumentError(`--precision must be fp32 or bf16`);
      return text;
    },
  );
}

/** The config overrides that --gpu and --precision stand for. */
export function runtimeFlagOverrides(
  section: 'TRAIN' | 'VAL' | 'TEST',
  options: { gpu?: number; precision?: string },
): Array<readonly [`${typeof section}.device` | `${typeof section}.precision`, string, string]> {
  const out: Array<readonly [`${typeof section}.device` | `${typeof section}.precision`, string, string]> = [];
  if (options.gpu !== undefined) out.push([`${section}.device`, `cuda:${options.gpu}`, '--gpu'] as const);
  if (options.precision !== undefined) out.push([`${section}.precision`, options.precision, '--precision'] as const);
  return out;
}

/** Adds --cfg, --threads and the trailing KEY VALUE overrides. */
export function withConfigOptions(command: Command): Command {
  return command
    .option('--cfg <file>', `config file, or a bundled config's name (default ${DEFAULT_CONFIG}; see segtool models)`)
    .option('--threads <n>', 'LibTorch threads (default: SEGTOOL_THREADS, OMP_NUM_THREADS or every core)', parseCount('--threads', 1))
    .argument('[overrides...]', 'config overrides as KEY VALUE pairs, e.g. TRAIN.num_epoch 2 DIR ckpt/mine');
}

/**
 * Splits a variadic option's values from overrides that followed it on the command line
 * (`--imgs a.jpg b/ TEST.result out`): the first config key starts the overrides.
 */
export function splitTrailingOverrides(values: readonly string[]): { values: string[]; overrides: string[] } {
  const at = values.findIndex((v) => isConfigKey(v));
  return at < 0 ? { values: [...values], overrides: [] } : { values: values.slice(0, at), overrides: values.slice(at) };
}

/** Options whose value is optional (`--resume [checkpoint]`). */
const OPTIONAL_VALUE_FLAGS = ['--resume'];

/**
 * `--resume TRAIN.num_epoch 6` means "resume the latest" and an override, not a checkpoint
 * named TRAIN.num_epoch: an optional-value flag followed by a config key is given no value
 * (`--resume=`, which the command reads as "the latest").
 */
export function optionalValuesBeforeKeys(argv: readonly string[]): string[] {
  const out = [...argv];
  for (let i = 0; i + 1 < out.length; i++) {
    if (OPTIONAL_VALUE_FLAGS.includes(out[i]!) && isConfigKey(out[i + 1]!)) out[i] = `${out[i]}=`;
  }
  return out;
}

/** Aborts on the first Ctrl-C (the command stops cleanly); a second one exits at once. */
export function abortOnInterrupt(what: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\nsegtool: stopping ${what} (Ctrl-C again to quit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSignal) };
}

/** Adds the launcher's options (one process per rank, like torchrun): --nproc, --gpus, --nnodes, ... */
export function withLaunchOptions(command: Command): Command {
  return command
    .option('--nproc <n>', 'ranks (processes) on this machine, e.g. one per CPU socket (default 1)')
    .option('--gpus <list>', 'one rank per CUDA device: "0-3", "0,2,4,6"')
    .option('--nnodes <n>', 'machines in the job (default 1); run the same command on each with its --node-rank')
    .option('--node-rank <i>', "this machine's index in [0, nnodes)")
    .option('--master-addr <host>', 'address of node 0, where rank 0 serves the rendezvous (required with --nnodes > 1)')
    .option('--master-port <port>', 'rendezvous port (default: a free port on one machine, 29500 across machines)');
}

/**
 * When the command line asks for more than one process, spawns this machine's ranks, each
 * running the same command without the launcher's options (and RANK, WORLD_SIZE, ... set),
 * waits for them and sets the exit status: a failed rank is named and stops the others.
 * Returns false when this process should do the work itself (a single process, or a rank).
 */
export async function launchRanksIfAsked(command: Command, seed?: SeedLaunch): Promise<boolean> {
  let root = command;
  while (root.parent) root = root.parent;
  const rawArgs = (root as unknown as { rawArgs?: string[] }).rawArgs;
  const raw = rawArgs && rawArgs.length > 0 ? rawArgs : process.argv;
  let { options, rest } = parseLaunchArgs(raw.slice(2));
  if (seed !== undefined && (seed.numGpus !== undefined || seed.devices !== undefined)) {
    // A rank of a launched job keeps --num_gpus / --devices on its command line (for the run folder's name).
    if (distributedEnv()) return false;
    const launcherFlags = ['nproc', 'gpus', 'nnodes'].filter((k) => options[k as keyof LaunchOptions] !== undefined).map((k) => `--${k}`);
    const seedFlag = seed.numGpus !== undefined ? '--num_gpus' : '--devices';
    if (launcherFlags.length > 0) throw new SegtoolError('ERR_INVALID_ARG', `${seedFlag} and ${launcherFlags.join(', ')} both say how many ranks to run; give one`);
    options = { ...options, ...seedLaunchOptions(seed) };
  }
  if (!needsLaunch(options)) return false;
  const script = raw[1] ?? process.argv[1]!;
  const result = await launch([script, ...rest], options);
  if (result.failure) process.stderr.write(`segtool: ${result.failure}\n`);
  process.exitCode = result.exitCode;
  return true;
}

/** The seed's ways to ask for ranks: train.py's --num_gpus N, eval_multipro.py's --devices LIST. */
export interface SeedLaunch {
  numGpus?: number;
  devices?: string;
  /** Images per rank, for the CPU note. */
  batchPerGpu?: number;
}

/**
 * --num_gpus N: N CUDA devices (0..N-1) when there are that many; without CUDA, N CPU ranks
 * with the same batch and SyncBN semantics (said on stderr). --devices LIST: one rank per device.
 */
export function seedLaunchOptions(seed: SeedLaunch): LaunchOptions {
  if (seed.devices !== undefined) {
    parseDeviceList(seed.devices); // checks the spelling
    return { gpus: seed.devices };
  }
  const n = seed.numGpus ?? 1;
  if (n <= 1) return {};
  const cuda = cudaStatus();
  if (cuda.available) {
    if (cuda.deviceCount < n) {
      throw new SegtoolError('ERR_DEVICE', `--num_gpus ${n} but this machine has ${cuda.deviceCount} CUDA device(s); use --num_gpus ${cuda.deviceCount} or fewer`);
    }
    return { gpus: `0-${n - 1}` };
  }
  const batch = seed.batchPerGpu === undefined ? '' : ` (a batch of ${n} x ${seed.batchPerGpu} = ${n * seed.batchPerGpu} images`;
  process.stderr.write(
    `segtool: no CUDA device: --num_gpus ${n} runs ${n} CPU ranks${batch ? `${batch}, BatchNorm synchronised across the ranks, as on ${n} GPUs)` : ''}\n`,
  );
  return { nproc: n };
}
