// Small JSON documents (manifests, indexes, configs) in the content store: reading one
// back with a size cap and a digest check, and storing one. These are the only blobs
// tslayer holds in memory, and only up to the cap.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ContentStore } from '../content/index.js';
import { TslayerError, invalidArgument } from '../errors.js';
import type { Descriptor, ImageConfig, Index, Manifest } from './descriptor.js';
import { digestAlgorithm, type Digest } from './digest.js';
import { MAX_CONFIG_BYTES, parseConfig } from './config.js';
import { MAX_MANIFEST_BYTES, parseIndex, parseManifest, parseManifestOrIndex, type ManifestOrIndex } from './manifest.js';

/** Bytes of blob `desc` from the store, refusing anything over `maxBytes` and checking size and digest. */
export async function readBlobBytes(content: ContentStore, desc: Pick<Descriptor, 'digest' | 'size'>, maxBytes: number, what: string): Promise<Buffer> {
  if (desc.size > maxBytes) throw invalidArgument(`${what} ${desc.digest}: ${desc.size} bytes is over the ${maxBytes}-byte limit`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of content.createReadStream(desc.digest) as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > maxBytes) throw invalidArgument(`${what} ${desc.digest}: over the ${maxBytes}-byte limit`);
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks, n);
  checkBytes(bytes, desc, what);
  return bytes;
}

/** Checks bytes held in memory against a descriptor (EBADSIZE / EINTEGRITY naming the digest). */
export function checkBytes(bytes: Buffer, desc: Pick<Descriptor, 'digest' | 'size'>, what: string): void {
  if (bytes.length !== desc.size) {
    throw new TslayerError('EBADSIZE', `${what} ${desc.digest}: expected size ${desc.size}, got ${bytes.length}`);
  }
  const found = digestOf(bytes, digestAlgorithm(desc.digest));
  if (found !== desc.digest) throw new TslayerError('EINTEGRITY', `${what} ${desc.digest}: content has digest ${found}`);
}

export function digestOf(bytes: Buffer | string, algorithm: 'sha256' | 'sha512' = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
}

/** Stores a document held in memory; returns its descriptor. Storing an existing blob is a no-op. */
export async function putDocument(content: ContentStore, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = digestOf(bytes);
  if (!(await content.has(digest))) await content.put(Readable.from([bytes]), { digest, size: bytes.length });
  return { mediaType, digest, size: bytes.length };
}

export async function readManifest(content: ContentStore, desc: Descriptor): Promise<Manifest> {
  const what = `manifest ${desc.digest}`;
  return parseManifest(await readBlobBytes(content, desc, MAX_MANIFEST_BYTES, 'manifest'), what, desc.mediaType);
}

export async function readIndex(content: ContentStore, desc: Descriptor): Promise<Index> {
  const what = `index ${desc.digest}`;
  return parseIndex(await readBlobBytes(content, desc, MAX_MANIFEST_BYTES, 'index'), what, desc.mediaType);
}

export async function readManifestOrIndex(content: ContentStore, desc: Descriptor): Promise<ManifestOrIndex> {
  const bytes = await readBlobBytes(content, desc, MAX_MANIFEST_BYTES, 'manifest');
  return parseManifestOrIndex(bytes, `manifest ${desc.digest}`, desc.mediaType);
}

export async function readConfig(content: ContentStore, desc: Descriptor): Promise<ImageConfig> {
  return parseConfig(await readBlobBytes(content, desc, MAX_CONFIG_BYTES, 'config'), `config ${desc.digest}`);
}
