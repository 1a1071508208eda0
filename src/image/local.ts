// Images already in the store: from a reference as the user typed it to the manifest,
// config and chain ids that `mount`, `export`, `commit` and `gc` work from.
import { notFound } from '../errors.js';
import { getImage, type ImageRecord } from '../metadata/index.js';
import { selectPlatform } from '../registry/platform.js';
import type { Store } from '../store.js';
import { chainIds as chainIdsOf } from './chainid.js';
import { checkLayersMatch } from './config.js';
import type { Descriptor, ImageConfig, Manifest } from './descriptor.js';
import type { Digest } from './digest.js';
import { readConfig, readIndex, readManifest } from './documents.js';
import { isIndexType } from './mediatype.js';
import { familiarReference, formatReference, parseReference } from './reference.js';

export interface LocalImage {
  /** Full normalised name the record is stored under (`docker.io/library/busybox:latest`). */
  name: string;
  record: ImageRecord;
  /** The platform manifest this image unpacks (record.manifest, or record.target itself). */
  manifestDescriptor: Descriptor;
  manifest: Manifest;
  config: ImageConfig;
  /** chainIds[i] names the committed snapshot holding layers 0..i. */
  chainIds: Digest[];
}

/** The full name an image reference is stored under. */
export function imageName(ref: string): string {
  return formatReference(parseReference(ref));
}

/**
 * Looks `ref` up in the store and reads its manifest and config. NOT_FOUND (with a hint
 * to pull) when there is no such image; EINTEGRITY/NOT_FOUND naming the blob when the
 * store has lost or damaged one of its documents.
 */
export async function resolveLocalImage(store: Store, ref: string): Promise<LocalImage> {
  const parsed = parseReference(ref);
  const name = formatReference(parsed);
  const record = await store.metadata.read((tx) => getImage(tx, name));
  if (!record) {
    throw notFound(`image ${familiarReference(parsed)} not found in ${store.root}: run \`tslayer pull ${ref}\` first`);
  }
  return loadImage(store, record);
}

/** Reads the documents of an image record (also for records found by listing). */
export async function loadImage(store: Store, record: ImageRecord): Promise<LocalImage> {
  const manifestDescriptor = await platformManifest(store, record);
  const manifest = await readManifest(store.content, manifestDescriptor);
  const config = await readConfig(store.content, manifest.config);
  checkLayersMatch(manifest, config, `image ${record.name}`);
  return {
    name: record.name,
    record,
    manifestDescriptor,
    manifest,
    config,
    chainIds: chainIdsOf(config.rootfs.diff_ids),
  };
}

async function platformManifest(store: Store, record: ImageRecord): Promise<Descriptor> {
  if (record.manifest) return record.manifest;
  if (!isIndexType(record.target.mediaType)) return record.target;
  // A record made without a platform choice: take the host's, as pull would have.
  return selectPlatform(await readIndex(store.content, record.target));
}
