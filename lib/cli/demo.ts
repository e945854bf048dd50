/** `segtool demo` (what `npm run demo` runs): synthetic scenes -> train on CPU -> mIoU and pictures. */
import { Command } from 'commander';
import { relative } from 'node:path';
import { DEMO_DEFAULTS, runDemo } from '../demo/demo.js';
import { abortOnInterrupt, parseCount } from './common.js';
import { formatDuration, ProgressBar } from './progress.js';
import { trainReporter } from './train.js';

interface DemoCommandOptions {
  dir: string;
  seed: number;
  images: number;
  val: number;
  size: number;
  epochs: number;
  iters: number;
  batch: number;
  threads?: number;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('generate synthetic ADE20K-style scenes, train a small model on the CPU for a few minutes, evaluate it and write pictures')
    .option('--dir <dir>', 'working folder (data, checkpoints, pictures)', DEMO_DEFAULTS.dir)
    .option('--seed <n>', 'seed of the scenes, the initial weights and the batches', parseCount('--seed'), DEMO_DEFAULTS.seed)
    .option('--images <n>', 'training scenes', parseCount('--images', 1), DEMO_DEFAULTS.trainImages)
    .option('--val <n>', 'held-out scenes', parseCount('--val', 1), DEMO_DEFAULTS.valImages)
    .option('--size <pixels>', 'scene width and height', parseCount('--size', 32), DEMO_DEFAULTS.size)
    .option('--epochs <n>', 'epochs', parseCount('--epochs', 1), DEMO_DEFAULTS.epochs)
    .option('--iters <n>', 'iterations per epoch', parseCount('--iters', 1), DEMO_DEFAULTS.epochIters)
    .option('--batch <n>', 'images per iteration', parseCount('--batch', 1), DEMO_DEFAULTS.batchSize)
    .option('--threads <n>', 'LibTorch threads (default: every core)', parseCount('--threads', 1))
    .action(async (options: DemoCommandOptions) => {
      const bar = new ProgressBar();
      const interrupt = abortOnInterrupt('the demo');
      try {
        const result = await runDemo({
          dir: options.dir,
          seed: options.seed,
          trainImages: options.images,
          valImages: options.val,
          size: options.size,
          epochs: options.epochs,
          epochIters: options.iters,
          batchSize: options.batch,
          ...(options.threads !== undefined ? { threads: options.threads } : {}),
          signal: interrupt.signal,
          onStep: (message) => bar.log(message),
          onTrainEvent: trainReporter(bar),
          onEvaluateEvent: (event) => {
            if (event.type === 'image') bar.update(event.done / event.total, 'Eval', `${event.done}/${event.total}`);
          },
        });
        bar.done();
        const ev = result.evaluation;
        const present = ev.classes.filter((c) => c.labeledPixels > 0);
        console.log('');
        console.log('Per-class IoU on the held-out scenes:');
        for (const c of present) console.log(`  ${c.name.padEnd(10)} ${c.iou.toFixed(3)}`);
        console.log(
          `mIoU over the ${ev.presentClasses} classes in the scenes: ${ev.meanIoUPresent.toFixed(3)} ` +
            `(always guessing the most common class: ${result.majorityBaseline.toFixed(3)}); pixel accuracy ${(ev.pixelAccuracy * 100).toFixed(2)}%`,
        );
        console.log(
          `mIoU over all ${ev.classes.length} ADE20K classes (the reference's definition; ${ev.classes.length - ev.presentClasses} never occur in these scenes): ${ev.meanIoU.toFixed(4)}`,
        );
        console.log(
          `Time: ${formatDuration(result.seconds.total)} (scenes ${formatDuration(result.seconds.generate)}, training ${formatDuration(result.seconds.train)}, ` +
            `evaluation ${formatDuration(result.seconds.evaluate)})`,
        );
        console.log(`Pictures (image | ground truth | prediction): ${relative('.', ev.resultDir ?? '') || '.'}/`);
        console.log(`Metrics: ${relative('.', ev.metricsFile ?? '')}; weights: ${relative('.', result.train.weights?.encoder ?? '')} and decoder_*`);
        console.log(`Try it on a picture: segtool test --cfg ${relative('.', `${result.config.DIR}/config.yaml`)} --imgs ${relative('.', result.dataset.root)}/images/validation`);
      } finally {
        bar.done();
        interrupt.dispose();
      }
    });
}
