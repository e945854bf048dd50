/** The segtool command line. Each command lives in its own module; this file wires them. */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { SegtoolError } from '../errors.js';
import { systemInfo } from '../system.js';
import { runForward, type ForwardOptions } from './forward.js';
import { convertWeights } from '../checkpoint.js';
import { optionalValuesBeforeKeys } from './common.js';
import { demoCommand } from './demo.js';
import { demoTestCommand } from './demo-test.js';
import { downloadCommand } from './download.js';
import { evalCommand } from './eval.js';
import { exportCommand } from './export.js';
import { modelsCommand } from './models.js';
import { reportCommand } from './report.js';
import { testCommand } from './test.js';
import { trainCommand } from './train.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new SegtoolError('ERR_INVALID_ARG', `Expected an integer but received "${value}"`);
  return n;
}

function parseSize(value: string): [number, number] {
  const parts = value.split(',').map(Number);
  if (parts.length !== 2 || !parts.every((n) => Number.isInteger(n) && n > 0)) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected H,W (two positive integers) but received "${value}"`);
  }
  return [parts[0]!, parts[1]!];
}

export function buildProgram(): Command {
  const program = new Command('segtool')
    .description('Scene parsing (semantic segmentation on MIT ADE20K) on LibTorch')
    .version(pkg.version);

  program
    .command('info')
    .description('show the LibTorch build, threads and a quick speed measurement')
    .option('--no-measure', 'skip the matrix-multiply speed probe')
    .action(async (options: { measure: boolean }) => {
      const info = await systemInfo({ measure: options.measure });
      console.log(`segtool ${pkg.version}`);
      console.log(`LibTorch ${info.torchVersion}; CUDA ${info.cuda ? 'available' : 'not available'}; ` +
        `custom CUDA kernels ${info.cudaKernels ? 'built' : 'not built'}; oneDNN ${info.mkldnn ? 'yes' : 'no'}`);
      console.log(`threads ${info.threads} of ${info.cores} cores`);
      console.log(`malloc mmap threshold: ${info.mallocSetting}`);
      if (info.matmulGflops !== undefined) console.log(`float32 matmul ${info.matmulGflops.toFixed(1)} GFLOP/s`);
    });

  program
    .command('forward')
    .description('run a network on the `input` tensor of a safetensors file and write logprob (logprob_deepsup; pred, pred_prob with --seg-size) to another')
    .requiredOption('--input <file>', 'safetensors file with the input tensor (`input`; a reference fixture case uses `eval.input`)')
    .option('--output <file>', 'safetensors file for the outputs')
    .option('--encoder <name>', 'encoder (default: the input file\'s metadata)')
    .option('--decoder <name>', 'decoder (default: the input file\'s metadata)')
    .option('--fc-dim <n>', 'decoder input channels (default: the encoder\'s)', parseInteger)
    .option('--num-class <n>', 'classes (default 150)', parseInteger)
    .option('--weights-encoder <file>', 'encoder weights (.pth or .safetensors)')
    .option('--weights-decoder <file>', 'decoder weights (.pth or .safetensors)')
    .option('--weights <file>', 'combined weights file, or "procedural" (the reference fixtures\' deterministic weights)')
    .option('--input-key <name>', 'name of the input tensor')
    .option('--seg-size <H,W>', 'also output full-size pred and pred_prob at H x W', parseSize)
    .action(async (options: ForwardOptions) => {
      const report = await runForward(options);
      console.log(`${report.encoder} + ${report.decoder}: logprob [${report.shape.join(', ')}] in ${(report.seconds * 1000).toFixed(0)} ms`);
      if (report.relativeError !== undefined) {
        console.log(`reference eval.logprob: max error ${report.relativeError.toExponential(2)} of its range -> ${report.matches ? 'MATCH' : 'MISMATCH'} (tolerance 1e-3)`);
        if (!report.matches) process.exitCode = 1;
      }
      if (options.output) console.log(`wrote ${options.output}`);
    });

  program
    .command('convert')
    .description('convert weights between .pth and .safetensors; several inputs combine (encoder./decoder. prefixes); an output ending in / splits')
    .argument('<files...>', 'input file(s), then the output file or folder/')
    .option('--format <pth|safetensors>', 'file type when splitting into a folder', 'pth')
    .action(async (files: string[], options: { format: string }) => {
      if (files.length < 2) throw new SegtoolError('ERR_INVALID_ARG', 'convert needs at least one input and an output: segtool convert IN [IN2] OUT');
      if (options.format !== 'pth' && options.format !== 'safetensors') {
        throw new SegtoolError('ERR_INVALID_ARG', `Expected --format pth or safetensors but received ${options.format}`);
      }
      const written = await convertWeights(files.slice(0, -1), files[files.length - 1]!, { format: options.format });
      for (const path of written) console.log(`wrote ${path}`);
    });

  for (const command of [trainCommand(), evalCommand(), testCommand(), demoCommand(), demoTestCommand(), modelsCommand(), downloadCommand(), exportCommand(), reportCommand()]) {
    program.addCommand(command);
  }
  return program;
}

/**
 * A reader that goes away (`segtool train ... | head -2`, `less` quitting) ends the output, never
 * the command: training goes on to its checkpoints instead of dying with `write EPIPE`.
 */
export function survivePipeClose(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') return;
    throw error;
  });
}

/** Runs the CLI; a SegtoolError prints its message (no stack) and exits with status 1. */
export async function main(argv: string[] = process.argv): Promise<void> {
  survivePipeClose(process.stdout);
  survivePipeClose(process.stderr);
  try {
    await buildProgram().parseAsync(optionalValuesBeforeKeys(argv));
  } catch (error) {
    if (error instanceof SegtoolError) {
      console.error(`segtool: ${error.message}`);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
}
