export * from './metrics.js';
export * from './palette.js';
export * from './visualize.js';
export * from './png.js';
