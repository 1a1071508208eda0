// OCI image layout directories (`skopeo copy ... oci:DIR:TAG`, `umoci`, `oras`):
// import reads index.json and takes blobs straight from DIR/blobs/ (layers stream from
// their file into the unpack pipeline, which stores them on the way); export writes the
// blobs and an index.json naming the image, merging into an existing layout.
import { constants, createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ContentStore } from '../content/index.js';
import { TslayerError, invalidArgument, isErrno, notFound } from '../errors.js';
import type { Descriptor, Index } from './descriptor.js';
import { digestAlgorithm, digestHex } from './digest.js';
import { MAX_MANIFEST_BYTES, parseIndex } from './manifest.js';
import {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  checkLayoutFile,
  exportIndex,
  imageBlobs,
  layoutFile,
  planFromIndex,
  type ImportOptions,
  type ImportPlan,
} from './oci.js';
import type { Store } from '../store.js';
import type { LocalImage } from './local.js';

export function layoutBlobPath(dir: string, desc: Pick<Descriptor, 'digest'>): string {
  return join(dir, 'blobs', digestAlgorithm(desc.digest), digestHex(desc.digest));
}

/** Is `dir` an OCI image layout (has an oci-layout file)? */
export async function isLayoutDir(dir: string): Promise<boolean> {
  try {
    await access(join(dir, 'oci-layout'), constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export async function planLayoutDir(store: Store, dir: string, opts: ImportOptions): Promise<ImportPlan[]> {
  checkLayoutFile(await readFile(join(dir, 'oci-layout')).catch(() => undefined), dir);
  const index = await readIndexJson(dir);
  // Documents are copied in now (verified by the store); layers later, by the unpack
  // pipeline, straight from their files: each layer file is read exactly once.
  const ensure = async (desc: Descriptor) => {
    if (await store.content.has(desc.digest)) return;
    await store.content.put(await openLayoutBlob(dir, desc), { digest: desc.digest, size: desc.size });
  };
  return planFromIndex(store, index, dir, ensure, {
    ...opts,
    fetch: (desc) => openLayoutBlob(dir, desc),
  });
}

async function readIndexJson(dir: string): Promise<Index> {
  const path = join(dir, 'index.json');
  let bytes: Buffer;
  try {
    const st = await stat(path);
    if (st.size > MAX_MANIFEST_BYTES) throw invalidArgument(`${path}: over ${MAX_MANIFEST_BYTES} bytes`);
    bytes = await readFile(path);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) throw invalidArgument(`${dir}: no index.json: not an OCI image layout`);
    throw e;
  }
  return parseIndex(bytes, path);
}

/** A blob file of the layout, opened after checking it is there (a missing one is named). */
async function openLayoutBlob(dir: string, desc: Descriptor): Promise<Readable> {
  const path = layoutBlobPath(dir, desc);
  try {
    await access(path, constants.R_OK);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) throw notFound(`${dir}: blob ${desc.digest} named by the layout is missing (${path})`);
    throw e;
  }
  return createReadStream(path, { highWaterMark: 1 << 20 });
}

/**
 * Writes `image` into the layout at `dir` (created if missing). An existing layout keeps
 * its other images; an entry with the same name is replaced. Blobs are written under a
 * temporary name and renamed, index.json last, so a reader never sees a half image.
 */
export async function exportLayoutDir(content: ContentStore, image: LocalImage, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const existing = await readdir(dir);
  let index: Index = { schemaVersion: 2, manifests: [] };
  if (existing.length > 0) {
    if (!(await isLayoutDir(dir))) {
      throw new TslayerError('FAILED_PRECONDITION', `${dir} exists and is not an OCI image layout: refusing to write into it`);
    }
    index = await readIndexJson(dir);
  }
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const desc of imageBlobs(image.manifestDescriptor, image.manifest)) {
    await copyBlob(content, desc, layoutBlobPath(dir, desc));
  }
  const ours = JSON.parse(exportIndex(image.manifestDescriptor, image.name).toString('utf8')) as Index;
  const entry = ours.manifests[0]!;
  const tag = entry.annotations?.[ANNOTATION_REF_NAME];
  const merged: Index = {
    schemaVersion: 2,
    mediaType: ours.mediaType,
    manifests: [
      ...index.manifests.filter(
        (d) =>
          d.annotations?.[ANNOTATION_IMAGE_NAME] !== image.name &&
          (tag === undefined || d.annotations?.[ANNOTATION_REF_NAME] !== tag),
      ),
      entry,
    ],
    ...(index.annotations && { annotations: index.annotations }),
  };
  await writeAtomic(join(dir, 'oci-layout'), layoutFile());
  await writeAtomic(join(dir, 'index.json'), Buffer.from(JSON.stringify(merged)));
}

/** Copies a stored blob to `path` unless a file of the right size is there already. */
async function copyBlob(content: ContentStore, desc: Descriptor, path: string): Promise<void> {
  const have = await stat(path).catch(() => null);
  if (have?.isFile() && have.size === desc.size) return;
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w', 0o644);
    await pipeline(content.createReadStream(desc.digest), fh.createWriteStream());
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

async function writeAtomic(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
