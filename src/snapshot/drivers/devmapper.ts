/**
 * devmapper: block-level copy-on-write in a dm-thin pool (Docker's devicemapper graph
 * driver, containerd's devmapper snapshotter). Every snapshot is a thin device with its
 * own filesystem; what the shared layer keeps per id is a marker directory:
 *
 *   <id>/device   {"device", "pool", "thin"}: written once the thin device exists (a
 *                 crash before leaves no marker, and then the thin id is never deleted:
 *                 it may be someone else's in a shared pool)
 *
 * The thin id, size and filesystem of each snapshot are recorded in the store's metadata
 * (devmapper/ids.ts): activation needs nothing else, after a reboot too.
 *
 *   root prepare/view  a thin snapshot of the base device: a thin device with an empty
 *                      filesystem (ext4, or --dm-fs xfs) of --dm-base-size (10 GiB), made
 *                      once per pool, filesystem and size (mkfs is paid once, as Docker does)
 *   prepare/view on P  create_snap of P's thin device; when P is active (a committed
 *                      snapshot still mounted), it is suspended around the create_snap,
 *                      which flushes and freezes its filesystem so the snapshot is clean
 *   commit (seal)      the device is deactivated (deferred while mounted: the kernel
 *                      removes it when it is unmounted); a committed device is only ever
 *                      activated read-only again
 *   view               activated read-only and mounted 'ro'
 *   remove             deactivate, discard its blocks when the pool passes discards down to
 *                      its data device (then a loop file gets its space back), delete the
 *                      thin id; the shared layer refuses while children exist
 *   mounts             [{type: ext4|xfs, source: /dev/mapper/NAME, options}], the device
 *                      activated on demand; mounting is the caller's act (mountAll)
 *
 * Device names are tslayer-<tag>-<id> (base devices tslayer-<tag>-base-<thin>, the
 * loopback pool tslayer-<tag>-pool), <tag> a hash of the driver root: the driver only ever
 * removes devices under its own prefix, and two stores sharing a pool never meet.
 *
 * A layer is applied by mounting the device on a scratch directory (src/snapshot/apply.ts,
 * mode 'remove': whiteouts delete for real). Commit's differ compares a view of the
 * parent with the active tree (src/archive/diff differFor: every driver but overlay).
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { failedPrecondition, isErrno } from '../../errors.js';
import type { MetadataStore } from '../../metadata/index.js';
import { Layout, type Driver, type SnapshotRef } from '../driver.js';
import type { Mount, Usage } from '../types.js';
import { devmapperConfig, type DevmapperConfig } from './devmapper/config.js';
import { activate, activeDevices, deactivate, devicePath, isActive, mappedSectors, thinTable } from './devmapper/devices.js';
import { dmsetup, isDmErrno, poolMessage, runTool } from './devmapper/dmsetup.js';
import { DeviceRecords, type DeviceRecord, type FsType } from './devmapper/ids.js';
import { withFileLock } from './devmapper/lock.js';
import { fsMountOptions, makeFilesystem, tidyRoot } from './devmapper/mkfs.js';
import { openLoopbackPool, openPool, type Pool } from './devmapper/pool.js';

export { devmapperConfig, type DevmapperConfig } from './devmapper/config.js';

/** What the driver needs of the store. */
export interface DevmapperStore {
  metadata: MetadataStore;
  /** Scratch space for the base device's one mount. */
  tmpDir: string;
}

/** What the marker file <id>/device holds. */
interface Marker {
  device: string;
  pool: string;
  thin: number;
}

/** How often create_thin/create_snap may meet an id already in use before giving up. */
const MAX_ID_TRIES = 64;

export class DevmapperDriver implements Driver {
  readonly name = 'devmapper';
  readonly config: DevmapperConfig;
  /** Device-name prefix of this store: tslayer-<tag>-. */
  readonly prefix: string;
  private readonly records: DeviceRecords;
  private readonly lockPath: string;
  private poolPromise: Promise<Pool> | undefined;

