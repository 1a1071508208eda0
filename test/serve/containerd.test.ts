// containerd using tslayer as its snapshotter, for real: Debian's containerd 1.6 + runc
// with a proxy plugin pointing at `tslayer serve` (the CLI, as a child process), images
// pulled from a real registry with `ctr`, containers run with runc.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainIds } from '../../src/image/chainid.js';
import { openSnapshotter, splitLowerdir, type Info, type StorageSnapshotter } from '../../src/snapshot/index.js';
import { keys } from '../../src/metadata/index.js';
import { Store } from '../../src/store.js';
import { TSLAYER_BIN, runCli } from '../helpers/cli.js';
import { startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { pushLayout, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { buildShellImage, type ShellImage } from '../helpers/shell-image.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

interface Served {
  root: string;
  socket: string;
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `tslayer --root ROOT serve --address SOCKET` as a child process, ready when the socket is there. */
async function serve(root: string, socket: string): Promise<Served> {
  const child = spawn(process.execPath, [TSLAYER_BIN, '--root', root, 'serve', '--address', socket], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, TSLAYER_DEBUG: '1' },
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-200_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (let i = 0; !existsSync(socket); i++) {
    if (child.exitCode !== null || i > 200) throw new Error(`tslayer serve did not start:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { root, socket, child, stderr: () => err, exited };
}

async function stopServe(s: Served | undefined): Promise<number | null> {
  if (!s || s.child.exitCode !== null) return s?.child.exitCode ?? null;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 15_000);
  const code = await s.exited;
  clearTimeout(timer);
  return code;
}

async function snapshotter(root: string, namespace: string): Promise<StorageSnapshotter> {
  return openSnapshotter(await Store.open(root), 'overlay', { namespace, cleanup: false });
}

async function listAll(root: string, namespace: string): Promise<Info[]> {
  const sn = await snapshotter(root, namespace);
  try {
    const out: Info[] = [];
    await sn.walk((i) => {
      out.push(i);
    });
    return out;
  } finally {
    await sn.close();
  }
}

/** containerd names backend snapshots `<ns>/<n>/<key>`: the one whose key part is `key`. */
function byContainerdKey(infos: Info[], key: string): Info | undefined {
  return infos.find((i) => i.name.replace(/^[^/]+\/[0-9]+\//, '') === key);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Store consistency: every recorded id has storage, every storage dir a record; no dangling short links. */
async function assertStoreConsistent(root: string, namespaces: string[]): Promise<void> {
  const dir = join(root, 'snapshots', 'overlay');
  const recorded = new Set<string>();
  const store = await Store.open(root);
  await store.metadata.read(async (tx) => {
    for (const [k, v] of await tx.list<{ id: string }>('snapshots/overlay/')) {
      if (/^snapshots\/overlay\/[^/]+\/keys\//.test(k)) recorded.add(v.id);
    }
  });
  const onDisk = (await readdir(dir)).filter((n) => /^[0-9]+$/.test(n));
  assert.deepEqual(onDisk.sort(), [...recorded].sort(), 'snapshot dirs on disk = recorded ids');
  assert.ok(!(await readdir(dir)).some((n) => n.startsWith('new-')), 'no half-built snapshot left');
  for (const ns of namespaces) assert.ok(Array.isArray(await listAll(root, ns)));
}

describe('containerd with tslayer as proxy snapshotter', { timeout: 900_000 }, () => {
  let tmp: string;
  let registry: RunningRegistry | undefined;
  let served: Served | undefined;
  let deepServed: Served | undefined;
  let containerd: RunningContainerd | undefined;
  let image: ShellImage;
  let ref: string;
  let chain: string[];

  before(async () => {
    tmp = await makeTmpDir('serve-ctrd');
    registry = await startRegistry();
    image = await buildShellImage(join(tmp, 'layout'), [
      [
        { type: 'file', path: 'etc/hello.txt', content: 'hello from layer 1\n' },
        { type: 'file', path: 'etc/gone.txt', content: 'deleted by layer 2\n' },
        { type: 'file', path: 'etc/motd', content: 'first motd\n' },
      ],
      [
        { type: 'whiteout', path: 'etc/gone.txt' },
        { type: 'file', path: 'etc/motd', content: 'second motd\n' },
        { type: 'file', path: 'usr/bin/tool', content: '#!/bin/sh\necho tool ran as $(id -u)\n', mode: 0o755 },
      ],
    ]);
    ref = `${registry.host}/shell:1`;
    await pushLayout(image.dir, ref);
    chain = chainIds(image.diffIds as `sha256:${string}`[]);

    // The main store; and one whose snapshot ids have grown long (ids are never reused:
    // a store that made 10^14 snapshots), under a root of a few hundred bytes. There a
    // 200-layer stack's lowerdirs do not fit in one page even after containerd's own
    // shortening (<id>/fs relative to the common dir), so tslayer must hand out short links.
    served = await serve(join(tmp, 'store'), join(tmp, 'ts.sock'));
    const deepRoot = join(tmp, ...Array.from({ length: 3 }, (_, i) => `a-root-directory-of-some-length-${i}-${'x'.repeat(40)}`));
    const deepStore = await Store.open(deepRoot);
    await deepStore.metadata.transaction(async (tx) => tx.put(keys.snapshotSeq('overlay'), 1e14));
    deepServed = await serve(deepRoot, join(tmp, 'deep.sock'));
    containerd = await startContainerd({
      dir: join(tmp, 'ctrd'),
      proxySnapshotters: { tslayer: served.socket, 'tslayer-deep': deepServed.socket },
    });
  });

  after(async () => {
    try {
      if (containerd) {
        // Containers first (their shims hold mounts), then containerd, then the servers.
        for (const ns of ['default', 'other']) {
          const ids = (await containerd.ctr(['-n', ns, 'containers', 'ls', '-q']).catch(() => '')).split('\n').filter(Boolean);
          for (const id of ids) {
            await containerd.ctr(['-n', ns, 'tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => '');
            await containerd.ctr(['-n', ns, 'tasks', 'rm', '-f', id]).catch(() => '');
            await containerd.ctr(['-n', ns, 'containers', 'rm', id]).catch(() => '');
          }
        }
        await containerd.stop();
      }
    } finally {
      await stopServe(served);
      await stopServe(deepServed);
      await registry?.stop();
      if (tmp) await removeTmpDir(tmp);
    }
  });

  const ctr = (...args: string[]) => containerd!.ctr(args);
  const failWithLogs = async (fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      const tail = (s: string) => s.split('\n').slice(-40).join('\n');
      throw new Error(
        `${(e as Error).message}\n--- tslayer serve:\n${tail(served?.stderr() ?? '')}\n--- containerd:\n${tail(containerd?.logs() ?? '')}`,
        { cause: e },
      );
    }
  };

  it('ctr images pull unpacks every layer into tslayer as a committed snapshot named by its chain id', () =>
    failWithLogs(async () => {
      await ctr('images', 'pull', '--plain-http', '--snapshotter', 'tslayer', ref);
      const infos = await listAll(served!.root, 'default');
      for (const [i, id] of chain.entries()) {
        const s = byContainerdKey(infos, id);
        assert.ok(s, `layer ${i}: a snapshot for chain id ${id}`);
        assert.equal(s.kind, 'committed');
        if (i > 0) assert.equal(s.parent?.replace(/^[^/]+\/[0-9]+\//, ''), chain[i - 1], `layer ${i}: parent is the layer below`);
        else assert.equal(s.parent, undefined);
        assert.ok(s.name.startsWith('default/'), 'containerd scopes its keys with the namespace');
      }
      assert.equal(infos.filter((i) => i.kind === 'committed').length, chain.length, 'nothing else committed');
      assert.equal(infos.filter((i) => i.kind !== 'committed').length, 0, 'no extraction snapshot left behind');
    }));

  it('ctr run prints what the image says: later layers overwrite, whiteouts delete, modes hold', () =>
    failWithLogs(async () => {
      const out = await ctr(
        'run', '--rm', '--snapshotter', 'tslayer', ref, 'run-1',
        '/bin/sh', '-c', 'cat /etc/hello.txt /etc/motd; test -e /etc/gone.txt && echo gone-present || echo gone-absent; /usr/bin/tool',
      );
      assert.equal(out, 'hello from layer 1\nsecond motd\ngone-absent\ntool ran as 0\n');
    }));

  it("a container's write lands in its active snapshot, and the container's removal removes it", () =>
    failWithLogs(async () => {
      await ctr('run', '--snapshotter', 'tslayer', ref, 'writer', '/bin/sh', '-c', 'echo written > /root/out.txt; rm /etc/motd');
      const infos = await listAll(served!.root, 'default');
      const active = byContainerdKey(infos, 'writer');
      assert.ok(active, "the container's snapshot is in the store");
      assert.equal(active.kind, 'active');
      assert.equal(active.parent?.replace(/^[^/]+\/[0-9]+\//, ''), chain[chain.length - 1]);

      const sn = await snapshotter(served!.root, 'default');
      try {
        const [m] = await sn.mounts(active.name);
        const upper = m.options.find((o) => o.startsWith('upperdir='));
        assert.ok(upper, 'an overlay with an upper dir');
        const upperDir = splitLowerdir(upper.slice('upperdir='.length))[0];
        assert.equal(await readFile(join(upperDir, 'root', 'out.txt'), 'utf8'), 'written\n');
        assert.ok(existsSync(join(upperDir, 'etc', 'motd')), 'the removal is a whiteout in the upper dir');
      } finally {
        await sn.close();
      }
      await ctr('containers', 'rm', 'writer');
      await waitFor('the active snapshot to go', async () => !byContainerdKey(await listAll(served!.root, 'default'), 'writer'));
    }));

  it('ctr snapshots ls, info, label, prepare and rm go through to the store', () =>
    failWithLogs(async () => {
      const top = chain[chain.length - 1];
      const ls = await ctr('snapshots', '--snapshotter', 'tslayer', 'ls');
      for (const id of chain) assert.match(ls, new RegExp(`^${id}\\s.*Committed\\s*$`, 'm'), `ls lists ${id} as committed`);

      const info = JSON.parse(await ctr('snapshots', '--snapshotter', 'tslayer', 'info', top)) as Record<string, unknown>;
      assert.equal(info.Kind, 'Committed');
      assert.equal(info.Name, top);
      assert.equal(info.Parent, chain[chain.length - 2]);

      // Labels under containerd.io/snapshot/ are the ones containerd hands to the backend.
      await ctr('snapshots', '--snapshotter', 'tslayer', 'label', top, 'containerd.io/snapshot/tslayer.test=v1');
      const stored = byContainerdKey(await listAll(served!.root, 'default'), top)!;
      assert.equal(stored.labels['containerd.io/snapshot/tslayer.test'], 'v1', 'the label reached the store');
      const info2 = JSON.parse(await ctr('snapshots', '--snapshotter', 'tslayer', 'info', top)) as { Labels: Record<string, string> };
      assert.equal(info2.Labels['containerd.io/snapshot/tslayer.test'], 'v1');

      await ctr('snapshots', '--snapshotter', 'tslayer', 'prepare', 'manual', top);
      const manual = byContainerdKey(await listAll(served!.root, 'default'), 'manual');
      assert.equal(manual?.kind, 'active');
      const mounts = await ctr('snapshots', '--snapshotter', 'tslayer', 'mounts', '/mnt/x', 'manual');
      assert.match(mounts, /mount -t overlay overlay .*upperdir=.*lowerdir=/);
      await ctr('snapshots', '--snapshotter', 'tslayer', 'rm', 'manual');
      assert.doesNotMatch(await ctr('snapshots', '--snapshotter', 'tslayer', 'ls'), /manual/);
      await waitFor('the store to drop it', async () => !byContainerdKey(await listAll(served!.root, 'default'), 'manual'));
      await assert.rejects(ctr('snapshots', '--snapshotter', 'tslayer', 'info', 'manual'), /not found/);
    }));

  it("namespaces do not collide: another namespace pulls its own snapshots, and the CLI reads the store meanwhile", () =>
    failWithLogs(async () => {
      await ctr('-n', 'other', 'images', 'pull', '--plain-http', '--snapshotter', 'tslayer', ref);
      const other = await listAll(served!.root, 'other');
      assert.equal(other.length, chain.length);
      assert.ok(other.every((i) => i.name.startsWith('other/')));
      const def = await listAll(served!.root, 'default');
      assert.ok(def.every((i) => i.name.startsWith('default/')), 'default keeps its own');
      const out = await ctr('-n', 'other', 'run', '--rm', '--snapshotter', 'tslayer', ref, 'run-other', '/bin/cat', '/etc/hello.txt');
      assert.equal(out, 'hello from layer 1\n');
      const cli = await runCli(['--root', served!.root, 'images']);
      assert.equal(cli.code, 0, cli.stderr);
    }));

  it('a 200-layer image runs whole through containerd\'s mount(2) when its lowerdirs need short links to fit a page', () =>
    failWithLogs(async () => {
      const LAYERS = 199; // + the shell layer
      const layers = Array.from({ length: LAYERS }, (_, i) => [
        { type: 'file' as const, path: `layers/${i}`, content: `${i}\n` },
        { type: 'file' as const, path: 'top', content: `layer ${i}\n` },
      ]);
      const deep = await buildShellImage(join(tmp, 'deep-layout'), layers);
      const deepRef = `${registry!.host}/deep:1`;
      await pushLayout(deep.dir, deepRef);
      await containerd!.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'tslayer-deep', deepRef], { timeoutMs: 600_000 });
      const out = await ctr(
        'run', '--rm', '--snapshotter', 'tslayer-deep', deepRef, 'deep-1',
        '/bin/sh', '-c', 'cat /top; ls /layers | wc -l; cat /layers/0',
      );
      assert.equal(out.replace(/[ \t]+/g, ''), `layer ${LAYERS - 1}\n${LAYERS}\n0\n`.replace(/[ \t]+/g, ''));
      // The stack needed the short links: its real paths would not fit in containerd's mount(2).
      assert.ok((await readdir(join(deepServed!.root, 'snapshots', 'overlay', 'l'))).length >= LAYERS);
      await ctr('images', 'rm', '--sync', deepRef);
    }));

  it('removing the images leaves the store consistent and empty', () =>
    failWithLogs(async () => {
      await ctr('images', 'rm', '--sync', ref);
      await waitFor('default to empty', async () => (await listAll(served!.root, 'default')).length === 0);
      assert.equal((await listAll(served!.root, 'other')).length, chain.length, "the other namespace's image stays");
      await ctr('-n', 'other', 'images', 'rm', '--sync', ref);
      await waitFor('other to empty', async () => (await listAll(served!.root, 'other')).length === 0);
      await assertStoreConsistent(served!.root, ['default', 'other']);
      await waitFor('the deep store to empty', async () => (await listAll(deepServed!.root, 'default')).length === 0);
      await assertStoreConsistent(deepServed!.root, ['default']);
      assert.equal((await ctr('snapshots', '--snapshotter', 'tslayer', 'ls')).trim().split('\n').length, 1, 'only the header');
    }));

  it('tslayer serve stops cleanly on SIGTERM and removes its socket', async () => {
    const code = await stopServe(served);
    assert.equal(code, 0, served!.stderr());
    assert.ok(!existsSync(served!.socket), 'socket removed');
  });
});
