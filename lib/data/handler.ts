/**
 * What a data worker does with each request — shared by worker.ts (a worker thread) and the
 * in-process mode (workers: 0), so both produce the same batches for the same stream.
 */
import type { SampleRecord } from './list.js';
import {
  loadEvalSample,
  loadTrainBatch,
  prepareImage,
  type BadSample,
  type EvalSample,
  type EvalSettings,
  type PreparedImage,
  type PrepareSettings,
  type PrepareSource,
  type TrainBatch,
  type TrainSettings,
} from './pipeline.js';
import { Rng } from './prng.js';
import { TrainSampler } from './sampler.js';

export type WorkerInit =
  | {
      kind: 'train';
      records: SampleRecord[];
      settings: TrainSettings;
      flipProbability: number;
      shuffle: boolean;
      /** The stream: (seed, rank, worker). */
      seed: number;
      rank: number;
      worker: number;
    }
  | { kind: 'eval'; records: SampleRecord[]; settings: EvalSettings }
  /** Any image, any settings per request: the inference engine's prepare stage. */
  | { kind: 'prepare' };

export type WorkerRequest =
  | { type: 'train' }
  | { type: 'eval'; index: number }
  | { type: 'prepare'; source: PrepareSource; settings: PrepareSettings };

export type WorkerResult = TrainBatch | { sample: EvalSample } | { bad: BadSample } | { prepared: PreparedImage };

export type Handler = (request: WorkerRequest) => Promise<WorkerResult>;

export function createHandler(init: WorkerInit): Handler {
  if (init.kind === 'train') {
    const { records, settings } = init;
    const sampler = new TrainSampler(records as Array<{ width: number; height: number }>, {
      batchPerGpu: settings.geometry.batchPerGpu,
      imgSizes: settings.geometry.imgSizes,
      flipProbability: init.flipProbability,
      shuffle: init.shuffle,
      rng: Rng.forStream(init.seed, init.rank, init.worker),
    });
    return (request) => {
      if (request.type !== 'train') return Promise.reject(new Error(`train worker got a ${request.type} request`));
      // The plan is drawn when the request arrives, so results follow request order.
      return loadTrainBatch(sampler.next(), records, settings);
    };
  }
  if (init.kind === 'prepare') {
    return async (request) => {
      if (request.type !== 'prepare') throw new Error(`prepare worker got a ${request.type} request`);
      return { prepared: await prepareImage(request.source, request.settings) };
    };
  }
  const { records, settings } = init;
  return (request) => {
    if (request.type !== 'eval') return Promise.reject(new Error(`eval worker got a ${request.type} request`));
    return loadEvalSample(request.index, records[request.index]!, settings);
  };
}
