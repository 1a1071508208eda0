// A runnable test image, built without network: Debian's static busybox (/bin/busybox
// from busybox-static) with applet symlinks, in an OCI layout made by umoci, one layer
// per step. Peers (podman, umoci) can run and unpack it.
//
// Needs the Debian packages: busybox-static umoci.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'cat', 'ls', 'stat', 'echo', 'test', 'readlink'];

async function umoci(args: string[]): Promise<void> {
  try {
    await execFileP('umoci', args, { maxBuffer: 16 << 20 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`umoci ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/** Puts busybox and its applet links into `rootfs` (bin/, plus etc/ and a 1777 tmp/). */
export async function installBusybox(rootfs: string): Promise<void> {
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile(BUSYBOX, join(rootfs, 'bin/busybox'));
  for (const a of APPLETS) await symlink('busybox', join(rootfs, 'bin', a));
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { mode: 0o1777 });
  await execFileP('chmod', ['1777', join(rootfs, 'tmp')]);
}

/**
 * An OCI layout at `layoutDir` whose image `tag` has one layer per step: each step gets
 * the merged root filesystem so far and changes it (the first step should call
 * installBusybox). `scratch` is an empty directory umoci may use for its bundles.
 */
export async function buildLayeredImage(
  layoutDir: string,
  tag: string,
  scratch: string,
  steps: Array<(rootfs: string) => Promise<void>>,
): Promise<void> {
  await umoci(['init', '--layout', layoutDir]);
  await umoci(['new', '--image', `${layoutDir}:${tag}`]);
  for (const [i, step] of steps.entries()) {
    const bundle = join(scratch, `bundle-${i}`);
    await umoci(['unpack', '--image', `${layoutDir}:${tag}`, bundle]);
    await step(join(bundle, 'rootfs'));
    await umoci(['repack', '--image', `${layoutDir}:${tag}`, bundle]);
  }
  await umoci(['config', '--image', `${layoutDir}:${tag}`, '--config.cmd', '/bin/sh', '--config.env', 'PATH=/bin']);
}

/**
 * The two-layer base image the commit round trips start from (busybox, then files the
 * round-trip change edits, deletes, empties and refills): one definition, so the overlay
 * and btrfs round trips commit the same change on the same base.
 */
export const ROUNDTRIP_BASE_LAYERS: Array<(rootfs: string) => Promise<void>> = [
  async (r) => {
    await installBusybox(r);
    await mkdir(join(r, 'refill'));
    for (const n of ['a', 'b']) await writeFile(join(r, 'refill', n), n);
    await mkdir(join(r, 'recreate/sub'), { recursive: true });
    await writeFile(join(r, 'recreate/sub/x'), 'x');
  },
  async (r) => {
    await writeFile(join(r, 'etc/config'), 'a=1\n');
    await mkdir(join(r, 'data'));
    await writeFile(join(r, 'data/del.txt'), 'delete me');
    await writeFile(join(r, 'data/keep.txt'), 'keep me');
    await symlink('/etc/config', join(r, 'data/sl'));
    await mkdir(join(r, 'deldir/sub'), { recursive: true });
    await writeFile(join(r, 'deldir/sub/f'), 'f');
    await mkdir(join(r, 'perm'));
    await writeFile(join(r, 'perm/file'), 'p');
  },
];
