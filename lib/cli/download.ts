/**
 * `segtool download ade20k | CONFIG ...`: the ADE20K scene-parsing dataset (downloaded,
 * checked, extracted, and listed as data/training.odgt / data/validation.odgt as the reference
 * ships them) and the reference's released weights (DIR/encoder_epoch_20.pth and
 * DIR/decoder_epoch_20.pth, where the bundled configs look for them). Downloads resume,
 * are checked, and can come from a mirror (`--mirror URL` or SEGTOOL_MIRROR): the original
 * hosts are often down.
 */
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { detectWeightsFormat } from '../checkpoint.js';
import { BUNDLED_CONFIGS, bundledConfigPath, findBundledConfig, loadConfig, suggestBundledConfig } from '../config/index.js';
import { listFolder } from '../data/index.js';
import { SegtoolError } from '../errors.js';
import { abortOnInterrupt } from './common.js';
import { downloadFile, type Checksum, type DownloadResult } from './fetch-file.js';
import { formatBytes, formatDuration, ProgressBar } from './progress.js';
import { extractZip } from './unzip.js';

export const DATASET_HOST = 'http://data.csail.mit.edu/places/ADEchallenge/';
export const WEIGHTS_HOST = 'http://sceneparsing.csail.mit.edu/model/pytorch/';

/** The dataset archive; its SHA-1 is the one GluonCV and others publish for this file. */
export const ADE20K_ARCHIVE = Object.freeze({
  file: 'ADEChallengeData2016.zip',
  folder: 'ADEChallengeData2016',
  checksum: { algorithm: 'sha1', hex: '219e1696abb36c8ba3a3afe7fb2f4b4606a897c7' } as Checksum,
});

export interface DownloadItem {
  url: string;
  dest: string;
  checksum?: Checksum;
}

/** `base` + `path`, with exactly one slash between. */
function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

/** The released weights of a bundled config: files under the config's DIR. */
export async function weightItems(name: string, mirror?: string, dir?: string): Promise<DownloadItem[]> {
  const found = findBundledConfig(name);
  if (found === undefined) {
    throw new SegtoolError('ERR_NOT_FOUND', `No released weights for ${JSON.stringify(name)}: expected ade20k or a bundled config${suggestBundledConfig(name)}`);
  }
  const cfg = await loadConfig(bundledConfigPath(found));
  const target = dir ?? cfg.DIR;
  return ['encoder', 'decoder'].map((part) => ({
    url: joinUrl(mirror ?? WEIGHTS_HOST, `ade20k-${found}/${part}_epoch_20.pth`),
    dest: join(target, `${part}_epoch_20.pth`),
  }));
}

/**
 * Lists an extracted ADEChallengeData2016 as the reference's odgt files (paths relative to
 * `dataDir`, with image sizes), so the bundled configs' DATASET keys work unchanged.
 */
export async function writeAde20kLists(dataDir: string, onProgress?: (message: string) => void): Promise<string[]> {
  const written: string[] = [];
  for (const [subset, list] of [['training', 'training.odgt'], ['validation', 'validation.odgt']] as const) {
    onProgress?.(`Reading image sizes of ${subset} images...`);
    const records = await listFolder(join(dataDir, ADE20K_ARCHIVE.folder), { subset });
    const lines = records.map((r) =>
      JSON.stringify({
        fpath_img: relative(dataDir, r.image).split('\\').join('/'),
        fpath_segm: relative(dataDir, r.annotation!).split('\\').join('/'),
        width: r.width,
        height: r.height,
      }),
    );
    const path = join(dataDir, list);
    await writeFile(path, `${lines.join('\n')}\n`);
    written.push(path);
  }
  return written;
}

interface DownloadCommandOptions {
  mirror?: string;
  dir?: string;
  dataDir: string;
  verify: boolean;
  extract: boolean;
}

function reportProgress(bar: ProgressBar, label: string): (p: { received: number; total?: number; resumedFrom: number }) => void {
  const started = performance.now();
  return (p) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? (p.received - p.resumedFrom) / seconds : 0;
    const eta = p.total !== undefined && rate > 0 ? ` ETA ${formatDuration((p.total - p.received) / rate)}` : '';
    const size = p.total !== undefined ? `${formatBytes(p.received)} / ${formatBytes(p.total)}` : formatBytes(p.received);
    bar.update(p.total ? p.received / p.total : 0, label, `${size} ${formatBytes(rate)}/s${eta}`);
  };
}

