// Recording an image under a name: the last step of pull and import, done only after
// every layer is unpacked, so a recorded image is always complete.
import { getImage, putImage, type ImageRecord } from '../metadata/index.js';
import type { Store } from '../store.js';
import type { Descriptor } from './descriptor.js';

/** Keeps only what identifies a blob: the registry's or archive's annotations are not ours. */
export function plainDescriptor(d: Descriptor): Descriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

/**
 * Points `name` at `target` (a manifest, or an index with `manifest` the platform chosen
 * from it). An existing record keeps its createdAt when the target is unchanged.
 */
export async function recordImage(store: Store, name: string, target: Descriptor, manifest?: Descriptor): Promise<ImageRecord> {
  const now = new Date().toISOString();
  return store.metadata.transaction(async (tx) => {
    const old = await getImage(tx, name);
    const same = old?.target.digest === target.digest && old?.manifest?.digest === manifest?.digest;
    const record: ImageRecord = {
      name,
      target: plainDescriptor(target),
      ...(manifest && manifest.digest !== target.digest && { manifest: plainDescriptor(manifest) }),
      createdAt: same && old ? old.createdAt : now,
      updatedAt: now,
      ...(old?.labels && { labels: old.labels }),
    };
    putImage(tx, record);
    return record;
  });
}
