// oci-archive: an OCI image layout in a tar (`skopeo copy ... oci-archive:FILE:TAG`,
// `buildah push ... oci-archive:`). Import streams through the tar once, storing blobs
// in the content store as they pass; export writes the same layout as export to a
// directory would, as one tar.
import type { ContentStore } from '../content/index.js';
import { notFound } from '../errors.js';
import type { Store } from '../store.js';
import type { ArchiveScan } from './archive-scan.js';
import { writeTarFile } from './archive-write.js';
import type { Descriptor } from './descriptor.js';
import { digestAlgorithm, digestHex } from './digest.js';
import type { LocalImage } from './local.js';
import { parseIndex } from './manifest.js';
import { checkLayoutFile, exportIndex, imageBlobs, layoutFile, planFromIndex, type ImportOptions, type ImportPlan } from './oci.js';

/** Plans from an archive already scanned into the content store. */
export async function planOciArchive(store: Store, scan: ArchiveScan, path: string, opts: ImportOptions): Promise<ImportPlan[]> {
  checkLayoutFile(scan.documents.get('oci-layout'), path);
  const indexBytes = scan.documents.get('index.json');
  if (!indexBytes) throw notFound(`${path}: no index.json: not an OCI image archive`);
  const index = parseIndex(indexBytes, `${path}: index.json`);
  const ensure = async (desc: Descriptor) => {
    if (!(await store.content.has(desc.digest))) throw notFound(`${path}: blob ${desc.digest} named by the archive is not in it`);
  };
  return planFromIndex(store, index, path, ensure, opts);
}

export async function exportOciArchive(content: ContentStore, image: LocalImage, path: string): Promise<void> {
  await writeTarFile(path, async (w) => {
    const layout = layoutFile();
    await w.add('oci-layout', layout.length, layout);
    await w.dir('blobs');
    for (const alg of new Set(imageBlobs(image.manifestDescriptor, image.manifest).map((d) => digestAlgorithm(d.digest)))) {
      await w.dir(`blobs/${alg}`);
    }
    for (const desc of imageBlobs(image.manifestDescriptor, image.manifest)) {
      const name = `blobs/${digestAlgorithm(desc.digest)}/${digestHex(desc.digest)}`;
      await w.add(name, desc.size, content.createReadStream(desc.digest));
    }
    const index = exportIndex(image.manifestDescriptor, image.name);
    await w.add('index.json', index.length, index);
  });
}
