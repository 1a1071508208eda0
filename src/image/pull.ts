/**
 * Pulling an image from a registry into the store:
 *   resolve REF (tag or digest) → index? choose the platform → manifest → config
 *   (documents stored in the content store) → layers through the shared unpack pipeline
 *   (download concurrently, stream into snapshots in order) → record the image.
 * The record is written last: an image name only ever points at a complete image.
 * Layer downloads resume: what an interrupted pull (any process) staged in the content
 * store is kept, and the next pull asks the registry only for the rest (Range).
 */
import type { Readable } from 'node:stream';
import { withGcShared } from '../care/gc-lock.js';
import { RegistryClient, type RegistryOptions } from '../registry/client.js';
import { formatPlatform, parsePlatform, selectPlatform, type PlatformSpec } from '../registry/platform.js';
import type { Snapshotter } from '../snapshot/types.js';
import type { Store } from '../store.js';
import { MAX_CONFIG_BYTES, checkLayersMatch } from './config.js';
import { invalidArgument } from '../errors.js';
import type { Descriptor, ImageConfig, Manifest } from './descriptor.js';
import type { Digest } from './digest.js';
import { putDocument, readConfig } from './documents.js';
import { manifestMediaType, parseManifest, parseManifestOrIndex } from './manifest.js';
import { recordImage } from './record.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import { unpackLayers, type ProgressFactory } from './unpack.js';

export interface PullOptions {
  store: Store;
  snapshotter: Snapshotter;
  /** `os/arch[/variant]` to choose from a multi-platform index (default: the host's). */
  platform?: string | PlatformSpec;
  /** Registry settings (plain HTTP, TLS, credentials); ignored when `client` is given. */
  registry?: RegistryOptions;
  client?: RegistryClient;
  /** Concurrent blob downloads (default 3). */
  concurrency?: number;
  /** Per-layer progress (bytes of the compressed blob). */
  progress?: ProgressFactory;
  /** Status lines for a person ("Resuming <digest> at N bytes"). */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export interface PullResult {
  /** The full name the image is recorded under. */
  name: string;
  /** Digest of what the reference points at (an index for multi-platform images). */
  digest: Digest;
  /** Digest of the platform manifest that was unpacked. */
  manifest: Digest;
  platform: string;
  layers: number;
  /** Layers unpacked by this pull (0 when everything was there already). */
  unpacked: number;
  /** Layers whose snapshot was there already. */
  existing: number;
  /** Compressed bytes downloaded. */
  bytes: number;
  /** Bytes of layer blobs an earlier, interrupted pull had staged, resumed instead of downloaded again. */
  resumedBytes: number;
  seconds: number;
}

/** Pulls under the shared gc lock (src/care/gc-lock.ts): blobs stored before the record exists are not garbage. */
export function pullImage(ref: string | Reference, opts: PullOptions): Promise<PullResult> {
  return withGcShared(opts.store, () => pullImageLocked(ref, opts), { signal: opts.signal });
}

async function pullImageLocked(ref: string | Reference, opts: PullOptions): Promise<PullResult> {
  const started = process.hrtime.bigint();
  const parsed = typeof ref === 'string' ? parseReference(ref) : ref;
  const name = formatReference(parsed);
  const client = opts.client ?? new RegistryClient(opts.registry);
  const { store } = opts;
  try {
    const top = await client.resolve(parsed);
    const target = await putDocument(store.content, top.body, top.descriptor.mediaType);
    const doc = parseManifestOrIndex(top.body, `manifest ${name}`, top.descriptor.mediaType);
    let manifestDesc: Descriptor = target;
    let manifest: Manifest;
    if (doc.kind === 'index') {
      const want = opts.platform === undefined ? undefined : typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform;
      manifestDesc = selectPlatform(doc.index, want);
      const got = await client.getManifest(parsed, manifestDesc.digest);
      manifest = parseManifest(got.body, `manifest ${manifestDesc.digest} of ${name}`, manifestDesc.mediaType);
      manifestDesc = await putDocument(store.content, got.body, manifestMediaType(manifest, got.mediaType));
    } else {
      manifest = doc.manifest;
    }

    const config = await fetchConfig(store, client, parsed, manifest.config);
    checkLayersMatch(manifest, config, name);

    const unpacked = await unpackLayers({
      store,
      snapshotter: opts.snapshotter,
      manifest,
      config,
      // From an offset the ingest verifies the whole blob on commit (it has hashed the
      // staged bytes); the stream then checks only the size.
      fetch: async (desc: Descriptor, { offset }): Promise<Readable> =>
        client.fetchBlob(parsed, desc, offset ? { offset, verify: false } : undefined),
      resume: true,
      concurrency: opts.concurrency,
      progress: opts.progress,
      ...(opts.log && { log: opts.log }),
      signal: opts.signal,
      what: name,
    });

    await recordImage(store, name, target, doc.kind === 'index' ? manifestDesc : undefined);
    return {
      name,
      digest: target.digest,
      manifest: manifestDesc.digest,
      platform: formatPlatform({ os: config.os, architecture: config.architecture, ...(config.variant && { variant: config.variant }) }),
      layers: manifest.layers.length,
      unpacked: unpacked.unpacked,
      existing: unpacked.existing,
      bytes: unpacked.downloadedBytes,
      resumedBytes: unpacked.resumedBytes,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
    };
  } finally {
    if (!opts.client) client.close();
  }
}

/** The config blob, from the store when it is there, else from the registry (and stored). */
async function fetchConfig(store: Store, client: RegistryClient, ref: Reference, desc: Descriptor): Promise<ImageConfig> {
  if (desc.size > MAX_CONFIG_BYTES) {
    throw invalidArgument(`${formatReference(ref)}: config ${desc.digest} is ${desc.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
  }
  if (!(await store.content.has(desc.digest))) {
    await store.content.put(client.fetchBlob(ref, desc), { digest: desc.digest, size: desc.size });
  }
  return readConfig(store.content, desc);
}
