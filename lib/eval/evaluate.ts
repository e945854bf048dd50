/**
 * `evaluate(config, options)`: the reference's eval.py — every validation image at all
 * DATASET.imgSizes scales, probabilities averaged at the original size, dataset pixel accuracy,
 * per-class IoU, mIoU (plain mean over all classes), the benchmark score and the inference time
 * per image — plus the confusion matrix, a metrics JSON file in DIR with a heat map of the
 * confusion matrix beside it and, with `visualize`, DIR/result/<name>.png panels (image |
 * ground truth | prediction, with a legend of the classes in them).
 *
 * The per-image counts (intersection, union, accuracy, confusion matrix) are computed on a
 * worker thread (ImageCounter): the main thread never loops over an image's pixels.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { classInfoFromConfig, defaultClassName, type ClassInfo } from '../classes.js';
import type { ConfigOverrides, SegtoolConfig } from '../config/index.js';
import { createEvalLoader, type BadSample, type EvalLoader, type SampleRecord } from '../data/index.js';
import { SegtoolError } from '../errors.js';
import { Communicator } from '../distributed/communicator.js';
import { distributedEnv } from '../distributed/env.js';
import { ShardedMetrics, shardRange } from '../distributed/eval.js';
import { SegmentationModel } from '../model.js';
import { setNumThreads } from '../tensor.js';
import { resolveConfigInput, type ConfigInput } from '../config/index.js';
import { readSampleList } from '../data/list.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/files.js';
import { logEvaluation } from '../train/tensorboard.js';
import { expectBoolean, expectInteger, expectObject, expectOneOf, expectString, invalid } from '../validate.js';
import { predictMultiScale } from '../inference/infer.js';
import { ImageCounter } from './counts.js';
import { confusionPng } from './confusion.js';
import { addLegend, legendEntries } from './legend.js';
import { MetricsAccumulator } from './metrics.js';
import { encodePng } from './png.js';
import { visualizationPanel } from './visualize.js';
import { createModelWithWeights, modelClassInfo, resolveClassInfo, resolveWeightFiles } from './weights.js';

export interface EvaluateOptions {
  overrides?: ConfigOverrides;
  /**
   * Weights: VAL.checkpoint by default ("epoch_20.pth" = DIR/encoder_epoch_20.pth and
   * DIR/decoder_epoch_20.pth); or a weights file or folder (its latest encoder_/decoder_ pair).
   */
  checkpoint?: string;
  /** Evaluate this model as it is instead of loading weights (it is not disposed). */
  model?: SegmentationModel;
  /** Samples instead of DATASET.list_val. */
  records?: readonly SampleRecord[];
  /** Write DIR/result/<name>.png panels (default VAL.visualize). */
  visualize?: boolean;
  /** Folder for the panels; default DIR/result. */
  resultDir?: string;
  /** A legend of the classes in each panel under it (default true). */
  legend?: boolean;
  /**
   * Where the metrics JSON goes; default DIR/metrics_<weights>.json (metrics.json for `model`);
   * false = none. The confusion matrix's heat map goes beside it (NAME_confusion.png).
   */
  metricsFile?: string | false;
  /** Data worker threads; default min(TRAIN.workers, 2). */
  workers?: number;
  threads?: number;
  onBadSample?: 'error' | 'skip';
  onEvent?: (event: EvaluateEvent) => void;
  signal?: AbortSignal;
  /**
   * Distributed evaluation (the reference's eval_multipro): each rank scores a contiguous shard
   * of the list and the sums are all-reduced exactly, so every rank returns the metrics of the
   * whole list (equal to one process); rank 0 alone writes the metrics file. Default: a
   * communicator from the torchrun environment when it describes more than one rank.
   */
  communicator?: Communicator;
}

export type EvaluateEvent =
  | { type: 'start'; images: number; weights: string[]; /** Ranks sharing the list (distributed evaluation). */ ranks?: number }
  | { type: 'image'; done: number; total: number; path: string; accuracy: number; seconds: number }
  | { type: 'warning'; message: string };

export interface ClassResult {
  index: number;
  name: string;
  iou: number;
  intersection: number;
  union: number;
  /** Ground-truth pixels of this class. */
  labeledPixels: number;
}

