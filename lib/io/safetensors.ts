/** safetensors files, read and written natively off the main thread. */
import { SegtoolError } from '../errors.js';
import { loadNative, type NamedNativeTensors } from '../native.js';
import { Tensor } from '../tensor.js';
import { expectString, invalid } from '../validate.js';
import { expectExistingFile, openRegularFile, prepareReplace } from './files.js';

export type NamedTensors = Map<string, Tensor>;

export interface TensorFile {
  tensors: NamedTensors;
  metadata: Record<string, string>;
}

/** Reads every tensor of a safetensors file, in file order. The caller owns the tensors. */
export async function loadSafetensors(path: string): Promise<TensorFile> {
  const file = expectExistingFile('path', path);
  const { tensors, metadata } = await (await loadNative()).readSafetensors(file);
  return { tensors: new Map(tensors.map(([name, handle]) => [name, new Tensor(handle)])), metadata };
}

/** Writes tensors (and string metadata) atomically: a failed write never leaves a partial file. */
export async function saveSafetensors(
  path: string,
  tensors: NamedTensors | Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  expectString('path', path);
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const handles: NamedNativeTensors = entries.map(([name, tensor]) => {
    if (!(tensor instanceof Tensor)) throw invalid(`tensors["${name}"]`, 'a Tensor', tensor);
    return [name, tensor.handle];
  });
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw invalid(`metadata["${key}"]`, 'a string', value);
  }
  await prepareReplace(path, 'safetensors file');
  await (await loadNative()).writeSafetensors(path, handles, metadata);
}

/** Disposes every tensor of a map (convenience for callers that are done with a file). */
export function disposeAll(tensors: Iterable<Tensor> | NamedTensors): void {
  for (const tensor of tensors instanceof Map ? tensors.values() : tensors) tensor.dispose();
}

/** The safetensors format's own limit on the JSON header. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * The string metadata (`__metadata__`) of a safetensors file, read from its header alone (no
 * tensor data is read): cheap even for a large checkpoint.
 */
export async function readSafetensorsMetadata(path: string): Promise<Record<string, string>> {
  const file = expectString('path', path);
  const { handle } = await openRegularFile(file, 'safetensors file');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    const length = bytesRead === 8 ? head.readBigUInt64LE(0) : -1n;
    if (length < 2n || length > BigInt(MAX_HEADER_BYTES)) {
      throw new SegtoolError('ERR_BAD_FILE', `${file}: not a safetensors file (header length ${length < 0n ? 'missing' : length})`);
    }
    const json = Buffer.alloc(Number(length));
    const read = await handle.read(json, 0, json.length, 8);
    if (read.bytesRead !== json.length) throw new SegtoolError('ERR_BAD_FILE', `${file}: truncated safetensors header`);
    let header: unknown;
    try {
      header = JSON.parse(json.toString('utf8'));
    } catch (error) {
      throw new SegtoolError('ERR_BAD_FILE', `${file}: the safetensors header is not JSON`, { cause: error });
    }
    const meta = (header as Record<string, unknown> | null)?.['__metadata__'];
    if (meta === undefined) return {};
    if (typeof meta !== 'object' || meta === null || Object.values(meta).some((v) => typeof v !== 'string')) {
      throw new SegtoolError('ERR_BAD_FILE', `${file}: the safetensors __metadata__ is not a map of strings`);
    }
    return { ...(meta as Record<string, string>) };
  } finally {
    await handle.close();
  }
}
