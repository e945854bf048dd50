/**
 * `train(config, options)`: the reference's training recipe (train.py) on segtool's model and
 * data pipeline — SGD with momentum, poly learning rate recomputed every iteration over
 * epoch_iters x num_epoch, separate encoder and decoder rates, deep supervision, fix_bn, a log
 * line every disp_iter — plus what the reference lacked: BatchNorm momentum from the config,
 * atomic per-epoch checkpoints that resume exactly (weights, momentum buffers, epoch, data
 * streams), and events for a progress display.
 *
 * Reproducibility: the data stream of epoch E is seeded from (TRAIN.seed, E), so an epoch's
 * batches do not depend on what ran before it and a run resumed after epoch E sees the batches
 * an uninterrupted run would have seen.
 */
import { applyRuntime, runtimeFromConfig } from '../device.js';
import { readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadWeights, manualSeed, restoreTrainingCheckpoint, saveReferenceWeights, saveTrainingCheckpoint, summarizeKeys } from '../checkpoint.js';
import { classInfoFromConfig } from '../classes.js';
import {
  flipProbability,
  getConfigValue,
  hasDeepSupervision,
  saveConfig,
  type ConfigKey,
  type ConfigOverrides,
  type SegtoolConfig,
} from '../config/index.js';
import { createTrainLoader, deriveSeed, readImageSizes, type BadSample, type SampleRecord } from '../data/index.js';
import { SegtoolError } from '../errors.js';
import { Communicator, type DistBackend } from '../distributed/communicator.js';
import { distributedEnv } from '../distributed/env.js';
import { SegmentationModel, type ModelOptions } from '../model.js';
import { loadNative } from '../native.js';
import { setNumThreads } from '../tensor.js';
import { expectBoolean, expectInteger, expectObject, expectOneOf, expectString, invalid } from '../validate.js';
import { resolveConfigInput, type ConfigInput } from '../config/index.js';
import { readSampleList } from '../data/list.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/files.js';
import { AverageMeter, formatTrainLine, historyCsv } from './log.js';
import { tensorBoardDir, tensorBoardLogger, TensorBoardWriter } from './tensorboard.js';
import { FROM_SCRATCH_WARNING, loadImagenetEncoder } from './pretrained.js';
import { learningRatesAt, type ScheduleSettings } from './schedule.js';

export interface TrainOptions {
  /** KEY VALUE overrides applied over the config. */
  overrides?: ConfigOverrides;
  /**
   * Continue a run: `true` = the latest checkpoint_epoch_N.safetensors in DIR, or a checkpoint path.
   * Weights, momentum buffers, epoch, history and the data streams continue where it stopped.
   */
  resume?: boolean | string;
  /** Samples to train on instead of DATASET.list_train. */
  records?: readonly SampleRecord[];
  /** Data worker threads (default TRAIN.workers; the batches depend on it). */
  workers?: number;
  /** LibTorch threads for this process. */
  threads?: number;
  /** 'skip' leaves out unreadable samples and reports them (default 'error'). */
  onBadSample?: 'error' | 'skip';
  /** With MODEL.weights_*: leave out tensors of another shape (a head for another class count). */
  skipMismatchedHead?: boolean;
  /** Training checkpoints to keep (the newest ones); reference-format weights are kept for every epoch. Default 1. */
  keepCheckpoints?: number;
  /** Progress, log lines and checkpoints as they happen. */
  onEvent?: (event: TrainEvent) => void;
  /** Stops training between iterations (the last epoch's checkpoint stays). */
  signal?: AbortSignal;
  /**
   * Distributed training (one process per rank): this rank's communicator. Default: one made
   * from the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) when it
   * describes more than one rank, destroyed at the end. Every rank loads its own batches
   * (TRAIN.batch_size_per_gpu each, its own data stream), gradients are averaged over ranks,
   * and only rank 0 writes checkpoints, history and config.
   */
  communicator?: Communicator;
  /** BatchNorm across ranks: 'exact' (default; BatchNorm over all ranks' batches), 'reference' (the reference's formula and buffers) or false (per rank). */
  syncBatchNorm?: 'exact' | 'reference' | false;
  /** Base URL for the ImageNet-pretrained encoder (default SEGTOOL_MIRROR, else the reference's host). */
  mirror?: string;
}

