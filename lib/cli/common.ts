/** What the train, eval, test and demo commands share: --cfg, KEY VALUE overrides, threads. */
import { InvalidArgumentError, type Command } from 'commander';
import { isConfigKey } from '../config/index.js';
import { launch, needsLaunch, parseLaunchArgs } from '../dist/launch.js';

/** The reference scripts' default --cfg (config/ade20k-resnet50dilated-ppm_deepsup.yaml). */
export const DEFAULT_CONFIG = 'resnet50dilated-ppm_deepsup';

export function parseCount(name: string, min = 0): (text: string) => number {
  return (text: string) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return value;
  };
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
export async function launchRanksIfAsked(command: Command): Promise<boolean> {
  let root = command;
  while (root.parent) root = root.parent;
  const rawArgs = (root as unknown as { rawArgs?: string[] }).rawArgs;
  const raw = rawArgs && rawArgs.length > 0 ? rawArgs : process.argv;
  const { options, rest } = parseLaunchArgs(raw.slice(2));
  if (!needsLaunch(options)) return false;
  const script = raw[1] ?? process.argv[1]!;
  const result = await launch([script, ...rest], options);
  if (result.failure) process.stderr.write(`segtool: ${result.failure}\n`);
  process.exitCode = result.exitCode;
  return true;
}
