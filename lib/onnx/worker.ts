/**
 * The ONNX export's worker thread: builds the graph from the weights the main thread copied
 * over (transferred, not copied again), folds BatchNorm, encodes the protobuf and writes the
 * file, so that a service exporting a model keeps answering meanwhile.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { SegtoolError } from '../errors.js';
import { buildSegmentationGraph, type GraphOptions, type NetworkInfo } from './networks.js';

/** What exportOnnx hands the worker. */
export interface ExportJob {
  path: string;
  info: NetworkInfo;
  options: GraphOptions;
  metadata: Record<string, string>;
  producerVersion: string;
  shapes: Array<[string, number[]]>;
  values: Array<[string, Float32Array]>;
}

export type ExportReply =
  | { ok: true; bytes: number; nodes: number; initializers: number }
  | { ok: false; code: string; message: string };

async function run(job: ExportJob): Promise<ExportReply> {
  const shapes = new Map(job.shapes);
  const values = new Map(job.values);
  const source = {
    keys: () => shapes.keys(),
    shape: (key: string) => shapes.get(key),
    values: (key: string) => {
      const v = values.get(key);
      if (!v) throw new SegtoolError('ERR_EXPORT', `No float32 values for weight "${key}"`);
      return v;
    },
  };
  const graph = buildSegmentationGraph(job.info, source, job.options);
  const bytes = graph.encode(job.metadata, job.producerVersion);
  values.clear();
  await mkdir(dirname(job.path), { recursive: true });
  await writeFile(job.path, bytes);
  return { ok: true, bytes: bytes.byteLength, nodes: graph.nodeCount, initializers: graph.initializerCount };
}

if (parentPort) {
  const port = parentPort;
  run(workerData as ExportJob).then(
    (reply) => port.postMessage(reply),
    (error: unknown) => {
      const e = error as { code?: unknown; message?: unknown };
      port.postMessage({
        ok: false,
        code: typeof e?.code === 'string' ? e.code : 'ERR_EXPORT',
        message: typeof e?.message === 'string' ? e.message : String(error),
      } satisfies ExportReply);
    },
  );
}
