/**
 * The bundled demo (`segtool demo`, `npm run demo`): generate a synthetic ADE20K-layout dataset,
 * train a small model on the CPU for a few minutes, evaluate it on held-out scenes and write
 * image | ground truth | prediction panels. Deterministic for a given seed (and thread count).
 *
 * The recipe suits a few CPU minutes, not the reference's 20 GPU epochs: mobilenetv2dilated +
 * c1_deepsup (the reference's lightest bundled pair) from scratch at 128x128, BatchNorm momentum
 * 0.1 (the reference's 0.001 leaves the running statistics near their initial values after a
 * few hundred steps, so evaluation-mode predictions are poor), learning rate 0.05 (0.1 was worse),
 * one test scale. Measured on the 2-core development machine, 300 scenes of 11 classes, same
 * seed: resnet18dilated + c1_deepsup, 200 iterations of 4 images: mIoU 0.64 for 400 CPU-seconds;
 * mobilenetv2dilated + c1_deepsup, 200 / 400 / 500 iterations: 0.51 / 0.62 / 0.67 for 160 / 320 /
 * 370 CPU-seconds. The default, 450 iterations, needs about 340 CPU-seconds: under 4 minutes on
 * 2 idle cores.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { defaultConfig, mergeConfig, type PartialConfig, type SegtoolConfig } from '../config/index.js';
import { evaluate, type EvaluateEvent, type EvaluateResult } from '../eval/evaluate.js';
import { writeJsonAtomic } from '../io/files.js';
import { train, type TrainEvent, type TrainResult } from '../train/train.js';
import { expectInteger, expectObject, expectString } from '../validate.js';
import { generateSyntheticDataset, type SyntheticDataset } from './synthetic.js';

export interface DemoOptions {
  /** Working folder: data/, ckpt/ (checkpoints, metrics) and result/ (panels). Default ./segtool-demo. */
  dir?: string;
  seed?: number;
  /** Training and held-out images; defaults 300 and 50. */
  trainImages?: number;
  valImages?: number;
  /** Image side in pixels; default 128. */
  size?: number;
  epochs?: number;
  /** Iterations per epoch. */
  epochIters?: number;
  batchSize?: number;
  /** Extra config values over the demo's (e.g. { MODEL: { arch_encoder: 'mobilenetv2dilated', ... } }). */
  config?: PartialConfig;
  threads?: number;
  onTrainEvent?: (event: TrainEvent) => void;
  onEvaluateEvent?: (event: EvaluateEvent) => void;
  onStep?: (message: string) => void;
  signal?: AbortSignal;
}

export interface DemoResult {
  dataset: SyntheticDataset;
  config: SegtoolConfig;
  train: TrainResult;
  evaluation: EvaluateResult;
  /** mIoU of always predicting the most common class, over the same classes as meanIoUPresent. */
  majorityBaseline: number;
  seconds: { generate: number; train: number; evaluate: number; total: number };
}

export const DEMO_DEFAULTS = Object.freeze({
  dir: 'segtool-demo',
  seed: 304,
  trainImages: 300,
  valImages: 50,
  size: 128,
  epochs: 5,
  epochIters: 90,
  batchSize: 4,
});

/** The config the demo trains and evaluates with. */
export function demoConfig(dataset: SyntheticDataset, dir: string, options: Required<Pick<DemoOptions, 'seed' | 'size' | 'epochs' | 'epochIters' | 'batchSize'>>, extra: PartialConfig = {}): SegtoolConfig {
  const base = mergeConfig(defaultConfig(), {
    DIR: join(dir, 'ckpt'),
    DATASET: {
      root_dataset: dataset.root,
      list_train: dataset.trainList,
      list_val: dataset.valList,
      num_class: 150,
      imgSizes: [options.size],
      imgMaxSize: Math.max(1000, options.size * 2),
      padding_constant: 8,
      segm_downsampling_rate: 8,
      random_flip: true,
    },
    MODEL: { arch_encoder: 'mobilenetv2dilated', arch_decoder: 'c1_deepsup', fc_dim: 320, pretrained: false }, // the demo shows training from scratch
    TRAIN: {
      batch_size_per_gpu: options.batchSize,
      num_epoch: options.epochs,
      epoch_iters: options.epochIters,
      lr_encoder: 0.05,
      lr_decoder: 0.05,
      lr_pow: 0.9,
      beta1: 0.9,
      weight_decay: 1e-4,
      deep_sup_scale: 0.4,
      bn_momentum: 0.1,
      workers: 1,
      disp_iter: 10,
      seed: options.seed,
    },
    VAL: { visualize: true, checkpoint: `epoch_${options.epochs}.pth` },
    TEST: { checkpoint: `epoch_${options.epochs}.pth`, result: join(dir, 'test') },
  });
  return mergeConfig(base, extra, 'demo options.config');
}

