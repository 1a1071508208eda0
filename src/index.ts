// The library entry (package.json "exports"): a flat list of re-exports, one module per line.
// Add a line when a module becomes public; keep names unique across modules.
export { Store, defaultRoot, DEFAULT_ROOT } from './store.js';
export * from './errors.js';
export * from './content/index.js';
export * from './metadata/index.js';
export * from './image/digest.js';
export * from './image/mediatype.js';
export type * from './image/descriptor.js';
export * from './image/reference.js';
export * from './image/chainid.js';
export * from './registry/index.js';
export * from './registry/platform.js';
export * from './image/documents.js';
export * from './image/manifest.js';
export * from './image/config.js';
export * from './snapshot/index.js';
export * from './care/fsck.js';
export * from './care/gc.js';
export * from './image/local.js';
export * from './image/record.js';
export * from './image/unpack.js';
export * from './image/pull.js';
export * from './image/transfer.js';
