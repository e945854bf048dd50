/**
 * Synchronized BatchNorm (native ops::sync_batch_norm) as one call: training-mode forward plus
 * the backward of sum(output * gradOutput). The model uses the op inside its layers; this face
 * exists to test and inspect it. With a communicator, every rank must call it together (it is a
 * collective); with null it is this process alone.
 */
import { SegtoolError } from '../errors.js';
import { native, type NativeBatchNormArgs, type NativeBatchNormResult } from '../native.js';
import { Tensor } from '../tensor.js';
import { expectNumber, expectOneOf, invalid } from '../validate.js';
import { Communicator } from './communicator.js';

export type SyncBatchNormMode = 'exact' | 'reference';

export interface BatchNormArgs {
  /** [N, C, ...] float32 or float64; N may be 0 on a rank. */
  input: Tensor;
  /** Same shape as input. */
  gradOutput: Tensor;
  weight?: Tensor;
  bias?: Tensor;
  /** [C], updated in place with the global statistics. */
  runningMean?: Tensor;
  runningVar?: Tensor;
  /** Default 0.1. */
  momentum?: number;
  /** Default 1e-5. */
  eps?: number;
}

export interface SyncBatchNormArgs extends BatchNormArgs {
  /**
   * 'exact' (default): equals BatchNorm over all ranks' batches concatenated.
   * 'reference': the CSAIL reference's SynchronizedBatchNorm2d (1/sqrt(max(var, eps)),
   * bias-corrected running averages kept in the three buffers below).
   */
  mode?: SyncBatchNormMode;
  /** Reference mode: `_tmp_running_mean` [C], `_tmp_running_var` [C], `_running_iter` [1]. */
  tmpRunningMean?: Tensor;
  tmpRunningVar?: Tensor;
  runningIter?: Tensor;
}

export interface BatchNormResult {
  output: Tensor;
  /** Covers every rank's batch (the all-reduced backward). */
  gradInput: Tensor;
  /** This rank's share; summed over ranks it equals the gradient of the concatenated batch. */
  gradWeight?: Tensor;
  gradBias?: Tensor;
}

function tensorArg(name: string, value: unknown, optional: boolean): Tensor | undefined {
  if (value === undefined && optional) return undefined;
  if (!(value instanceof Tensor)) throw invalid(name, 'a Tensor', value);
  if (value.disposed) throw new SegtoolError('ERR_DISPOSED', `The Tensor given for ${name} was disposed`);
  return value;
}

function checkArgs(args: SyncBatchNormArgs, allowReference: boolean): NativeBatchNormArgs {
  if (typeof args !== 'object' || args === null) throw invalid('args', 'an object', args);
  const input = tensorArg('args.input', args.input, false)!;
  const shape = input.shape;
  if (shape.length < 2 || shape[1] === 0) throw invalid('args.input', 'a tensor of shape [N, C, ...] with C > 0', `shape [${shape.join(', ')}]`);
  if (input.dtype !== 'float32' && input.dtype !== 'float64') throw invalid('args.input', 'a float32 or float64 tensor', input.dtype);
  const channels = shape[1]!;
  const gradOutput = tensorArg('args.gradOutput', args.gradOutput, false)!;
  if (gradOutput.shape.join() !== shape.join() || gradOutput.dtype !== input.dtype) {
    throw invalid('args.gradOutput', `a ${input.dtype} tensor of shape [${shape.join(', ')}]`, `${gradOutput.dtype} [${gradOutput.shape.join(', ')}]`);
  }
  const perChannel = (name: keyof SyncBatchNormArgs, size = channels): Tensor | undefined => {
    const t = tensorArg(`args.${name}`, args[name], true);
    if (t && (t.size !== size || (t.dtype !== 'float32' && t.dtype !== 'float64'))) {
      throw invalid(`args.${name}`, `a float tensor of ${size} value(s)`, `${t.dtype} [${t.shape.join(', ')}]`);
    }
    return t;
  };
  const mode = allowReference ? expectOneOf('args.mode', args.mode ?? 'exact', ['exact', 'reference'] as const) : 'exact';
  const out: NativeBatchNormArgs = {
    input: input.handle,
    gradOutput: gradOutput.handle,
    momentum: expectNumber('args.momentum', args.momentum ?? 0.1, 0, 1),
    eps: expectNumber('args.eps', args.eps ?? 1e-5, 0),
    mode,
  };
  for (const name of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
    const t = perChannel(name);
    if (t) out[name] = t.handle;
  }
  if (mode === 'reference') {
    const buffers = { tmpRunningMean: perChannel('tmpRunningMean'), tmpRunningVar: perChannel('tmpRunningVar'), runningIter: perChannel('runningIter', 1) };
    for (const [name, t] of Object.entries(buffers)) {
      if (!t) throw invalid(`args.${name}`, "a Tensor (mode 'reference' keeps the reference's running buffers)", undefined);
      out[name as 'tmpRunningMean'] = t.handle;
    }
  }
  return out;
}

function wrapResult(r: NativeBatchNormResult): BatchNormResult {
  return {
    output: new Tensor(r.output),
    gradInput: new Tensor(r.gradInput),
    ...(r.gradWeight ? { gradWeight: new Tensor(r.gradWeight) } : {}),
    ...(r.gradBias ? { gradBias: new Tensor(r.gradBias) } : {}),
  };
}

/** SyncBN forward and backward on this rank's batch; `communicator` null = this process alone. */
export async function syncBatchNorm(communicator: Communicator | null, args: SyncBatchNormArgs): Promise<BatchNormResult> {
  if (communicator !== null && !(communicator instanceof Communicator)) throw invalid('communicator', 'a Communicator or null', communicator);
  const nativeArgs = checkArgs(args, true);
  const result = communicator
    ? await communicator.enqueue((handle) => native().syncBatchNorm(handle, nativeArgs))
    : await native().syncBatchNorm(null, nativeArgs);
  return wrapResult(result);
}

/** Plain LibTorch BatchNorm (at::batch_norm, training mode) with the same interface: the reference SyncBN is checked against. */
export async function batchNorm(args: BatchNormArgs): Promise<BatchNormResult> {
  return wrapResult(await native().atenBatchNorm(checkArgs(args, false)));
}
