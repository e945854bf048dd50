/** Runs fn as on a CPU without AVX512-BF16/AMX (SEGTOOL_CPU_BF16=0 hides them from the addon). */
export function withoutCpuBf16(fn) {
  const saved = process.env.SEGTOOL_CPU_BF16;
  process.env.SEGTOOL_CPU_BF16 = '0';
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.SEGTOOL_CPU_BF16;
    else process.env.SEGTOOL_CPU_BF16 = saved;
  }
}
