/** Entry point of a data worker thread: requests in, batches out (buffers transferred, not copied). */
import { parentPort, workerData } from 'node:worker_threads';
import { isSegtoolError } from '../errors.js';
import { createHandler, type WorkerInit, type WorkerRequest } from './handler.js';
import { transferables } from './pipeline.js';

const port = parentPort!;
const handle = createHandler(workerData as WorkerInit);
// One request at a time: results leave in request order and memory stays bounded.
let queue: Promise<void> = Promise.resolve();

port.on('message', (message: { id: number; request: WorkerRequest }) => {
  queue = queue.then(async () => {
    try {
      const value = await handle(message.request);
      const payload = 'sample' in value ? value.sample : 'prepared' in value ? value.prepared : 'bad' in value ? undefined : value;
      port.postMessage({ id: message.id, ok: true, value }, payload ? transferables(payload) : []);
    } catch (error) {
      const e = error as Error;
      port.postMessage({
        id: message.id,
        ok: false,
        error: { code: isSegtoolError(error) ? error.code : undefined, message: e?.message ?? String(error), stack: e?.stack },
      });
    }
  });
});
