#!/usr/bin/env node
// A segmentation service on node:http. POST an image, get JSON (or the colourised PNG):
//
//   node examples/http-service.mjs --config mobilenetv2dilated-c1_deepsup \
//       --weights ckpt/encoder_epoch_20.pth --weights ckpt/decoder_epoch_20.pth --port 8080
//   curl --data-binary @photo.jpg -H 'content-type: image/jpeg' http://127.0.0.1:8080/segment
//   curl --data-binary @photo.jpg -H 'content-type: image/jpeg' 'http://127.0.0.1:8080/segment?format=png' -o seg.png
//
// Answers: 200 {width, height, numClass, classes: [{classIndex, name, pixels, ratio}], timings};
// 415 for a content type that is not image/* or application/octet-stream, 400 for bytes that
// are not a supported image, 413 for a body over --max-bytes or an image over --max-pixels,
// 503 (Retry-After) when --max-queue requests already wait, 404/405 for other paths/methods.
// GET /healthz says whether it is up; GET /stats gives memory, live tensors, queue and
// event-loop delay (how late the loop ran a 10 ms timer: p50/p99/max/mean; ?reset=1 restarts
// the histogram; ?gc=1 collects garbage first when node runs with --expose-gc).
// A request running longer than --timeout-ms (default 60000) is stopped inside the native work
// and answered 503; a client that disconnects stops its request the same way.
// SIGINT/SIGTERM: stop accepting, answer the requests in flight, free the model, exit 0. Requests
// still running after --grace-ms (default 30000) are stopped and answered 503 (never cut off).
// Port: --port, else $PORT, else 8080 (0 = any free port); --host (default 127.0.0.1).
// It prints the URL it listens on.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Segmenter, isSegtoolError, liveTensorCount } from 'segtool';

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: 'mobilenetv2dilated-c1_deepsup' },
    weights: { type: 'string', multiple: true },
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    scales: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string', default: '2' },
    'max-queue': { type: 'string', default: '64' },
    'max-bytes': { type: 'string', default: String(32 * 1024 * 1024) },
    'max-pixels': { type: 'string', default: String(40_000_000) },
    'timeout-ms': { type: 'string', default: '60000' },
    'grace-ms': { type: 'string', default: '30000' },
  },
});
const graceMs = Number(values['grace-ms']);
const port = Number(values.port ?? process.env.PORT ?? 8080);
const maxBytes = Number(values['max-bytes']);
const scales = values.scales ? values.scales.split(',').map(Number) : undefined;
const IMAGE_TYPES = /^(image\/[a-z0-9.+-]+|application\/octet-stream)$/;

const segmenter = await Segmenter.load({
  config: values.config,
  ...(values.weights ? { weights: values.weights } : {}),
  ...(values.threads ? { threads: Number(values.threads) } : {}),
  concurrency: Number(values.concurrency),
  maxQueue: Number(values['max-queue']),
  maxPixels: Number(values['max-pixels']),
  timeoutMs: Number(values['timeout-ms']),
}).catch((error) => {
  // A missing weights file, an unknown config, a bad option: say which, and stop.
  console.error(isSegtoolError(error) ? `${error.code}: ${error.message}` : error);
  process.exit(1);
});

const DELAY_RESOLUTION_MS = 10;
const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
delay.enable();
const counts = { requests: 0, ok: 0, clientErrors: 0, busy: 0, serverErrors: 0 };

function send(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const isBuffer = Buffer.isBuffer(body);
  const payload = isBuffer ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': isBuffer ? 'image/png' : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

function sendError(res, status, code, message, headers) {
  if (status >= 500 && status !== 503) counts.serverErrors++;
  else if (status === 503) counts.busy++;
  else counts.clientErrors++;
  send(res, status, { error: { code, message } }, headers);
}

/** The request body, or null when it exceeded maxBytes (413 already sent) or the client left. */
function readBody(req, res) {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length']);
    const tooLarge = () => {
      sendError(res, 413, 'ERR_TOO_LARGE', `The body is larger than ${maxBytes} bytes`);
      req.resume(); // drain (and drop) the rest, so that the client reads the answer
      resolve(null);
    };
    if (Number.isFinite(declared) && declared > maxBytes) return tooLarge();
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        tooLarge();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => size <= maxBytes && resolve(Buffer.concat(chunks, size)));
    req.on('error', () => resolve(null)); // the client went away mid-upload: nobody to answer
    req.on('aborted', () => resolve(null));
  });
}

/** SegtoolError code -> HTTP status. The image is the only thing a client passes to the Segmenter,
 * so ERR_INVALID_ARG is the image exceeding maxPixels. */
function statusFor(error) {
  if (!isSegtoolError(error)) return 500;
  switch (error.code) {
    case 'ERR_BAD_IMAGE':
      return 400;
    case 'ERR_INVALID_ARG':
      return 413;
    case 'ERR_BUSY':
    case 'ERR_DISPOSED':
      return 503;
    default:
      return 500;
  }
}

