/** `segtool eval --cfg FILE [KEY VALUE ...]`: the reference's eval.py. */
import { Command } from 'commander';
import { relative } from 'node:path';
import { evaluate, type EvaluateResult } from '../eval/evaluate.js';
import { mostConfused } from '../eval/confusion.js';
import { readSampleList } from '../data/list.js';
import { distributedEnv } from '../distributed/env.js';
import { abortOnInterrupt, DEFAULT_CONFIG, launchRanksIfAsked, parseCount, withConfigOptions, withPrecisionOption, runtimeFlagOverrides, withLaunchOptions } from './common.js';
import { formatDuration, ProgressBar } from './progress.js';
import { resolveCommandConfig, withSeedFlags } from './seed.js';

interface EvalCommandOptions {
  cfg?: string;
  checkpoint?: string;
  visualize?: boolean;
  legend?: boolean;
  workers?: number;
  threads?: number;
  skipBad?: boolean;
  allClasses?: boolean;
  gpu?: number;
  precision?: string;
}

/** The reference's report: one line per class, then the summary. */
export function printEvaluation(result: EvaluateResult, allClasses: boolean): void {
  for (const c of result.classes) {
    if (allClasses || c.union > 0) console.log(`class [${c.index}], IoU: ${c.iou.toFixed(4)}  ${c.name}`);
  }
  const absent = result.classes.filter((c) => c.union === 0).length;
  if (!allClasses && absent > 0) console.log(`(${absent} classes neither in the ground truth nor predicted: IoU 0; --all-classes lists them)`);
  console.log('[Eval Summary]:');
  console.log(
    `Mean IoU: ${result.meanIoU.toFixed(4)}, Accuracy: ${(result.pixelAccuracy * 100).toFixed(2)}%, ` +
      `Inference Time: ${result.timePerImage.toFixed(4)}s`,
  );
  console.log(
    `Score (mean of accuracy and mIoU): ${result.score.toFixed(4)}; mean IoU over the ${result.presentClasses} classes in the ground truth: ${result.meanIoUPresent.toFixed(4)}`,
  );
  const confused = mostConfused(result.confusion, result.classes.map((c) => c.name), 5);
  if (confused.length > 0) {
    console.log(`Most confused: ${confused.map((p) => `${p.truthName} -> ${p.predictedName} (${(p.fraction * 100).toFixed(1)}%)`).join(', ')}`);
  }
  if (result.classSource !== 'ADE20K') console.log(`Class names: ${result.classSource}`);
  if (result.metricsFile) console.log(`Metrics: ${relative('.', result.metricsFile)}`);
  if (result.confusionFile) console.log(`Confusion matrix: ${relative('.', result.confusionFile)}`);
  if (result.resultDir) console.log(`Panels (image | ground truth | prediction): ${relative('.', result.resultDir)}/`);
}

export function evalCommand(): Command {
  return withSeedFlags(withLaunchOptions(withConfigOptions(withPrecisionOption(
    new Command('eval')
      .description('evaluate on DATASET.list_val at every DATASET.imgSizes scale: pixel accuracy, per-class IoU, mIoU')
      .option('--checkpoint <weights>', 'weights: a suffix in DIR (epoch_20.pth), a file, or a folder (default VAL.checkpoint)')
      .option('--visualize', 'write DIR/result/<name>.png = image | ground truth | prediction, with a legend of the classes in it')
      .option('--no-legend', 'panels without the legend')
      .option('--workers <n>', 'data loading threads (default 2)', parseCount('--workers', 0, 64))
      .option('--skip-bad', 'leave out unreadable samples and list them')
      .option('--all-classes', 'print the IoU of every class, absent ones too')
      .option('--gpu <n>', 'run on CUDA device n (= VAL.device cuda:n; needs a CUDA build, docs/gpu.md)', parseCount('--gpu')),
    'VAL',
  ))), 'eval').action(async (overrides: string[], options: EvalCommandOptions, command: Command) => {
    const runtimeFlags = runtimeFlagOverrides('VAL', options);
    const { cfg, plan } = await resolveCommandConfig('eval', options as Record<string, unknown>, overrides, DEFAULT_CONFIG, runtimeFlags);
    // --nproc N (or the seed's --devices): each rank scores a shard of the list; the sums are all-reduced exactly.
    if (await launchRanksIfAsked(command, plan.devices !== undefined ? { devices: plan.devices } : undefined)) return;
    const rank = distributedEnv()?.rank ?? 0;
    const records = plan.numVal !== undefined ? (await readSampleList(cfg, 'val')).slice(0, plan.numVal) : undefined;
    const bar = new ProgressBar(rank === 0 ? {} : { enabled: false });
    const interrupt = abortOnInterrupt('evaluation');
    const started = performance.now();
    try {
      const result = await evaluate(cfg, {
        ...(options.checkpoint !== undefined ? { checkpoint: options.checkpoint } : {}),
        ...(options.visualize ? { visualize: true } : {}),
        ...(options.legend === false ? { legend: false } : {}),
        ...(plan.resultDir !== undefined ? { resultDir: plan.resultDir } : {}),
        ...(records !== undefined ? { records } : {}),
        ...(options.workers !== undefined ? { workers: options.workers } : {}),
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.skipBad ? { onBadSample: 'skip' as const } : {}),
        signal: interrupt.signal,
        onEvent: (event) => {
          if (event.type === 'start') {
            if (rank === 0) bar.log(`Evaluating ${event.images} images${event.ranks && event.ranks > 1 ? ` on ${event.ranks} ranks` : ''} with ${event.weights.map((w) => relative('.', w)).join(' + ')}`);
          } else if (event.type === 'image') {
            const elapsed = (performance.now() - started) / 1000;
            bar.update(event.done / event.total, 'Eval', `${event.done}/${event.total} ETA ${formatDuration((elapsed / event.done) * (event.total - event.done))}`);
          } else {
            bar.clear();
            process.stderr.write(`warning: ${event.message}\n`);
          }
        },
      });
      bar.done();
      for (const bad of result.badSamples) process.stderr.write(`skipped ${bad.image}: ${bad.message}\n`);
      if (rank === 0) printEvaluation(result, options.allClasses ?? false);
    } finally {
      bar.done();
      interrupt.dispose();
    }
  });
}
