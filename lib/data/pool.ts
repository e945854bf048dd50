/**
 * A fixed set of data workers, each answering its own requests in order. Worker threads keep
 * decode/resize off the main thread; with `count` 0 the same handler runs in-process (for
 * debugging and tiny jobs — it blocks the event loop while it works).
 */
import { Worker } from 'node:worker_threads';
import { SegtoolError, type SegtoolErrorCode } from '../errors.js';
import { createHandler, type Handler, type WorkerInit, type WorkerRequest, type WorkerResult } from './handler.js';

interface Pending {
  resolve: (value: WorkerResult) => void;
  reject: (error: unknown) => void;
}

interface Slot {
  worker?: Worker;
  handler?: Handler;
  chain: Promise<unknown>;
  pending: Map<number, Pending>;
  failure?: Error;
}

interface ErrorPayload {
  code?: SegtoolErrorCode;
  message: string;
  stack?: string;
}

function revive(payload: ErrorPayload): Error {
  const error = payload.code ? new SegtoolError(payload.code, payload.message) : new Error(payload.message);
  if (payload.stack) error.stack = payload.stack;
  return error;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private nextId = 0;
  private closed = false;

  /** `init(i)` describes worker i; count 0 runs one in-process handler built from init(0). */
  constructor(count: number, init: (worker: number) => WorkerInit) {
    if (count === 0) {
      this.slots.push({ handler: createHandler(init(0)), chain: Promise.resolve(), pending: new Map() });
      return;
    }
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init(i), name: `segtool-data-${i}` });
      const slot: Slot = { worker, chain: Promise.resolve(), pending: new Map() };
      worker.unref(); // an idle pool never keeps the process alive; ref'd while requests are pending
      worker.on('message', (message: { id: number; ok: boolean; value?: WorkerResult; error?: ErrorPayload }) => {
        const p = slot.pending.get(message.id);
        if (!p) return;
        slot.pending.delete(message.id);
        if (slot.pending.size === 0) worker.unref();
        if (message.ok) p.resolve(message.value!);
        else p.reject(revive(message.error!));
      });
      const fail = (error: Error): void => {
        slot.failure ??= error;
        for (const p of slot.pending.values()) p.reject(slot.failure);
        slot.pending.clear();
      };
      worker.on('error', (error) => fail(new Error(`data worker ${i} failed: ${error.message}`, { cause: error })));
      worker.on('exit', (code) => {
        if (!this.closed) fail(new Error(`data worker ${i} exited unexpectedly (code ${code})`));
      });
      this.slots.push(slot);
    }
  }

  /** Request slots: one per worker thread, or one in-process. */
  get size(): number {
    return this.slots.length;
  }

  /** Worker threads (0 in-process). */
  get threads(): number {
    return this.slots[0]?.worker ? this.slots.length : 0;
  }

  request(index: number, request: WorkerRequest): Promise<WorkerResult> {
    if (this.closed) return Promise.reject(new SegtoolError('ERR_DISPOSED', 'the data loader is closed'));
    const slot = this.slots[index]!;
    if (slot.handler) {
      const run = slot.chain.then(() => slot.handler!(request));
      slot.chain = run.catch(() => {});
      return run;
    }
    if (slot.failure) return Promise.reject(slot.failure);
    const id = this.nextId++;
    return new Promise<WorkerResult>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker!.ref();
      slot.worker!.postMessage({ id, request });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.slots.map(async (slot) => {
        for (const p of slot.pending.values()) p.reject(new SegtoolError('ERR_ABORTED', 'the data loader was closed'));
        slot.pending.clear();
        if (slot.worker) await slot.worker.terminate();
      }),
    );
  }
}
