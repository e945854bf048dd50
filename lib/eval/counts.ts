/**
 * ImageCounter: an image's metrics and confusion matrix (imageCounts) computed on a worker
 * thread, so an evaluation's main thread never loops over the pixels of its (up to
 * 12-megapixel) images. Each image costs the main thread two copies of its class maps (the
 * prediction is a view of native memory and cannot be transferred); the worker answers in order.
 */
import { Worker } from 'node:worker_threads';
import { SegtoolError, type SegtoolErrorCode } from '../errors.js';
import { expectInteger, invalid } from '../validate.js';
import type { ImageCounts } from './metrics.js';

interface Pending {
  resolve: (counts: ImageCounts) => void;
  reject: (error: Error) => void;
}

type Reply =
  | { id: number; ok: true; counts: ImageCounts }
  | { id: number; ok: false; error: { code?: SegtoolErrorCode; message: string } };

export class ImageCounter {
  readonly numClass: number;
  #worker: Worker | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 0;
  #failure: Error | undefined;

  constructor(numClass: number) {
    this.numClass = expectInteger('numClass', numClass, 1);
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./counts-worker.js', import.meta.url), { workerData: { numClass: this.numClass }, name: 'segtool-counts' });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.ok) pending.resolve(reply.counts);
      else pending.reject(reply.error.code ? new SegtoolError(reply.error.code, reply.error.message) : new Error(reply.error.message));
    });
    const fail = (error: Error): void => {
      this.#failure ??= error;
      for (const p of this.#pending.values()) p.reject(this.#failure);
      this.#pending.clear();
    };
    worker.on('error', (error) => fail(new Error(`The metrics worker failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => fail(new Error(`The metrics worker exited unexpectedly (code ${code})`)));
    this.#worker = worker;
    return worker;
  }

  /** The counts of one image: `pred` and `label` are int32 class maps of the same length (label -1 = unlabeled). */
  count(pred: Int32Array, label: Int32Array): Promise<ImageCounts> {
    if (!(pred instanceof Int32Array)) return Promise.reject(invalid('pred', 'an Int32Array of class indices', pred));
    if (!(label instanceof Int32Array)) return Promise.reject(invalid('label', 'an Int32Array of class indices', label));
    if (pred.length !== label.length) {
      return Promise.reject(new SegtoolError('ERR_INVALID_ARG', `Expected pred and label of the same length but received ${pred.length} and ${label.length}`));
    }
    if (this.#failure) return Promise.reject(this.#failure);
    const worker = this.#start();
    const id = this.#nextId++;
    return new Promise<ImageCounts>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      // Copies (structured clone): the prediction may be a view of native memory, the label is still used by the caller.
      worker.postMessage({ id, pred, label });
    });
  }

  /** Stops the worker (pending counts reject). */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failure ??= new SegtoolError('ERR_DISPOSED', 'The metrics worker was closed');
    if (worker) await worker.terminate();
  }
}
