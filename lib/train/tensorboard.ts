/**
 * TensorBoard event files (TRAIN.tensorboard): scalars written as TensorFlow's TFRecord format
 * — each record is the data's length (uint64 LE), the masked CRC32C of those 8 bytes, the data
 * (an Event protocol buffer: wall_time, step, summary.value[{tag, simple_value}]) and the
 * masked CRC32C of the data — the first record the file_version "brain.Event:2". The messages
 * are encoded with protobufjs from the fields of tensorflow/core/util/event.proto and
 * summary.proto that scalars use. Writes go through a file stream: nothing blocks.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { SegtoolError } from '../errors.js';
import { expectNumber, expectString } from '../validate.js';
import type { TrainEvent } from './train.js';

const root = protobuf.Root.fromJSON({
  nested: {
    tensorboard: {
      nested: {
        Event: {
          oneofs: { what: { oneof: ['fileVersion', 'summary'] } },
          fields: {
            wallTime: { type: 'double', id: 1 },
            step: { type: 'int64', id: 2 },
            fileVersion: { type: 'string', id: 3 },
            summary: { type: 'Summary', id: 5 },
          },
        },
        Summary: {
          fields: { value: { rule: 'repeated', type: 'Value', id: 1 } },
          nested: {
            Value: {
              oneofs: { value: { oneof: ['simpleValue'] } },
              fields: { tag: { type: 'string', id: 1 }, simpleValue: { type: 'float', id: 2 } },
            },
          },
        },
      },
    },
  },
});
const EventMessage = root.lookupType('tensorboard.Event');

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 bits and add 0xa282ead8. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

function eventRecord(fields: Record<string, unknown>): Buffer {
  return tfRecord(EventMessage.encode(EventMessage.fromObject(fields)).finish());
}

let fileCount = 0;

/** An event file in a log folder that TensorBoard reads (`tensorboard --logdir DIR`). */
export class TensorBoardWriter {
  readonly file: string;
  readonly #stream: WriteStream;
  #error: Error | undefined;
  #closed = false;

  private constructor(file: string) {
    this.file = file;
    this.#stream = createWriteStream(file, { flags: 'wx' });
    this.#stream.on('error', (error) => {
      this.#error ??= error;
    });
  }

  /** A new events.out.tfevents.<seconds>.<host>.<pid>.<n> file in `logDir` (created). */
  static async open(logDir: string): Promise<TensorBoardWriter> {
    expectString('logDir', logDir);
    await mkdir(logDir, { recursive: true });
    const name = `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}.${fileCount++}`;
    const writer = new TensorBoardWriter(join(logDir, name));
    writer.#stream.write(eventRecord({ wallTime: Date.now() / 1000, fileVersion: 'brain.Event:2' }));
    return writer;
  }

  /** Scalars at one step (tag -> value); non-finite values are left out. */
  scalars(step: number, values: Record<string, number>, wallTime = Date.now() / 1000): void {
    if (this.#closed) throw new SegtoolError('ERR_DISPOSED', `The TensorBoard writer of ${this.file} is closed`);
    expectNumber('step', step, 0);
    const value = Object.entries(values)
      .filter(([, v]) => Number.isFinite(v))
      .map(([tag, simpleValue]) => ({ tag, simpleValue }));
    if (value.length === 0) return;
    this.#stream.write(eventRecord({ wallTime, step, summary: { value } }));
  }

  /** Flushes and closes the file; rejects with the first write error, if any. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => this.#stream.end(resolve));
    if (this.#error) throw new SegtoolError('ERR_BAD_FILE', `Could not write ${this.file}: ${this.#error.message}`, { cause: this.#error });
  }
}

/** Where a run's TensorBoard files go: DIR/tensorboard. */
export function tensorBoardDir(dir: string): string {
  return join(dir, 'tensorboard');
}

/** Tags and steps of a training run's scalars: what TRAIN.tensorboard writes. */
export function tensorBoardLogger(writer: TensorBoardWriter): (event: TrainEvent) => void {
  let epochIters = 1;
  return (event) => {
    if (event.type === 'start') epochIters = event.epochIters;
    else if (event.type === 'iteration') {
      writer.scalars(event.globalIteration, {
        'train/loss': event.loss,
        'train/accuracy': event.accuracy,
        'train/lr_encoder': event.lrEncoder,
        'train/lr_decoder': event.lrDecoder,
      });
    } else if (event.type === 'epoch') {
      writer.scalars(event.epoch * epochIters, { 'epoch/loss': event.averageLoss, 'epoch/accuracy': event.averageAccuracy / 100 });
    }
  };
}

/** An evaluation's scores at the step of the epoch it evaluated (`segtool eval` of DIR's epoch_N weights). */
export async function logEvaluation(
  dir: string,
  step: number,
  scores: { meanIoU: number; pixelAccuracy: number; score: number },
): Promise<string> {
  const writer = await TensorBoardWriter.open(tensorBoardDir(dir));
  try {
    writer.scalars(step, { 'val/mIoU': scores.meanIoU, 'val/pixel_accuracy': scores.pixelAccuracy, 'val/score': scores.score });
  } finally {
    await writer.close();
  }
  return writer.file;
}
