/**
 * Runs fn as on a CPU without AVX512-BF16/AMX (SEGTOOL_CPU_BF16=0 hides them from the addon),
 * until fn's promise settles when it returns one.
 */
export function withoutCpuBf16(fn) {
  const saved = process.env.SEGTOOL_CPU_BF16;
  const restore = () => {
    if (saved === undefined) delete process.env.SEGTOOL_CPU_BF16;
    else process.env.SEGTOOL_CPU_BF16 = saved;
  };
  process.env.SEGTOOL_CPU_BF16 = '0';
  let result;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (result && typeof result.then === 'function') return result.finally(restore);
  restore();
  return result;
}
