export * from './names.js';
export * from './schema.js';
export * from './bundled.js';
export * from './config.js';
