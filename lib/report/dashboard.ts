/**
 * `segtool train --dashboard [PORT]`: the report page (lib/report/page.ts) served on loopback
 * while a run trains, kept current with server-sent events. The training loop is not touched:
 * the dashboard is a TrainEvent subscriber whose per-event work is a JSON line written to the
 * open pages. After each epoch's checkpoint it predicts a few validation images with those
 * weights (evaluate() on a separate model, in the background; a newer epoch replaces a waiting
 * one) and shows the panels and their IoU. close() (when training ends, or fails) stops the
 * sample job, tells the pages the run ended and stops the server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { basename, extname, join, resolve } from 'node:path';
import type { SegtoolConfig } from '../config/index.js';
import type { SampleRecord } from '../data/index.js';
import { SegtoolError } from '../errors.js';
import { evaluate } from '../eval/evaluate.js';
import { confusionSvg } from '../eval/confusion.js';
import { readSampleList } from '../data/list.js';
import type { TrainEvent, TrainHistoryEntry } from '../train/train.js';
import { expectInteger, expectObject, invalid } from '../validate.js';
import { reportHtml, type EpochPoint, type ReportData, type ReportMetrics, type ReportSample } from './page.js';

export interface DashboardOptions {
  /** TCP port on 127.0.0.1; 0 = any free port (see `url`). Default 8765. */
  port?: number;
  /** Validation images predicted after each epoch (default 3; 0 = none). */
  samples?: number;
  /** The images to predict instead of the first of DATASET.list_val (else of list_train). */
  sampleRecords?: readonly SampleRecord[];
  /** Sample jobs' problems (they never stop training); default: ignored. */
  onWarning?: (message: string) => void;
}

export const DEFAULT_DASHBOARD_PORT = 8765;

type DashboardMessage =
  | { type: 'iteration'; entry: TrainHistoryEntry; status: string }
  | { type: 'epoch'; point: EpochPoint; status: string }
  | { type: 'samples'; samples: ReportSample[]; epoch: number }
  | { type: 'metrics'; metrics: ReportMetrics }
  | { type: 'status'; status: string }
  | { type: 'end'; status: string };

export class Dashboard {
  readonly url: string;
  readonly #server: Server;
  readonly #cfg: SegtoolConfig;
  readonly #options: DashboardOptions;
  readonly #clients = new Set<ServerResponse>();
  /** Every message so far (a page loaded at message N follows from N). */
  readonly #messages: string[] = [];
  readonly #history: TrainHistoryEntry[] = [];
  readonly #epochs: EpochPoint[] = [];
  #samples: ReportSample[] = [];
  #metrics: ReportMetrics | undefined;
  #status = 'waiting for training';
  #numEpoch = 0;
  readonly #sampleDir: string;
  #sampleJob: Promise<void> | undefined;
  #waitingEpoch: number | undefined;
  readonly #abort = new AbortController();
  #closed = false;

