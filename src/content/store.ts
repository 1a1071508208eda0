// The content store: ties the layout (paths) to ingest, read and verify.
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { isErrno, TslayerError } from '../errors.js';
import { digestAlgorithm, digestHex, isDigest, parseDigest, type Digest } from '../image/digest.js';
import { sizeError } from './integrity.js';
import {
  cleanupIngests,
  listIngests,
  openIngest,
  type Expected,
  type Ingest,
  type IngestHost,
  type IngestStatus,
  type OpenIngestOptions,
} from './ingest.js';
import { missing, readBlob, verifyBlob, type ByteRange } from './read.js';

export interface BlobInfo {
  digest: Digest;
  size: number;
}

const ALGORITHMS = ['sha256', 'sha512'] as const;

export class ContentStore implements IngestHost {
  readonly dir: string;
  readonly blobsRoot: string;
  readonly ingestRoot: string;

  /** `dir` is ROOT/content. Directories are made by init() or lazily by the first write. */
  constructor(dir: string) {
    this.dir = dir;
    this.blobsRoot = join(dir, 'blobs');
    this.ingestRoot = join(dir, 'ingest');
  }

  async init(): Promise<void> {
    await mkdir(join(this.blobsRoot, 'sha256'), { recursive: true });
    await mkdir(this.ingestRoot, { recursive: true });
  }

  /** ROOT/content/blobs/<algorithm>/<hex>. Throws INVALID_ARGUMENT for a malformed digest. */
  blobPath(digest: Digest): string {
    parseDigest(digest);
    return join(this.blobsRoot, digestAlgorithm(digest), digestHex(digest));
  }

  async has(digest: Digest): Promise<boolean> {
    try {
      await stat(this.blobPath(digest));
      return true;
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return false;
      throw e;
    }
  }

  /** Throws NOT_FOUND when the blob is absent. */
  async stat(digest: Digest): Promise<BlobInfo> {
    try {
      const st = await stat(this.blobPath(digest));
      return { digest, size: st.size };
    } catch (e) {
      if (isErrno(e, 'ENOENT')) throw missing(digest);
      throw e;
    }
  }

  /** `range.end` is inclusive, like fs. A missing blob errors the stream with NOT_FOUND. */
  createReadStream(digest: Digest, range?: ByteRange): Readable {
    return readBlob(this.blobPath(digest), digest, range);
  }

  /**
   * Streams `source` into the store, verifying digest (and size when given) on the fly.
   * Idempotent: when the blob exists (or another writer commits it while we wait for
   * its lock), `source` is drained and the existing blob is returned.
   */
  async put(source: Readable, expected: Expected, opts: { signal?: AbortSignal } = {}): Promise<BlobInfo> {
    // While we wait for another writer's lock nothing consumes `source`; an error it emits
    // meanwhile must not go unhandled (pipeline/finished below still see it: it stays `errored`).
    const ignore = () => {};
    source.on('error', ignore);
    try {
      return await this.#put(source, expected, opts);
    } finally {
      source.off('error', ignore);
    }
  }

  async #put(source: Readable, expected: Expected, opts: { signal?: AbortSignal }): Promise<BlobInfo> {
    for (;;) {
      let ingest: Ingest;
      try {
        ingest = await openIngest(this, expected.digest, expected, { restart: true, signal: opts.signal });
      } catch (e) {
        if (!(e instanceof TslayerError && e.code === 'ALREADY_EXISTS')) throw e;
        // Stat before draining: if a concurrent delete removed the blob meanwhile, the
        // source is still unread and we simply ingest it after all.
        const have = await this.stat(expected.digest).catch((e2) => {
          if (e2 instanceof TslayerError && e2.code === 'NOT_FOUND') return null;
          throw e2;
        });
        if (have === null) continue;
        source.resume();
        await finished(source);
        if (expected.size !== undefined && have.size !== expected.size) {
          throw sizeError(expected.digest, expected.size, have.size);
        }
        return have;
      }
      return this.#fill(ingest, source);
    }
  }

  /** For producers that don't know the digest in advance: sha256 is computed while writing. */
  async putUnknown(source: Readable): Promise<BlobInfo> {
    const ingest = await openIngest(this, `unknown-${randomUUID()}`, {}, { restart: true });
    return this.#fill(ingest, source);
  }

  /**
   * Opens the resumable ingest `ref` (usually the expected digest). Waits while another
   * writer (any process) holds the same ref, unless `opts.wait` is false (then UNAVAILABLE).
   * Throws ALREADY_EXISTS when the blob is already in the store: callers skip the download.
   * `offset` of the result says how many bytes an earlier attempt left staged.
   */
  async openIngest(ref: string, expected: Expected, opts?: OpenIngestOptions): Promise<Ingest> {
    parseDigest(expected.digest, 'expected digest');
    return openIngest(this, ref, expected, opts);
  }

  /** Throws NOT_FOUND when the blob is absent. */
  async delete(digest: Digest): Promise<void> {
    try {
      await unlink(this.blobPath(digest));
    } catch (e) {
      if (isErrno(e, 'ENOENT')) throw missing(digest);
      throw e;
    }
  }

  /** Every committed blob, in directory order. */
  async *walk(): AsyncIterable<BlobInfo> {
    for (const algorithm of ALGORITHMS) {
      const dir = join(this.blobsRoot, algorithm);
      const names = await readdir(dir).catch((e) => {
        if (isErrno(e, 'ENOENT')) return [] as string[];
        throw e;
      });
      for (const name of names) {
        const digest = `${algorithm}:${name}`;
        if (!isDigest(digest)) continue;
        const st = await stat(join(dir, name)).catch(() => null); // deleted meanwhile
        if (st?.isFile()) yield { digest, size: st.size };
      }
    }
  }

  /** Re-hashes the blob; throws EINTEGRITY (naming both digests) or NOT_FOUND. Deleting a bad blob is the caller's call. */
  verify(digest: Digest): Promise<void> {
    return verifyBlob(this.blobPath(digest), digest);
  }

  /** Removes partial ingests that no writer holds and that were last written more than `olderThanMs` ago (default: all). */
  cleanupIngests(olderThanMs = 0): Promise<void> {
    return cleanupIngests(this, olderThanMs);
  }

  /** Partial ingests on disk (in use or left by an interrupted writer). */
  ingests(): AsyncIterable<IngestStatus> {
    return listIngests(this);
  }

  async #fill(ingest: Ingest, source: Readable): Promise<BlobInfo> {
    try {
      await pipeline(source, ingest.writable());
      return await ingest.commit();
    } catch (e) {
      await ingest.abort().catch(() => {});
      throw e;
    }
  }
}
