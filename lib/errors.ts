/**
 * The one error type segtool throws. `code` tells callers what went wrong without parsing the
 * message; the message names the thing (option, file, key) and what was expected.
 */
export type SegtoolErrorCode =
  | 'ERR_INVALID_ARG' // an option or argument has the wrong type or range
  | 'ERR_CONFIG' // a config file or override is wrong (unknown key, bad value)
  | 'ERR_NOT_FOUND' // a file or folder does not exist
  | 'ERR_BAD_FILE' // a file exists but is corrupt, truncated or of the wrong kind
  | 'ERR_BAD_IMAGE' // an image cannot be decoded or does not match its annotation
  | 'ERR_CHECKPOINT' // a checkpoint does not fit the model (missing/unexpected keys, shapes)
  | 'ERR_DISPOSED' // a tensor or model was used after dispose()
  | 'ERR_BUSY' // dispose() while work is in flight, or a queue is full
  | 'ERR_ABORTED' // an AbortSignal fired
  | 'ERR_ADDON_LOAD' // the native addon could not be loaded
  | 'ERR_DISTRIBUTED' // a rank failed, timed out, or the rendezvous failed
  | 'ERR_DEVICE' // a device (CUDA, cuda:N) is not available in this build or on this machine
  | 'ERR_DOWNLOAD' // a download failed: host unreachable, HTTP error, stall, broken connection
  | 'ERR_NATIVE' // LibTorch reported an error
  | 'ERR_EXPORT'; // a model cannot be written as ONNX (an architecture or weight the exporter does not describe)

export class SegtoolError extends Error {
  readonly code: SegtoolErrorCode;

  constructor(code: SegtoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SegtoolError';
    this.code = code;
  }
}

export function isSegtoolError(value: unknown, code?: SegtoolErrorCode): value is SegtoolError {
  return value instanceof SegtoolError && (code === undefined || value.code === code);
}
