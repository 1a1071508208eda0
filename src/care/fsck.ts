/**
 * fsck: checks a store root against itself.
 *
 *   blobs       every blob in content/ re-hashed against its digest (streamed);
 *               --repair deletes a corrupt blob (the next pull fetches it again)
 *   images      every image record's target, chosen manifest, config and layers are
 *               present and the documents parse (nothing to repair: pull again)
 *   snapshots   every snapshot id recorded in the metadata has its storage under
 *               snapshots/<driver>/<id> (debris the other way round is removed by the
 *               snapshotter's own cleanup on open, so it is not a problem here)
 *
 * Read-only unless `repair`. Works one blob at a time per core, never buffering a layer.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobInfo } from '../content/index.js';
import { TslayerError, isErrno } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import { readManifestOrIndex } from '../image/documents.js';
import { isIndexType } from '../image/mediatype.js';
import { listImages, type ImageRecord } from '../metadata/index.js';
import { Storage } from '../snapshot/storage.js';
import type { Store } from '../store.js';

export type FsckProblemKind = 'corrupt-blob' | 'missing-blob' | 'bad-document' | 'missing-snapshot-storage';

export interface FsckProblem {
  kind: FsckProblemKind;
  /** The digest, image ref or snapshot id the problem is about. */
  subject: string;
  message: string;
  /** True when --repair fixed it. */
  repaired: boolean;
}

export interface FsckReport {
  root: string;
  blobs: number;
  bytes: number;
  images: number;
  snapshots: number;
  problems: FsckProblem[];
}

export interface FsckOptions {
  repair?: boolean;
  /** How many blobs are hashed at once (default: 2, one per core here). */
  concurrency?: number;
  /** Called as each blob starts verifying; the result is told when it ends (for progress). */
  onBlob?: (blob: BlobInfo) => { done(): void; fail(note: string): void };
  signal?: AbortSignal;
}

export async function fsck(store: Store, opts: FsckOptions = {}): Promise<FsckReport> {
  const report: FsckReport = { root: store.root, blobs: 0, bytes: 0, images: 0, snapshots: 0, problems: [] };
  await checkBlobs(store, opts, report);
  await checkImages(store, report);
  await checkSnapshots(store, report);
  return report;
}

async function checkBlobs(store: Store, opts: FsckOptions, report: FsckReport): Promise<void> {
  const blobs: BlobInfo[] = [];
  for await (const b of store.content.walk()) blobs.push(b);
  let next = 0;
  const worker = async () => {
    while (next < blobs.length) {
      opts.signal?.throwIfAborted();
      const blob = blobs[next++]!;
      const shown = opts.onBlob?.(blob);
      try {
        await store.content.verify(blob.digest);
        shown?.done();
      } catch (e) {
        if (e instanceof TslayerError && e.code === 'NOT_FOUND') {
          shown?.done(); // deleted meanwhile (gc, another fsck --repair): not corruption
          continue;
        }
        if (!(e instanceof TslayerError)) throw e;
        shown?.fail('corrupt');
        let repaired = false;
        if (opts.repair) {
          await store.content.delete(blob.digest).catch((d) => {
            if (!(d instanceof TslayerError && d.code === 'NOT_FOUND')) throw d;
          });
          repaired = true;
        }
        report.problems.push({ kind: 'corrupt-blob', subject: blob.digest, message: e.message, repaired });
      }
      report.blobs++;
      report.bytes += blob.size;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 2) }, worker));
}

async function checkImages(store: Store, report: FsckReport): Promise<void> {
  const records = await store.metadata.read((tx) => listImages(tx));
  for (const r of records) {
    report.images++;
    await checkImage(store, r, report);
  }
}

async function checkImage(store: Store, r: ImageRecord, report: FsckReport): Promise<void> {
  const problem = (kind: FsckProblemKind, message: string) =>
    report.problems.push({ kind, subject: r.name, message: `image ${r.name}: ${message}`, repaired: false });
  const present = async (d: Descriptor, what: string): Promise<boolean> => {
    if (await store.content.has(d.digest)) return true;
    problem('missing-blob', `${what} ${d.digest} is not in the content store`);
    return false;
  };
  const read = async (d: Descriptor) => {
    try {
      return await readManifestOrIndex(store.content, d);
    } catch (e) {
      if (!(e instanceof TslayerError)) throw e;
      problem('bad-document', e.message);
      return undefined;
    }
  };

  if (!(await present(r.target, isIndexType(r.target.mediaType) ? 'index' : 'manifest'))) return;
  let doc = await read(r.target);
  if (doc?.kind === 'index') {
    // Only the platform manifest chosen at pull time is stored; the others never were.
    if (!r.manifest) return;
    if (!(await present(r.manifest, 'manifest'))) return;
    doc = await read(r.manifest);
  }
  if (doc?.kind !== 'manifest') return;
  await present(doc.manifest.config, 'config');
  for (const layer of doc.manifest.layers) await present(layer, 'layer');
}

async function checkSnapshots(store: Store, report: FsckReport): Promise<void> {
  const base = join(store.root, 'snapshots');
  const drivers = await readdir(base).catch((e) => (isErrno(e, 'ENOENT') ? [] : Promise.reject(e)));
  for (const driver of drivers.sort()) {
    const live = await store.metadata.read((tx) => Storage.liveIds(tx, driver));
    const dir = store.snapshotsDir(driver);
    const have = new Set(await readdir(dir));
    for (const id of [...live].sort((a, b) => Number(a) - Number(b))) {
      report.snapshots++;
      if (!have.has(id)) {
        report.problems.push({
          kind: 'missing-snapshot-storage',
          subject: `${driver}/${id}`,
          message: `snapshot ${driver}/${id} is recorded but ${join(dir, id)} is missing`,
          repaired: false,
        });
      }
    }
  }
}
