// Where the native test executables are: next to the addon being tested (SEGTOOL_ADDON =
// <build>/Release/segtool.node -> <build>/), else SEGTOOL_BUILD_DIR, else build/.
import { dirname, join } from 'node:path';

export function nativeTestBinary(name) {
  if (process.env.SEGTOOL_ADDON) return join(dirname(dirname(process.env.SEGTOOL_ADDON)), name);
  return join(process.env.SEGTOOL_BUILD_DIR ?? 'build', name);
}
