// Ingests: staged, resumable writes of one blob (containerd's content ingest).
//
// One ingest = one directory ingest/<sha256 hex of ref>/ holding
//   lock  empty file; flock'd by the writer that owns the ingest right now
//   meta  JSON {ref, digest?, size?, startedAt}: what the staged bytes are meant to become
//   data  the bytes staged so far (its size is the resume offset)
// A writer that dies leaves this directory and nothing else; the blob path only ever
// receives a complete, verified, fsync'd file by rename.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { constants, mkdir, open, readdir, readFile, rm, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { alreadyExists, failedPrecondition, invalidArgument, isErrno, TslayerError } from '../errors.js';
import { digestAlgorithm, isDigest, type Digest } from '../image/digest.js';
import { fsyncDir, moveIntoPlace } from './fsync.js';
import { createHasher, integrityError, sizeError, type Hasher } from './integrity.js';
import { FileLock } from './lock.js';

export interface Expected {
  digest: Digest;
  size?: number;
}

export interface OpenIngestOptions {
  /** When another writer holds this ref: wait for it (default), or fail at once with UNAVAILABLE. */
  wait?: boolean;
  /** Cancels waiting for the lock. */
  signal?: AbortSignal;
}

export interface Ingest {
  readonly ref: string;
  /** Bytes already staged and hashed (from an earlier interrupted attempt, then growing with each write). */
  readonly offset: number;
  /** Appends `chunk` at `offset`. Calls are serialised; a chunk past the expected size aborts with EBADSIZE. */
  write(chunk: Buffer): Promise<void>;
  /** A Writable over write() (same object on every call). Ending it does not commit. */
  writable(): Writable;
  /**
   * Streams back the first `length` staged bytes (default: all of them, `offset`) from the
   * data file, for a consumer that needs the whole blob while only the rest comes from its
   * source (e.g. an unpack resumed at `offset`). Only while the ingest is open; later writes
   * do not touch these bytes. INVALID_ARGUMENT when `length` is more than `offset`.
   */
  readStaged(length?: number): Readable;
  /** Verifies size and digest, fsyncs, renames into the blob path. On EINTEGRITY/EBADSIZE the ingest is dropped. */
  commit(): Promise<{ digest: Digest; size: number }>;
  /** Drops the staged data and the ingest. Idempotent. */
  abort(): Promise<void>;
  /** Keeps the staged data for a later openIngest() of the same ref and releases the lock. Idempotent. */
  close(): Promise<void>;
}

export interface IngestStatus {
  ref: string;
  digest?: Digest;
  size?: number;
  /** Bytes staged. */
  offset: number;
  startedAt: Date;
  updatedAt: Date;
}

/** What an ingest needs from its store. */
export interface IngestHost {
  readonly ingestRoot: string;
  blobPath(digest: Digest): string;
}

interface Meta {
  ref: string;
  digest?: Digest;
  size?: number;
  startedAt: string;
}

const LOCK = 'lock';
const META = 'meta';
const DATA = 'data';
const REHASH_CHUNK = 1 << 20;

export function ingestDir(host: IngestHost, ref: string): string {
  return join(host.ingestRoot, createHash('sha256').update(ref).digest('hex'));
}

/**
 * Opens (or resumes) the ingest `ref`. Internal form of ContentStore.openIngest:
 * `expected.digest` may be missing (putUnknown), and `restart` discards staged bytes
 * instead of re-hashing them (put() always has the whole stream).
 * Throws ALREADY_EXISTS when the expected blob is already in the store.
 */
export async function openIngest(
  host: IngestHost,
  ref: string,
  expected: { digest?: Digest; size?: number },
  opts: OpenIngestOptions & { restart?: boolean } = {},
): Promise<Ingest> {
  if (ref === '') throw invalidArgument('ingest ref must not be empty');
  if (expected.digest !== undefined && !isDigest(expected.digest)) {
    throw invalidArgument(`ingest ${ref}: invalid digest "${expected.digest}"`);
  }
  if (expected.size !== undefined && !(Number.isSafeInteger(expected.size) && expected.size >= 0)) {
    throw invalidArgument(`ingest ${ref}: invalid size ${expected.size}`);
  }
  const blob = expected.digest && host.blobPath(expected.digest);
  if (blob && (await exists(blob))) throw alreadyExists(`blob ${expected.digest} already exists`);

  const dir = ingestDir(host, ref);
  const lock = await lockIngest(dir, ref, opts);
  let data: FileHandle | undefined;
  try {
    // Another writer may have committed while we waited for the lock.
    if (blob && (await exists(blob))) {
      await removeIngest(dir, lock);
      throw alreadyExists(`blob ${expected.digest} already exists`);
    }
    const meta = await readMeta(dir);
    const resume = !opts.restart && meta !== null && meta.ref === ref && meta.digest === expected.digest;
    if (!resume || meta.size !== expected.size) {
      const startedAt = resume ? meta.startedAt : new Date().toISOString();
      const next: Meta = { ref, digest: expected.digest, size: expected.size, startedAt };
      await writeFile(join(dir, META), JSON.stringify(next));
    }
    data = await open(join(dir, DATA), constants.O_RDWR | constants.O_CREAT | (resume ? 0 : constants.O_TRUNC), 0o644);
    const hasher = createHasher(expected.digest ? digestAlgorithm(expected.digest) : 'sha256');
    let offset = 0;
    if (resume) {
      const staged = (await data.stat()).size;
      if (expected.size !== undefined && staged > expected.size) await data.truncate(0);
      else offset = await rehash(data, staged, hasher);
    }
    return new IngestWriter(host, ref, dir, expected, lock, data, hasher, offset);
  } catch (e) {
    await data?.close();
    await lock.release();
    throw e;
  }
}