async function handleSegment(req, res, url) {
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (!IMAGE_TYPES.test(type)) {
    req.resume();
    return sendError(res, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE', `Expected an image body (content-type image/* or application/octet-stream) but received "${type || 'none'}"`);
  }
  const format = url.searchParams.get('format') ?? 'json';
  if (format !== 'json' && format !== 'png') {
    req.resume();
    return sendError(res, 400, 'ERR_INVALID_ARG', `Expected format json or png but received "${format}"`);
  }
  const body = await readBody(req, res);
  if (body === null) return;
  if (body.length === 0) return sendError(res, 400, 'ERR_BAD_IMAGE', 'The body is empty: POST the bytes of an image');
  // A client that goes away aborts its request (removed from the queue if it waits, stopped
  // inside the native work if it runs); so does the end of the shutdown grace period.
  const controller = new AbortController();
  const onClose = () => !res.writableFinished && controller.abort(new Error('the client disconnected'));
  res.on('close', onClose);
  inFlight.add(controller);
  try {
    const result = await segmenter.segment(body, {
      outputs: format === 'png' ? ['png'] : ['summary'],
      signal: controller.signal,
      ...(scales ? { scales } : {}),
    });
    counts.ok++;
    if (format === 'png') return send(res, 200, result.png);
    const { width, height, numClass, classes, timings } = result;
    send(res, 200, { width, height, numClass, classes, timings });
  } catch (error) {
    if (isSegtoolError(error, 'ERR_ABORTED') && res.destroyed) return; // the client went away: nobody to answer
    const status = isSegtoolError(error, 'ERR_ABORTED') ? 503 : statusFor(error); // time limit or shutdown
    const message = status === 500 && !isSegtoolError(error) ? 'Internal error' : error.message;
    if (status === 500) console.error(error);
    sendError(res, status, isSegtoolError(error) ? error.code : 'ERR_INTERNAL', message, status === 503 ? { 'retry-after': '1' } : {});
  } finally {
    inFlight.delete(controller);
    res.off('close', onClose);
  }
}

/** The requests being answered, so that the end of a shutdown's grace period can stop them. */
const inFlight = new Set();

function handleStats(res, url) {
  if (url.searchParams.get('gc') === '1' && typeof globalThis.gc === 'function') globalThis.gc();
  // The histogram holds whole sampling intervals (10 ms); report what the loop was late by.
  const ms = (ns) => Math.max(0, Math.round((ns / 1e6 - DELAY_RESOLUTION_MS) * 100) / 100);
  const memory = process.memoryUsage();
  send(res, 200, {
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    externalBytes: memory.external,
    liveTensors: liveTensorCount(),
    eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max), mean: ms(delay.mean) },
    segmenter: segmenter.stats,
    requests: counts,
  });
  if (url.searchParams.get('reset') === '1') delay.reset();
}

let shuttingDown = false;
const server = createServer((req, res) => {
  counts.requests++;
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (shuttingDown) res.setHeader('connection', 'close');
  if (url.pathname === '/segment') {
    if (req.method !== 'POST') {
      req.resume();
      return sendError(res, 405, 'ERR_METHOD', 'POST an image to /segment', { allow: 'POST' });
    }
    handleSegment(req, res, url).catch((error) => {
      console.error(error);
      sendError(res, 500, 'ERR_INTERNAL', 'Internal error');
    });
    return;
  }
  req.resume();
  if (req.method === 'GET' && url.pathname === '/healthz') return send(res, shuttingDown ? 503 : 200, { ok: !shuttingDown });
  if (req.method === 'GET' && url.pathname === '/stats') return handleStats(res, url);
  sendError(res, 404, 'ERR_NOT_FOUND', `No route ${req.method} ${url.pathname} (POST /segment, GET /healthz, GET /stats)`);
});
server.requestTimeout = 60_000;

server.listen(port, values.host, () => {
  const { address, port: actual } = server.address();
  const host = address.includes(':') ? `[${address}]` : address;
  console.log(`segtool service listening on http://${host}:${actual}/ (POST /segment)`);
});

async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log(`${signal}: answering ${segmenter.stats.active + segmenter.stats.queued} request(s) (grace ${graceMs} ms), then exiting`);
  // Stop accepting; 'close' comes once the requests in flight are answered. Keep-alive
  // connections are closed as soon as they are idle. After the grace period the requests still
  // running are stopped (inside the native work) and answered 503; connections are never cut
  // while a response is due.
  const closed = new Promise((resolve) => server.close(resolve));
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  const grace = setTimeout(() => {
    for (const controller of inFlight) controller.abort(new Error('the service is shutting down'));
  }, graceMs);
  await closed;
  clearInterval(idle);
  clearTimeout(grace);
  await segmenter.close();
  delay.disable();
  console.log('stopped');
  process.exit(0);
}
process.once('SIGINT', () => void shutdown('SIGINT'));
process.once('SIGTERM', () => void shutdown('SIGTERM'));