  constructor(
    private readonly layout: Layout,
    private readonly store: DevmapperStore,
    options: Record<string, unknown> = {},
    private readonly warn: (message: string) => void = (m) => process.emitWarning(m, 'TslayerWarning'),
  ) {
    this.config = devmapperConfig(layout.root, options);
    this.prefix = `tslayer-${createHash('sha256').update(layout.root).digest('hex').slice(0, 8)}-`;
    this.records = new DeviceRecords(store.metadata);
    this.lockPath = join(layout.root, 'lock');
  }

  /** The dm name of snapshot `id`'s device. */
  deviceName(id: string): string {
    return `${this.prefix}${id}`;
  }

  private get loopPoolName(): string {
    return `${this.prefix}pool`;
  }

  /** The pool, resolved on first use (a configured one, the one used before, or the loopback pool). */
  pool(): Promise<Pool> {
    this.poolPromise ??= (async () => {
      const name = this.config.pool ?? (await this.records.rememberedPool());
      if (name !== undefined && name !== this.loopPoolName) return openPool(name);
      const dir = join(this.layout.root, 'pool');
      this.warn(
        `devmapper: using a loopback thin pool on sparse files in ${dir}: for testing only (slow, not crash-safe); ` +
          'give a real thin pool with --dm-pool NAME',
      );
      return withFileLock(this.lockPath, () => openLoopbackPool(dir, this.loopPoolName));
    })().catch((e) => {
      this.poolPromise = undefined; // retried by the next call
      throw e;
    });
    return this.poolPromise;
  }

  private async record(id: string): Promise<DeviceRecord> {
    const r = await this.records.get(id);
    if (!r) throw failedPrecondition(`snapshot id ${id} of driver devmapper has no thin device record (metadata damaged?)`);
    return r;
  }

  /** The pool `r` lives in, which must be the one in use. */
  private async poolOf(id: string, r: DeviceRecord): Promise<Pool> {
    const pool = await this.pool();
    if (r.pool !== pool.name) {
      throw failedPrecondition(
        `snapshot id ${id} has its thin device in pool ${r.pool}, but the driver uses pool ${pool.name}: pass --dm-pool ${r.pool}`,
      );
    }
    return pool;
  }

  async create(dir: string, s: SnapshotRef): Promise<void> {
    await mkdir(dir, { mode: 0o700 });
    const pool = await this.pool();
    let origin: { thin: number; device?: string };
    let spec: Omit<DeviceRecord, 'thin' | 'owner'>;
    if (s.parentIds.length > 0) {
      const parentId = s.parentIds[0]!;
      const p = await this.record(parentId);
      await this.poolOf(parentId, p);
      origin = { thin: p.thin, device: this.deviceName(parentId) };
      spec = { pool: pool.name, sectors: p.sectors, fs: p.fs };
    } else {
      const { fs, sectors } = this.config;
      origin = { thin: await this.baseDevice(pool, fs, sectors) };
      spec = { pool: pool.name, sectors, fs };
    }
    let rec = await this.records.allocate(s.id, spec);
    for (let tries = 1; ; tries++) {
      try {
        await this.snapshotThin(pool, rec.thin, origin);
        break;
      } catch (e) {
        // The id is in use in the pool (another store, another tool): take a later one.
        if (!isDmErrno(e, 'EEXIST') || tries >= MAX_ID_TRIES) throw e;
        rec = await this.records.allocate(s.id, spec, 2 ** Math.min(tries, 12));
      }
    }
    const marker: Marker = { device: devicePath(this.deviceName(s.id)), pool: pool.name, thin: rec.thin };
    try {
      await writeFile(join(dir, 'device'), `${JSON.stringify(marker)}\n`);
    } catch (e) {
      await poolMessage(pool.name, `delete ${rec.thin}`).catch(() => undefined);
      throw e;
    }
  }

  /** create_snap `thin` of `origin`, suspending the origin around it when it is active. */
  private async snapshotThin(pool: Pool, thin: number, origin: { thin: number; device?: string }): Promise<void> {
    const message = `create_snap ${thin} ${origin.thin}`;
    const device = origin.device;
    if (device === undefined || !(await isActive(device))) {
      await poolMessage(pool.name, message);
      return;
    }
    // The kernel asks for the origin to be suspended: no write in flight, and (dm's
    // suspend freezes the filesystem on it) a clean filesystem in the snapshot.
    await withFileLock(this.lockPath, async () => {
      if (!(await isActive(device))) return void (await poolMessage(pool.name, message));
      await dmsetup(['suspend', device], device);
      try {
        await poolMessage(pool.name, message);
      } finally {
        await dmsetup(['resume', device], device);
      }
    });
  }

