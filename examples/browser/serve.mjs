#!/usr/bin/env node
// A static server for the browser example: the page (examples/browser/), onnxruntime-web's
// JavaScript and wasm files and protobufjs's reader from node_modules (nothing from the
// internet), and the exported model at /model.onnx.
//
//   npx segtool export --cfg mobilenetv2dilated-c1_deepsup --onnx model.onnx --full-size
//   node examples/browser/serve.mjs --model model.onnx [--image photo.jpg] [--port 8080]
//
// then open the printed address. Only the files listed below are served.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
};
/** Folders under the repository root the page may read. */
const SERVED = ['examples/browser', 'node_modules/onnxruntime-web/dist', 'node_modules/protobufjs/dist/minimal'];

/** An http.Server for the example; `model` / `image`: files served at /model.onnx and /image. */
export function createExampleServer({ model, image } = {}) {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let file = null;
    if (url.pathname === '/') {
      res.writeHead(302, { location: '/examples/browser/index.html' }).end();
      return;
    }
    if (url.pathname === '/model.onnx') file = model ?? null;
    else if (url.pathname === '/image') file = image ?? null;
    else {
      const relative = normalize(decodeURIComponent(url.pathname)).replace(/^[/\\]+/, '');
      if (SERVED.some((dir) => relative.startsWith(`${dir}/`) && !relative.includes(`..${sep}`))) file = join(root, relative);
    }
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${url.pathname}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { model: { type: 'string' }, image: { type: 'string' }, port: { type: 'string', default: '8080' } } });
  for (const [name, path] of [['--model', values.model], ['--image', values.image]]) {
    if (path !== undefined && !existsSync(path)) {
      console.error(`${name} ${path}: no such file`);
      process.exit(2);
    }
  }
  const server = createExampleServer({ model: values.model && resolve(values.model), image: values.image && resolve(values.image) });
  server.listen(Number(values.port), '127.0.0.1', () => {
    const { port } = server.address();
    const query = values.model ? `?model=/model.onnx${values.image ? '&image=/image' : ''}` : '';
    console.log(`http://127.0.0.1:${port}/examples/browser/index.html${query}`);
  });
}
