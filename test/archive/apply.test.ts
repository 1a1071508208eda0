// applyLayer beyond the corpus: content that spans batches, input in odd chunks, the
// rootless store's xattrs, failures (stream errors, syscall errors) and fd hygiene.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../src/archive/apply.js';
import { TslayerError } from '../../src/errors.js';
import { lgetxattrOptional, mount, umount, MS } from '../../src/native/index.js';
import { diffTree, readTree, tar, type ExpectedNode } from '../helpers/layer-corpus.js';
import { seededBytes } from '../helpers/seeded.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const chunked = (data: Buffer, size: number) =>
  Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
    })(),
  );

const fds = async () => (await readdir('/proc/self/fd')).length;

describe('applyLayer', () => {
  let work: string;
  before(async () => {
    work = await makeTmpDir('apply');
  });
  after(async () => {
    await removeTmpDir(work);
  });
  let n = 0;
  const fresh = async () => {
    const d = join(work, String(n++));
    await mkdir(d);
    return d;
  };

  it('writes files larger than a batch and layers with more entries than a batch holds', async () => {
    const big = seededBytes('big', 9 << 20);
    const entries = [tar.dir('many/'), tar.file('big.bin', big, { mode: 0o640 })];
    for (let i = 0; i < 3000; i++) entries.push(tar.file(`many/f${i}`, `file ${i}\n`));
    entries.push(tar.file('after-big', 'last'));
    const data = tar.encodeLayer(entries);
    for (const mode of ['overlay', 'remove'] as const) {
      const dir = await fresh();
      const r = await applyLayer(chunked(data, 64 << 10), dir, { mode, layer: 'big' });
      assert.deepEqual(r, { entries: 3003, bytes: data.length });
      const got = createHash('sha256').update(await readFile(join(dir, 'big.bin'))).digest('hex');
      assert.equal(got, createHash('sha256').update(big).digest('hex'));
      assert.equal((await stat(join(dir, 'big.bin'))).mode & 0o7777, 0o640);
      assert.equal((await readdir(join(dir, 'many'))).length, 3000);
      assert.equal(await readFile(join(dir, 'many', 'f2999'), 'utf8'), 'file 2999\n');
      assert.equal(await readFile(join(dir, 'after-big'), 'utf8'), 'last');
    }
  });

  it('gives the same tree whatever the chunking of the input', async () => {
    const data = tar.encodeLayer([
      tar.file('a/b/c', 'x'.repeat(1000)),
      tar.file(`${'n'.repeat(120)}/long`, 'l', { format: 'gnu' }),
      tar.file('pax', 'p', { xattrs: { 'user.v': Buffer.from([0, 1, 2, 255]) } }),
      tar.sym('s', 'a/b'),
      tar.hard('h', 'a/b/c'),
    ]);
    const one = await fresh();
    await applyLayer(chunked(data, data.length), one, { mode: 'remove' });
    const expected = await readTree(one);
    for (const size of [1, 3, 511, 513]) {
      const dir = await fresh();
      await applyLayer(chunked(data, size), dir, { mode: 'remove' });
      const got = await readTree(dir);
      const want = Object.fromEntries(
        [...expected].filter(([p]) => p !== '.').map(([p, v]) => [p, { ...v, sameInodeAs: p === 'h' ? 'a/b/c' : undefined }]),
      ) as Record<string, ExpectedNode>;
      assert.deepEqual(diffTree(got, want), [], `chunks of ${size}`);
    }
  });

  it('on a rootless store marks opaque directories with user.overlay.opaque and never applies user.overlay.* or trusted.overlay.* from a tar', async () => {
    const lower = await fresh();
    const upper = await fresh();
    await applyLayer(Readable.from([tar.encodeLayer([tar.file('d/old', 'o'), tar.file('e/keep', 'k')])]), lower, { mode: 'overlay' });
    const layer = tar.encodeLayer([
      tar.wh('d/.wh..wh..opq'),
      tar.file('d/new', 'n'),
      tar.dir('e/', { xattrs: { 'user.overlay.opaque': 'y', 'trusted.overlay.opaque': 'y', 'user.fine': '1' } }),
      tar.file('x', 'x', { xattrs: { 'user.overlay.redirect': '/d', 'user.overlay.metacopy': 'z' } }),
    ]);
    await applyLayer(Readable.from([layer]), upper, { mode: 'overlay', lowers: [lower], rootless: true });
    assert.equal((await lgetxattrOptional(join(upper, 'd'), 'user.overlay.opaque'))?.toString(), 'y');
    assert.equal(await lgetxattrOptional(join(upper, 'd'), 'trusted.overlay.opaque'), undefined);
    assert.equal(await lgetxattrOptional(join(upper, 'e'), 'user.overlay.opaque'), undefined);
    assert.equal(await lgetxattrOptional(join(upper, 'e'), 'trusted.overlay.opaque'), undefined);
    assert.equal((await lgetxattrOptional(join(upper, 'e'), 'user.fine'))?.toString(), '1');
    assert.equal(await lgetxattrOptional(join(upper, 'x'), 'user.overlay.redirect'), undefined);
    // The merged view, as a rootless (userxattr) overlay mount shows it.
    const merged = join(work, 'merged-rootless');
    await mkdir(merged);
    await mount('overlay', merged, 'overlay', MS.RDONLY, `lowerdir=${upper}:${lower},userxattr`);
    try {
      assert.deepEqual((await readdir(join(merged, 'd'))).sort(), ['new']);
      assert.deepEqual((await readdir(join(merged, 'e'))).sort(), ['keep']);
    } finally {
      await umount(merged);
    }
  });

  it('applies a binary security.capability xattr that getcap reads back as the capability it encodes', async (t) => {
    if (spawnSync('getcap', ['-h']).error) return t.skip('getcap is not installed (apt-get install libcap2-bin)');
    // struct vfs_cap_data revision 2 as setcap writes it: cap_net_raw (bit 13) permitted + effective.
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const dir = await fresh();
    await applyLayer(Readable.from([tar.encodeLayer([tar.file('ping', 'x', { mode: 0o755, uid: 1, xattrs: { 'security.capability': cap } })])]), dir, { mode: 'remove' });
    const r = spawnSync('getcap', [join(dir, 'ping')], { encoding: 'utf8' });
    assert.match(r.stdout, /ping cap_net_raw=ep$/m);
  });

  it('rejects with the input stream\'s error and leaves no fd open', async () => {
    const before = await fds();
    const data = tar.encodeLayer([tar.file('a', 'a'.repeat(100000)), tar.file('b', 'b')]);
    const failing = new Readable({
      read() {
        this.push(data.subarray(0, 2048));
        this.destroy(new Error('connection reset'));
      },
    });
    await assert.rejects(applyLayer(failing, await fresh(), { mode: 'remove', layer: 'sha256:abc' }), /connection reset/);
    assert.equal(await fds(), before);
  });

  it('reports a failed syscall as an fs error naming the layer and the entry', async () => {
    const dir = await fresh();
    await mount('tmpfs', dir, 'tmpfs', MS.RDONLY, 'size=1m');
    try {
      await assert.rejects(applyLayer(Readable.from([tar.encodeLayer([tar.file('etc/hosts', 'h')])]), dir, { mode: 'remove', layer: 'sha256:ro' }), (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'EROFS');
        assert.equal(e.syscall, 'mkdirat');
        assert.match(e.message, /^layer sha256:ro: entry "etc\/hosts": EROFS: mkdirat '.*\/etc'$/);
        return true;
      });
    } finally {
      await umount(dir);
    }
  });

  it('refuses lower layers in remove mode', async () => {
    await assert.rejects(applyLayer(Readable.from([]), await fresh(), { mode: 'remove', lowers: ['/x'], layer: 'l' }), (e: unknown) => e instanceof TslayerError && e.code === 'INVALID_ARGUMENT');
  });

  it('leaves no fd open after layers that apply and layers that are refused', async () => {
    const before = await fds();
    const lower = await fresh();
    await applyLayer(Readable.from([tar.encodeLayer([tar.file('a/b', 'b'), tar.sym('l', 'a')])]), lower, { mode: 'overlay' });
    for (let i = 0; i < 3; i++) {
      await applyLayer(Readable.from([tar.encodeLayer([tar.file('l/c', 'c'), tar.hard('h', 'a/b')])]), await fresh(), { mode: 'overlay', lowers: [lower] });
      await assert.rejects(applyLayer(Readable.from([tar.encodeLayer([tar.file('x', 'x'), tar.hard('h', '../../etc/passwd')])]), await fresh(), { mode: 'overlay', lowers: [lower] }), /UNSAFE|leaves the root/);
    }
    assert.equal(await fds(), before);
  });
});
