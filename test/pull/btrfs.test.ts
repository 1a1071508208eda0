// `tslayer --driver btrfs pull` end to end: the real CLI against a real docker-registry,
// into a store on a btrfs made on a loop file. The same image pulled with the overlay
// driver (into a store on the host's disk) and unpacked by umoci must give the same
// merged tree, and --driver btrfs on a root that is not btrfs must say so.
import assert from 'node:assert/strict';
import { chmod, chown, link, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainIds } from '../../src/image/chainid.js';
import type { Digest } from '../../src/image/digest.js';
import { lsetxattr } from '../../src/native/index.js';
import { buildLayeredImage, installBusybox } from '../helpers/busybox.js';
import { runCli } from '../helpers/cli.js';
import { listSnapshots, treeListing, umociUnpack, withImageMounted } from '../helpers/images.js';
import { makeLoopFs, type LoopFs } from '../helpers/loop.js';
import { buildImageLayout, pushLayout, skopeo, startRegistry, type BuiltLayout, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

describe('tslayer --driver btrfs pull', () => {
  let reg: RunningRegistry;
  let scratch: string;
  let btrfs: LoopFs;
  let whiteouts: BuiltLayout;
  let busyboxLayout: string;
  let n = 0;

  /** A fresh store root on the loop btrfs. */
  const btrfsRoot = () => join(btrfs.mountpoint, `root-${n++}`);
  /** A fresh store root on the host's disk, for the overlay driver. */
  const overlayRoot = () => join(scratch, `overlay-root-${n++}`);

  before(async () => {
    scratch = await makeTmpDir('pull-btrfs');
    btrfs = await makeLoopFs('btrfs', 1024 ** 3, { parent: scratch });
    reg = await startRegistry();

    whiteouts = await buildImageLayout(join(scratch, 'whiteouts'), [
      { files: { 'etc/a': 'a0\n', 'etc/b': 'b0\n', 'dir/x': 'x\n', 'dir/y': 'y\n', 'keep/k': 'k\n' } },
      { files: { 'etc/.wh.b': '', 'dir/.wh..wh..opq': '', 'dir/z': 'z\n', 'new/n': 'n\n' } },
      { files: { 'etc/a': 'a2\n', 'keep/k2': 'k2\n' }, compression: 'none' },
    ]);
    await pushLayout(whiteouts.dir, `${reg.host}/whiteouts:latest`);

    // Layers made by umoci from real trees: what a build tool writes for deletions,
    // hardlinks to lower files, modes and owners, symlinks, xattrs and a 1777 /tmp.
    busyboxLayout = join(scratch, 'busybox');
    await mkdir(join(scratch, 'umoci'));
    await buildLayeredImage(busyboxLayout, 'traps', join(scratch, 'umoci'), [
      async (r) => {
        await installBusybox(r);
        await mkdir(join(r, 'usr/lib'), { recursive: true });
        await writeFile(join(r, 'usr/lib/libc.so'), 'libc\n');
        await symlink('usr/lib', join(r, 'lib'));
        await mkdir(join(r, 'home/user'), { recursive: true });
        await writeFile(join(r, 'home/user/.profile'), 'PS1=$\n');
        await chown(join(r, 'home/user'), 1000, 1000);
        await chmod(join(r, 'home/user'), 0o750);
        await writeFile(join(r, 'bin/suid'), 'x', { mode: 0o755 });
        await chmod(join(r, 'bin/suid'), 0o4755);
        await writeFile(join(r, 'data'), 'shared inode\n');
        await link(join(r, 'data'), join(r, 'data-link'));
        await lsetxattr(join(r, 'usr/lib/libc.so'), 'user.origin', Buffer.from([0, 1, 0xff]));
        await mkdir(join(r, 'gone/sub'), { recursive: true });
        await writeFile(join(r, 'gone/sub/f'), 'f\n');
      },
      async (r) => {
        await link(join(r, 'usr/lib/libc.so'), join(r, 'usr/lib/libc.so.6')); // a new name for a lower file
        await rm(join(r, 'data'));
        await rm(join(r, 'gone'), { recursive: true });
        await chmod(join(r, 'usr/lib'), 0o700);
        await writeFile(join(r, 'tmp/scratch'), 's\n');
        await writeFile(join(r, 'lib/added'), 'through the link\n'); // lands in usr/lib
      },
      async (r) => {
        await mkdir(join(r, 'gone'));
        await writeFile(join(r, 'gone/back'), 'back\n');
        await writeFile(join(r, 'home/user/.profile'), 'PS1=#\n');
        await rm(join(r, 'lib'));
        await mkdir(join(r, 'lib')); // a symlink replaced by a directory
      },
    ]);
    await skopeo(['copy', '--dest-tls-verify=false', '--quiet', `oci:${busyboxLayout}:traps`, `docker://${reg.host}/traps:latest`]);
  });

  after(async () => {
    await reg?.stop();
    try {
      await btrfs?.dispose();
    } finally {
      if (scratch) await removeTmpDir(scratch);
    }
  });

  /** Pulls `ref` with both drivers; returns the merged trees (btrfs, overlay). */
  async function pullBoth(ref: string): Promise<{ root: string; btrfsTree: Map<string, string>; overlayTree: Map<string, string> }> {
    const root = btrfsRoot();
    const rb = await runCli(['--root', root, '--driver', 'btrfs', 'pull', ref]);
    assert.equal(rb.code, 0, rb.stderr);
    const ro = overlayRoot();
    const r = await runCli(['--root', ro, 'pull', ref]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(rb.stdout, r.stdout, 'both print the same image digest');
    const btrfsTree = await withImageMounted(root, ref, (d) => treeListing(d), 'btrfs');
    const overlayTree = await withImageMounted(ro, ref, (d) => treeListing(d));
    return { root, btrfsTree, overlayTree };
  }

  it('whiteouts and opaque directories give the same tree as overlay and umoci, one subvolume per layer', async () => {
    const ref = `${reg.host}/whiteouts:latest`;
    const { root, btrfsTree, overlayTree } = await pullBoth(ref);
    assert.equal(btrfsTree.has('etc/b'), false, 'etc/b was whited out');
    assert.equal(btrfsTree.has('dir/x'), false, 'dir was made opaque');
    assert.ok(btrfsTree.has('dir/z') && btrfsTree.has('keep/k2'));
    assert.deepEqual(btrfsTree, overlayTree);
    const umoci = await umociUnpack(whiteouts.dir, whiteouts.tag);
    try {
      assert.deepEqual(btrfsTree, await treeListing(umoci.rootfs));
    } finally {
      await umoci.dispose();
    }
    const ids = chainIds(whiteouts.images[0]!.layers.map((l) => l.diffId as Digest));
    const snaps = await listSnapshots(root, 'btrfs');
    assert.deepEqual(
      snaps.map((s) => [s.name, s.parent, s.kind]).sort(),
      ids.map((id, i) => [id, ids[i - 1], 'committed']).sort(),
    );
  });

  it('layers a build tool made (hardlinks to lower files, deletions, modes, symlink traps) give the same tree as overlay and umoci', async () => {
    const ref = `${reg.host}/traps:latest`;
    const { btrfsTree, overlayTree } = await pullBoth(ref);
    assert.equal(btrfsTree.get('tmp'), 'dir 1777 0:0');
    assert.equal(btrfsTree.has('data'), false);
    assert.ok(btrfsTree.has('gone/back') && !btrfsTree.has('gone/sub'));
    assert.ok(btrfsTree.has('usr/lib/added'), 'a file written through lib -> usr/lib');
    assert.deepEqual(btrfsTree, overlayTree);
    const umoci = await umociUnpack(busyboxLayout, 'traps');
    try {
      assert.deepEqual(btrfsTree, await treeListing(umoci.rootfs));
    } finally {
      await umoci.dispose();
    }
  });

  it('mounts a pulled image read-write with --driver btrfs and leaves the image untouched', async () => {
    const ref = `${reg.host}/whiteouts:latest`;
    const root = btrfsRoot();
    assert.equal((await runCli(['--root', root, '--driver', 'btrfs', 'pull', ref])).code, 0);
    const target = join(scratch, 'mnt');
    await mkdir(target);
    const m = await runCli(['--root', root, '--driver', 'btrfs', 'mount', ref, target, '--name', 'work']);
    try {
      assert.equal(m.code, 0, m.stderr);
      assert.equal(m.stdout.trim(), 'work');
      await writeFile(join(target, 'etc/a'), 'changed\n');
      await rm(join(target, 'keep'), { recursive: true });
    } finally {
      const u = await runCli(['--root', root, '--driver', 'btrfs', 'umount', target]);
      assert.equal(u.code, 0, u.stderr);
    }
    const tree = await withImageMounted(root, ref, (d) => treeListing(d), 'btrfs');
    assert.ok(tree.has('keep/k'), 'the image still has what the mount removed');
    const rm1 = await runCli(['--root', root, '--driver', 'btrfs', 'snapshots', 'rm', 'work']);
    assert.equal(rm1.code, 0, rm1.stderr);
  });

  it('--driver btrfs on a root that is not btrfs fails with exit 1, naming the filesystem and mkfs.btrfs', async () => {
    const root = overlayRoot();
    const r = await runCli(['--root', root, '--driver', 'btrfs', 'pull', `${reg.host}/whiteouts:latest`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: .*btrfs.* is on ext/);
    assert.match(r.stderr, /mkfs\.btrfs/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  });
});
