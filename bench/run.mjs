#!/usr/bin/env node
// segtool vs a PyTorch baseline on the same LibTorch (Debian's python3-torch 1.13), side by side
// on this CPU. Each measurement runs in its own process per side (peak RSS is per side and per
// task), the two sides alternate which goes first, and both use the same thread count.
//
//   npm run bench [-- options]      (or: node bench/run.mjs [options])
//   --models a-b,c-d   models (default: the five of issue 10)
//   --reps N           timed repetitions per measurement (default 3; the median is reported)
//   --warmup N         untimed runs before them (default 1)
//   --threads N        intra-op threads on both sides (default 2)
//   --quick            --reps 1 --warmup 1, no 4000 x 3000 row
//   --tasks LIST       infer1,infer5,train,big,onnx,fuse (default all). fuse: single-scale
//                      inference with the fused graph (BatchNorm folded into the convs, the
//                      default) against the unfused graph (fuse: false) and PyTorch eager,
//                      three processes alternated. onnx: the network's forward
//                      (logprob, 1 scale 300x400) in segtool against onnxruntime-node running
//                      the model exportOnnx wrote, same thread count (skipped, saying why, when
//                      onnxruntime-node is not installed)
//   --big-models LIST  models of the 4000 x 3000 row (default: all selected)
//   --big-cap-gib G    never let one process pass G GiB (default 16): skip what is estimated
//                      above it, kill what grows above it
//   --profile          also: per-op profile of the baseline (torch.autograd.profiler) and
//                      segtool's stage timings, single-scale
//   --no-baseline      segtool only
//   --omp-wait POLICY  OMP_WAIT_POLICY of both sides: passive (default), active, or default
//                      (unset: libgomp spins, which on a loaded machine slows whichever
//                      process spins; see bench/results/README.md)
//   --python PATH      the baseline's interpreter (default /usr/bin/python3)
//   --out FILE         JSON results (default bench/results/cpu-<date>.json)
//   --render FILE      no measuring: redo the table and summary of a saved JSON (rewrites it)
//   --check            first prove that both sides compute the same (bench/check-segtool.mjs,
//                      bench/baseline/check.py); stop when they do not
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MODELS } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const NUM_CLASS = 150;

