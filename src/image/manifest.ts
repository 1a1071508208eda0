// Parsing and validating the JSON documents that describe an image: manifests and
// indexes (config.ts has the config). Input is bytes as stored or served; output is a
// typed value or an INVALID_ARGUMENT error that names the document and the bad field.
import { TslayerError, invalidArgument } from '../errors.js';
import type { Descriptor, Index, Manifest, Platform } from './descriptor.js';
import { isDigest } from './digest.js';
import { MediaType, isIndexType, isManifestType } from './mediatype.js';

/** Largest manifest or index we read (the distribution spec lets registries cap at 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 << 20;

export type ManifestOrIndex = { kind: 'manifest'; manifest: Manifest } | { kind: 'index'; index: Index };

/** JSON.parse of a document, with an error that says which document was not JSON. */
export function parseJson(bytes: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (e) {
    throw invalidArgument(`${what}: not valid JSON: ${(e as Error).message}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks one descriptor; `where` names it in errors (e.g. "manifest sha256:..: layers[2]"). */
export function validateDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalidArgument(`${where}: descriptor is not an object`);
  const { mediaType, digest, size, urls, annotations, platform } = v;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalidArgument(`${where}: missing mediaType`);
  if (typeof digest !== 'string' || !isDigest(digest)) throw invalidArgument(`${where}: invalid digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalidArgument(`${where}: invalid size ${JSON.stringify(size)}`);
  }
  if (urls !== undefined && !(Array.isArray(urls) && urls.every((u) => typeof u === 'string'))) {
    throw invalidArgument(`${where}: urls must be an array of strings`);
  }
  if (annotations !== undefined) validateAnnotations(annotations, where);
  if (platform !== undefined) validatePlatform(platform, where);
  return v as unknown as Descriptor;
}

function validateAnnotations(v: unknown, where: string): void {
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    throw invalidArgument(`${where}: annotations must map strings to strings`);
  }
}

function validatePlatform(v: unknown, where: string): Platform {
  if (!isObject(v) || typeof v.os !== 'string' || typeof v.architecture !== 'string') {
    throw invalidArgument(`${where}: platform needs string os and architecture`);
  }
  if (v.variant !== undefined && typeof v.variant !== 'string') throw invalidArgument(`${where}: platform variant must be a string`);
  return v as unknown as Platform;
}

function checkSchema(doc: Record<string, unknown>, what: string): void {
  if (doc.schemaVersion === 1) {
    throw new TslayerError(
      'NOT_IMPLEMENTED',
      `${what}: Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current client`,
    );
  }
  if (doc.schemaVersion !== 2) throw invalidArgument(`${what}: schemaVersion must be 2, got ${JSON.stringify(doc.schemaVersion)}`);
}

/**
 * Parses an image manifest. `mediaType` is what the registry or the parent descriptor
 * said; when both it and the document's own mediaType are set they must agree.
 */
export function parseManifest(bytes: Buffer | string, what = 'manifest', mediaType?: string): Manifest {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) throw invalidArgument(`${what}: not a JSON object`);
  checkSchema(doc, what);
  checkMediaType(doc, what, mediaType, isManifestType);
  if (Array.isArray(doc.manifests)) throw invalidArgument(`${what}: is an index, not an image manifest`);
  validateDescriptor(doc.config, `${what}: config`);
  if (!Array.isArray(doc.layers)) throw invalidArgument(`${what}: layers must be an array`);
  doc.layers.forEach((l, i) => validateDescriptor(l, `${what}: layers[${i}]`));
  if (doc.annotations !== undefined) validateAnnotations(doc.annotations, what);
  return doc as unknown as Manifest;
}

/** Parses an image index (OCI) or manifest list (Docker). */
export function parseIndex(bytes: Buffer | string, what = 'index', mediaType?: string): Index {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) throw invalidArgument(`${what}: not a JSON object`);
  checkSchema(doc, what);
  checkMediaType(doc, what, mediaType, isIndexType);
  if (!Array.isArray(doc.manifests)) throw invalidArgument(`${what}: manifests must be an array`);
  doc.manifests.forEach((m, i) => validateDescriptor(m, `${what}: manifests[${i}]`));
  if (doc.annotations !== undefined) validateAnnotations(doc.annotations, what);
  return doc as unknown as Index;
}

/**
 * Parses a document that may be either (what a tag points at). The kind comes from the
 * declared media type, else the document's own mediaType, else its shape.
 */
export function parseManifestOrIndex(bytes: Buffer | string, what: string, mediaType?: string): ManifestOrIndex {
  let kind: 'manifest' | 'index' | undefined;
  if (isIndexType(mediaType)) kind = 'index';
  else if (isManifestType(mediaType)) kind = 'manifest';
  else {
    const doc = parseJson(bytes, what);
    if (!isObject(doc)) throw invalidArgument(`${what}: not a JSON object`);
    if (isIndexType(doc.mediaType as string)) kind = 'index';
    else if (isManifestType(doc.mediaType as string)) kind = 'manifest';
    else if (Array.isArray(doc.manifests)) kind = 'index';
    else if (doc.config !== undefined || doc.schemaVersion === 1) kind = 'manifest';
    else throw invalidArgument(`${what}: neither an image manifest nor an index (media type ${mediaType ?? 'unknown'})`);
    mediaType = undefined; // nothing declared to check against
  }
  return kind === 'index'
    ? { kind, index: parseIndex(bytes, what, mediaType) }
    : { kind, manifest: parseManifest(bytes, what, mediaType) };
}

function checkMediaType(
  doc: Record<string, unknown>,
  what: string,
  declared: string | undefined,
  ok: (mt: string | undefined) => boolean,
): void {
  const own = doc.mediaType;
  if (own !== undefined && typeof own !== 'string') throw invalidArgument(`${what}: mediaType must be a string`);
  if (declared !== undefined && !ok(declared)) throw invalidArgument(`${what}: unexpected media type ${declared}`);
  if (own !== undefined && !ok(own)) throw invalidArgument(`${what}: unexpected mediaType ${own}`);
  if (declared !== undefined && own !== undefined && own !== declared) {
    throw invalidArgument(`${what}: declared as ${declared} but its mediaType says ${own}`);
  }
}

/** The media type to record for a manifest: its own field, else what was declared, else OCI. */
export function manifestMediaType(m: Manifest | Index, declared?: string): string {
  if (m.mediaType) return m.mediaType;
  if (declared) return declared;
  return 'manifests' in m ? MediaType.OciIndex : MediaType.OciManifest;
}
