/** What the train, eval, test and demo commands share: --cfg, KEY VALUE overrides, threads. */
import { InvalidArgumentError, type Command } from 'commander';
import { isConfigKey } from '../config/index.js';

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
