// What the OCI image layout formats share (a directory, and the same in a tar): reading
// index.json into import plans, and the documents written on export.
// Spec: https://github.com/opencontainers/image-spec/blob/main/image-layout.md
import { invalidArgument, notFound } from '../errors.js';
import { selectPlatform, type PlatformSpec } from '../registry/platform.js';
import type { Store } from '../store.js';
import { checkLayersMatch } from './config.js';
import type { Descriptor, ImageConfig, Index, Manifest } from './descriptor.js';
import { readConfig, readManifest, readManifestOrIndex } from './documents.js';
import { isIndexType, isManifestType, MediaType } from './mediatype.js';
import { formatReference, parseReference } from './reference.js';
import type { LayerFetcher } from './unpack.js';

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
/** containerd's full image name in index.json (ref.name only holds the tag). */
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
export const LAYOUT_VERSION = '1.0.0';

/** One image an archive or layout holds, with its documents already in the content store. */
export interface ImportPlan {
  /** Full names to record it under. */
  names: string[];
  /** What the names point at: a manifest, or an index with `manifestDescriptor` chosen from it. */
  target: Descriptor;
  manifestDescriptor: Descriptor;
  manifest: Manifest;
  config: ImageConfig;
  /** Where layer blobs not yet in the content store come from (directory layouts). */
  fetch?: LayerFetcher;
}

export interface ImportOptions {
  /** Name to record the image under; selects the image when the source holds several. */
  ref?: string;
  /** Platform to choose from a multi-platform index (default: the host's). */
  platform?: string | PlatformSpec;
}

/** Makes sure a blob the layout names is in the content store. */
export type EnsureStored = (desc: Descriptor) => Promise<void>;

/** Checks an `oci-layout` file. */
export function checkLayoutFile(bytes: Buffer | undefined, where: string): void {
  if (bytes === undefined) throw invalidArgument(`${where}: no oci-layout file: not an OCI image layout`);
  let v: unknown;
  try {
    v = (JSON.parse(bytes.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    throw invalidArgument(`${where}: oci-layout is not valid JSON`);
  }
  if (typeof v !== 'string' || !v.startsWith('1.')) {
    throw invalidArgument(`${where}: unsupported imageLayoutVersion ${JSON.stringify(v)} (want 1.x)`);
  }
}

/**
 * The images of a layout's index.json to import, and the names each is recorded under.
 *  - with `ref`: the only image, or the one whose name or ref.name tag matches `ref`;
 *  - without: every image with a full name (io.containerd.image.name, or a ref.name that is
 *    a whole reference). A ref.name that is only a tag (what skopeo writes) needs `ref`.
 */
export function selectEntries(index: Index, where: string, ref?: string): Array<{ desc: Descriptor; names: string[] }> {
  const entries = index.manifests.filter((d) => isManifestType(d.mediaType) || isIndexType(d.mediaType));
  if (entries.length === 0) throw notFound(`${where}: index.json lists no image`);
  const nameOf = (d: Descriptor): string | undefined => {
    const full = d.annotations?.[ANNOTATION_IMAGE_NAME];
    const refName = d.annotations?.[ANNOTATION_REF_NAME];
    for (const candidate of [full, refName]) {
      if (candidate === undefined || !/[/:@]/.test(candidate)) continue;
      try {
        return formatReference(parseReference(candidate));
      } catch {
        // not a reference: a tag or free text
      }
    }
    return undefined;
  };
  if (ref !== undefined) {
    const wanted = parseReference(ref);
    const full = formatReference(wanted);
    if (entries.length === 1) return [{ desc: entries[0]!, names: [full] }];
    const hit =
      entries.find((d) => nameOf(d) === full) ??
      entries.find((d) => wanted.tag !== undefined && d.annotations?.[ANNOTATION_REF_NAME] === wanted.tag);
    if (!hit) throw notFound(`${where}: holds ${entries.length} images and none is named ${ref} (${describe(entries)})`);
    return [{ desc: hit, names: [full] }];
  }
  const named = entries.flatMap((d) => {
    const n = nameOf(d);
    return n === undefined ? [] : [{ desc: d, names: [n] }];
  });
  if (named.length === 0) {
    throw invalidArgument(`${where}: the image has no full name (${describe(entries)}); give one: tslayer import ${where} REF`);
  }
  return named;
}

function describe(entries: Descriptor[]): string {
  return entries
    .map((d) => d.annotations?.[ANNOTATION_IMAGE_NAME] ?? d.annotations?.[ANNOTATION_REF_NAME] ?? d.digest)
    .join(', ');
}

/**
 * Turns the selected index.json entries into import plans: stores the documents (index,
 * chosen platform manifest, config) and reads them back verified.
 */
export async function planFromIndex(
  store: Store,
  index: Index,
  where: string,
  ensure: EnsureStored,
  opts: ImportOptions & { fetch?: LayerFetcher },
): Promise<ImportPlan[]> {
  const plans: ImportPlan[] = [];
  for (const { desc, names } of selectEntries(index, where, opts.ref)) {
    await ensure(desc);
    const doc = await readManifestOrIndex(store.content, desc);
    let manifestDescriptor = desc;
    if (doc.kind === 'index') {
      manifestDescriptor = selectPlatform(doc.index, opts.platform);
      await ensure(manifestDescriptor);
    }
    const manifest = await readManifest(store.content, manifestDescriptor);
    await ensure(manifest.config);
    const config = await readConfig(store.content, manifest.config);
    checkLayersMatch(manifest, config, `${where}: image ${names[0]}`);
    plans.push({ names, target: desc, manifestDescriptor, manifest, config, ...(opts.fetch && { fetch: opts.fetch }) });
  }
  return plans;
}

/** index.json for an export: one entry for the image, named for skopeo (tag) and containerd (full name). */
export function exportIndex(manifest: Descriptor, name: string): Buffer {
  const ref = parseReference(name);
  const annotations: Record<string, string> = { [ANNOTATION_IMAGE_NAME]: name };
  if (ref.tag !== undefined) annotations[ANNOTATION_REF_NAME] = ref.tag;
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations }],
  };
  return Buffer.from(JSON.stringify(index));
}

export function layoutFile(): Buffer {
  return Buffer.from(JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
}

/** Every blob an exported image consists of: manifest, config, layers (each once). */
export function imageBlobs(manifestDescriptor: Descriptor, manifest: Manifest): Descriptor[] {
  const seen = new Set<string>();
  return [manifestDescriptor, manifest.config, ...manifest.layers].filter((d) => {
    if (seen.has(d.digest)) return false;
    seen.add(d.digest);
    return true;
  });
}
