// `import` and `export`: moving images between the store and files. Which format a path
// holds is found by looking (a directory with oci-layout; a tar with manifest.json or
// index.json); the image itself always goes through the shared unpack pipeline.
import { stat } from 'node:fs/promises';
import { withGcShared } from '../care/gc-lock.js';
import { TslayerError, invalidArgument, isErrno, notFound } from '../errors.js';
import type { Snapshotter } from '../snapshot/types.js';
import type { Store } from '../store.js';
import { scanArchive } from './archive-scan.js';
import type { Digest } from './digest.js';
import { exportDockerArchive, planDockerArchive } from './docker-archive.js';
import { exportLayoutDir, isLayoutDir, planLayoutDir } from './layout.js';
import { resolveLocalImage } from './local.js';
import { exportOciArchive, planOciArchive } from './oci-archive.js';
import type { ImportOptions, ImportPlan } from './oci.js';
import { recordImage } from './record.js';
import { unpackLayers, type ProgressFactory } from './unpack.js';

export type ArchiveFormat = 'oci' | 'oci-archive' | 'docker-archive';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['oci', 'oci-archive', 'docker-archive'];

export interface ImportImageOptions extends ImportOptions {
  store: Store;
  snapshotter: Snapshotter;
  progress?: ProgressFactory;
  signal?: AbortSignal;
}

export interface ImportedImage {
  names: string[];
  /** Digest of what the names point at. */
  digest: Digest;
  manifest: Digest;
  layers: number;
  unpacked: number;
}

export interface ImportResult {
  format: ArchiveFormat;
  images: ImportedImage[];
  seconds: number;
}

/** Imports under the shared gc lock (src/care/gc-lock.ts): blobs stored before the records exist are not garbage. */
export function importImage(path: string, opts: ImportImageOptions): Promise<ImportResult> {
  return withGcShared(opts.store, () => importImageLocked(path, opts), { signal: opts.signal });
}

async function importImageLocked(path: string, opts: ImportImageOptions): Promise<ImportResult> {
  const started = process.hrtime.bigint();
  const { store } = opts;
  const st = await stat(path).catch((e) => {
    if (isErrno(e, 'ENOENT')) throw notFound(`${path}: no such file or directory`);
    throw e;
  });
  let format: ArchiveFormat;
  let plans: ImportPlan[];
  if (st.isDirectory()) {
    if (!(await isLayoutDir(path))) throw invalidArgument(`${path}: a directory without an oci-layout file is not an OCI image layout`);
    format = 'oci';
    plans = await planLayoutDir(store, path, opts);
  } else if (st.isFile()) {
    // One pass over the tar puts its blobs in the content store; the rest works from there.
    const scan = await scanArchive(store.content, path, opts.signal);
    if (scan.documents.has('manifest.json')) {
      format = 'docker-archive';
      plans = await planDockerArchive(store, scan, path, opts);
    } else if (scan.documents.has('index.json')) {
      format = 'oci-archive';
      plans = await planOciArchive(store, scan, path, opts);
    } else {
      throw invalidArgument(`${path}: neither an oci-archive (no index.json) nor a docker-archive (no manifest.json)`);
    }
  } else {
    throw invalidArgument(`${path}: not a directory or a regular file`);
  }

  const images: ImportedImage[] = [];
  for (const plan of plans) {
    const r = await unpackLayers({
      store,
      snapshotter: opts.snapshotter,
      manifest: plan.manifest,
      config: plan.config,
      fetch: plan.fetch,
      progress: opts.progress,
      signal: opts.signal,
      what: `${path}: image ${plan.names[0]}`,
    });
    for (const name of plan.names) {
      await recordImage(store, name, plan.target, plan.manifestDescriptor.digest !== plan.target.digest ? plan.manifestDescriptor : undefined);
    }
    images.push({
      names: plan.names,
      digest: plan.target.digest,
      manifest: plan.manifestDescriptor.digest,
      layers: plan.manifest.layers.length,
      unpacked: r.unpacked,
    });
  }
  return { format, images, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** The format `export` writes when none is given: a `.tar` file is a docker-archive (as `docker save`), anything else a layout directory. */
export function defaultExportFormat(path: string): ArchiveFormat {
  return /\.tar$/i.test(path) ? 'docker-archive' : 'oci';
}

export interface ExportResult {
  name: string;
  format: ArchiveFormat;
  path: string;
  digest: Digest;
}

export async function exportImage(store: Store, ref: string, path: string, format: ArchiveFormat = defaultExportFormat(path)): Promise<ExportResult> {
  const image = await resolveLocalImage(store, ref);
  // Every blob must be here: a pulled image has them all; say which is missing otherwise.
  for (const d of [image.manifest.config, ...image.manifest.layers]) {
    if (!(await store.content.has(d.digest))) {
      throw new TslayerError('NOT_FOUND', `image ${image.name}: blob ${d.digest} is not in the content store (pull the image again)`);
    }
  }
  switch (format) {
    case 'oci':
      await exportLayoutDir(store.content, image, path);
      break;
    case 'oci-archive':
      await exportOciArchive(store.content, image, path);
      break;
    case 'docker-archive':
      await exportDockerArchive(store, image, path);
      break;
    default:
      throw invalidArgument(`unknown export format ${JSON.stringify(format)} (use ${ARCHIVE_FORMATS.join(', ')})`);
  }
  return { name: image.name, format, path, digest: image.manifestDescriptor.digest };
}
