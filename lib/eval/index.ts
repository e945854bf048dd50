export * from './metrics.js';
export * from './palette.js';
export * from './visualize.js';
export * from './png.js';
export * from './confusion.js';
export * from './legend.js';
export { ImageCounter } from './counts.js';
