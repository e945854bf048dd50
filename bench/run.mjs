#!/usr/bin/env node
// segtool vs a PyTorch baseline on the same LibTorch (Debian's python3-torch 1.13), side by side
// on this CPU. Each measurement runs in its own process per side (peak RSS is per side and per
// task), the sides alternate which goes first, and all use the same thread count.
//
// Tasks infer1, infer5 and train run per precision, four sides alternated in one measurement
// (four processes alive together): segtool fp32, PyTorch eager fp32, segtool bf16 (precision
// 'bf16': CPU autocast, eval inference with bfloat16 folded weights) and PyTorch bf16 (eager
// under torch.autocast('cpu', dtype=torch.bfloat16), its AMP recipe). The table shows the four
// times and PyTorch / segtool for fp32/fp32, fp32/bf16 and bf16/bf16, geo-means over the models
// below it; then the convolutions' achieved GFLOP/s per column (conv FLOPs counted by the
// baseline's hooks / median time) against this CPU's nominal peak (cores x FLOP/cycle x
// /proc/cpuinfo's clock) and against a ceiling measured in the same run (large float32 and
// bfloat16 matrix products and a big 3x3 convolution, at the start and the end). How to read
// them: bench/results/README.md.
//
//   npm run bench [-- options]      (or: node bench/run.mjs [options])
//   --models a-b,c-d   models (default: the five of issue 10)
//   --reps N           timed repetitions per measurement (default 3; the median is reported)
//   --warmup N         untimed runs before them (default 1)
//   --threads N        intra-op threads on both sides (default 2)
//   --quick            --reps 1 --warmup 1, no 4000 x 3000 row
//   --tasks LIST       infer1,infer5,train,big,onnx,fuse (default all; big, onnx and fuse in
//                      float32 only). fuse: single-scale inference with the fused graph
//                      (BatchNorm folded into the convs, the default) against the unfused graph
//                      (fuse: false) and PyTorch eager, three processes alternated. onnx: the
//                      network's forward (logprob, 1 scale 300x400) in segtool against
//                      onnxruntime-node running the model exportOnnx wrote, same thread count
//                      (skipped, saying why, when onnxruntime-node is not installed)
//   --precisions LIST  fp32,bf16 (default both) for infer1, infer5 and train. bf16 needs a CPU
//                      with AVX512-BF16 or AMX: elsewhere its columns are left out, with a line
//                      saying why (in the log and the table)
//   --flops-per-cycle fp32=N,bf16=N
//                      FLOP per cycle per core of the nominal peak (default fp32=32,bf16=64:
//                      AVX-512 on 256-bit FMA units that run a 512-bit instruction in two
//                      halves, as AMD Zen 4; e.g. fp32=64,bf16=128 for two full-width 512-bit
//                      FMA units, fp32=32 for AVX2 with two FMA units); also with --render
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
const PRECISIONS = ['fp32', 'bf16'];
const PRECISION_TASKS = ['infer1', 'infer5', 'train']; // the tasks measured per precision
// FLOP per cycle per core of AVX-512 on 256-bit FMA units that run a 512-bit instruction in two
// halves (AMD Zen 4): one 16-lane FMA (32 FLOP) or one 32-pair VDPBF16PS (64 FLOP) a cycle.
const DEFAULT_FLOPS_PER_CYCLE = { fp32: 32, bf16: 64 };

// The runner's sides: which worker process runs each, and what it changes in the job.
const SIDES = {
  segtool: { worker: 'segtool' },
  'segtool-bf16': { worker: 'segtool', job: { precision: 'bf16' } },
  'segtool-unfused': { worker: 'segtool', job: { fuse: false } },
  pytorch: { worker: 'pytorch' },
  'pytorch-bf16': { worker: 'pytorch', job: { precision: 'bf16' } },
  onnxruntime: { worker: 'onnxruntime' },
};
// The report's columns for tasks infer1, infer5 and train, and its ratios between them.
const SIDE_COLUMNS = [
  { side: 'segtool', header: 'segtool fp32', precision: 'fp32' },
  { side: 'segtool-bf16', header: 'segtool bf16', precision: 'bf16' },
  { side: 'pytorch', header: 'pytorch fp32', precision: 'fp32' },
  { side: 'pytorch-bf16', header: 'pytorch bf16', precision: 'bf16' },
];
const COMPARISONS = [
  { key: 'fp32', segtool: 'segtool', pytorch: 'pytorch', header: 'pt fp32/st fp32', label: 'segtool fp32 vs pytorch fp32' },
  { key: 'bf16VsPytorchFp32', segtool: 'segtool-bf16', pytorch: 'pytorch', header: 'pt fp32/st bf16', label: 'segtool bf16 vs pytorch fp32' },
  { key: 'bf16', segtool: 'segtool-bf16', pytorch: 'pytorch-bf16', header: 'pt bf16/st bf16', label: 'segtool bf16 vs pytorch bf16 autocast' },
];
/** The sides of tasks infer1, infer5 and train for these precisions (the pairs compared adjacent). */
function precisionSides(precisions, baseline) {
  const sides = [];
  if (precisions.includes('fp32')) sides.push('segtool', ...(baseline ? ['pytorch'] : []));
  if (precisions.includes('bf16')) sides.push('segtool-bf16', ...(baseline ? ['pytorch-bf16'] : []));
  return sides;
}

