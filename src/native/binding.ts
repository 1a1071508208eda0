// Loads the compiled addon and describes its raw shape. Only files in src/native/
// import this; everything else uses the typed wrappers beside it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A raw result: >= 0 is success (often an fd), < 0 is -errno. */
type Raw = Promise<number>;

export interface RawBinding {
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): Raw;
  umount2(target: string, flags: number): Raw;
  fsopen(fsname: string, flags: number): number;
  fsconfig(fd: number, cmd: number, key: string | null, value: string | null, aux: number | null): Raw;
  fsmount(fd: number, flags: number, attrs: number): Raw;
  moveMount(fromDfd: number, fromPath: string, toDfd: number, toPath: string, flags: number): Raw;
  openTree(dfd: number, path: string, flags: number): Raw;
  lgetxattr(path: string, name: string): Promise<Buffer | number>;
  lsetxattr(path: string, name: string, value: Buffer, flags: number | null): Raw;
  llistxattr(path: string): Promise<string[] | number>;
  lremovexattr(path: string, name: string): Raw;
  mknod(path: string, mode: number, major: number, minor: number): Raw;
  lchown(path: string, uid: number, gid: number): Raw;
  lutimes(path: string, aSec: number, aNsec: number, mSec: number, mNsec: number): Raw;
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): Raw;
  renameat2(olddir: number, oldpath: string, newdir: number, newpath: string, flags: number): Raw;
  ficlone(destFd: number, srcFd: number): Raw;
  syncfs(fd: number): Raw;
  flock(fd: number, op: number): Raw;
  subvolCreate(parentDir: string, name: string): Raw;
  subvolSnapshot(source: string, parentDir: string, name: string, readonly: boolean): Raw;
  subvolDestroy(parentDir: string, name: string): Raw;
  subvolGetReadonly(path: string): Raw;
  subvolSetReadonly(path: string, readonly: boolean): Raw;
  scanDir(path: string, withXattrs: boolean): Promise<unknown>;
  readFiles(paths: string[], sizes: number[]): Promise<Buffer | { errno: number; syscall: string; index: number }>;
  subvolInfo(path: string): Promise<{ id: number; fsid: string } | number>;
  fsConstants: Record<string, number>;
}

export const binding: RawBinding = require('../../../native/build/Release/tslayer.node');
