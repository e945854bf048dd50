/** `segtool train --cfg FILE [KEY VALUE ...]`: the reference's train.py, resumable. */
import { Command } from 'commander';
import { SegtoolError } from '../errors.js';
import { relative } from 'node:path';
import { loadTrainingCheckpoint } from '../checkpoint.js';
import { applyOverrides, validateConfig, type SegtoolConfig } from '../config/index.js';
import { disposeAll } from '../io/safetensors.js';
import { train, type TrainEvent } from '../train/train.js';
import { distributedEnv } from '../distributed/env.js';
import { abortOnInterrupt, DEFAULT_CONFIG, launchRanksIfAsked, parseCount, withConfigOptions, withPrecisionOption, runtimeFlagOverrides, withLaunchOptions } from './common.js';
import { givenSeedFlags, resolveCommandConfig, withSeedFlags } from './seed.js';
import { formatBytes, formatDuration, ProgressBar } from './progress.js';
import { Dashboard } from '../report/dashboard.js';

interface TrainCommandOptions {
  cfg?: string;
  resume?: string | boolean;
  precision?: string;
  workers?: number;
  threads?: number;
  skipBad?: boolean;
  skipMismatchedHead?: boolean;
  syncBn?: string;
  mirror?: string;
  dashboard?: string | boolean;
}