export interface EvaluateResult {
  images: number;
  /** The reference's dataset pixel accuracy, 0..1. */
  pixelAccuracy: number;
  /** Plain mean of the per-class IoU over all DATASET.num_class classes (the reference's mIoU). */
  meanIoU: number;
  /** (pixelAccuracy + meanIoU) / 2, the ADE20K benchmark score. */
  score: number;
  /** Mean IoU over the classes that occur in the ground truth (meaningful when few of them do). */
  meanIoUPresent: number;
  presentClasses: number;
  classes: ClassResult[];
  /**
   * Pixel counts, numClass x numClass: confusion[truth][prediction] (rows ground truth, columns
   * prediction; unlabeled pixels excluded). Its diagonal is the per-class intersection, its row
   * sums the labeled pixels of each class.
   */
  confusion: number[][];
  /** Average inference seconds per image (all scales, averaging and argmax; loading excluded). */
  timePerImage: number;
  imgSizes: number[];
  weights: string[];
  /** Where the class names (and panel colours) came from: 'ADE20K', 'generated', a class list file or a checkpoint. */
  classSource: string;
  metricsFile?: string;
  /** The confusion matrix's heat map (PNG), written beside the metrics file. */
  confusionFile?: string;
  resultDir?: string;
  badSamples: BadSample[];
}

function checkOptions(options: EvaluateOptions): void {
  expectObject('options', options, true);
  if (options.checkpoint !== undefined) expectString('options.checkpoint', options.checkpoint);
  if (options.model !== undefined && !(options.model instanceof SegmentationModel)) {
    throw invalid('options.model', 'a SegmentationModel', options.model);
  }
  if (options.visualize !== undefined) expectBoolean('options.visualize', options.visualize);
  if (options.resultDir !== undefined) expectString('options.resultDir', options.resultDir);
  if (options.legend !== undefined) expectBoolean('options.legend', options.legend);
  if (options.metricsFile !== undefined && options.metricsFile !== false) expectString('options.metricsFile', options.metricsFile);
  if (options.workers !== undefined) expectInteger('options.workers', options.workers, 0, 64);
  if (options.threads !== undefined) expectInteger('options.threads', options.threads, 1, 1024);
  if (options.onBadSample !== undefined) expectOneOf('options.onBadSample', options.onBadSample, ['error', 'skip'] as const);
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw invalid('options.onEvent', 'a function', options.onEvent);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', options.signal);
  if (options.communicator !== undefined && !(options.communicator instanceof Communicator)) {
    throw invalid('options.communicator', 'a Communicator', options.communicator);
  }
}

/** DIR/encoder_epoch_20.pth -> "metrics_epoch_20.json"; other weights -> their stem; a live model -> "metrics.json". */
function metricsName(weights: readonly string[]): string {
  if (weights.length === 0) return 'metrics.json';
  const source = basename(weights[0]!);
  return `metrics_${source.slice(0, source.length - extname(source).length).replace(/^(encoder|decoder)_/, '')}.json`;
}

/**
 * DIR/<name>, unless it holds the metrics of another list: then <name> with the list's stem
 * (metrics_epoch_20-train.json, then -2, -3, ...), so evaluating on another list never
 * overwrites what an earlier evaluation wrote; the same list's file is replaced.
 */
async function metricsPathFor(dir: string, name: string, list: string): Promise<string> {
  const listOf = async (path: string): Promise<string | undefined | null> => {
    try {
      const saved = JSON.parse(await readFile(path, 'utf8')) as { dataset?: { list?: unknown } };
      return typeof saved.dataset?.list === 'string' ? saved.dataset.list : null;
    } catch {
      return undefined; // none (or unreadable)
    }
  };
  const stem = name.slice(0, name.length - '.json'.length);
  const listStem = basename(list, extname(list)).replace(/[^\w.-]+/g, '_');
  for (let n = 0; ; n++) {
    const candidate = join(dir, n === 0 ? name : `${stem}-${listStem}${n === 1 ? '' : `-${n}`}.json`);
    const saved = await listOf(candidate);
    if (saved === undefined || (saved !== null && resolve(saved) === resolve(list))) return candidate;
  }
}

/** Evaluates a model on the validation list; see EvaluateOptions. */
export async function evaluate(config: ConfigInput, options: EvaluateOptions = {}): Promise<EvaluateResult> {
  checkOptions(options);
  const cfg = await resolveConfigInput(config, options.overrides);
  if (options.threads !== undefined) setNumThreads(options.threads);
  const checkpoint = options.checkpoint ?? cfg.VAL.checkpoint;
  const weights = options.model ? [] : resolveWeightFiles(cfg, checkpoint, options.checkpoint ? 'checkpoint' : 'VAL.checkpoint');
  const allRecords = options.records ? [...options.records] : await readSampleList(cfg, 'val');
  const env = options.communicator ? undefined : distributedEnv();
  const ownCommunicator = env && env.worldSize > 1 ? await Communicator.create({ rank: env.rank, worldSize: env.worldSize }) : undefined;
  let failed = false;
  try {
    return await evaluateShard(cfg, options, allRecords, weights, options.communicator ?? ownCommunicator);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    // The last barrier only after success: a rank that failed (any error) must not wait there
    // for ranks still in a collective; it reports and exits, and they fail within the timeout
    // (or are stopped by the launcher).
    if (ownCommunicator && !failed) await ownCommunicator.destroy().catch(() => undefined);
  }
}

