// The typed facade over the addon: the only way the rest of tslayer reaches it.
export * from './mount.js';
export * from './xattr.js';
export * from './fsops.js';
export * from './btrfs.js';
export * from './btrfs-info.js';
export * from './scan.js';
export * from './readfiles.js';
export * from './apply.js';
export type { SysCallError } from './errno.js';
