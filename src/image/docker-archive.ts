/**
 * docker-archive: what `docker save` writes and `docker load` reads (also skopeo's
 * `docker-archive:` transport).
 *
 *   manifest.json   [{"Config": "<path>", "RepoTags": ["name:tag"], "Layers": ["<path>", ...]}]
 *   <config path>   the image config (`<hex>.json`, or `blobs/sha256/<hex>` from docker 25 on)
 *   <layer paths>   layer tars, normally uncompressed: `<id>/layer.tar` (legacy, possibly
 *                   symlinks to a repeated layer), `<hex>.tar` (skopeo), `blobs/sha256/<hex>`
 *   repositories    legacy name → tag → top layer id map (not needed: manifest.json has the names)
 *
 * There is no manifest in it: import makes an OCI manifest whose layers are the archive's
 * files as they are (their compression detected from their bytes). Export writes every
 * layer uncompressed, named by its diff id, as docker does.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import { decompressStream, detectCompression } from '../archive/compression.js';
import type { ContentStore } from '../content/index.js';
import { TslayerError, invalidArgument, notFound } from '../errors.js';
import type { Store } from '../store.js';
import { lookup, type ArchiveScan } from './archive-scan.js';
import { writeTarFile } from './archive-write.js';
import { checkLayersMatch } from './config.js';
import type { Descriptor, Manifest } from './descriptor.js';
import { digestHex, type Digest } from './digest.js';
import { putDocument, readConfig } from './documents.js';
import type { LocalImage } from './local.js';
import { parseJson } from './manifest.js';
import { MediaType, layerCompression, type Compression } from './mediatype.js';
import type { ImportOptions, ImportPlan } from './oci.js';
import { familiarReference, formatReference, parseReference } from './reference.js';

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

const LAYER_TYPE: Record<Compression, string> = {
  none: MediaType.OciLayer,
  gzip: MediaType.OciLayerGzip,
  zstd: MediaType.OciLayerZstd,
};

function parseDockerManifest(bytes: Buffer, where: string): DockerManifestEntry[] {
  const doc = parseJson(bytes, `${where}: manifest.json`);
  if (!Array.isArray(doc)) throw invalidArgument(`${where}: manifest.json is not a list`);
  doc.forEach((e, i) => {
    const bad = (why: string) => invalidArgument(`${where}: manifest.json[${i}]: ${why}`);
    if (typeof e !== 'object' || e === null) throw bad('not an object');
    const m = e as Record<string, unknown>;
    if (typeof m.Config !== 'string') throw bad('Config must be a path');
    if (!Array.isArray(m.Layers) || !m.Layers.every((l) => typeof l === 'string')) throw bad('Layers must be a list of paths');
    if (m.RepoTags != null && !(Array.isArray(m.RepoTags) && m.RepoTags.every((t) => typeof t === 'string'))) {
      throw bad('RepoTags must be a list of names');
    }
  });
  return doc as DockerManifestEntry[];
}

/** Which manifest.json entries to import, under which names. */
function selectImages(entries: DockerManifestEntry[], where: string, ref?: string): Array<{ entry: DockerManifestEntry; names: string[] }> {
  if (entries.length === 0) throw notFound(`${where}: manifest.json lists no image`);
  const namesOf = (e: DockerManifestEntry) => (e.RepoTags ?? []).map((t) => formatReference(parseReference(t)));
  if (ref !== undefined) {
    const full = formatReference(parseReference(ref));
    if (entries.length === 1) return [{ entry: entries[0]!, names: [full] }];
    const hit = entries.find((e) => namesOf(e).includes(full));
    if (!hit) {
      const all = entries.flatMap((e) => e.RepoTags ?? []).join(', ') || 'no names';
      throw notFound(`${where}: holds ${entries.length} images and none is named ${ref} (${all})`);
    }
    return [{ entry: hit, names: [full] }];
  }
  const named = entries.map((entry) => ({ entry, names: namesOf(entry) })).filter((x) => x.names.length > 0);
  if (named.length === 0) throw invalidArgument(`${where}: the image has no name (empty RepoTags); give one: tslayer import ${where} REF`);
  return named;
}

