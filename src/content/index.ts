/**
 * Content store: blobs addressed by digest under ROOT/content.
 *
 * On-disk layout:
 *
 *     ROOT/content/
 *       blobs/sha256/<64 hex>    one complete, verified blob per digest (mode 0444); a path
 *                                 here only ever appears by rename of a finished, fsync'd file
 *       blobs/sha512/<128 hex>   same, for sha512 digests (made on first use)
 *       ingest/<sha256(ref)>/     one in-progress or interrupted write, keyed by its ref
 *         lock                    flock'd by the writer that owns the ingest (released by the
 *                                 kernel if it dies, so a crash never leaves a stale lock)
 *         meta                    JSON {ref, digest, size, startedAt}
 *         data                    bytes staged so far; its size is the resume offset
 *
 * Writes stream into ingest/<key>/data while hashing, are checked against the expected
 * digest and size (EINTEGRITY / EBADSIZE, with nothing left behind), fsync'd, renamed
 * into blobs/ without replacing an existing blob, and the blobs directory is fsync'd.
 * Writers of the same ref (put() uses the digest) take turns on the ingest's flock: the
 * first writes, the others find the blob on getting the lock and return it. A killed
 * writer leaves only ingest/<key>/, which a later openIngest() resumes (re-hashing the
 * staged bytes; readStaged() streams them back to a consumer that needs the whole blob)
 * or cleanupIngests() removes.
 */
export { ContentStore, type BlobInfo } from './store.js';
export type { Expected, Ingest, IngestStatus, OpenIngestOptions } from './ingest.js';
export type { ByteRange } from './read.js';
