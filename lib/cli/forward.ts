/**
 * `segtool forward FILE`: runs a model on an input tensor from a safetensors file (a reference
 * fixture case, or any file with an `input` tensor) and writes / checks the log-probabilities.
 */
import { loadSafetensors, saveSafetensors, disposeAll } from '../io/safetensors.js';
import { SegmentationModel, type DecoderName, type EncoderName } from '../model.js';
import { SegtoolError } from '../errors.js';
import type { Tensor } from '../tensor.js';

export interface ForwardOptions {
  encoder?: string;
  decoder?: string;
  weights: string;
  inputKey?: string;
  out?: string;
}

export interface ForwardReport {
  encoder: string;
  decoder: string;
  shape: number[];
  seconds: number;
  /** Max |ours - reference| / range of the reference, when the file holds `eval.logprob`. */
  relativeError?: number;
  matches?: boolean;
}

function maxRelativeError(got: Tensor, expected: Tensor): number {
  const a = got.data<'float32'>();
  const b = expected.data<'float32'>();
  let lo = Infinity;
  let hi = -Infinity;
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    lo = Math.min(lo, b[i]!);
    hi = Math.max(hi, b[i]!);
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  return worst / (hi - lo || 1);
}

export async function runForward(file: string, options: ForwardOptions): Promise<ForwardReport> {
  const { tensors, metadata } = await loadSafetensors(file);
  try {
    const encoder = options.encoder ?? metadata['encoder'];
    const decoder = options.decoder ?? metadata['decoder'];
    if (!encoder || !decoder) {
      throw new SegtoolError('ERR_INVALID_ARG', `${file} names no encoder/decoder in its metadata: pass --encoder and --decoder`);
    }
    const inputKey = options.inputKey ?? (tensors.has('eval.input') ? 'eval.input' : 'input');
    const input = tensors.get(inputKey);
    if (!input) throw new SegtoolError('ERR_INVALID_ARG', `${file} has no tensor "${inputKey}" (it has ${[...tensors.keys()].join(', ')})`);
    if (options.weights !== 'procedural') {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected --weights procedural or a weights file, got ${options.weights}`);
    }
    const model = await SegmentationModel.create({
      encoder: encoder as EncoderName,
      decoder: decoder as DecoderName,
      ...(metadata['num_class'] ? { numClass: Number(metadata['num_class']) } : {}),
      init: 'procedural',
    });
    try {
      const started = performance.now();
      const { logprob, logprobDeepsup } = await model.forward(input);
      const seconds = (performance.now() - started) / 1000;
      const report: ForwardReport = { encoder, decoder, shape: logprob.shape, seconds };
      const expected = tensors.get('eval.logprob');
      if (expected) {
        report.relativeError = maxRelativeError(logprob, expected);
        report.matches = report.relativeError <= 1e-3;
      }
      if (options.out) {
        await saveSafetensors(options.out, { logprob, ...(logprobDeepsup ? { logprob_deepsup: logprobDeepsup } : {}) }, { encoder, decoder });
      }
      logprob.dispose();
      logprobDeepsup?.dispose();
      return report;
    } finally {
      model.dispose();
    }
  } finally {
    disposeAll(tensors);
  }
}
