// Parsing and validating an image config (the JSON a manifest's config descriptor
// names): the part tslayer relies on is rootfs.diff_ids, the uncompressed digest of
// every layer, which the layers are checked against and chain ids are built from.
import { invalidArgument } from '../errors.js';
import type { ImageConfig, Manifest } from './descriptor.js';
import { isDigest } from './digest.js';
import { parseJson } from './manifest.js';

/** Largest config we read: long histories make configs big, but never this big. */
export const MAX_CONFIG_BYTES = 16 << 20;

export function parseConfig(bytes: Buffer | string, what = 'image config'): ImageConfig {
  const doc = parseJson(bytes, what);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalidArgument(`${what}: not a JSON object`);
  const c = doc as Record<string, unknown>;
  if (typeof c.architecture !== 'string') throw invalidArgument(`${what}: missing architecture`);
  if (typeof c.os !== 'string') throw invalidArgument(`${what}: missing os`);
  const rootfs = c.rootfs as Record<string, unknown> | undefined;
  if (typeof rootfs !== 'object' || rootfs === null) throw invalidArgument(`${what}: missing rootfs`);
  if (rootfs.type !== 'layers') throw invalidArgument(`${what}: rootfs.type must be "layers", got ${JSON.stringify(rootfs.type)}`);
  if (!Array.isArray(rootfs.diff_ids)) throw invalidArgument(`${what}: rootfs.diff_ids must be an array`);
  rootfs.diff_ids.forEach((d, i) => {
    if (typeof d !== 'string' || !isDigest(d)) throw invalidArgument(`${what}: rootfs.diff_ids[${i}] is not a digest: ${JSON.stringify(d)}`);
  });
  if (c.history !== undefined && !Array.isArray(c.history)) throw invalidArgument(`${what}: history must be an array`);
  return c as unknown as ImageConfig;
}

/** A manifest and its config must list the same number of layers. */
export function checkLayersMatch(manifest: Manifest, config: ImageConfig, what: string): void {
  const n = manifest.layers.length;
  const m = config.rootfs.diff_ids.length;
  if (n !== m) throw invalidArgument(`${what}: manifest has ${n} layers but its config lists ${m} diff_ids`);
}
