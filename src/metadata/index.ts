export { MetadataStore } from './db.js';
export type { Tx, MetadataOptions } from './db.js';
export { keys, FORMAT_VERSION } from './schema.js';
export * from './images.js';
