/**
 * `segtool download ade20k | CONFIG ...`: the ADE20K scene-parsing dataset (downloaded,
 * checked, extracted, and listed as data/training.odgt / data/validation.odgt as the reference
 * ships them) and the reference's released weights (DIR/encoder_epoch_20.pth and
 * DIR/decoder_epoch_20.pth, where the bundled configs look for them). Every file goes through
 * the download cache (lib/download/cache.ts): fetched once, resumable, checked, and re-verified
 * on every run; one base URL (`--mirror URL` or SEGTOOL_MIRROR) replaces the original host,
 * which is often down.
 */
import { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { checkWeightsFile } from '../checkpoint.js';
import { BUNDLED_CONFIGS, bundledConfigPath, findBundledConfig, loadConfig, suggestBundledConfig, type SegtoolConfig } from '../config/index.js';
import { listFolder } from '../data/index.js';
import { cachedPath, fetchCached, mirrorBase, type FetchCachedResult } from '../download/cache.js';
import { hashFile, type Checksum, type DownloadProgress } from '../download/fetch.js';
import { SegtoolError } from '../errors.js';
import { placeFileAtomic, writeFileAtomic } from '../io/files.js';
import { IMAGENET_CHECKPOINTS, imagenetCheckEncoder, type ImagenetCheckpoint } from '../imagenet.js';
import { fetchImagenetCheckpoint } from '../train/pretrained.js';
import { abortOnInterrupt } from './common.js';
import { formatBytes, formatDuration, ProgressBar } from './progress.js';
import { extractZip, zipEntryNames } from './unzip.js';

/** The dataset archive; its SHA-1 is the one GluonCV and others publish for this file. */
export const ADE20K_ARCHIVE = Object.freeze({
  remotePath: 'data/ADEChallengeData2016.zip',
  file: 'ADEChallengeData2016.zip',
  folder: 'ADEChallengeData2016',
  checksum: { algorithm: 'sha1', hex: '219e1696abb36c8ba3a3afe7fb2f4b4606a897c7' } as Checksum,
});

/**
 * Where the released weights of a bundled config are below the host: `model/pytorch/<folder>/`,
 * the folder being the config's DIR's last part (the reference's `ade20k-hrnetv2-c1`, ...,
 * the seed's `baseline-...`), the file its VAL.checkpoint (epoch_20.pth, epoch_30.pth, ...).
 */
export function releasedWeightsPath(cfg: SegtoolConfig, part: 'encoder' | 'decoder'): string {
  return `model/pytorch/${basename(cfg.DIR)}/${part}_${cfg.VAL.checkpoint}`;
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
    await writeFileAtomic(path, `${lines.join('\n')}\n`, 'list file');
    written.push(path);
  }
  return written;
}

export interface DownloadCommandOptions {
  mirror?: string;
  dir?: string;
  dataDir: string;
  verify: boolean;
  extract: boolean;
}

/** What every download target gets: the command's options, where to report, and Ctrl-C. */
export interface TargetContext {
  options: DownloadCommandOptions;
  mirror: string;
  bar: ProgressBar;
  signal: AbortSignal;
}

