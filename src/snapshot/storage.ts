/**
 * The bookkeeping half of every snapshotter (containerd's snapshots/storage): which keys
 * exist in a namespace, their kind, parent, labels, times and the driver-wide id that
 * names their data. Drivers never see keys; they turn ids into directories or devices.
 *
 * Every function here works inside a caller's metadata transaction (src/metadata): the
 * caller keeps transactions short and does file work between them.
 */
import { keys, type Tx } from '../metadata/index.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors.js';
import type { Info, Kind, Labels, Usage } from './types.js';

/** What is stored under snapshots/<driver>/<ns>/keys/<key>. */
export interface SnapshotRecord {
  id: string;
  kind: Kind;
  parent?: string;
  labels: Labels;
  created: string; // ISO 8601
  updated: string;
  /**
   * Ids of the parent chain, nearest first. A committed parent and its ancestors can
   * never change or go away while this snapshot exists, so the chain is stored once and
   * a mount of a 500-layer stack costs one read, not 500.
   */
  parentIds?: string[];
  /** Cached usage of a committed snapshot (its data never changes). */
  usage?: Usage;
}

/** A snapshot as a driver needs it: its id and the ids of its parent chain, nearest first. */
export interface SnapshotRef {
  id: string;
  kind: Kind;
  parentIds: string[];
}

const NAMESPACE_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,75}[A-Za-z0-9])?$/;

export function checkNamespace(ns: string): string {
  if (!NAMESPACE_RE.test(ns)) {
    throw invalidArgument(`namespace ${JSON.stringify(ns)}: use letters, digits, '.', '_' and '-' (at most 76)`);
  }
  return ns;
}

export function checkKey(key: string, what = 'snapshot key'): string {
  if (typeof key !== 'string' || key === '') throw invalidArgument(`${what} must not be empty`);
  if (key.includes('\0')) throw invalidArgument(`${what} ${JSON.stringify(key)} contains a NUL byte`);
  return key;
}

export function checkLabels(labels: unknown): Labels {
  if (labels === undefined || labels === null) return {};
  if (typeof labels !== 'object') throw invalidArgument('labels must be an object of strings');
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels as Record<string, unknown>)) {
    if (typeof v !== 'string') throw invalidArgument(`label ${JSON.stringify(k)}: value must be a string`);
    if (v !== '') out[k] = v; // an empty value means "no such label", as in containerd
  }
  return out;
}

export function toInfo(name: string, r: SnapshotRecord): Info {
  const info: Info = {
    kind: r.kind,
    name,
    labels: { ...r.labels },
    created: new Date(r.created),
    updated: new Date(r.updated),
  };
  if (r.parent !== undefined) info.parent = r.parent;
  return info;
}

export class Storage {
  constructor(
    readonly driver: string,
    readonly namespace: string,
  ) {}

  private k(key: string): string {
    return keys.snapshot(this.driver, this.namespace, key);
  }

  async get(tx: Tx, key: string): Promise<SnapshotRecord | undefined> {
    return tx.get<SnapshotRecord>(this.k(key));
  }

  async mustGet(tx: Tx, key: string): Promise<SnapshotRecord> {
    const r = await this.get(tx, key);
    if (!r) throw notFound(`snapshot ${JSON.stringify(key)} not found (driver ${this.driver}, namespace ${this.namespace})`);
    return r;
  }

  /** Ids of `parent` and its ancestors, nearest first. */
  async chain(tx: Tx, parent: string | undefined): Promise<string[]> {
    const ids: string[] = [];
    let name = parent;
    while (name !== undefined) {
      const r = await this.get(tx, name);
      if (!r) throw notFound(`parent snapshot ${JSON.stringify(name)} not found`);
      ids.push(r.id);
      if (r.parentIds) return ids.concat(r.parentIds);
      name = r.parent;
    }
    return ids;
  }

  /** The parent chain of a record, nearest first. */
  async parentIdsOf(tx: Tx, r: SnapshotRecord): Promise<string[]> {
    return r.parentIds ?? this.chain(tx, r.parent);
  }

  /** The parent a new snapshot may be made on: it must exist and be committed. */
  async checkParent(tx: Tx, parent: string | undefined): Promise<string[]> {
    if (parent === undefined) return [];
    const r = await this.get(tx, parent);
    if (!r) throw notFound(`parent snapshot ${JSON.stringify(parent)} not found`);
    if (r.kind !== 'committed') {
      throw invalidArgument(`parent snapshot ${JSON.stringify(parent)} is ${r.kind}, not committed`);
    }
    return this.chain(tx, parent);
  }

  async checkFree(tx: Tx, key: string): Promise<void> {
    if (await this.get(tx, key)) throw alreadyExists(`snapshot ${JSON.stringify(key)} already exists`);
  }