async function evaluateShard(
  cfg: SegtoolConfig,
  options: EvaluateOptions,
  allRecords: SampleRecord[],
  weights: string[],
  communicator: Communicator | undefined,
): Promise<EvaluateResult> {
  const emit = (event: EvaluateEvent): void => options.onEvent?.(event);
  const rank = communicator?.rank ?? 0;
  const worldSize = communicator?.worldSize ?? 1;
  if (allRecords.length < worldSize) {
    throw new SegtoolError('ERR_INVALID_ARG', `Cannot evaluate ${allRecords.length} image(s) on ${worldSize} ranks: use at most one rank per image`);
  }
  const shard = shardRange(allRecords.length, rank, worldSize);
  const records = allRecords.slice(shard.start, shard.end);
  const visualize = options.visualize ?? cfg.VAL.visualize;
  const resultDir = resolve(options.resultDir ?? join(cfg.DIR, 'result'));

  const classInfo = options.model ? await liveModelClasses(cfg, options.model) : await resolveClassInfo(cfg, weights);
  const model = options.model ?? (await createModelWithWeights(cfg, weights, 'VAL', classInfo));
  const wasTraining = options.model?.info.training ?? false;
  model.eval();
  let loader: EvalLoader | undefined;
  const counter = new ImageCounter(cfg.DATASET.num_class);
  try {
    loader = await createEvalLoader({
      records,
      imgSizes: cfg.DATASET.imgSizes,
      imgMaxSize: cfg.DATASET.imgMaxSize,
      paddingConstant: cfg.DATASET.padding_constant,
      numClass: cfg.DATASET.num_class,
      normalize: cfg.DATASET.normalization,
      resize: cfg.DATASET.resize,
      labels: true,
      keepOriginal: visualize,
      workers: options.workers ?? Math.min(cfg.TRAIN.workers, 2),
      onBadSample: options.onBadSample ?? 'error',
    });
    if (visualize) await mkdir(resultDir, { recursive: true });
    emit({ type: 'start', images: allRecords.length, weights, ...(worldSize > 1 ? { ranks: worldSize } : {}) });
    const numClass = cfg.DATASET.num_class;
    const sharded = new ShardedMetrics(numClass, allRecords.length);
    const legend = visualize && (options.legend ?? true);
    let inferenceSeconds = 0;
    let done = 0;
    for await (const sample of loader) {
      if (options.signal?.aborted) throw new SegtoolError('ERR_ABORTED', `Evaluation stopped after ${done} of ${records.length} images`);
      const tic = performance.now();
      const { labels: pred, counts: predicted } = await predictMultiScale(model, sample.images, sample.height, sample.width, { counts: legend });
      const seconds = (performance.now() - tic) / 1000;
      inferenceSeconds += seconds;
      const label = sample.label!.data;
      const image = await counter.count(pred, label);
      sharded.addImage(shard.start + sample.index, image);
      if (visualize) {
        let panel = visualizationPanel({
          image: { data: sample.original!.data, width: sample.width, height: sample.height, channels: 3 },
          label,
          pred,
          palette: classInfo.palette,
        });
        if (legend) panel = await addLegend(panel, legendEntries(panelClasses(image.confusion, predicted!, numClass), classInfo.names, classInfo.palette));
        const name = basename(sample.path, extname(sample.path));
        await writeFileAtomic(join(resultDir, `${name}.png`), await encodePng(panel.data, panel.width, panel.height));
      }
      done++;
      emit({ type: 'image', done, total: records.length, path: sample.path, accuracy: image.accuracy, seconds });
    }
    // Every rank's sums, exactly (a single process: its own).
    const metrics: MetricsAccumulator = await sharded.reduce(worldSize > 1 ? communicator! : null);
    if (worldSize > 1) {
      const totals = await communicator!.allReduceFloat64([inferenceSeconds, done]);
      inferenceSeconds = totals[0]!;
      done = totals[1]!;
    }
    if (done === 0) throw new SegtoolError('ERR_BAD_FILE', 'No validation image could be evaluated (every sample was bad)');

    const summary = metrics.summary();
    const confusion = metrics.confusionRows()!; // every image was counted with its confusion matrix
    // Ground-truth pixels of each class: the row sums (predictions are always classes of the model).
    const labeledPixels = confusion.map((row) => row.reduce((a, b) => a + b, 0));
    const classes: ClassResult[] = Array.from(summary.iou, (iou, index) => ({
      index,
      name: classInfo.names[index] ?? defaultClassName(index),
      iou,
      intersection: metrics.intersection[index]!,
      union: metrics.union[index]!,
      labeledPixels: labeledPixels[index]!,
    }));
    const present = classes.filter((c) => c.labeledPixels > 0);
    const result: EvaluateResult = {
      images: summary.images,
      pixelAccuracy: summary.pixelAccuracy,
      meanIoU: summary.meanIoU,
      score: summary.score,
      meanIoUPresent: present.length === 0 ? 0 : present.reduce((s, c) => s + c.iou, 0) / present.length,
      presentClasses: present.length,
      classes,
      confusion,
      timePerImage: inferenceSeconds / done,
      imgSizes: [...cfg.DATASET.imgSizes],
      weights,
      classSource: classInfo.source,
      badSamples: [...loader.badSamples],
    };
    if (visualize) result.resultDir = resultDir;
    if (result.badSamples.length > 0) emit({ type: 'warning', message: `${result.badSamples.length} bad sample(s) were skipped` });
    if (options.metricsFile !== false && rank === 0) {
      const file = resolve(options.metricsFile ?? (await metricsPathFor(cfg.DIR, metricsName(weights), cfg.DATASET.list_val)));
      result.metricsFile = file;
      await writeJsonAtomic(file, metricsJson(cfg, result));
      result.confusionFile = confusionFileFor(file);
      await writeFileAtomic(result.confusionFile, await confusionPng(confusion, result.classes.map((c) => c.name)));
      // An evaluation on record (it has a metrics file) of the run's own epoch_N weights: its
      // scores go to the run's TensorBoard log at the end of that epoch.
      const epoch = trainedEpoch(cfg, weights);
      if (cfg.TRAIN.tensorboard && epoch !== undefined) await logEvaluation(resolve(cfg.DIR), epoch * cfg.TRAIN.epoch_iters, result);
    }
    return result;
  } finally {
    await counter.close();
    await loader?.close();
    if (!options.model) model.dispose();
    else if (wasTraining) model.train();
  }
}