export interface TrainHistoryEntry {
  /** Fractional epoch, as the reference's history: epoch - 1 + iteration / epoch_iters. */
  epoch: number;
  /** Global iteration, 0-based. */
  iteration: number;
  loss: number;
  /** Pixel accuracy of this batch, 0..1. */
  accuracy: number;
  lrEncoder: number;
  lrDecoder: number;
}

export interface IterationEvent {
  type: 'iteration';
  epoch: number;
  /** Within the epoch, 0-based. */
  iteration: number;
  epochIters: number;
  /** Global, 0-based. */
  globalIteration: number;
  maxIterations: number;
  loss: number;
  accuracy: number;
  averageLoss: number;
  /** Percent, averaged over the epoch so far. */
  averageAccuracy: number;
  lrEncoder: number;
  lrDecoder: number;
  /** Average seconds per iteration this epoch, data included. */
  time: number;
  dataTime: number;
}

export type TrainEvent =
  | {
      type: 'start';
      dir: string;
      firstEpoch: number;
      numEpoch: number;
      epochIters: number;
      samples: number;
      resumedFrom?: string;
      /** This process's rank and the job's world size (0 and 1 for a single process). */
      rank: number;
      worldSize: number;
    }
  | IterationEvent
  | { type: 'log'; line: string }
  | { type: 'epoch'; epoch: number; averageLoss: number; averageAccuracy: number; seconds: number }
  | { type: 'checkpoint'; epoch: number; files: string[] }
  | { type: 'warning'; message: string }
  /** The pretrained encoder is being downloaded (bytes so far; total when the server says). */
  | { type: 'download'; url: string; received: number; total?: number };

export interface TrainResult {
  dir: string;
  /** The last epoch trained (the epoch of the final checkpoint). */
  epoch: number;
  /** Global iterations done, resumed ones included. */
  iterations: number;
  history: TrainHistoryEntry[];
  /** The training checkpoint of the last epoch (resume from it). */
  checkpoint?: string;
  /** Reference-format weights of the last epoch. */
  weights?: { encoder: string; decoder: string };
  /** Average loss and accuracy (percent) of the last epoch trained in this call. */
  averageLoss?: number;
  averageAccuracy?: number;
  badSamples: BadSample[];
  seconds: number;
}

/** How the data streams are seeded, stored in checkpoints so a resume can check it. */
interface RngState {
  scheme: 'per-epoch';
  seed: number;
  workers: number;
  rank: number;
  /** Ranks in the job that wrote it (absent: 1). */
  worldSize?: number;
}

const CHECKPOINT_PATTERN = /^checkpoint_epoch_(\d+)\.safetensors$/;

/**
 * The model a config trains. TRAIN.bn_momentum at the reference's 0.001 (its SyncBN default)
 * leaves hrnetv2's encoder at the 0.1 the reference's hrnet.py hard-codes; any other value
 * applies to every BatchNorm.
 */
export function trainingModelOptions(cfg: SegtoolConfig): ModelOptions {
  return {
    encoder: cfg.MODEL.arch_encoder,
    decoder: cfg.MODEL.arch_decoder,
    fcDim: cfg.MODEL.fc_dim,
    numClass: cfg.DATASET.num_class,
    ...(cfg.TRAIN.bn_momentum === REFERENCE_BN_MOMENTUM ? {} : { bnMomentum: cfg.TRAIN.bn_momentum }),
  };
}

const REFERENCE_BN_MOMENTUM = 0.001;

export function trainingCheckpointPath(dir: string, epoch: number): string {
  return join(dir, `checkpoint_epoch_${epoch}.safetensors`);
}

