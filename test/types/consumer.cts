// CommonJS consumer (a .cts file compiles to CommonJS): segtool is ESM only, so CommonJS code
// loads it with a dynamic import(); the types come along.
async function main(): Promise<void> {
  const { Segmenter, isSegtoolError } = await import('segtool');
  const segmenter = await Segmenter.load({ config: 'mobilenetv2dilated-c1_deepsup', weights: [] });
  const result = await segmenter.segment('photo.jpg', { outputs: ['summary'] });
  const names: string[] = result.classes.map((c) => c.name);
  // @ts-expect-error labels were not asked for
  result.labels;
  console.log(names, isSegtoolError(new Error('x')));
  await segmenter.close();
}
void main();