/** --dashboard [PORT]: a port 0..65535 (0 = any free one), or the default. */
function parseDashboardPort(value: string | boolean): number | undefined {
  if (value === true) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected --dashboard PORT to be a port number 0..65535 (0 = any free port) but received "${value}"`);
  }
  return port;
}

function parseSyncBn(value: string): 'exact' | 'reference' | false {
  if (value === 'exact' || value === 'reference') return value;
  if (value === 'off' || value === 'false') return false;
  throw new SegtoolError('ERR_INVALID_ARG', `Expected --sync-bn exact, reference or off but received "${value}"`);
}

/** The config a resumed run continues with when no --cfg is given: the checkpoint's own. */
async function configOfCheckpoint(path: string, overrides: string[]): Promise<SegtoolConfig> {
  const saved = await loadTrainingCheckpoint(path);
  disposeAll(saved.weights);
  disposeAll(saved.momentum);
  saved.torchRng?.dispose();
  return applyOverrides(validateConfig(saved.config, `${path} (its config)`), overrides);
}

/**
 * Prints a run's events: log lines and checkpoints as lines, iterations as a bar on a terminal.
 * In a distributed job only rank 0 reports (the other ranks print their warnings only).
 */
export function trainReporter(bar: ProgressBar, rank = 0): (event: TrainEvent) => void {
  let numEpoch = 0;
  return (event) => {
    if (rank !== 0 && event.type !== 'warning') return;
    switch (event.type) {
      case 'start':
        numEpoch = event.numEpoch;
        bar.log(
          event.firstEpoch > event.numEpoch
            ? `Nothing to train in ${event.dir}`
            : `Training epochs ${event.firstEpoch}..${event.numEpoch} x ${event.epochIters} iterations on ${event.samples} images` +
                (event.worldSize > 1 ? ` with ${event.worldSize} ranks (gradients averaged; loss and accuracy are averages over ranks)` : '') +
                (event.resumedFrom ? `, resumed from ${relative('.', event.resumedFrom)}` : '') +
                `; checkpoints in ${relative('.', event.dir) || '.'}`,
        );
        break;
      case 'iteration': {
        const left = (event.maxIterations - event.globalIteration - 1) * event.time;
        bar.update(
          (event.iteration + 1) / event.epochIters,
          `Epoch ${event.epoch}/${numEpoch}`,
          `loss ${event.averageLoss.toFixed(3)} acc ${event.averageAccuracy.toFixed(1)}% ${event.time.toFixed(2)} s/it ETA ${formatDuration(left)}`,
        );
        break;
      }
      case 'log':
        bar.log(event.line);
        break;
      case 'epoch':
        bar.log(`Epoch ${event.epoch} done in ${formatDuration(event.seconds)}: loss ${event.averageLoss.toFixed(4)}, accuracy ${event.averageAccuracy.toFixed(2)}%`);
        break;
      case 'checkpoint':
        bar.log(`Saved ${event.files.map((f) => relative('.', f)).join(', ')}`);
        break;
      case 'download': {
        const size = event.total !== undefined ? `${formatBytes(event.received)} / ${formatBytes(event.total)}` : formatBytes(event.received);
        bar.update(event.total ? event.received / event.total : 0, 'Pretrained encoder', size);
        break;
      }
      case 'warning':
        bar.clear();
        process.stderr.write(`warning: ${event.message}\n`);
        break;
    }
  };
}

export function trainCommand(): Command {
  return withSeedFlags(withLaunchOptions(withConfigOptions(withPrecisionOption(
    new Command('train')
      .description('train a model as the config says (the reference\'s train.py), with per-epoch checkpoints')
      .option('--resume [checkpoint]', 'continue from a training checkpoint (default: the latest in DIR)')
      .option('--workers <n>', 'data loading threads (default TRAIN.workers)', parseCount('--workers', 0, 64))
      .option('--skip-bad', 'leave out unreadable samples and list them at the end')
      .option('--skip-mismatched-head', 'fine-tuning: MODEL.weights_* tensors of another shape (a head for another class count) are left out')
      .option('--sync-bn <mode>', "BatchNorm across ranks: exact (default), reference (the reference's formula) or off")
      .option('--dashboard [port]', 'serve a live page of the run on http://127.0.0.1:PORT (default 8765; 0 = any free port) while it trains')
      .option('--mirror <url>', 'base URL for the ImageNet-pretrained encoder instead of http://sceneparsing.csail.mit.edu/ (also SEGTOOL_MIRROR)'),
    'TRAIN',
  ))), 'train').action(async (overrides: string[], options: TrainCommandOptions, command: Command) => {
    // `--resume TRAIN.num_epoch 6`: the key is an override, not the checkpoint (optionalValuesBeforeKeys).
    if (options.resume === '') options.resume = true;
    const seedFlags = givenSeedFlags(options as Record<string, unknown>, 'train');
    const runtimeFlags = runtimeFlagOverrides('TRAIN', options);
    const { cfg, plan } =
      typeof options.resume === 'string' && options.cfg === undefined && seedFlags.size === 0
        ? { cfg: await configOfCheckpoint(options.resume, [...overrides, ...runtimeFlags.flatMap(([key, value]) => [key, value])]), plan: {} }
        : await resolveCommandConfig('train', options as Record<string, unknown>, overrides, DEFAULT_CONFIG, runtimeFlags);
    if (await launchRanksIfAsked(command, { ...('numGpus' in plan ? { numGpus: plan.numGpus } : {}), batchPerGpu: cfg.TRAIN.batch_size_per_gpu })) return;
    const rank = distributedEnv()?.rank ?? 0;
    const bar = new ProgressBar(rank === 0 ? {} : { enabled: false });
    // The live page: rank 0 only; it subscribes to the run's events and stops with the run.
    const port = options.dashboard !== undefined && options.dashboard !== false ? parseDashboardPort(options.dashboard) : undefined;
    const dashboard =
      options.dashboard !== undefined && options.dashboard !== false && rank === 0
        ? await Dashboard.start(cfg, { ...(port !== undefined ? { port } : {}), onWarning: (message) => process.stderr.write(`warning: ${message}\n`) })
        : undefined;
    if (dashboard) bar.log(`Dashboard: ${dashboard.url}`);
    const report = trainReporter(bar, rank);
    const interrupt = abortOnInterrupt('training after this iteration');
    let outcome: string | undefined;
    try {
      const result = await train(cfg, {
        ...(options.resume !== undefined ? { resume: options.resume } : {}),
        ...(options.workers !== undefined ? { workers: options.workers } : {}),
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.skipBad ? { onBadSample: 'skip' as const } : {}),
        ...(options.skipMismatchedHead ? { skipMismatchedHead: true } : {}),
        ...(options.syncBn !== undefined ? { syncBatchNorm: parseSyncBn(options.syncBn) } : {}),
        ...(options.mirror !== undefined ? { mirror: options.mirror } : {}),
        onEvent: dashboard
          ? (event) => {
              report(event);
              dashboard.onEvent(event);
            }
          : report,
        signal: interrupt.signal,
      });
      outcome = `training done: epoch ${result.epoch}`;
      bar.done();
      for (const bad of result.badSamples) process.stderr.write(`skipped ${bad.image}: ${bad.message}\n`);
      if (result.weights && rank === 0) {
        console.log(`Done in ${formatDuration(result.seconds)}. Evaluate: segtool eval --cfg ${relative('.', `${result.dir}/config.yaml`)} VAL.checkpoint epoch_${result.epoch}.pth`);
      }
    } finally {
      bar.done();
      interrupt.dispose();
      await dashboard?.close(outcome ?? 'training stopped', { finishSamples: outcome !== undefined });
    }
  });
}