/** Training checkpoints in `dir`, oldest epoch first. */
export async function listTrainingCheckpoints(dir: string): Promise<Array<{ epoch: number; path: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .map((name) => ({ match: CHECKPOINT_PATTERN.exec(name), name }))
    .filter((e) => e.match !== null)
    .map((e) => ({ epoch: Number(e.match![1]), path: join(dir, e.name) }))
    .sort((a, b) => a.epoch - b.epoch);
}

function checkOptions(options: TrainOptions): void {
  expectObject('options', options, true);
  if (options.resume !== undefined && typeof options.resume !== 'string') expectBoolean('options.resume', options.resume);
  if (typeof options.resume === 'string') expectString('options.resume', options.resume);
  if (options.workers !== undefined) expectInteger('options.workers', options.workers, 0, 64);
  if (options.threads !== undefined) expectInteger('options.threads', options.threads, 1, 1024);
  if (options.onBadSample !== undefined) expectOneOf('options.onBadSample', options.onBadSample, ['error', 'skip'] as const);
  if (options.skipMismatchedHead !== undefined) expectBoolean('options.skipMismatchedHead', options.skipMismatchedHead);
  if (options.keepCheckpoints !== undefined) expectInteger('options.keepCheckpoints', options.keepCheckpoints, 1);
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw invalid('options.onEvent', 'a function', options.onEvent);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', options.signal);
  if (options.communicator !== undefined && !(options.communicator instanceof Communicator)) {
    throw invalid('options.communicator', 'a Communicator', options.communicator);
  }
  if (options.syncBatchNorm !== undefined && options.syncBatchNorm !== false) {
    expectOneOf('options.syncBatchNorm', options.syncBatchNorm, ['exact', 'reference'] as const);
  }
  if (options.mirror !== undefined) expectString('options.mirror', options.mirror);
  if (options.records !== undefined && (!Array.isArray(options.records) || options.records.length === 0)) {
    throw invalid('options.records', 'a non-empty array of sample records', options.records);
  }
}

/** Keys that change the batches or the schedule: a resume with other values is not the same run. */
const STREAM_KEYS = [
  'TRAIN.seed',
  'TRAIN.epoch_iters',
  'TRAIN.num_epoch',
  'TRAIN.batch_size_per_gpu',
  'TRAIN.lr_encoder',
  'TRAIN.lr_decoder',
  'TRAIN.lr_pow',
  'DATASET.imgSizes',
] as const satisfies readonly ConfigKey[];

async function resolveResumePath(dir: string, resume: boolean | string): Promise<string> {
  if (typeof resume === 'string') return resume;
  const found = await listTrainingCheckpoints(dir);
  if (found.length === 0) {
    throw new SegtoolError('ERR_NOT_FOUND', `Cannot resume: no training checkpoint (checkpoint_epoch_N.safetensors) in ${dir}`);
  }
  return found[found.length - 1]!.path;
}

/**
 * The process group of a rank: NCCL for CUDA ranks (--gpus: gradients and SyncBN statistics stay
 * on the GPU), Gloo for CPU ranks. A CUDA rank in a build without NCCL is refused: Gloo would copy
 * every collective through the host, and segtool's Gloo path takes CPU tensors only.
 */
export function rankBackend(device: string | undefined, available: readonly string[]): DistBackend {
  if (!device?.startsWith('cuda')) return 'gloo';
  if (available.includes('nccl')) return 'nccl';
  throw new SegtoolError(
    'ERR_DISTRIBUTED',
    `This rank trains on ${device} but this segtool build has no NCCL backend (available: ${available.join(', ') || 'none'}). ` +
      'Build against a CUDA LibTorch that ships NCCL (a pip-installed PyTorch 2.x, docs/gpu.md), or train CPU ranks with --nproc.',
  );
}

