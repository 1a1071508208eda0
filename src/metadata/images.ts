// Image records: a name (full reference) pointing at a manifest or index descriptor.
import type { Descriptor } from '../image/descriptor.js';
import type { Tx } from './db.js';
import { keys } from './schema.js';

export interface ImageRecord {
  name: string;
  target: Descriptor;
  /** The platform-specific manifest chosen at pull time, when `target` is an index. */
  manifest?: Descriptor;
  createdAt: string;
  updatedAt: string;
  labels?: Record<string, string>;
}

export async function getImage(tx: Tx, name: string): Promise<ImageRecord | undefined> {
  return tx.get<ImageRecord>(keys.image(name));
}

export function putImage(tx: Tx, record: ImageRecord): void {
  tx.put(keys.image(record.name), record);
}

export function deleteImage(tx: Tx, name: string): void {
  tx.del(keys.image(name));
}

export async function listImages(tx: Tx): Promise<ImageRecord[]> {
  return (await tx.list<ImageRecord>(keys.imagePrefix)).map(([, v]) => v);
}
