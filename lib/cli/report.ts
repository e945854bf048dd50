/** `segtool report DIR`: a run folder as one self-contained HTML page (lib/report). */
import { Command } from 'commander';
import { relative } from 'node:path';
import { writeReport } from '../report/report.js';
import { parseCount } from './common.js';

interface ReportCommandOptions {
  output?: string;
  metrics?: string;
  results?: string;
  samples?: number;
  title?: string;
}

export function reportCommand(): Command {
  return new Command('report')
    .description('write DIR/report.html: training curves (history.json), per-class IoU and confusion matrix (metrics JSON), sample panels; no network needed to view it')
    .argument('<dir>', 'run folder (segtool train DIR)')
    .option('--output <file>', 'HTML file to write (default DIR/report.html)')
    .option('--metrics <file>', 'metrics JSON of segtool eval (default the newest DIR/metrics*.json)')
    .option('--results <dir>', 'folder of eval --visualize panels (default DIR/result)')
    .option('--samples <n>', 'panels to include (default 6)', parseCount('--samples'))
    .option('--title <text>', 'page title')
    .action(async (dir: string, options: ReportCommandOptions) => {
      const result = await writeReport(dir, {
        ...(options.output !== undefined ? { output: options.output } : {}),
        ...(options.metrics !== undefined ? { metrics: options.metrics } : {}),
        ...(options.results !== undefined ? { resultDir: options.results } : {}),
        ...(options.samples !== undefined ? { samples: options.samples } : {}),
        ...(options.title !== undefined ? { title: options.title } : {}),
      });
      const parts = [
        `${result.iterations} logged iteration(s) over ${result.epochs} epoch(s)`,
        result.metricsFile ? `metrics ${relative('.', result.metricsFile)}` : 'no metrics',
        `${result.samples.length} panel(s)`,
      ];
      console.log(`Wrote ${relative('.', result.file)} (${parts.join(', ')})`);
    });
}
