// The differs against real overlayfs mounts and real trees: what goes into the layer tar,
// in what order, and that both differs write the same bytes for the same change.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, readFile, rm, symlink, writeFile, utimes, appendFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { CompareDiffer, OverlayDiffer, encodeHeader, type TarHeader } from '../../src/archive/diff/index.js';
import { TslayerError } from '../../src/errors.js';
import { lsetxattr, mknod, S_IF } from '../../src/native/index.js';
import type { Mount } from '../../src/snapshot/types.js';
import { findLeftovers } from '../helpers/leftovers.js';
import { readTar, type ReadEntry } from '../helpers/tarread.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_raw+ep, has NUL bytes
const BINARY = Buffer.from([0, 1, 2, 0x0a, 0x3d, 0x20, 0xff, 0xfe, 0]); // NUL, newline, '=', space, non-UTF-8

const bind = (dir: string): Mount[] => [{ type: 'bind', source: dir, options: ['rbind'] }];

async function diffBytes(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return buffer(stream as never);
}

const names = (entries: ReadEntry[]) => entries.map((e) => e.name);

describe('tar headers', () => {
  const base: TarHeader = { name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000 };

  test('a plain entry is one ustar block with no PAX header', () => {
    const b = encodeHeader(base);
    assert.equal(b.length, 512);
    const [e] = readTar(Buffer.concat([b, Buffer.alloc(1024)]));
    assert.equal(e!.name, 'a');
    assert.equal(e!.pax.size, 0);
  });

  test('binary xattr values go into PAX records byte for byte', () => {
    const b = encodeHeader({ ...base, xattrs: [['security.capability', CAP], ['user.bin', BINARY]] });
    const [e] = readTar(Buffer.concat([b, Buffer.alloc(1024)]));
    assert.deepEqual(e!.xattrs.get('security.capability'), CAP);
    assert.deepEqual(e!.xattrs.get('user.bin'), BINARY);
  });

  test('long paths use the ustar prefix when they can and PAX when they cannot', () => {
    const split = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const [e1] = readTar(Buffer.concat([encodeHeader({ ...base, name: split }), Buffer.alloc(1024)]));
    assert.equal(e1!.name, split);
    assert.equal(e1!.pax.size, 0);
    const long = `${'d'.repeat(200)}/${'f'.repeat(120)}`;
    const [e2] = readTar(Buffer.concat([encodeHeader({ ...base, name: long }), Buffer.alloc(1024)]));
    assert.equal(e2!.name, long);
    assert.ok(e2!.pax.has('path'));
  });

  test('long link targets, big ids and pre-1970 times go into PAX records', () => {
    const linkname = 'x'.repeat(150);
    const [e] = readTar(Buffer.concat([
      encodeHeader({ ...base, type: 'symlink', linkname, uid: 3_000_000, gid: 4_000_000, mtime: -5 }),
      Buffer.alloc(1024),
    ]));
    assert.equal(e!.linkname, linkname);
    assert.equal(e!.uid, 3_000_000);
    assert.equal(e!.gid, 4_000_000);
    assert.equal(e!.mtime, -5);
  });

  test('GNU tar reads what we write, binary xattrs included', async () => {
    const dir = await makeTmpDir('tarheader');
    try {
      const content = Buffer.from('hello\n');
      const tarBytes = Buffer.concat([
        encodeHeader({ ...base, name: 'd/', type: 'directory', mode: 0o755 }),
        encodeHeader({ ...base, name: 'd/f', size: content.length, xattrs: [['user.bin', BINARY]] }),
        content,
        Buffer.alloc(512 - content.length),
        Buffer.alloc(1024),
      ]);
      await writeFile(join(dir, 't.tar'), tarBytes);
      await mkdir(join(dir, 'x'));
      execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', join(dir, 't.tar'), '-C', join(dir, 'x')]);
      assert.equal(await readFile(join(dir, 'x/d/f'), 'utf8'), 'hello\n');
      const { lgetxattr } = await import('../../src/native/index.js');
      assert.deepEqual(await lgetxattr(join(dir, 'x/d/f'), 'user.bin'), BINARY);
    } finally {
      await removeTmpDir(dir);
    }
  });
});