/** Trains a model as the config says; see TrainOptions for resuming and progress. */
export async function train(config: ConfigInput, options: TrainOptions = {}): Promise<TrainResult> {
  checkOptions(options);
  const started = performance.now();
  const cfg = await resolveConfigInput(config, options.overrides);
  const emit = (event: TrainEvent): void => options.onEvent?.(event);
  if (options.threads !== undefined) setNumThreads(options.threads);
  const dir = resolve(cfg.DIR);
  const workers = options.workers ?? cfg.TRAIN.workers;
  // Distributed: this rank's communicator (given, or from the torchrun environment).
  const env = options.communicator ? undefined : distributedEnv();
  const ownCommunicator =
    env && env.worldSize > 1
      ? await Communicator.create({ rank: env.rank, worldSize: env.worldSize, backend: rankBackend(env.device, (await loadNative()).distBackends()) })
      : undefined;
  const communicator = options.communicator ?? ownCommunicator;
  let failed = false;
  try {
    return await trainRanks(cfg, options, emit, started, dir, workers, communicator);
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

async function trainRanks(
  cfg: SegtoolConfig,
  options: TrainOptions,
  emit: (event: TrainEvent) => void,
  started: number,
  dir: string,
  workers: number,
  communicator: Communicator | undefined,
): Promise<TrainResult> {
  const rank = communicator?.rank ?? 0;
  const worldSize = communicator?.worldSize ?? 1;
  const writer = rank === 0; // only rank 0 writes checkpoints, history and the config
  // With --gpus the launcher gives each rank its own device (SEGTOOL_DEVICE), over TRAIN.device.
  const rankDevice = communicator ? distributedEnv()?.device : undefined;
  const runtime = runtimeFromConfig(rankDevice ? { ...cfg, TRAIN: { ...cfg.TRAIN, device: rankDevice } } : cfg, 'TRAIN'); // an unavailable device fails before any work

  const records = options.records ? options.records.map((r) => ({ ...r })) : await readSampleList(cfg, 'train');
  // The run's class names and colours, stored in its checkpoints (read now: a bad DATASET.class_info fails before training).
  const classes = await classInfoFromConfig(cfg);

  manualSeed(cfg.TRAIN.seed); // the reference's torch.manual_seed: initial weights follow the seed
  const model = await SegmentationModel.create(trainingModelOptions(cfg));
  let tensorboard: TensorBoardWriter | undefined;
  try {
    if (writer && cfg.TRAIN.tensorboard) {
      // TRAIN.tensorboard: the run's scalars from its events, in DIR/tensorboard.
      tensorboard = await TensorBoardWriter.open(tensorBoardDir(dir));
      const toBoard = tensorBoardLogger(tensorboard);
      const report = emit;
      emit = (event) => {
        toBoard(event);
        report(event);
      };
    }
    if (model.outputStride !== cfg.DATASET.segm_downsampling_rate) {
      throw new SegtoolError(
        'ERR_CONFIG',
        `DATASET.segm_downsampling_rate is ${cfg.DATASET.segm_downsampling_rate} but ${cfg.MODEL.arch_encoder} + ${cfg.MODEL.arch_decoder} ` +
          `predicts at 1/${model.outputStride} of the input; set DATASET.segm_downsampling_rate ${model.outputStride}`,
      );
    }

    let lastEpoch = cfg.TRAIN.start_epoch;
    let history: TrainHistoryEntry[] = [];
    let resumedFrom: string | undefined;
    if (options.resume !== undefined && options.resume !== false) {
      resumedFrom = await resolveResumePath(dir, options.resume);
      // Checks the architecture; restores weights, momentum and LibTorch's random state.
      const saved = await restoreTrainingCheckpoint(model, resumedFrom);
      const savedCfg = saved.config as SegtoolConfig | null;
      const changed: string[] = savedCfg
        ? STREAM_KEYS.filter((k) => JSON.stringify(getConfigValue(savedCfg, k)) !== JSON.stringify(getConfigValue(cfg, k)))
        : [];
      const rng = parseRngState(saved.rng);
      if (rng && rng.workers !== workers) changed.push('TRAIN.workers');
      if (rng && (rng.worldSize ?? 1) !== worldSize) changed.push(`number of ranks (${rng.worldSize ?? 1} -> ${worldSize})`);
      if (changed.length > 0) {
        emit({ type: 'warning', message: `Resuming with other ${changed.join(', ')} than the checkpoint: the run will not match an uninterrupted one` });
      }
      lastEpoch = saved.epoch;
      history = Array.isArray(saved.history) ? (saved.history as TrainHistoryEntry[]) : [];
    } else if (cfg.TRAIN.start_epoch > 0) {
      // The reference's way to continue: weights only, from DIR/*_epoch_<start_epoch>.pth.
      const epoch = cfg.TRAIN.start_epoch;
      await loadWeights(model, [
        { path: join(dir, `encoder_epoch_${epoch}.pth`), part: 'encoder' },
        { path: join(dir, `decoder_epoch_${epoch}.pth`), part: 'decoder' },
      ]);
    } else {
      await initialWeights(model, cfg, options, emit, rank);
    }
    await readImageSizes(records); // odgt lists without width/height (after the weights: an unreachable pretrained encoder stops the run at once)
    if (writer) await saveConfig(cfg, join(dir, 'config.yaml'));

    const schedule: ScheduleSettings = {
      lrEncoder: cfg.TRAIN.lr_encoder,
      lrDecoder: cfg.TRAIN.lr_decoder,
      lrPow: cfg.TRAIN.lr_pow,
      epochIters: cfg.TRAIN.epoch_iters,
      numEpoch: cfg.TRAIN.num_epoch,
    };
    const deepSupScale = hasDeepSupervision(cfg.MODEL.arch_decoder) ? cfg.TRAIN.deep_sup_scale : 0;
    const maxIterations = schedule.epochIters * schedule.numEpoch;
    const rngState: RngState = { scheme: 'per-epoch', seed: cfg.TRAIN.seed, workers, rank, worldSize };
    const result: TrainResult = { dir, epoch: lastEpoch, iterations: lastEpoch * schedule.epochIters, history, badSamples: [], seconds: 0 };
    if (lastEpoch >= cfg.TRAIN.num_epoch) {
      emit({ type: 'warning', message: `Nothing to do: epoch ${lastEpoch} of ${cfg.TRAIN.num_epoch} is done (raise TRAIN.num_epoch to train longer)` });
    }
    emit({
      type: 'start',
      dir,
      firstEpoch: lastEpoch + 1,
      numEpoch: cfg.TRAIN.num_epoch,
      epochIters: schedule.epochIters,
      samples: records.length,
      ...(resumedFrom ? { resumedFrom } : {}),
      rank,
      worldSize,
    });

    await applyRuntime(model, runtime); // TRAIN.device / precision / channels_last / cudnn_benchmark
    if (worldSize > 1) {
      // Rank 0's weights and buffers to every rank (on the rank's device); from now on
      // gradients are averaged over ranks.
      await model.setCommunicator(communicator!, { syncBatchNorm: options.syncBatchNorm ?? 'exact' });
    }
    model.train();
    model.setFixBn(cfg.TRAIN.fix_bn);
    for (let epoch = lastEpoch + 1; epoch <= cfg.TRAIN.num_epoch; epoch++) {
      const epochStarted = performance.now();
      // Ranks draw their own dropout masks; per epoch, so a resumed run draws the same ones.
      if (worldSize > 1) manualSeed(deriveSeed(cfg.TRAIN.seed, epoch, rank, 0x5eed));
      const loader = await createTrainLoader({
        records,
        imgSizes: cfg.DATASET.imgSizes,
        imgMaxSize: cfg.DATASET.imgMaxSize,
        paddingConstant: cfg.DATASET.padding_constant,
        segmDownsamplingRate: cfg.DATASET.segm_downsampling_rate,
        batchPerGpu: cfg.TRAIN.batch_size_per_gpu,
        randomFlip: flipProbability(cfg),
        numClass: cfg.DATASET.num_class,
        normalize: cfg.DATASET.normalization,
        resize: cfg.DATASET.resize,
        labelPadding: cfg.DATASET.label_padding,
        seed: deriveSeed(cfg.TRAIN.seed, epoch),
        rank,
        workers,
        onBadSample: options.onBadSample ?? 'error',
      });
      const batchTime = new AverageMeter();
      const dataTime = new AverageMeter();
      const lossMeter = new AverageMeter();
      const accuracyMeter = new AverageMeter();
      try {
        let tic = performance.now();
        for (let i = 0; i < schedule.epochIters; i++) {
          if (options.signal?.aborted) {
            throw new SegtoolError(
              'ERR_ABORTED',
              `Training stopped at epoch ${epoch}, iteration ${i}` +
                (epoch > 1 ? `; resume from ${trainingCheckpointPath(dir, epoch - 1)}` : ''),
            );
          }
          const batch = (await loader.next()).value!;
          dataTime.update((performance.now() - tic) / 1000);
          const globalIteration = i + (epoch - 1) * schedule.epochIters;
          const lr = learningRatesAt(schedule, globalIteration);
          // No labelled pixel: the loss would be 0/0 (NaN) and poison the weights; it is the data, not the learning rate.
          if (!batch.label.data.some((v: number) => v >= 0)) {
            throw new SegtoolError(
              'ERR_BAD_IMAGE',
              `The batch at epoch ${epoch}, iteration ${i} has no labelled pixel (its annotations are all 0 = unlabeled): ` +
                `${batch.paths.join(', ')}; remove such images from ${cfg.DATASET.list_train} or check their annotations`,
            );
          }
          const step = await model.trainStep(batch.image, batch.label, {
            lrEncoder: lr.encoder,
            lrDecoder: lr.decoder,
            momentum: cfg.TRAIN.beta1,
            weightDecay: cfg.TRAIN.weight_decay,
            deepSupScale,
          });
          if (!Number.isFinite(step.loss)) {
            throw new SegtoolError(
              'ERR_NATIVE',
              `The loss became ${step.loss} at epoch ${epoch}, iteration ${i} (learning rates ${lr.encoder}, ${lr.decoder}); ` +
                `lower TRAIN.lr_encoder / TRAIN.lr_decoder`,
            );
          }
          batchTime.update((performance.now() - tic) / 1000);
          tic = performance.now();
          lossMeter.update(step.loss);
          accuracyMeter.update(step.accuracy * 100);
          emit({
            type: 'iteration',
            epoch,
            iteration: i,
            epochIters: schedule.epochIters,
            globalIteration,
            maxIterations,
            loss: step.loss,
            accuracy: step.accuracy,
            averageLoss: lossMeter.average,
            averageAccuracy: accuracyMeter.average,
            lrEncoder: lr.encoder,
            lrDecoder: lr.decoder,
            time: batchTime.average,
            dataTime: dataTime.average,
          });
          if (i % cfg.TRAIN.disp_iter === 0) {
            const line = formatTrainLine({
              epoch,
              iteration: i,
              epochIters: schedule.epochIters,
              time: batchTime.average,
              dataTime: dataTime.average,
              lrEncoder: lr.encoder,
              lrDecoder: lr.decoder,
              accuracy: accuracyMeter.average,
              loss: lossMeter.average,
            });
            emit({ type: 'log', line });
            history.push({
              epoch: epoch - 1 + i / schedule.epochIters,
              iteration: globalIteration,
              loss: step.loss,
              accuracy: step.accuracy,
              lrEncoder: lr.encoder,
              lrDecoder: lr.decoder,
            });
          }
        }
      } finally {
        result.badSamples.push(...loader.badSamples);
        await loader.close();
      }
      emit({
        type: 'epoch',
        epoch,
        averageLoss: lossMeter.average,
        averageAccuracy: accuracyMeter.average,
        seconds: (performance.now() - epochStarted) / 1000,
      });

      const iteration = epoch * schedule.epochIters;
      const checkpoint = trainingCheckpointPath(dir, epoch);
      const weights = { encoder: join(dir, `encoder_epoch_${epoch}.pth`), decoder: join(dir, `decoder_epoch_${epoch}.pth`) };
      if (writer) {
        await saveReferenceWeights(model, dir, epoch);
        await saveTrainingCheckpoint(checkpoint, { model, epoch, iteration, config: cfg, rng: JSON.stringify(rngState), history, classes });
        await writeJsonAtomic(join(dir, 'history.json'), history);
        await writeFileAtomic(join(dir, 'history.csv'), historyCsv(history));
        const older = (await listTrainingCheckpoints(dir)).filter((c) => c.epoch < epoch);
        const keep = options.keepCheckpoints ?? 1;
        for (const old of older.slice(0, Math.max(0, older.length - (keep - 1)))) await rm(old.path, { force: true });
        emit({ type: 'checkpoint', epoch, files: [weights.encoder, weights.decoder, checkpoint] });
      }
      Object.assign(result, {
        epoch,
        iterations: iteration,
        checkpoint,
        weights,
        averageLoss: lossMeter.average,
        averageAccuracy: accuracyMeter.average,
      });
    }
    if (result.badSamples.length > 0) {
      emit({ type: 'warning', message: `${result.badSamples.length} bad sample(s) were skipped (see result.badSamples)` });
    }
    result.seconds = (performance.now() - started) / 1000;
    return result;
  } finally {
    model.dispose();
    await tensorboard?.close();
  }
}

/**
 * A new run's starting weights: MODEL.weights_encoder / MODEL.weights_decoder, each the part it
 * is given for (an ImageNet file, a reference encoder_epoch_N.pth, a 150-class model to fine-tune
 * with skipMismatchedHead), and with no encoder file the ImageNet-pretrained encoder
 * (MODEL.pretrained). Only rank 0 fetches that: setCommunicator hands rank 0's weights to every rank.
 */
async function initialWeights(
  model: SegmentationModel,
  cfg: SegtoolConfig,
  options: TrainOptions,
  emit: (event: TrainEvent) => void,
  rank: number,
): Promise<void> {
  const given = [
    ...(cfg.MODEL.weights_encoder !== '' ? [{ path: cfg.MODEL.weights_encoder, part: 'encoder' as const }] : []),
    ...(cfg.MODEL.weights_decoder !== '' ? [{ path: cfg.MODEL.weights_decoder, part: 'decoder' as const }] : []),
  ];
  if (given.length > 0) {
    const report = await loadWeights(model, given, { wholeModel: false, skipMismatchedHead: options.skipMismatchedHead ?? false });
    for (const file of report.files) {
      const leftOut = file.leftOut.length > 0 ? `; left out ${summarizeKeys(file.leftOut)}` : '';
      emit({ type: 'log', line: `MODEL.weights_${file.part}: ${file.loaded} tensors from ${file.path}${leftOut}` });
    }
  }
  if (cfg.MODEL.weights_encoder !== '') return;
  if (!cfg.MODEL.pretrained) {
    emit({ type: 'warning', message: FROM_SCRATCH_WARNING });
    return;
  }
  if (rank !== 0) return;
  const pretrained = await loadImagenetEncoder(model, {
    ...(options.mirror !== undefined ? { mirror: options.mirror } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: (p) => emit({ type: 'download', url: p.url, received: p.received, ...(p.total !== undefined ? { total: p.total } : {}) }),
  });
  emit({ type: 'log', line: pretrained.summary });
}

function parseRngState(text: unknown): RngState | undefined {
  if (typeof text !== 'string' || text === '') return undefined;
  try {
    const value = JSON.parse(text) as RngState;
    return value.scheme === 'per-epoch' ? value : undefined;
  } catch {
    return undefined;
  }
}