  private constructor(server: Server, cfg: SegtoolConfig, options: DashboardOptions) {
    this.#server = server;
    this.#cfg = cfg;
    this.#options = options;
    this.#sampleDir = join(resolve(cfg.DIR), 'dashboard');
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  /** Serves the dashboard of the run `cfg` describes on 127.0.0.1:port. */
  static async start(cfg: SegtoolConfig, options: DashboardOptions = {}): Promise<Dashboard> {
    expectObject('options', options, true);
    const port = expectInteger('options.port', options.port ?? DEFAULT_DASHBOARD_PORT, 0, 65535);
    if (options.samples !== undefined) expectInteger('options.samples', options.samples, 0, 100);
    if (options.onWarning !== undefined && typeof options.onWarning !== 'function') throw invalid('options.onWarning', 'a function', options.onWarning);
    let dashboard: Dashboard | undefined;
    const server = createServer((req, res) => {
      dashboard!.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(error instanceof Error ? error.message : error));
      });
    });
    await new Promise<void>((resolvePromise, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'EADDRINUSE'
            ? new SegtoolError('ERR_INVALID_ARG', `Expected a free port for the dashboard but 127.0.0.1:${port} is in use; choose another (--dashboard PORT, 0 = any)`)
            : error,
        );
      });
      server.listen(port, '127.0.0.1', () => resolvePromise());
    });
    dashboard = new Dashboard(server, cfg, options);
    return dashboard;
  }

  /** A TrainEvent subscriber (TrainOptions.onEvent): records the event and tells the open pages. */
  readonly onEvent = (event: TrainEvent): void => {
    if (this.#closed) return;
    switch (event.type) {
      case 'start':
        this.#numEpoch = event.numEpoch;
        this.#post({ type: 'status', status: (this.#status = `training epochs ${event.firstEpoch}..${event.numEpoch} on ${event.samples} images`) });
        break;
      case 'iteration': {
        const entry: TrainHistoryEntry = {
          epoch: event.epoch - 1 + event.iteration / event.epochIters,
          iteration: event.globalIteration,
          loss: event.loss,
          accuracy: event.accuracy,
          lrEncoder: event.lrEncoder,
          lrDecoder: event.lrDecoder,
        };
        this.#history.push(entry);
        this.#status = `epoch ${event.epoch}/${this.#numEpoch}, iteration ${event.iteration + 1}/${event.epochIters}, loss ${event.averageLoss.toFixed(4)}`;
        this.#post({ type: 'iteration', entry, status: this.#status });
        break;
      }
      case 'epoch': {
        const point = { epoch: event.epoch, loss: event.averageLoss, accuracy: event.averageAccuracy / 100 };
        this.#epochs.push(point);
        this.#status = `epoch ${event.epoch}/${this.#numEpoch} done: loss ${event.averageLoss.toFixed(4)}, accuracy ${event.averageAccuracy.toFixed(2)}%`;
        this.#post({ type: 'epoch', point, status: this.#status });
        break;
      }
      case 'checkpoint':
        this.#predictSamples(event.epoch);
        break;
      default:
        break;
    }
  };

  /**
   * Tells the pages training ended and stops the server. The sample job is stopped, or with
   * `finishSamples` (a run that completed) allowed to show the last epoch first.
   */
  async close(status = 'training ended', options: { finishSamples?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    if (options.finishSamples) while (this.#sampleJob) await this.#sampleJob;
    this.#abort.abort();
    this.#waitingEpoch = undefined;
    await this.#sampleJob;
    this.#post({ type: 'end', status: (this.#status = status) });
    this.#closed = true;
    for (const res of this.#clients) res.end();
    this.#clients.clear();
    await new Promise<void>((resolvePromise) => this.#server.close(() => resolvePromise()));
  }

  #post(message: DashboardMessage): void {
    const line = JSON.stringify(message);
    this.#messages.push(line);
    for (const res of this.#clients) res.write(`id: ${this.#messages.length}\ndata: ${line}\n\n`);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
    } else if (url.pathname === '/') {
      const data: ReportData & { from: number } = {
        title: `segtool: ${basename(resolve(this.#cfg.DIR))} (live)`,
        dir: resolve(this.#cfg.DIR),
        history: this.#history,
        epochs: this.#epochs,
        ...(this.#metrics ? { metrics: this.#metrics } : {}),
        samples: this.#samples,
        live: true,
        status: this.#status,
        from: this.#messages.length,
      };
      const html = (await reportHtml(data)).replace("new EventSource('events')", `new EventSource('events?from=${data.from}')`);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
    } else if (url.pathname === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      const from = Math.min(Math.max(0, Number(url.searchParams.get('from')) || 0), this.#messages.length);
      // Messages since the page was made, then live ones.
      for (let i = from; i < this.#messages.length; i++) res.write(`id: ${i + 1}\ndata: ${this.#messages[i]}\n\n`);
      if (this.#closed) {
        res.end();
        return;
      }
      this.#clients.add(res);
      req.on('close', () => this.#clients.delete(res));
    } else if (/^\/samples\/[^/]+\.png$/.test(url.pathname)) {
      const name = decodeURIComponent(url.pathname.slice('/samples/'.length));
      if (name.includes('/') || name.includes('\\') || name.startsWith('.')) {
        res.writeHead(404).end();
        return;
      }
      const png = await readFile(join(this.#sampleDir, name)).catch(() => undefined);
      if (!png) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'image/png', 'cache-control': 'no-store' }).end(png);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  }

  /** Predicts the sample images with epoch `epoch`'s weights, in the background; one job at a time, the newest epoch waiting. */
  #predictSamples(epoch: number): void {
    if ((this.#options.samples ?? 3) === 0) return;
    if (this.#sampleJob) {
      this.#waitingEpoch = epoch;
      return;
    }
    this.#sampleJob = this.#runSamples(epoch)
      .catch((error: unknown) => {
        if (!this.#abort.signal.aborted) this.#options.onWarning?.(`dashboard samples of epoch ${epoch}: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        this.#sampleJob = undefined;
        const next = this.#waitingEpoch;
        this.#waitingEpoch = undefined;
        if (next !== undefined && !this.#abort.signal.aborted) this.#predictSamples(next);
      });
  }

  async #runSamples(epoch: number): Promise<void> {
    const count = this.#options.samples ?? 3;
    let records = this.#options.sampleRecords ? [...this.#options.sampleRecords] : undefined;
    if (!records) {
      records = await readSampleList(this.#cfg, 'val').catch(() => readSampleList(this.#cfg, 'train'));
    }
    records = records.slice(0, count);
    if (records.length === 0) return;
    const result = await evaluate(this.#cfg, {
      checkpoint: `epoch_${epoch}.pth`,
      records,
      visualize: true,
      resultDir: this.#sampleDir,
      metricsFile: false,
      workers: 1,
      signal: this.#abort.signal,
    });
    if (this.#closed) return;
    const names = records.map((r) => basename(r.image, extname(r.image)));
    const samples = names.map((name) => ({ name: `${name} (epoch ${epoch})`, src: `samples/${encodeURIComponent(name)}.png?epoch=${epoch}` }));
    this.#samples = samples;
    this.#post({ type: 'samples', samples, epoch });
    this.#metrics = {
      source: `${result.images} sample image(s) after epoch ${epoch}; mIoU over the classes in them`,
      images: result.images,
      meanIoU: result.meanIoUPresent,
      pixelAccuracy: result.pixelAccuracy,
      classes: result.classes.filter((c) => c.union > 0).map((c) => ({ index: c.index, name: c.name, iou: c.iou })),
      confusionSvg: confusionSvg(result.confusion, result.classes.map((c) => c.name)),
    };
    this.#post({ type: 'metrics', metrics: this.#metrics });
  }
}