function describeResult(result: DownloadResult): string {
  if (result.alreadyPresent) return `${relative('.', result.path)} already present (${formatBytes(result.bytes)}${result.verified ? `, ${result.verified.algorithm} ok` : ''})`;
  const resumed = result.resumedFrom > 0 ? `, resumed at ${formatBytes(result.resumedFrom)}` : '';
  const check = result.verified ? `${result.verified.algorithm} ok` : `sha256 ${result.sha256}`;
  return `${relative('.', result.path)}: ${formatBytes(result.bytes)}${resumed}, ${check}`;
}

export function downloadCommand(): Command {
  return new Command('download')
    .description(`download the ADE20K dataset ("ade20k") or the released weights of bundled configs (${BUNDLED_CONFIGS.join(', ')})`)
    .argument('<what...>', '"ade20k" and/or bundled config names')
    .option('--mirror <url>', 'download from this base URL instead of the original hosts (also SEGTOOL_MIRROR)')
    .option('--dir <dir>', 'folder for weights (default: the config\'s DIR, where eval and test look)')
    .option('--data-dir <dir>', 'folder for the dataset (the bundled configs read ./data/)', './data')
    .option('--no-verify', 'skip the checksum check (e.g. a mirror with a repacked archive)')
    .option('--no-extract', 'download the dataset archive without extracting or listing it')
    .action(async (what: string[], options: DownloadCommandOptions) => {
      const mirror = options.mirror ?? (process.env['SEGTOOL_MIRROR'] || undefined);
      if (mirror !== undefined && !/^https?:\/\//i.test(mirror)) {
        throw new SegtoolError('ERR_INVALID_ARG', `Expected an http:// or https:// URL for --mirror but received ${JSON.stringify(mirror)}`);
      }
      const bar = new ProgressBar();
      const interrupt = abortOnInterrupt('the download (run again to resume)');
      try {
        for (const name of what) {
          if (name.toLowerCase() === 'ade20k') {
            const dataDir = resolve(options.dataDir);
            const item: DownloadItem = {
              url: joinUrl(mirror ?? DATASET_HOST, ADE20K_ARCHIVE.file),
              dest: join(dataDir, ADE20K_ARCHIVE.file),
              ...(options.verify ? { checksum: ADE20K_ARCHIVE.checksum } : {}),
            };
            bar.log(`Downloading ${item.url}`);
            const result = await downloadFile(item.url, item.dest, {
              ...(item.checksum ? { checksum: item.checksum } : {}),
              onProgress: reportProgress(bar, ADE20K_ARCHIVE.file),
              signal: interrupt.signal,
            });
            bar.log(describeResult(result));
            if (!options.extract) continue;
            if (existsSync(join(dataDir, 'training.odgt')) && existsSync(join(dataDir, 'validation.odgt')) && existsSync(join(dataDir, ADE20K_ARCHIVE.folder))) {
              bar.log(`${relative('.', join(dataDir, ADE20K_ARCHIVE.folder))} and its lists are already there (delete them to extract again)`);
              continue;
            }
            const count = await extractZip(result.path, dataDir, (done, total) => bar.update(done / total, 'Extracting', `${done}/${total}`));
            bar.log(`Extracted ${count} files into ${relative('.', dataDir) || '.'}`);
            const lists = await writeAde20kLists(dataDir, (message) => bar.log(message));
            bar.log(`Wrote ${lists.map((l) => relative('.', l)).join(', ')}`);
          } else {
            for (const item of await weightItems(name, mirror, options.dir)) {
              bar.log(`Downloading ${item.url}`);
              const result = await downloadFile(item.url, item.dest, {
                onProgress: reportProgress(bar, item.dest.slice(item.dest.lastIndexOf('/') + 1)),
                signal: interrupt.signal,
              });
              try {
                detectWeightsFormat(result.path); // a mirror's HTML error page is not a checkpoint
              } catch (error) {
                await rm(result.path, { force: true });
                throw new SegtoolError('ERR_BAD_FILE', `${item.url} is not a weights file (removed it): ${(error as Error).message}`);
              }
              bar.log(describeResult(result));
            }
          }
        }
      } finally {
        bar.done();
        interrupt.dispose();
      }
    });
}
