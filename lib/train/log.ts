/** The reference's running averages and its training log line, field for field. */

/** Weighted running mean (the reference's AverageMeter). */
export class AverageMeter {
  sum = 0;
  count = 0;

  update(value: number, weight = 1): void {
    this.sum += value * weight;
    this.count += weight;
  }

  get average(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }
}

/** What one log line reports; times and loss/accuracy are averages over the epoch so far. */
export interface TrainLogFields {
  epoch: number;
  /** Iteration within the epoch, 0-based. */
  iteration: number;
  epochIters: number;
  /** Seconds per iteration (data included). */
  time: number;
  /** Seconds per iteration spent waiting for data. */
  dataTime: number;
  lrEncoder: number;
  lrDecoder: number;
  /** Percent. */
  accuracy: number;
  loss: number;
}

/**
 * `Epoch: [1][20/5000], Time: 1.23, Data: 0.01, lr_encoder: 0.019996, lr_decoder: 0.019996,
 * Accuracy: 45.67, Loss: 1.234567` — the reference's format, so tools that parse its logs work.
 */
export function formatTrainLine(f: TrainLogFields): string {
  return (
    `Epoch: [${f.epoch}][${f.iteration}/${f.epochIters}], Time: ${f.time.toFixed(2)}, Data: ${f.dataTime.toFixed(2)}, ` +
    `lr_encoder: ${f.lrEncoder.toFixed(6)}, lr_decoder: ${f.lrDecoder.toFixed(6)}, ` +
    `Accuracy: ${f.accuracy.toFixed(2).padStart(4)}, Loss: ${f.loss.toFixed(6)}`
  );
}

/** The fields of a history entry (TrainHistoryEntry), in the CSV's column order. */
const CSV_COLUMNS = ['epoch', 'iteration', 'loss', 'accuracy', 'lrEncoder', 'lrDecoder'] as const;

/**
 * history.csv: every logged iteration of history.json, one row each, for spreadsheets and
 * plotting tools (header: epoch,iteration,loss,accuracy,lr_encoder,lr_decoder; numbers at full
 * precision).
 */
export function historyCsv(history: ReadonlyArray<Record<(typeof CSV_COLUMNS)[number], number>>): string {
  const header = 'epoch,iteration,loss,accuracy,lr_encoder,lr_decoder';
  return [header, ...history.map((entry) => CSV_COLUMNS.map((k) => String(entry[k])).join(','))].join('\n') + '\n';
}
