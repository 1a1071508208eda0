/**
 * The devmapper driver's records in the store's metadata: which thin device (pool, thin
 * id, size, filesystem) holds each snapshot id, and the base devices root snapshots are
 * made from. Activation after a reboot needs nothing else. Keys:
 *
 *   devmapper/pool                                 -> pool name this store made devices in
 *   devmapper/devices/<snapshot id>                -> DeviceRecord
 *   devmapper/pools/<pool>/seq                     -> last thin id handed out in <pool>
 *   devmapper/pools/<pool>/bases/<fs>-<sectors>    -> BaseRecord
 *
 * Thin ids come from a per-pool sequence and are never handed out twice by one store. A
 * pool may be shared (with another store, Docker, LVM): the kernel refuses create_thin
 * of an id in use (EEXIST) and the caller then takes the next one (reallocate), so an id
 * in use is never taken over. Transactions here are one read and a few writes; no
 * device work ever happens inside one.
 */
import { failedPrecondition } from '../../../errors.js';
import type { MetadataStore, Tx } from '../../../metadata/index.js';

export type FsType = 'ext4' | 'xfs';

export interface DeviceRecord {
  pool: string;
  thin: number;
  /** Length of the thin device in 512-byte sectors (its table's length). */
  sectors: number;
  fs: FsType;
  /** Process that made it; a record whose snapshot is not live and whose maker is gone is debris. */
  owner: number;
}

export interface BaseRecord {
  thin: number;
  /** Whether create_thin succeeded (only then is the thin id ours to delete). */
  created: boolean;
  /** False until the filesystem is made; a base that never got ready is remade. */
  ready: boolean;
}

const K = {
  pool: 'devmapper/pool',
  devices: 'devmapper/devices/',
  device: (id: string) => `devmapper/devices/${id}`,
  seq: (pool: string) => `devmapper/pools/${pool}/seq`,
  base: (pool: string, fs: FsType, sectors: number) => `devmapper/pools/${pool}/bases/${fs}-${sectors}`,
};

/** Thin ids are 24 bits (dm-thin's limit). */
const MAX_THIN = 2 ** 24 - 1;

async function nextThin(tx: Tx, pool: string, skip: number): Promise<number> {
  const thin = ((await tx.get<number>(K.seq(pool))) ?? 0) + skip;
  if (thin > MAX_THIN) throw failedPrecondition(`thin pool ${pool}: this store has used up the 2^24 thin device ids`);
  tx.put(K.seq(pool), thin);
  return thin;
}

export class DeviceRecords {
  /** Records never change once made (until deleted), so a process keeps what it read. */
  private readonly cache = new Map<string, DeviceRecord>();

  constructor(private readonly metadata: MetadataStore) {}

  /** The pool this store made its devices in, if any. */
  rememberedPool(): Promise<string | undefined> {
    return this.metadata.transaction((tx) => tx.get<string>(K.pool));
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const hit = this.cache.get(id);
    if (hit) return hit;
    const r = await this.metadata.transaction((tx) => tx.get<DeviceRecord>(K.device(id)));
    if (r) this.cache.set(id, r);
    return r;
  }

  async list(): Promise<Array<[string, DeviceRecord]>> {
    const all = await this.metadata.transaction((tx) => tx.list<DeviceRecord>(K.devices));
    return all.map(([k, v]) => [k.slice(K.devices.length), v]);
  }

  /**
   * Records snapshot `id` with a fresh thin id of `pool` (or a new one, replacing one the
   * pool refused). `skip` > 1 jumps ahead: ids taken by others in a shared pool tend to
   * come in runs, so the caller doubles it after each refusal.
   */
  async allocate(id: string, spec: Omit<DeviceRecord, 'thin' | 'owner'>, skip = 1): Promise<DeviceRecord> {
    const rec = await this.metadata.transaction(async (tx) => {
      const r: DeviceRecord = { ...spec, thin: await nextThin(tx, spec.pool, skip), owner: process.pid };
      if ((await tx.get(K.pool)) === undefined) tx.put(K.pool, spec.pool);
      tx.put(K.device(id), r);
      return r;
    });
    this.cache.set(id, rec);
    return rec;
  }

  async delete(id: string): Promise<void> {
    this.cache.delete(id);
    await this.metadata.transaction(async (tx) => tx.del(K.device(id)));
  }

  getBase(pool: string, fs: FsType, sectors: number): Promise<BaseRecord | undefined> {
    return this.metadata.transaction((tx) => tx.get<BaseRecord>(K.base(pool, fs, sectors)));
  }

  /** Records a new (not yet created) base device with a fresh thin id. */
  allocateBase(pool: string, fs: FsType, sectors: number, skip = 1): Promise<BaseRecord> {
    return this.metadata.transaction(async (tx) => {
      const r: BaseRecord = { thin: await nextThin(tx, pool, skip), created: false, ready: false };
      if ((await tx.get(K.pool)) === undefined) tx.put(K.pool, pool);
      tx.put(K.base(pool, fs, sectors), r);
      return r;
    });
  }

  async putBase(pool: string, fs: FsType, sectors: number, r: BaseRecord): Promise<void> {
    await this.metadata.transaction(async (tx) => tx.put(K.base(pool, fs, sectors), r));
  }
}
