/**
 * Terminal output for long commands: a one-line progress bar redrawn in place when stderr is a
 * terminal, nothing when it is not (logs and CI get the plain lines the commands print anyway).
 */

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Force the bar on or off (default: when the stream is a TTY). */
  enabled?: boolean;
}

/** "1:05" / "12s": a duration for a status line. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** "1.5 MB": a byte count for a status line. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export class ProgressBar {
  readonly enabled: boolean;
  readonly #stream: NodeJS.WriteStream;
  #shown = false;
  #lastDraw = 0;

  constructor(options: ProgressOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.enabled = options.enabled ?? Boolean(this.#stream.isTTY);
  }

  /** Redraws the bar: `fraction` of the work done, `label` before it, `status` after it. */
  update(fraction: number, label: string, status = '', force = false): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100) return; // redraws cost more than the work on fast loops
    this.#lastDraw = now;
    const columns = this.#stream.columns || 80;
    const done = Math.min(1, Math.max(0, fraction));
    const text = `${label} ${(done * 100).toFixed(0).padStart(3)}% ${status}`;
    const width = Math.max(10, Math.min(40, columns - text.length - 4));
    const filled = Math.round(done * width);
    let line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(done * 100).toFixed(0).padStart(3)}% ${status}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    this.#stream.write(`\r${line}\x1b[K`);
    this.#shown = true;
  }

  /** Removes the bar so a normal line can be printed. */
  clear(): void {
    if (!this.#shown) return;
    this.#stream.write('\r\x1b[K');
    this.#shown = false;
  }

  /** Prints a line above the bar (to stdout), then lets the bar redraw. */
  log(line: string): void {
    this.clear();
    process.stdout.write(`${line}\n`);
    this.#lastDraw = 0;
  }

  done(): void {
    this.clear();
  }
}
