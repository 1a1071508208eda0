// tslayer images: REF, DIGEST, SIZE, CREATED of every stored image.
import type { Command } from 'commander';
import type { ContentStore } from '../../content/index.js';
import { TslayerError } from '../../errors.js';
import type { Descriptor } from '../../image/descriptor.js';
import { readManifest } from '../../image/documents.js';
import { isIndexType } from '../../image/mediatype.js';
import { familiarReference, parseReference } from '../../image/reference.js';
import { listImages, type ImageRecord } from '../../metadata/index.js';
import type { CliContext } from '../context.js';
import { formatAge, formatBytes, shortDigest, writeJson, writeTable } from '../output.js';

/** One row of `tslayer --json images`. */
export interface ImageListEntry {
  /** Full normalised reference: docker.io/library/busybox:latest. */
  ref: string;
  /** Digest of the stored target (manifest or index). */
  digest: string;
  mediaType: string;
  /** Bytes of config + layers as stored (compressed), or the target's own size when unknown. */
  size: number;
  /** When this image record was created in this store (ISO 8601). */
  created: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('images')
    .description('list stored images: REF, DIGEST, SIZE, CREATED')
    .option('--no-trunc', 'show full digests')
    .action(async (opts: { trunc: boolean }) => {
      const store = await ctx.store();
      const records = await store.metadata.read((tx) => listImages(tx));
      const entries: ImageListEntry[] = [];
      for (const r of records) {
        entries.push({
          ref: r.name,
          digest: r.target.digest,
          mediaType: r.target.mediaType,
          size: await imageSize(store.content, r),
          created: r.createdAt,
        });
      }
      if (ctx.json) return writeJson(ctx.stdout, entries);
      const now = new Date();
      writeTable(
        ctx.stdout,
        ['REF', 'DIGEST', 'SIZE', 'CREATED'],
        entries.map((e) => [
          displayName(e.ref),
          opts.trunc ? shortDigest(e.digest) : e.digest,
          formatBytes(e.size),
          formatAge(e.created, now),
        ]),
      );
    });
}

/** docker's short form (busybox:latest) for people; the stored name if it does not parse. */
function displayName(name: string): string {
  try {
    return familiarReference(parseReference(name));
  } catch {
    return name;
  }
}

/**
 * The image's size as stored: config + layers of its manifest (the platform manifest
 * chosen at pull time when the target is an index). Falls back to the target
 * descriptor's size when the manifest blob is missing or unreadable: listing must not
 * fail because one blob is gone or corrupt (that is fsck's report to make).
 */
async function imageSize(content: ContentStore, r: ImageRecord): Promise<number> {
  const desc: Descriptor | undefined = isIndexType(r.target.mediaType) ? r.manifest : r.target;
  if (!desc) return r.target.size;
  try {
    const manifest = await readManifest(content, desc);
    return manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
  } catch (e) {
    if (e instanceof TslayerError) return r.target.size;
    throw e;
  }
}
