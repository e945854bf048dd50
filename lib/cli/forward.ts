/**
 * `segtool forward`: runs a network on the `input` tensor of a safetensors file and writes its
 * outputs to another (logprob, logprob_deepsup, and with a seg size pred / pred_prob), so users
 * porting models can compare with PyTorch. Given a reference fixture case (input `eval.input`,
 * metadata naming the architecture, `eval.logprob` to compare with), it reproduces the case.
 */
import { loadSafetensors, saveSafetensors, disposeAll } from '../io/safetensors.js';
import { loadWeights } from '../checkpoint.js';
import { SegmentationModel, type DecoderName, type EncoderName } from '../model.js';
import { SegtoolError } from '../errors.js';
import { Tensor } from '../tensor.js';

export interface ForwardOptions {
  input: string;
  output?: string;
  encoder?: string;
  decoder?: string;
  fcDim?: number;
  numClass?: number;
  /** Files with the encoder's / decoder's weights (.pth or safetensors, state-dict keys). */
  weightsEncoder?: string;
  weightsDecoder?: string;
  /** A combined weights file, or "procedural" for the reference fixtures' deterministic weights. */
  weights?: string;
  inputKey?: string;
  segSize?: [number, number];
}

export interface ForwardReport {
  encoder: string;
  decoder: string;
  shape: number[];
  seconds: number;
  /** Max |ours - reference| / range of the reference, when the input file holds `eval.logprob`. */
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


export async function runForward(options: ForwardOptions): Promise<ForwardReport> {
  const { tensors, metadata } = await loadSafetensors(options.input);
  const outputs = new Map<string, Tensor>();
  try {
    const encoder = options.encoder ?? metadata['encoder'];
    const decoder = options.decoder ?? metadata['decoder'];
    if (!encoder || !decoder) {
      throw new SegtoolError('ERR_INVALID_ARG', `${options.input} names no encoder/decoder in its metadata: pass --encoder and --decoder`);
    }
    const inputKey = options.inputKey ?? (tensors.has('input') ? 'input' : 'eval.input');
    const input = tensors.get(inputKey);
    if (!input) {
      throw new SegtoolError('ERR_INVALID_ARG', `${options.input} has no tensor "${inputKey}" (it has ${[...tensors.keys()].join(', ')})`);
    }
    const weightFiles = [options.weightsEncoder, options.weightsDecoder].filter((f): f is string => f !== undefined);
    if (weightFiles.length === 0 && options.weights === undefined) {
      throw new SegtoolError('ERR_INVALID_ARG', 'Pass --weights-encoder and --weights-decoder, --weights FILE, or --weights procedural');
    }
    const procedural = options.weights === 'procedural';
    const numClass = options.numClass ?? (metadata['num_class'] ? Number(metadata['num_class']) : undefined);
    const fcDim = options.fcDim ?? (metadata['fc_dim'] ? Number(metadata['fc_dim']) : undefined);
    const model = await SegmentationModel.create({
      encoder: encoder as EncoderName,
      decoder: decoder as DecoderName,
      ...(fcDim !== undefined ? { fcDim } : {}),
      ...(numClass !== undefined ? { numClass } : {}),
      ...(procedural ? { init: 'procedural' as const } : {}),
    });
    try {
      if (!procedural) {
        // A file given for a role is that part, whatever its name.
        await loadWeights(model, [
          ...(options.weights !== undefined ? [options.weights] : []),
          ...(options.weightsEncoder !== undefined ? [{ path: options.weightsEncoder, part: 'encoder' as const }] : []),
          ...(options.weightsDecoder !== undefined ? [{ path: options.weightsDecoder, part: 'decoder' as const }] : []),
        ]);
      }
      const started = performance.now();
      const { logprob, logprobDeepsup } = await model.forward(input);
      outputs.set('logprob', logprob);
      if (logprobDeepsup) outputs.set('logprob_deepsup', logprobDeepsup);
      if (options.segSize) {
        // The one argmax (native, row by row); pred is uint8 up to 256 classes, as before.
        const { labels, confidence } = await model.predictClasses([input], { segSize: options.segSize });
        if (model.numClass <= 256) {
          outputs.set('pred', Tensor.from(Uint8Array.from(labels.data<'int32'>()), labels.shape, 'uint8'));
          labels.dispose();
        } else {
          outputs.set('pred', labels);
        }
        outputs.set('pred_prob', confidence!);
      }
      const seconds = (performance.now() - started) / 1000;
      const report: ForwardReport = { encoder, decoder, shape: logprob.shape, seconds };
      const expected = tensors.get('eval.logprob');
      if (expected) {
        report.relativeError = maxRelativeError(logprob, expected);
        report.matches = report.relativeError <= 1e-3;
      }
      if (options.output) await saveSafetensors(options.output, outputs, { encoder, decoder });
      return report;
    } finally {
      model.dispose();
    }
  } finally {
    disposeAll(tensors);
    disposeAll(outputs);
  }
}
