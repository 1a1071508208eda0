// A container actually runs on a `tslayer mount`: a busybox image imported from an OCI
// layout, mounted by the real CLI, entered with unshare + chroot (a real runtime's
// namespaces and root switch), written to; the committed layers must not change.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliResult } from '../helpers/cli.js';
import { buildShellImage } from '../helpers/shell-image.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const REF = 'localhost/tslayer-test/shell:1';

/** path -> type, mode, owner, size, mtime and content hash or link target, for a whole tree. */
async function fingerprint(dir: string, out = new Map<string, string>(), rel = ''): Promise<Map<string, string>> {
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const p = join(rel, name);
    const st = await lstat(join(dir, p));
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs}`;
    if (st.isFile()) what += ' ' + createHash('sha256').update(await readFile(join(dir, p))).digest('hex');
    if (st.isSymbolicLink()) what += ' -> ' + (await readlink(join(dir, p)));
    out.set(p, what);
    if (st.isDirectory()) await fingerprint(dir, out, p);
  }
  return out;
}

describe('a container runs on tslayer mount', () => {
  let dir: string;
  let root: string;
  const cli = (...args: string[]): Promise<CliResult> => runCli(['--root', root, ...args]);

  before(async () => {
    dir = await makeTmpDir('runtime');
    root = join(dir, 'root');
    const image = await buildShellImage(join(dir, 'layout'), [
      [
        { type: 'file', path: 'etc/msg', content: 'from layer 1\n' },
        { type: 'file', path: 'etc/gone', content: 'deleted above\n' },
      ],
      [
        { type: 'file', path: 'etc/msg', content: 'from layer 2\n' },
        { type: 'whiteout', path: 'etc/gone' },
      ],
    ]);
    const r = await cli('import', image.dir, REF);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await removeTmpDir(dir); // fails the suite if anything is still mounted under it
  });

  it('a shell in the mounted image sees the merged files, writes to the upper, and the layers stay byte-for-byte', async () => {
    const layers = join(root, 'snapshots', 'overlay');
    const committed = (await readdir(layers)).filter((n) => /^[0-9]+$/.test(n));
    assert.equal(committed.length, 3, 'one committed snapshot per layer');
    const before = await fingerprint(layers);

    const target = join(dir, 'rootfs');
    await mkdir(target);
    const m = await cli('mount', REF, target, '--name', 'ctr');
    assert.equal(m.code, 0, m.stderr);
    try {
      const { stdout } = await run('unshare', [
        '--mount', '--pid', '--fork', 'chroot', target, '/bin/sh', '-c',
        'cat /etc/msg; test -e /etc/gone || echo gone-is-hidden; echo written > /new; cat /new; id -u',
      ]);
      assert.deepEqual(stdout.trim().split('\n'), ['from layer 2', 'gone-is-hidden', 'written', '0']);
      assert.equal(await readFile(join(target, 'new'), 'utf8'), 'written\n');
    } finally {
      const u = await cli('umount', target);
      assert.equal(u.code, 0, u.stderr);
    }

    const afterRun = await fingerprint(layers);
    for (const [path, what] of before) assert.equal(afterRun.get(path), what, `committed layer entry ${path} changed`);
    const written = [...afterRun.keys()].filter((p) => !before.has(p) && p.endsWith('/fs/new'));
    assert.equal(written.length, 1, 'the write landed in the active snapshot\'s upper directory only');
    const rm = await cli('snapshots', 'rm', 'ctr');
    assert.equal(rm.code, 0, rm.stderr);
  });
});