/** Runs the demo end to end; see DemoOptions. */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  expectObject('options', options, true);
  const dir = resolve(options.dir === undefined ? DEMO_DEFAULTS.dir : expectString('options.dir', options.dir));
  const settings = {
    seed: expectInteger('options.seed', options.seed ?? DEMO_DEFAULTS.seed, 0, Number.MAX_SAFE_INTEGER),
    size: expectInteger('options.size', options.size ?? DEMO_DEFAULTS.size, 32, 1024),
    epochs: expectInteger('options.epochs', options.epochs ?? DEMO_DEFAULTS.epochs, 1),
    epochIters: expectInteger('options.epochIters', options.epochIters ?? DEMO_DEFAULTS.epochIters, 1),
    batchSize: expectInteger('options.batchSize', options.batchSize ?? DEMO_DEFAULTS.batchSize, 1),
  };
  const trainImages = expectInteger('options.trainImages', options.trainImages ?? DEMO_DEFAULTS.trainImages, 1);
  const valImages = expectInteger('options.valImages', options.valImages ?? DEMO_DEFAULTS.valImages, 1);
  const step = options.onStep ?? (() => {});
  const started = performance.now();

  // The dataset is reused when it was generated with the same settings.
  const dataDir = join(dir, 'data');
  const stampPath = join(dataDir, 'dataset.json');
  const stamp = { seed: settings.seed, size: settings.size, trainImages, valImages, generator: 1 };
  let dataset: SyntheticDataset;
  const previous = existsSync(stampPath) ? (JSON.parse(await readFile(stampPath, 'utf8')) as { stamp: unknown; dataset: SyntheticDataset }) : undefined;
  if (previous && JSON.stringify(previous.stamp) === JSON.stringify(stamp)) {
    dataset = previous.dataset;
    step(`Using the synthetic dataset in ${dataDir}`);
  } else {
    step(`Generating ${trainImages} training and ${valImages} held-out scenes (${settings.size}x${settings.size}) in ${dataDir}`);
    await rm(dataDir, { recursive: true, force: true });
    dataset = await generateSyntheticDataset(dataDir, { train: trainImages, val: valImages, width: settings.size, seed: settings.seed });
    await writeJsonAtomic(stampPath, { stamp, dataset });
  }
  const generated = performance.now();

  const cfg = demoConfig(dataset, dir, settings, options.config);
  // A fresh run each time: the demo shows training from scratch, not resuming an old one.
  await rm(cfg.DIR, { recursive: true, force: true });
  step(
    `Training ${cfg.MODEL.arch_encoder} + ${cfg.MODEL.arch_decoder} from scratch: ${cfg.TRAIN.num_epoch} epochs x ${cfg.TRAIN.epoch_iters} iterations, ` +
      `batch ${cfg.TRAIN.batch_size_per_gpu}, BatchNorm momentum ${cfg.TRAIN.bn_momentum}`,
  );
  const trained = await train(cfg, {
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.onTrainEvent ? { onEvent: options.onTrainEvent } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const trainedAt = performance.now();

  step(`Evaluating on ${valImages} held-out scenes; panels go to ${join(dir, 'result')}`);
  const evaluation = await evaluate(cfg, {
    visualize: true,
    resultDir: join(dir, 'result'),
    workers: 1,
    ...(options.onEvaluateEvent ? { onEvent: options.onEvaluateEvent } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const done = performance.now();

  const present = evaluation.classes.filter((c) => c.labeledPixels > 0);
  const labeled = present.reduce((s, c) => s + c.labeledPixels, 0);
  const majority = Math.max(...present.map((c) => c.labeledPixels));
  return {
    dataset,
    config: cfg,
    train: trained,
    evaluation,
    majorityBaseline: present.length === 0 ? 0 : majority / labeled / present.length,
    seconds: {
      generate: (generated - started) / 1000,
      train: (trainedAt - generated) / 1000,
      evaluate: (done - trainedAt) / 1000,
      total: (done - started) / 1000,
    },
  };
}
