/**
 * The page of `segtool report` and of `segtool train --dashboard`: one self-contained HTML file
 * — Chart.js inlined from node_modules, the data inlined as JSON, images as data URIs — so it
 * opens anywhere without a network. Charts: loss, accuracy and learning rates per iteration
 * (history.json), loss and accuracy per epoch, per-class IoU bars with names; the confusion
 * matrix's heat map (SVG, lib/eval/confusion.ts) and sample panels (image | ground truth |
 * prediction, with their legends). A live page (the dashboard) also follows the server's
 * events (EventSource /events) and redraws as training goes.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { escapeXml } from '../eval/legend.js';
import type { TrainHistoryEntry } from '../train/train.js';

export interface EpochPoint {
  epoch: number;
  loss: number;
  /** 0..1. */
  accuracy: number;
}

export interface ClassIoU {
  index: number;
  name: string;
  iou: number;
}

export interface ReportMetrics {
  /** Where they came from (a metrics JSON, or the dashboard's sample evaluation). */
  source: string;
  images: number;
  meanIoU: number;
  pixelAccuracy: number;
  /** Classes in the ground truth or the predictions (union > 0). */
  classes: ClassIoU[];
  /** The heat map (SVG markup), when the metrics have a confusion matrix. */
  confusionSvg?: string;
}

export interface ReportSample {
  name: string;
  /** A data: URI (report) or a URL on the dashboard's server. */
  src: string;
}

export interface ReportData {
  title: string;
  /** Run folder, shown in the header. */
  dir: string;
  history: TrainHistoryEntry[];
  epochs: EpochPoint[];
  metrics?: ReportMetrics;
  samples: ReportSample[];
  /** Set by the dashboard: follow /events. */
  live?: boolean;
  /** The dashboard's status line. */
  status?: string;
}

let chartSource: Promise<string> | undefined;

