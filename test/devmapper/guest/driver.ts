// Runs INSIDE the dm VM (test/devmapper/driver.test.ts boots it): what is particular to
// the devmapper driver, checked against the kernel's own view (dmsetup, sysfs, blockdev)
// on the real thin pool named by $DM_POOL.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TslayerError } from '../../../src/errors.js';
import { keys } from '../../../src/metadata/index.js';
import { DevmapperDriver } from '../../../src/snapshot/drivers/devmapper.js';
import { mountAll, openSnapshotter, unmountAll, type Mount, type StorageSnapshotter } from '../../../src/snapshot/index.js';
import { Store } from '../../../src/store.js';
import { makeTmpDir, removeTmpDir } from '../../helpers/tmp.js';

const POOL = process.env.DM_POOL ?? '';
const BASE = 256 * 1024 ** 2;

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
/** Runs a command that may fail; returns its status and what it printed. */
const trySh = (cmd: string, ...args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};
const activeNames = (): string[] =>
  existsSync('/sys/block')
    ? sh('ls', '/sys/block')
        .split('\n')
        .filter((d) => d.startsWith('dm-'))
        .map((d) => sh('cat', `/sys/block/${d}/dm/name`))
    : [];
const isActive = (name: string) => activeNames().includes(name);
const codeOf = (e: unknown) => (e instanceof TslayerError ? e.code : undefined);

let scratch: string;
before(async () => {
  assert.ok(POOL, 'set DM_POOL');
  scratch = await makeTmpDir('dm-driver');
});
after(async () => {
  if (scratch) await removeTmpDir(scratch);
});

interface Opened {
  root: string;
  sn: StorageSnapshotter;
  /** The device-name prefix of this store. */
  prefix: string;
  warnings: string[];
}

async function open(root?: string, driverOptions: Record<string, unknown> = {}): Promise<Opened> {
  root ??= join(scratch, `root-${randomBytes(4).toString('hex')}`);
  const warnings: string[] = [];
  const sn = await openSnapshotter(await Store.open(root), 'devmapper', {
    driverOptions: { dmPool: POOL, dmBaseSize: BASE, ...driverOptions },
    warn: (m) => warnings.push(m),
  });
  const prefix = (sn as unknown as { impl: DevmapperDriver }).impl.prefix;
  return { root, sn, prefix, warnings };
}

/** The thin id snapshot `id` got, from its marker. */
async function thinOf(root: string, id: string): Promise<number> {
  return (JSON.parse(await readFile(join(root, 'snapshots/devmapper', id, 'device'), 'utf8')) as { thin: number }).thin;
}

/** Whether thin id `thin` exists in the pool: create_thin of it is refused with EEXIST. */
function thinExists(thin: number): boolean {
  const r = trySh('dmsetup', 'message', POOL, '0', `create_thin ${thin}`);
  if (r.status === 0) {
    sh('dmsetup', 'message', POOL, '0', `delete ${thin}`);
    return false;
  }
  assert.match(r.out, /File exists/);
  return true;
}

async function withMounted<T>(mounts: Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(scratch, `mnt-${randomBytes(4).toString('hex')}`);
  await mkdir(dir);
  await mountAll(mounts, dir);
  try {
    return await fn(dir);
  } finally {
    await unmountAll(dir);
  }
}

/** The driver-wide id of snapshot `key` (default namespace), from the metadata. */
async function idOf(root: string, key: string): Promise<string> {
  const store = await Store.open(root);
  const rec = await store.metadata.read((tx) => tx.get<{ id: string }>(keys.snapshot('devmapper', 'default', key)));
  assert.ok(rec, `no snapshot ${key} in ${root}`);
  return rec.id;
}