// ------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = {
    models: DEFAULT_MODELS,
    reps: 3,
    warmup: 1,
    threads: 2,
    tasks: ['infer1', 'infer5', 'train', 'big', 'onnx', 'fuse'],
    precisions: PRECISIONS,
    flopsPerCycle: null, // given values only (defaults: DEFAULT_FLOPS_PER_CYCLE)
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
    else if (a === '--precisions') o.precisions = value(i++).split(',');
    else if (a === '--flops-per-cycle') {
      for (const pair of value(i++).split(',')) {
        const [precision, n] = pair.split('=');
        if (!PRECISIONS.includes(precision) || !(Number(n) > 0)) throw new Error(`--flops-per-cycle: expected fp32=N,bf16=N, got ${pair}`);
        o.flopsPerCycle = { ...o.flopsPerCycle, [precision]: Number(n) };
      }
    } else if (a === '--big-models') o.bigModels = value(i++).split(',');
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
  for (const p of o.precisions) if (!PRECISIONS.includes(p)) throw new Error(`--precisions: expected fp32 and/or bf16, got ${p}`);
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
  // Physical cores: distinct (physical id, core id) pairs, one per core however many SMT threads.
  const coreIds = new Set();
  for (const block of cpuinfo.split(/\n\s*\n/)) {
    const field = (k) => new RegExp(`^${k}\\s*:\\s*(\\d+)`, 'm').exec(block)?.[1];
    if (field('core id') !== undefined) coreIds.add(`${field('physical id')}:${field('core id')}`);
  }
  // 'cpu MHz': the nominal clock in a VM, the current one on bare metal; either way turbo may be higher.
  const mhz = [...cpuinfo.matchAll(/^cpu MHz\s*:\s*([\d.]+)/gm)].map((m) => Number(m[1]));
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
    physicalCores: coreIds.size || logical,
    cpuMHz: mhz.length ? Math.max(...mhz) : null,
    isa: ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'fma'].filter((f) => flags.includes(f)),
    // segtool's own run-time check ('' = precision 'bf16' runs on this CPU).
    cpuBf16Unsupported: build.cpuBf16Unsupported ?? 'this segtool addon predates CPU bf16 support',
    ramBytes: kib('MemTotal') || totalmem(),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    node: process.version,
    libtorch: build.torchVersion,
    segtoolBuild: { mkldnn: build.mkldnn, openmp: build.openmp, cuda: build.cuda },
    // SEGTOOL_MMAP_THRESHOLD (segtool's side only): peak RSS depends on it.
    malloc: build.mallocSetting ? { mmapThreshold: build.mallocMmapThreshold, setting: build.mallocSetting } : null,
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
    const { worker, job: changes } = SIDES[side];
    const workerJob = { ...job, ...changes };
    const [cmd, args] =
      worker === 'pytorch'
        ? [opts.python, [join(here, 'baseline', 'worker.py'), JSON.stringify(workerJob)]]
        : [process.execPath, ['--expose-gc', join(here, `worker-${worker}.mjs`), JSON.stringify(workerJob)]];
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
      side: this.side, // the runner's name (SIDES: 'segtool-bf16' runs the segtool worker)
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
  const what = `${job.model ?? ''} ${job.task}${job.scaleSet ? ` ${job.scaleSet}` : ''}`;
  const step = async (side, command, tag) => {
    try {
      const reply = await workers[side].command(command, tag);
      if (tag === 'DONE') console.error(`  ${side.padEnd(12)} ${what}: ${command} ${(Number(reply) / 1000).toFixed(2)} s (load ${loadavg()[0].toFixed(1)})`);
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
const medianMs = (r) => (r?.times?.length ? median(r.times) : null);
const geomean = (a) => (a.length ? Math.exp(a.reduce((s, x) => s + Math.log(x), 0) / a.length) : NaN);

/** Lines of a plain-text table: the first `leftColumns` columns left-aligned, the rest right-aligned. */
function formatTable(header, body, leftColumns) {
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((row) => String(row[c]).length)));
  const line = (cells) => cells.map((v, c) => (c >= leftColumns ? String(v).padStart(widths[c]) : String(v).padEnd(widths[c]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
}

// ------------------------------------------------------------------ main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.render) {
    const saved = JSON.parse(readFileSync(opts.render, 'utf8'));
    const { results, ...meta } = saved;
    // A different FLOP/cycle assumption applies to a saved run too.
    if (opts.flopsPerCycle) meta.options.flopsPerCycle = { ...meta.options.flopsPerCycle, ...opts.flopsPerCycle };
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
  // bf16 only where segtool can run it; never left out silently.
  let bf16LeftOut = null;
  if (opts.precisions.includes('bf16') && machine.cpuBf16Unsupported) {
    bf16LeftOut = `this CPU cannot run segtool's precision 'bf16': ${machine.cpuBf16Unsupported}`;
    opts.precisions = opts.precisions.filter((p) => p !== 'bf16');
    console.error(`segtool bench: the bf16 columns are left out: ${bf16LeftOut}`);
    if (!opts.precisions.length && opts.tasks.some((t) => PRECISION_TASKS.includes(t))) {
      throw new Error(`--precisions bf16: nothing to measure on this CPU (${bf16LeftOut})`);
    }
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
  const sides = opts.baseline ? ['segtool', 'pytorch'] : ['segtool']; // fp32: big, onnx, fuse
  const precisionTaskSides = precisionSides(opts.precisions, opts.baseline);

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
  // One measurement of these sides, all processes alive together; which side starts (and so
  // whose warm-up runs first) alternates per measurement.
  const alternated = async (measuredSides, job, extra = []) => {
    const seq = turn++ % 2 === 0 ? measuredSides : [...measuredSides].reverse();
    const got = await measure(seq, job, opts, { extra });
    for (const side of measuredSides) results.push(got[side]);
  };
  const base = { threads: opts.threads, reps: opts.reps, warmup: opts.warmup };
  // What this CPU reaches in practice (large matrix products, one big convolution), measured by
  // the baseline's process at the start and at the end of the run; the report takes the best.
  const measureCeiling = async () => {
    if (!opts.baseline || !opts.tasks.some((t) => PRECISION_TASKS.includes(t))) return;
    const { pytorch: record } = await measure(['pytorch'], { threads: opts.threads, task: 'ceiling', precisions: opts.precisions, reps: 0, warmup: 0 }, opts);
    results.push(record);
    const { ceiling, error } = record;
    const rates = ceiling && Object.entries(ceiling).map(([p, r]) => `${p} mm ${Math.round(r.mm)}, conv ${Math.round(r.conv)}`).join('; ');
    console.error(`  pytorch      ceiling: ${rates ? `${rates} GFLOP/s` : error}`);
  };
  await measureCeiling();

  for (const model of opts.models) {
    if (opts.tasks.includes('infer1')) {
      const extra = opts.profile ? [...Array(Math.max(1, opts.reps)).keys()].flatMap(() => [['segtool', 'stages', 'STAGES'], ['pytorch', 'profile', 'PROFILE']]) : [];
      await alternated(precisionTaskSides, { ...base, model, task: 'infer', scaleSet: 'single', image: small.image, scales: small.scales1 }, extra);
    }
    if (opts.tasks.includes('infer5')) {
      await alternated(precisionTaskSides, { ...base, model, task: 'infer', scaleSet: 'multi', image: small.image, scales: small.scales5 });
    }
    if (opts.tasks.includes('train')) {
      await alternated(precisionTaskSides, { ...base, model, task: 'train', batch: trainBatch });
    }
    if (opts.tasks.includes('fuse')) {
      // Fused vs unfused segtool (and PyTorch eager), alternated in one measurement.
      const fuseSides = ['segtool', 'segtool-unfused', ...(opts.baseline ? ['pytorch'] : [])];
      await alternated(fuseSides, { ...base, model, task: 'infer', scaleSet: 'fuse', image: small.image, scales: small.scales1 });
    }
    if (opts.tasks.includes('onnx')) {
      const job = { ...base, model, task: 'forward', scaleSet: 'onnx', image: small.image, scales: small.scales1 };
      if (onnxruntimeMissing) {
        results.push({ side: 'onnxruntime', model, task: 'forward', scaleSet: 'onnx', skipped: onnxruntimeMissing });
      } else {
        await alternated(['segtool', 'onnxruntime'], job);
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

  await measureCeiling();

  const ended = new Date();
  const meta = {
    benchmark: 'segtool vs PyTorch baseline (bench/run.mjs)',
    date,
    started: started.toISOString(),
    ended: ended.toISOString(),
    machine,
    options: { ...opts, flopsPerCycle: { ...DEFAULT_FLOPS_PER_CYCLE, ...opts.flopsPerCycle }, out: undefined },
    bf16LeftOut,
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
  const precisions = opts.precisions ?? ['fp32']; // saved runs from before the precision dimension
  const columns = SIDE_COLUMNS.filter((c) => precisions.includes(c.precision) && (opts.baseline || SIDES[c.side].worker !== 'pytorch'));
  const hasColumn = (side) => columns.some((c) => c.side === side);
  const comparisons = COMPARISONS.filter((c) => hasColumn(c.segtool) && hasColumn(c.pytorch));
  // ---------------------------------------------------------------- table
  const find = (side, model, task, scaleSet) =>
    results.find((r) => r.side === side && r.model === model && r.task === task && (scaleSet === undefined || r.scaleSet === scaleSet));
  const rows = [];
  const perTask = () => ({ infer1: [], infer5: [], train: [] });
  const speedups = Object.fromEntries(COMPARISONS.map((c) => [c.key, perTask()]));
  const speedupsFastest = Object.fromEntries(COMPARISONS.map((c) => [c.key, perTask()])); // fastest rep vs fastest rep
  const fmtMs = (r) => (r?.times?.length ? Math.round(median(r.times)).toString() : r?.error ? 'error' : r?.skipped ? 'skipped' : '-');
  const fmtMiB = (r) => (r?.peakRss ? Math.round(r.peakRss / MiB).toString() : r?.error ? (r.peakRssAtLeast ? `>${Math.round(r.peakRssAtLeast / MiB)}` : 'error') : '-');
  for (const model of opts.models) {
    /**
     * One row: a cell per column from records {side: record}, and PyTorch / segtool per
     * comparison; `speedupKey` (infer1, infer5, train) adds the time ratios to the summary.
     */
    const add = (measurement, kind, speedupKey, records, format = kind === 'ms' ? fmtMs : fmtMiB) => {
      const valueOf = (r) => (kind === 'ms' ? medianMs(r) : r?.peakRss ?? null);
      const row = { model, measurement, cells: {}, values: {}, ratios: {} };
      for (const { side } of columns) {
        row.cells[side] = side in records ? format(records[side]) : ''; // '': not a measurement of this side
        row.values[side] = valueOf(records[side]);
      }
      for (const c of comparisons) {
        const [s, p] = [row.values[c.segtool], row.values[c.pytorch]];
        row.ratios[c.key] = s && p ? p / s : null;
        if (speedupKey && row.ratios[c.key]) {
          speedups[c.key][speedupKey].push(row.ratios[c.key]);
          speedupsFastest[c.key][speedupKey].push(Math.min(...records[c.pytorch].times) / Math.min(...records[c.segtool].times));
        }
      }
      rows.push(row);
    };
    const pick = (task, scaleSet, sides = columns.map((c) => c.side)) => Object.fromEntries(sides.map((side) => [side, find(side, model, task, scaleSet)]));
    if (opts.tasks.includes('infer1')) add('infer 1-scale 300x400, ms', 'ms', 'infer1', pick('infer', 'single'));
    if (opts.tasks.includes('infer5')) add('infer 5-scale 300..600, ms', 'ms', 'infer5', pick('infer', 'multi'));
    if (opts.tasks.includes('train')) add('train step 2x3x256x320, ms', 'ms', 'train', pick('train'));
    if (opts.tasks.includes('infer1')) add('  peak RSS infer 1-scale, MiB', 'mib', null, pick('infer', 'single'));
    if (opts.tasks.includes('infer5')) add('  peak RSS infer 5-scale, MiB', 'mib', null, pick('infer', 'multi'));
    if (opts.tasks.includes('train')) add('  peak RSS train, MiB', 'mib', null, pick('train'));
    if (opts.tasks.includes('big') && opts.bigModels.includes(model)) {
      // float32 only: the fp32 columns.
      const fp32Sides = ['segtool', 'pytorch'].filter(hasColumn);
      const measured = pick('infer', 'big', fp32Sides);
      const extrapolated = pick('infer', 'big-extrapolated', fp32Sides);
      const shown = Object.fromEntries(fp32Sides.map((side) => {
        const [r, e] = [measured[side], extrapolated[side]];
        return [side, r?.peakRss ? r : e ? { ...e, extrapolated: true } : r];
      }));
      const cell = (r) => (r?.extrapolated ? `~${fmtMiB(r)} (est.)` : fmtMiB(r) === '-' && r?.skipped ? 'skipped' : fmtMiB(r));
      add('  peak RSS 5-scale 4000x3000, MiB', 'mib', null, shown, cell);
      if (measured.segtool?.times?.length) add('  infer 5-scale 4000x3000 (1 run), ms', 'ms', null, measured);
      add('  peak RSS 5-scale 2000x1500, MiB', 'mib', null, pick('infer', 'mid', fp32Sides));
      add('  infer 5-scale 2000x1500 (1 run), ms', 'ms', null, pick('infer', 'mid', fp32Sides));
    }
  }

  const over = (lists, f) => Object.fromEntries(Object.entries(lists).map(([k, v]) => [k, v.length ? f(v) : null]));
  const summary = {
    // segtool fp32 vs PyTorch fp32 (the targets of issue 10)
    geomeanSpeedup: over(speedups.fp32, geomean),
    minSpeedup: over(speedups.fp32, (v) => Math.min(...v)),
    geomeanSpeedupFastestReps: over(speedupsFastest.fp32, geomean),
    // every comparison (speedup = PyTorch ms / segtool ms), geo-mean over the models
    speedups: Object.fromEntries(
      comparisons.map((c) => [
        c.key,
        { compares: c.label, geomean: over(speedups[c.key], geomean), min: over(speedups[c.key], (v) => Math.min(...v)), geomeanFastestReps: over(speedupsFastest[c.key], geomean) },
      ]),
    ),
  };
  const bigRows = rows.filter((r) => r.measurement.includes('4000x3000, MiB'));
  const targets = {
    inference: opts.baseline && speedups.fp32.infer1.length
      ? {
          want: 'geo-mean >= 1.5x, none < 1.2x (single- and 5-scale)',
          geomean1: summary.geomeanSpeedup.infer1,
          geomean5: summary.geomeanSpeedup.infer5,
          min1: summary.minSpeedup.infer1,
          min5: summary.minSpeedup.infer5,
        }
      : null,
    training: opts.baseline && speedups.fp32.train.length ? { want: '>= 1.1x', geomean: summary.geomeanSpeedup.train, min: summary.minSpeedup.train } : null,
    memory4000x3000: bigRows.length
      ? { want: '< 2 GiB', worstSegtoolBytes: Math.max(...bigRows.map((r) => r.values.segtool ?? Infinity)) }
      : null,
  };
  if (targets.inference) {
    const t = targets.inference;
    t.met = t.geomean1 >= 1.5 && t.min1 >= 1.2 && (t.geomean5 == null || (t.geomean5 >= 1.5 && t.min5 >= 1.2));
  }
  if (targets.training) targets.training.met = targets.training.geomean >= 1.1 && targets.training.min >= 1.0;
  if (targets.memory4000x3000) targets.memory4000x3000.met = targets.memory4000x3000.worstSegtoolBytes < 2 * GiB;

  const x = (v) => (v == null ? 'n/a' : `${v.toFixed(2)}x`);
  const header = ['model', 'measurement', ...columns.map((c) => c.header), ...comparisons.map((c) => c.header)];
  const body = rows.map((r, i) => [
    i > 0 && rows[i - 1].model === r.model ? '' : r.model,
    r.measurement,
    ...columns.map((c) => r.cells[c.side]),
    ...comparisons.map((c) => (r.ratios[c.key] ? x(r.ratios[c.key]) : '')),
  ]);
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
  if (machine.malloc) text.push(`segtool's malloc mmap threshold: ${machine.malloc.setting}`);
  if (meta.bf16LeftOut) text.push(`bf16 columns left out: ${meta.bf16LeftOut}`);
  // (a run of only big, onnx or fuse has no rows here)
  if (rows.length) {
    text.push('');
    text.push(...formatTable(header, body, 2));
    if (precisions.includes('bf16')) {
      text.push(
        "segtool bf16: precision 'bf16' (CPU autocast; eval inference with the folded weights in bfloat16). pytorch bf16: PyTorch eager under " +
          "torch.autocast('cpu', dtype=torch.bfloat16) around the network (train: forward + loss, its AMP recipe), logits cast to float32 for softmax / loss.",
      );
    }
    if (comparisons.length) text.push('pt A/st B: PyTorch at precision A over segtool at precision B, ms (or MiB); > 1: segtool faster (smaller).');
  }
  text.push('');
  const measuredTasks = PRECISION_TASKS.filter((t) => opts.tasks.includes(t));
  if (comparisons.length && measuredTasks.length) {
    text.push("speedup (pytorch ms / segtool ms), geo-mean over the models [min]; fastest reps: the same from each side's fastest rep (less load noise):");
    const width = Math.max(...comparisons.map((c) => c.label.length));
    const taskLabel = { infer1: 'infer 1-scale', infer5: 'infer 5-scale', train: 'train' };
    for (const c of comparisons) {
      const g = summary.speedups[c.key];
      text.push(
        `  ${`${c.label}:`.padEnd(width + 1)}  ${measuredTasks.map((t) => `${taskLabel[t]} ${x(g.geomean[t])} [${x(g.min[t])}]`).join(', ')}; ` +
          `fastest reps ${measuredTasks.map((t) => x(g.geomeanFastestReps[t])).join(', ')}`,
      );
    }
  }
  const verdict = (t) => (t == null ? 'not measured' : t.met ? 'MET' : 'NOT MET');
  text.push(
    `targets (fp32): inference >= 1.5x geo-mean, none < 1.2x: ${verdict(targets.inference)}; training >= 1.1x: ${verdict(targets.training)}; ` +
      `5-scale 4000x3000 < 2 GiB: ${verdict(targets.memory4000x3000)}`,
  );
  const throughput = convThroughput(meta, results, columns, find);
  if (throughput) {
    text.push('', ...throughput.text);
    summary.compute = throughput.compute;
  }
  if (opts.tasks.includes('onnx')) {
    // The exported model in onnxruntime-node against segtool's own forward: the same network
    // output (logprob at the output stride), the same input, the same intra-op thread count.
    const onnxHeader = ['model', 'forward 1-scale 300x400, ms', 'segtool', 'onnxruntime-node', 'onnxruntime/segtool'];
    const onnxBody = opts.models.map((model) => {
      const s = find('segtool', model, 'forward', 'onnx');
      const o = find('onnxruntime', model, 'forward', 'onnx');
      const ratio = medianMs(s) && medianMs(o) ? `${(medianMs(o) / medianMs(s)).toFixed(2)}x` : '';
      const size = o?.onnxBytes ? `${Math.round(o.onnxBytes / MiB)} MiB .onnx, opset ${o.opset}` : '';
      return [model, size, fmtMs(s), fmtMs(o), ratio];
    });
    const version = results.find((r) => r.side === 'onnxruntime' && r.onnxruntime)?.onnxruntime;
    text.push('');
    text.push(`segtool vs onnxruntime-node ${version ?? ''} on the exported ONNX model (network forward only, threads ${opts.threads} on both sides):`);
    text.push(...formatTable(onnxHeader, onnxBody, 2));
  }
  if (opts.tasks.includes('fuse')) {
    // The fused inference graph (native/nn/fuse.h) against the unfused one and PyTorch eager.
    const fuseHeader = ['model', 'fused ms', 'unfused ms', 'pytorch ms', 'unfused/fused', 'pytorch/fused', 'pytorch/unfused'];
    const ratios = { unfused: [], pytorch: [], pytorchUnfused: [] };
    const ratio = (a, b, into) => {
      if (!a || !b) return '';
      into.push(a / b);
      return `${(a / b).toFixed(2)}x`;
    };
    const fuseBody = opts.models.map((model) => {
      const f = find('segtool', model, 'infer', 'fuse');
      const u = find('segtool-unfused', model, 'infer', 'fuse');
      const p = find('pytorch', model, 'infer', 'fuse');
      return [model, fmtMs(f), fmtMs(u), opts.baseline ? fmtMs(p) : '', ratio(medianMs(u), medianMs(f), ratios.unfused), ratio(medianMs(p), medianMs(f), ratios.pytorch), ratio(medianMs(p), medianMs(u), ratios.pytorchUnfused)];
    });
    text.push('');
    text.push(`fused inference graph (BatchNorm folded into the convolutions) vs unfused, infer 1-scale 300x400, threads ${opts.threads}, the three alternated:`);
    text.push(...formatTable(fuseHeader, fuseBody, 1));
    const g = (v) => (v.length ? `${geomean(v).toFixed(2)}x` : 'n/a');
    text.push(`geo-mean: unfused/fused ${g(ratios.unfused)}, pytorch/fused ${g(ratios.pytorch)}, pytorch/unfused ${g(ratios.pytorchUnfused)}`);
    summary.fuse = {
      geomeanFusedOverUnfused: ratios.unfused.length ? geomean(ratios.unfused) : null,
      geomeanPytorchOverFused: ratios.pytorch.length ? geomean(ratios.pytorch) : null,
      geomeanPytorchOverUnfused: ratios.pytorchUnfused.length ? geomean(ratios.pytorchUnfused) : null,
    };
  }
  const what = (r) => [r.side, r.model, r.scaleSet ?? r.task].filter(Boolean).join(' ');
  for (const r of results.filter((r) => r.skipped)) text.push(`note: ${what(r)}: skipped (${r.skipped})`);
  for (const r of results.filter((r) => r.error)) text.push(`note: ${what(r)}: ${r.error}`);
  if (rows.some((r) => Object.values(r.cells).some((c) => c.endsWith('(est.)')))) {
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

/**
 * The convolutions' achieved rate in each measurement of tasks infer1, infer5 and train, per
 * column, against this CPU's nominal peak (cores x FLOP/cycle x clock) and the run's measured
 * ceiling: how far from the physical limit each side runs. null when nothing carries conv FLOPs
 * (saved runs from before they were counted).
 */
function convThroughput(meta, results, columns, find) {
  const { machine } = meta;
  const opts = meta.options;
  const measurements = [
    ['infer1', 'infer 1-scale 300x400', 'infer', 'single'],
    ['infer5', 'infer 5-scale 300..600', 'infer', 'multi'],
    ['train', 'train step 2x3x256x320', 'train', undefined],
  ].filter(([key]) => opts.tasks.includes(key));
  if (!measurements.length) return null;
  if (!results.some((r) => r.convFlops)) {
    return opts.baseline ? null : { text: ["convolution throughput: not measured (the baseline's process counts the FLOPs; --no-baseline)"], compute: null };
  }
  const precisions = [...new Set(columns.map((c) => c.precision))];
  const cores = Math.min(opts.threads, machine.physicalCores ?? opts.threads);
  const flopsPerCycle = { ...DEFAULT_FLOPS_PER_CYCLE, ...opts.flopsPerCycle };
  const peak = Object.fromEntries(precisions.map((p) => [p, machine.cpuMHz ? (cores * flopsPerCycle[p] * machine.cpuMHz) / 1000 : null]));
  const ceiling = {}; // per precision, the best of the run's ceiling measurements
  const ceilingRecords = results.filter((r) => r.task === 'ceiling' && r.ceiling);
  for (const r of ceilingRecords) {
    for (const [p, v] of Object.entries(r.ceiling)) ceiling[p] = { mm: Math.max(ceiling[p]?.mm ?? 0, v.mm), conv: Math.max(ceiling[p]?.conv ?? 0, v.conv) };
  }
  const best = (p) => (ceiling[p] ? Math.max(ceiling[p].mm, ceiling[p].conv) : null);
  const pct = (a, b) => (a && b ? `${Math.round((100 * a) / b)}%` : 'n/a');
  const gf = (v) => (v == null ? 'n/a' : Math.round(v).toString());

  const rows = [];
  for (const model of opts.models) {
    for (const [, measurement, task, scaleSet] of measurements) {
      // Both PyTorch processes count the same workload; take whichever finished its first run.
      const convFlops = ['pytorch', 'pytorch-bf16'].map((side) => find(side, model, task, scaleSet)).find((r) => r?.convFlops)?.convFlops ?? null;
      const gflops = {};
      for (const { side } of columns) {
        const ms = medianMs(find(side, model, task, scaleSet));
        gflops[side] = convFlops && ms ? convFlops / ms / 1e6 : null;
      }
      rows.push({ model, measurement, convFlops, gflops });
    }
  }
  const header = ['model', 'measurement', 'conv GFLOP', ...columns.map((c) => c.header)];
  const body = rows.map((r, i) => [
    i > 0 && rows[i - 1].model === r.model ? '' : r.model,
    r.measurement,
    r.convFlops ? (r.convFlops / 1e9).toFixed(1) : 'n/a',
    ...columns.map(({ side, precision }) => (r.gflops[side] ? `${gf(r.gflops[side])} (${pct(r.gflops[side], best(precision))} / ${pct(r.gflops[side], peak[precision])})` : '')),
  ]);

  const text = [];
  text.push('convolution throughput, GFLOP/s = conv FLOPs / median time; in brackets: % of the measured ceiling / % of the nominal peak, of the column\'s precision:');
  text.push(...formatTable(header, body, 2));
  text.push(
    '  conv FLOPs: forward hooks on the baseline\'s nn.Conv2d, 2 x outputs x in_channels/groups x kh x kw; 5-scale: summed over the scales; ' +
      'train: 3 x the forward\'s (the usual forward + backward estimate).',
  );
  text.push('  A lower bound on the convolutions\' own rate: the time includes everything else (BatchNorm, activations, upsampling, the head, the SGD step).');
  const byPrecision = (f, separator = ', ') => precisions.map((p) => `${p} ${f(p)}`).join(separator);
  const assumed = PRECISIONS.every((p) => flopsPerCycle[p] === DEFAULT_FLOPS_PER_CYCLE[p])
    ? 'assumed: AVX-512 on 256-bit FMA units that run a 512-bit instruction in two halves, as AMD Zen 4; --flops-per-cycle fp32=N,bf16=N for another CPU'
    : 'from --flops-per-cycle';
  text.push(
    `nominal peak: ${cores} core(s) x ${machine.cpuMHz ? Math.round(machine.cpuMHz) : '?'} MHz ('cpu MHz' of /proc/cpuinfo, nominal: turbo may be higher) x ` +
      `FLOP/cycle per core ${byPrecision((p) => flopsPerCycle[p])} (${assumed}) = ${byPrecision((p) => gf(peak[p]))} GFLOP/s`,
  );
  if (Object.keys(ceiling).length) {
    text.push(
      `measured ceiling (the baseline's process, threads ${opts.threads}, best of 5 at the start and at the end of the run, load ` +
        `${ceilingRecords.map((r) => r.loadBefore?.toFixed(1) ?? '?').join(' and ')}; mm 2048x2048, conv 3x3 256->256 at 75x100): ` +
        `${byPrecision((p) => (ceiling[p] ? `mm ${gf(ceiling[p].mm)}, conv ${gf(ceiling[p].conv)}` : 'n/a'), '; ')} GFLOP/s = ` +
        `${byPrecision((p) => pct(best(p), peak[p]))} of the nominal peak`,
    );
    const above = precisions.filter((p) => best(p) && peak[p] && best(p) > peak[p]);
    if (above.length) {
      const effectiveGHz = Math.max(...above.map((p) => best(p) / (cores * flopsPerCycle[p])));
      text.push(
        `  the measured ceiling exceeds the nominal-clock peak (${above.join(', ')}): the cores boost above /proc/cpuinfo's clock ` +
          `(~${effectiveGHz.toFixed(2)} GHz at the assumed FLOP/cycle), so % of the nominal peak can pass 100%`,
      );
    }
    // All threads of a product wait for the slowest: one core taken by other work halves it.
    const low = precisions.filter((p) => best(p) && peak[p] && best(p) < 0.75 * peak[p]);
    if (low.length) {
      text.push(
        `  the measured ceiling (${low.join(', ')}) is under 75% of the nominal peak: other work probably held a core (see the load), ` +
          'so % of the ceiling reads high; measure on a quiet machine',
      );
    }
  } else {
    text.push('measured ceiling: not measured in this run');
  }
  return {
    text,
    compute: { cores, cpuMHz: machine.cpuMHz, flopsPerCycle, peakGflops: peak, ceilingGflops: ceiling, convThroughput: rows },
  };
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