/** Chart.js's UMD build, read once from node_modules. */
export function chartLibrary(): Promise<string> {
  chartSource ??= readFile(join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  return chartSource;
}

/** Per-epoch means of the logged iterations (history.json has one entry every disp_iter). */
export function epochsFromHistory(history: readonly TrainHistoryEntry[]): EpochPoint[] {
  const groups = new Map<number, TrainHistoryEntry[]>();
  for (const h of history) {
    const epoch = Math.floor(h.epoch) + 1;
    groups.set(epoch, [...(groups.get(epoch) ?? []), h]);
  }
  return [...groups]
    .sort((a, b) => a[0] - b[0])
    .map(([epoch, entries]) => ({
      epoch,
      loss: entries.reduce((s, e) => s + e.loss, 0) / entries.length,
      accuracy: entries.reduce((s, e) => s + e.accuracy, 0) / entries.length,
    }));
}

/** JSON safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

const STYLE = `
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#b9c0cf;font-size:13px}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 16px;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 8px}
.chart{position:relative;height:260px}.empty{color:#778;font-style:italic}
#confusion{overflow:auto;max-height:900px}#samples figure{margin:0 0 14px}#samples img{max-width:100%;min-width:min(100%,480px);border:1px solid #ddd}
#samples figcaption{font-size:12px;color:#556}.scores{font-size:14px;margin:0 0 8px}#status{font-weight:600}
`;

/** The page's script: draws the data and, live, applies the server's events. */
const CLIENT = String.raw`
(function () {
  const data = JSON.parse(document.getElementById('segtool-data').textContent);
  const state = { iterations: 0, events: 0 };
  const root = document.body;
  const charts = {};
  const common = { animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
    interaction: { mode: 'nearest', intersect: false }, plugins: { legend: { display: true } } };
  function line(id, datasets, xTitle, y2) {
    const scales = { x: { type: 'linear', title: { display: true, text: xTitle }, ticks: { precision: 0 } }, y: { beginAtZero: false } };
    if (y2) scales.y2 = { position: 'right', grid: { drawOnChartArea: false }, min: 0, max: 1 };
    return new Chart(document.getElementById(id), { type: 'line', data: { datasets }, options: { ...common, scales } });
  }
  const ds = (label, color, axis) => ({ label, data: [], borderColor: color, backgroundColor: color, pointRadius: 0, borderWidth: 1.5, yAxisID: axis || 'y' });
  charts.loss = line('chart-loss', [ds('loss', '#d9480f')], 'iteration');
  charts.accuracy = line('chart-accuracy', [ds('pixel accuracy', '#1971c2')], 'iteration');
  charts.lr = line('chart-lr', [ds('lr encoder', '#2f9e44'), ds('lr decoder', '#ae3ec9')], 'iteration');
  charts.epochs = line('chart-epochs', [Object.assign(ds('mean loss', '#d9480f'), { pointRadius: 3 }), Object.assign(ds('mean accuracy', '#1971c2', 'y2'), { pointRadius: 3 })], 'epoch', true);
  charts.iou = new Chart(document.getElementById('chart-iou'), { type: 'bar',
    data: { labels: [], datasets: [{ label: 'IoU', data: [], backgroundColor: '#4263eb' }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false, indexAxis: 'y',
      scales: { x: { min: 0, max: 1 }, y: { ticks: { autoSkip: false, font: { size: 11 } } } }, plugins: { legend: { display: false } } } });
  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; for (const c of Object.values(charts)) c.update('none'); publish(); });
  }
  function publish() {
    root.dataset.iterations = String(state.iterations);
    root.dataset.events = String(state.events);
    root.dataset.samples = String(document.querySelectorAll('#samples img').length);
    root.dataset.rendered = 'true';
  }
  function addIteration(h) {
    charts.loss.data.datasets[0].data.push({ x: h.iteration, y: h.loss });
    charts.accuracy.data.datasets[0].data.push({ x: h.iteration, y: h.accuracy });
    charts.lr.data.datasets[0].data.push({ x: h.iteration, y: h.lrEncoder });
    charts.lr.data.datasets[1].data.push({ x: h.iteration, y: h.lrDecoder });
    state.iterations++;
  }
  function setEpochs(epochs) {
    charts.epochs.data.datasets[0].data = epochs.map((e) => ({ x: e.epoch, y: e.loss }));
    charts.epochs.data.datasets[1].data = epochs.map((e) => ({ x: e.epoch, y: e.accuracy }));
  }
  function setMetrics(m) {
    const box = document.getElementById('metrics-summary');
    const conf = document.getElementById('confusion');
    if (!m) { box.textContent = 'No evaluation yet (segtool eval writes the metrics JSON this section shows).'; box.className = 'scores empty'; return; }
    box.className = 'scores';
    box.textContent = 'mIoU ' + m.meanIoU.toFixed(4) + ', pixel accuracy ' + (m.pixelAccuracy * 100).toFixed(2) + '% over ' + m.images + ' image(s) (' + m.source + ')';
    const classes = m.classes.slice().sort((a, b) => b.iou - a.iou || a.index - b.index);
    charts.iou.data.labels = classes.map((c) => c.name);
    charts.iou.data.datasets[0].data = classes.map((c) => c.iou);
    document.getElementById('iou-box').style.height = Math.max(160, 18 * classes.length + 40) + 'px';
    charts.iou.resize();
    if (m.confusionSvg) conf.innerHTML = m.confusionSvg; else conf.innerHTML = '<p class="empty">No confusion matrix in these metrics.</p>';
  }
  function setSamples(samples) {
    const box = document.getElementById('samples');
    box.textContent = '';
    if (samples.length === 0) { const p = document.createElement('p'); p.className = 'empty'; p.textContent = 'No sample panels (segtool eval --visualize writes them).'; box.append(p); }
    for (const s of samples) {
      const fig = document.createElement('figure');
      const img = document.createElement('img');
      img.src = s.src; img.alt = s.name;
      const cap = document.createElement('figcaption'); cap.textContent = s.name + ' — image | ground truth | prediction';
      fig.append(img, cap); box.append(fig);
    }
  }
  for (const h of data.history) addIteration(h);
  setEpochs(data.epochs);
  setMetrics(data.metrics);
  setSamples(data.samples);
  for (const c of Object.values(charts)) c.update('none');
  publish();
  if (!data.live) return;
  const status = document.getElementById('status');
  const epochs = data.epochs.slice();
  const source = new EventSource('events');
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    state.events++;
    if (event.type === 'iteration') addIteration(event.entry);
    else if (event.type === 'epoch') { epochs.push(event.point); setEpochs(epochs); }
    else if (event.type === 'samples') setSamples(event.samples);
    else if (event.type === 'metrics') setMetrics(event.metrics);
    if (event.status) status.textContent = event.status;
    if (event.type === 'end') { root.dataset.finished = 'true'; source.close(); }
    redraw();
  };
})();
`;

/** The complete page. */
export async function reportHtml(data: ReportData): Promise<string> {
  const chart = await chartLibrary();
  const canvas = (id: string): string => `<div class="chart"><canvas id="${id}"></canvas></div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeXml(data.title)}</title><style>${STYLE}</style></head>
<body${data.live ? ' data-live="true"' : ''}>
<header><h1>${escapeXml(data.title)}</h1><p>${escapeXml(data.dir)}${data.live ? ` — <span id="status">${escapeXml(data.status ?? 'waiting for training')}</span>` : ''}</p></header>
<main>
<section><h2>Training loss (per iteration)</h2>${canvas('chart-loss')}</section>
<section><h2>Pixel accuracy (per iteration)</h2>${canvas('chart-accuracy')}</section>
<section><h2>Learning rates</h2>${canvas('chart-lr')}</section>
<section><h2>Per epoch</h2>${canvas('chart-epochs')}</section>
<section class="wide"><h2>Per-class IoU</h2><p id="metrics-summary" class="scores"></p><div class="chart" id="iou-box"><canvas id="chart-iou"></canvas></div></section>
<section class="wide"><h2>Confusion matrix</h2><div id="confusion"></div></section>
<section class="wide"><h2>Samples</h2><div id="samples"></div></section>
</main>
<script>${chart.replace(/<\/script/gi, '<\\/script')}</script>
<script type="application/json" id="segtool-data">${scriptJson(data)}</script>
<script>${CLIENT}</script>
</body></html>
`;
}
