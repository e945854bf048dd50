/**
 * The reference's learning-rate schedule (train.py adjust_learning_rate): "poly" decay,
 * recomputed before every iteration over the whole run of epoch_iters x num_epoch iterations,
 * one rate for the encoder and one for the decoder.
 */
import { expectInteger, expectNumber } from '../validate.js';

/** base x (1 - iteration / maxIterations)^power, for iteration in [0, maxIterations]. */
export function polyLearningRate(base: number, iteration: number, maxIterations: number, power: number): number {
  expectNumber('base', base, 0);
  expectInteger('maxIterations', maxIterations, 1);
  expectInteger('iteration', iteration, 0, maxIterations);
  expectNumber('power', power, 0);
  return base * (1 - iteration / maxIterations) ** power;
}

export interface ScheduleSettings {
  lrEncoder: number;
  lrDecoder: number;
  lrPow: number;
  epochIters: number;
  numEpoch: number;
}

export interface LearningRates {
  encoder: number;
  decoder: number;
}

/**
 * Rates for global iteration `iteration` (0-based over the whole run; the reference's
 * `cur_iter = i + (epoch - 1) * epoch_iters`).
 */
export function learningRatesAt(settings: ScheduleSettings, iteration: number): LearningRates {
  const maxIterations = settings.epochIters * settings.numEpoch;
  return {
    encoder: polyLearningRate(settings.lrEncoder, iteration, maxIterations, settings.lrPow),
    decoder: polyLearningRate(settings.lrDecoder, iteration, maxIterations, settings.lrPow),
  };
}