  /** Hands out the next id; ids are never reused, so a stale directory can never be mistaken for a live one. */
  async nextId(tx: Tx): Promise<string> {
    const seq = ((await tx.get<number>(keys.snapshotSeq(this.driver))) ?? 0) + 1;
    tx.put(keys.snapshotSeq(this.driver), seq);
    return String(seq);
  }

  /** Writes a new active or view snapshot (the caller has checked key and parent). */
  async create(
    tx: Tx,
    key: string,
    id: string,
    kind: Kind,
    parent: string | undefined,
    parentIds: string[],
    labels: Labels,
  ): Promise<Info> {
    const now = new Date().toISOString();
    const rec: SnapshotRecord = { id, kind, labels, created: now, updated: now, parentIds };
    if (parent !== undefined) {
      rec.parent = parent;
      const p = await this.mustGet(tx, parent);
      tx.put(keys.snapshotChild(this.driver, this.namespace, p.id, id), key);
    }
    tx.put(this.k(key), rec);
    tx.put(keys.snapshotId(this.driver, this.namespace, id), key);
    return toInfo(key, rec);
  }

  /** Active `key` becomes committed `name`, keeping its id (its data does not move). */
  async commit(tx: Tx, name: string, key: string, labels: Labels): Promise<SnapshotRef> {
    await this.checkFree(tx, name);
    const r = await this.mustGet(tx, key);
    if (r.kind !== 'active') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is ${r.kind}, not active`);
    const now = new Date().toISOString();
    const parentIds = await this.parentIdsOf(tx, r);
    const rec: SnapshotRecord = { id: r.id, kind: 'committed', labels, created: now, updated: now, parentIds };
    if (r.parent !== undefined) {
      rec.parent = r.parent;
      const p = await this.mustGet(tx, r.parent);
      tx.put(keys.snapshotChild(this.driver, this.namespace, p.id, r.id), name);
    }
    tx.del(this.k(key));
    tx.put(this.k(name), rec);
    tx.put(keys.snapshotId(this.driver, this.namespace, r.id), name);
    return { id: r.id, kind: 'committed', parentIds };
  }

  /** Caches the usage of a committed snapshot (if it is still the same one). */
  async putUsage(tx: Tx, name: string, id: string, usage: Usage): Promise<void> {
    const r = await this.get(tx, name);
    if (r && r.id === id && r.kind === 'committed') tx.put(this.k(name), { ...r, usage });
  }

  /** Deletes the record of `key`; refuses while it has children. Returns what was removed. */
  async remove(tx: Tx, key: string): Promise<SnapshotRecord> {
    const r = await this.mustGet(tx, key);
    const children = await tx.list<string>(keys.snapshotChildPrefix(this.driver, this.namespace, r.id));
    if (children.length > 0) {
      const names = children.map(([, v]) => JSON.stringify(v));
      throw failedPrecondition(
        `cannot remove snapshot ${JSON.stringify(key)}: it is the parent of ${names.slice(0, 3).join(', ')}` +
          (names.length > 3 ? ` and ${names.length - 3} more` : ''),
      );
    }
    if (r.parent !== undefined) {
      const p = await this.get(tx, r.parent);
      if (p) tx.del(keys.snapshotChild(this.driver, this.namespace, p.id, r.id));
    }
    tx.del(this.k(key));
    tx.del(keys.snapshotId(this.driver, this.namespace, r.id));
    return r;
  }

  async update(tx: Tx, info: Pick<Info, 'name'> & Partial<Info>, fieldpaths: readonly string[]): Promise<Info> {
    const r = await this.mustGet(tx, info.name);
    const given = info.labels ?? {};
    let labels: Labels;
    if (fieldpaths.length === 0) labels = checkLabels(given);
    else {
      labels = { ...r.labels };
      for (const path of fieldpaths) {
        if (path === 'labels') labels = checkLabels(given);
        else if (path.startsWith('labels.')) {
          const k = path.slice('labels.'.length);
          const v = given[k];
          if (v === undefined || v === '') delete labels[k];
          else labels[k] = checkLabels({ [k]: v })[k];
        } else {
          throw invalidArgument(`cannot update field ${JSON.stringify(path)} of snapshot ${JSON.stringify(info.name)}`);
        }
      }
    }
    const rec: SnapshotRecord = { ...r, labels, updated: new Date().toISOString() };
    tx.put(this.k(info.name), rec);
    return toInfo(info.name, rec);
  }

  async list(tx: Tx): Promise<Array<[string, SnapshotRecord]>> {
    const prefix = keys.snapshotPrefix(this.driver, this.namespace);
    return (await tx.list<SnapshotRecord>(prefix)).map(([k, v]) => [k.slice(prefix.length), v]);
  }

  /** Every id in use by this driver, in every namespace. */
  static async liveIds(tx: Tx, driver: string): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const [k] of await tx.list(keys.snapshotDriverPrefix(driver))) {
      const m = /^snapshots\/[^/]+\/[^/]+\/ids\/([^/]+)$/.exec(k);
      if (m) ids.add(m[1]);
    }
    return ids;
  }
}