/**
 * Classes for a model handed in: DATASET.class_info when set; else those it was loaded with
 * (loadModel) when the count fits the config; else the defaults.
 */
async function liveModelClasses(cfg: SegtoolConfig, model: SegmentationModel): Promise<ClassInfo> {
  const loaded = modelClassInfo(model);
  if (!cfg.DATASET.class_info && loaded && loaded.names.length === cfg.DATASET.num_class) return loaded;
  return classInfoFromConfig(cfg);
}

/** N when the weights are DIR's own encoder_epoch_N.pth / decoder_epoch_N.pth (a run's epoch). */
function trainedEpoch(cfg: SegtoolConfig, weights: readonly string[]): number | undefined {
  const match = weights.length > 0 ? /^(?:encoder|decoder)_epoch_(\d+)\.pth$/.exec(basename(weights[0]!)) : null;
  return match && resolve(dirname(weights[0]!)) === resolve(cfg.DIR) ? Number(match[1]) : undefined;
}

/** Where the heat map of a metrics file goes: metrics_epoch_20.json -> metrics_epoch_20_confusion.png. */
export function confusionFileFor(metricsFile: string): string {
  const ext = extname(metricsFile);
  return `${ext ? metricsFile.slice(0, -ext.length) : metricsFile}_confusion.png`;
}

/** Classes a panel shows: those in the ground truth (the confusion matrix's rows) and the prediction (native counts), most pixels first. */
function panelClasses(confusion: Float64Array, predicted: BigInt64Array, numClass: number): number[] {
  const pixels = new Float64Array(numClass);
  for (let y = 0; y < numClass; y++) {
    let sum = 0;
    for (let x = 0; x < numClass; x++) sum += confusion[y * numClass + x]!;
    pixels[y] = sum + Number(predicted[y] ?? 0n);
  }
  const classes: number[] = [];
  pixels.forEach((p, c) => {
    if (p > 0) classes.push(c);
  });
  return classes.sort((a, b) => pixels[b]! - pixels[a]! || a - b);
}

function metricsJson(cfg: SegtoolConfig, result: EvaluateResult): unknown {
  return {
    model: { encoder: cfg.MODEL.arch_encoder, decoder: cfg.MODEL.arch_decoder, weights: result.weights },
    dataset: {
      list: cfg.DATASET.list_val,
      images: result.images,
      numClass: cfg.DATASET.num_class,
      imgSizes: result.imgSizes,
      classInfo: result.classSource,
    },
    pixelAccuracy: result.pixelAccuracy,
    meanIoU: result.meanIoU,
    score: result.score,
    meanIoUPresent: result.meanIoUPresent,
    presentClasses: result.presentClasses,
    timePerImage: result.timePerImage,
    classes: result.classes,
    confusion: result.confusion,
    badSamples: result.badSamples,
    date: new Date().toISOString(),
  };
}