/** `path` relative to the working folder when it is inside it, else absolute. */
function display(path: string): string {
  const rel = relative('.', path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function reportProgress(bar: ProgressBar, label: string): (p: DownloadProgress) => void {
  const started = performance.now();
  return (p) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? (p.received - p.resumedFrom) / seconds : 0;
    const eta = p.total !== undefined && rate > 0 ? ` ETA ${formatDuration((p.total - p.received) / rate)}` : '';
    const size = p.total !== undefined ? `${formatBytes(p.received)} / ${formatBytes(p.total)}` : formatBytes(p.received);
    bar.update(p.total ? p.received / p.total : 0, label, `${size} ${formatBytes(rate)}/s${eta}`);
  };
}

/** One line on what fetchCached did with `result` (shown as `shown`, the file the user uses). */
function describeFetch(result: FetchCachedResult, shown: string): string {
  if (!result.downloaded) {
    return `${display(shown)} already present (${formatBytes(result.bytes)}, sha256 ${result.adopted ? 'recorded: placed by hand, checked' : 'ok'})`;
  }
  const resumed = result.resumedFrom > 0 ? `, resumed at ${formatBytes(result.resumedFrom)}` : '';
  const again = result.refetched ? ' (the cached copy no longer matched its SHA-256: corrupt, downloaded again)' : '';
  return `${display(shown)}: ${formatBytes(result.bytes)} from ${result.url}${resumed}, sha256 ${result.sha256}${again}`;
}

/** Fails unless the archive looks like ADEChallengeData2016.zip (a mirror's web page is not). */
async function expectAde20kArchive(path: string): Promise<void> {
  const names = await zipEntryNames(path);
  if (!names.some((n) => n.startsWith(`${ADE20K_ARCHIVE.folder}/images/`))) {
    throw new SegtoolError('ERR_BAD_FILE', `${path}: a zip without ${ADE20K_ARCHIVE.folder}/images/ (not the ADE20K archive)`);
  }
}

async function downloadAde20k(ctx: TargetContext): Promise<void> {
  const { options, bar } = ctx;
  const dataDir = resolve(options.dataDir);
  const extracted = [join(dataDir, 'training.odgt'), join(dataDir, 'validation.odgt'), join(dataDir, ADE20K_ARCHIVE.folder)];
  if (options.extract && extracted.every((p) => existsSync(p))) {
    bar.log(`${display(extracted[2]!)} and its lists are already there (delete them to extract again)`);
    return;
  }
  const result = await fetchCached(ADE20K_ARCHIVE.remotePath, {
    mirror: ctx.mirror,
    ...(options.verify ? { checksum: ADE20K_ARCHIVE.checksum } : {}),
    validate: expectAde20kArchive,
    onProgress: reportProgress(bar, ADE20K_ARCHIVE.file),
    signal: ctx.signal,
    offlineHint: 'Then run this command again to extract it.',
  });
  bar.log(describeFetch(result, result.path));
  if (!options.extract) return;
  const count = await extractZip(result.path, dataDir, (done, total) => bar.update(done / total, 'Extracting', `${done}/${total}`));
  bar.log(`Extracted ${count} files into ${display(dataDir)}`);
  const lists = await writeAde20kLists(dataDir, (message) => bar.log(message));
  bar.log(`Wrote ${lists.map((l) => display(l)).join(', ')}`);
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  await hashFile(path, [hash]);
  return hash.digest('hex');
}

/**
 * Puts the verified cached file at `dest` (a hard link when on the same file system, else a copy),
 * unless `dest` already has the same content. Returns whether `dest` was written. A different
 * file at `dest` (the user's own weights, or a damaged copy) is an error, never overwritten,
 * unless it is a link to the cache file as it was before this run (`linkedBefore`).
 */
async function placeCopy(cached: FetchCachedResult, dest: string, linkedBefore?: Stats): Promise<boolean> {
  const [source, target] = await Promise.all([stat(cached.path), stat(dest).catch(() => undefined)]);
  const same = (a: Stats, b: Stats): boolean => a.ino === b.ino && a.dev === b.dev;
  if (target && same(target, source)) return false;
  // Still linked to the cache file this run replaced (found corrupt): ours to replace.
  if (target && !(linkedBefore && same(target, linkedBefore))) {
    const actual = await sha256Of(dest);
    if (actual === cached.sha256) return false;
    throw new SegtoolError(
      'ERR_BAD_FILE',
      `${dest} is not the released file (sha256 ${actual}, the released one is ${cached.sha256}): your own weights, or a damaged copy? Move or delete it, or choose another folder with --dir`,
    );
  }
  await placeFileAtomic(cached.path, dest, 'weights file');
  return true;
}

/** Fetches (through the cache) the released weights of bundled config `name` into its DIR (or --dir); returns that folder. */
export async function downloadReleasedWeights(name: string, ctx: TargetContext): Promise<string> {
  const found = findBundledConfig(name);
  if (found === undefined) {
    throw new SegtoolError(
      'ERR_NOT_FOUND',
      `Nothing to download named ${JSON.stringify(name)}: expected ade20k, imagenet, ${IMAGENET_CHECKPOINTS.map((c) => `imagenet-${c.name}`).join(', ')} or a bundled config${suggestBundledConfig(name)}`,
    );
  }
  const cfg = await loadConfig(bundledConfigPath(found));
  const dir = resolve(ctx.options.dir ?? cfg.DIR);
  const architecture = { encoder: cfg.MODEL.arch_encoder, decoder: cfg.MODEL.arch_decoder, fcDim: cfg.MODEL.fc_dim, numClass: cfg.DATASET.num_class };
  for (const part of ['encoder', 'decoder'] as const) {
    const dest = join(dir, `${part}_${cfg.VAL.checkpoint}`);
    const remotePath = releasedWeightsPath(cfg, part);
    const cachedBefore = await stat(cachedPath(remotePath)).catch(() => undefined);
    const result = await fetchCached(remotePath, {
      mirror: ctx.mirror,
      // Parsed and compared with the config's model: a web page or another architecture's file is refused.
      validate: async (path) => {
        await checkWeightsFile(path, part, architecture);
      },
      onProgress: reportProgress(ctx.bar, basename(dest)),
      signal: ctx.signal,
      offlineHint: `Then run this command again to copy it to ${display(dest)}; or put your own weights there, or name them with VAL.checkpoint / TEST.checkpoint.`,
    });
    const replaced = await placeCopy(result, dest, cachedBefore);
    ctx.bar.log(describeFetch(result, dest) + (replaced && !result.downloaded ? ' (copied from the cache)' : ''));
  }
  return dir;
}

/** Targets by name; any other name is a bundled config whose released weights are wanted. */
/** The ImageNet-pretrained encoders training starts from (into the cache, where training looks). */
async function downloadImagenet(checkpoints: readonly ImagenetCheckpoint[], ctx: TargetContext): Promise<void> {
  for (const checkpoint of checkpoints) {
    const result = await fetchImagenetCheckpoint(imagenetCheckEncoder(checkpoint), {
      mirror: ctx.mirror,
      onProgress: reportProgress(ctx.bar, checkpoint.file),
      signal: ctx.signal,
      offlineHint: 'Then run this command again to check and record it.',
    });
    ctx.bar.log(describeFetch(result, result.path));
  }
}

const TARGETS = new Map<string, (ctx: TargetContext) => Promise<void>>([
  ['ade20k', downloadAde20k],
  ['imagenet', (ctx) => downloadImagenet(IMAGENET_CHECKPOINTS, ctx)],
  ...IMAGENET_CHECKPOINTS.map((c) => [`imagenet-${c.name}`, (ctx: TargetContext) => downloadImagenet([c], ctx)] as const),
]);

export function downloadCommand(): Command {
  return new Command('download')
    .description(
      `download the ADE20K dataset ("ade20k"), the ImageNet-pretrained encoders training starts from ("imagenet", or one of ` +
        `${IMAGENET_CHECKPOINTS.map((c) => `imagenet-${c.name}`).join(', ')}), or the released weights of bundled configs (${BUNDLED_CONFIGS.join(', ')})`,
    )
    .argument('<what...>', '"ade20k", "imagenet", "imagenet-<arch>" and/or bundled config names')
    .option('--mirror <url>', 'base URL that replaces http://sceneparsing.csail.mit.edu/ (same paths below it; also SEGTOOL_MIRROR)')
    .option('--dir <dir>', 'folder for weights (default: the config\'s DIR, where eval and test look)')
    .option('--data-dir <dir>', 'folder for the dataset (the bundled configs read ./data/)', './data')
    .option('--no-verify', 'skip the archive\'s published checksum (e.g. a mirror with a repacked archive)')
    .option('--no-extract', 'download the dataset archive (into the cache) without extracting or listing it')
    .action(async (what: string[], options: DownloadCommandOptions) => {
      const mirror = mirrorBase(options.mirror);
      const progress = new ProgressBar();
      const interrupt = abortOnInterrupt('the download (run again to resume)');
      const ctx: TargetContext = { options, mirror, bar: progress, signal: interrupt.signal };
      try {
        for (const name of what) {
          const target = TARGETS.get(name.toLowerCase());
          if (target) await target(ctx);
          else await downloadReleasedWeights(name, ctx);
        }
      } finally {
        progress.done();
        interrupt.dispose();
      }
    });
}