describe('devmapper driver', () => {
  it('gives each snapshot a thin device under its store prefix: ext4, rw when active, a read-only device and mount for a view', async () => {
    const { root, sn, prefix } = await open();
    try {
      const m = await sn.prepare('a');
      const id = await idOf(root, 'a');
      assert.deepEqual(m, [{ type: 'ext4', source: `/dev/mapper/${prefix}${id}`, options: ['rw'] }]);
      assert.match(prefix, /^tslayer-[0-9a-f]{8}-$/);
      const poolDev = sh('dmsetup', 'info', '-c', '--noheadings', '-o', 'major,minor', POOL);
      assert.equal(sh('dmsetup', 'table', `${prefix}${id}`), `0 ${BASE / 512} thin ${poolDev} ${await thinOf(root, id)}`);
      assert.equal(sh('blockdev', '--getro', m[0]!.source), '0');
      await withMounted(m, (dir) => writeFile(join(dir, 'f'), 'a\n'));
      await sn.commit('A', 'a');
      const v = await sn.view('v', 'A');
      assert.equal(v[0]!.options[0], 'ro');
      assert.equal(sh('blockdev', '--getro', v[0]!.source), '1', 'the view device itself is read-only');
      await withMounted(v, async (dir) => assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'a\n'));
    } finally {
      await sn.close();
    }
  });

  it('commit deactivates the device, deferred while it is mounted and done at unmount', async () => {
    const { root, sn, prefix } = await open();
    try {
      await sn.prepare('x-a');
      await sn.commit('x', 'x-a');
      assert.ok(!isActive(`${prefix}${await idOf(root, 'x')}`), 'an unmounted device goes at once');
      const m = await sn.prepare('a', 'x');
      const name = `${prefix}${await idOf(root, 'a')}`;
      const dir = join(scratch, 'deferred');
      await mkdir(dir);
      await mountAll(m, dir);
      try {
        await writeFile(join(dir, 'f'), 'x');
        await sn.commit('A', 'a');
        assert.match(sh('dmsetup', 'info', name), /DEFERRED REMOVE/);
      } finally {
        await unmountAll(dir);
      }
      assert.ok(!isActive(name), 'the device went away with the unmount');
    } finally {
      await sn.close();
    }
  });

  it('a snapshot of a committed origin that is still mounted holds what was written, and the origin keeps working', async () => {
    const { root, sn, prefix } = await open();
    try {
      const m = await sn.prepare('a');
      const origin = `${prefix}${await idOf(root, 'a')}`;
      const dir = join(scratch, 'origin');
      await mkdir(dir);
      await mountAll(m, dir);
      try {
        await writeFile(join(dir, 'before'), 'written before commit\n'); // in the page cache only
        await sn.commit('A', 'a');
        const b = await sn.prepare('b', 'A'); // suspends (freezing the fs: clean), snapshots, resumes
        assert.match(sh('dmsetup', 'info', origin), /State:\s+ACTIVE/);
        await writeFile(join(dir, 'after'), 'the origin is writable again\n');
        await withMounted(b, async (bdir) => {
          assert.equal(await readFile(join(bdir, 'before'), 'utf8'), 'written before commit\n');
          assert.ok(!existsSync(join(bdir, 'after')));
        });
      } finally {
        await unmountAll(dir);
      }
    } finally {
      await sn.close();
    }
  });

  it('remove deletes the thin id from the pool; a parent with children is refused first', async () => {
    const { root, sn } = await open();
    try {
      await sn.prepare('p-a');
      await sn.commit('p', 'p-a');
      const p = await thinOf(root, await idOf(root, 'p'));
      await sn.prepare('c', 'p');
      const c = await thinOf(root, await idOf(root, 'c'));
      await assert.rejects(sn.remove('p'), (e) => codeOf(e) === 'FAILED_PRECONDITION');
      assert.ok(thinExists(p));
      await sn.remove('c');
      assert.ok(!thinExists(c), 'the child thin id is gone');
      await sn.remove('p');
      assert.ok(!thinExists(p), 'the parent thin id is gone');
      assert.deepEqual((await readdir(join(root, 'snapshots/devmapper'))).filter((n) => /^\d+$/.test(n)), []);
    } finally {
      await sn.close();
    }
  });

  it("skips thin ids someone else uses in a shared pool and never touches another store's devices", async () => {
    // Another user of the pool holds the ids a new store would take first.
    const foreign = [1, 2, 3, 4, 5, 6].filter((t) => !thinExists(t));
    for (const t of foreign) sh('dmsetup', 'message', POOL, '0', `create_thin ${t}`);
    const one = await open();
    const two = await open();
    try {
      const m1 = await one.sn.prepare('a');
      await two.sn.prepare('a');
      await two.sn.prepare('b');
      const thins = [await thinOf(one.root, await idOf(one.root, 'a')), await thinOf(two.root, await idOf(two.root, 'a')), await thinOf(two.root, await idOf(two.root, 'b'))];
      assert.equal(new Set(thins).size, 3, 'distinct thin ids');
      for (const t of thins) assert.ok(!foreign.includes(t), `thin id ${t} belongs to someone else`);
      assert.notEqual(one.prefix, two.prefix);
      // Store two's cleanup (on open) and removals leave store one's active device alone.
      await two.sn.remove('a');
      await two.sn.remove('b');
      await two.sn.close();
      await (await open(two.root)).sn.close();
      assert.ok(isActive(m1[0]!.source.slice('/dev/mapper/'.length)));
      for (const t of foreign) assert.ok(thinExists(t), `foreign thin id ${t} is still there`);
    } finally {
      await one.sn.close();
      for (const t of foreign) trySh('dmsetup', 'message', POOL, '0', `delete ${t}`);
    }
  });

  it('a failure names the command, the device and what the kernel said', async () => {
    const { root, sn, prefix } = await open();
    try {
      await sn.prepare('a');
      const id = await idOf(root, 'a');
      // The thin device vanishes behind the driver's back.
      sh('dmsetup', 'remove', `${prefix}${id}`);
      sh('dmsetup', 'message', POOL, '0', `delete ${await thinOf(root, id)}`);
      await assert.rejects(sn.mounts('a'), (e: Error) => {
        assert.match(e.message, /^dmsetup create /);
        assert.ok(e.message.includes(`(device ${prefix}${id})`), e.message);
        assert.match(e.message, /\[kernel: .*thin.*\]/);
        return true;
      });
    } finally {
      await sn.close();
    }
  });

  it('activates from the metadata alone: devices removed (as by a reboot) come back on mounts', async () => {
    const { root, sn, prefix } = await open();
    try {
      await withMounted(await sn.prepare('a'), (dir) => writeFile(join(dir, 'f'), 'kept\n'));
      await sn.commit('A', 'a');
      await sn.prepare('b', 'A');
      await sn.close();
      sh('dmsetup', 'remove', `${prefix}${await idOf(root, 'b')}`);
      const again = await open(root);
      try {
        await withMounted(await again.sn.mounts('b'), async (dir) => assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'kept\n'));
      } finally {
        await again.sn.close();
      }
    } finally {
      await sn.close();
    }
  });

  it('usage counts the blocks a snapshot maps beyond its parent, and the inodes it added', async () => {
    const { sn } = await open();
    try {
      await sn.prepare('a');
      await sn.commit('A', 'a');
      const m = await sn.prepare('b', 'A');
      await withMounted(m, async (dir) => {
        await writeFile(join(dir, 'big'), randomBytes(4 << 20));
        await writeFile(join(dir, 'small'), 'x');
      });
      const u = await sn.usage('b');
      assert.ok(u.size >= 4 << 20 && u.size < 8 << 20, `size ${u.size}`);
      assert.equal(u.inodes, 2);
    } finally {
      await sn.close();
    }
  });

  it('cleanup frees the device of a snapshot whose maker died while preparing it', async () => {
    const { root, sn, prefix } = await open();
    await sn.close();
    // A process that made thin device 999's storage and activated it, then died.
    const mod = (p: string) => JSON.stringify(new URL(`../../../src/${p}`, import.meta.url).href);
    const script = `import { DevmapperDriver } from ${mod('snapshot/drivers/devmapper.js')};
import { Layout } from ${mod('snapshot/driver.js')};
import { Store } from ${mod('store.js')};
const store = await Store.open(${JSON.stringify(root)});
const layout = new Layout(store.snapshotsDir('devmapper'));
const d = new DevmapperDriver(layout, store, { dmPool: ${JSON.stringify(POOL)}, dmBaseSize: ${BASE} });
const ref = { id: '999', kind: 'active', parentIds: [] };
await d.create(layout.buildDir('999'), ref);
await d.mounts(ref);
process.kill(process.pid, 'SIGKILL');`;
    // Asynchronously: this process must stay free to close its own hold on the metadata.
    const child = await new Promise<{ signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      c.on('error', reject);
      c.on('close', (_code, signal) => resolve({ signal, stderr }));
    });
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    const building = (await readdir(join(root, 'snapshots/devmapper'))).find((n) => n.endsWith('-999'))!;
    assert.ok(building, 'the dead process left its build dir');
    const thin = await thinOf(root, building);
    assert.ok(isActive(`${prefix}999`) && thinExists(thin));
    const again = await open(root); // cleanup on open
    await again.sn.close();
    assert.ok(!isActive(`${prefix}999`), 'the device is deactivated');
    assert.ok(!thinExists(thin), 'its thin id is deleted');
    assert.ok(!existsSync(join(root, 'snapshots/devmapper', building)));
  });

  it('takes the pool, size and filesystem from config.json under the driver root when no option names them', async () => {
    const root = join(scratch, 'root-config');
    await mkdir(join(root, 'snapshots/devmapper'), { recursive: true });
    await writeFile(join(root, 'snapshots/devmapper/config.json'), JSON.stringify({ pool: POOL, baseSize: '128M', fs: 'ext4' }));
    const sn = await openSnapshotter(await Store.open(root), 'devmapper');
    try {
      const m = await sn.prepare('a');
      assert.equal(sh('blockdev', '--getsize64', m[0]!.source), String(128 * 1024 ** 2));
    } finally {
      await sn.close();
    }
  });

  it('makes xfs snapshots with --dm-fs xfs, mounted with nouuid (every snapshot shares the base UUID)', async () => {
    const { sn } = await open(undefined, { dmFs: 'xfs', dmBaseSize: 512 * 1024 ** 2 });
    try {
      const m = await sn.prepare('a');
      assert.deepEqual(m[0]!.options, ['rw', 'nouuid']);
      assert.equal(m[0]!.type, 'xfs');
      await withMounted(m, (dir) => writeFile(join(dir, 'f'), 'xfs\n'));
      await sn.commit('A', 'a');
      const b = await sn.prepare('b', 'A');
      const v = await sn.view('v', 'A');
      await withMounted(b, async (bdir) => {
        await withMounted(v, async (vdir) => {
          assert.equal(await readFile(join(bdir, 'f'), 'utf8'), 'xfs\n');
          assert.equal(await readFile(join(vdir, 'f'), 'utf8'), 'xfs\n');
          assert.deepEqual(await readdir(vdir), ['f'], 'no lost+found or other mkfs leftovers');
        });
      });
    } finally {
      await sn.close();
    }
  });
});