describe('overlay differ', () => {
  let dir: string;
  let lower: string, upper: string, work: string, merged: string;
  const overlayMounts = (): Mount[] => [
    { type: 'overlay', source: 'overlay', options: ['index=off', `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`] },
  ];

  before(async () => {
    dir = await makeTmpDir('overlay-diff');
    [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((n) => join(dir, n));
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    // The lower layer.
    await mkdir(join(lower, 'etc'));
    await writeFile(join(lower, 'etc/config'), 'a=1\n');
    await writeFile(join(lower, 'etc/hosts'), '127.0.0.1 localhost\n');
    await mkdir(join(lower, 'gone/sub'), { recursive: true });
    await writeFile(join(lower, 'gone/sub/f'), 'x');
    await mkdir(join(lower, 'refill'));
    await writeFile(join(lower, 'refill/old'), 'old');
    await writeFile(join(lower, 'del.txt'), 'bye');
    await writeFile(join(lower, 'perm'), 'p');
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `index=off,lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);

    // The change, made through the merged view as a container would.
    await mkdir(join(merged, 'new'));
    await writeFile(join(merged, 'new/hello.txt'), 'hello\n');
    await link(join(merged, 'new/hello.txt'), join(merged, 'new/hard'));
    await symlink('../etc/config', join(merged, 'new/link'));
    await lsetxattr(join(merged, 'new/hello.txt'), 'user.note', 'v');
    await lsetxattr(join(merged, 'new/hello.txt'), 'security.capability', CAP);
    await appendFile(join(merged, 'etc/config'), 'b=2\n');
    await rm(join(merged, 'del.txt'));
    await rm(join(merged, 'gone'), { recursive: true });
    await rm(join(merged, 'refill'), { recursive: true });
    await mkdir(join(merged, 'refill'));
    await writeFile(join(merged, 'refill/new'), 'new');
    await chown(join(merged, 'perm'), 1234, 5678);
    await chmod(join(merged, 'perm'), 0o4750); // after chown, which clears setuid
    await mknod(join(merged, 'new/null'), S_IF.CHR | 0o666, 1, 3);
    execFileSync('mkfifo', [join(merged, 'new/fifo')]);
    await utimes(join(merged, 'new/hello.txt'), 1_600_000_000, 1_600_000_000.5);
  });

  after(async () => {
    execFileSync('umount', [merged]);
    await removeTmpDir(dir);
  });

  test('the layer holds the upper dir translated to OCI: whiteouts, opaque dirs, hardlinks, xattrs, devices', async () => {
    const entries = readTar(await diffBytes(new OverlayDiffer().diff({ upper: overlayMounts() })));
    assert.deepEqual(names(entries), [
      '.wh.del.txt',
      '.wh.gone',
      'etc/',
      'etc/config',
      'new/',
      'new/fifo',
      'new/hard',
      'new/hello.txt',
      'new/link',
      'new/null',
      'perm',
      'refill/',
      'refill/.wh..wh..opq',
      'refill/new',
    ]);
    const by = new Map(entries.map((e) => [e.name, e]));
    assert.equal(by.get('etc/config')!.content.toString(), 'a=1\nb=2\n');
    // The first name of the inode carries the content, the second is a hardlink to it.
    assert.equal(by.get('new/hard')!.typeflag, '0');
    assert.equal(by.get('new/hard')!.content.toString(), 'hello\n');
    assert.equal(by.get('new/hello.txt')!.typeflag, '1');
    assert.equal(by.get('new/hello.txt')!.linkname, 'new/hard');
    assert.deepEqual(by.get('new/hard')!.xattrs.get('security.capability'), CAP);
    assert.equal(by.get('new/hard')!.xattrs.get('user.note')!.toString(), 'v');
    assert.equal(by.get('new/hard')!.mtime, 1_600_000_000, 'mtime kept, truncated to seconds');
    assert.equal(by.get('new/link')!.typeflag, '2');
    assert.equal(by.get('new/link')!.linkname, '../etc/config');
    assert.equal(by.get('new/null')!.typeflag, '3');
    assert.deepEqual([by.get('new/null')!.devmajor, by.get('new/null')!.devminor], [1, 3]);
    assert.equal(by.get('new/fifo')!.typeflag, '6');
    assert.equal(by.get('perm')!.mode, 0o4750);
    assert.deepEqual([by.get('perm')!.uid, by.get('perm')!.gid], [1234, 5678]);
    assert.equal(by.get('.wh.gone')!.typeflag, '0');
    for (const e of entries) {
      for (const k of e.xattrs.keys()) assert.ok(!k.startsWith('trusted.overlay.'), `${e.name} carries ${k}`);
    }
  });

  test('the same change gives the same bytes every time', async () => {
    const a = await diffBytes(new OverlayDiffer().diff({ upper: overlayMounts() }));
    const b = await diffBytes(new OverlayDiffer().diff({ upper: overlayMounts() }));
    assert.ok(a.equals(b));
  });

  test('the compare differ finds the same change, byte for byte save for the opaque directory', async () => {
    const fromOverlay = readTar(await diffBytes(new OverlayDiffer().diff({ upper: overlayMounts() })));
    const fromCompare = readTar(await diffBytes(new CompareDiffer().diff({ upper: bind(merged), lower: bind(lower) })));
    // overlayfs records "removed and re-created" as an opaque dir; a comparison sees a whiteout per old child.
    const strip = (es: ReadEntry[]) =>
      es.filter((e) => !e.name.startsWith('refill/.wh.')).map(({ offset: _o, ...rest }) => rest);
    assert.deepEqual(strip(fromCompare), strip(fromOverlay));
    assert.ok(fromCompare.some((e) => e.name === 'refill/.wh.old'));
  });

  test('a snapshot without a parent is a plain directory: a 0/0 device there is a device', async () => {
    const plain = join(dir, 'plain');
    await mkdir(plain);
    try {
      await mknod(join(plain, 'c'), S_IF.CHR | 0o600, 0, 0);
      const entries = readTar(await diffBytes(new OverlayDiffer().diff({ upper: bind(plain) })));
      assert.deepEqual(entries.map((e) => [e.name, e.typeflag]), [['c', '3']]);
    } finally {
      await rm(plain, { recursive: true });
    }
  });
});

describe('compare differ', () => {
  let dir: string;
  before(async () => {
    dir = await makeTmpDir('compare-diff');
  });
  after(async () => {
    await removeTmpDir(dir);
  });

  async function trees(label: string): Promise<{ parent: string; active: string }> {
    const parent = join(dir, `${label}-parent`);
    const active = join(dir, `${label}-active`);
    await mkdir(parent);
    return { parent, active };
  }

  test('deletions become whiteouts, a directory replacing a file is opaque, a new hardlink puts both names in', async () => {
    const { parent, active } = await trees('basic');
    await writeFile(join(parent, 'f'), 'f');
    await writeFile(join(parent, 'x'), 'x');
    await mkdir(join(parent, 'd/e'), { recursive: true });
    await writeFile(join(parent, 'd/e/g'), 'g');
    await writeFile(join(parent, 'same'), 'same');
    execFileSync('cp', ['-a', parent, active]);
    await rm(join(active, 'd'), { recursive: true });
    await rm(join(active, 'x'));
    await mkdir(join(active, 'x'));
    await writeFile(join(active, 'x/in'), 'in');
    await link(join(active, 'f'), join(active, 'f2'));
    const entries = readTar(await diffBytes(new CompareDiffer().diff({ upper: bind(active), lower: bind(parent) })));
    assert.deepEqual(entries.map((e) => [e.name, e.typeflag]), [
      ['.wh.d', '0'],
      ['f', '0'],
      ['f2', '1'],
      ['x/', '5'],
      ['x/.wh..wh..opq', '0'],
      ['x/in', '0'],
    ]);
  });

  test('equal metadata with whole-second mtimes is checked by content', async () => {
    const { parent, active } = await trees('content');
    await writeFile(join(parent, 'a'), 'aaaa');
    await writeFile(join(parent, 'b'), 'bbbb');
    for (const n of ['a', 'b']) await utimes(join(parent, n), 1_500_000_000, 1_500_000_000);
    execFileSync('cp', ['-a', parent, active]);
    await writeFile(join(active, 'b'), 'BBBB'); // same size
    await utimes(join(active, 'b'), 1_500_000_000, 1_500_000_000); // same (whole-second) mtime
    const entries = readTar(await diffBytes(new CompareDiffer().diff({ upper: bind(active), lower: bind(parent) })));
    assert.deepEqual(names(entries), ['b']);
  });

  test('no parent: everything is new; sockets are left out', async () => {
    const active = join(dir, 'fresh');
    await mkdir(join(active, 'd'), { recursive: true });
    await writeFile(join(active, 'd/f'), 'f');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(join(active, 'sock'), r));
    try {
      const entries = readTar(await diffBytes(new CompareDiffer().diff({ upper: bind(active) })));
      assert.deepEqual(names(entries), ['d/', 'd/f']);
    } finally {
      srv.close();
    }
  });

  test('a tree behind a non-bind mount is mounted read-only for the walk and unmounted after', async () => {
    const { parent } = await trees('mounted');
    await writeFile(join(parent, 'keep'), 'k');
    const up = join(dir, 'm-upper');
    const wk = join(dir, 'm-work');
    await mkdir(up);
    await mkdir(wk);
    await writeFile(join(up, 'added'), 'a');
    const scratch = join(dir, 'scratch');
    await mkdir(scratch);
    const upperMounts: Mount[] = [
      { type: 'overlay', source: 'overlay', options: ['index=off', `workdir=${wk}`, `upperdir=${up}`, `lowerdir=${parent}`] },
    ];
    const entries = readTar(await diffBytes(new CompareDiffer().diff({ upper: upperMounts, lower: bind(parent), tmpDir: scratch })));
    assert.deepEqual(names(entries), ['added']);
    const left = findLeftovers(scratch);
    assert.equal(left.mounts.length, 0, 'no mounts left behind');
  });

  test('a real file named .wh.* cannot go into a layer', async () => {
    const active = join(dir, 'wh');
    await mkdir(active);
    await writeFile(join(active, '.wh.sneaky'), '');
    await assert.rejects(
      diffBytes(new CompareDiffer().diff({ upper: bind(active) })),
      (e: unknown) => e instanceof TslayerError && e.code === 'UNSAFE_ENTRY' && /\.wh\.sneaky/.test(e.message),
    );
  });
});
