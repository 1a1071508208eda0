// `tslayer mount`, `umount` and `snapshots ...` as a user runs them: the real CLI in a
// child process, a real image imported from an OCI layout, real mounts.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lines, runCli, type CliResult } from '../helpers/cli.js';
import { mountAt } from '../helpers/leftovers.js';
import { buildImageLayout } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const REF = 'localhost/tslayer-test/three:1';

describe('tslayer mount, umount and snapshots', () => {
  let dir: string;
  let root: string;
  const cli = (...args: string[]): Promise<CliResult> => runCli(['--root', root, ...args]);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await cli(...args);
    assert.equal(r.code, 0, `tslayer ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const target = async (name: string): Promise<string> => {
    const t = join(dir, name);
    await mkdir(t, { recursive: true });
    return t;
  };

  before(async () => {
    dir = await makeTmpDir('snapshot-cli');
    root = join(dir, 'root');
    const layout = await buildImageLayout(join(dir, 'layout'), [
      { files: { 'etc/os-release': 'base\n', 'bin/sh': 'shell\n', 'top': 'layer 0\n' } },
      { files: { 'usr/lib/lib.so': 'lib\n', 'top': 'layer 1\n' } },
      { files: { 'app/run': 'run\n', 'top': 'layer 2\n' } },
    ]);
    await ok('import', layout.dir, REF);
  });
  after(async () => {
    await removeTmpDir(dir); // fails the suite if anything is still mounted under it
  });

  it('mount REF TARGET mounts the merged image read-write and prints the new key; umount keeps the snapshot', async () => {
    const t = await target('rw');
    const key = (await ok('mount', REF, t)).trim();
    try {
      assert.match(key, /^\S+$/);
      assert.equal(await readFile(join(t, 'top'), 'utf8'), 'layer 2\n', 'the top layer wins');
      assert.equal(await readFile(join(t, 'etc/os-release'), 'utf8'), 'base\n');
      assert.equal(await readFile(join(t, 'usr/lib/lib.so'), 'utf8'), 'lib\n');
      await writeFile(join(t, 'new-file'), 'written\n');
    } finally {
      await ok('umount', t);
    }
    assert.equal(mountAt(t), undefined, 'nothing left mounted');

    // Still there: mount the active snapshot again by its key.
    const again = await target('rw-again');
    assert.equal((await ok('mount', key, again)).trim(), key);
    try {
      assert.equal(await readFile(join(again, 'new-file'), 'utf8'), 'written\n');
      const info = JSON.parse(await ok('--json', 'snapshots', 'info', key));
      assert.equal(info.kind, 'active');
      assert.equal(info.labels['tslayer.io/image'], REF);
      assert.match(info.parent, /^sha256:[0-9a-f]{64}$/);

      const rm = await cli('snapshots', 'rm', key);
      assert.equal(rm.code, 1);
      assert.match(rm.stderr, /^tslayer: snapshots rm: .*mounted at .*tslayer umount/);
    } finally {
      await ok('umount', again);
    }
    const usage = JSON.parse(await ok('--json', 'snapshots', 'usage', key));
    assert.equal(usage.key, key);
    assert.ok(usage.size > 0 && usage.inodes >= 2, JSON.stringify(usage));
    await ok('snapshots', 'rm', key);
    assert.equal((await cli('snapshots', 'info', key)).code, 1);
  });

  it('mount --readonly gives a view that refuses writes', async () => {
    const t = await target('ro');
    const key = (await ok('mount', '--readonly', '--name', 'ro-view', REF, t)).trim();
    assert.equal(key, 'ro-view');
    try {
      assert.equal(await readFile(join(t, 'top'), 'utf8'), 'layer 2\n');
      await assert.rejects(writeFile(join(t, 'x'), 'x'), { code: 'EROFS' });
      assert.equal(JSON.parse(await ok('--json', 'snapshots', 'info', key)).kind, 'view');
    } finally {
      await ok('umount', t);
    }
    await ok('snapshots', 'rm', key);
  });

  it('snapshots ls lists the image chain and the mounted key; a parent with children is not removed', async () => {
    const t = await target('ls');
    const key = (await ok('mount', '--name', 'ls-key', REF, t)).trim();
    try {
      const rows = lines(await ok('snapshots', 'ls')).map((l) => l.split(/\s{3,}/));
      assert.deepEqual(rows[0], ['KEY', 'PARENT', 'KIND', 'CREATED']);
      const json: Array<{ name: string; kind: string; parent?: string }> = JSON.parse(await ok('--json', 'snapshots', 'ls'));
      const committed = json.filter((i) => i.kind === 'committed');
      assert.equal(committed.length, 3, 'one committed snapshot per layer, named by chain id');
      const mine = json.find((i) => i.name === key)!;
      assert.equal(mine.kind, 'active');
      const rm = await cli('snapshots', 'rm', mine.parent!);
      assert.equal(rm.code, 1);
      assert.match(rm.stderr, /parent of .*"ls-key"/);
    } finally {
      await ok('umount', t);
    }
    await ok('snapshots', 'rm', key);
  });

  it('a key already taken is refused and nothing is mounted', async () => {
    const t1 = await target('dup1');
    const t2 = await target('dup2');
    await ok('mount', '--name', 'dup', REF, t1);
    try {
      const r = await cli('mount', '--name', 'dup', REF, t2);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /already exists/);
      assert.equal(mountAt(t2), undefined);
    } finally {
      await ok('umount', t1);
    }
    await ok('snapshots', 'rm', 'dup');
  });

  it('mounting an image that is not pulled says so and suggests tslayer pull', async () => {
    const r = await cli('mount', 'localhost/not/pulled:1', await target('nope'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not pulled.*tslayer pull localhost\/not\/pulled:1/);
  });

  it('umount of a directory with nothing mounted fails', async () => {
    const r = await cli('umount', await target('empty'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nothing is mounted at/);
  });

  it('mount with another driver unpacks the stored image for it first', async () => {
    const t = await target('native');
    const key = (await ok('--driver', 'native', '--quiet', 'mount', REF, t)).trim();
    try {
      assert.equal(await readFile(join(t, 'top'), 'utf8'), 'layer 2\n');
      assert.equal(await readFile(join(t, 'app/run'), 'utf8'), 'run\n');
    } finally {
      await ok('umount', t);
    }
    await ok('--driver', 'native', 'snapshots', 'rm', key);
  });
});