// ------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = {
    models: DEFAULT_MODELS,
    reps: 3,
    warmup: 1,
    threads: 2,
    tasks: ['infer1', 'infer5', 'train', 'big', 'onnx', 'fuse'],
    bigModels: null,
    bigCapGiB: 16,
    profile: false,
    baseline: true,
    python: '/usr/bin/python3',
    ompWait: 'passive',
    out: null,
    render: null,
    check: false,
  };
  const value = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const int = (i, min) => {
    const n = Number(value(i));
    if (!Number.isInteger(n) || n < min) throw new Error(`${argv[i]}: expected an integer >= ${min}, got ${argv[i + 1]}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--models') o.models = value(i++).split(',');
    else if (a === '--reps') o.reps = int(i++, 1);
    else if (a === '--warmup') o.warmup = int(i++, 0);
    else if (a === '--threads') o.threads = int(i++, 1);
    else if (a === '--tasks') o.tasks = value(i++).split(',');
    else if (a === '--big-models') o.bigModels = value(i++).split(',');
    else if (a === '--big-cap-gib') o.bigCapGiB = Number(value(i++));
    else if (a === '--profile') o.profile = true;
    else if (a === '--no-baseline') o.baseline = false;
    else if (a === '--python') o.python = value(i++);
    else if (a === '--omp-wait') o.ompWait = value(i++).toLowerCase();
    else if (a === '--out') o.out = value(i++);
    else if (a === '--render') o.render = value(i++);
    else if (a === '--check') o.check = true;
    else if (a === '--quick') {
      o.reps = 1;
      o.warmup = 1;
      o.tasks = o.tasks.filter((t) => t !== 'big');
    } else if (a === '--help' || a === '-h') {
      const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
      console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!['passive', 'active', 'default'].includes(o.ompWait)) throw new Error(`--omp-wait: expected passive, active or default, got ${o.ompWait}`);
  for (const t of o.tasks) if (!['infer1', 'infer5', 'train', 'big', 'onnx', 'fuse'].includes(t)) throw new Error(`unknown task ${t}`);
  for (const m of o.models) if (!/^[a-z0-9]+-[a-z0-9_]+$/.test(m)) throw new Error(`bad model name ${m} (encoder-decoder)`);
  o.bigModels ??= o.models;
  return o;
}

// ------------------------------------------------------------------ machine
function machineInfo(native, python) {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const flags = /^flags\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.split(' ') ?? [];
  const logical = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  const build = native().buildInfo();
  let torchPython = null;
  const probe = spawnSync(python, ['-c', 'import torch, sys; print(torch.__version__); print(sys.version.split()[0])'], { encoding: 'utf8' });
  if (probe.status === 0) {
    const [torch, py] = probe.stdout.trim().split('\n');
    torchPython = { torch, python: py };
  }
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
  return {
    cpu: model,
    logicalCpus: logical,
    availableParallelism: cpus().length,
    isa: ['avx2', 'avx512f', 'avx512_vnni', 'fma'].filter((f) => flags.includes(f)),
    ramBytes: kib('MemTotal') || totalmem(),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    node: process.version,
    libtorch: build.torchVersion,
    segtoolBuild: { mkldnn: build.mkldnn, openmp: build.openmp, cuda: build.cuda },
    baseline: torchPython ? { interpreter: python, torch: torchPython.torch, python: torchPython.python } : null,
  };
}

function memAvailable() {
  const m = /^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : freemem();
}

// ------------------------------------------------------------------ workers
/**
 * One worker process (bench/worker-segtool.mjs or bench/baseline/worker.py) speaking the line
 * protocol: READY, then commands (warmup, rep, stages, profile, end) each answered by one line.
 * A watchdog kills it when its RSS passes capBytes (0 = no cap).
 */
class Worker {
  constructor(side, job, opts, capBytes = 0) {
    this.side = side;
    this.job = job;
    const env = { ...process.env, OMP_NUM_THREADS: String(opts.threads), SEGTOOL_THREADS: String(opts.threads), MKL_NUM_THREADS: String(opts.threads) };
    delete env.OMP_WAIT_POLICY;
    if (opts.ompWait !== 'default') env.OMP_WAIT_POLICY = opts.ompWait.toUpperCase();
    // 'segtool-unfused': segtool's worker with the fused inference graph off.
    const workerJob = side === 'segtool-unfused' ? { ...job, fuse: false } : job;
    const workerSide = side === 'segtool-unfused' ? 'segtool' : side;
    const [cmd, args] =
      workerSide === 'segtool' || workerSide === 'onnxruntime'
        ? [process.execPath, ['--expose-gc', join(here, `worker-${workerSide}.mjs`), JSON.stringify(workerJob)]]
        : [opts.python, [join(here, 'baseline', 'worker.py'), JSON.stringify(job)]];
    this.loads = [loadavg()[0]];
    this.child = spawn(cmd, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    this.pending = [];
    this.lines = [];
    this.maxSeen = 0;
    this.killedForMemory = false;
    this.exited = false;
    let buffer = '';
    this.child.stdout.on('data', (d) => {
      buffer += d;
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        const waiter = this.pending.shift();
        if (waiter) waiter.resolve(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
      process.stderr.write(d);
    });
    this.watch = setInterval(() => {
      try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
        const rss = m ? Number(m[1]) * 1024 : 0;
        this.maxSeen = Math.max(this.maxSeen, rss);
        if (capBytes && rss > capBytes && !this.killedForMemory) {
          this.killedForMemory = true;
          this.capBytes = capBytes;
          this.child.kill('SIGKILL');
        }
      } catch {
        /* exited */
      }
    }, 100);
    this.child.on('close', (code, signal) => {
      clearInterval(this.watch);
      this.exited = true;
      const why = this.killedForMemory
        ? `killed: RSS passed the ${(capBytes / GiB).toFixed(1)} GiB cap`
        : `exit ${code ?? signal}: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`;
      for (const w of this.pending.splice(0)) w.reject(new Error(why));
      this.exitReason = why;
    });
  }

  /** The next line of output that starts with `tag` (rejects when the process ends first). */
  next(tag) {
    const take = (line) => {
      if (!line.startsWith(`${tag} `)) throw new Error(`${this.side}: expected ${tag}, got ${line.slice(0, 200)}`);
      return line.slice(tag.length + 1);
    };
    if (this.lines.length) return Promise.resolve(take(this.lines.shift()));
    if (this.exited) return Promise.reject(new Error(this.exitReason));
    return new Promise((resolve, reject) => this.pending.push({ resolve: (l) => { try { resolve(take(l)); } catch (e) { reject(e); } }, reject }));
  }

  async command(command, tag) {
    this.loads.push(loadavg()[0]);
    this.child.stdin.write(`${command}\n`);
    return this.next(tag);
  }

  /** Ends the worker; resolves its RESULT (or an error record). */
  async finish() {
    try {
      this.child.stdin.write('end\n');
      const r = JSON.parse(await this.next('RESULT'));
      return this.record({ ...r });
    } catch (error) {
      return this.failure(error);
    }
  }

  failure(error) {
    try {
      this.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
    const r = { error: String(error instanceof Error ? error.message : error) };
    if (this.killedForMemory) r.peakRssAtLeast = this.maxSeen;
    return this.record(r);
  }

  record(r) {
    this.loads.push(loadavg()[0]);
    return {
      side: this.side,
      model: this.job.model,
      task: this.job.task,
      scaleSet: this.job.scaleSet,
      loadBefore: this.loads[0],
      loadMax: Math.max(...this.loads),
      loadMean: this.loads.reduce((a, b) => a + b, 0) / this.loads.length,
      ...r,
      side: this.side, // the runner's name ('segtool-unfused' runs the segtool worker)
    };
  }
}

/**
 * Runs one measurement on every side: all processes start and warm up, then the timed
 * repetitions alternate between the sides (segtool, pytorch, pytorch, segtool, ...), so that
 * both see the same machine load. Returns {side: result}.
 */
async function measure(sides, job, opts, { capBytes = 0, extra = [] } = {}) {
  const workers = {};
  const out = {};
  for (const side of sides) {
    const w = new Worker(side, job, opts, capBytes);
    try {
      await w.next('READY');
      workers[side] = w;
    } catch (error) {
      out[side] = w.failure(error);
    }
  }
  const live = () => sides.filter((s) => workers[s] && !out[s]);
  const what = `${job.model} ${job.task}${job.scaleSet ? ` ${job.scaleSet}` : ''}`;
  const step = async (side, command, tag) => {
    try {
      const reply = await workers[side].command(command, tag);
      if (tag === 'DONE') console.error(`  ${side.padEnd(7)} ${what}: ${command} ${(Number(reply) / 1000).toFixed(2)} s (load ${loadavg()[0].toFixed(1)})`);
      return reply;
    } catch (error) {
      out[side] = workers[side].failure(error);
      return null;
    }
  };
  for (let i = 0; i < job.warmup; i++) for (const side of live()) await step(side, 'warmup', 'DONE');
  for (let i = 0; i < job.reps; i++) {
    const seq = i % 2 === 0 ? live() : live().reverse();
    for (const side of seq) await step(side, 'rep', 'DONE');
  }
  for (const [side, command, tag] of extra) if (live().includes(side)) await step(side, command, tag);
  for (const side of live()) out[side] = await workers[side].finish();
  return out;
}

// ------------------------------------------------------------------ geometry
/** The reference's test-time sizes for an image: [width, height] per scale (lib/data). */
async function scalesFor(width, height) {
  const { valTargetSizes } = await import('../dist/data/index.js');
  return valTargetSizes({ width, height });
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const geomean = (a) => (a.length ? Math.exp(a.reduce((s, x) => s + Math.log(x), 0) / a.length) : NaN);

// ------------------------------------------------------------------ main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.render) {
    const saved = JSON.parse(readFileSync(opts.render, 'utf8'));
    const { results, ...meta } = saved;
    const json = { ...meta, ...report(meta, results), results };
    console.log(json.text);
    writeFileSync(opts.out ?? opts.render, `${JSON.stringify(json, null, 1)}\n`);
    return;
  }
  const { native } = await import('../dist/native.js');
  const machine = machineInfo(native, opts.python);
  if (opts.baseline && !machine.baseline) {
    console.error(
      `The PyTorch baseline needs torch importable by ${opts.python} (Debian: apt-get install python3-torch; ` +
        'or --python PATH, or --no-baseline).',
    );
    process.exit(1);
  }
  if (opts.check) {
    const models = ['--models', opts.models.join(',')];
    const env = { ...process.env, OMP_NUM_THREADS: String(opts.threads) };
    for (const [cmd, args] of [
      [process.execPath, [join(here, 'check-segtool.mjs'), ...models]],
      [opts.python, [join(here, 'baseline', 'check.py'), ...models]],
    ]) {
      const r = spawnSync(cmd, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
      if (r.status !== 0) {
        console.error('The baseline does not compute what segtool computes (see above): not benchmarking.');
        process.exit(1);
      }
    }
  }
  const started = new Date();
  const date = started.toISOString().slice(0, 10);
  const out = opts.out ?? join(here, 'results', `cpu-${date}.json`);
  const sides = opts.baseline ? ['segtool', 'pytorch'] : ['segtool'];

  const small = { image: [300, 400], scales1: await scalesFor(400, 300), scales5: await scalesFor(400, 300) };
  small.scales1 = small.scales1.slice(0, 1);
  const bigSize = [3000, 4000];
  const midSize = [1500, 2000];
  const bigScales = await scalesFor(bigSize[1], bigSize[0]);
  const midScales = await scalesFor(midSize[1], midSize[0]);
  const trainBatch = [2, 3, 256, 320];

  console.error(
    `segtool bench: ${machine.cpu}, ${machine.logicalCpus} CPUs, ${(machine.ramBytes / GiB).toFixed(1)} GiB, LibTorch ${machine.libtorch}; ` +
      `threads ${opts.threads}, reps ${opts.reps}, warm-up ${opts.warmup}; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );

  const results = [];
  let turn = 0;
  let onnxruntimeMissing = null;
  if (opts.tasks.includes('onnx')) {
    try {
      await import('onnxruntime-node');
    } catch (error) {
      onnxruntimeMissing = `onnxruntime-node is not installed (a devDependency: ONNXRUNTIME_NODE_INSTALL=skip npm ci): ${String(error.message).split('\n')[0]}`;
      console.error(`segtool bench: the onnxruntime row is skipped: ${onnxruntimeMissing}`);
    }
  }
  // Alternate which side starts (and so which side's warm-up runs first) per measurement.
  const both = async (job, extra = []) => {
    const seq = turn++ % 2 === 0 ? sides : [...sides].reverse();
    const got = await measure(seq, job, opts, { extra });
    for (const side of sides) results.push(got[side]);
    return got;
  };
  const base = { threads: opts.threads, reps: opts.reps, warmup: opts.warmup };

  for (const model of opts.models) {
    if (opts.tasks.includes('infer1')) {
      const extra = opts.profile ? [...Array(Math.max(1, opts.reps)).keys()].flatMap(() => [['segtool', 'stages', 'STAGES'], ['pytorch', 'profile', 'PROFILE']]) : [];
      await both({ ...base, model, task: 'infer', scaleSet: 'single', image: small.image, scales: small.scales1 }, extra);
    }
    if (opts.tasks.includes('infer5')) {
      await both({ ...base, model, task: 'infer', scaleSet: 'multi', image: small.image, scales: small.scales5 });
    }
    if (opts.tasks.includes('train')) {
      await both({ ...base, model, task: 'train', batch: trainBatch });
    }
    if (opts.tasks.includes('fuse')) {
      // Fused vs unfused segtool (and PyTorch eager), alternated in one measurement.
      const fuseSides = ['segtool', 'segtool-unfused', ...(opts.baseline ? ['pytorch'] : [])];
      const seq = turn++ % 2 === 0 ? fuseSides : [...fuseSides].reverse();
      const got = await measure(seq, { ...base, model, task: 'infer', scaleSet: 'fuse', image: small.image, scales: small.scales1 }, opts);
      for (const side of fuseSides) results.push(got[side]);
    }
    if (opts.tasks.includes('onnx')) {
      const job = { ...base, model, task: 'forward', scaleSet: 'onnx', image: small.image, scales: small.scales1 };
      if (onnxruntimeMissing) {
        results.push({ side: 'onnxruntime', model, task: 'forward', scaleSet: 'onnx', skipped: onnxruntimeMissing });
      } else {
        const seq = turn++ % 2 === 0 ? ['segtool', 'onnxruntime'] : ['onnxruntime', 'segtool'];
        const got = await measure(seq, job, opts);
        results.push(got.segtool, got.onnxruntime);
      }
    }
  }

  // Memory of 5-scale inference on a 4000 x 3000 image: one run (no warm-up) per side, one side
  // at a time, when its estimated peak fits under the cap and in the free memory. Also the
  // peak at 2000 x 1500, from which (with the 400 x 300 5-scale peak) the 4000 x 3000 peak is
  // extrapolated linearly in output pixels where it was not measured.
  if (opts.tasks.includes('big')) {
    const cap = opts.bigCapGiB * GiB;
    const fullBytes = (h, w) => NUM_CLASS * h * w * 4;
    // Full-size num_class x H x W float32 buffers alive at once on each side's path:
    // segtool: none (the fused native head works row by row; labels and confidence, native
    // and their JS copies, are ~16 bytes per pixel); PyTorch (the reference's test loop):
    // scores, pred_tmp (softmax), pred_tmp / n, and the new scores (or the upsampled logits
    // while softmax runs), measured ~4.3 at 2000 x 1500.
    const buffers = { segtool: 0, pytorch: 4 };
    const perPixel = { segtool: 16, pytorch: 0 };
    const one = { ...base, reps: 1, warmup: 0, task: 'infer' };
    for (const model of opts.bigModels) {
      const small5 = Object.fromEntries(
        sides.map((s) => [s, results.find((r) => r.side === s && r.model === model && r.scaleSet === 'multi' && r.peakRss)]),
      );
      for (const side of sides) {
        const basePeak = small5[side]?.peakRss ?? 1 * GiB;
        const estimate = basePeak + buffers[side] * fullBytes(...bigSize) + perPixel[side] * bigSize[0] * bigSize[1];
        const free = memAvailable();
        if (estimate > cap || estimate > free - 2 * GiB) {
          const why = estimate > cap ? `the ${opts.bigCapGiB} GiB cap` : `free memory (${(free / GiB).toFixed(1)} GiB) - 2 GiB`;
          results.push({ side, model, task: 'infer', scaleSet: 'big', skipped: `estimated ${(estimate / GiB).toFixed(1)} GiB > ${why}`, estimatedPeak: estimate });
        } else {
          const got = await measure([side], { ...one, model, scaleSet: 'big', image: bigSize, scales: bigScales }, opts, { capBytes: Math.min(cap, free - 1 * GiB) });
          results.push(got[side]);
        }
      }
      for (const side of sides) {
        const got = await measure([side], { ...one, model, scaleSet: 'mid', image: midSize, scales: midScales }, opts, {
          capBytes: Math.min(cap, memAvailable() - 1 * GiB),
        });
        const r = got[side];
        results.push(r);
        const s5 = small5[side];
        if (r.peakRss && s5?.peakRss) {
          const px = (hw) => hw[0] * hw[1];
          const slope = (r.peakRss - s5.peakRss) / (px(midSize) - px(small.image));
          results.push({
            side,
            model,
            task: 'infer',
            scaleSet: 'big-extrapolated',
            peakRss: r.peakRss + slope * (px(bigSize) - px(midSize)),
            from: ['400x300 5-scale', '2000x1500 5-scale'],
          });
        }
      }
    }
  }

  const ended = new Date();
  const meta = {
    benchmark: 'segtool vs PyTorch baseline (bench/run.mjs)',
    date,
    started: started.toISOString(),
    ended: ended.toISOString(),
    machine,
    options: { ...opts, out: undefined },
    geometry: { singleScale: small.scales1, fiveScale: small.scales5, big: { image: bigSize, scales: bigScales }, mid: { image: midSize, scales: midScales }, trainBatch },
  };
  const json = { ...meta, ...report(meta, results), results };
  console.log(json.text);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(json, null, 1)}\n`);
  console.error(`wrote ${relative(process.cwd(), out)}`);
}

/**
 * The table, summary, targets and profile digest of a run: `meta` = {machine, options, ...},
 * `results` = the workers' records. Also used by --render to redo them from a saved JSON.
 */
function report(meta, results) {
  const { machine } = meta;
  const opts = meta.options;
  // ---------------------------------------------------------------- table
  const find = (side, model, task, scaleSet) =>
    results.find((r) => r.side === side && r.model === model && r.task === task && (scaleSet === undefined || r.scaleSet === scaleSet));
  const rows = [];
  const speedups = { infer1: [], infer5: [], train: [] };
  const speedupsMin = { infer1: [], infer5: [], train: [] }; // fastest rep vs fastest rep
  const fmtMs = (r) => (r?.times?.length ? Math.round(median(r.times)).toString() : r?.error ? 'error' : r?.skipped ? 'skipped' : '-');
  const fmtMiB = (r) => (r?.peakRss ? Math.round(r.peakRss / MiB).toString() : r?.error ? (r.peakRssAtLeast ? `>${Math.round(r.peakRssAtLeast / MiB)}` : 'error') : '-');
  for (const model of opts.models) {
    const add = (label, kind, key, s, p) => {
      const sv = kind === 'ms' ? (s?.times?.length ? median(s.times) : null) : s?.peakRss ?? null;
      const pv = kind === 'ms' ? (p?.times?.length ? median(p.times) : null) : p?.peakRss ?? null;
      const ratio = sv && pv ? pv / sv : null;
      if (ratio && key) speedups[key].push(ratio);
      if (kind === 'ms' && key && s?.times?.length && p?.times?.length) speedupsMin[key].push(Math.min(...p.times) / Math.min(...s.times));
      rows.push({
        model,
        measurement: label,
        segtool: kind === 'ms' ? fmtMs(s) : fmtMiB(s),
        pytorch: opts.baseline ? (kind === 'ms' ? fmtMs(p) : fmtMiB(p)) : '',
        ratio: ratio ? `${ratio.toFixed(2)}x` : '',
        segtoolValue: sv,
        pytorchValue: pv,
      });
    };
    const pick = (task, scaleSet) => [find('segtool', model, task, scaleSet), find('pytorch', model, task, scaleSet)];
    if (opts.tasks.includes('infer1')) add('infer 1-scale 300x400, ms', 'ms', 'infer1', ...pick('infer', 'single'));
    if (opts.tasks.includes('infer5')) add('infer 5-scale 300..600, ms', 'ms', 'infer5', ...pick('infer', 'multi'));
    if (opts.tasks.includes('train')) add('train step 2x3x256x320, ms', 'ms', 'train', ...pick('train'));
    if (opts.tasks.includes('infer1')) add('  peak RSS infer 1-scale, MiB', 'mib', null, ...pick('infer', 'single'));
    if (opts.tasks.includes('infer5')) add('  peak RSS infer 5-scale, MiB', 'mib', null, ...pick('infer', 'multi'));
    if (opts.tasks.includes('train')) add('  peak RSS train, MiB', 'mib', null, ...pick('train'));
    if (opts.tasks.includes('big') && opts.bigModels.includes(model)) {
      const [s, p] = pick('infer', 'big');
      const [se, pe] = pick('infer', 'big-extrapolated');
      const show = (r, e) => (r?.peakRss ? r : e ? { ...e, extrapolated: true } : r);
      const sv = show(s, se);
      const pv = show(p, pe);
      const ratio = sv?.peakRss && pv?.peakRss ? pv.peakRss / sv.peakRss : null;
      const cell = (r) => (r?.extrapolated ? `~${fmtMiB(r)} (est.)` : fmtMiB(r) === '-' && r?.skipped ? 'skipped' : fmtMiB(r));
      rows.push({
        model,
        measurement: '  peak RSS 5-scale 4000x3000, MiB',
        segtool: cell(sv),
        pytorch: opts.baseline ? cell(pv) : '',
        ratio: ratio ? `${ratio.toFixed(2)}x` : '',
        segtoolValue: sv?.peakRss ?? null,
        pytorchValue: pv?.peakRss ?? null,
        segtoolExtrapolated: !!sv?.extrapolated,
        pytorchExtrapolated: !!pv?.extrapolated,
      });
      if (s?.times?.length) {
        rows.push({ model, measurement: '  infer 5-scale 4000x3000 (1 run), ms', segtool: fmtMs(s), pytorch: opts.baseline ? fmtMs(p) : '', ratio: '' });
      }
      add('  peak RSS 5-scale 2000x1500, MiB', 'mib', null, ...pick('infer', 'mid'));
      add('  infer 5-scale 2000x1500 (1 run), ms', 'ms', null, ...pick('infer', 'mid'));
    }
  }

  const summary = {
    geomeanSpeedup: Object.fromEntries(Object.entries(speedups).map(([k, v]) => [k, v.length ? geomean(v) : null])),
    minSpeedup: Object.fromEntries(Object.entries(speedups).map(([k, v]) => [k, v.length ? Math.min(...v) : null])),
    geomeanSpeedupFastestReps: Object.fromEntries(Object.entries(speedupsMin).map(([k, v]) => [k, v.length ? geomean(v) : null])),
  };
  const bigRows = rows.filter((r) => r.measurement.includes('4000x3000, MiB'));
  const targets = {
    inference: opts.baseline && speedups.infer1.length
      ? {
          want: 'geo-mean >= 1.5x, none < 1.2x (single- and 5-scale)',
          geomean1: summary.geomeanSpeedup.infer1,
          geomean5: summary.geomeanSpeedup.infer5,
          min1: summary.minSpeedup.infer1,
          min5: summary.minSpeedup.infer5,
        }
      : null,
    training: opts.baseline && speedups.train.length ? { want: '>= 1.1x', geomean: summary.geomeanSpeedup.train, min: summary.minSpeedup.train } : null,
    memory4000x3000: bigRows.length
      ? { want: '< 2 GiB', worstSegtoolBytes: Math.max(...bigRows.map((r) => r.segtoolValue ?? Infinity)) }
      : null,
  };
  if (targets.inference) {
    const t = targets.inference;
    t.met = t.geomean1 >= 1.5 && t.min1 >= 1.2 && (t.geomean5 == null || (t.geomean5 >= 1.5 && t.min5 >= 1.2));
  }
  if (targets.training) targets.training.met = targets.training.geomean >= 1.1 && targets.training.min >= 1.0;
  if (targets.memory4000x3000) targets.memory4000x3000.met = targets.memory4000x3000.worstSegtoolBytes < 2 * GiB;

  const header = ['model', 'measurement', 'segtool', 'pytorch', 'pytorch/segtool'];
  const body = rows.map((r, i) => [i > 0 && rows[i - 1].model === r.model ? '' : r.model, r.measurement, r.segtool, r.pytorch, r.ratio]);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((row) => String(row[c]).length)));
  const line = (cells) => cells.map((x, c) => (c >= 2 ? String(x).padStart(widths[c]) : String(x).padEnd(widths[c]))).join('  ');
  const text = [];
  text.push(
    `segtool vs PyTorch ${machine.baseline?.torch ?? '(no baseline)'} baseline: ${machine.cpu}, ${machine.logicalCpus} CPUs, ` +
      `${(machine.ramBytes / GiB).toFixed(1)} GiB RAM, LibTorch ${machine.libtorch}`,
  );
  text.push(
    `threads ${opts.threads} on both sides, OMP_WAIT_POLICY ${opts.ompWait === 'default' ? 'unset' : opts.ompWait.toUpperCase()}; median of ${opts.reps} rep(s) after ${opts.warmup} warm-up; ` +
      `load average ${results.length ? Math.min(...results.filter((r) => r.loadBefore != null).map((r) => r.loadBefore)).toFixed(1) : '?'}` +
      `..${results.length ? Math.max(...results.filter((r) => r.loadBefore != null).map((r) => r.loadBefore)).toFixed(1) : '?'} during the run`,
  );
  text.push('');
  text.push(line(header));
  text.push(line(widths.map((w) => '-'.repeat(w))));
  for (const row of body) text.push(line(row));
  text.push('');
  const x = (v) => (v == null ? 'n/a' : `${v.toFixed(2)}x`);
  if (opts.baseline) {
    text.push(
      `speedup (pytorch ms / segtool ms), geo-mean [min]: infer 1-scale ${x(summary.geomeanSpeedup.infer1)} [${x(summary.minSpeedup.infer1)}], ` +
        `5-scale ${x(summary.geomeanSpeedup.infer5)} [${x(summary.minSpeedup.infer5)}], train ${x(summary.geomeanSpeedup.train)} [${x(summary.minSpeedup.train)}]`,
    );
    const f = summary.geomeanSpeedupFastestReps;
    text.push(`  same from each side's fastest rep (less load noise): infer 1-scale ${x(f.infer1)}, 5-scale ${x(f.infer5)}, train ${x(f.train)}`);
  }
  const verdict = (t) => (t == null ? 'not measured' : t.met ? 'MET' : 'NOT MET');
  text.push(
    `targets: inference >= 1.5x geo-mean, none < 1.2x: ${verdict(targets.inference)}; training >= 1.1x: ${verdict(targets.training)}; ` +
      `5-scale 4000x3000 < 2 GiB: ${verdict(targets.memory4000x3000)}`,
  );
  if (opts.tasks.includes('onnx')) {
    // The exported model in onnxruntime-node against segtool's own forward: the same network
    // output (logprob at the output stride), the same input, the same intra-op thread count.
    const onnxHeader = ['model', 'forward 1-scale 300x400, ms', 'segtool', 'onnxruntime-node', 'onnxruntime/segtool'];
    const onnxBody = opts.models.map((model) => {
      const s = find('segtool', model, 'forward', 'onnx');
      const o = find('onnxruntime', model, 'forward', 'onnx');
      const ratio = s?.times?.length && o?.times?.length ? `${(median(o.times) / median(s.times)).toFixed(2)}x` : '';
      const size = o?.onnxBytes ? `${Math.round(o.onnxBytes / MiB)} MiB .onnx, opset ${o.opset}` : '';
      return [model, size, fmtMs(s), fmtMs(o), ratio];
    });
    const w = onnxHeader.map((h, c) => Math.max(h.length, ...onnxBody.map((row) => String(row[c]).length)));
    const onnxLine = (cells) => cells.map((v, c) => (c >= 2 ? String(v).padStart(w[c]) : String(v).padEnd(w[c]))).join('  ');
    const version = results.find((r) => r.side === 'onnxruntime' && r.onnxruntime)?.onnxruntime;
    text.push('');
    text.push(`segtool vs onnxruntime-node ${version ?? ''} on the exported ONNX model (network forward only, threads ${opts.threads} on both sides):`);
    text.push(onnxLine(onnxHeader));
    text.push(onnxLine(w.map((n) => '-'.repeat(n))));
    for (const row of onnxBody) text.push(onnxLine(row));
  }
  if (opts.tasks.includes('fuse')) {
    // The fused inference graph (native/nn/fuse.h) against the unfused one and PyTorch eager.
    const fuseHeader = ['model', 'fused ms', 'unfused ms', 'pytorch ms', 'unfused/fused', 'pytorch/fused', 'pytorch/unfused'];
    const ratios = { unfused: [], pytorch: [], pytorchUnfused: [] };
    const ms = (r) => (r?.times?.length ? median(r.times) : null);
    const ratio = (a, b, into) => {
      if (!a || !b) return '';
      into.push(a / b);
      return `${(a / b).toFixed(2)}x`;
    };
    const fuseBody = opts.models.map((model) => {
      const f = find('segtool', model, 'infer', 'fuse');
      const u = find('segtool-unfused', model, 'infer', 'fuse');
      const p = find('pytorch', model, 'infer', 'fuse');
      return [model, fmtMs(f), fmtMs(u), opts.baseline ? fmtMs(p) : '', ratio(ms(u), ms(f), ratios.unfused), ratio(ms(p), ms(f), ratios.pytorch), ratio(ms(p), ms(u), ratios.pytorchUnfused)];
    });
    const w = fuseHeader.map((h, c) => Math.max(h.length, ...fuseBody.map((row) => String(row[c]).length)));
    const fuseLine = (cells) => cells.map((v, c) => (c >= 1 ? String(v).padStart(w[c]) : String(v).padEnd(w[c]))).join('  ');
    text.push('');
    text.push(`fused inference graph (BatchNorm folded into the convolutions) vs unfused, infer 1-scale 300x400, threads ${opts.threads}, the three alternated:`);
    text.push(fuseLine(fuseHeader));
    text.push(fuseLine(w.map((n) => '-'.repeat(n))));
    for (const row of fuseBody) text.push(fuseLine(row));
    const g = (v) => (v.length ? `${geomean(v).toFixed(2)}x` : 'n/a');
    text.push(`geo-mean: unfused/fused ${g(ratios.unfused)}, pytorch/fused ${g(ratios.pytorch)}, pytorch/unfused ${g(ratios.pytorchUnfused)}`);
    summary.fuse = {
      geomeanFusedOverUnfused: ratios.unfused.length ? geomean(ratios.unfused) : null,
      geomeanPytorchOverFused: ratios.pytorch.length ? geomean(ratios.pytorch) : null,
      geomeanPytorchOverUnfused: ratios.pytorchUnfused.length ? geomean(ratios.pytorchUnfused) : null,
    };
  }
  for (const r of results.filter((r) => r.skipped)) text.push(`note: ${r.side} ${r.model} ${r.scaleSet ?? r.task}: skipped (${r.skipped})`);
  for (const r of results.filter((r) => r.error)) text.push(`note: ${r.side} ${r.model} ${r.scaleSet ?? r.task}: ${r.error}`);
  if (rows.some((r) => r.pytorchExtrapolated || r.segtoolExtrapolated)) {
    text.push('~ (est.): peak at 2000x1500 measured, extrapolated linearly in output pixels from the 400x300 5-scale peak');
  }

  const profileOf = (model) => {
    const s = find('segtool', model, 'infer', 'single')?.stages ?? [];
    const p = find('pytorch', model, 'infer', 'single')?.profiles ?? [];
    if (!s.length && !p.length) return null;
    const out = {};
    if (s.length) out.segtoolStagesMs = Object.fromEntries(Object.keys(s[0]).map((k) => [k, median(s.map((x) => x[k]))]));
    if (p.length) {
      const category = (op) => {
        const n = op.replace(/^aten::/, '');
        if (/conv/.test(n)) return 'convolution';
        if (/batch_norm/.test(n)) return 'batch norm';
        if (/softmax/.test(n)) return 'softmax (full size)';
        if (/upsample/.test(n)) return 'bilinear upsampling';
        if (/^(add|add_|div|div_|mul|mul_|relu|relu_|clamp|clamp_|clamp_min_|hardtanh_|hardtanh)$/.test(n)) return 'elementwise (add, div, relu)';
        if (/^(zeros|zero_|fill_|empty|empty_like|copy_|clone|contiguous|cat|to|_to_copy|resize_)$/.test(n)) return 'allocation, copies, cat';
        if (/^(max|argmax|max_pool2d|max_pool2d_with_indices)$/.test(n)) return 'max / argmax / max-pool';
        return 'other';
      };
      // Shares per profiled run (ops not listed in older JSON files count as 'other'), then
      // averaged over the runs.
      const shares = {};
      const opShares = new Map();
      for (const prof of p) {
        const cats = {};
        let listed = 0;
        for (const o of prof.ops) {
          cats[category(o.op)] = (cats[category(o.op)] ?? 0) + o.selfMs;
          listed += o.selfMs;
          opShares.set(o.op, (opShares.get(o.op) ?? 0) + o.selfMs / prof.totalMs / p.length);
        }
        cats.other = (cats.other ?? 0) + Math.max(0, prof.totalMs - listed);
        for (const [k, v] of Object.entries(cats)) shares[k] = (shares[k] ?? 0) + v / prof.totalMs / p.length;
      }
      out.pytorch = {
        totalMs: median(p.map((x) => x.totalMs)),
        runs: p.length,
        categories: Object.fromEntries(Object.entries(shares).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, { share: v }])),
        ops: [...opShares].sort((x, y) => y[1] - x[1]).slice(0, 15).map(([op, share]) => ({ op, share })),
      };
    }
    return out;
  };
  const profiles = Object.fromEntries(opts.models.map((m) => [m, profileOf(m)]).filter(([, v]) => v));
  if (Object.keys(profiles).length) {
    text.push('');
    text.push('where the time goes, single-scale 300x400 (medians over the profiled runs):');
    for (const [model, pr] of Object.entries(profiles)) {
      const s = pr.segtoolStagesMs;
      if (s) {
        text.push(
          `  segtool ${model}: network ${Math.round(s.network)} ms (predictClasses at the logits size), full-size head ${Math.round(s.head)} ms (total ${Math.round(s.total)})`,
        );
      }
      if (pr.pytorch) {
        const cats = Object.entries(pr.pytorch.categories).map(([k, v]) => `${k} ${(100 * v.share).toFixed(0)}%`);
        text.push(`  pytorch ${model}: ${Math.round(pr.pytorch.totalMs)} ms under the profiler: ${cats.join(', ')}`);
      }
    }
  }
  return { table: rows, summary, targets, profiles, text: text.join('\n') };
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