/** Takes the ingest's lock, (re)creating its directory when a remover raced us. */
async function lockIngest(dir: string, ref: string, opts: OpenIngestOptions): Promise<FileLock> {
  for (;;) {
    await mkdir(dir, { recursive: true });
    try {
      return await FileLock.acquire(join(dir, LOCK), { ...opts, what: ref });
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) throw e;
    }
  }
}

/** Feeds the staged bytes to a fresh hasher (hash state cannot be saved across processes). */
async function rehash(fh: FileHandle, size: number, hasher: Hasher): Promise<number> {
  const buf = Buffer.allocUnsafe(Math.min(REHASH_CHUNK, Math.max(size, 1)));
  let pos = 0;
  while (pos < size) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    hasher.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return pos;
}

type State = 'open' | 'committed' | 'aborted' | 'closed';

class IngestWriter implements Ingest {
  #state: State = 'open';
  #queue: Promise<unknown> = Promise.resolve();
  #writable: Writable | undefined;
  #data: FileHandle | null;

  constructor(
    private readonly host: IngestHost,
    readonly ref: string,
    private readonly dir: string,
    private readonly expected: { digest?: Digest; size?: number },
    private readonly lock: FileLock,
    data: FileHandle,
    private readonly hasher: Hasher,
    private pos: number,
  ) {
    this.#data = data;
  }

  get offset(): number {
    return this.pos;
  }

  private get what(): string {
    return this.expected.digest ?? this.ref;
  }

  write(chunk: Buffer): Promise<void> {
    return this.#serial(() => this.#append([chunk]));
  }

  writable(): Writable {
    this.#writable ??= new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _enc, cb) => void this.#serial(() => this.#append([chunk])).then(() => cb(), cb),
      writev: (chunks, cb) =>
        void this.#serial(() => this.#append(chunks.map((c) => c.chunk as Buffer))).then(() => cb(), cb),
    });
    return this.#writable;
  }

  readStaged(length: number = this.pos): Readable {
    this.#mustBeOpen('read');
    if (!Number.isSafeInteger(length) || length < 0 || length > this.pos) {
      throw invalidArgument(`ingest ${this.ref}: cannot read ${length} staged bytes, ${this.pos} are staged`);
    }
    if (length === 0) return Readable.from([], { objectMode: false });
    // Its own descriptor: closing or committing the ingest later does not pull it away.
    return createReadStream(join(this.dir, DATA), { start: 0, end: length - 1, highWaterMark: REHASH_CHUNK });
  }

  commit(): Promise<{ digest: Digest; size: number }> {
    return this.#serial(async () => {
      this.#mustBeOpen('commit');
      const { digest: want, size: wantSize } = this.expected;
      if (wantSize !== undefined && this.pos !== wantSize) {
        await this.#drop();
        throw sizeError(this.what, wantSize, this.pos);
      }
      const found = this.hasher.digest();
      if (want !== undefined && found !== want) {
        await this.#drop();
        throw integrityError(this.what, want, found);
      }
      try {
        await this.#publish(found);
      } catch (e) {
        await this.#drop(); // an I/O failure while publishing leaves nothing behind either
        throw e;
      }
      this.#state = 'committed';
      return { digest: found, size: this.pos };
    });
  }

  /** fsync, rename into the blob path (first writer wins), fsync the directory, drop the ingest. */
  async #publish(found: Digest): Promise<void> {
    const data = this.#data!;
    this.#data = null;
    try {
      await data.truncate(this.pos); // a failed write may have left bytes past pos
      await data.chmod(0o444); // blobs are immutable
      await data.sync();
    } finally {
      await data.close();
    }
    const blob = this.host.blobPath(found);
    const made = await mkdir(dirname(blob), { recursive: true });
    if (made !== undefined) await fsyncDir(dirname(made)); // first blob of its algorithm: persist the new directory
    await moveIntoPlace(join(this.dir, DATA), blob);
    await fsyncDir(dirname(blob));
    await removeIngest(this.dir, this.lock);
  }

  abort(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state === 'open') await this.#drop();
    });
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'open') return;
      const data = this.#data;
      this.#data = null;
      if (data) {
        try {
          await data.truncate(this.pos);
          await data.sync();
        } finally {
          await data.close();
        }
      }
      await this.lock.release();
      this.#state = 'closed';
    });
  }

  async #append(chunks: Buffer[]): Promise<void> {
    this.#mustBeOpen('write');
    const total = chunks.reduce((n, c) => n + c.length, 0);
    if (this.expected.size !== undefined && this.pos + total > this.expected.size) {
      await this.#drop();
      throw sizeError(this.what, this.expected.size, this.pos + total, true);
    }
    await writeAll(this.#data!, chunks, total, this.pos);
    for (const c of chunks) this.hasher.update(c);
    this.pos += total;
  }

  async #drop(): Promise<void> {
    const data = this.#data;
    this.#data = null;
    await data?.close();
    // Only while we hold the lock: once released, the directory may be someone else's.
    if (this.lock.held) await removeIngest(this.dir, this.lock);
    this.#state = 'aborted';
  }

  #mustBeOpen(op: string): void {
    if (this.#state !== 'open') throw failedPrecondition(`ingest ${this.ref}: cannot ${op}, already ${this.#state}`);
  }

  /** One operation at a time: writes land in order and commit sees them all. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => {});
    return p;
  }
}

async function writeAll(fh: FileHandle, chunks: Buffer[], total: number, pos: number): Promise<void> {
  let { bytesWritten } = await fh.writev(chunks, pos);
  if (bytesWritten === total) return;
  const rest = Buffer.concat(chunks).subarray(bytesWritten); // short write: rare, so copying is fine
  while (bytesWritten < total) {
    const r = await fh.write(rest, bytesWritten - (total - rest.length), total - bytesWritten, pos + bytesWritten);
    bytesWritten += r.bytesWritten;
  }
}

/**
 * Removes an ingest directory while holding its lock, lock file last, then releases
 * the lock. A writer that opened the old lock file meanwhile notices the unlink and
 * starts over; one that already made a new lock file makes our rmdir fail, which is fine.
 */