/** Plans from an archive already scanned into the content store. */
export async function planDockerArchive(store: Store, scan: ArchiveScan, path: string, opts: ImportOptions): Promise<ImportPlan[]> {
  const bytes = scan.documents.get('manifest.json');
  if (!bytes) {
    if (scan.documents.has('repositories')) {
      throw new TslayerError('NOT_IMPLEMENTED', `${path}: a docker save archive without manifest.json (docker < 1.10) is not supported`);
    }
    throw invalidArgument(`${path}: no manifest.json: not a docker-archive`);
  }
  const plans: ImportPlan[] = [];
  for (const { entry, names } of selectImages(parseDockerManifest(bytes, path), path, opts.ref)) {
    const blob = (p: string, what: string) => {
      const b = lookup(scan, p);
      if (!b) throw notFound(`${path}: ${what} ${p} named by manifest.json is not in the archive`);
      return b;
    };
    const cfg = blob(entry.Config, 'config');
    const configDesc: Descriptor = { mediaType: MediaType.OciConfig, digest: cfg.digest, size: cfg.size };
    const config = await readConfig(store.content, configDesc);
    const layers: Descriptor[] = [];
    for (const p of entry.Layers) {
      const b = blob(p, 'layer');
      const compression = await blobCompression(store.content, b.digest);
      layers.push({ mediaType: LAYER_TYPE[compression], digest: b.digest, size: b.size });
    }
    // Key order fixed: the same archive always yields the same manifest digest.
    const manifest: Manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers };
    checkLayersMatch(manifest, config, `${path}: image ${names[0]}`);
    const manifestDescriptor = await putDocument(store.content, Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
    plans.push({ names, target: manifestDescriptor, manifestDescriptor, manifest, config });
  }
  return plans;
}

async function blobCompression(content: ContentStore, digest: Digest): Promise<Compression> {
  const head: Buffer[] = [];
  let n = 0;
  for await (const chunk of content.createReadStream(digest, { start: 0, end: 15 }) as AsyncIterable<Buffer>) {
    head.push(chunk);
    n += chunk.length;
  }
  return detectCompression(Buffer.concat(head, n));
}

/**
 * Writes `image` as a docker-archive tar at `path`: config, one uncompressed tar per
 * layer (compressed blobs are inflated to a temporary file first: a tar entry needs its
 * size up front), manifest.json. The diff ids are checked on the way.
 */
export async function exportDockerArchive(store: Store, image: LocalImage, path: string): Promise<void> {
  const { manifest, config } = image;
  const configName = `${digestHex(manifest.config.digest)}.json`;
  const layerNames = config.rootfs.diff_ids.map((d) => `${digestHex(d)}.tar`);
  const ref = parseReference(image.name);
  const repoTags = ref.tag !== undefined ? [familiarReference({ registry: ref.registry, repository: ref.repository, tag: ref.tag })] : [];
  const manifestJson = Buffer.from(JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layerNames }]));

  await writeTarFile(path, async (w) => {
    await w.add(configName, manifest.config.size, store.content.createReadStream(manifest.config.digest));
    const written = new Set<string>();
    for (const [i, layer] of manifest.layers.entries()) {
      const name = layerNames[i]!;
      if (written.has(name)) continue;
      written.add(name);
      await addUncompressedLayer(store, w, name, layer, config.rootfs.diff_ids[i]!, image.name);
    }
    await w.add('manifest.json', manifestJson.length, manifestJson);
  });
}

async function addUncompressedLayer(
  store: Store,
  w: { add: (name: string, size: number, source: import('node:stream').Readable | Buffer) => Promise<void> },
  name: string,
  layer: Descriptor,
  diffId: Digest,
  what: string,
): Promise<void> {
  const compression = layerCompression(layer.mediaType) ?? (await blobCompression(store.content, layer.digest));
  if (compression === 'none') {
    // Already a tar; its digest is its diff id.
    await w.add(name, layer.size, store.content.createReadStream(layer.digest));
    return;
  }
  const tmp = join(store.tmpDir, `export-${randomUUID()}.tar`);
  try {
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'w', 0o600);
    await pipeline(
      store.content.createReadStream(layer.digest),
      decompressStream(compression),
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      }),
      fh.createWriteStream(),
    );
    const found = `sha256:${hash.digest('hex')}`;
    if (found !== diffId) {
      throw new TslayerError('EINTEGRITY', `image ${what}: layer ${layer.digest} unpacks to diff id ${found}, but its config says ${diffId}`);
    }
    await w.add(name, size, createReadStream(tmp, { highWaterMark: 1 << 20 }));
  } finally {
    await rm(tmp, { force: true });
  }
}