  /** The thin id of the ready base device for (fs, sectors) in `pool`, made on first use. */
  private async baseDevice(pool: Pool, fs: FsType, sectors: number): Promise<number> {
    const known = await this.records.getBase(pool.name, fs, sectors);
    if (known?.ready) return known.thin;
    return withFileLock(this.lockPath, async () => {
      let base = await this.records.getBase(pool.name, fs, sectors);
      if (base?.ready) return base.thin;
      if (base?.created) {
        // Left half-made by a process that died (we hold the lock: nobody is making it now).
        const stale = `${this.prefix}base-${base.thin}`;
        await deactivate(stale);
        await poolMessage(pool.name, `delete ${base.thin}`).catch((e) => {
          if (!isDmErrno(e, 'ENODATA')) throw e;
        });
      }
      base = await this.records.allocateBase(pool.name, fs, sectors);
      for (let tries = 1; ; tries++) {
        try {
          await poolMessage(pool.name, `create_thin ${base.thin}`);
          break;
        } catch (e) {
          if (!isDmErrno(e, 'EEXIST') || tries >= MAX_ID_TRIES) throw e;
          base = await this.records.allocateBase(pool.name, fs, sectors, 2 ** Math.min(tries, 12));
        }
      }
      base = { ...base, created: true };
      await this.records.putBase(pool.name, fs, sectors, base);
      const name = `${this.prefix}base-${base.thin}`;
      await activate(name, thinTable(sectors, pool.devno, base.thin), false);
      try {
        await makeFilesystem(fs, devicePath(name));
        await tidyRoot(fs, devicePath(name), this.store.tmpDir);
      } finally {
        await deactivate(name);
      }
      base = { ...base, ready: true };
      await this.records.putBase(pool.name, fs, sectors, base);
      return base.thin;
    });
  }

  async mounts(s: SnapshotRef): Promise<Mount[]> {
    const rec = await this.record(s.id);
    const pool = await this.poolOf(s.id, rec);
    const name = this.deviceName(s.id);
    const writable = s.kind === 'active';
    await activate(name, thinTable(rec.sectors, pool.devno, rec.thin), !writable);
    return [{ type: rec.fs, source: devicePath(name), options: [writable ? 'rw' : 'ro', ...fsMountOptions(rec.fs)] }];
  }

  /** Committed: the device goes away (when it is unmounted, if it still is). */
  async seal(s: SnapshotRef): Promise<void> {
    await deactivate(this.deviceName(s.id), { deferred: true });
  }

  /**
   * Bytes: the blocks mapped in this device and not in its parent (the base device for a
   * root snapshot), from `dmsetup status`, as containerd reports them. Inodes: inodes in
   * use by its filesystem less the parent's, from the superblock (which lags a mounted
   * filesystem's own count until it is synced).
   */
  async usage(s: SnapshotRef): Promise<Usage> {
    const rec = await this.record(s.id);
    const pool = await this.poolOf(s.id, rec);
    const own = await this.measure(this.deviceName(s.id), rec.sectors, pool, rec.thin, rec.fs);
    let parent = { mapped: 0, inodes: 0 };
    if (s.parentIds.length > 0) {
      const pid = s.parentIds[0]!;
      const p = await this.record(pid);
      parent = await this.measure(this.deviceName(pid), p.sectors, pool, p.thin, p.fs);
    } else {
      const base = await this.records.getBase(pool.name, rec.fs, rec.sectors);
      if (base?.ready) parent = await this.measure(`${this.prefix}base-${base.thin}`, rec.sectors, pool, base.thin, rec.fs);
    }
    return { size: Math.max(0, own.mapped - parent.mapped) * 512, inodes: Math.max(0, own.inodes - parent.inodes) };
  }

