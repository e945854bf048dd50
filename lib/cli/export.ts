/**
 * `segtool export --cfg CONFIG [--checkpoint W | --weights-encoder E --weights-decoder D]
 * --onnx OUT.onnx [--full-size] [--opset N] [KEY VALUE ...]`: the config's model with its
 * weights as ONNX (lib/onnx/export.ts), for onnxruntime in Node, in the browser or elsewhere.
 */
import { Command, InvalidArgumentError } from 'commander';
import { relative } from 'node:path';
import type { WeightsSource } from '../checkpoint.js';
import { SegtoolError } from '../errors.js';
import { createModelWithWeights, resolveWeightFiles } from '../eval/weights.js';
import { exportOnnx, ONNX_DEFAULT_OPSET, ONNX_MAX_OPSET, ONNX_MIN_OPSET } from '../onnx/export.js';
import { setNumThreads } from '../tensor.js';
import { resolveConfigInput } from '../config/index.js';
import { DEFAULT_CONFIG, withConfigOptions } from './common.js';

interface ExportCommandOptions {
  cfg?: string;
  checkpoint?: string;
  weightsEncoder?: string;
  weightsDecoder?: string;
  onnx: string;
  fullSize?: boolean;
  opset: number;
  threads?: number;
}

function parseOpset(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < ONNX_MIN_OPSET || n > ONNX_MAX_OPSET) {
    throw new InvalidArgumentError(`--opset must be an integer from ${ONNX_MIN_OPSET} to ${ONNX_MAX_OPSET}`);
  }
  return n;
}

export function exportCommand(): Command {
  return withConfigOptions(
    new Command('export')
      .description('write the model (config + weights) as ONNX with dynamic batch, height and width, for onnxruntime')
      .requiredOption('--onnx <file>', 'output .onnx file')
      .option('--checkpoint <weights>', 'weights: a suffix in DIR (epoch_20.pth), a file, or a folder (default TEST.checkpoint)')
      .option('--weights-encoder <file>', 'encoder weights (.pth or .safetensors), with --weights-decoder instead of --checkpoint')
      .option('--weights-decoder <file>', 'decoder weights (.pth or .safetensors)')
      .option('--full-size', 'also output pred (int64 class per input pixel) and prob (its probability) at the input size')
      .option('--opset <n>', `ONNX opset, ${ONNX_MIN_OPSET} to ${ONNX_MAX_OPSET}`, parseOpset, ONNX_DEFAULT_OPSET),
  ).action(async (overrides: string[], options: ExportCommandOptions) => {
    const byRole = options.weightsEncoder !== undefined || options.weightsDecoder !== undefined;
    if (byRole && options.checkpoint !== undefined) {
      throw new SegtoolError('ERR_INVALID_ARG', 'Pass either --checkpoint or --weights-encoder and --weights-decoder, not both');
    }
    if (byRole && (options.weightsEncoder === undefined || options.weightsDecoder === undefined)) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected both --weights-encoder and --weights-decoder but received only ${options.weightsEncoder !== undefined ? '--weights-encoder' : '--weights-decoder'}`);
    }
    const cfg = await resolveConfigInput(options.cfg ?? DEFAULT_CONFIG, overrides);
    if (options.threads !== undefined) setNumThreads(options.threads);
    const sources: WeightsSource[] = byRole
      ? [
          { path: options.weightsEncoder!, part: 'encoder' },
          { path: options.weightsDecoder!, part: 'decoder' },
        ]
      : resolveWeightFiles(cfg, options.checkpoint ?? cfg.TEST.checkpoint, options.checkpoint !== undefined ? '--checkpoint' : 'TEST.checkpoint');
    if (sources.length === 0) process.stderr.write('segtool export: no weights (checkpoint "none"): the model keeps its random initialisation\n');
    // Built on the CPU whatever TEST.device says: the export reads the weights, it runs nothing.
    const model = await createModelWithWeights({ ...cfg, TEST: { ...cfg.TEST, device: 'cpu' } }, sources, 'TEST');
    try {
      const report = await exportOnnx(model.eval(), options.onnx, {
        fullSize: options.fullSize ?? false,
        opset: options.opset,
        normalization: cfg.DATASET.normalization,
        imgSizes: cfg.DATASET.imgSizes,
        imgMaxSize: cfg.DATASET.imgMaxSize,
        paddingConstant: cfg.DATASET.padding_constant,
      });
      const mib = (report.bytes / 2 ** 20).toFixed(1);
      console.log(
        `${model.describe()} -> ${relative('.', report.path) || report.path} (${mib} MiB, opset ${report.opset}, ${report.nodes} nodes) in ${report.seconds.toFixed(1)} s`,
      );
      console.log(`input: input float32 [N, 3, H, W] (${cfg.DATASET.normalization} normalisation); outputs: ${report.outputs.join(', ')}`);
    } finally {
      model.dispose();
    }
  });
}
