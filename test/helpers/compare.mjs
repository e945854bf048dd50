// Comparisons of network outputs with the reference fixtures, as test/fixtures/README.md states them.

/** max |got - expected| over the range of `expected`. */
export function relativeMaxError(got, expected) {
  let lo = Infinity, hi = -Infinity, worst = 0;
  for (let i = 0; i < expected.length; i++) {
    lo = Math.min(lo, expected[i]);
    hi = Math.max(hi, expected[i]);
    worst = Math.max(worst, Math.abs(got[i] - expected[i]));
  }
  return worst / (hi - lo);
}