  /** Mapped sectors and used inodes of a thin device, activated read-only for the look if it is not active. */
  private async measure(name: string, sectors: number, pool: Pool, thin: number, fs: FsType): Promise<{ mapped: number; inodes: number }> {
    const made = await activate(name, thinTable(sectors, pool.devno, thin), true);
    try {
      return { mapped: await mappedSectors(name), inodes: await usedInodes(fs, devicePath(name)) };
    } finally {
      if (made) await deactivate(name);
    }
  }

  async destroy(dir: string): Promise<void> {
    const c = Layout.classify(basename(dir));
    const id = c === undefined ? undefined : 'id' in c ? c.id : c.building;
    if (id !== undefined) {
      const rec = await this.records.get(id);
      if (rec) {
        const marker = await readMarker(dir);
        // Only a thin id the marker confirms was made for this snapshot is deleted.
        await this.free(id, rec, marker?.thin === rec.thin && marker.pool === rec.pool);
        await this.records.delete(id);
      }
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** Deactivates snapshot `id`'s device and, if `created`, discards its blocks and deletes its thin id. */
  private async free(id: string, rec: DeviceRecord, created: boolean): Promise<void> {
    const name = this.deviceName(id);
    await deactivate(name); // refused while it is mounted: nothing below may touch a device in use
    if (!created) return;
    const pool = await this.poolOf(id, rec);
    if (pool.discardPassdown) {
      // Give the blocks back to the data device (a loop file's space, an SSD's) first:
      // deleting the thin id frees them in the pool only. -f: the device holds a
      // filesystem, which is the point; it was just shown to be unused.
      await activate(name, thinTable(rec.sectors, pool.devno, rec.thin), false);
      try {
        await runTool('blkdiscard', ['-f', devicePath(name)], { device: devicePath(name) });
      } finally {
        await deactivate(name);
      }
    }
    try {
      await poolMessage(pool.name, `delete ${rec.thin}`);
    } catch (e) {
      if (!isDmErrno(e, 'ENODATA')) throw e; // already deleted
    }
  }

  /**
   * Debris the shared layer cannot see: device records of snapshots that were never
   * recorded (their maker died before) and have no directory left, and active devices
   * under this store's prefix that belong to no live snapshot.
   */
  async cleanup(live: ReadonlySet<string>): Promise<void> {
    const records = await this.records.list();
    const owners = new Map(records.map(([id, r]) => [id, r.owner]));
    let dirs: string[] = [];
    try {
      dirs = readdirSync(this.layout.root);
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) throw e;
    }
    // <id> or new-<pid>-<id>: the shared layer's cleanup (which ran just before) deals with those.
    const hasDir = (id: string) => dirs.some((d) => d === id || (d.endsWith(`-${id}`) && Layout.classify(d) !== undefined));
    for (const [id, r] of records) {
      if (live.has(id) || processAlive(r.owner) || hasDir(id)) continue;
      await this.records.delete(id); // no marker survives: the thin id is not deleted (see create)
    }
    for (const name of (await activeDevices()).keys()) {
      if (!name.startsWith(this.prefix)) continue;
      const id = name.slice(this.prefix.length);
      if (!/^[0-9]+$/.test(id) || live.has(id) || hasDir(id)) continue;
      const owner = owners.get(id);
      if (owner !== undefined && processAlive(owner)) continue; // being made
      try {
        await deactivate(name);
      } catch (e) {
        this.warn(`could not deactivate ${devicePath(name)} of removed snapshot ${id}: ${(e as Error).message}`);
      }
    }
  }
}

async function readMarker(dir: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'device'), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/** Inodes in use on the filesystem of `device`, from its superblock. */
async function usedInodes(fs: FsType, device: string): Promise<number> {
  if (fs === 'ext4') {
    const out = await runTool('dumpe2fs', ['-h', device], { device });
    const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(out)?.[1] ?? NaN);
    const used = field('Inode count') - field('Free inodes');
    return Number.isFinite(used) ? used : 0;
  }
  const out = await runTool('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p icount ifree', device], { device });
  const field = (k: string) => Number(new RegExp(`^${k} = (\\d+)`, 'm').exec(out)?.[1] ?? NaN);
  const used = field('icount') - field('ifree');
  return Number.isFinite(used) ? used : 0;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return isErrno(e, 'EPERM');
  }
}
