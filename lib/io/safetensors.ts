/** safetensors files, read and written natively off the main thread. */
import { loadNative, type NamedNativeTensors } from '../native.js';
import { Tensor } from '../tensor.js';
import { expectString, invalid } from '../validate.js';
import { expectExistingFile } from './files.js';

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
  await (await loadNative()).writeSafetensors(path, handles, metadata);
}

/** Disposes every tensor of a map (convenience for callers that are done with a file). */
export function disposeAll(tensors: Iterable<Tensor> | NamedTensors): void {
  for (const tensor of tensors instanceof Map ? tensors.values() : tensors) tensor.dispose();
}
