/** The segtool command line. Each command lives in its own module; this file wires them. */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { SegtoolError } from '../errors.js';
import { systemInfo } from '../system.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

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
      if (info.matmulGflops !== undefined) console.log(`float32 matmul ${info.matmulGflops.toFixed(1)} GFLOP/s`);
    });

  return program;
}

/** Runs the CLI; a SegtoolError prints its message (no stack) and exits with status 1. */
export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof SegtoolError) {
      console.error(`segtool: ${error.message}`);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
}
