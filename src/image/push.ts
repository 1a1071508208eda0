/**
 * Pushing a stored image to a registry:
 *   blobs (config and layers, a few at once) → manifest PUT by tag (last: a tag only ever
 *   names a manifest whose blobs are all there).
 *
 * For every blob the registry is asked first (HEAD) and nothing is sent when it has it.
 * Otherwise, when another repository of the same registry is known to hold it (a local
 * image of that repository lists it: the image it was pulled as, the base a commit was
 * made on), a cross-repository mount is tried, which costs no upload; a registry that
 * refuses the mount opens an ordinary upload instead. Uploads are one PUT by default, or
 * PATCH chunks of `chunkSize` bytes (resumed after a broken chunk).
 *
 * What is pushed is the platform manifest the image unpacks (for an image pulled from a
 * multi-platform index only that platform's blobs are in the store), byte for byte as
 * stored, so its digest is the local one. Non-distributable layers (foreign URLs) are
 * not uploaded, as docker does.
 */
import type { Readable } from 'node:stream';
import { TslayerError } from '../errors.js';
import { listImages } from '../metadata/index.js';
import { RegistryClient, type RegistryOptions } from '../registry/client.js';
import type { Store } from '../store.js';
import type { Descriptor } from './descriptor.js';
import type { Digest } from './digest.js';
import { readBlobBytes } from './documents.js';
import { MAX_MANIFEST_BYTES } from './manifest.js';
import { loadImage, resolveLocalImage } from './local.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import type { ProgressFactory } from './unpack.js';

export interface PushOptions {
  store: Store;
  /** Where to push (default: the image's own name). */
  dest?: string | Reference;
  /** Registry settings (plain HTTP, TLS, credentials); ignored when `client` is given. */
  registry?: RegistryOptions;
  client?: RegistryClient;
  /** Upload each blob in PATCH chunks of this many bytes (default: one monolithic PUT). */
  chunkSize?: number;
  /** Blobs uploaded at once (default 3). */
  concurrency?: number;
  /** Try cross-repository mounts (default true). */
  mount?: boolean;
  progress?: ProgressFactory;
  signal?: AbortSignal;
}

export interface PushResult {
  /** Full name pushed to. */
  name: string;
  /** Digest of the pushed manifest. */
  digest: Digest;
  /** Blobs the image has (config + layers). */
  blobs: number;
  /** Blobs the registry already had. */
  existing: number;
  /** Blobs made available by a cross-repository mount. */
  mounted: number;
  /** Blobs uploaded, and their bytes. */
  uploaded: number;
  bytes: number;
  seconds: number;
}

const DEFAULT_CONCURRENCY = 3;

export async function pushImage(ref: string | Reference, opts: PushOptions): Promise<PushResult> {
  const started = process.hrtime.bigint();
  const { store } = opts;
  const source = typeof ref === 'string' ? parseReference(ref) : ref;
  const local = await resolveLocalImage(store, formatReference(source));
  const dest = opts.dest === undefined ? source : typeof opts.dest === 'string' ? parseReference(opts.dest) : opts.dest;
  const name = formatReference(dest);
  const client = opts.client ?? new RegistryClient(opts.registry);
  const progress: ProgressFactory = opts.progress ?? (() => ({ advance() {}, done() {}, fail() {} }));
  const result: PushResult = { name, digest: local.manifestDescriptor.digest, blobs: 0, existing: 0, mounted: 0, uploaded: 0, bytes: 0, seconds: 0 };

  try {
    const blobs = [local.manifest.config, ...local.manifest.layers].filter((d) => !(d.urls && d.urls.length > 0));
    result.blobs = blobs.length;
    for (const d of blobs) {
      if (!(await store.content.has(d.digest))) {
        throw new TslayerError('NOT_FOUND', `cannot push ${local.name}: blob ${d.digest} is not in the store (run \`tslayer fsck\`)`);
      }
    }
    const mountSources = opts.mount === false ? new Map<Digest, string>() : await knownRepositories(store, dest);

    const queue = [...blobs];
    const worker = async (): Promise<void> => {
      for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
        opts.signal?.throwIfAborted();
        await pushOne(client, store, dest, d, mountSources.get(d.digest), opts, result, progress);
      }
    };
    const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
    const outcomes = await Promise.allSettled(Array.from({ length: Math.min(concurrency, blobs.length) }, worker));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;

    const body = await readBlobBytes(store.content, local.manifestDescriptor, MAX_MANIFEST_BYTES, 'manifest');
    result.digest = await client.putManifest(dest, local.manifestDescriptor.mediaType, body);
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return result;
  } finally {
    if (!opts.client) client.close();
  }
}

async function pushOne(
  client: RegistryClient,
  store: Store,
  dest: Reference,
  d: Descriptor,
  mountFrom: string | undefined,
  opts: PushOptions,
  result: PushResult,
  progress: ProgressFactory,
): Promise<void> {
  const bar = progress(d.digest.slice(7, 19), d.size);
  // Tells apart "already there", "mounted" and "uploaded" for the result: pushBlob does the
  // HEAD itself, but says nothing about which of the three happened.
  if (await client.hasBlob(dest, d.digest)) {
    result.existing++;
    bar.done('exists');
    return;
  }
  let sent = 0;
  const open = (offset: number): Readable => {
    const s = store.content.createReadStream(d.digest, { start: offset });
    s.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      bar.advance(chunk.length);
    });
    return s;
  };
  try {
    await client.pushBlob(dest, d, open, {
      ...(mountFrom !== undefined && { mountFrom }),
      ...(opts.chunkSize !== undefined && { chunkSize: opts.chunkSize }),
    });
  } catch (e) {
    bar.fail();
    throw e;
  }
  if (sent === 0 && d.size > 0) {
    result.mounted++;
    bar.done(`mounted from ${mountFrom}`);
  } else {
    result.uploaded++;
    result.bytes += d.size;
    bar.done();
  }
}

/**
 * For each blob, a repository of the destination's registry that holds it as far as this
 * store knows: the repositories of local images with that registry that list the blob.
 */
async function knownRepositories(store: Store, dest: Reference): Promise<Map<Digest, string>> {
  const out = new Map<Digest, string>();
  const records = await store.metadata.read((tx) => listImages(tx));
  for (const record of records) {
    let r: Reference;
    try {
      r = parseReference(record.name);
    } catch {
      continue;
    }
    if (r.registry !== dest.registry || r.repository === dest.repository) continue;
    try {
      const img = await loadImage(store, record);
      for (const d of [img.manifest.config, ...img.manifest.layers]) if (!out.has(d.digest)) out.set(d.digest, r.repository);
    } catch {
      // A record whose documents are damaged or gone only loses us a mount hint.
      continue;
    }
  }
  return out;
}