export async function removeIngest(dir: string, lock: FileLock): Promise<void> {
  try {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name !== LOCK) await rm(join(dir, name), { recursive: true, force: true });
    }
    await unlink(join(dir, LOCK)).catch(ignore('ENOENT'));
    await rmdir(dir).catch(ignore('ENOENT', 'ENOTEMPTY'));
  } finally {
    await lock.release();
  }
}

/** Removes ingests nobody holds whose data was last written more than `olderThanMs` ago. */
export async function cleanupIngests(host: IngestHost, olderThanMs = 0): Promise<void> {
  const names = await readdir(host.ingestRoot).catch((e) => {
    if (isErrno(e, 'ENOENT')) return [] as string[];
    throw e;
  });
  for (const name of names) {
    const dir = join(host.ingestRoot, name);
    const st = await stat(dir).catch(() => null);
    if (st === null) continue;
    if (!st.isDirectory()) {
      await rm(dir, { force: true });
      continue;
    }
    // Age before locking: taking the lock may create the lock file and touch the dir.
    const updated = await lastWrite(dir, st.mtimeMs);
    if (Date.now() - updated < olderThanMs) continue;
    let lock: FileLock;
    try {
      lock = await FileLock.acquire(join(dir, LOCK), { wait: false });
    } catch (e) {
      if (e instanceof TslayerError && e.code === 'UNAVAILABLE') continue; // in use
      if (isErrno(e, 'ENOENT')) continue; // removed meanwhile
      throw e;
    }
    await removeIngest(dir, lock);
  }
}

/** Ingests on disk, in use or not (the `ctr content active` view). */
export async function* listIngests(host: IngestHost): AsyncIterable<IngestStatus> {
  const names = await readdir(host.ingestRoot).catch(() => [] as string[]);
  for (const name of names) {
    const dir = join(host.ingestRoot, name);
    const meta = await readMeta(dir);
    if (meta === null) continue;
    const data = await stat(join(dir, DATA)).catch(() => null);
    yield {
      ref: meta.ref,
      digest: meta.digest,
      size: meta.size,
      offset: data?.size ?? 0,
      startedAt: new Date(meta.startedAt),
      updatedAt: data?.mtime ?? new Date(meta.startedAt),
    };
  }
}

async function lastWrite(dir: string, fallback: number): Promise<number> {
  const times = await Promise.all(
    [DATA, META].map((n) => stat(join(dir, n)).then((s) => s.mtimeMs, () => 0)),
  );
  const t = Math.max(...times);
  return t > 0 ? t : fallback;
}

async function readMeta(dir: string): Promise<Meta | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, META), 'utf8')) as Meta;
    return typeof m.ref === 'string' && typeof m.startedAt === 'string' ? m : null;
  } catch {
    return null; // missing or torn by a crash: treated as a fresh ingest
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

function ignore(...codes: string[]) {
  return (e: unknown) => {
    if (!codes.some((c) => isErrno(e, c))) throw e;
  };
}
