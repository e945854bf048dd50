/**
 * The worker thread of ImageCounter (counts.ts): scores images with imageCounts, one message
 * at a time, and sends the counts back (the confusion matrix's buffer transferred).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SegtoolError } from '../errors.js';
import { imageCounts } from './metrics.js';

const { numClass } = workerData as { numClass: number };

parentPort!.on('message', (message: { id: number; pred: Int32Array; label: Int32Array }) => {
  try {
    const counts = imageCounts(message.pred, message.label, numClass);
    parentPort!.postMessage({ id: message.id, ok: true, counts }, [counts.confusion.buffer as ArrayBuffer]);
  } catch (error) {
    const code = error instanceof SegtoolError ? error.code : undefined;
    parentPort!.postMessage({ id: message.id, ok: false, error: { code, message: error instanceof Error ? error.message : String(error) } });
  }
});
